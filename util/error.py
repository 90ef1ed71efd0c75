"""Error reporting through errp: the part of QEMU's util/error.c the block
layer uses.

Convention (C ``Error **errp`` -> Python):

- An error pointer is a one-element list, ``errp = [None]``; a function that
  fails stores an Error in ``errp[0]`` (C: ``*errp = err``) and, as in C,
  also returns its own failure value (a negative errno, None, ...).
- ``errp=None`` means the caller does not want the message (C: NULL).
- ``error_abort`` turns any error stored through it into an AssertionError
  (C: &error_abort aborts).
- C's ``Error *local_err = NULL; f(..., &local_err); if (local_err) ...``
  becomes ``local_err = [None]; f(..., local_err); if local_err[0]: ...``,
  and ``error_propagate(errp, local_err[0])`` hands it up.
"""

from __future__ import annotations

import os
from typing import Optional

Errp = Optional[list]


class Error:
    """An error message (C: struct Error), optionally with a hint.

    errno is the error number error_setg_errno() built the message from
    (None otherwise).  QEMU keeps only the text; the Pythonic front uses it
    to raise OSError with the errno the message names, which the return
    value of a layer above may have replaced (a format layer returns
    -EINVAL when its file child cannot be opened).
    """
    __slots__ = ('msg', 'hint', 'errno')

    def __init__(self, msg: str, os_errno: Optional[int] = None):
        self.msg = msg
        self.hint: Optional[str] = None
        self.errno = os_errno

    def __repr__(self) -> str:
        return 'Error(%r)' % self.msg


class _ErrorAbort(list):
    """The target of &error_abort: storing into it is a programming error."""

    def __setitem__(self, index, err) -> None:
        raise AssertionError('Unexpected error: %s' % err.msg)


error_abort = _ErrorAbort([None])


def error_setg(errp: Errp, fmt: str, *args) -> None:
    """Store a new error built from fmt % args (C: error_setg)."""
    if errp is None:
        return
    assert errp[0] is None, 'error already set: %s' % errp[0].msg
    errp[0] = Error(fmt % args if args else fmt)


def error_setg_errno(errp: Errp, os_errno: int, fmt: str, *args) -> None:
    """Like error_setg, with ": strerror(os_errno)" appended."""
    if errp is None:
        return
    msg = fmt % args if args else fmt
    if os_errno != 0:
        msg = '%s: %s' % (msg, os.strerror(os_errno))
    error_setg(errp, '%s', msg)
    errp[0].errno = os_errno


def error_propagate(dst_errp: Errp, local_err: Optional[Error]) -> None:
    """Hand local_err to dst_errp; dropped if dst is None or already set."""
    if local_err is None or dst_errp is None:
        return
    if dst_errp is not error_abort and dst_errp[0] is not None:
        return
    dst_errp[0] = local_err


def error_append_hint(errp: Errp, fmt: str, *args) -> None:
    if errp is None or errp[0] is None:
        return
    errp[0].hint = (errp[0].hint or '') + (fmt % args if args else fmt)


def error_get_pretty(err: Error) -> str:
    return err.msg

