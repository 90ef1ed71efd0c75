"""String helpers: the parts of QEMU's util/cutils.c the tools use, and the
pieces of the C library whose exact behaviour the tools' output depends on.

QEMU's number parsers are built on libc's strtoull/strtol/strtod, and qemu-io
and qemu-img parse their command lines with glibc's getopt and print through
stdio.  Python's own int()/float()/argparse/print differ from these in what
they accept, in their messages and in when output reaches the file
descriptor, so the libc behaviour is reproduced here once:

- strtoull, strtol, strtod: (value, end index, errno), as glibc computes them.
- qemu_strtoi64, qemu_strtou64, qemu_strtod, qemu_strtod_finite,
  qemu_strtosz (7.2's rules:
  fractions with a suffix, hex, 64-bit range, the hex-suffix warning).
- Getopt: glibc's getopt/getopt_long, argument permutation and messages.
- CFile, c_stdout, printf, fflush: a FILE with glibc's buffering, so that
  stdout reaches the descriptor in the same pieces as from the C tools (what
  a reader of merged stdout and stderr sees depends on it).

Out parameters follow util/error.py: ``endptr`` is a one-element list that
receives an index into the string, or None (then the whole string must be
consumed, as with a NULL endptr in QEMU).
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from typing import Optional, Sequence

from util.qemu_error import error_printf, warn_report

ULLONG_MAX = (1 << 64) - 1
LONG_MAX = (1 << 63) - 1
LONG_MIN = -(1 << 63)
INT64_MAX = LONG_MAX
DBL_MIN = sys.float_info.min

_C_SPACE = ' \t\n\v\f\r'


def _digit_value(ch: str) -> int:
    if '0' <= ch <= '9':
        return ord(ch) - 48
    if 'a' <= ch <= 'z':
        return ord(ch) - 87
    if 'A' <= ch <= 'Z':
        return ord(ch) - 55
    return 99


def _strtox(nptr: str, base: int) -> tuple[bool, int, int, int]:
    """The common scan of strtoul/strtol: (negative, magnitude, end, ndigits).
    end is 0 when nothing was converted, as glibc sets endptr = nptr."""
    i = 0
    n = len(nptr)
    while i < n and nptr[i] in _C_SPACE:
        i += 1
    neg = False
    if i < n and nptr[i] in '+-':
        neg = nptr[i] == '-'
        i += 1
    if (base in (0, 16) and nptr[i:i + 2] in ('0x', '0X')
            and i + 2 < n and _digit_value(nptr[i + 2]) < 16):
        i += 2
        base = 16
    elif base == 0:
        base = 8 if nptr[i:i + 1] == '0' else 10
    start = i
    value = 0
    while i < n and _digit_value(nptr[i]) < base:
        value = value * base + _digit_value(nptr[i])
        i += 1
    if i == start:
        return False, 0, 0, 0
    return neg, value, i, i - start


def strtoull(nptr: str, base: int = 0) -> tuple[int, int, int]:
    """glibc strtoull: (value, end index, errno); '-' negates modulo 2^64."""
    neg, value, end, _ = _strtox(nptr, base)
    if value > ULLONG_MAX:
        return ULLONG_MAX, end, errno.ERANGE
    if neg:
        value = -value & ULLONG_MAX
    return value, end, 0


def strtol(nptr: str, base: int = 0) -> tuple[int, int, int]:
    """glibc strtol for a 64-bit long: (value, end index, errno)."""
    neg, value, end, _ = _strtox(nptr, base)
    if neg:
        value = -value
    if value > LONG_MAX:
        return LONG_MAX, end, errno.ERANGE
    if value < LONG_MIN:
        return LONG_MIN, end, errno.ERANGE
    return value, end, 0


def _scan_float(s: str, i: int) -> tuple[int, bool]:
    """End of the decimal or hex float starting at s[i] (after the sign), and
    whether its mantissa has a non-zero digit; end is i if there is none."""
    n = len(s)
    hexa = s[i:i + 2] in ('0x', '0X')
    j = i + 2 if hexa else i
    digits = '0123456789abcdefABCDEF' if hexa else '0123456789'
    mant_start = j
    nonzero = False
    while j < n and s[j] in digits:
        nonzero = nonzero or s[j] != '0'
        j += 1
    ndigits = j - mant_start
    if j < n and s[j] == '.':
        j += 1
        frac_start = j
        while j < n and s[j] in digits:
            nonzero = nonzero or s[j] != '0'
            j += 1
        ndigits += j - frac_start
    if ndigits == 0:
        # "0x" without hex digits still converts the "0"
        return (i + 1, False) if hexa else (i, False)
    exp_chars = 'pP' if hexa else 'eE'
    if j < n and s[j] in exp_chars:
        k = j + 1
        if k < n and s[k] in '+-':
            k += 1
        if k < n and s[k].isdigit() and s[k].isascii():
            while k < n and s[k].isdigit() and s[k].isascii():
                k += 1
            j = k
    return j, nonzero


def strtod(nptr: str) -> tuple[float, int, int]:
    """glibc strtod in the C locale: (value, end index, errno)."""
    i = 0
    n = len(nptr)
    while i < n and nptr[i] in _C_SPACE:
        i += 1
    sign = 1.0
    if i < n and nptr[i] in '+-':
        if nptr[i] == '-':
            sign = -1.0
        i += 1
    low = nptr[i:i + 8].lower()
    if low.startswith('inf'):
        return sign * float('inf'), i + (8 if low == 'infinity' else 3), 0
    if low.startswith('nan'):
        end = i + 3
        if nptr[end:end + 1] == '(':
            close = nptr.find(')', end)
            body = nptr[end + 1:close] if close >= 0 else None
            if body is not None and all(c.isascii() and (c.isalnum() or c == '_')
                                        for c in body):
                end = close + 1
        return sign * float('nan'), end, 0
    end, nonzero = _scan_float(nptr, i)
    if end == i:
        return 0.0, 0, 0
    text = nptr[i:end]
    if text[:2] in ('0x', '0X'):
        body = text[2:] or '0'
        if body[0] == '.':
            body = '0' + body
        if 'p' not in body.lower():
            body += 'p0'
        try:
            value = float.fromhex(body)
        except OverflowError:
            value = float('inf')
    else:
        value = float(text)
    value *= sign
    if value in (float('inf'), float('-inf')):
        return value, end, errno.ERANGE
    if nonzero and abs(value) < DBL_MIN:
        return value, end, errno.ERANGE
    return value, end, 0


# --- util/cutils.c -----------------------------------------------------------

def check_strtox_error(nptr: str, ep: int, endptr: Optional[list],
                       libc_errno: int) -> int:
    """The common tail of the qemu_strto* functions: store the end, turn "no
    conversion" and leftovers without an endptr into -EINVAL."""
    if endptr is not None:
        endptr[0] = ep
    if libc_errno == 0 and ep == 0:
        return -errno.EINVAL
    if endptr is None and ep < len(nptr):
        return -errno.EINVAL
    return -libc_errno


