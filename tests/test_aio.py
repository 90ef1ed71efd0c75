"""tests/test-aio.c: every /aio/* and /aio-gsource/* case, same names and
assertions.

As in the C, one AioContext serves all cases and stays attached to an event
loop for the whole run; the /aio-gsource/* cases (test_source_*) drive it
through asyncio where the C drives it through glib: g_main_context_iteration
is emulated below.
"""

import asyncio
import threading
import time

from util.aio import (aio_context_acquire, aio_context_attach_asyncio,
                      aio_context_detach_asyncio, aio_context_new,
                      aio_context_release, aio_context_unref,
                      aio_disable_external, aio_enable_external, aio_bh_new,
                      aio_notify, aio_poll, aio_set_event_notifier,
                      aio_timer_init, qemu_bh_cancel, qemu_bh_delete,
                      qemu_bh_schedule)
from util.event_notifier import (EventNotifier, event_notifier_cleanup,
                                 event_notifier_init, event_notifier_set,
                                 event_notifier_test_and_clear)
from util.timer import (QEMU_CLOCK_VIRTUAL, SCALE_MS, SCALE_NS, QEMUTimer,
                        qemu_clock_get_ns, timer_del, timer_mod)

ctx = None
loop = None
source = None


def setup_module() -> None:
    global ctx, loop, source
    ctx = aio_context_new()
    loop = asyncio.new_event_loop()
    source = aio_context_attach_asyncio(ctx, loop)
    while g_main_context_iteration(False):
        pass


def teardown_module() -> None:
    aio_context_detach_asyncio(ctx)
    loop.close()
    aio_context_unref(ctx)


def g_main_context_iteration(may_block: bool) -> bool:
    """One iteration of the asyncio loop; True if the AioContext's source
    dispatched in it.  glib's blocking iteration sleeps until a source is
    ready: here the loop runs until the source has dispatched once, with a
    guard so that a bug fails the test instead of hanging it."""
    n = source.dispatched
    if may_block:
        source.on_dispatch = loop.stop
        guard = loop.call_later(10, loop.stop)
        loop.run_forever()
        guard.cancel()
        source.on_dispatch = None
    else:
        loop.call_soon(loop.stop)
        loop.run_forever()
    return source.dispatched != n


class _Notifier(EventNotifier):
    """The EventNotifier inside EventNotifierTestData (for container_of)."""
    __slots__ = ("data",)


class EventNotifierTestData:
    def __init__(self, n: int = 0, active: int = 0,
                 auto_set: bool = False) -> None:
        self.e = _Notifier()
        self.e.data = self
        self.n = n
        self.active = active
        self.auto_set = auto_set


def wait_until_inactive(data: EventNotifierTestData) -> None:
    while data.active > 0:
        aio_poll(ctx, True)


class BHTestData:
    def __init__(self, n: int = 0, max: int = 0) -> None:
        self.bh = None
        self.n = n
        self.max = max


class TimerTestData:
    def __init__(self, ns: int, max: int, clock_type: int) -> None:
        self.timer = QEMUTimer()
        self.clock_type = clock_type
        self.n = 0
        self.max = max
        self.ns = ns
        self.ctx = ctx


def bh_test_cb(data: BHTestData) -> None:
    data.n += 1
    if data.n < data.max:
        qemu_bh_schedule(data.bh)


def timer_test_cb(data: TimerTestData) -> None:
    data.n += 1
    if data.n < data.max:
        timer_mod(data.timer, qemu_clock_get_ns(data.clock_type) + data.ns)


def dummy_io_handler_read(e: EventNotifier) -> None:
    pass


def bh_delete_cb(data: BHTestData) -> None:
    data.n += 1
    if data.n < data.max:
        qemu_bh_schedule(data.bh)
    else:
        qemu_bh_delete(data.bh)
        data.bh = None


def event_ready_cb(e: _Notifier) -> None:
    data = e.data
    assert event_notifier_test_and_clear(e)
    data.n += 1
    if data.active > 0:
        data.active -= 1
    if data.auto_set and data.active:
        event_notifier_set(e)


# Tests using aio_*.

class AcquireTestData:
    def __init__(self) -> None:
        self.start_lock = threading.Lock()
        self.thread_acquired = False


def test_acquire_thread(data: AcquireTestData) -> None:
    # Wait for the other thread to let us start.
    with data.start_lock:
        pass
    aio_context_acquire(ctx)
    aio_context_release(ctx)
    data.thread_acquired = True     # success, we got here


