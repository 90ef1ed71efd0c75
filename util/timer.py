"""Clocks, timer lists and timers (qemu-timer.c, include/qemu/timer.h).

Three clocks, as in QEMU:
  QEMU_CLOCK_REALTIME  the host's monotonic clock (get_clock()),
  QEMU_CLOCK_VIRTUAL   starts at 0 when this module is loaded and then follows
                       the host's monotonic clock, as QEMU's does while the
                       guest runs (there is no VM to stop here),
  QEMU_CLOCK_HOST      the host's wall clock (get_clock_realtime()).
QEMU_CLOCK_VIRTUAL_RT (icount) has no use here and is left out.

Each clock has one QEMUTimerList per QEMUTimerListGroup: every AioContext
owns a group (its timers run in aio_poll), and main_loop_tlg holds the
timers made by timer_new*() (they run in main_loop_wait()).

External clocks (our addition, for simulators)
----------------------------------------------
Any clock can be put under the control of the embedding program:

  qemu_clock_set_external(type, True, warp_when_idle=False)
      From now on the clock stands still at its current reading and moves
      only through the calls below.  qemu_clock_set_external(type, False)
      hands it back to the host clock; it resumes from the value it had, so
      it never jumps backwards.
  qemu_clock_set_ns(type, ns)   set it (never backwards),
  qemu_clock_step_ns(type, d)   move it forward by d ns,
  qemu_clock_warp(type)         move it to the earliest deadline among all
                                timer lists of that clock; returns how many
                                ns it moved (0 if a timer had already
                                expired), or -1 if no timer is pending.
None of these runs a timer callback: each change notifies every timer list
of the clock (as timer_mod does), and the timers run where they always run,
in the next aio_poll() of their AioContext (or main_loop_wait() for
main_loop_tlg), in expiry order.  So a simulator's loop is

    while True:
        while aio_poll(ctx, False):
            pass
        if qemu_clock_warp(QEMU_CLOCK_VIRTUAL) < 0:
            break                       # nothing left that time can wake

and a timer's callback reads exactly its expiry time from the clock.

Deadlines of an external clock are handled like those of QEMU's virtual
clock under -icount (qemu_clock_use_for_deadline() is false for it): an
event loop never sleeps on the host clock waiting for them.  A timer of it
that has already expired makes the deadline 0, so it runs at once.  A
blocking aio_poll() that could only be ended by moving an external clock
does not sleep: it polls once and returns whether it made progress (usually
False).  With warp_when_idle=True it instead warps the clock to the next
deadline when nothing else is ready and runs the timers that expired -- the
behaviour of QEMU's "-icount sleep=off": synchronous wrappers such as
bdrv_read() then finish in simulated time without waiting for the host.
A blocking main_loop_wait() does the same (qemu-io's sleep command waits in
it).  A context attached to asyncio (which cannot tell when the whole
program is idle) arms nothing for them and is woken up when the clock is
moved.

Deterministic mode (util/deterministic.py, PYQEMU_DETERMINISTIC=1) links
the three clocks so that they move as one: setting or warping any of them
moves all.
"""

import os
import threading
import time
from typing import Any, Callable, List, Optional

NANOSECONDS_PER_SECOND = 1000000000

SCALE_MS = 1000000
SCALE_US = 1000
SCALE_NS = 1

QEMU_CLOCK_REALTIME = 0
QEMU_CLOCK_VIRTUAL = 1
QEMU_CLOCK_HOST = 2
QEMU_CLOCK_MAX = 3

QEMUTimerCB = Callable[[Any], None]
QEMUTimerListNotifyCB = Callable[[Any], None]

# get_clock() reads CLOCK_MONOTONIC, get_clock_realtime() the wall clock.
get_clock = time.monotonic_ns
get_clock_realtime = time.time_ns


class QEMUClock:
    """struct QEMUClock, plus the state of external mode.  The reading is
    source() + offset, or external_ns while external is set."""

    __slots__ = ("timerlists", "type", "source", "offset", "external",
                 "external_ns", "warp_when_idle")

    def __init__(self, type: int, source: Callable[[], int]) -> None:
        self.timerlists: List["QEMUTimerList"] = []
        self.type = type
        self.source = source
        self.offset = 0
        self.external = False
        self.external_ns = 0
        self.warp_when_idle = False