def qemu_strtoi64(nptr: str, endptr: Optional[list],
                  base: int) -> tuple[int, int]:
    """(ret, value): strtoll with QEMU's error convention."""
    value, ep, err = strtol(nptr, base)
    return check_strtox_error(nptr, ep, endptr, err), value


def qemu_strtou64(nptr: str, endptr: Optional[list],
                  base: int) -> tuple[int, int]:
    """(ret, value): strtoull with QEMU's error convention; an overflow
    reports -ERANGE with the value saturated."""
    value, ep, err = strtoull(nptr, base)
    return check_strtox_error(nptr, ep, endptr, err), value


def qemu_strtod(nptr: str, endptr: Optional[list]) -> tuple[int, float]:
    value, ep, err = strtod(nptr)
    return check_strtox_error(nptr, ep, endptr, err), value


def qemu_strtod_finite(nptr: str, endptr: Optional[list]) -> tuple[int, float]:
    """Like qemu_strtod, but infinities and NaNs are -EINVAL with nothing
    consumed."""
    ret, value = qemu_strtod(nptr, endptr)
    if ret == 0 and (value != value or value in (float('inf'), float('-inf'))):
        if endptr is not None:
            endptr[0] = 0
        ret = -errno.EINVAL
    return ret, value


def suffix_mul(suffix: str, unit: int) -> int:
    """The multiplier of a size suffix (B, K, M, G, T, P, E, any case), or -1."""
    shift = {'b': 0, 'k': 1, 'm': 2, 'g': 3, 't': 4, 'p': 5,
             'e': 6}.get(suffix.lower() if suffix else '')
    if shift is None:
        return -1
    return unit ** shift