test_acquire_thread.__test__ = False    # a thread body, not a test case


def set_event_notifier(ctx, notifier, handler) -> None:
    aio_set_event_notifier(ctx, notifier, False, handler)


def dummy_notifier_read(unused: EventNotifier) -> None:
    assert False    # should never be invoked


def test_acquire() -> None:
    notifier = EventNotifier()
    data = AcquireTestData()

    # The dummy notifier makes aio_poll() block.
    event_notifier_init(notifier, False)
    set_event_notifier(ctx, notifier, dummy_notifier_read)
    assert not aio_poll(ctx, False)     # consume aio_notify()

    data.start_lock.acquire()
    data.thread_acquired = False

    thread = threading.Thread(target=test_acquire_thread, args=(data,),
                              name="test_acquire_thread")
    thread.start()

    # Block in aio_poll(), let the other thread kick us and acquire ctx.
    aio_context_acquire(ctx)
    data.start_lock.release()       # let the thread run
    assert not aio_poll(ctx, True)
    aio_context_release(ctx)

    thread.join()
    set_event_notifier(ctx, notifier, None)
    event_notifier_cleanup(notifier)

    assert data.thread_acquired


def test_bh_schedule() -> None:
    data = BHTestData()
    data.bh = aio_bh_new(ctx, bh_test_cb, data)

    qemu_bh_schedule(data.bh)
    assert data.n == 0

    assert aio_poll(ctx, True)
    assert data.n == 1

    assert not aio_poll(ctx, False)
    assert data.n == 1
    qemu_bh_delete(data.bh)


def test_bh_schedule10() -> None:
    data = BHTestData(max=10)
    data.bh = aio_bh_new(ctx, bh_test_cb, data)

    qemu_bh_schedule(data.bh)
    assert data.n == 0

    assert aio_poll(ctx, False)
    assert data.n == 1

    assert aio_poll(ctx, True)
    assert data.n == 2

    while data.n < 10:
        aio_poll(ctx, True)
    assert data.n == 10

    assert not aio_poll(ctx, False)
    assert data.n == 10
    qemu_bh_delete(data.bh)


def test_bh_cancel() -> None:
    data = BHTestData()
    data.bh = aio_bh_new(ctx, bh_test_cb, data)

    qemu_bh_schedule(data.bh)
    assert data.n == 0

    qemu_bh_cancel(data.bh)
    assert data.n == 0

    assert not aio_poll(ctx, False)
    assert data.n == 0
    qemu_bh_delete(data.bh)


def test_bh_delete() -> None:
    data = BHTestData()
    data.bh = aio_bh_new(ctx, bh_test_cb, data)

    qemu_bh_schedule(data.bh)
    assert data.n == 0

    qemu_bh_delete(data.bh)
    assert data.n == 0

    assert not aio_poll(ctx, False)
    assert data.n == 0


def test_bh_delete_from_cb() -> None:
    data1 = BHTestData(max=1)

    data1.bh = aio_bh_new(ctx, bh_delete_cb, data1)

    qemu_bh_schedule(data1.bh)
    assert data1.n == 0

    while data1.n < data1.max:
        aio_poll(ctx, True)
    assert data1.n == data1.max
    assert data1.bh is None

    assert not aio_poll(ctx, False)


def test_bh_delete_from_cb_many() -> None:
    data1 = BHTestData(max=1)
    data2 = BHTestData(max=3)
    data3 = BHTestData(max=2)
    data4 = BHTestData(max=4)

    data1.bh = aio_bh_new(ctx, bh_delete_cb, data1)
    data2.bh = aio_bh_new(ctx, bh_delete_cb, data2)
    data3.bh = aio_bh_new(ctx, bh_delete_cb, data3)
    data4.bh = aio_bh_new(ctx, bh_delete_cb, data4)

    qemu_bh_schedule(data1.bh)
    qemu_bh_schedule(data2.bh)
    qemu_bh_schedule(data3.bh)
    qemu_bh_schedule(data4.bh)
    assert data1.n == 0
    assert data2.n == 0
    assert data3.n == 0
    assert data4.n == 0

    assert aio_poll(ctx, False)
    assert data1.n == 1
    assert data2.n == 1
    assert data3.n == 1
    assert data4.n == 1
    assert data1.bh is None

    while (data1.n < data1.max or data2.n < data2.max or
           data3.n < data3.max or data4.n < data4.max):
        aio_poll(ctx, True)
    assert data1.n == data1.max
    assert data2.n == data2.max
    assert data3.n == data3.max
    assert data4.n == data4.max
    assert data1.bh is None
    assert data2.bh is None
    assert data3.bh is None
    assert data4.bh is None


