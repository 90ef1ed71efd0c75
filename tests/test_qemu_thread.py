"""util/qemu_thread_posix.py: the counting semaphore of the thread pool."""

import threading
import time

from util.qemu_thread_posix import (QemuSemaphore, qemu_sem_destroy,
                                    qemu_sem_init, qemu_sem_post,
                                    qemu_sem_timedwait, qemu_sem_wait)


def new_sem(init: int) -> QemuSemaphore:
    sem = QemuSemaphore()
    qemu_sem_init(sem, init)
    return sem


def test_sem_counts():
    sem = new_sem(2)
    assert qemu_sem_timedwait(sem, 0) == 0
    assert qemu_sem_wait(sem) == 0
    assert qemu_sem_timedwait(sem, 0) == -1
    qemu_sem_post(sem)
    assert qemu_sem_timedwait(sem, 0) == 0
    assert qemu_sem_timedwait(sem, 0) == -1


def test_sem_timedwait_times_out():
    sem = new_sem(0)
    start = time.monotonic()
    assert qemu_sem_timedwait(sem, 50) == -1
    assert time.monotonic() - start >= 0.045


def test_sem_wakes_waiter():
    sem = new_sem(0)
    results = []
    waiter = threading.Thread(
        target=lambda: results.append(qemu_sem_timedwait(sem, 10000)))
    waiter.start()
    time.sleep(0.01)
    qemu_sem_post(sem)
    waiter.join(5)
    assert results == [0]


def test_sem_destroy_drops_count():
    sem = new_sem(3)
    qemu_sem_destroy(sem)
    assert qemu_sem_timedwait(sem, 0) == -1