def _double_to_u64(x: float) -> int:
    """A C (uint64_t) cast of a non-negative double as x86-64 gcc compiles
    it: at 2^64 and above the conversion overflows to 0."""
    if x < 2.0 ** 63:
        return int(x)
    x -= 2.0 ** 63
    if x >= 2.0 ** 63:
        return 0        # cvttsd2si's 0x8000... xor the top bit
    return int(x) | (1 << 63)


def do_strtosz(nptr: str, endptr: Optional[list], default_suffix: str,
               unit: int) -> tuple[int, int]:
    """(ret, value) for a size: a decimal integer with an optional fraction,
    or hex, and an optional suffix; the exact product rounded, as QEMU 7.2."""
    ret_val = 0
    end = [0]
    hexa = False
    valf = 0
    retval, val = qemu_strtou64(nptr, end, 10)
    ep = end[0]
    if retval:
        return _strtosz_out(nptr, ep, endptr, retval, 0)
    if '-' in nptr[:ep]:
        return _strtosz_out(nptr, 0, endptr, -errno.EINVAL, 0)
    if val == 0 and nptr[ep:ep + 1] in ('x', 'X'):
        # hex: reparse, and no fraction allowed
        retval, val = qemu_strtou64(nptr, end, 16)
        ep = end[0]
        if retval:
            return _strtosz_out(nptr, ep, endptr, retval, 0)
        if nptr[ep:ep + 1] == '.':
            return _strtosz_out(nptr, 0, endptr, -errno.EINVAL, 0)
        hexa = True
    elif nptr[ep:ep + 1] == '.':
        # a fraction: "1.k" is fine without digits, an exponent is not
        f = ep
        fend = [0]
        retval, fraction = qemu_strtod_finite(nptr[f:], fend)
        if retval:
            ep = f + fend[0] + 1 if fend[0] else f + 1
        else:
            ep = f + fend[0]
            if 'e' in nptr[f:ep] or 'E' in nptr[f:ep]:
                return _strtosz_out(nptr, 0, endptr, -errno.EINVAL, 0)
            # a 64-bit fixed-point fraction
            valf = _double_to_u64(fraction * 2.0 ** 64)
    mul = suffix_mul(nptr[ep:ep + 1], unit)
    if mul > 0:
        if hexa:
            warn_report("Using a multiplier suffix on hex numbers "
                        "is deprecated: %s", nptr)
        ep += 1
    else:
        mul = suffix_mul(default_suffix, unit)
        assert mul > 0
    if mul == 1:
        # a fraction needs a scale
        if valf != 0:
            return _strtosz_out(nptr, 0, endptr, -errno.EINVAL, 0)
    else:
        # exact 64.64 x 64.0 product, rounding 0.5 up
        total = val * mul + ((valf * mul) >> 64) + (((valf * mul) >> 63) & 1)
        if total > ULLONG_MAX:
            return _strtosz_out(nptr, ep, endptr, -errno.ERANGE, 0)
        val = total
    return _strtosz_out(nptr, ep, endptr, ret_val, val)


def _strtosz_out(nptr: str, ep: int, endptr: Optional[list], retval: int,
                 val: int) -> tuple[int, int]:
    """The 'out:' label of do_strtosz."""
    if endptr is not None:
        endptr[0] = ep
    elif ep != len(nptr):
        # C reads *endptr; past the terminating NUL that is garbage
        retval = -errno.EINVAL
    return retval, (val if retval == 0 else 0)


def qemu_strtosz(nptr: str, endptr: Optional[list] = None) -> tuple[int, int]:
    """A size in bytes, default suffix B, binary units: (ret, value)."""
    return do_strtosz(nptr, endptr, 'B', 1024)