def test_bh_flush() -> None:
    data = BHTestData()
    data.bh = aio_bh_new(ctx, bh_test_cb, data)

    qemu_bh_schedule(data.bh)
    assert data.n == 0

    assert aio_poll(ctx, True)
    assert data.n == 1

    assert not aio_poll(ctx, False)
    assert data.n == 1
    qemu_bh_delete(data.bh)


def test_set_event_notifier() -> None:
    data = EventNotifierTestData(active=0)
    event_notifier_init(data.e, False)
    set_event_notifier(ctx, data.e, event_ready_cb)
    assert not aio_poll(ctx, False)
    assert data.n == 0

    set_event_notifier(ctx, data.e, None)
    assert not aio_poll(ctx, False)
    assert data.n == 0
    event_notifier_cleanup(data.e)


def test_wait_event_notifier() -> None:
    data = EventNotifierTestData(active=1)
    event_notifier_init(data.e, False)
    set_event_notifier(ctx, data.e, event_ready_cb)
    while aio_poll(ctx, False):
        pass
    assert data.n == 0
    assert data.active == 1

    event_notifier_set(data.e)
    assert aio_poll(ctx, False)
    assert data.n == 1
    assert data.active == 0

    assert not aio_poll(ctx, False)
    assert data.n == 1
    assert data.active == 0

    set_event_notifier(ctx, data.e, None)
    assert not aio_poll(ctx, False)
    assert data.n == 1

    event_notifier_cleanup(data.e)


def test_flush_event_notifier() -> None:
    data = EventNotifierTestData(active=10, auto_set=True)
    event_notifier_init(data.e, False)
    set_event_notifier(ctx, data.e, event_ready_cb)
    while aio_poll(ctx, False):
        pass
    assert data.n == 0
    assert data.active == 10

    event_notifier_set(data.e)
    assert aio_poll(ctx, False)
    assert data.n == 1
    assert data.active == 9
    assert aio_poll(ctx, False)

    wait_until_inactive(data)
    assert data.n == 10
    assert data.active == 0
    assert not aio_poll(ctx, False)

    set_event_notifier(ctx, data.e, None)
    assert not aio_poll(ctx, False)
    event_notifier_cleanup(data.e)


def test_aio_external_client() -> None:
    for i in range(1, 3):
        data = EventNotifierTestData(active=10, auto_set=True)
        event_notifier_init(data.e, False)
        aio_set_event_notifier(ctx, data.e, True, event_ready_cb)
        event_notifier_set(data.e)
        for j in range(i):
            aio_disable_external(ctx)
        for j in range(i):
            assert not aio_poll(ctx, False)
            assert event_notifier_test_and_clear(data.e)
            event_notifier_set(data.e)
            aio_enable_external(ctx)
        assert aio_poll(ctx, False)
        set_event_notifier(ctx, data.e, None)
        event_notifier_cleanup(data.e)


def test_wait_event_notifier_noflush() -> None:
    data = EventNotifierTestData()
    dummy = EventNotifierTestData(active=1)

    event_notifier_init(data.e, False)
    set_event_notifier(ctx, data.e, event_ready_cb)

    assert not aio_poll(ctx, False)
    assert data.n == 0

    # Until there is an active descriptor, aio_poll may or may not call
    # event_ready_cb.  Still, it must not block.
    event_notifier_set(data.e)
    assert aio_poll(ctx, True)
    data.n = 0

    # An active event notifier forces aio_poll to look at EventNotifiers.
    event_notifier_init(dummy.e, False)
    set_event_notifier(ctx, dummy.e, event_ready_cb)

    event_notifier_set(data.e)
    assert aio_poll(ctx, False)
    assert data.n == 1
    assert not aio_poll(ctx, False)
    assert data.n == 1

    event_notifier_set(data.e)
    assert aio_poll(ctx, False)
    assert data.n == 2
    assert not aio_poll(ctx, False)
    assert data.n == 2

    event_notifier_set(dummy.e)
    wait_until_inactive(dummy)
    assert data.n == 2
    assert dummy.n == 1
    assert dummy.active == 0

    set_event_notifier(ctx, dummy.e, None)
    event_notifier_cleanup(dummy.e)

    set_event_notifier(ctx, data.e, None)
    assert not aio_poll(ctx, False)
    assert data.n == 2

    event_notifier_cleanup(data.e)


