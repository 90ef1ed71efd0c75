"""Coroutine queues, mutexes, rwlocks and sleep: the Python twin of
util/qemu-coroutine-lock.c and util/qemu-coroutine-sleep.c.

A coroutine woken by qemu_co_queue_next() is not entered at once: it goes
on the waker's co_queue_wakeup list and runs when the waker yields or
terminates (qemu_co_queue_run_restart, called by qemu_coroutine_enter).
"""

from __future__ import annotations

from collections import deque

from util.aio import aio_timer_new
from util.coroutine import (Coroutine, coroutine_fn, qemu_co_queue_run_restart,
                            qemu_coroutine_enter, qemu_coroutine_self,
                            qemu_coroutine_yield, qemu_in_coroutine)
from util.timer import (SCALE_NS, qemu_clock_get_ns, timer_del, timer_free,
                        timer_mod)

__all__ = [
    "CoQueue", "qemu_co_queue_init", "qemu_co_queue_wait",
    "qemu_co_queue_run_restart", "qemu_co_queue_next",
    "qemu_co_queue_restart_all", "qemu_co_enter_next", "qemu_co_queue_empty",
    "CoMutex", "qemu_co_mutex_init", "qemu_co_mutex_lock",
    "qemu_co_mutex_unlock", "CoRwlock", "qemu_co_rwlock_init",
    "qemu_co_rwlock_rdlock", "qemu_co_rwlock_unlock", "qemu_co_rwlock_wrlock",
    "co_aio_sleep_ns",
]


class CoQueue(deque):
    """Coroutines waiting for something, in FIFO order: the queue is the
    deque of them (C links them through co_queue_next).  Being a deque
    rather than holding one, it costs no Python __init__ to make, and every
    tracked request makes one."""

    __slots__ = ()


def qemu_co_queue_init(queue: CoQueue) -> None:
    queue.clear()


@coroutine_fn
def qemu_co_queue_wait(queue: CoQueue) -> None:
    queue.append(qemu_coroutine_self())
    qemu_coroutine_yield()
    assert qemu_in_coroutine()


def qemu_co_queue_do_restart(queue: CoQueue, single: bool) -> bool:
    if not queue:
        return False
    wakeup = qemu_coroutine_self().co_queue_wakeup
    if single:
        wakeup.append(queue.popleft())
    else:
        wakeup.extend(queue)
        queue.clear()
    return True


@coroutine_fn
def qemu_co_queue_next(queue: CoQueue) -> bool:
    assert qemu_in_coroutine()
    return qemu_co_queue_do_restart(queue, True)


@coroutine_fn
def qemu_co_queue_restart_all(queue: CoQueue) -> None:
    assert qemu_in_coroutine()
    qemu_co_queue_do_restart(queue, False)


def qemu_co_enter_next(queue: CoQueue) -> bool:
    """Enter the first waiter now; usable outside coroutine context."""
    if not queue:
        return False
    qemu_coroutine_enter(queue.popleft(), None)
    return True


def qemu_co_queue_empty(queue: CoQueue) -> bool:
    return not queue


class CoMutex:
    __slots__ = ("locked", "queue")

    def __init__(self) -> None:
        self.locked = False
        self.queue = CoQueue()


def qemu_co_mutex_init(mutex: CoMutex) -> None:
    mutex.locked = False
    qemu_co_queue_init(mutex.queue)


@coroutine_fn
def qemu_co_mutex_lock(mutex: CoMutex) -> None:
    while mutex.locked:
        qemu_co_queue_wait(mutex.queue)
    mutex.locked = True


@coroutine_fn
def qemu_co_mutex_unlock(mutex: CoMutex) -> None:
    assert mutex.locked
    assert qemu_in_coroutine()
    mutex.locked = False
    qemu_co_queue_next(mutex.queue)


class CoRwlock:
    __slots__ = ("writer", "reader", "queue")

    def __init__(self) -> None:
        self.writer = False
        self.reader = 0
        self.queue = CoQueue()


def qemu_co_rwlock_init(lock: CoRwlock) -> None:
    lock.writer = False
    lock.reader = 0
    qemu_co_queue_init(lock.queue)


@coroutine_fn
def qemu_co_rwlock_rdlock(lock: CoRwlock) -> None:
    while lock.writer:
        qemu_co_queue_wait(lock.queue)
    lock.reader += 1


@coroutine_fn
def qemu_co_rwlock_unlock(lock: CoRwlock) -> None:
    assert qemu_in_coroutine()
    if lock.writer:
        lock.writer = False
        qemu_co_queue_restart_all(lock.queue)
    else:
        lock.reader -= 1
        assert lock.reader >= 0
        # Only a writer can be waiting: wake one.
        if not lock.reader:
            qemu_co_queue_next(lock.queue)


@coroutine_fn
def qemu_co_rwlock_wrlock(lock: CoRwlock) -> None:
    while lock.writer or lock.reader:
        qemu_co_queue_wait(lock.queue)
    lock.writer = True


def co_sleep_cb(co: Coroutine) -> None:
    qemu_coroutine_enter(co, None)


@coroutine_fn
def co_aio_sleep_ns(ctx, clock_type: int, ns: int) -> None:
    """Yield until ns nanoseconds of clock_type have passed on ctx's timers."""
    ts = aio_timer_new(ctx, clock_type, SCALE_NS, co_sleep_cb,
                       qemu_coroutine_self())
    timer_mod(ts, qemu_clock_get_ns(clock_type) + ns)
    qemu_coroutine_yield()
    timer_del(ts)
    timer_free(ts)
