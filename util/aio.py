"""AioContext: bottom halves, fd handlers, timers and aio_poll (async.c,
aio-posix.c, include/block/aio.h, util/rfifolock.c), and the embedding of a
context in an asyncio loop (where QEMU attaches it to glib as a GSource).

Threads: qemu_bh_schedule(), aio_notify() and the EventNotifiers may be used
from any thread.  Everything else runs in the thread that holds the context
(aio_context_acquire()), as in QEMU.  Fields that C updates with atomics are
plain attributes here: under the GIL every interleaving of the read-then-write
sequences below still gives a state that C allows (see the comments).

Differences from the C, all invisible to callers:
- fds are kept registered in one select.poll object per context (like the
  epoll set that aio-posix.c switches to), instead of a pollfd array filled
  on every aio_poll; while external clients are disabled a temporary poll
  object without them is used (C falls back from epoll to ppoll then).
- the handler list is a Python list; new handlers are appended (C inserts at
  the head), so handlers are dispatched in the order they were added.
- poll() waits with a resolution of 1 ms (rounded up), like QEMU without
  ppoll.
"""

import select
import threading
from typing import Any, Callable, Optional

from util.error import Errp, error_abort, error_setg_errno
from util.event_notifier import (EventNotifier, EventNotifierHandler,
                                 event_notifier_cleanup,
                                 event_notifier_get_fd, event_notifier_init,
                                 event_notifier_set,
                                 event_notifier_test_and_clear)
from util.timer import (QEMUTimer, QEMUTimerCB, QEMUTimerListGroup,
                        qemu_soonest_timeout, qemu_timeout_ns_to_ms,
                        timer_init_tl, timer_new_tl, timerlistgroup_deadline_ns,
                        timerlistgroup_deinit,
                        timerlistgroup_has_external_timers,
                        timerlistgroup_init, timerlistgroup_run_timers,
                        timerlistgroup_warp_idle)

BlockCompletionFunc = Callable[[Any, int], None]
QEMUBHFunc = Callable[[Any], None]
IOHandler = Callable[[Any], None]

G_IO_IN = select.POLLIN
G_IO_OUT = select.POLLOUT
G_IO_HUP = select.POLLHUP
G_IO_ERR = select.POLLERR
_READ_EVENTS = G_IO_IN | G_IO_HUP | G_IO_ERR
_WRITE_EVENTS = G_IO_OUT | G_IO_ERR


class AIOCBInfo:
    """How to allocate and cancel one kind of request.  aiocb_type is the
    BlockAIOCB subclass qemu_aio_get() instantiates (C: aiocb_size)."""

    __slots__ = ("aiocb_type", "cancel_async", "get_aio_context")

    def __init__(self, aiocb_type: type,
                 cancel_async: Optional[Callable[["BlockAIOCB"], None]] = None,
                 get_aio_context: Optional[
                     Callable[["BlockAIOCB"], "AioContext"]] = None) -> None:
        self.aiocb_type = aiocb_type
        self.cancel_async = cancel_async
        self.get_aio_context = get_aio_context


class BlockAIOCB:
    """Common head of every asynchronous request; each kind subclasses it
    (with its own __slots__).  Filled in by qemu_aio_get()."""

    __slots__ = ("aiocb_info", "bs", "cb", "opaque", "refcnt")


# util/rfifolock.c: a recursive lock that hands itself out in FIFO order and
# calls cb(cb_opaque) while a thread waits for it, so that the owner can be
# kicked out of a blocking aio_poll().

class RFifoLock:
    __slots__ = ("lock", "cond", "head", "tail", "owner_thread", "nesting",
                 "waiters", "cb", "cb_opaque")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.head = 0
        self.tail = 0
        self.owner_thread: Optional[int] = None
        self.nesting = 0
        # Threads waiting for their ticket: unlock skips the (costly)
        # notify when there are none.
        self.waiters = 0
        self.cb: Optional[Callable[[Any], None]] = None
        self.cb_opaque: Any = None


def rfifolock_init(r: RFifoLock, cb: Optional[Callable[[Any], None]],
                   opaque: Any) -> None:
    r.head = r.tail = r.nesting = r.waiters = 0
    r.owner_thread = None
    r.cb = cb
    r.cb_opaque = opaque


