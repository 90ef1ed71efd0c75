"""Counting semaphores (util/qemu-thread-posix.c's QemuSemaphore).

threading.Semaphore is written in Python on top of a Condition: every
post and wait runs a dozen Python frames and takes two locks.  The thread
pool posts once per request, so here the count lives in a
queue.SimpleQueue, whose put and get are C and wait without the GIL: one
token in the queue is one unit of the count.
"""

from __future__ import annotations

from queue import Empty, SimpleQueue
from typing import Optional


class QemuSemaphore:
    __slots__ = ("tokens",)

    def __init__(self) -> None:
        self.tokens: SimpleQueue = SimpleQueue()


def qemu_sem_init(sem: QemuSemaphore, init: int) -> None:
    sem.tokens = SimpleQueue()
    for _ in range(init):
        sem.tokens.put(None)


def qemu_sem_post(sem: QemuSemaphore) -> None:
    sem.tokens.put(None)


def qemu_sem_timedwait(sem: QemuSemaphore, ms: Optional[int]) -> int:
    """0 once the count could be taken, -1 if it stayed zero for ms
    milliseconds (ms == 0: do not wait at all; None: wait for ever, as
    qemu_sem_wait)."""
    try:
        if ms == 0:
            sem.tokens.get_nowait()
        else:
            sem.tokens.get(timeout=None if ms is None else ms / 1000)
    except Empty:
        return -1
    return 0


def qemu_sem_wait(sem: QemuSemaphore) -> int:
    return qemu_sem_timedwait(sem, None)


def qemu_sem_destroy(sem: QemuSemaphore) -> None:
    sem.tokens = SimpleQueue()
