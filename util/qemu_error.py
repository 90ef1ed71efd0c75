"""Error reporting to the user: the Python twin of QEMU's util/qemu-error.c
(error_report, warn_report, error_printf, the program-name prefix) and of
the reporting half of util/error.c (error_report_err, error_reportf_err).

Messages go to stderr, which is unbuffered in C: every piece is written at
once, so it keeps its place against stdout as the C tools' messages do.
"""

from __future__ import annotations

import sys
from typing import Optional

from util.error import Error, error_get_pretty

_prgname: Optional[str] = None


def error_init(argv0: str) -> None:
    """Set the program name printed before messages (the basename)."""
    global _prgname
    _prgname = argv0.rsplit('/', 1)[-1]


def g_get_prgname() -> Optional[str]:
    return _prgname


def error_printf(fmt: str, *args) -> None:
    """fprintf(stderr, ...): written at once, as bytes (names that are not
    UTF-8 come back as they were given)."""
    text = fmt % args if args else fmt
    err = sys.stderr
    buf = getattr(err, 'buffer', None)
    if buf is None:
        err.write(text)
        err.flush()
        return
    err.flush()
    buf.write(text.encode('utf-8', 'surrogateescape'))
    buf.flush()


def print_loc() -> None:
    """The "prog: " prefix; QEMU's command-line and file locations are not
    kept here."""
    if _prgname is not None:
        error_printf('%s: ', _prgname)


def vreport(prefix: str, fmt: str, args: tuple) -> None:
    print_loc()
    error_printf('%s%s\n', prefix, fmt % args if args else fmt)


def error_report(fmt: str, *args) -> None:
    vreport('', fmt, args)


def warn_report(fmt: str, *args) -> None:
    vreport('warning: ', fmt, args)


def info_report(fmt: str, *args) -> None:
    vreport('info: ', fmt, args)


def error_report_err(err: Error) -> None:
    """Print err and its hint, as error_report_err in util/error.c."""
    error_report('%s', error_get_pretty(err))
    if err.hint:
        error_printf('%s', err.hint)


def error_reportf_err(err: Error, fmt: str, *args) -> None:
    """error_report_err with fmt % args put before the message."""
    err.msg = (fmt % args if args else fmt) + err.msg
    error_report_err(err)
