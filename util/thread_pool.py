"""Worker threads for blocking work (thread-pool.c, include/block/thread-pool.h).

func(arg) -> int runs in a worker; the completion callback cb(opaque, ret)
always runs in the pool's AioContext, from a bottom half that the worker
schedules.  At most max_threads (64) workers; a worker that has had nothing
to do for 10 s exits.

Difference from the C: a finished request is also queued on pool.done, so
that the completion bottom half takes finished requests in O(1) instead of
walking every request in flight for THREAD_DONE ones (pool.head still holds
them all, as C's list does).  An exception raised by func is a programming
error: it is re-raised from the completion bottom half, in the context's
thread (where C would have crashed), instead of killing the worker and
leaving the request hanging.  A new worker is started when the idle ones
are fewer than the queued requests (see thread_pool_submit_aio).  And in
deterministic mode (util/deterministic.py) there are no workers: func runs
when the request is submitted.

Reads and writes of a file descriptor (thread_pool_submit_rw_co, for the
file driver) go to C workers instead (util/thread_pool_c.c): a Python
worker needs the GIL to take a request and to hand its result back, and
waits for it whenever the event loop runs another completion.  The C
workers never touch Python objects; their pool's eventfd is an fd handler
of the context, which completes their requests as the bottom half does.
PYQEMU_THREAD_POOL=python (read at import) keeps them in Python.
"""

import errno
import os
import threading
from collections import deque
from typing import Any, Callable, Optional

from util import deterministic
from util.aio import (AIOCBInfo, AioContext, BlockAIOCB, BlockCompletionFunc,
                      aio_bh_new, aio_set_fd_handler, qemu_bh_cancel,
                      qemu_bh_delete, qemu_bh_schedule, qemu_get_aio_context)
from util.qemu_thread_posix import (QemuSemaphore, qemu_sem_destroy,
                                    qemu_sem_init, qemu_sem_post,
                                    qemu_sem_timedwait)
from util.coroutine import (coroutine_fn, qemu_coroutine_enter,
                            qemu_coroutine_self, qemu_coroutine_yield,
                            qemu_in_coroutine)

ThreadPoolFunc = Callable[[Any], int]

THREAD_QUEUED = 0
THREAD_ACTIVE = 1
THREAD_DONE = 2

# Milliseconds an idle worker waits for work before it exits.
WORKER_IDLE_TIMEOUT_MS = 10000


class ThreadPoolElement(BlockAIOCB):
    # Leaving THREAD_QUEUED is done under pool.lock; after that only the
    # worker writes state, and it writes ret first.
    __slots__ = ("pool", "func", "arg", "state", "ret", "exc")


class ThreadPool:
    __slots__ = (
        "ctx", "completion_bh", "lock", "worker_stopped", "sem",
        "max_threads", "new_thread_bh",
        # Only used in the AioContext.
        "head",
        # Protected by lock.
        "request_list", "done", "cur_threads", "idle_threads",
        "new_threads", "pending_threads", "stopping",
        # The C workers for reads and writes, made on first use.
        "c_pool")

    def __init__(self) -> None:
        self.ctx: Optional[AioContext] = None
        self.lock = threading.Lock()
        self.worker_stopped = threading.Condition(self.lock)
        self.sem = QemuSemaphore()
        qemu_sem_init(self.sem, 0)
        self.max_threads = 64
        self.completion_bh = None
        self.new_thread_bh = None
        self.head: dict = {}
        self.c_pool = None
        self.request_list: deque = deque()
        self.done: deque = deque()
        self.cur_threads = 0
        self.idle_threads = 0
        self.new_threads = 0       # backlog of threads we need to create
        self.pending_threads = 0   # threads created but not running yet
        self.stopping = False


def worker_thread(pool: ThreadPool) -> None:
    lock = pool.lock
    lock.acquire()
    pool.pending_threads -= 1
    do_spawn_thread(pool)
    pool.idle_threads += 1

    while not pool.stopping:
        lock.release()
        got = qemu_sem_timedwait(pool.sem, WORKER_IDLE_TIMEOUT_MS) == 0
        lock.acquire()
        if not got:
            if pool.request_list:
                continue    # the count for a queued request is on its way
            break
        if pool.stopping:
            break

        pool.idle_threads -= 1
        req = pool.request_list.popleft()
        req.state = THREAD_ACTIVE
        lock.release()

        thread_pool_run_req(req)

        # C goes idle once it has queued the result and scheduled the
        # bottom half, all under the lock.  Here the eventfd write in
        # qemu_bh_schedule gives the GIL away, and the event loop runs at
        # once: the worker must already count as idle then, or the loop's
        # next submission would start a thread it does not need; and it
        # must not hold pool.lock, which the submission takes.
        lock.acquire()
        pool.idle_threads += 1
        pool.done.append(req)
        lock.release()
        qemu_bh_schedule(pool.completion_bh)
        lock.acquire()

    pool.idle_threads -= 1
    pool.cur_threads -= 1
    pool.worker_stopped.notify()
    lock.release()