def qemu_strtosz_MiB(nptr: str, endptr: Optional[list] = None) -> tuple[int, int]:
    return do_strtosz(nptr, endptr, 'M', 1024)


def qemu_strtosz_metric(nptr: str,
                        endptr: Optional[list] = None) -> tuple[int, int]:
    return do_strtosz(nptr, endptr, 'B', 1000)


# --- glibc getopt / getopt_long ---------------------------------------------

no_argument = 0
required_argument = 1
optional_argument = 2


class option:
    """struct option of getopt_long; val is the character or number returned."""
    __slots__ = ('name', 'has_arg', 'val')

    def __init__(self, name: str, has_arg: int, val):
        self.name = name
        self.has_arg = has_arg
        self.val = val


class Getopt:
    """glibc's getopt (longopts None) or getopt_long over one argv, as an
    iterator of (option, optarg).

    Unknown options and missing arguments yield '?' after printing glibc's
    message to stderr with argv[0] as the program name.  Options may follow
    operands (GNU permutation, unless optstring starts with '+' or
    POSIXLY_CORRECT is set); '--' ends the options.  While and after
    iterating, ``argv`` is permuted as glibc leaves it and ``optind`` indexes
    the first operand, so the C idiom ``argv[optind]`` carries over.
    """

    def __init__(self, argv: Sequence[str], optstring: str,
                 longopts: Optional[Sequence[option]] = None):
        self.argv = list(argv)
        self.permute = not (optstring.startswith('+')
                            or 'POSIXLY_CORRECT' in os.environ)
        self.optstring = optstring.lstrip('+-')
        self.longopts = longopts
        self.optind = 1
        self.optarg: Optional[str] = None

    def _err(self, msg: str) -> None:
        c_stderr_write('%s: %s\n' % (self.argv[0], msg))

    def _missing(self) -> str:
        return ':' if self.optstring.startswith(':') else '?'

    def _short_has_arg(self, c: str) -> int:
        """0 none, 1 required, 2 optional; -1 if not an option."""
        i = self.optstring.find(c)
        if i < 0 or c in (':', ';'):
            return -1
        if self.optstring[i + 1:i + 3] == '::':
            return 2
        return 1 if self.optstring[i + 1:i + 2] == ':' else 0

    def _long(self, args: list, k: int) -> tuple[object, Optional[str], int]:
        """Match args[k], '--name[=value]': (val or '?', optarg, next k)."""
        nextchar = args[k][2:]
        name, eq, value = nextchar.partition('=')
        found = None
        for o in self.longopts:
            if o.name == name:
                found = o
                break
        if found is None:
            ambig = []
            for o in self.longopts:
                if not o.name.startswith(name):
                    continue
                if found is None:
                    found = o
                elif (o.has_arg, o.val) != (found.has_arg, found.val):
                    if not ambig:
                        ambig.append(found)
                    ambig.append(o)
            if ambig:
                self._err("option '--%s' is ambiguous; possibilities:%s"
                          % (nextchar, ''.join(" '--%s'" % o.name
                                               for o in ambig)))
                return '?', None, k + 1
            if found is None:
                self._err("unrecognized option '--%s'" % nextchar)
                return '?', None, k + 1
        if eq:
            if found.has_arg == no_argument:
                self._err("option '--%s' doesn't allow an argument"
                          % found.name)
                return '?', None, k + 1
            return found.val, value, k + 1
        if found.has_arg == required_argument:
            if k + 1 < len(args):
                return found.val, args[k + 1], k + 2
            self._err("option '--%s' requires an argument" % found.name)
            return self._missing(), None, k + 1
        return found.val, None, k + 1

    def __iter__(self):
        args = self.argv
        opts: list[str] = []        # the option words, in order
        nonopts: list[str] = []     # the operands met on the way
        k = 1
        while k < len(args):
            word = args[k]
            if word == '--':
                # glibc moves the '--' before the operands met so far and
                # leaves optind after it
                self._settle(opts + ['--'], nonopts, args[k + 1:])
                return
            if not word.startswith('-') or word == '-':
                if not self.permute:
                    break
                nonopts.append(word)
                k += 1
                continue
            if word.startswith('--') and self.longopts is not None:
                start = k
                val, optarg, k = self._long(args, k)
                opts.extend(args[start:k])
                self._settle(opts, nonopts, args[k:])
                self.optarg = optarg
                yield val, optarg
                continue
            # a cluster of short options
            opts.append(word)
            j = 1
            while j < len(word):
                c = word[j]
                j += 1
                has_arg = self._short_has_arg(c)
                result = c
                self.optarg = None
                if has_arg < 0:
                    self._err("invalid option -- '%s'" % c)
                    result = '?'
                elif has_arg and j < len(word):
                    self.optarg = word[j:]
                    j = len(word)
                elif has_arg == 1:
                    if k + 1 < len(args):
                        k += 1
                        opts.append(args[k])
                        self.optarg = args[k]
                    else:
                        self._err("option requires an argument -- '%s'" % c)
                        result = self._missing()
                self._settle(opts, nonopts, args[k + 1:])
                yield result, self.optarg
            k += 1
        self._settle(opts, nonopts, args[k:])

    def _settle(self, opts: list, nonopts: list, rest: list) -> None:
        """Keep argv and optind as glibc would show them at this point."""
        self.argv = [self.argv[0]] + opts + nonopts + rest
        self.optind = 1 + len(opts)


