"""EventNotifier on an eventfd (util/event_notifier-posix.c).

A notifier is a counter in the kernel: event_notifier_set() makes its fd
readable, event_notifier_test_and_clear() drains it.  Both may be called from
any thread; the fd is what an AioContext polls.
"""

import os
import sys
from typing import Callable

EventNotifierHandler = Callable[["EventNotifier"], None]

# eventfd(2) adds an 8-byte native integer to the counter.
_ONE = (1).to_bytes(8, sys.byteorder)


class EventNotifier:
    """struct EventNotifier: with eventfd, rfd and wfd are the same fd."""

    __slots__ = ("rfd", "wfd")

    def __init__(self) -> None:
        self.rfd = -1
        self.wfd = -1


def event_notifier_init_fd(e: EventNotifier, fd: int) -> None:
    e.rfd = fd
    e.wfd = fd


def event_notifier_init(e: EventNotifier, active: bool) -> int:
    """Open the eventfd; returns 0 or -errno.  Linux only: the pipe fallback
    of the C code is not carried over (the project targets Linux)."""
    try:
        fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    except OSError as err:
        return -err.errno
    e.rfd = e.wfd = fd
    if active:
        event_notifier_set(e)
    return 0


def event_notifier_cleanup(e: EventNotifier) -> None:
    if e.rfd != e.wfd:
        os.close(e.rfd)
    os.close(e.wfd)
    e.rfd = e.wfd = -1


def event_notifier_get_fd(e: EventNotifier) -> int:
    return e.rfd


def event_notifier_set(e: EventNotifier) -> int:
    try:
        os.write(e.wfd, _ONE)
    except BlockingIOError:
        # The counter is saturated: a read is pending anyway.
        pass
    except OSError as err:
        return -err.errno
    return 0


def event_notifier_test_and_clear(e: EventNotifier) -> bool:
    """Drain the counter; True if it was set.  (EINTR is retried by Python.)"""
    try:
        return len(os.read(e.rfd, 8)) > 0
    except BlockingIOError:
        return False