def thread_pool_run_req(req: ThreadPoolElement) -> None:
    try:
        ret = req.func(req.arg)
    except BaseException as exc:    # see the module comment
        req.exc = exc
        ret = -errno.EIO
    req.ret = ret
    req.state = THREAD_DONE


def do_spawn_thread(pool: ThreadPool) -> None:
    """Runs with pool.lock held."""
    if not pool.new_threads:
        return
    pool.new_threads -= 1
    pool.pending_threads += 1
    threading.Thread(target=worker_thread, args=(pool,), name="worker",
                     daemon=True).start()


def spawn_thread_bh_fn(opaque: ThreadPool) -> None:
    with opaque.lock:
        do_spawn_thread(opaque)


def spawn_thread(pool: ThreadPool) -> None:
    """Runs with pool.lock held."""
    pool.cur_threads += 1
    pool.new_threads += 1
    # A starting worker starts the next one, so the submitter never spends
    # time creating threads in a loop; the first one is started from the
    # AioContext.
    if not pool.pending_threads:
        qemu_bh_schedule(pool.new_thread_bh)


def thread_pool_completion_bh(opaque: ThreadPool) -> None:
    pool = opaque
    done = pool.done
    # Workers and thread_pool_cancel append, deque.popleft is atomic, and
    # only this bottom half (possibly nested through cb) takes from it.
    while done:
        elem = done.popleft()
        del pool.head[elem]
        if elem.exc is not None:
            exc, elem.exc = elem.exc, None
            raise exc
        if elem.cb is not None:
            # Schedule ourselves in case cb() calls aio_poll() to wait for
            # another request that completed at the same time.
            qemu_bh_schedule(pool.completion_bh)
            elem.cb(elem.opaque, elem.ret)
            # The loop looks at pool.done again anyway, so the bottom half
            # need not run once more for nothing (QEMU 2.9+ cancels it here
            # too, whoever scheduled it meanwhile).
            qemu_bh_cancel(pool.completion_bh)
        block_io.qemu_aio_unref(elem)


def thread_pool_cancel(acb: BlockAIOCB) -> None:
    """A request that no worker has taken is completed with -ECANCELED;
    a running one is left to finish."""
    elem = acb
    pool = elem.pool
    if elem.func is None:
        # a C worker's request: one still queued completes with -ECANCELED
        # through thread_pool_c_completion
        pool.c_pool.cancel(elem)
        return
    with pool.lock:
        # Taking a count of the semaphore without waiting "steals" the
        # request from the workers; with the lock held it stays QUEUED.
        if (elem.state == THREAD_QUEUED and
                qemu_sem_timedwait(pool.sem, 0) == 0):
            pool.request_list.remove(elem)
            elem.ret = -errno.ECANCELED
            elem.state = THREAD_DONE
            pool.done.append(elem)
            qemu_bh_schedule(pool.completion_bh)


def thread_pool_get_aio_context(acb: BlockAIOCB) -> AioContext:
    return acb.pool.ctx


thread_pool_aiocb_info = AIOCBInfo(
    ThreadPoolElement,
    cancel_async=thread_pool_cancel,
    get_aio_context=thread_pool_get_aio_context)


def thread_pool_elem_new(pool: ThreadPool, func: Optional[ThreadPoolFunc],
                         arg: Any, cb: Optional[BlockCompletionFunc],
                         opaque: Any) -> ThreadPoolElement:
    """A queued request, listed in pool.head (func None: a C worker's)."""
    req = block_io.qemu_aio_get(thread_pool_aiocb_info, None, cb, opaque)
    req.func = func
    req.arg = arg
    req.state = THREAD_QUEUED
    req.ret = -errno.EINPROGRESS
    req.exc = None
    req.pool = pool
    pool.head[req] = None
    return req


def thread_pool_submit_aio(pool: ThreadPool, func: ThreadPoolFunc, arg: Any,
                           cb: Optional[BlockCompletionFunc],
                           opaque: Any) -> BlockAIOCB:
    req = thread_pool_elem_new(pool, func, arg, cb, opaque)

    if deterministic.deterministic_enabled():
        # No worker threads: the work runs now, at this instant of the
        # virtual clock, and completes from the bottom half as usual.
        req.state = THREAD_ACTIVE
        thread_pool_run_req(req)
        pool.done.append(req)
        qemu_bh_schedule(pool.completion_bh)
        return req

    with pool.lock:
        # C spawns when idle_threads == 0, relying on a woken worker to
        # leave the idle count at once and on new threads to start at once.
        # Under the GIL both run late, and a burst would see the same idle
        # worker again and again: count the idle workers and the ones being
        # started that no queued request waits for.
        available = (pool.idle_threads + pool.new_threads +
                     pool.pending_threads)
        if (available <= len(pool.request_list) and
                pool.cur_threads < pool.max_threads):
            spawn_thread(pool)
        pool.request_list.append(req)
    qemu_sem_post(pool.sem)
    return req