class QEMUTimerList:
    __slots__ = ("clock", "active_timers_lock", "active_timers", "notify_cb",
                 "notify_opaque")

    def __init__(self) -> None:
        self.clock: Optional[QEMUClock] = None
        self.active_timers_lock = threading.Lock()
        self.active_timers: Optional["QEMUTimer"] = None
        self.notify_cb: Optional[QEMUTimerListNotifyCB] = None
        self.notify_opaque: Any = None


class QEMUTimerListGroup:
    __slots__ = ("tl",)

    def __init__(self) -> None:
        self.tl: List[Optional[QEMUTimerList]] = [None] * QEMU_CLOCK_MAX


class QEMUTimer:
    """struct QEMUTimer; expire_time is in ns, -1 when not pending."""

    __slots__ = ("expire_time", "timer_list", "cb", "opaque", "next", "scale")

    def __init__(self) -> None:
        self.expire_time = -1
        self.timer_list: Optional[QEMUTimerList] = None
        self.cb: Optional[QEMUTimerCB] = None
        self.opaque: Any = None
        self.next: Optional["QEMUTimer"] = None
        self.scale = SCALE_NS


main_loop_tlg = QEMUTimerListGroup()
qemu_clocks = [QEMUClock(QEMU_CLOCK_REALTIME, get_clock),
               QEMUClock(QEMU_CLOCK_VIRTUAL, get_clock),
               QEMUClock(QEMU_CLOCK_HOST, get_clock_realtime)]


def qemu_clock_ptr(type: int) -> QEMUClock:
    return qemu_clocks[type]


def timer_expired_ns(timer_head: Optional[QEMUTimer], current_time: int) -> bool:
    return timer_head is not None and timer_head.expire_time <= current_time


def timerlist_new(type: int, cb: Optional[QEMUTimerListNotifyCB],
                  opaque: Any) -> QEMUTimerList:
    clock = qemu_clock_ptr(type)
    timer_list = QEMUTimerList()
    timer_list.clock = clock
    timer_list.notify_cb = cb
    timer_list.notify_opaque = opaque
    clock.timerlists.append(timer_list)
    return timer_list


def timerlist_free(timer_list: QEMUTimerList) -> None:
    assert not timerlist_has_timers(timer_list)
    if timer_list.clock is not None:
        timer_list.clock.timerlists.remove(timer_list)
        timer_list.clock = None


def qemu_clock_init(type: int) -> None:
    assert main_loop_tlg.tl[type] is None
    main_loop_tlg.tl[type] = timerlist_new(type, None, None)


def qemu_clock_use_for_deadline(type: int) -> bool:
    # QEMU says "not the virtual clock under icount"; here, "not a clock
    # that the embedding program moves".
    return not qemu_clocks[type].external


def qemu_clock_notify(type: int) -> None:
    for timer_list in list(qemu_clock_ptr(type).timerlists):
        timerlist_notify(timer_list)


def timerlist_has_timers(timer_list: QEMUTimerList) -> bool:
    return timer_list.active_timers is not None


def qemu_clock_has_timers(type: int) -> bool:
    return timerlist_has_timers(main_loop_tlg.tl[type])


def timerlist_expired(timer_list: QEMUTimerList) -> bool:
    with timer_list.active_timers_lock:
        ts = timer_list.active_timers
        if ts is None:
            return False
        expire_time = ts.expire_time
    return expire_time < qemu_clock_get_ns(timer_list.clock.type)


def qemu_clock_expired(type: int) -> bool:
    return timerlist_expired(main_loop_tlg.tl[type])


def timerlist_deadline_ns(timer_list: QEMUTimerList) -> int:
    """ns until the first timer expires, 0 if it has, -1 if none."""
    ts = timer_list.active_timers
    if ts is None:
        return -1
    # Read without the lock: if the list changes under us the notify_cb
    # tells the poller, so a stale value only costs one extra wakeup.
    delta = ts.expire_time - qemu_clock_get_ns(timer_list.clock.type)
    return delta if delta > 0 else 0


