"""Progress reports of qemu-img -p: the Python twin of QEMU's
util/qemu-progress.c.

With -p the percentage is printed to stdout as "    (12.34/100%)\\r" each
time it moved by more than min_skip; without it nothing is printed unless
the user sends SIGUSR1, which prints the current value to stderr.  QEMU
keeps the state in C floats; every step here is rounded to single
precision the same way, so that the same calls print the same numbers.
"""

from __future__ import annotations

import signal
import struct
import sys

from util.cutils import fflush_stdout, printf

_F32 = struct.Struct('f')


def f32(x: float) -> float:
    """x rounded to a C float."""
    return _F32.unpack(_F32.pack(x))[0]


class ProgressState:
    __slots__ = ('current', 'last_print', 'min_skip', 'print', 'end')

    def __init__(self) -> None:
        self.current = 0.0
        self.last_print = 0.0
        self.min_skip = 0.0
        # set by qemu_progress_init()
        self.print = None
        self.end = None


state = ProgressState()
print_pending = False


def progress_simple_print() -> None:
    printf("    (%3.2f/100%%)\r", state.current)
    fflush_stdout()


def progress_simple_end() -> None:
    printf("\n")


def progress_simple_init() -> None:
    state.print = progress_simple_print
    state.end = progress_simple_end


def sigusr_print(signum: int, frame) -> None:
    global print_pending
    print_pending = True


def progress_dummy_print() -> None:
    global print_pending
    if print_pending:
        sys.stderr.write("    (%3.2f/100%%)\n" % state.current)
        sys.stderr.flush()
        print_pending = False


def progress_dummy_end() -> None:
    pass


def progress_dummy_init() -> None:
    signal.signal(signal.SIGUSR1, sigusr_print)
    state.print = progress_dummy_print
    state.end = progress_dummy_end


def qemu_progress_init(enabled: bool, min_skip: float) -> None:
    """Report progress (or, disabled, only on SIGUSR1) whenever it moved
    by more than min_skip percent."""
    state.min_skip = f32(min_skip)
    if enabled:
        progress_simple_init()
    else:
        progress_dummy_init()


def qemu_progress_end() -> None:
    state.end()


def qemu_progress_print(delta: float, max: int) -> None:
    """max 0: delta is the absolute percentage done.  Otherwise delta is
    the progress since the last call as a percentage of max, so that a
    function can count for part of a bigger job."""
    delta = f32(delta)
    if max == 0:
        current = delta
    else:
        current = f32(state.current + f32(f32(delta / 100) * max))
    if current > 100:
        current = 100.0
    state.current = current

    if (current > f32(state.last_print + state.min_skip) or
            current < f32(state.last_print - state.min_skip) or
            current == 0 or current == 100):
        state.last_print = state.current
        state.print()