class ThreadPoolCo:
    __slots__ = ("co", "ret")

    def __init__(self, co: Any, ret: int) -> None:
        self.co = co
        self.ret = ret


def thread_pool_co_cb(opaque: ThreadPoolCo, ret: int) -> None:
    opaque.ret = ret
    qemu_coroutine_enter(opaque.co, None)


@coroutine_fn
def thread_pool_submit_co(pool: ThreadPool, func: ThreadPoolFunc,
                          arg: Any) -> int:
    tpc = ThreadPoolCo(qemu_coroutine_self(), -errno.EINPROGRESS)
    assert qemu_in_coroutine()
    thread_pool_submit_aio(pool, func, arg, thread_pool_co_cb, tpc)
    qemu_coroutine_yield()
    return tpc.ret


def thread_pool_c_completion(opaque: ThreadPool) -> None:
    """The fd handler of the C workers' eventfd: complete their finished
    requests as thread_pool_completion_bh completes the others."""
    pool = opaque
    c_pool = pool.c_pool
    c_pool.clear_notifier()
    while True:
        item = c_pool.take_one()
        if item is None:
            break
        elem, ret = item
        del pool.head[elem]
        elem.ret = ret
        elem.state = THREAD_DONE
        if elem.cb is not None:
            # as the bottom half re-schedules itself: a callback that polls
            # for another request finished at the same time must see it
            if c_pool.has_done():
                os.eventfd_write(c_pool.fileno(), 1)
            elem.cb(elem.opaque, ret)
        block_io.qemu_aio_unref(elem)


@coroutine_fn
def thread_pool_submit_rw_co(pool: ThreadPool, func: ThreadPoolFunc,
                             arg: Any, fd: int, iov: list, offset: int,
                             nbytes: int, is_write: bool) -> int:
    """preadv/pwritev of the buffers iov at offset on fd, run by the C
    workers, which do what func(arg) does for such a request: a short
    read ends with zeroes and returns 0, a short write is -EINVAL.
    Without the C helper, and in deterministic mode, func(arg) runs as
    thread_pool_submit_co runs it."""
    if ThreadPoolC is None or deterministic.deterministic_enabled():
        return thread_pool_submit_co(pool, func, arg)
    assert qemu_in_coroutine()
    if pool.c_pool is None:
        pool.c_pool = ThreadPoolC(pool.max_threads)
        aio_set_fd_handler(pool.ctx, pool.c_pool.fileno(), False,
                           thread_pool_c_completion, None, pool)

    tpc = ThreadPoolCo(qemu_coroutine_self(), -errno.EINPROGRESS)
    req = thread_pool_elem_new(pool, None, None, thread_pool_co_cb, tpc)
    pool.c_pool.submit_rw(req, fd, iov, offset, nbytes, is_write)
    qemu_coroutine_yield()
    return tpc.ret


def thread_pool_submit(pool: ThreadPool, func: ThreadPoolFunc,
                       arg: Any) -> None:
    thread_pool_submit_aio(pool, func, arg, None, None)


def thread_pool_init_one(pool: ThreadPool, ctx: Optional[AioContext]) -> None:
    if ctx is None:
        ctx = qemu_get_aio_context()
    pool.ctx = ctx
    pool.completion_bh = aio_bh_new(ctx, thread_pool_completion_bh, pool)
    pool.new_thread_bh = aio_bh_new(ctx, spawn_thread_bh_fn, pool)


def thread_pool_new(ctx: Optional[AioContext]) -> ThreadPool:
    pool = ThreadPool()
    thread_pool_init_one(pool, ctx)
    return pool


def thread_pool_free(pool: Optional[ThreadPool]) -> None:
    """Wait for the workers to exit; no request may be in flight."""
    if pool is None:
        return
    assert not pool.head

    with pool.lock:
        # Stop new threads from spawning.
        qemu_bh_delete(pool.new_thread_bh)
        pool.cur_threads -= pool.new_threads
        pool.new_threads = 0

        pool.stopping = True
        while pool.cur_threads > 0:
            qemu_sem_post(pool.sem)
            pool.worker_stopped.wait()

    qemu_bh_delete(pool.completion_bh)
    qemu_sem_destroy(pool.sem)
    if pool.c_pool is not None:
        aio_set_fd_handler(pool.ctx, pool.c_pool.fileno(), False, None,
                           None, None)
        pool.c_pool.close()
        pool.c_pool = None


# The C workers (util/thread_pool_c.c), unless not built or
# PYQEMU_THREAD_POOL=python asks for the Python workers only.
ThreadPoolC = None
if os.environ.get("PYQEMU_THREAD_POOL", "") != "python":
    try:
        from util._thread_pool_c import ThreadPoolC  # noqa: F811
    except ImportError:
        pass

# qemu_aio_get/qemu_aio_unref live in block/io.py, which (through the
# drivers) may import this module: bind it last, so that such a cycle finds
# every name above already defined.
from block import io as block_io  # noqa: E402