def qemu_clock_deadline_ns_all(type: int) -> int:
    """Soonest deadline over every timer list of the clock, whether or not
    the clock is used for deadlines."""
    deadline = -1
    for timer_list in list(qemu_clock_ptr(type).timerlists):
        deadline = qemu_soonest_timeout(deadline,
                                        timerlist_deadline_ns(timer_list))
    return deadline


def timerlist_get_clock(timer_list: QEMUTimerList) -> int:
    return timer_list.clock.type


def qemu_clock_get_main_loop_timerlist(type: int) -> QEMUTimerList:
    return main_loop_tlg.tl[type]


def timerlist_notify(timer_list: QEMUTimerList) -> None:
    if timer_list.notify_cb is not None:
        timer_list.notify_cb(timer_list.notify_opaque)
    else:
        # main_loop_tlg: wake the main loop.  Imported here because the
        # main loop is built on util.aio, which imports this module.
        from util.main_loop import qemu_notify_event
        qemu_notify_event()


def qemu_timeout_ns_to_ms(ns: int) -> int:
    """Round up: waiting a little too long beats a busy wait."""
    if ns < 0:
        return -1
    if not ns:
        return 0
    ms = (ns + SCALE_MS - 1) // SCALE_MS
    return min(ms, 0x7fffffff)


def qemu_soonest_timeout(timeout1: int, timeout2: int) -> int:
    """Smaller of two timeouts, where -1 (infinite) is the largest."""
    if timeout1 < 0:
        return timeout2
    if timeout2 < 0:
        return timeout1
    return timeout1 if timeout1 < timeout2 else timeout2


def timer_init_tl(ts: QEMUTimer, timer_list: QEMUTimerList, scale: int,
                  cb: QEMUTimerCB, opaque: Any) -> None:
    ts.timer_list = timer_list
    ts.cb = cb
    ts.opaque = opaque
    ts.scale = scale
    ts.expire_time = -1


def timer_init(ts: QEMUTimer, type: int, scale: int, cb: QEMUTimerCB,
               opaque: Any) -> None:
    timer_init_tl(ts, main_loop_tlg.tl[type], scale, cb, opaque)


def timer_new_tl(timer_list: QEMUTimerList, scale: int, cb: QEMUTimerCB,
                 opaque: Any) -> QEMUTimer:
    ts = QEMUTimer()
    timer_init_tl(ts, timer_list, scale, cb, opaque)
    return ts


def timer_new(type: int, scale: int, cb: QEMUTimerCB, opaque: Any) -> QEMUTimer:
    return timer_new_tl(main_loop_tlg.tl[type], scale, cb, opaque)


def timer_new_ns(type: int, cb: QEMUTimerCB, opaque: Any) -> QEMUTimer:
    return timer_new(type, SCALE_NS, cb, opaque)


def timer_new_us(type: int, cb: QEMUTimerCB, opaque: Any) -> QEMUTimer:
    return timer_new(type, SCALE_US, cb, opaque)


def timer_new_ms(type: int, cb: QEMUTimerCB, opaque: Any) -> QEMUTimer:
    return timer_new(type, SCALE_MS, cb, opaque)


def timer_deinit(ts: QEMUTimer) -> None:
    assert ts.expire_time == -1
    ts.timer_list = None


def timer_free(ts: QEMUTimer) -> None:
    # In C freeing a pending timer leaves it in the list; unlink it instead
    # (later QEMU versions do the same).
    timer_del(ts)


def timer_del_locked(timer_list: QEMUTimerList, ts: QEMUTimer) -> None:
    ts.expire_time = -1
    prev = None
    t = timer_list.active_timers
    while t is not None:
        if t is ts:
            if prev is None:
                timer_list.active_timers = t.next
            else:
                prev.next = t.next
            t.next = None
            break
        prev = t
        t = t.next


def timer_mod_ns_locked(timer_list: QEMUTimerList, ts: QEMUTimer,
                        expire_time: int) -> bool:
    """Insert in expiry order, after timers expiring at the same time;
    returns True if ts became the head (the deadline moved earlier)."""
    prev = None
    t = timer_list.active_timers
    while timer_expired_ns(t, expire_time):
        prev = t
        t = t.next
    ts.expire_time = max(expire_time, 0)
    ts.next = t
    if prev is None:
        timer_list.active_timers = ts
        return True
    prev.next = ts
    return False