def test_timer_schedule() -> None:
    data = TimerTestData(ns=SCALE_MS * 750, max=2,
                         clock_type=QEMU_CLOCK_VIRTUAL)
    e = EventNotifier()

    # aio_poll will not block to wait for timers to complete unless it has
    # an fd to wait on (the C comment).  So create a dummy one.
    event_notifier_init(e, False)
    set_event_notifier(ctx, e, dummy_io_handler_read)
    aio_poll(ctx, False)

    aio_timer_init(ctx, data.timer, data.clock_type, SCALE_NS,
                   timer_test_cb, data)
    timer_mod(data.timer, qemu_clock_get_ns(data.clock_type) + data.ns)

    assert data.n == 0

    # timer_mod may well cause an event notifier to have gone off, so
    # clear that.
    while aio_poll(ctx, False):
        pass

    assert not aio_poll(ctx, False)
    assert data.n == 0

    time.sleep(1)
    assert data.n == 0

    assert aio_poll(ctx, False)
    assert data.n == 1

    # timer_mod called by our callback
    while aio_poll(ctx, False):
        pass

    assert not aio_poll(ctx, False)
    assert data.n == 1

    assert aio_poll(ctx, True)
    assert data.n == 2

    # As max is now 2, an event notifier should not have gone off.
    assert not aio_poll(ctx, False)
    assert data.n == 2

    set_event_notifier(ctx, e, None)
    event_notifier_cleanup(e)

    timer_del(data.timer)


# The same tests with the context as a source of an event loop
# (g_main_context_iteration replacing aio_poll).  As the C explains,
# sometimes both the AioContext and the outer loop wake themselves up, so
# some "assert not aio_poll(ctx, False)" become "while iteration(False)",
# and blocking waits become non-blocking loops.

def test_source_flush() -> None:
    assert not g_main_context_iteration(False)
    aio_notify(ctx)
    while g_main_context_iteration(False):
        pass
    assert not g_main_context_iteration(False)


def test_source_bh_schedule() -> None:
    data = BHTestData()
    data.bh = aio_bh_new(ctx, bh_test_cb, data)

    qemu_bh_schedule(data.bh)
    assert data.n == 0

    assert g_main_context_iteration(True)
    assert data.n == 1

    assert not g_main_context_iteration(False)
    assert data.n == 1
    qemu_bh_delete(data.bh)


def test_source_bh_schedule10() -> None:
    data = BHTestData(max=10)
    data.bh = aio_bh_new(ctx, bh_test_cb, data)

    qemu_bh_schedule(data.bh)
    assert data.n == 0

    assert g_main_context_iteration(False)
    assert data.n == 1

    assert g_main_context_iteration(True)
    assert data.n == 2

    while g_main_context_iteration(False):
        pass
    assert data.n == 10

    assert not g_main_context_iteration(False)
    assert data.n == 10
    qemu_bh_delete(data.bh)


def test_source_bh_cancel() -> None:
    data = BHTestData()
    data.bh = aio_bh_new(ctx, bh_test_cb, data)

    qemu_bh_schedule(data.bh)
    assert data.n == 0

    qemu_bh_cancel(data.bh)
    assert data.n == 0

    while g_main_context_iteration(False):
        pass
    assert data.n == 0
    qemu_bh_delete(data.bh)


def test_source_bh_delete() -> None:
    data = BHTestData()
    data.bh = aio_bh_new(ctx, bh_test_cb, data)

    qemu_bh_schedule(data.bh)
    assert data.n == 0

    qemu_bh_delete(data.bh)
    assert data.n == 0

    while g_main_context_iteration(False):
        pass
    assert data.n == 0


def test_source_bh_delete_from_cb() -> None:
    data1 = BHTestData(max=1)

    data1.bh = aio_bh_new(ctx, bh_delete_cb, data1)

    qemu_bh_schedule(data1.bh)
    assert data1.n == 0

    g_main_context_iteration(True)
    assert data1.n == data1.max
    assert data1.bh is None

    assert not g_main_context_iteration(False)