# --- stdio -------------------------------------------------------------------

BUFSIZ = 8192


class CFile:
    """A stdio FILE writing to a descriptor with glibc's buffering.

    The mode is chosen at the first write, as _IO_file_doallocate does: line
    buffered on a terminal, else fully buffered with a buffer of st_blksize
    bytes (at most BUFSIZ).  Fully buffered output reaches the descriptor in
    whole buffers, at multiples of the buffer size since the last fflush.
    Also usable as sys.stdout, so that a stray print() keeps its place.
    """

    def __init__(self, fd: int):
        self.fd = fd
        self.buf = bytearray()
        self.size = 0               # 0: not allocated yet
        self.line_buffered = False

    def _allocate(self) -> None:
        self.size = BUFSIZ
        try:
            st = os.fstat(self.fd)
        except OSError:
            return
        if stat.S_ISCHR(st.st_mode) and os.isatty(self.fd):
            self.line_buffered = True
        if 0 < st.st_blksize < BUFSIZ:
            self.size = st.st_blksize

    def _write_fd(self, data) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except BrokenPipeError:
                return      # qemu-io ignores SIGPIPE; the write just fails
            view = view[n:]

    def write(self, data) -> int:
        if isinstance(data, str):
            data = data.encode('utf-8', 'surrogateescape')
        if not self.size:
            self._allocate()
        if self.line_buffered:
            self.buf += data
            nl = self.buf.rfind(b'\n')
            if nl >= 0 or len(self.buf) >= self.size:
                cut = len(self.buf) if nl < 0 else nl + 1
                self._write_fd(self.buf[:cut])
                del self.buf[:cut]
            return len(data)
        avail = self.size - len(self.buf)
        if len(data) <= avail:
            self.buf += data
            return len(data)
        # fill up, write the full buffer, then whole blocks directly
        self.buf += data[:avail]
        rest = data[avail:]
        self._write_fd(self.buf)
        self.buf.clear()
        direct = len(rest) - len(rest) % self.size
        if direct:
            self._write_fd(rest[:direct])
        self.buf += rest[direct:]
        return len(data)

    def flush(self) -> None:
        if self.buf:
            self._write_fd(self.buf)
            self.buf.clear()

    def discard(self) -> None:
        """Forget buffered output, as abort() does in glibc."""
        self.buf.clear()

    def fileno(self) -> int:
        return self.fd

    def isatty(self) -> bool:
        return os.isatty(self.fd)


c_stdout = CFile(1)


def printf(fmt: str, *args) -> None:
    """printf(3) to c_stdout; fmt uses Python's % syntax."""
    c_stdout.write(fmt % args if args else fmt)


def fflush_stdout() -> None:
    c_stdout.flush()


def c_stderr_write(text: str) -> None:
    """fprintf(stderr, ...): stderr is unbuffered, so each call is written at
    once (through sys.stderr, to stay in order with Python writers)."""
    error_printf('%s', text)
