"""tests/test-coroutine.c (the /basic cases), plus the pool, exceptions,
misuse, and the locks of util/coroutine_lock.py."""

import os
import subprocess
import sys

import pytest

from util import coroutine as coroutine_mod
from util.coroutine import (Coroutine, POOL_BATCH_SIZE, qemu_coroutine_create,
                            qemu_coroutine_enter, qemu_coroutine_self,
                            qemu_coroutine_yield, qemu_in_coroutine)
from util.coroutine_lock import (CoMutex, CoQueue, CoRwlock,
                                 qemu_co_enter_next, qemu_co_mutex_lock,
                                 qemu_co_mutex_unlock, qemu_co_queue_empty,
                                 qemu_co_queue_next, qemu_co_queue_restart_all,
                                 qemu_co_queue_wait, qemu_co_rwlock_rdlock,
                                 qemu_co_rwlock_unlock, qemu_co_rwlock_wrlock)


# /basic/in_coroutine
def verify_in_coroutine(opaque):
    assert qemu_in_coroutine()


def test_in_coroutine():
    assert not qemu_in_coroutine()
    coroutine = qemu_coroutine_create(verify_in_coroutine)
    qemu_coroutine_enter(coroutine, None)


# /basic/self
def verify_self(opaque):
    assert qemu_coroutine_self() is opaque


def test_self():
    coroutine = qemu_coroutine_create(verify_self)
    qemu_coroutine_enter(coroutine, coroutine)


# /basic/nesting
class NestData:
    def __init__(self, max_):
        self.n_enter = 0
        self.n_return = 0
        self.max = max_


def nest(nd):
    nd.n_enter += 1
    if nd.n_enter < nd.max:
        child = qemu_coroutine_create(nest)
        qemu_coroutine_enter(child, nd)
    nd.n_return += 1


def test_nesting():
    nd = NestData(128)
    root = qemu_coroutine_create(nest)
    qemu_coroutine_enter(root, nd)
    # Must enter and return from max nesting level
    assert nd.n_enter == nd.max
    assert nd.n_return == nd.max


# /basic/yield
def yield_5_times(done):
    for _ in range(5):
        qemu_coroutine_yield()
    done[0] = True


def test_yield():
    done = [False]
    i = -1  # one extra time to return from coroutine
    coroutine = qemu_coroutine_create(yield_5_times)
    while not done[0]:
        qemu_coroutine_enter(coroutine, done)
        i += 1
    assert i == 5  # coroutine must yield 5 times


# /basic/co_queue
def c2_fn(opaque):
    qemu_coroutine_yield()


def c1_fn(c2):
    qemu_coroutine_enter(c2, None)


def test_co_queue():
    c1 = qemu_coroutine_create(c1_fn)
    c2 = qemu_coroutine_create(c2_fn)

    qemu_coroutine_enter(c1, c2)
    # The C scribbles 0xff over c1, now back in the pool: entering c2 must
    # not touch its former caller.  Scribble over c1's fields the same way.
    saved = (c1.entry, c1.caller, c1.co_queue_wakeup)
    c1.entry = c1.caller = c1.co_queue_wakeup = 0xff
    try:
        qemu_coroutine_enter(c2, None)
    finally:
        c1.entry, c1.caller, c1.co_queue_wakeup = saved


# /basic/lifecycle
def set_and_exit(done):
    done[0] = True


def test_lifecycle():
    # Create, enter, and return from coroutine
    done = [False]
    coroutine = qemu_coroutine_create(set_and_exit)
    qemu_coroutine_enter(coroutine, done)
    assert done[0]  # expect done to be true (first time)

    # Repeat to check that no state affects this test
    done = [False]
    coroutine = qemu_coroutine_create(set_and_exit)
    qemu_coroutine_enter(coroutine, done)
    assert done[0]  # expect done to be true (second time)


# /basic/order
RECORD_SIZE = 10


def test_order():
    records = []

    def record_push(func, state):
        records.append((func, state))
        assert len(records) < RECORD_SIZE

    def co_order_test(opaque):
        record_push(2, 1)
        assert qemu_in_coroutine()
        qemu_coroutine_yield()
        record_push(2, 2)
        assert qemu_in_coroutine()

    co = qemu_coroutine_create(co_order_test)
    record_push(1, 1)
    qemu_coroutine_enter(co, None)
    record_push(1, 2)
    assert not qemu_in_coroutine()
    qemu_coroutine_enter(co, None)
    record_push(1, 3)
    assert not qemu_in_coroutine()

    expected_pos = [(1, 1), (2, 1), (1, 2), (2, 2), (1, 3)]
    assert len(records) == 5
    assert records == expected_pos