def timerlist_rearm(timer_list: QEMUTimerList) -> None:
    # QEMU also calls qemu_clock_warp() here for icount; an external clock
    # only moves when the embedding program says so.
    timerlist_notify(timer_list)


def timer_del(ts: QEMUTimer) -> None:
    timer_list = ts.timer_list
    if timer_list is not None:
        with timer_list.active_timers_lock:
            timer_del_locked(timer_list, ts)


def timer_mod_ns(ts: QEMUTimer, expire_time: int) -> None:
    timer_list = ts.timer_list
    with timer_list.active_timers_lock:
        timer_del_locked(timer_list, ts)
        rearm = timer_mod_ns_locked(timer_list, ts, expire_time)
    if rearm:
        timerlist_rearm(timer_list)


def timer_mod_anticipate_ns(ts: QEMUTimer, expire_time: int) -> None:
    """Fire at expire_time or at the current deadline, whichever is first."""
    timer_list = ts.timer_list
    with timer_list.active_timers_lock:
        if ts.expire_time == -1 or ts.expire_time > expire_time:
            if ts.expire_time != -1:
                timer_del_locked(timer_list, ts)
            rearm = timer_mod_ns_locked(timer_list, ts, expire_time)
        else:
            rearm = False
    if rearm:
        timerlist_rearm(timer_list)


def timer_mod(ts: QEMUTimer, expire_time: int) -> None:
    """expire_time is in the timer's scale."""
    timer_mod_ns(ts, expire_time * ts.scale)


def timer_mod_anticipate(ts: QEMUTimer, expire_time: int) -> None:
    timer_mod_anticipate_ns(ts, expire_time * ts.scale)


def timer_pending(ts: QEMUTimer) -> bool:
    return ts.expire_time >= 0


def timer_expired(timer_head: QEMUTimer, current_time: int) -> bool:
    """current_time is in the timer's scale."""
    return timer_expired_ns(timer_head, current_time * timer_head.scale)


def timerlist_run_timers(timer_list: QEMUTimerList) -> bool:
    if timer_list.active_timers is None:
        return False
    progress = False
    lock = timer_list.active_timers_lock
    current_time = qemu_clock_get_ns(timer_list.clock.type)
    while True:
        with lock:
            ts = timer_list.active_timers
            if not timer_expired_ns(ts, current_time):
                break
            # Unlink before the callback: it may re-arm the timer.
            timer_list.active_timers = ts.next
            ts.next = None
            ts.expire_time = -1
            cb = ts.cb
            opaque = ts.opaque
        cb(opaque)
        progress = True
    return progress


def qemu_clock_run_timers(type: int) -> bool:
    return timerlist_run_timers(main_loop_tlg.tl[type])


def timerlistgroup_init(tlg: QEMUTimerListGroup,
                        cb: Optional[QEMUTimerListNotifyCB],
                        opaque: Any) -> None:
    for type in range(QEMU_CLOCK_MAX):
        tlg.tl[type] = timerlist_new(type, cb, opaque)


def timerlistgroup_deinit(tlg: QEMUTimerListGroup) -> None:
    for type in range(QEMU_CLOCK_MAX):
        timerlist_free(tlg.tl[type])


def timerlistgroup_run_timers(tlg: QEMUTimerListGroup) -> bool:
    progress = False
    for timer_list in tlg.tl:
        if timer_list.active_timers is not None:
            progress |= timerlist_run_timers(timer_list)
    return progress


def timerlistgroup_deadline_ns(tlg: QEMUTimerListGroup) -> int:
    """How long an event loop may sleep for these timers: -1 for ever.
    An external clock counts only once one of its timers has expired."""
    deadline = -1
    for timer_list in tlg.tl:
        if timer_list.active_timers is None:
            continue
        tl_deadline = timerlist_deadline_ns(timer_list)
        if tl_deadline == 0:
            return 0
        if qemu_clock_use_for_deadline(timer_list.clock.type):
            deadline = qemu_soonest_timeout(deadline, tl_deadline)
    return deadline


