"""tests/test-thread-pool.c: all six /thread-pool/* cases, same names and
assertions.

One difference, to keep the cancel tests fast and independent of the
scheduler: C's long_cb sleeps 2 s and the test sleeps 1 s hoping that some
jobs have started by then and none has finished.  Here long_cb waits until
the test releases it, and the test waits until every worker is busy with a
long job; the jobs are released once the queued ones have been cancelled.
"""

import errno
import os
import threading
import time

import pytest

from block import io as block_io
from util.aio import aio_context_new, aio_context_unref, aio_get_thread_pool, \
    aio_notify, aio_poll
from util.coroutine import qemu_coroutine_create, qemu_coroutine_enter
from util.thread_pool import (ThreadPoolC, thread_pool_cancel,
                              thread_pool_submit, thread_pool_submit_aio,
                              thread_pool_submit_co, thread_pool_submit_rw_co)

ctx = None
pool = None
active = 0

# Stands for C's atomic operations on WorkerTestData.n.
atomic_lock = threading.Lock()


def setup_module() -> None:
    global ctx, pool
    ctx = aio_context_new()
    pool = aio_get_thread_pool(ctx)


def teardown_module() -> None:
    aio_context_unref(ctx)


class WorkerTestData:
    def __init__(self) -> None:
        self.aiocb = None
        self.n = 0
        self.ret = 0


def atomic_fetch_inc(data: WorkerTestData) -> int:
    with atomic_lock:
        old = data.n
        data.n += 1
        return old


def atomic_cmpxchg(data: WorkerTestData, old: int, new: int) -> int:
    with atomic_lock:
        cur = data.n
        if cur == old:
            data.n = new
        return cur


def worker_cb(data: WorkerTestData) -> int:
    return atomic_fetch_inc(data)


class LongJobs:
    """What long_cb waits for (C: g_usleep(2000000)), and how many started."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = 0


long_jobs = LongJobs()


def long_cb(data: WorkerTestData) -> int:
    atomic_fetch_inc(data)
    with atomic_lock:
        long_jobs.started += 1
    # The timeout only keeps a broken test from hanging.
    long_jobs.release.wait(30)
    atomic_fetch_inc(data)
    return 0


def done_cb(data: WorkerTestData, ret: int) -> None:
    global active
    assert data.ret == -errno.EINPROGRESS or data.ret == -errno.ECANCELED
    data.ret = ret
    data.aiocb = None

    # Callbacks are serialized, so no need to use atomic ops.
    active -= 1


def test_submit() -> None:
    data = WorkerTestData()
    thread_pool_submit(pool, worker_cb, data)
    while data.n == 0:
        aio_poll(ctx, True)
    assert data.n == 1


def test_submit_aio() -> None:
    global active
    data = WorkerTestData()
    data.ret = -errno.EINPROGRESS
    data.aiocb = thread_pool_submit_aio(pool, worker_cb, data, done_cb, data)

    # The callbacks are not called until after the first wait.
    active = 1
    assert data.ret == -errno.EINPROGRESS
    while data.ret == -errno.EINPROGRESS:
        aio_poll(ctx, True)
    assert active == 0
    assert data.n == 1
    assert data.ret == 0


def co_test_cb(data: WorkerTestData) -> None:
    global active
    active = 1
    data.n = 0
    data.ret = -errno.EINPROGRESS
    thread_pool_submit_co(pool, worker_cb, data)

    # The test continues in test_submit_co, after qemu_coroutine_enter...

    assert data.n == 1
    data.ret = 0
    active -= 1

    # The test continues in test_submit_co, after aio_poll...


def test_submit_co() -> None:
    data = WorkerTestData()
    co = qemu_coroutine_create(co_test_cb)

    qemu_coroutine_enter(co, data)

    # Back here once the worker has started.

    assert active == 1
    assert data.ret == -errno.EINPROGRESS

    # aio_poll will execute the rest of the coroutine.

    while data.ret == -errno.EINPROGRESS:
        aio_poll(ctx, True)

    # Back here after the coroutine has finished.

    assert active == 0
    assert data.ret == 0


def test_submit_many() -> None:
    global active
    data = [WorkerTestData() for i in range(100)]

    # Start more work items than there will be threads.
    for i in range(100):
        data[i].n = 0
        data[i].ret = -errno.EINPROGRESS
        thread_pool_submit_aio(pool, worker_cb, data[i], done_cb, data[i])

    active = 100
    while active > 0:
        aio_poll(ctx, True)
    for i in range(100):
        assert data[i].n == 1
        assert data[i].ret == 0


def wait_for_busy_workers() -> None:
    """Until every worker runs a long job (C: g_usleep(1000000)).  Workers
    still being spawned will take a job too, so wait for them as well."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with pool.lock:
            spawning = pool.new_threads + pool.pending_threads
            cur_threads = pool.cur_threads
        with atomic_lock:
            started = long_jobs.started
        if started and not spawning and started == cur_threads:
            return
        time.sleep(0.001)


