"""Deterministic mode: one virtual time, and nothing left to thread timing.

The switch is deterministic_enable(), or PYQEMU_DETERMINISTIC=1 in the
environment (read when util.timer is first imported, so before anything
can arm a timer).  Under it:

- the three clocks (util/timer.py) are external and linked: they start at
  fixed readings (QEMU_CLOCK_VIRTUAL and QEMU_CLOCK_REALTIME at start_ns,
  QEMU_CLOCK_HOST at HOST_START_NS + start_ns) and move only when the
  program moves them (qemu_clock_set_ns, qemu_clock_step_ns,
  qemu_clock_warp on any of them moves all three by the same amount).  A
  blocking aio_poll() with nothing else to do warps them to the next timer
  (warp_when_idle, QEMU's "-icount sleep=off"), so that the synchronous
  calls (bdrv_read, blk_pwrite, the Pythonic front) finish in virtual time;
- the thread pool runs no threads: a request's work runs when it is
  submitted, and completes from the pool's bottom half, at the same
  virtual instant (util/thread_pool.py);
- so, given the same inputs, every bottom half, timer and completion runs
  in the same order on every run, at the same virtual time: timers run in
  expiry order, and timers that expire together in the order they were
  armed.

What the mode cannot fix is left to the program: its own random numbers
(seed them), iteration over sets of str under hash randomisation
(PYTHONHASHSEED), and reading the host clocks (time.time()) directly.

A simulator drives time with deterministic_run() (run until nothing is
left, or up to a virtual time), or steps it itself:

    deterministic_enable()
    ... submit requests ...
    deterministic_run()                 # all done; time is the last event's
    print(deterministic_now_ns())
"""

from __future__ import annotations

from typing import Optional

from util import timer
from util.timer import (QEMU_CLOCK_HOST, QEMU_CLOCK_REALTIME,
                        QEMU_CLOCK_VIRTUAL, qemu_clock_deadline_ns_all,
                        qemu_clock_get_ns, qemu_clock_notify,
                        qemu_clock_ptr, qemu_clock_set_external,
                        qemu_clock_set_ns, qemu_clock_warp,
                        qemu_soonest_timeout)

ENV_VAR = "PYQEMU_DETERMINISTIC"

# 2016-04-01 00:00:00 UTC, the era of the seed: what QEMU_CLOCK_HOST reads
# at virtual time 0.
HOST_START_NS = 1459468800 * 10**9

CLOCKS = (QEMU_CLOCK_VIRTUAL, QEMU_CLOCK_REALTIME, QEMU_CLOCK_HOST)

_enabled = False
# the offsets of the clocks while they followed the host, for disable
_host_offsets: dict = {}


def deterministic_enabled() -> bool:
    return _enabled


def deterministic_enable(start_ns: int = 0) -> None:
    """Enter deterministic mode, the virtual time reading start_ns.  No
    timer of any clock may be pending.  Does nothing if already on."""
    global _enabled
    if _enabled:
        return
    assert start_ns >= 0
    for type in CLOCKS:
        assert qemu_clock_deadline_ns_all(type) == -1, \
            "deterministic_enable: a timer is pending"
    # With no timer pending no event loop has a deadline to recompute, so
    # the clocks are set without qemu_clock_set_external()'s notification
    # (which could not even run while util.aio is being imported, when
    # the environment variable switches the mode on).  The readings may go
    # back here; nothing holds a deadline on them.
    for type in CLOCKS:
        clock = qemu_clock_ptr(type)
        _host_offsets[type] = clock.offset
        clock.external_ns = start_ns + (HOST_START_NS
                                        if type == QEMU_CLOCK_HOST else 0)
        clock.warp_when_idle = True
        clock.external = True
    timer.qemu_clocks_linked = CLOCKS
    _enabled = True


def deterministic_disable() -> None:
    """Leave deterministic mode: the thread pool uses its workers again,
    QEMU_CLOCK_VIRTUAL follows the host from the reading it has (so it
    never goes back), and QEMU_CLOCK_REALTIME and QEMU_CLOCK_HOST read the
    host clocks again (they jump; their timers run early or late)."""
    global _enabled
    if not _enabled:
        return
    _enabled = False
    timer.qemu_clocks_linked = ()
    for type in CLOCKS:
        qemu_clock_set_external(type, False)
        if type != QEMU_CLOCK_VIRTUAL:
            qemu_clock_ptr(type).offset = _host_offsets[type]
            qemu_clock_notify(type)


def deterministic_now_ns() -> int:
    """The virtual time (QEMU_CLOCK_VIRTUAL)."""
    return qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL)


def deterministic_deadline_ns() -> int:
    """ns until the next timer of any clock expires, 0 if one has, -1 if
    none is pending."""
    deadline = -1
    for type in CLOCKS:
        deadline = qemu_soonest_timeout(deadline,
                                        qemu_clock_deadline_ns_all(type))
    return deadline


def deterministic_run(ctx=None, until_ns: Optional[int] = None) -> int:
    """Run ctx (default: the main AioContext) and the main loop's timers,
    moving the virtual time from one timer to the next, until nothing is
    left to run or the next timer lies after until_ns (then the time is
    set to until_ns).  Returns the virtual time at the end."""
    # util.aio imports util.timer, which may import this module first
    from util.aio import aio_poll, qemu_get_aio_context
    from util.timer import qemu_clock_run_all_timers

    assert _enabled, "deterministic_run: deterministic mode is off"
    if ctx is None:
        ctx = qemu_get_aio_context()
    while True:
        progress = False
        while aio_poll(ctx, False):
            progress = True
        deadline = deterministic_deadline_ns()
        if deadline < 0:
            break
        now = deterministic_now_ns()
        if until_ns is not None and now + deadline > until_ns:
            break
        if deadline == 0:
            # expired, but not ctx's: a timer_new() one of the main loop,
            # or one of another AioContext, which its own loop must run
            if not (qemu_clock_run_all_timers() or progress):
                raise RuntimeError("deterministic_run: an expired timer "
                                   "belongs to another AioContext")
            continue
        qemu_clock_warp(QEMU_CLOCK_VIRTUAL)
    if until_ns is not None and until_ns > deterministic_now_ns():
        qemu_clock_set_ns(QEMU_CLOCK_VIRTUAL, until_ns)
    return deterministic_now_ns()