# Beyond test-coroutine.c: the pool, exceptions and misuse.

def test_pool_reuses_finished_coroutines():
    def empty(opaque):
        pass

    first = qemu_coroutine_create(empty)
    qemu_coroutine_enter(first)
    second = qemu_coroutine_create(empty)
    assert second is first
    qemu_coroutine_enter(second)


def test_pool_is_bounded():
    def parked(opaque):
        qemu_coroutine_yield()

    cos = [qemu_coroutine_create(parked) for _ in range(POOL_BATCH_SIZE * 3)]
    for co in cos:
        qemu_coroutine_enter(co)
    for co in cos:
        qemu_coroutine_enter(co)
    assert len(coroutine_mod._pool.free) == POOL_BATCH_SIZE * 2


def test_entry_gets_opaque_only_on_first_enter():
    seen = []

    def entry(opaque):
        seen.append(opaque)
        qemu_coroutine_yield()
        seen.append("resumed")

    co = qemu_coroutine_create(entry)
    qemu_coroutine_enter(co, "first")
    qemu_coroutine_enter(co, "second")
    assert seen == ["first", "resumed"]


def test_exception_reaches_enterer_with_traceback():
    def failing_helper():
        raise ValueError("boom")

    def entry(opaque):
        qemu_coroutine_yield()
        failing_helper()

    co = qemu_coroutine_create(entry)
    qemu_coroutine_enter(co)
    with pytest.raises(ValueError, match="boom") as info:
        qemu_coroutine_enter(co)
    names = [entry.name for entry in info.traceback]
    assert "failing_helper" in names
    # The coroutine went back to the pool and works again.
    done = [False]
    co2 = qemu_coroutine_create(set_and_exit)
    qemu_coroutine_enter(co2, done)
    assert done[0]


def test_exception_in_nested_coroutine_propagates_outwards():
    def inner(opaque):
        raise KeyError("inner")

    def outer(opaque):
        qemu_coroutine_enter(qemu_coroutine_create(inner))

    with pytest.raises(KeyError):
        qemu_coroutine_enter(qemu_coroutine_create(outer))
    assert not qemu_in_coroutine()


def test_reenter_running_coroutine_aborts():
    def entry(opaque):
        qemu_coroutine_enter(qemu_coroutine_self())

    with pytest.raises(AssertionError, match="re-entered recursively"):
        qemu_coroutine_enter(qemu_coroutine_create(entry))


def test_yield_outside_coroutine_aborts():
    with pytest.raises(AssertionError, match="yielding to no one"):
        qemu_coroutine_yield()


def test_self_outside_coroutine_is_leader():
    leader = qemu_coroutine_self()
    assert not isinstance(leader, Coroutine)
    assert qemu_coroutine_self() is leader


# Coroutine locks (qemu-coroutine-lock.c)

def test_co_queue_next_wakes_after_waker_yields():
    queue = CoQueue()
    log = []

    def waiter(name):
        qemu_co_queue_wait(queue)
        log.append(name)

    def waker(opaque):
        assert qemu_co_queue_next(queue)
        log.append("waker still running")
        qemu_coroutine_yield()
        log.append("waker resumed")

    for name in ("a", "b"):
        qemu_coroutine_enter(qemu_coroutine_create(waiter), name)
    w = qemu_coroutine_create(waker)
    qemu_coroutine_enter(w)
    assert log == ["waker still running", "a"]
    assert not qemu_co_queue_empty(queue)
    qemu_coroutine_enter(w)
    assert log == ["waker still running", "a", "waker resumed"]
    assert qemu_co_enter_next(queue)
    assert log[-1] == "b"
    assert qemu_co_queue_empty(queue)
    assert not qemu_co_enter_next(queue)


def test_co_queue_restart_all_keeps_fifo_order():
    queue = CoQueue()
    log = []

    def waiter(name):
        qemu_co_queue_wait(queue)
        log.append(name)

    def waker(opaque):
        qemu_co_queue_restart_all(queue)

    for name in range(5):
        qemu_coroutine_enter(qemu_coroutine_create(waiter), name)
    qemu_coroutine_enter(qemu_coroutine_create(waker))
    assert log == [0, 1, 2, 3, 4]


def test_co_queue_next_outside_coroutine_aborts():
    with pytest.raises(AssertionError):
        qemu_co_queue_next(CoQueue())