def timerlistgroup_has_external_timers(tlg: QEMUTimerListGroup) -> bool:
    """Whether a timer of the group waits for an external clock to move."""
    for timer_list in tlg.tl:
        if timer_list.active_timers is not None and timer_list.clock.external:
            return True
    return False


def timerlistgroup_warp_idle(tlg: QEMUTimerListGroup) -> bool:
    """An event loop with nothing else to do: warp each external clock with
    warp_when_idle that has timers here to its next deadline (QEMU's
    "-icount sleep=off").  Returns whether a clock could be warped."""
    warped = False
    for timer_list in tlg.tl:
        clock = timer_list.clock
        if (timer_list.active_timers is not None and clock.external
                and clock.warp_when_idle):
            warped |= qemu_clock_warp(clock.type) >= 0
    return warped


def qemu_clock_get_ns(type: int) -> int:
    clock = qemu_clocks[type]
    if clock.external:
        return clock.external_ns
    return clock.source() + clock.offset


def qemu_clock_get_ms(type: int) -> int:
    return qemu_clock_get_ns(type) // SCALE_MS


def qemu_clock_get_us(type: int) -> int:
    return qemu_clock_get_ns(type) // SCALE_US


def init_clocks() -> None:
    for type in range(QEMU_CLOCK_MAX):
        qemu_clock_init(type)
    # The virtual clock starts at 0, as QEMU's does when the VM starts.
    virtual = qemu_clocks[QEMU_CLOCK_VIRTUAL]
    virtual.offset = -virtual.source()


def timer_expire_time_ns(ts: QEMUTimer) -> int:
    return ts.expire_time if timer_pending(ts) else -1


def qemu_clock_run_all_timers() -> bool:
    progress = False
    for type in range(QEMU_CLOCK_MAX):
        progress |= qemu_clock_run_timers(type)
    return progress


# External clocks: see the module comment.

def qemu_clock_set_external(type: int, external: bool,
                            warp_when_idle: bool = False) -> None:
    clock = qemu_clocks[type]
    now = qemu_clock_get_ns(type)
    if external:
        clock.external_ns = now
    else:
        clock.offset = now - clock.source()
    clock.warp_when_idle = external and warp_when_idle
    clock.external = external
    # Deadlines changed meaning: let every event loop recompute them.
    qemu_clock_notify(type)


def qemu_clock_is_external(type: int) -> bool:
    return qemu_clocks[type].external


# Clocks that move as one (util/deterministic.py links every clock to the
# virtual one): setting, stepping or warping one of them moves all of them
# by the same amount.  Empty unless set there.
qemu_clocks_linked: tuple = ()


def qemu_clock_group(type: int) -> tuple:
    return qemu_clocks_linked if type in qemu_clocks_linked else (type,)


def qemu_clock_set_ns(type: int, ns: int) -> None:
    clock = qemu_clocks[type]
    assert clock.external, "qemu_clock_set_ns: the clock is not external"
    assert ns >= clock.external_ns, "qemu_clock_set_ns: time goes backwards"
    delta = ns - clock.external_ns
    for t in qemu_clock_group(type):
        qemu_clocks[t].external_ns += delta
        qemu_clock_notify(t)


def qemu_clock_step_ns(type: int, delta: int) -> None:
    assert delta >= 0
    qemu_clock_set_ns(type, qemu_clocks[type].external_ns + delta)


def qemu_clock_warp(type: int) -> int:
    """Move an external clock (and the clocks linked to it) to the
    earliest timer deadline among them.  Returns the ns moved, 0 if a timer
    has already expired, -1 if no timer is pending (or the clock is not
    external: then, as in QEMU without icount, warping does nothing)."""
    clock = qemu_clocks[type]
    if not clock.external:
        return -1
    deadline = -1
    for t in qemu_clock_group(type):
        deadline = qemu_soonest_timeout(deadline,
                                        qemu_clock_deadline_ns_all(t))
    if deadline > 0:
        qemu_clock_set_ns(type, clock.external_ns + deadline)
    return deadline


init_clocks()

# PYQEMU_DETERMINISTIC=1: every clock virtual from the start (imported last,
# so that util.deterministic finds this module complete).
if os.environ.get("PYQEMU_DETERMINISTIC", "") not in ("", "0"):
    from util.deterministic import deterministic_enable
    deterministic_enable()