def rfifolock_lock(r: RFifoLock, _get_ident=threading.get_ident) -> None:
    me = _get_ident()
    # Only the owner can see itself in owner_thread (it is cleared before
    # the lock is handed on), so nesting needs no mutex.
    if r.owner_thread == me:
        r.nesting += 1
        return
    # Explicit acquire/release: "with" costs twice as much on this path.
    lock = r.lock
    lock.acquire()
    ticket = r.tail
    r.tail = ticket + 1
    if ticket != r.head:
        r.waiters += 1
        try:
            while ticket != r.head:
                if r.cb is not None:
                    r.cb(r.cb_opaque)
                r.cond.wait()
        finally:
            r.waiters -= 1
    r.owner_thread = me
    r.nesting = 1
    lock.release()


def rfifolock_unlock(r: RFifoLock, _get_ident=threading.get_ident) -> None:
    assert r.nesting > 0
    assert r.owner_thread == _get_ident()
    if r.nesting > 1:
        r.nesting -= 1
        return
    lock = r.lock
    lock.acquire()
    r.nesting = 0
    r.owner_thread = None
    r.head += 1
    if r.waiters:
        r.cond.notify_all()
    lock.release()


class QEMUBH:
    # oneshot: QEMU 2.9's BH_ONESHOT, freed by aio_bh_poll after it ran
    __slots__ = ("ctx", "cb", "opaque", "next", "scheduled", "idle", "deleted",
                 "oneshot")

    def __init__(self, ctx: "AioContext", cb: QEMUBHFunc, opaque: Any) -> None:
        self.ctx = ctx
        self.cb = cb
        self.opaque = opaque
        self.next: Optional[QEMUBH] = None
        self.scheduled = False
        self.idle = False
        self.deleted = False
        self.oneshot = False


class AioHandler:
    """struct AioHandler; the GPollFD is flattened into fd/events/revents."""

    __slots__ = ("fd", "events", "revents", "io_read", "io_write", "deleted",
                 "opaque", "is_external")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.events = 0
        self.revents = 0
        self.io_read: Optional[IOHandler] = None
        self.io_write: Optional[IOHandler] = None
        self.deleted = False
        self.opaque: Any = None
        self.is_external = False


class AioContext:
    __slots__ = (
        "source", "refcnt", "lock", "aio_handlers", "walking_handlers",
        "notify_me", "bh_lock", "first_bh", "walking_bh", "notified",
        "notifier", "notify_dummy_bh", "thread_pool", "tlg",
        "external_disable_cnt",
        # Python only: live handlers by fd, their poll set, and flags that
        # spare aio_dispatch/aio_bh_poll a second walk when nothing was
        # deleted.
        "fd_handlers", "pollfds", "handlers_deleted", "bh_deleted")

    def __init__(self) -> None:
        # The asyncio attachment (C: the GSource this struct starts with).
        self.source: Optional[AioAsyncioSource] = None
        self.refcnt = 1
        self.lock = RFifoLock()
        self.aio_handlers: list = []
        self.walking_handlers = 0
        # Bit 0: attached to asyncio and idle; bits 1..: blocking aio_polls
        # in their prepare/poll phase.  Written only with the context held.
        self.notify_me = 0
        self.bh_lock = threading.Lock()
        self.first_bh: Optional[QEMUBH] = None
        self.walking_bh = 0
        self.notified = False
        self.notifier = EventNotifier()
        self.notify_dummy_bh: Optional[QEMUBH] = None
        self.thread_pool = None
        self.tlg = QEMUTimerListGroup()
        self.external_disable_cnt = 0
        self.fd_handlers: dict = {}
        self.pollfds = select.poll()
        self.handlers_deleted = False
        self.bh_deleted = False


# async.c: bottom halves (timers that expire as soon as possible)

def aio_bh_new(ctx: AioContext, cb: QEMUBHFunc, opaque: Any) -> QEMUBH:
    bh = QEMUBH(ctx, cb, opaque)
    with ctx.bh_lock:
        bh.next = ctx.first_bh
        ctx.first_bh = bh
    return bh