def test_co_mutex_serialises_in_fifo_order():
    mutex = CoMutex()
    log = []

    def locker(name):
        qemu_co_mutex_lock(mutex)
        log.append(("in", name))
        qemu_coroutine_yield()
        log.append(("out", name))
        qemu_co_mutex_unlock(mutex)

    cos = [qemu_coroutine_create(locker) for _ in range(3)]
    for i, co in enumerate(cos):
        qemu_coroutine_enter(co, i)
    assert log == [("in", 0)]
    qemu_coroutine_enter(cos[0])
    # 1 was woken by the unlock and ran once 0 terminated.
    assert log == [("in", 0), ("out", 0), ("in", 1)]
    qemu_coroutine_enter(cos[1])
    assert log[-2:] == [("out", 1), ("in", 2)]
    qemu_coroutine_enter(cos[2])
    assert log == [("in", 0), ("out", 0), ("in", 1), ("out", 1),
                   ("in", 2), ("out", 2)]
    assert not mutex.locked


def test_co_mutex_unlock_unlocked_aborts():
    def entry(opaque):
        qemu_co_mutex_unlock(CoMutex())

    with pytest.raises(AssertionError):
        qemu_coroutine_enter(qemu_coroutine_create(entry))


def test_co_rwlock_readers_share_writer_excludes():
    lock = CoRwlock()
    log = []

    def reader(name):
        qemu_co_rwlock_rdlock(lock)
        log.append(("r", name))
        qemu_coroutine_yield()
        qemu_co_rwlock_unlock(lock)

    def writer(name):
        qemu_co_rwlock_wrlock(lock)
        log.append(("w", name))
        qemu_coroutine_yield()
        qemu_co_rwlock_unlock(lock)

    r1, r2, w = (qemu_coroutine_create(f) for f in (reader, reader, writer))
    qemu_coroutine_enter(r1, 1)
    qemu_coroutine_enter(r2, 2)
    qemu_coroutine_enter(w, "w")
    assert log == [("r", 1), ("r", 2)]
    qemu_coroutine_enter(r1)
    assert log == [("r", 1), ("r", 2)]
    qemu_coroutine_enter(r2)            # last reader out wakes the writer
    assert log == [("r", 1), ("r", 2), ("w", "w")]
    r3 = qemu_coroutine_create(reader)
    qemu_coroutine_enter(r3, 3)         # a reader waits for the writer
    assert log[-1] == ("w", "w")
    qemu_coroutine_enter(w)
    assert log[-1] == ("r", 3)
    qemu_coroutine_enter(r3)
    assert lock.reader == 0 and not lock.writer


# Both implementations of enter/yield pass every case above.

def test_c_backend_is_used_when_built():
    if os.environ.get("PYQEMU_COROUTINE") == "python":
        pytest.skip("the Python backend was asked for")
    if os.environ.get("CI") == "true":
        assert coroutine_mod.COROUTINE_BACKEND == "c"
    elif coroutine_mod.COROUTINE_BACKEND != "c":
        pytest.skip("util._coroutine_c is not built")
    assert type(coroutine_mod.qemu_coroutine_enter).__name__ == \
        "builtin_function_or_method"


@pytest.mark.skipif(os.environ.get("PYQEMU_COROUTINE") == "python",
                    reason="already running the Python backend")
def test_python_backend_passes_the_same_cases():
    env = dict(os.environ, PYQEMU_COROUTINE="python")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         __file__], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_co_aio_sleep_ns_on_the_virtual_clock():
    """co_aio_sleep_ns (qemu-coroutine-sleep.c) wakes the coroutine from an
    AioContext timer once the clock has moved by ns."""
    from util.aio import aio_context_new, aio_poll
    from util.coroutine_lock import co_aio_sleep_ns
    from util.timer import (QEMU_CLOCK_VIRTUAL, qemu_clock_get_ns,
                            qemu_clock_is_external, qemu_clock_set_external,
                            qemu_clock_step_ns)

    was_external = qemu_clock_is_external(QEMU_CLOCK_VIRTUAL)
    qemu_clock_set_external(QEMU_CLOCK_VIRTUAL, True)
    try:
        ctx = aio_context_new()
        woke = []
        start = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL)

        def sleeper(opaque):
            co_aio_sleep_ns(ctx, QEMU_CLOCK_VIRTUAL, 1000)
            woke.append(qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL) - start)

        qemu_coroutine_enter(qemu_coroutine_create(sleeper))
        qemu_clock_step_ns(QEMU_CLOCK_VIRTUAL, 999)
        while aio_poll(ctx, False):
            pass
        assert woke == []
        qemu_clock_step_ns(QEMU_CLOCK_VIRTUAL, 1)
        while aio_poll(ctx, False):
            pass
        assert woke == [1000]
    finally:
        qemu_clock_set_external(QEMU_CLOCK_VIRTUAL, was_external)