def test_source_bh_delete_from_cb_many() -> None:
    data1 = BHTestData(max=1)
    data2 = BHTestData(max=3)
    data3 = BHTestData(max=2)
    data4 = BHTestData(max=4)

    data1.bh = aio_bh_new(ctx, bh_delete_cb, data1)
    data2.bh = aio_bh_new(ctx, bh_delete_cb, data2)
    data3.bh = aio_bh_new(ctx, bh_delete_cb, data3)
    data4.bh = aio_bh_new(ctx, bh_delete_cb, data4)

    qemu_bh_schedule(data1.bh)
    qemu_bh_schedule(data2.bh)
    qemu_bh_schedule(data3.bh)
    qemu_bh_schedule(data4.bh)
    assert data1.n == 0
    assert data2.n == 0
    assert data3.n == 0
    assert data4.n == 0

    assert g_main_context_iteration(False)
    assert data1.n == 1
    assert data2.n == 1
    assert data3.n == 1
    assert data4.n == 1
    assert data1.bh is None

    while g_main_context_iteration(False):
        pass
    assert data1.n == data1.max
    assert data2.n == data2.max
    assert data3.n == data3.max
    assert data4.n == data4.max
    assert data1.bh is None
    assert data2.bh is None
    assert data3.bh is None
    assert data4.bh is None


def test_source_bh_flush() -> None:
    data = BHTestData()
    data.bh = aio_bh_new(ctx, bh_test_cb, data)

    qemu_bh_schedule(data.bh)
    assert data.n == 0

    assert g_main_context_iteration(True)
    assert data.n == 1

    assert not g_main_context_iteration(False)
    assert data.n == 1
    qemu_bh_delete(data.bh)


def test_source_set_event_notifier() -> None:
    data = EventNotifierTestData(active=0)
    event_notifier_init(data.e, False)
    set_event_notifier(ctx, data.e, event_ready_cb)
    while g_main_context_iteration(False):
        pass
    assert data.n == 0

    set_event_notifier(ctx, data.e, None)
    while g_main_context_iteration(False):
        pass
    assert data.n == 0
    event_notifier_cleanup(data.e)


def test_source_wait_event_notifier() -> None:
    data = EventNotifierTestData(active=1)
    event_notifier_init(data.e, False)
    set_event_notifier(ctx, data.e, event_ready_cb)
    while g_main_context_iteration(False):
        pass
    assert data.n == 0
    assert data.active == 1

    event_notifier_set(data.e)
    assert g_main_context_iteration(False)
    assert data.n == 1
    assert data.active == 0

    while g_main_context_iteration(False):
        pass
    assert data.n == 1
    assert data.active == 0

    set_event_notifier(ctx, data.e, None)
    while g_main_context_iteration(False):
        pass
    assert data.n == 1

    event_notifier_cleanup(data.e)


def test_source_flush_event_notifier() -> None:
    data = EventNotifierTestData(active=10, auto_set=True)
    event_notifier_init(data.e, False)
    set_event_notifier(ctx, data.e, event_ready_cb)
    while g_main_context_iteration(False):
        pass
    assert data.n == 0
    assert data.active == 10

    event_notifier_set(data.e)
    assert g_main_context_iteration(False)
    assert data.n == 1
    assert data.active == 9
    assert g_main_context_iteration(False)

    while g_main_context_iteration(False):
        pass
    assert data.n == 10
    assert data.active == 0
    assert not g_main_context_iteration(False)

    set_event_notifier(ctx, data.e, None)
    while g_main_context_iteration(False):
        pass
    event_notifier_cleanup(data.e)


def test_source_wait_event_notifier_noflush() -> None:
    data = EventNotifierTestData()
    dummy = EventNotifierTestData(active=1)

    event_notifier_init(data.e, False)
    set_event_notifier(ctx, data.e, event_ready_cb)

    while g_main_context_iteration(False):
        pass
    assert data.n == 0

    # Until there is an active descriptor, the loop may or may not call
    # event_ready_cb.  Still, it must not block.
    event_notifier_set(data.e)
    g_main_context_iteration(True)
    data.n = 0

    # An active event notifier forces aio_poll to look at EventNotifiers.
    event_notifier_init(dummy.e, False)
    set_event_notifier(ctx, dummy.e, event_ready_cb)

    event_notifier_set(data.e)
    assert g_main_context_iteration(False)
    assert data.n == 1
    assert not g_main_context_iteration(False)
    assert data.n == 1

    event_notifier_set(data.e)
    assert g_main_context_iteration(False)
    assert data.n == 2
    assert not g_main_context_iteration(False)
    assert data.n == 2

    event_notifier_set(dummy.e)
    while g_main_context_iteration(False):
        pass
    assert data.n == 2
    assert dummy.n == 1
    assert dummy.active == 0

    set_event_notifier(ctx, dummy.e, None)
    event_notifier_cleanup(dummy.e)

    set_event_notifier(ctx, data.e, None)
    while g_main_context_iteration(False):
        pass
    assert data.n == 2

    event_notifier_cleanup(data.e)