def do_test_cancel(sync: bool) -> None:
    global active, long_jobs
    data = [WorkerTestData() for i in range(100)]
    long_jobs = LongJobs()

    # Start more work items than there will be threads, to ensure the pool
    # is full.
    test_submit_many()

    # Start long running jobs, to ensure we can cancel some.
    for i in range(100):
        data[i].n = 0
        data[i].ret = -errno.EINPROGRESS
        data[i].aiocb = thread_pool_submit_aio(pool, long_cb, data[i],
                                               done_cb, data[i])

    # Starting the threads may be left to a bottom half.  Let it run, but
    # do not waste too much time...
    active = 100
    aio_notify(ctx)
    aio_poll(ctx, False)

    # Wait for the threads to start, with some sanity testing on the
    # behavior of the scheduler...
    assert active == 100
    wait_for_busy_workers()
    assert active > 50

    # Cancel the jobs that haven't been started yet.
    num_canceled = 0
    for i in range(100):
        if atomic_cmpxchg(data[i], 0, 3) == 0:
            data[i].ret = -errno.ECANCELED
            if sync:
                block_io.bdrv_aio_cancel(data[i].aiocb)
            else:
                block_io.bdrv_aio_cancel_async(data[i].aiocb)
            num_canceled += 1
    assert active > 0
    assert num_canceled < 100

    # The started jobs may finish now (C: their sleep ends).
    long_jobs.release.set()

    for i in range(100):
        if data[i].aiocb is not None and data[i].n != 3:
            if sync:
                # Canceling the others will be a blocking operation.
                block_io.bdrv_aio_cancel(data[i].aiocb)
            else:
                block_io.bdrv_aio_cancel_async(data[i].aiocb)

    # Finish execution and execute any remaining callbacks.
    while active > 0:
        aio_poll(ctx, True)
    assert active == 0
    for i in range(100):
        if data[i].n == 3:
            assert data[i].ret == -errno.ECANCELED
            assert data[i].aiocb is None
        else:
            assert data[i].n == 2
            assert data[i].ret == 0 or data[i].ret == -errno.ECANCELED
            assert data[i].aiocb is None


def test_cancel() -> None:
    do_test_cancel(True)


def test_cancel_async() -> None:
    do_test_cancel(False)


def test_pool_size_follows_queue_depth() -> None:
    """Not in QEMU: with four requests kept in flight, the pool runs four
    workers, as C's does.  Under the GIL a finished worker and a starting
    one are slow to count as idle; the submissions must not start threads
    for requests that those will take."""
    own_ctx = aio_context_new()
    own_pool = aio_get_thread_pool(own_ctx)
    remaining = [400]
    in_flight = [0]

    def work(arg) -> int:
        time.sleep(0.0002)
        return 0

    def done_cb(opaque, ret: int) -> None:
        in_flight[0] -= 1
        submit()

    def submit() -> None:
        while remaining[0] and in_flight[0] < 4:
            remaining[0] -= 1
            in_flight[0] += 1
            thread_pool_submit_aio(own_pool, work, None, done_cb, None)

    submit()
    while in_flight[0]:
        aio_poll(own_ctx, True)
    assert own_pool.cur_threads <= 4
    aio_context_unref(own_ctx)


# Not in QEMU: the C workers of thread_pool_submit_rw_co (the file driver's
# reads and writes).

def _rw_pool():
    own_ctx = aio_context_new()
    return own_ctx, aio_get_thread_pool(own_ctx)


def _run_rw(own_ctx, own_pool, *requests):
    """Run thread_pool_submit_rw_co for each (fd, iov, offset, nbytes,
    is_write) in its own coroutine; returns their results."""
    results = [None] * len(requests)

    def must_not_run(arg) -> int:
        raise AssertionError("the C workers did not take the request")

    def entry(i: int) -> None:
        results[i] = thread_pool_submit_rw_co(own_pool, must_not_run, None,
                                              *requests[i])

    for i in range(len(requests)):
        qemu_coroutine_enter(qemu_coroutine_create(entry), i)
    return results


@pytest.mark.skipif(ThreadPoolC is None, reason="C thread pool not built")
def test_submit_rw_c_workers(tmp_path) -> None:
    own_ctx, own_pool = _rw_pool()
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    os.write(fd, b"\xaa" * 1000)
    data = bytearray(b"\x11" * 4096 + b"\x22" * 4096)
    readback = bytearray(b"\xff" * 8192)
    tail = bytearray(b"\xff" * 4096)
    results = _run_rw(own_ctx, own_pool,
                      (fd, [memoryview(data)[:4096], memoryview(data)[4096:]],
                       8192, 8192, True))
    while None in results:
        aio_poll(own_ctx, True)
    assert results == [0]
    results = _run_rw(own_ctx, own_pool,
                      (fd, [memoryview(readback)], 8192, 8192, False),
                      # past the end of the file: zeroes, as aio_worker
                      (fd, [memoryview(tail)], 16000, 4096, False),
                      (-1, [memoryview(tail)], 0, 4096, False))
    while None in results:
        aio_poll(own_ctx, True)
    assert results == [0, 0, -errno.EBADF]
    assert readback == data
    assert tail[:384] == b"\x22" * 384 and tail[384:] == bytes(4096 - 384)
    assert not own_pool.head
    os.close(fd)
    aio_context_unref(own_ctx)


@pytest.mark.skipif(ThreadPoolC is None, reason="C thread pool not built")
def test_submit_rw_cancel_queued() -> None:
    """With one worker busy on a long read, a queued request is cancelled
    (-ECANCELED) and the running one finishes."""
    own_ctx, own_pool = _rw_pool()
    own_pool.max_threads = 1
    fd = os.open("/dev/zero", os.O_RDONLY)
    big = bytearray(64 << 20)
    small = bytearray(512)
    results = _run_rw(own_ctx, own_pool,
                      (fd, [memoryview(big)], 0, len(big), False),
                      (fd, [memoryview(small)], 0, 512, False))
    queued = list(own_pool.head)[1]
    thread_pool_cancel(queued)
    while None in results:
        aio_poll(own_ctx, True)
    assert results == [0, -errno.ECANCELED]
    os.close(fd)
    aio_context_unref(own_ctx)