def aio_bh_schedule_oneshot(ctx: AioContext, cb: QEMUBHFunc,
                            opaque: Any) -> None:
    """Run cb(opaque) once from the next aio_bh_poll, which then frees the
    bh (QEMU 2.9+): aio_bh_new + qemu_bh_schedule + qemu_bh_delete in one,
    for callers that only need a single deferred call."""
    bh = QEMUBH(ctx, cb, opaque)
    bh.scheduled = True
    bh.oneshot = True
    # (explicit acquire/release: cheaper than "with" on a per-request path)
    lock = ctx.bh_lock
    lock.acquire()
    bh.next = ctx.first_bh
    ctx.first_bh = bh
    lock.release()
    aio_notify(ctx)


def aio_bh_poll(ctx: AioContext) -> int:
    """Run the scheduled bottom halves; 1 if one counts as progress.  Not
    reentrant in parallel, but may nest (a bh may call aio_poll)."""
    ctx.walking_bh += 1
    ret = 0
    notify_dummy_bh = ctx.notify_dummy_bh
    bh = ctx.first_bh
    # The try blocks here and below cost nothing until a callback raises
    # (a bug, where C would crash): the context stays usable then.
    try:
        while bh is not None:
            next_bh = bh.next
            # Clear scheduled before the call, so that a qemu_bh_schedule()
            # racing with the callback makes it run again.
            if bh.scheduled and not bh.deleted:
                bh.scheduled = False
                # Idle bottom halves and the notify bh are not progress.
                if not bh.idle and bh is not notify_dummy_bh:
                    ret = 1
                bh.idle = False
                if bh.oneshot:
                    # freed below, as qemu_bh_delete would have it
                    bh.deleted = True
                    ctx.bh_deleted = True
                bh.cb(bh.opaque)
            bh = next_bh
    finally:
        ctx.walking_bh -= 1

    if not ctx.walking_bh and ctx.bh_deleted:
        with ctx.bh_lock:
            ctx.bh_deleted = False
            prev = None
            bh = ctx.first_bh
            while bh is not None:
                if bh.deleted:
                    if prev is None:
                        ctx.first_bh = bh.next
                    else:
                        prev.next = bh.next
                else:
                    prev = bh
                bh = bh.next
    return ret


def qemu_bh_schedule_idle(bh: QEMUBH) -> None:
    """Run bh within the next 10 ms, without waking the loop up."""
    bh.idle = True
    bh.scheduled = True


def qemu_bh_schedule(bh: QEMUBH) -> None:
    """Safe from any thread."""
    bh.idle = False
    # C uses atomic_xchg.  Here two racing schedulers may both notify,
    # which only costs a wakeup; one that sees scheduled set knows that
    # aio_bh_poll has not cleared it yet, so the callback runs after its
    # writes.
    if not bh.scheduled:
        bh.scheduled = True
        aio_notify(bh.ctx)


def qemu_bh_cancel(bh: QEMUBH) -> None:
    bh.scheduled = False


def qemu_bh_delete(bh: QEMUBH) -> None:
    """The bh is freed by the next aio_bh_poll."""
    bh.scheduled = False
    bh.deleted = True
    bh.ctx.bh_deleted = True


def aio_compute_timeout(ctx: AioContext) -> int:
    """ns the context may sleep: 0 if work is ready, -1 for ever."""
    timeout = -1
    bh = ctx.first_bh
    while bh is not None:
        if bh.scheduled and not bh.deleted:
            if not bh.idle:
                return 0
            # Idle bottom halves are polled at least every 10 ms.
            timeout = 10000000
        bh = bh.next

    deadline = timerlistgroup_deadline_ns(ctx.tlg)
    if deadline == 0:
        return 0
    return qemu_soonest_timeout(timeout, deadline)


# The GSource functions, used by the asyncio attachment and main_loop_wait.

def aio_ctx_prepare(ctx: AioContext) -> int:
    """Before the outer loop sleeps: ask for notifications and return the
    timeout in ns (0: ready now).  Call with the context held."""
    ctx.notify_me |= 1
    return aio_compute_timeout(ctx)


def aio_ctx_check(ctx: AioContext) -> bool:
    """After the outer loop woke up (revents filled): is there work?"""
    ctx.notify_me &= ~1
    aio_notify_accept(ctx)
    bh = ctx.first_bh
    while bh is not None:
        if bh.scheduled and not bh.deleted:
            return True
        bh = bh.next
    return aio_pending(ctx) or timerlistgroup_deadline_ns(ctx.tlg) == 0


