"""Trace points: a small stand-in for QEMU's trace-events and its log backend.

Every trace point is a module-level function trace_<name>(*args), off by
default: then it only tests a flag.  trace_enable(pattern) turns on the
events whose name matches pattern ('*' matches any run of characters and
'?' one, as in QEMU's -T/--trace pattern); an enabled event writes one line
"<name> <formatted args>" to the trace output (stderr by default).

Formats use C's printf syntax as trace-events does; %p prints an object's
identity (id) in hex, "(nil)" for None.  Modules with their own events call
trace_event_register(name, fmt) once at import and keep the function it
returns; patterns given earlier apply to it as well.
"""

from __future__ import annotations

import re
import sys
from typing import Callable, TextIO

_CONV_RE = re.compile(r"%[-#0 +]*[0-9]*(?:\.[0-9]+)?([a-zA-Z%])")


class TraceEvent:
    __slots__ = ("name", "fmt", "pointer_args", "state")

    def __init__(self, name: str, fmt: str) -> None:
        self.name = name
        # Python's % has no %p: print pointers as hex ids through %s
        convs = [m.group(1) for m in _CONV_RE.finditer(fmt)
                 if m.group(1) != "%"]
        self.pointer_args = tuple(i for i, c in enumerate(convs) if c == "p")
        self.fmt = _CONV_RE.sub(
            lambda m: "%s" if m.group(1) == "p" else m.group(0), fmt)
        self.state = False

    def emit(self, args: tuple) -> None:
        if self.pointer_args:
            args = list(args)
            for i in self.pointer_args:
                args[i] = "(nil)" if args[i] is None else hex(id(args[i]))
        _output.write("%s %s\n" % (self.name, self.fmt % tuple(args)))


_events: dict[str, TraceEvent] = {}
_patterns: list[tuple[re.Pattern, bool]] = []
_output: TextIO = sys.stderr


def _pattern_re(pattern: str) -> re.Pattern:
    """glib's g_pattern_match_simple, which QEMU matches event names with:
    '*' stands for any run of characters, '?' for one."""
    wildcards = {"*": ".*", "?": "."}
    return re.compile("".join(wildcards.get(c) or re.escape(c)
                              for c in pattern) + r"\Z", re.S)


def trace_event_register(name: str, fmt: str) -> Callable[..., None]:
    """Define event name with printf-style fmt; return its trace point."""
    assert name not in _events, "trace event %s defined twice" % name
    ev = TraceEvent(name, fmt)
    for pat, state in _patterns:
        if pat.match(name):
            ev.state = state
    _events[name] = ev

    def trace_point(*args) -> None:
        if ev.state:
            ev.emit(args)

    trace_point.__name__ = trace_point.__qualname__ = "trace_" + name
    return trace_point


def trace_enable(pattern: str, state: bool = True) -> int:
    """Set the state of every event matching pattern, now and for events
    registered later.  Returns how many known events matched."""
    pat = _pattern_re(pattern)
    _patterns.append((pat, state))
    n = 0
    for ev in _events.values():
        if pat.match(ev.name):
            ev.state = state
            n += 1
    return n


def trace_event_get_state(name: str) -> bool:
    ev = _events.get(name)
    return ev is not None and ev.state


def trace_set_output(stream: TextIO) -> None:
    global _output
    _output = stream


def trace_reset() -> None:
    """Turn every event off and forget the patterns (for tests)."""
    _patterns.clear()
    for ev in _events.values():
        ev.state = False


def trace_list_events(out: TextIO) -> None:
    """Write the name of every registered event, one a line (-T help)."""
    for name in _events:
        out.write("%s\n" % name)


# The events of block/io.c (QEMU's trace-events, same names and formats).
trace_bdrv_co_readv = trace_event_register(
    "bdrv_co_readv", "bs %p sector_num %d nb_sectors %d")
trace_bdrv_co_readv_no_serialising = trace_event_register(
    "bdrv_co_readv_no_serialising", "bs %p sector_num %d nb_sectors %d")
trace_bdrv_co_copy_on_readv = trace_event_register(
    "bdrv_co_copy_on_readv", "bs %p sector_num %d nb_sectors %d")
trace_bdrv_co_writev = trace_event_register(
    "bdrv_co_writev", "bs %p sector_num %d nb_sectors %d")
trace_bdrv_co_write_zeroes = trace_event_register(
    "bdrv_co_write_zeroes", "bs %p sector_num %d nb_sectors %d flags %#x")
trace_bdrv_co_do_copy_on_readv = trace_event_register(
    "bdrv_co_do_copy_on_readv",
    "bs %p sector_num %d nb_sectors %d cluster_sector_num %d "
    "cluster_nb_sectors %d")
trace_bdrv_co_io_em = trace_event_register(
    "bdrv_co_io_em", "bs %p sector_num %d nb_sectors %d is_write %d acb %p")
trace_bdrv_aio_readv = trace_event_register(
    "bdrv_aio_readv", "bs %p sector_num %d nb_sectors %d opaque %p")
trace_bdrv_aio_writev = trace_event_register(
    "bdrv_aio_writev", "bs %p sector_num %d nb_sectors %d opaque %p")
trace_bdrv_aio_write_zeroes = trace_event_register(
    "bdrv_aio_write_zeroes",
    "bs %p sector_num %d nb_sectors %d flags %#x opaque %p")
trace_bdrv_aio_flush = trace_event_register(
    "bdrv_aio_flush", "bs %p opaque %p")
trace_bdrv_aio_discard = trace_event_register(
    "bdrv_aio_discard", "bs %p sector_num %d nb_sectors %d opaque %p")
trace_multiwrite_cb = trace_event_register(
    "multiwrite_cb", "mcb %p ret %d")
trace_bdrv_aio_multiwrite = trace_event_register(
    "bdrv_aio_multiwrite", "mcb %p num_callbacks %d num_reqs %d")