def test_source_timer_schedule() -> None:
    data = TimerTestData(ns=SCALE_MS * 750, max=2,
                         clock_type=QEMU_CLOCK_VIRTUAL)
    e = EventNotifier()

    # As in test_timer_schedule: a dummy fd to wait on.
    event_notifier_init(e, False)
    set_event_notifier(ctx, e, dummy_io_handler_read)
    while g_main_context_iteration(False):
        pass

    aio_timer_init(ctx, data.timer, data.clock_type, SCALE_NS,
                   timer_test_cb, data)
    expiry = qemu_clock_get_ns(data.clock_type) + data.ns
    timer_mod(data.timer, expiry)

    assert data.n == 0

    time.sleep(1)
    assert data.n == 0

    assert g_main_context_iteration(True)
    assert data.n == 1
    expiry += data.ns

    while data.n < 2:
        g_main_context_iteration(True)

    assert data.n == 2
    assert qemu_clock_get_ns(data.clock_type) > expiry

    set_event_notifier(ctx, e, None)
    event_notifier_cleanup(e)

    timer_del(data.timer)


# Beyond test-aio.c: wakeups from other threads.

def test_bh_schedule_from_thread() -> None:
    """A bh scheduled by another thread wakes a blocking aio_poll."""
    data = BHTestData()
    data.bh = aio_bh_new(ctx, bh_test_cb, data)
    # If the wakeup were lost, this notifier would end the wait (and the
    # assertion below would fail) instead of hanging the test.
    watchdog = EventNotifier()
    event_notifier_init(watchdog, False)
    set_event_notifier(ctx, watchdog, dummy_io_handler_read)
    while aio_poll(ctx, False):
        pass

    timer = threading.Timer(10, event_notifier_set, (watchdog,))
    timer.start()
    thread = threading.Thread(target=lambda: (time.sleep(0.01),
                                              qemu_bh_schedule(data.bh)))
    thread.start()
    assert aio_poll(ctx, True)
    assert data.n == 1
    thread.join()
    timer.cancel()

    set_event_notifier(ctx, watchdog, None)
    event_notifier_cleanup(watchdog)
    qemu_bh_delete(data.bh)


def test_bh_ping_pong_threads() -> None:
    """Several threads each schedule a bh and wait for it to run, many
    times: no wakeup may be lost between qemu_bh_schedule and aio_poll."""
    rounds = 300
    nthreads = 4
    done = [threading.Event() for i in range(nthreads)]
    counts = [0] * nthreads
    failed = []

    def cb(i: int) -> None:
        counts[i] += 1
        done[i].set()

    bhs = [aio_bh_new(ctx, cb, i) for i in range(nthreads)]

    def client(i: int) -> None:
        for r in range(rounds):
            done[i].clear()
            qemu_bh_schedule(bhs[i])
            if not done[i].wait(10):
                failed.append(i)
                return

    threads = [threading.Thread(target=client, args=(i,))
               for i in range(nthreads)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while (sum(counts) < rounds * nthreads and not failed
           and time.monotonic() < deadline):
        aio_poll(ctx, True)
    for t in threads:
        t.join()
    assert not failed
    assert counts == [rounds] * nthreads
    for bh in bhs:
        qemu_bh_delete(bh)
    while aio_poll(ctx, False):
        pass


def test_source_bh_from_thread() -> None:
    """With the context attached to a running asyncio loop, a bh scheduled
    by another thread runs from the loop, which was asleep."""

    async def main() -> None:
        fut = loop.create_future()
        bh = aio_bh_new(ctx, lambda opaque: fut.set_result(None), None)
        thread = threading.Thread(target=lambda: (time.sleep(0.01),
                                                  qemu_bh_schedule(bh)))
        thread.start()
        await asyncio.wait_for(fut, 10)
        thread.join()
        qemu_bh_delete(bh)

    loop.run_until_complete(main())


def test_bh_schedule_oneshot():
    """aio_bh_schedule_oneshot (QEMU 2.9): runs once, counts as progress,
    and leaves no bottom half behind."""
    from util.aio import aio_bh_schedule_oneshot
    calls = []
    aio_bh_schedule_oneshot(ctx, calls.append, "x")
    assert aio_poll(ctx, False)
    assert calls == ["x"]
    assert not aio_poll(ctx, False)
    assert calls == ["x"]
    bh = ctx.first_bh
    while bh is not None:
        assert not bh.oneshot
        bh = bh.next