def aio_ctx_dispatch(ctx: AioContext) -> bool:
    return aio_dispatch(ctx)


def aio_ctx_finalize(ctx: AioContext) -> None:
    qemu_bh_delete(ctx.notify_dummy_bh)
    if ctx.thread_pool is not None:
        from util.thread_pool import thread_pool_free
        thread_pool_free(ctx.thread_pool)
        ctx.thread_pool = None

    with ctx.bh_lock:
        bh = ctx.first_bh
        while bh is not None:
            # qemu_bh_delete() must have been called on every bh.
            assert bh.deleted
            bh = bh.next
        ctx.first_bh = None

    aio_set_event_notifier(ctx, ctx.notifier, False, None)
    event_notifier_cleanup(ctx.notifier)
    timerlistgroup_deinit(ctx.tlg)


def aio_get_thread_pool(ctx: AioContext):
    pool = ctx.thread_pool
    if pool is None:
        # Imported here: util.thread_pool is built on this module.
        from util.thread_pool import thread_pool_new
        pool = ctx.thread_pool = thread_pool_new(ctx)
    return pool


def aio_notify(ctx: AioContext) -> None:
    """Wake up whoever polls ctx.  Safe from any thread.  Skipped when no
    one sleeps: everything is re-examined before the next blocking poll."""
    if ctx.notify_me:
        event_notifier_set(ctx.notifier)
        ctx.notified = True


def aio_notify_accept(ctx: AioContext) -> None:
    """C: atomic_xchg(&notified, false), and a read of the eventfd if it was
    set.  Here the eventfd is drained also when poll() saw it readable with
    notified still false: aio_notify sets the eventfd before notified, and
    a notifying thread can wait up to a GIL switch interval between the
    two, during which a blocking aio_poll would spin on the readable
    eventfd.  (notified is cleared before the eventfd, so the two cannot be
    left set and clear.)"""
    node = ctx.fd_handlers.get(ctx.notifier.rfd)
    if ctx.notified or (node is not None and node.revents & _READ_EVENTS):
        ctx.notified = False
        event_notifier_test_and_clear(ctx.notifier)


def aio_timerlist_notify(opaque: AioContext) -> None:
    aio_notify(opaque)


def aio_rfifolock_cb(opaque: AioContext) -> None:
    # Another thread waits for the context: kick the owner out of aio_poll.
    qemu_bh_schedule(opaque.notify_dummy_bh)


def notify_dummy_bh(opaque: Any) -> None:
    """Does nothing: scheduling it only makes the event loop iterate."""


def event_notifier_dummy_cb(e: EventNotifier) -> None:
    """Does nothing, as in C: aio_notify_accept drains the eventfd."""


def aio_context_new(errp: Errp = None) -> Optional[AioContext]:
    """A new context, or None with errp set if no eventfd can be made."""
    ctx = AioContext()
    ret = event_notifier_init(ctx.notifier, False)
    if ret < 0:
        error_setg_errno(errp, -ret, "Failed to initialize event notifier")
        return None
    aio_set_event_notifier(ctx, ctx.notifier, False, event_notifier_dummy_cb)
    ctx.thread_pool = None
    rfifolock_init(ctx.lock, aio_rfifolock_cb, ctx)
    timerlistgroup_init(ctx.tlg, aio_timerlist_notify, ctx)
    ctx.notify_dummy_bh = aio_bh_new(ctx, notify_dummy_bh, None)
    return ctx


def aio_context_ref(ctx: AioContext) -> None:
    ctx.refcnt += 1


def aio_context_unref(ctx: AioContext) -> None:
    assert ctx.refcnt > 0
    ctx.refcnt -= 1
    if not ctx.refcnt:
        aio_ctx_finalize(ctx)


def aio_context_acquire(ctx: AioContext) -> None:
    rfifolock_lock(ctx.lock)


def aio_context_release(ctx: AioContext) -> None:
    rfifolock_unlock(ctx.lock)


_qemu_aio_context: Optional[AioContext] = None
_qemu_aio_context_lock = threading.Lock()


