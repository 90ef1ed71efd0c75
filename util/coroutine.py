"""Coroutines on greenlet: the Python twin of util/qemu-coroutine.c and
util/coroutine-ucontext.c.

A Coroutine *is* a greenlet, so qemu_coroutine_self() is just
greenlet.getcurrent() and a switch costs what greenlet costs.  Outside any
coroutine the current greenlet is the thread's main greenlet: it plays the
part of QEMU's per-thread "leader" coroutine.

`caller` holds the greenlet that entered the coroutine (QEMU keeps the
caller Coroutine; a greenlet is what we switch back to).  Finished
coroutines park in their trampoline loop and go back to a per-thread pool,
as QEMU's alloc_pool/release_pool do, because creating a greenlet costs
about twenty switches.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from typing import Any, Callable

from greenlet import GreenletExit, getcurrent, greenlet

CoroutineEntry = Callable[[Any], None]

POOL_BATCH_SIZE = 64

# What a switch back to the caller carries (QEMU's CoroutineAction): a yield
# switches with no value, which is cheapest; termination with this marker.
COROUTINE_TERMINATE = "terminate"


# PYQEMU_COROUTINE_DEBUG=1 (read at import) makes coroutine_fn check.
_COROUTINE_DEBUG = os.environ.get("PYQEMU_COROUTINE_DEBUG", "") not in ("", "0")


def coroutine_fn(func: Callable) -> Callable:
    """Marks a function that may only run in coroutine context.

    Free by default; in debug mode every call checks qemu_in_coroutine(), which is what QEMU's annotation means.
    """
    if not _COROUTINE_DEBUG:
        return func

    def checked(*args, **kwargs):
        assert qemu_in_coroutine(), \
            f"coroutine_fn {func.__qualname__} called outside a coroutine"
        return func(*args, **kwargs)

    checked.__name__ = func.__name__
    checked.__qualname__ = func.__qualname__
    checked.__doc__ = func.__doc__
    checked.__wrapped__ = func
    return checked


class Coroutine(greenlet):
    """struct Coroutine: entry, caller, co_queue_wakeup.

    entry_arg travels as the value of the first switch, and co_queue_next
    (the link CoQueue uses) is not needed: queues are deques of coroutines.
    `exception` carries what escaped the entry function to the enterer.
    """

    __slots__ = ("entry", "caller", "co_queue_wakeup", "exception")

    def __init__(self) -> None:
        super().__init__(_coroutine_trampoline)
        self.entry = None
        self.caller = None
        self.co_queue_wakeup = deque()
        self.exception = None


def _coroutine_trampoline(arg: Any) -> None:
    """coroutine_trampoline: run entries for as long as the pool reuses us."""
    self = getcurrent()
    while True:
        try:
            self.entry(arg)
        except GreenletExit:
            # The pool is being torn down (the greenlet is garbage).
            return
        except BaseException as exc:  # handed to qemu_coroutine_enter
            self.exception = exc
        caller = self.caller
        self.caller = None
        self.entry = None
        arg = caller.switch(COROUTINE_TERMINATE)


class _Pool(threading.local):
    """The thread's alloc_pool.  Greenlets belong to the thread that made
    them, so there is no cross-thread release_pool as in QEMU."""

    def __init__(self) -> None:
        self.free: list[Coroutine] = []


_pool = _Pool()


def qemu_coroutine_create(entry: CoroutineEntry) -> Coroutine:
    free = _pool.free
    co = free.pop() if free else Coroutine()
    co.entry = entry
    return co


def _coroutine_delete(co: Coroutine) -> None:
    # co.caller was cleared by the trampoline.
    free = _pool.free
    if len(free) < POOL_BATCH_SIZE * 2:
        free.append(co)


# The hot functions bind getcurrent and greenlet.switch as default arguments:
# that skips a global lookup and a bound-method allocation per switch.
def qemu_coroutine_enter(co: Coroutine, opaque: Any = None,
                         _getcurrent=getcurrent,
                         _switch=greenlet.switch,
                         _terminate=COROUTINE_TERMINATE) -> None:
    """Run co until it yields or terminates.

    An exception that escapes the coroutine's entry function is raised here,
    in the code that entered it, with its traceback.
    """
    if co.caller is not None:
        raise AssertionError("Co-routine re-entered recursively")
    co.caller = _getcurrent()
    # opaque reaches the entry function through the switch (entry_arg).
    ret = _switch(co, opaque)
    if co.co_queue_wakeup:
        qemu_co_queue_run_restart(co)
    if ret is _terminate:
        _coroutine_terminated(co)


def _coroutine_terminated(co: Coroutine) -> None:
    exc = co.exception
    _coroutine_delete(co)
    if exc is not None:
        co.exception = None
        raise exc


def qemu_coroutine_yield(_getcurrent=getcurrent,
                         _switch=greenlet.switch) -> None:
    self = _getcurrent()
    try:
        to = self.caller
    except AttributeError:
        to = None
    if to is None:
        raise AssertionError("Co-routine is yielding to no one")
    self.caller = None
    _switch(to)     # COROUTINE_YIELD: the caller sees an empty tuple


# qemu_coroutine_self() -> greenlet: the running Coroutine, or the thread's
# main greenlet (QEMU's leader) outside coroutine context.  It is greenlet's
# own getcurrent: the hot path calls it once per request.
qemu_coroutine_self = getcurrent


def qemu_in_coroutine() -> bool:
    return type(getcurrent()) is Coroutine


def qemu_co_queue_run_restart(co: Coroutine) -> None:
    """Enter the coroutines that co woke while it ran (qemu-coroutine-lock.c).

    It lives here rather than in coroutine_lock.py because
    qemu_coroutine_enter calls it on every switch back.
    """
    wakeup = co.co_queue_wakeup
    while wakeup:
        qemu_coroutine_enter(wakeup.popleft(), None)


# The C versions of the two hot functions (util/coroutine_c.c), unless the
# helper is not built or PYQEMU_COROUTINE=python asks for the code above.
COROUTINE_BACKEND = "python"
if os.environ.get("PYQEMU_COROUTINE", "") != "python":
    try:
        from util import _coroutine_c
    except ImportError:
        pass
    else:
        _coroutine_c.init(Coroutine, COROUTINE_TERMINATE,
                          qemu_co_queue_run_restart, _coroutine_terminated,
                          _pool, POOL_BATCH_SIZE * 2)
        qemu_coroutine_create = _coroutine_c.qemu_coroutine_create  # noqa: F811
        qemu_coroutine_enter = _coroutine_c.qemu_coroutine_enter  # noqa: F811
        qemu_coroutine_yield = _coroutine_c.qemu_coroutine_yield  # noqa: F811
        COROUTINE_BACKEND = "c"