def qemu_get_aio_context() -> AioContext:
    """The main loop's context (main-loop.c), made on first use."""
    global _qemu_aio_context
    ctx = _qemu_aio_context
    if ctx is None:
        with _qemu_aio_context_lock:
            if _qemu_aio_context is None:
                _qemu_aio_context = aio_context_new(error_abort)
            ctx = _qemu_aio_context
    return ctx


# include/block/aio.h inlines

def aio_timer_new(ctx: AioContext, type: int, scale: int, cb: QEMUTimerCB,
                  opaque: Any) -> QEMUTimer:
    return timer_new_tl(ctx.tlg.tl[type], scale, cb, opaque)


def aio_timer_init(ctx: AioContext, ts: QEMUTimer, type: int, scale: int,
                   cb: QEMUTimerCB, opaque: Any) -> None:
    timer_init_tl(ts, ctx.tlg.tl[type], scale, cb, opaque)


def aio_disable_external(ctx: AioContext) -> None:
    """Stop polling external clients (e.g. during a drained section)."""
    ctx.external_disable_cnt += 1
    if ctx.source is not None and ctx.external_disable_cnt == 1:
        _aio_source_update(ctx.source)


def aio_enable_external(ctx: AioContext) -> None:
    assert ctx.external_disable_cnt > 0
    ctx.external_disable_cnt -= 1
    if ctx.source is not None and not ctx.external_disable_cnt:
        _aio_source_update(ctx.source)


def aio_external_disabled(ctx: AioContext) -> bool:
    return ctx.external_disable_cnt > 0


def aio_node_check(ctx: AioContext, is_external: bool) -> bool:
    """May a handler with this is_external flag be polled now?"""
    return not is_external or not ctx.external_disable_cnt


# aio-posix.c

def find_aio_handler(ctx: AioContext, fd: int) -> Optional[AioHandler]:
    return ctx.fd_handlers.get(fd)


def aio_set_fd_handler(ctx: AioContext, fd: int, is_external: bool,
                       io_read: Optional[IOHandler],
                       io_write: Optional[IOHandler], opaque: Any) -> None:
    """Watch fd (both handlers None: stop watching it).  With an asyncio
    loop attached, call it in the loop's thread."""
    node = find_aio_handler(ctx, fd)

    if io_read is None and io_write is None:
        if node is not None:
            del ctx.fd_handlers[fd]
            ctx.pollfds.unregister(fd)
            if ctx.walking_handlers:
                # Someone walks the list: only mark the node, the walker
                # removes it.
                node.deleted = True
                node.revents = 0
                ctx.handlers_deleted = True
            else:
                ctx.aio_handlers.remove(node)
    else:
        if node is None:
            node = AioHandler(fd)
            ctx.aio_handlers.append(node)
            ctx.fd_handlers[fd] = node
        node.io_read = io_read
        node.io_write = io_write
        node.opaque = opaque
        node.is_external = is_external
        node.events = ((_READ_EVENTS if io_read is not None else 0) |
                       (_WRITE_EVENTS if io_write is not None else 0))
        ctx.pollfds.register(fd, node.events)

    if ctx.source is not None:
        _aio_source_update(ctx.source)
    aio_notify(ctx)


def aio_set_event_notifier(ctx: AioContext, notifier: EventNotifier,
                           is_external: bool,
                           io_read: Optional[EventNotifierHandler]) -> None:
    aio_set_fd_handler(ctx, event_notifier_get_fd(notifier), is_external,
                       io_read, None, notifier)


def aio_pending(ctx: AioContext) -> bool:
    for node in ctx.aio_handlers:
        revents = node.revents & node.events
        if revents & _READ_EVENTS and node.io_read is not None:
            return True
        if revents & _WRITE_EVENTS and node.io_write is not None:
            return True
    return False


def aio_dispatch(ctx: AioContext) -> bool:
    progress = False

    # Bottom halves first: they need no poll() (and an aio_poll loop may
    # not need more than them).
    if aio_bh_poll(ctx):
        progress = True

    # Handlers may add or remove handlers: removal only marks the node
    # while walking_handlers is set, and added nodes have no revents yet.
    ctx.walking_handlers += 1
    notifier = ctx.notifier
    try:
        for node in ctx.aio_handlers:
            revents = node.revents & node.events
            if not revents:
                continue
            node.revents = 0
            if (not node.deleted and revents & _READ_EVENTS
                    and node.io_read is not None):
                node.io_read(node.opaque)
                # aio_notify() does not count as progress.
                if node.opaque is not notifier:
                    progress = True
            if (not node.deleted and revents & _WRITE_EVENTS
                    and node.io_write is not None):
                node.io_write(node.opaque)
                progress = True
    finally:
        ctx.walking_handlers -= 1
    if not ctx.walking_handlers and ctx.handlers_deleted:
        ctx.handlers_deleted = False
        ctx.aio_handlers = [n for n in ctx.aio_handlers if not n.deleted]

    if timerlistgroup_run_timers(ctx.tlg):
        progress = True
    return progress


def aio_poll_fds(ctx: AioContext, timeout: int) -> int:
    """poll() the handlers that may run now for timeout ns and store the
    results in their revents (C: qemu_poll_ns on the pollfds array, then
    the copy into node->pfd.revents).  Returns how many fds are ready."""
    if ctx.external_disable_cnt:
        pollfds = select.poll()
        for node in ctx.fd_handlers.values():
            if not node.is_external:
                pollfds.register(node.fd, node.events)
    else:
        pollfds = ctx.pollfds
    ready = pollfds.poll(qemu_timeout_ns_to_ms(timeout))
    if ready:
        fd_handlers = ctx.fd_handlers
        for fd, revents in ready:
            node = fd_handlers.get(fd)
            if node is not None:
                node.revents = revents
    return len(ready)


def aio_poll(ctx: AioContext, blocking: bool) -> bool:
    """Run what is ready (bottom halves, fd handlers, expired timers); if
    blocking and nothing is, wait for something first.  Returns whether
    progress was made (the context's own notifications, idle bottom halves
    and the notify bh do not count)."""
    aio_context_acquire(ctx)
    progress = False

    # aio_notify may skip the eventfd write while everything will be
    # re-examined before the next poll(); a blocking poll breaks that.
    if blocking:
        ctx.notify_me += 2

    ctx.walking_handlers += 1
    timeout = aio_compute_timeout(ctx) if blocking else 0
    idle_warp = False
    if timeout and timerlistgroup_has_external_timers(ctx.tlg):
        # Only moving an external clock could end the wait: never sleep on
        # the host clock for it (see util/timer.py).
        timeout = 0
        idle_warp = True

    # Let other threads take the context while we sleep.
    if timeout:
        aio_context_release(ctx)
    aio_poll_fds(ctx, timeout)
    if timeout:
        aio_context_acquire(ctx)
    # C decrements before re-acquiring; doing it with the context held
    # keeps every write of notify_me under the lock (an extra wakeup at
    # worst).
    if blocking:
        ctx.notify_me -= 2

    aio_notify_accept(ctx)
    ctx.walking_handlers -= 1

    try:
        # Dispatch even if no fd is ready, to run the timers.
        if aio_dispatch(ctx):
            progress = True

        if idle_warp and not progress and timerlistgroup_warp_idle(ctx.tlg):
            progress = timerlistgroup_run_timers(ctx.tlg)
    finally:
        aio_context_release(ctx)
    return progress


# Embedding in asyncio.  QEMU hands the context to glib as a GSource
# (aio_get_g_source), whose prepare/check/dispatch are aio_ctx_*.  asyncio
# has no prepare/check phase around its select(), so the source keeps
#   - a reader/writer on every fd the context polls (the context's own
#     EventNotifier included, which aio_notify() sets from any thread),
#   - a call_later() for the next timer deadline, or a call_soon() when
#     work is ready (prepare returned 0),
# and any of them runs _aio_source_run(): poll the fds without waiting
# (glib's poll), aio_ctx_check(), aio_ctx_dispatch() if there is work, then
# aio_ctx_prepare() again to re-arm.  Bit 0 of notify_me stays set between
# runs, as it is between glib's prepare and check: the loop may go to sleep
# at any time without asking us first.

class AioAsyncioSource:
    """The attachment of an AioContext to an asyncio loop.  dispatched
    counts the runs that found work (what g_main_context_iteration reports);
    on_dispatch, if set, is called after each of them, outside the
    context."""

    __slots__ = ("ctx", "loop", "dispatched", "on_dispatch", "readers",
                 "writers", "soon_handle", "timer_handle")

    def __init__(self, ctx: AioContext, loop: Any) -> None:
        self.ctx = ctx
        self.loop = loop
        self.dispatched = 0
        self.on_dispatch: Optional[Callable[[], None]] = None
        self.readers: set = set()
        self.writers: set = set()
        self.soon_handle: Any = None
        self.timer_handle: Any = None


def _aio_source_update(src: AioAsyncioSource) -> None:
    """g_source_add_poll/g_source_remove_poll: make the loop watch exactly
    the fds that the context would poll."""
    ctx = src.ctx
    loop = src.loop
    readers = set()
    writers = set()
    for node in ctx.fd_handlers.values():
        if aio_node_check(ctx, node.is_external):
            if node.io_read is not None:
                readers.add(node.fd)
            if node.io_write is not None:
                writers.add(node.fd)
    for fd in src.readers - readers:
        loop.remove_reader(fd)
    for fd in readers - src.readers:
        loop.add_reader(fd, _aio_source_run, src)
    for fd in src.writers - writers:
        loop.remove_writer(fd)
    for fd in writers - src.writers:
        loop.add_writer(fd, _aio_source_run, src)
    src.readers = readers
    src.writers = writers


def _aio_source_arm(src: AioAsyncioSource) -> None:
    """aio_ctx_prepare and its timeout turned into loop callbacks."""
    timeout = aio_ctx_prepare(src.ctx)
    if src.timer_handle is not None:
        src.timer_handle.cancel()
        src.timer_handle = None
    if timeout == 0:
        if src.soon_handle is None:
            src.soon_handle = src.loop.call_soon(_aio_source_run, src)
    elif timeout > 0:
        src.timer_handle = src.loop.call_later(timeout / 1e9,
                                               _aio_source_run, src)


def _aio_source_run(src: AioAsyncioSource) -> None:
    ctx = src.ctx
    src.soon_handle = None
    aio_context_acquire(ctx)
    ctx.walking_handlers += 1
    aio_poll_fds(ctx, 0)
    ctx.walking_handlers -= 1
    # Bit 0 of notify_me stays set between runs (asyncio cannot tell us
    # when it goes to sleep), so aio_notify() sets the context's own
    # notifier far more often than under glib: treat it as the wakeup it
    # is, not as work (aio_ctx_check clears it).
    ctx.fd_handlers[ctx.notifier.rfd].revents = 0
    dispatched = aio_ctx_check(ctx)
    try:
        if dispatched:
            aio_ctx_dispatch(ctx)
            src.dispatched += 1
    finally:
        # Re-arm even if a callback raised (asyncio reports it and goes on).
        if ctx.source is src:
            _aio_source_arm(src)
        aio_context_release(ctx)
    if dispatched and src.on_dispatch is not None:
        src.on_dispatch()


def aio_context_attach_asyncio(ctx: AioContext,
                               loop: Any = None) -> AioAsyncioSource:
    """Run ctx's bottom halves, fd handlers and timers from an asyncio
    event loop (default: the running loop), like g_source_attach of
    aio_get_g_source(ctx).  Takes a reference on ctx.  A context can be
    attached to one loop at a time."""
    if loop is None:
        import asyncio
        loop = asyncio.get_running_loop()
    assert ctx.source is None, "AioContext already attached to a loop"
    aio_context_ref(ctx)
    src = AioAsyncioSource(ctx, loop)
    aio_context_acquire(ctx)
    ctx.source = src
    _aio_source_update(src)
    _aio_source_arm(src)
    aio_context_release(ctx)
    return src


def aio_context_detach_asyncio(ctx: AioContext) -> None:
    """Undo aio_context_attach_asyncio (g_source_destroy)."""
    src = ctx.source
    assert src is not None, "AioContext not attached to a loop"
    aio_context_acquire(ctx)
    ctx.source = None
    for fd in src.readers:
        src.loop.remove_reader(fd)
    for fd in src.writers:
        src.loop.remove_writer(fd)
    src.readers = set()
    src.writers = set()
    for handle in (src.soon_handle, src.timer_handle):
        if handle is not None:
            handle.cancel()
    src.soon_handle = src.timer_handle = None
    ctx.notify_me &= ~1
    aio_context_release(ctx)
    aio_context_unref(ctx)
