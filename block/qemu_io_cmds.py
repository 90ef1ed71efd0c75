"""The commands of qemu-io: the Python twin of QEMU's qemu-io-cmds.c.

The structure is QEMU 2.5's (a sorted table of cmdinfo_t, one <name>_f
function per command, the same helpers in the same order); what a user sees
(options, messages, help texts, return values) is the installed QEMU 7.2's.

Output goes through util.cutils.printf, a stdio stream with glibc's
buffering, and errors to stderr at once, so that merged output comes out in
the same order as from the C program.  A command returns 0 or a negative
errno; qemu-io exits with 1 when any command failed.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from typing import Any, Callable, Optional

from block import core, io
from block import block_backend as bb
from block.accounting import (BLOCK_ACCT_FLUSH, BLOCK_ACCT_READ,
                              BLOCK_ACCT_WRITE, BlockAcctCookie,
                              block_acct_done, block_acct_failed,
                              block_acct_invalid, block_acct_start)
from block.block_int import (BDRV_O_NO_FLUSH, BDRV_O_NOCACHE, BDRV_O_RDWR,
                             BDRV_OPT_CACHE_DIRECT, BDRV_OPT_CACHE_NO_FLUSH,
                             BDRV_REQ_FUA, BDRV_REQ_MAY_UNMAP,
                             BDRV_REQUEST_MAX_SECTORS, BDRV_SECTOR_BITS,
                             BDRV_SECTOR_SIZE, BlockDriverInfo, INT_MAX)
from block.qapi import bdrv_get_specific_info, bdrv_image_info_specific_dump
from util.aio import aio_poll, aio_timer_new, qemu_get_aio_context
from util.coroutine import qemu_coroutine_create, qemu_coroutine_enter
from util.cutils import (Getopt, c_stderr_write, c_stdout, fflush_stdout,
                         printf, qemu_strtosz, strtol)
from util.error import error_append_hint, error_setg
from util.iov import (QEMUIOVector, iov_memset, qemu_iovec_add,
                      qemu_iovec_init)
from util.main_loop import main_loop_wait
from util.qemu_error import error_report, error_report_err
from util.qemu_option import (QemuOptsList, parse_option_bool,
                               qemu_opts_create, qemu_opts_do_parse,
                               qemu_opts_parse_id, qemu_opts_print_help,
                               qemu_opts_to_qdict)
from util.timer import (QEMU_CLOCK_HOST, SCALE_MS, SCALE_NS,
                        qemu_clock_get_ns, timer_free, timer_mod)

BDRV_REQUEST_MAX_BYTES = BDRV_REQUEST_MAX_SECTORS << BDRV_SECTOR_BITS
INT64_MAX = (1 << 63) - 1
UINT_MAX = (1 << 32) - 1
NSIG = 65           # glibc's _NSIG on Linux

CMD_FLAG_GLOBAL = -0x80000000   # (int)0x80000000: don't iterate "args"
CMD_NOFILE_OK = 0x01

# The permissions of 7.2's command table.  This block layer predates
# permissions; command() checks the one case a user can meet, a write
# command on a read-only node.
BLK_PERM_WRITE = 0x02
BLK_PERM_RESIZE = 0x08

# The BlockBackends holding 7.2's write permission: qemu-io takes it when it
# opens an image read-write and with the first command that writes, and
# gives it up in 'reopen' to read-only flags; while it is held, the node may
# not become read-only.
write_perm_blks: set = set()

# The force-share value each node of the open image was given (7.2 keeps it
# among the node's options, where 'reopen' finds it unchanged); the nodes of
# this block layer do not take the option.
force_share_values: dict = {}


def force_share_record(bs, taken: dict, prefix: str = '',
                       inherited: Optional[str] = None) -> None:
    """Record the force-share values of bs and the children that inherit
    from it (their parent's unless given their own, as 7.2's
    bdrv_inherited_options() copies it)."""
    value = taken.get(prefix + 'force-share', inherited)
    if value is not None:
        force_share_values[bs] = value
    for child in bs.children:
        if child.bs.inherits_from is bs:
            force_share_record(child.bs, taken, prefix + child.name + '.',
                               value)

qemuio_misalign = False


class cmdinfo_t:
    """One command: argmin/argmax count the arguments after the name (-1:
    no limit), cfunc(blk, argv) runs it, help() prints the long help."""
    __slots__ = ('name', 'altname', 'cfunc', 'perm', 'argmin', 'argmax',
                 'canpush', 'flags', 'args', 'oneline', 'help')

    def __init__(self, name: str, cfunc: Callable, oneline: str,
                 altname: Optional[str] = None, perm: int = 0,
                 argmin: int = 0, argmax: int = 0, flags: int = 0,
                 args: Optional[str] = None,
                 help: Optional[Callable[[], None]] = None):
        self.name = name
        self.altname = altname
        self.cfunc = cfunc
        self.perm = perm
        self.argmin = argmin
        self.argmax = argmax
        self.canpush = 0
        self.flags = flags
        self.args = args
        self.oneline = oneline
        self.help = help


cmdtab: list[cmdinfo_t] = []


def qemuio_add_command(ci: cmdinfo_t) -> None:
    # a command needing permissions needs a file, so it can't be GLOBAL or
    # NOFILE_OK (7.2 asserts this too)
    assert ci.perm == 0 or (ci.flags & (CMD_FLAG_GLOBAL | CMD_NOFILE_OK)) == 0
    if ci in cmdtab:
        return      # main() run again in the same process
    cmdtab.append(ci)
    cmdtab.sort(key=lambda ct: ct.name.encode())


def qemuio_command_usage(ci: cmdinfo_t) -> None:
    printf("%s %s -- %s\n", ci.name, ci.args, ci.oneline)


def init_check_command(blk, ct: cmdinfo_t) -> bool:
    if ct.flags & CMD_FLAG_GLOBAL:
        return True
    if not (ct.flags & CMD_NOFILE_OK) and blk is None:
        c_stderr_write("no file open, try 'help open'\n")
        return False
    return True


def command(blk, ct: cmdinfo_t, argv: list[str]) -> int:
    cmd = argv[0]
    argc = len(argv)

    if not init_check_command(blk, ct):
        return -errno.EINVAL

    if argc - 1 < ct.argmin or (ct.argmax != -1 and argc - 1 > ct.argmax):
        if ct.argmax == -1:
            c_stderr_write("bad argument count %d to %s, expected at least %d "
                           "arguments\n" % (argc - 1, cmd, ct.argmin))
        elif ct.argmin == ct.argmax:
            c_stderr_write("bad argument count %d to %s, expected %d "
                           "arguments\n" % (argc - 1, cmd, ct.argmin))
        else:
            c_stderr_write("bad argument count %d to %s, expected between %d "
                           "and %d arguments\n"
                           % (argc - 1, cmd, ct.argmin, ct.argmax))
        return -errno.EINVAL

    # 7.2 takes the command's permissions here (blk_set_perm); on a
    # read-only node the write permission is refused
    if ct.perm & BLK_PERM_WRITE and blk_is_available(blk):
        if bb.blk_is_read_only(blk):
            error_report("Block node is read-only")
            return -errno.EPERM
        write_perm_blks.add(blk)

    return ct.cfunc(blk, argv)


def blk_is_available(blk) -> bool:
    """A medium is inserted (7.2's blk_is_available; no trays here)."""
    return bb.blk_bs(blk) is not None


def find_command(cmd: str) -> Optional[cmdinfo_t]:
    for ct in cmdtab:
        if ct.name == cmd or (ct.altname and ct.altname == cmd):
            return ct
    return None


def qemuio_complete_command(input: str, fn: Callable[[str, Any], None],
                            opaque: Any) -> None:
    """Call fn for the commands starting with input (readline completion)."""
    for ct in cmdtab:
        if ct.name.startswith(input):
            fn(ct.name, opaque)


def breakline(input: str) -> list[str]:
    """Split at single spaces, dropping the empty words (qemu_strsep)."""
    return [p for p in input.split(' ') if p]


def cvtnum(s: str) -> int:
    """A byte count with an optional suffix; negative errno if invalid."""
    err, value = qemu_strtosz(s, None)
    if err < 0:
        return err
    if value > INT64_MAX:
        return -errno.ERANGE
    return value


def print_cvtnum_err(rc: int, arg: str) -> None:
    if rc == -errno.EINVAL:
        printf("Parsing error: non-numeric argument,"
               " or extraneous/unrecognized suffix -- %s\n", arg)
    elif rc == -errno.ERANGE:
        printf("Parsing error: argument too large -- %s\n", arg)
    else:
        printf("Parsing error: %s\n", arg)


def EXABYTES(x: int) -> int:
    return x << 60


def PETABYTES(x: int) -> int:
    return x << 50


def TERABYTES(x: int) -> int:
    return x << 40


def GIGABYTES(x: int) -> int:
    return x << 30


def MEGABYTES(x: int) -> int:
    return x << 20


def KILOBYTES(x: int) -> int:
    return x << 10


def cvtstr(value: float, size: int = 64) -> str:
    """A size in the largest binary unit below it, "1.500 KiB", with a
    ".000" fraction dropped ("4 KiB"); snprintf's truncation included."""
    value = float(value)
    for unit, suffix in ((EXABYTES(1), " EiB"), (PETABYTES(1), " PiB"),
                         (TERABYTES(1), " TiB"), (GIGABYTES(1), " GiB"),
                         (MEGABYTES(1), " MiB"), (KILOBYTES(1), " KiB")):
        if value >= unit:
            s = ("%.3f" % (value / unit))[:size - 4 - 1]
            break
    else:
        suffix = " bytes"
        s = ("%f" % value)[:size - 6 - 1]
    trim = s.find(".000")
    if trim >= 0:
        return s[:trim] + suffix
    return s + suffix


# struct timespec is kept as integer nanoseconds of CLOCK_MONOTONIC.
NANOSECONDS_PER_SECOND = 1000000000


def clock_gettime_monotonic() -> int:
    return time.monotonic_ns()


def tsub(t1: int, t2: int) -> int:
    return t1 - t2


def tdiv(value: float, tv: int) -> float:
    seconds = tv // NANOSECONDS_PER_SECOND + \
        (tv % NANOSECONDS_PER_SECOND) / 1e9
    if seconds == 0:
        # C divides by zero in IEEE arithmetic
        return float('inf') if value else float('nan')
    return value / seconds


def HOURS(sec: int) -> int:
    return sec // (60 * 60)


def MINUTES(sec: int) -> int:
    return (sec % (60 * 60)) // 60


def SECONDS(sec: int) -> int:
    return sec % 60


DEFAULT_TIME = 0x0
TERSE_FIXED_TIME = 0x1
VERBOSE_FIXED_TIME = 0x2


def timestr(tv: int, format: int) -> str:
    tv_sec = tv // NANOSECONDS_PER_SECOND
    frac_sec = (tv % NANOSECONDS_PER_SECOND) / 1e9

    if format & TERSE_FIXED_TIME:
        if not HOURS(tv_sec):
            return "%u:%05.2f" % (MINUTES(tv_sec), SECONDS(tv_sec) + frac_sec)
        format |= VERBOSE_FIXED_TIME    # fallback if hours needed

    if (format & VERBOSE_FIXED_TIME) or tv_sec:
        return "%u:%02u:%05.2f" % (HOURS(tv_sec), MINUTES(tv_sec),
                                   SECONDS(tv_sec) + frac_sec)
    return "%05.2f sec" % frac_sec


def parse_pattern(arg: str) -> int:
    """The byte given by arg (strtol base 0), or -1 after a message."""
    pattern, end, _ = strtol(arg, 0)
    if pattern < 0 or pattern > 0xff or end != len(arg):
        printf("%s is not a valid pattern byte\n", arg)
        return -1
    return pattern


# Memory is aligned for O_DIRECT, or purposely misaligned with -m.  Python
# frees it; qemu_io_free has nothing left to do.
MISALIGN_OFFSET = 16


def _memset(buf: memoryview, pattern: int) -> None:
    iov_memset([buf], 1, 0, pattern, len(buf))


def qemu_io_alloc(blk, length: int, pattern: int) -> memoryview:
    if qemuio_misalign:
        length += MISALIGN_OFFSET
    buf = bb.blk_blockalign(blk, length)
    _memset(buf, pattern)
    if qemuio_misalign:
        buf = buf[MISALIGN_OFFSET:]
    return buf


def qemu_io_alloc_from_file(blk, length: int,
                            file_name: str) -> Optional[memoryview]:
    """A buffer filled with the contents of file_name, repeated as often as
    needed to fill length bytes; None after a message on error."""
    try:
        f = open(file_name, 'rb')
    except OSError as e:
        c_stderr_write("%s: %s\n" % (file_name, os.strerror(e.errno)))
        return None

    alloc_len = length + (MISALIGN_OFFSET if qemuio_misalign else 0)
    buf = bb.blk_blockalign(blk, alloc_len)
    if qemuio_misalign:
        buf = buf[MISALIGN_OFFSET:]

    with f:
        try:
            pattern_len = f.readinto(buf[:length]) or 0
        except OSError as e:
            c_stderr_write("%s: %s\n" % (file_name, os.strerror(e.errno)))
            return None

    if pattern_len == 0:
        c_stderr_write("%s: file is empty\n" % file_name)
        return None

    pos = pattern_len
    while pos < length:
        n = min(pattern_len, length - pos)
        buf[pos:pos + n] = buf[:n]
        pos += n
    return buf


def _isalnum(c: int) -> bool:
    return 48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122


_DUMP_CHARS = bytes(c if _isalnum(c) else ord('.') for c in range(256))


def dump_buffer(buffer: memoryview, offset: int, length: int) -> None:
    """Hex and characters, 16 bytes a line."""
    for i in range(0, length, 16):
        line = bytes(buffer[i:min(i + 16, length)])
        printf("%08x:  %s  %s\n", offset + i, line.hex(' '),
               line.translate(_DUMP_CHARS).decode('ascii'))


def print_report(op: str, t: int, offset: int, count: int, total: int,
                 cnt: int, Cflag: bool) -> None:
    ts = timestr(t, VERBOSE_FIXED_TIME if Cflag else 0)
    if not Cflag:
        s1 = cvtstr(total)
        s2 = cvtstr(tdiv(total, t))
        printf("%s %d/%d bytes at offset %d\n", op, total, count, offset)
        printf("%s, %d ops; %s (%s/sec and %.4f ops/sec)\n",
               s1, cnt, ts, s2, tdiv(cnt, t))
    else:   # bytes,ops,time,bytes/sec,ops/sec
        printf("%d,%d,%s,%.3f,%.3f\n", total, cnt, ts,
               tdiv(total, t), tdiv(cnt, t))


def create_iovec(blk, qiov: QEMUIOVector, argv: list[str],
                 pattern: int) -> Optional[memoryview]:
    """One buffer for the lengths in argv, split into qiov; None after a
    message if a length is invalid."""
    sizes = []
    count = 0

    for arg in argv:
        length = cvtnum(arg)
        if length < 0:
            print_cvtnum_err(length, arg)
            return None

        if length > BDRV_REQUEST_MAX_BYTES:
            printf("Argument '%s' exceeds maximum size %d\n", arg,
                   BDRV_REQUEST_MAX_BYTES)
            return None

        if count > BDRV_REQUEST_MAX_BYTES - length:
            printf("The total number of bytes exceed the maximum size %d\n",
                   BDRV_REQUEST_MAX_BYTES)
            return None

        sizes.append(length)
        count += length

    qemu_iovec_init(qiov, len(argv))

    buf = qemu_io_alloc(blk, count, pattern)
    p = 0
    for size in sizes:
        qemu_iovec_add(qiov, buf[p:p + size], size)
        p += size
    return buf


def do_pread(blk, buf: memoryview, offset: int, bytes: int,
             total: list) -> int:
    if bytes > INT_MAX:
        return -errno.ERANGE

    ret = bb.blk_pread(blk, offset, buf, bytes)
    if ret < 0:
        return ret
    total[0] = bytes
    return 1


def do_pwrite(blk, buf: memoryview, offset: int, bytes: int, flags: int,
              total: list) -> int:
    if bytes > INT_MAX:
        return -errno.ERANGE

    ret = bb.blk_pwrite(blk, offset, buf, bytes, flags)
    if ret < 0:
        return ret
    total[0] = bytes
    return 1


class CoWriteZeroes:
    __slots__ = ('blk', 'offset', 'bytes', 'total', 'flags', 'ret', 'done')

    def __init__(self, blk, offset: int, bytes: int, total: list,
                 flags: int):
        self.blk = blk
        self.offset = offset
        self.bytes = bytes
        self.total = total
        self.flags = flags
        self.ret = 0
        self.done = False


def co_pwrite_zeroes_entry(opaque: CoWriteZeroes) -> None:
    data = opaque
    data.ret = bb.blk_co_pwrite_zeroes(data.blk, data.offset, data.bytes,
                                       data.flags)
    data.done = True
    if data.ret < 0:
        data.total[0] = data.ret
        return
    data.total[0] = data.bytes


def do_co_pwrite_zeroes(blk, offset: int, bytes: int, flags: int,
                        total: list) -> int:
    data = CoWriteZeroes(blk, offset, bytes, total, flags)

    if bytes > INT_MAX:
        return -errno.ERANGE

    co = qemu_coroutine_create(co_pwrite_zeroes_entry)
    qemu_coroutine_enter(co, data)
    while not data.done:
        aio_poll(bb.blk_get_aio_context(blk), True)
    if data.ret < 0:
        return data.ret
    return 1


def do_write_compressed(blk, buf: memoryview, offset: int, bytes: int,
                        total: list) -> int:
    if bytes >> 9 > BDRV_REQUEST_MAX_SECTORS:
        return -errno.ERANGE

    ret = bb.blk_write_compressed(blk, offset >> 9, buf, bytes >> 9)
    if ret < 0:
        return ret
    total[0] = bytes
    return 1


def do_load_vmstate(blk, buf: memoryview, offset: int, count: int,
                    total: list) -> int:
    if count > INT_MAX:
        return -errno.ERANGE

    total[0] = bb.blk_load_vmstate(blk, buf, offset, count)
    if total[0] < 0:
        return total[0]
    return 1


def do_save_vmstate(blk, buf: memoryview, offset: int, count: int,
                    total: list) -> int:
    if count > INT_MAX:
        return -errno.ERANGE

    total[0] = bb.blk_save_vmstate(blk, buf, offset, count)
    if total[0] < 0:
        return total[0]
    return 1


NOT_DONE = 0x7fffffff


def aio_rw_done(opaque: list, ret: int) -> None:
    opaque[0] = ret


def do_aio_readv(blk, qiov: QEMUIOVector, offset: int, total: list) -> int:
    async_ret = [NOT_DONE]

    bb.blk_aio_preadv(blk, offset, qiov, 0, aio_rw_done, async_ret)
    while async_ret[0] == NOT_DONE:
        main_loop_wait(False)

    total[0] = qiov.size
    return async_ret[0] if async_ret[0] < 0 else 1


def do_aio_writev(blk, qiov: QEMUIOVector, offset: int, flags: int,
                  total: list) -> int:
    async_ret = [NOT_DONE]

    bb.blk_aio_pwritev(blk, offset, qiov, flags, aio_rw_done, async_ret)
    while async_ret[0] == NOT_DONE:
        main_loop_wait(False)

    total[0] = qiov.size
    return async_ret[0] if async_ret[0] < 0 else 1


def _pattern_matches(buf: memoryview, pattern: int) -> bool:
    """memcmp against a buffer memset to pattern."""
    cmp_buf = bytearray(len(buf))
    _memset(memoryview(cmp_buf), pattern)
    return buf == cmp_buf


def read_help() -> None:
    printf(
        "\n"
        " reads a range of bytes from the given offset\n"
        "\n"
        " Example:\n"
        " 'read -v 512 1k' - dumps 1 kilobyte read from 512 bytes into the file\n"
        "\n"
        " Reads a segment of the currently open file, optionally dumping it to the\n"
        " standard output stream (with -v option) for subsequent inspection.\n"
        " -b, -- read from the VM state rather than the virtual disk\n"
        " -C, -- report statistics in a machine parsable format\n"
        " -l, -- length for pattern verification (only with -P)\n"
        " -p, -- ignored for backwards compatibility\n"
        " -P, -- use a pattern to verify read data\n"
        " -q, -- quiet mode, do not show I/O statistics\n"
        " -s, -- start offset for pattern verification (only with -P)\n"
        " -v, -- dump buffer to standard output\n"
        "\n")


def read_f(blk, argv: list[str]) -> int:
    Cflag = qflag = vflag = False
    Pflag = sflag = lflag = bflag = False
    total = [0]
    pattern = 0
    pattern_offset = 0
    pattern_count = 0

    opts = Getopt(argv, "bCl:pP:qs:v")
    for c, optarg in opts:
        if c == 'b':
            bflag = True
        elif c == 'C':
            Cflag = True
        elif c == 'l':
            lflag = True
            pattern_count = cvtnum(optarg)
            if pattern_count < 0:
                print_cvtnum_err(pattern_count, optarg)
                return pattern_count
        elif c == 'p':
            pass    # ignored for backwards compatibility
        elif c == 'P':
            Pflag = True
            pattern = parse_pattern(optarg)
            if pattern < 0:
                return -errno.EINVAL
        elif c == 'q':
            qflag = True
        elif c == 's':
            sflag = True
            pattern_offset = cvtnum(optarg)
            if pattern_offset < 0:
                print_cvtnum_err(pattern_offset, optarg)
                return pattern_offset
        elif c == 'v':
            vflag = True
        else:
            qemuio_command_usage(read_cmd)
            return -errno.EINVAL
    argv, optind = opts.argv, opts.optind

    if optind != len(argv) - 2:
        qemuio_command_usage(read_cmd)
        return -errno.EINVAL

    offset = cvtnum(argv[optind])
    if offset < 0:
        print_cvtnum_err(offset, argv[optind])
        return offset

    optind += 1
    count = cvtnum(argv[optind])
    if count < 0:
        print_cvtnum_err(count, argv[optind])
        return count
    elif count > BDRV_REQUEST_MAX_BYTES:
        printf("length cannot exceed %d, given %s\n",
               BDRV_REQUEST_MAX_BYTES, argv[optind])
        return -errno.EINVAL

    if not Pflag and (lflag or sflag):
        qemuio_command_usage(read_cmd)
        return -errno.EINVAL

    if not lflag:
        pattern_count = count - pattern_offset

    if pattern_count < 0 or pattern_count + pattern_offset > count:
        printf("pattern verification range exceeds end of read data\n")
        return -errno.EINVAL

    if bflag:
        if offset % BDRV_SECTOR_SIZE:
            printf("%d is not a sector-aligned value for 'offset'\n", offset)
            return -errno.EINVAL
        if count % BDRV_SECTOR_SIZE:
            printf("%d is not a sector-aligned value for 'count'\n", count)
            return -errno.EINVAL

    buf = qemu_io_alloc(blk, count, 0xab)

    t1 = clock_gettime_monotonic()
    if bflag:
        ret = do_load_vmstate(blk, buf, offset, count, total)
    else:
        ret = do_pread(blk, buf, offset, count, total)
    t2 = clock_gettime_monotonic()

    if ret < 0:
        printf("read failed: %s\n", os.strerror(-ret))
        return ret
    cnt = ret

    ret = 0

    if Pflag:
        if not _pattern_matches(buf[pattern_offset:
                                    pattern_offset + pattern_count], pattern):
            printf("Pattern verification failed at offset %d, %d bytes\n",
                   offset + pattern_offset, pattern_count)
            ret = -errno.EINVAL

    if qflag:
        return ret

    if vflag:
        dump_buffer(buf, offset, count)

    # Finally, report back -- -C gives a parsable format
    t2 = tsub(t2, t1)
    print_report("read", t2, offset, count, total[0], cnt, Cflag)
    return ret


read_cmd = cmdinfo_t(
    name="read", altname="r", cfunc=read_f, argmin=2, argmax=-1,
    args="[-abCqv] [-P pattern [-s off] [-l len]] off len",
    oneline="reads a number of bytes at a specified offset",
    help=read_help)


def readv_help() -> None:
    printf(
        "\n"
        " reads a range of bytes from the given offset into multiple buffers\n"
        "\n"
        " Example:\n"
        " 'readv -v 512 1k 1k ' - dumps 2 kilobytes read from 512 bytes into the file\n"
        "\n"
        " Reads a segment of the currently open file, optionally dumping it to the\n"
        " standard output stream (with -v option) for subsequent inspection.\n"
        " Uses multiple iovec buffers if more than one byte range is specified.\n"
        " -C, -- report statistics in a machine parsable format\n"
        " -P, -- use a pattern to verify read data\n"
        " -v, -- dump buffer to standard output\n"
        " -q, -- quiet mode, do not show I/O statistics\n"
        "\n")


def readv_f(blk, argv: list[str]) -> int:
    Cflag = qflag = vflag = False
    total = [0]
    qiov = QEMUIOVector()
    pattern = 0
    Pflag = False

    opts = Getopt(argv, "CP:qv")
    for c, optarg in opts:
        if c == 'C':
            Cflag = True
        elif c == 'P':
            Pflag = True
            pattern = parse_pattern(optarg)
            if pattern < 0:
                return -errno.EINVAL
        elif c == 'q':
            qflag = True
        elif c == 'v':
            vflag = True
        else:
            qemuio_command_usage(readv_cmd)
            return -errno.EINVAL
    argv, optind = opts.argv, opts.optind

    if optind > len(argv) - 2:
        qemuio_command_usage(readv_cmd)
        return -errno.EINVAL

    offset = cvtnum(argv[optind])
    if offset < 0:
        print_cvtnum_err(offset, argv[optind])
        return offset
    optind += 1

    buf = create_iovec(blk, qiov, argv[optind:], 0xab)
    if buf is None:
        return -errno.EINVAL

    t1 = clock_gettime_monotonic()
    ret = do_aio_readv(blk, qiov, offset, total)
    t2 = clock_gettime_monotonic()

    if ret < 0:
        printf("readv failed: %s\n", os.strerror(-ret))
        return ret
    cnt = ret

    ret = 0

    if Pflag:
        if not _pattern_matches(buf[:qiov.size], pattern):
            printf("Pattern verification failed at offset %d, %d bytes\n",
                   offset, qiov.size)
            ret = -errno.EINVAL

    if qflag:
        return ret

    if vflag:
        dump_buffer(buf, offset, qiov.size)

    # Finally, report back -- -C gives a parsable format
    t2 = tsub(t2, t1)
    print_report("read", t2, offset, qiov.size, total[0], cnt, Cflag)
    return ret


readv_cmd = cmdinfo_t(
    name="readv", cfunc=readv_f, argmin=2, argmax=-1,
    args="[-Cqv] [-P pattern] off len [len..]",
    oneline="reads a number of bytes at a specified offset",
    help=readv_help)


def write_help() -> None:
    printf(
        "\n"
        " writes a range of bytes from the given offset\n"
        "\n"
        " Example:\n"
        " 'write 512 1k' - writes 1 kilobyte at 512 bytes into the open file\n"
        "\n"
        " Writes into a segment of the currently open file, using a buffer\n"
        " filled with a set pattern (0xcdcdcdcd).\n"
        " -b, -- write to the VM state rather than the virtual disk\n"
        " -c, -- write compressed data with blk_write_compressed\n"
        " -f, -- use Force Unit Access semantics\n"
        " -n, -- with -z, don't allow slow fallback\n"
        " -p, -- ignored for backwards compatibility\n"
        " -P, -- use different pattern to fill file\n"
        " -s, -- use a pattern file to fill the write buffer\n"
        " -C, -- report statistics in a machine parsable format\n"
        " -q, -- quiet mode, do not show I/O statistics\n"
        " -u, -- with -z, allow unmapping\n"
        " -z, -- write zeroes using blk_co_pwrite_zeroes\n"
        "\n")


# 7.2's BDRV_REQ_NO_FALLBACK (write -n): only its length rule applies here,
# this block layer has no slow zero-write fallback to forbid
BDRV_REQ_NO_FALLBACK = 0x100


def write_f(blk, argv: list[str]) -> int:
    Cflag = qflag = bflag = False
    Pflag = zflag = cflag = sflag = False
    flags = 0
    buf = None
    total = [0]
    pattern = 0xcd
    file_name = None

    opts = Getopt(argv, "bcCfnpP:qs:uz")
    for c, optarg in opts:
        if c == 'b':
            bflag = True
        elif c == 'c':
            cflag = True
        elif c == 'C':
            Cflag = True
        elif c == 'f':
            flags |= BDRV_REQ_FUA
        elif c == 'n':
            flags |= BDRV_REQ_NO_FALLBACK
        elif c == 'p':
            pass    # ignored for backwards compatibility
        elif c == 'P':
            Pflag = True
            pattern = parse_pattern(optarg)
            if pattern < 0:
                return -errno.EINVAL
        elif c == 'q':
            qflag = True
        elif c == 's':
            sflag = True
            file_name = optarg
        elif c == 'u':
            flags |= BDRV_REQ_MAY_UNMAP
        elif c == 'z':
            zflag = True
        else:
            qemuio_command_usage(write_cmd)
            return -errno.EINVAL
    argv, optind = opts.argv, opts.optind

    if optind != len(argv) - 2:
        qemuio_command_usage(write_cmd)
        return -errno.EINVAL

    if bflag and zflag:
        printf("-b and -z cannot be specified at the same time\n")
        return -errno.EINVAL

    if (flags & BDRV_REQ_FUA) and (bflag or cflag):
        printf("-f and -b or -c cannot be specified at the same time\n")
        return -errno.EINVAL

    if (flags & BDRV_REQ_NO_FALLBACK) and not zflag:
        printf("-n requires -z to be specified\n")
        return -errno.EINVAL

    if (flags & BDRV_REQ_MAY_UNMAP) and not zflag:
        printf("-u requires -z to be specified\n")
        return -errno.EINVAL

    if zflag + Pflag + sflag > 1:
        printf("Only one of -z, -P, and -s "
               "can be specified at the same time\n")
        return -errno.EINVAL

    offset = cvtnum(argv[optind])
    if offset < 0:
        print_cvtnum_err(offset, argv[optind])
        return offset

    optind += 1
    count = cvtnum(argv[optind])
    if count < 0:
        print_cvtnum_err(count, argv[optind])
        return count
    elif count > BDRV_REQUEST_MAX_BYTES and \
            not (flags & BDRV_REQ_NO_FALLBACK):
        printf("length cannot exceed %d without -n, given %s\n",
               BDRV_REQUEST_MAX_BYTES, argv[optind])
        return -errno.EINVAL

    if bflag or cflag:
        if offset % BDRV_SECTOR_SIZE:
            printf("%d is not a sector-aligned value for 'offset'\n", offset)
            return -errno.EINVAL

        if count % BDRV_SECTOR_SIZE:
            printf("%d is not a sector-aligned value for 'count'\n", count)
            return -errno.EINVAL

    if not zflag:
        if sflag:
            buf = qemu_io_alloc_from_file(blk, count, file_name)
            if buf is None:
                return -errno.EINVAL
        else:
            buf = qemu_io_alloc(blk, count, pattern)

    t1 = clock_gettime_monotonic()
    if bflag:
        ret = do_save_vmstate(blk, buf, offset, count, total)
    elif zflag:
        ret = do_co_pwrite_zeroes(blk, offset, count,
                                  flags & ~BDRV_REQ_NO_FALLBACK, total)
    elif cflag:
        ret = do_write_compressed(blk, buf, offset, count, total)
    else:
        ret = do_pwrite(blk, buf, offset, count, flags, total)
    t2 = clock_gettime_monotonic()

    if ret < 0:
        printf("write failed: %s\n", os.strerror(-ret))
        return ret
    cnt = ret

    if qflag:
        return 0

    # Finally, report back -- -C gives a parsable format
    t2 = tsub(t2, t1)
    print_report("wrote", t2, offset, count, total[0], cnt, Cflag)
    return 0


write_cmd = cmdinfo_t(
    name="write", altname="w", cfunc=write_f, perm=BLK_PERM_WRITE,
    argmin=2, argmax=-1,
    args="[-bcCfnquz] [-P pattern | -s source_file] off len",
    oneline="writes a number of bytes at a specified offset",
    help=write_help)


def writev_help() -> None:
    printf(
        "\n"
        " writes a range of bytes from the given offset source from multiple buffers\n"
        "\n"
        " Example:\n"
        " 'writev 512 1k 1k' - writes 2 kilobytes at 512 bytes into the open file\n"
        "\n"
        " Writes into a segment of the currently open file, using a buffer\n"
        " filled with a set pattern (0xcdcdcdcd).\n"
        " -P, -- use different pattern to fill file\n"
        " -C, -- report statistics in a machine parsable format\n"
        " -f, -- use Force Unit Access semantics\n"
        " -q, -- quiet mode, do not show I/O statistics\n"
        "\n")


def writev_f(blk, argv: list[str]) -> int:
    Cflag = qflag = False
    flags = 0
    total = [0]
    pattern = 0xcd
    qiov = QEMUIOVector()

    opts = Getopt(argv, "CfqP:")
    for c, optarg in opts:
        if c == 'C':
            Cflag = True
        elif c == 'f':
            flags |= BDRV_REQ_FUA
        elif c == 'q':
            qflag = True
        elif c == 'P':
            pattern = parse_pattern(optarg)
            if pattern < 0:
                return -errno.EINVAL
        else:
            qemuio_command_usage(writev_cmd)
            return -errno.EINVAL
    argv, optind = opts.argv, opts.optind

    if optind > len(argv) - 2:
        qemuio_command_usage(writev_cmd)
        return -errno.EINVAL

    offset = cvtnum(argv[optind])
    if offset < 0:
        print_cvtnum_err(offset, argv[optind])
        return offset
    optind += 1

    buf = create_iovec(blk, qiov, argv[optind:], pattern)
    if buf is None:
        return -errno.EINVAL

    t1 = clock_gettime_monotonic()
    ret = do_aio_writev(blk, qiov, offset, flags, total)
    t2 = clock_gettime_monotonic()

    if ret < 0:
        printf("writev failed: %s\n", os.strerror(-ret))
        return ret
    cnt = ret

    if qflag:
        return 0

    # Finally, report back -- -C gives a parsable format
    t2 = tsub(t2, t1)
    print_report("wrote", t2, offset, qiov.size, total[0], cnt, Cflag)
    return 0


writev_cmd = cmdinfo_t(
    name="writev", cfunc=writev_f, perm=BLK_PERM_WRITE, argmin=2, argmax=-1,
    args="[-Cfq] [-P pattern] off len [len..]",
    oneline="writes a number of bytes at a specified offset",
    help=writev_help)


class aio_ctx:
    """The state of one aio_read/aio_write until its completion."""
    __slots__ = ('blk', 'qiov', 'offset', 'buf', 'qflag', 'vflag', 'Cflag',
                 'Pflag', 'zflag', 'acct', 'pattern', 't1')

    def __init__(self, blk):
        self.blk = blk
        self.qiov = QEMUIOVector()
        self.offset = 0
        self.buf: Optional[memoryview] = None
        self.qflag = False
        self.vflag = False
        self.Cflag = False
        self.Pflag = False
        self.zflag = False
        self.acct = BlockAcctCookie()
        self.pattern = 0
        self.t1 = 0         # g_new0: stays 0 for aio_write -z


def aio_write_done(opaque: aio_ctx, ret: int) -> None:
    ctx = opaque
    t2 = clock_gettime_monotonic()

    if ret < 0:
        printf("aio_write failed: %s\n", os.strerror(-ret))
        block_acct_failed(bb.blk_get_stats(ctx.blk), ctx.acct)
        return

    block_acct_done(bb.blk_get_stats(ctx.blk), ctx.acct)

    if ctx.qflag:
        return

    # Finally, report back -- -C gives a parsable format
    t2 = tsub(t2, ctx.t1)
    print_report("wrote", t2, ctx.offset, ctx.qiov.size, ctx.qiov.size, 1,
                 ctx.Cflag)


def aio_read_done(opaque: aio_ctx, ret: int) -> None:
    ctx = opaque
    t2 = clock_gettime_monotonic()

    if ret < 0:
        printf("readv failed: %s\n", os.strerror(-ret))
        block_acct_failed(bb.blk_get_stats(ctx.blk), ctx.acct)
        return

    if ctx.Pflag:
        if not _pattern_matches(ctx.buf[:ctx.qiov.size], ctx.pattern):
            printf("Pattern verification failed at offset %d, %d bytes\n",
                   ctx.offset, ctx.qiov.size)

    block_acct_done(bb.blk_get_stats(ctx.blk), ctx.acct)

    if ctx.qflag:
        return

    if ctx.vflag:
        dump_buffer(ctx.buf, ctx.offset, ctx.qiov.size)

    # Finally, report back -- -C gives a parsable format
    t2 = tsub(t2, ctx.t1)
    print_report("read", t2, ctx.offset, ctx.qiov.size, ctx.qiov.size, 1,
                 ctx.Cflag)


def aio_read_help() -> None:
    printf(
        "\n"
        " asynchronously reads a range of bytes from the given offset\n"
        "\n"
        " Example:\n"
        " 'aio_read -v 512 1k 1k ' - dumps 2 kilobytes read from 512 bytes into the file\n"
        "\n"
        " Reads a segment of the currently open file, optionally dumping it to the\n"
        " standard output stream (with -v option) for subsequent inspection.\n"
        " The read is performed asynchronously and the aio_flush command must be\n"
        " used to ensure all outstanding aio requests have been completed.\n"
        " Note that due to its asynchronous nature, this command will be\n"
        " considered successful once the request is submitted, independently\n"
        " of potential I/O errors or pattern mismatches.\n"
        " -C, -- report statistics in a machine parsable format\n"
        " -P, -- use a pattern to verify read data\n"
        " -i, -- treat request as invalid, for exercising stats\n"
        " -v, -- dump buffer to standard output\n"
        " -q, -- quiet mode, do not show I/O statistics\n"
        "\n")


def aio_read_f(blk, argv: list[str]) -> int:
    ctx = aio_ctx(blk)

    opts = Getopt(argv, "CP:iqv")
    for c, optarg in opts:
        if c == 'C':
            ctx.Cflag = True
        elif c == 'P':
            ctx.Pflag = True
            ctx.pattern = parse_pattern(optarg)
            if ctx.pattern < 0:
                return -errno.EINVAL
        elif c == 'i':
            printf("injecting invalid read request\n")
            block_acct_invalid(bb.blk_get_stats(blk), BLOCK_ACCT_READ)
            return 0
        elif c == 'q':
            ctx.qflag = True
        elif c == 'v':
            ctx.vflag = True
        else:
            qemuio_command_usage(aio_read_cmd)
            return -errno.EINVAL
    argv, optind = opts.argv, opts.optind

    if optind > len(argv) - 2:
        qemuio_command_usage(aio_read_cmd)
        return -errno.EINVAL

    ctx.offset = cvtnum(argv[optind])
    if ctx.offset < 0:
        ret = ctx.offset
        print_cvtnum_err(ret, argv[optind])
        return ret
    optind += 1

    ctx.buf = create_iovec(blk, ctx.qiov, argv[optind:], 0xab)
    if ctx.buf is None:
        block_acct_invalid(bb.blk_get_stats(blk), BLOCK_ACCT_READ)
        return -errno.EINVAL

    ctx.t1 = clock_gettime_monotonic()
    block_acct_start(bb.blk_get_stats(blk), ctx.acct, ctx.qiov.size,
                     BLOCK_ACCT_READ)
    bb.blk_aio_preadv(blk, ctx.offset, ctx.qiov, 0, aio_read_done, ctx)
    return 0


aio_read_cmd = cmdinfo_t(
    name="aio_read", cfunc=aio_read_f, argmin=2, argmax=-1,
    args="[-Ciqv] [-P pattern] off len [len..]",
    oneline="asynchronously reads a number of bytes",
    help=aio_read_help)


def aio_write_help() -> None:
    printf(
        "\n"
        " asynchronously writes a range of bytes from the given offset source\n"
        " from multiple buffers\n"
        "\n"
        " Example:\n"
        " 'aio_write 512 1k 1k' - writes 2 kilobytes at 512 bytes into the open file\n"
        "\n"
        " Writes into a segment of the currently open file, using a buffer\n"
        " filled with a set pattern (0xcdcdcdcd).\n"
        " The write is performed asynchronously and the aio_flush command must be\n"
        " used to ensure all outstanding aio requests have been completed.\n"
        " Note that due to its asynchronous nature, this command will be\n"
        " considered successful once the request is submitted, independently\n"
        " of potential I/O errors or pattern mismatches.\n"
        " -P, -- use different pattern to fill file\n"
        " -C, -- report statistics in a machine parsable format\n"
        " -f, -- use Force Unit Access semantics\n"
        " -i, -- treat request as invalid, for exercising stats\n"
        " -q, -- quiet mode, do not show I/O statistics\n"
        " -u, -- with -z, allow unmapping\n"
        " -z, -- write zeroes using blk_aio_pwrite_zeroes\n"
        "\n")


def aio_write_f(blk, argv: list[str]) -> int:
    pattern = 0xcd
    flags = 0
    ctx = aio_ctx(blk)

    opts = Getopt(argv, "CfiqP:uz")
    for c, optarg in opts:
        if c == 'C':
            ctx.Cflag = True
        elif c == 'f':
            flags |= BDRV_REQ_FUA
        elif c == 'q':
            ctx.qflag = True
        elif c == 'u':
            flags |= BDRV_REQ_MAY_UNMAP
        elif c == 'P':
            pattern = parse_pattern(optarg)
            if pattern < 0:
                return -errno.EINVAL
        elif c == 'i':
            printf("injecting invalid write request\n")
            block_acct_invalid(bb.blk_get_stats(blk), BLOCK_ACCT_WRITE)
            return 0
        elif c == 'z':
            ctx.zflag = True
        else:
            qemuio_command_usage(aio_write_cmd)
            return -errno.EINVAL
    argv, optind = opts.argv, opts.optind

    if optind > len(argv) - 2:
        qemuio_command_usage(aio_write_cmd)
        return -errno.EINVAL

    if ctx.zflag and optind != len(argv) - 2:
        printf("-z supports only a single length parameter\n")
        return -errno.EINVAL

    if (flags & BDRV_REQ_MAY_UNMAP) and not ctx.zflag:
        printf("-u requires -z to be specified\n")
        return -errno.EINVAL

    # as in 7.2, -P never sets Pflag here, so -z -P is accepted
    if ctx.zflag and ctx.Pflag:
        printf("-z and -P cannot be specified at the same time\n")
        return -errno.EINVAL

    ctx.offset = cvtnum(argv[optind])
    if ctx.offset < 0:
        ret = ctx.offset
        print_cvtnum_err(ret, argv[optind])
        return ret
    optind += 1

    if ctx.zflag:
        count = cvtnum(argv[optind])
        if count < 0:
            print_cvtnum_err(count, argv[optind])
            return count

        ctx.qiov.size = count
        bb.blk_aio_pwrite_zeroes(blk, ctx.offset, count, flags,
                                 aio_write_done, ctx)
    else:
        ctx.buf = create_iovec(blk, ctx.qiov, argv[optind:], pattern)
        if ctx.buf is None:
            block_acct_invalid(bb.blk_get_stats(blk), BLOCK_ACCT_WRITE)
            return -errno.EINVAL

        ctx.t1 = clock_gettime_monotonic()
        block_acct_start(bb.blk_get_stats(blk), ctx.acct, ctx.qiov.size,
                         BLOCK_ACCT_WRITE)

        bb.blk_aio_pwritev(blk, ctx.offset, ctx.qiov, flags, aio_write_done,
                           ctx)
    return 0


aio_write_cmd = cmdinfo_t(
    name="aio_write", cfunc=aio_write_f, perm=BLK_PERM_WRITE,
    argmin=2, argmax=-1,
    args="[-Cfiquz] [-P pattern] off len [len..]",
    oneline="asynchronously writes a number of bytes",
    help=aio_write_help)


def aio_flush_f(blk, argv: list[str]) -> int:
    cookie = BlockAcctCookie()
    block_acct_start(bb.blk_get_stats(blk), cookie, 0, BLOCK_ACCT_FLUSH)
    bb.blk_drain_all()
    block_acct_done(bb.blk_get_stats(blk), cookie)
    return 0


aio_flush_cmd = cmdinfo_t(
    name="aio_flush", cfunc=aio_flush_f,
    oneline="completes all outstanding aio requests")


def flush_f(blk, argv: list[str]) -> int:
    return bb.blk_flush(blk)


flush_cmd = cmdinfo_t(
    name="flush", altname="f", cfunc=flush_f,
    oneline="flush all in-core file state to disk")


# 7.2's PreallocMode, for truncate -m
PREALLOC_MODES = ('off', 'metadata', 'falloc', 'full')


def truncate_f(blk, argv: list[str]) -> int:
    prealloc = 'off'

    opts = Getopt(argv, "m:")
    for c, optarg in opts:
        if c == 'm':
            if optarg not in PREALLOC_MODES:
                error_report("Invalid preallocation mode '%s'", optarg)
                return -errno.EINVAL
            prealloc = optarg
        else:
            qemuio_command_usage(truncate_cmd)
            return -errno.EINVAL
    argv, optind = opts.argv, opts.optind

    offset = cvtnum(argv[optind])
    if offset < 0:
        # 7.2 names argv[1] here, whatever the options were
        print_cvtnum_err(offset, argv[1])
        return offset

    local_err = [None]
    ret = bb.blk_truncate(blk, offset, prealloc, local_err)
    if ret < 0:
        error_report_err(local_err[0])
        return ret

    return 0


truncate_cmd = cmdinfo_t(
    name="truncate", altname="t", cfunc=truncate_f,
    perm=BLK_PERM_WRITE | BLK_PERM_RESIZE, argmin=1, argmax=3,
    args="[-m prealloc_mode] off",
    oneline="truncates the current file at the given offset")


def length_f(blk, argv: list[str]) -> int:
    size = bb.blk_getlength(blk)
    if size < 0:
        printf("getlength: %s\n", os.strerror(-size))
        return size

    printf("%s\n", cvtstr(size))
    return 0


length_cmd = cmdinfo_t(
    name="length", altname="l", cfunc=length_f,
    oneline="gets the length of the current file")


def info_f(blk, argv: list[str]) -> int:
    bs = bb.blk_bs(blk)
    bdi = BlockDriverInfo()
    local_err = [None]

    if bs.drv and bs.drv.format_name:
        printf("format name: %s\n", bs.drv.format_name)
    if bs.drv and bs.drv.protocol_name:
        printf("format name: %s\n", bs.drv.protocol_name)

    ret = core.bdrv_get_info(bs, bdi)
    if ret:
        return ret

    s1 = cvtstr(bdi.cluster_size)
    s2 = cvtstr(bdi.vm_state_offset)

    printf("cluster size: %s\n", s1)
    printf("vm state offset: %s\n", s2)

    spec_info = bdrv_get_specific_info(bs, local_err)
    if local_err[0]:
        error_report_err(local_err[0])
        return -errno.EIO
    if spec_info:
        printf("Format specific information:\n")
        bdrv_image_info_specific_dump(spec_info)

    return 0


info_cmd = cmdinfo_t(
    name="info", altname="i", cfunc=info_f,
    oneline="prints information about the current file")


def discard_help() -> None:
    printf(
        "\n"
        " discards a range of bytes from the given offset\n"
        "\n"
        " Example:\n"
        " 'discard 512 1k' - discards 1 kilobyte from 512 bytes into the file\n"
        "\n"
        " Discards a segment of the currently open file.\n"
        " -C, -- report statistics in a machine parsable format\n"
        " -q, -- quiet mode, do not show I/O statistics\n"
        "\n")


def discard_f(blk, argv: list[str]) -> int:
    Cflag = qflag = False

    opts = Getopt(argv, "Cq")
    for c, optarg in opts:
        if c == 'C':
            Cflag = True
        elif c == 'q':
            qflag = True
        else:
            qemuio_command_usage(discard_cmd)
            return -errno.EINVAL
    argv, optind = opts.argv, opts.optind

    if optind != len(argv) - 2:
        qemuio_command_usage(discard_cmd)
        return -errno.EINVAL

    offset = cvtnum(argv[optind])
    if offset < 0:
        print_cvtnum_err(offset, argv[optind])
        return offset

    optind += 1
    bytes = cvtnum(argv[optind])
    if bytes < 0:
        print_cvtnum_err(bytes, argv[optind])
        return bytes
    elif bytes > BDRV_REQUEST_MAX_BYTES:
        printf("length cannot exceed %d, given %s\n",
               BDRV_REQUEST_MAX_BYTES, argv[optind])
        return -errno.EINVAL

    t1 = clock_gettime_monotonic()
    ret = bb.blk_pdiscard(blk, offset, bytes)
    t2 = clock_gettime_monotonic()

    if ret < 0:
        printf("discard failed: %s\n", os.strerror(-ret))
        return ret

    # Finally, report back -- -C gives a parsable format
    if not qflag:
        t2 = tsub(t2, t1)
        print_report("discard", t2, offset, bytes, bytes, 1, Cflag)

    return 0


discard_cmd = cmdinfo_t(
    name="discard", altname="d", cfunc=discard_f, perm=BLK_PERM_WRITE,
    argmin=2, argmax=-1, args="[-Cq] off len",
    oneline="discards a number of bytes at a specified offset",
    help=discard_help)


def bdrv_is_allocated_bytes(bs, offset: int, bytes: int, pnum: list) -> int:
    """bdrv_is_allocated with byte offsets, as 7.2 has it, on top of the
    sector-based one: the answer for the sectors covering the range, clipped
    to the range (and to the end of the image)."""
    sector_num = offset >> BDRV_SECTOR_BITS
    end = (offset + bytes + BDRV_SECTOR_SIZE - 1) >> BDRV_SECTOR_BITS
    nb_sectors = min(end - sector_num, BDRV_REQUEST_MAX_SECTORS)
    num = [0]
    ret = io.bdrv_is_allocated(bs, sector_num, nb_sectors, num)
    if ret < 0:
        return ret
    pnum[0] = max(0, min((num[0] << BDRV_SECTOR_BITS) -
                         (offset & (BDRV_SECTOR_SIZE - 1)), bytes))
    return ret


def alloc_f(blk, argv: list[str]) -> int:
    bs = bb.blk_bs(blk)
    num = [0]

    start = offset = cvtnum(argv[1])
    if offset < 0:
        print_cvtnum_err(offset, argv[1])
        return offset

    if len(argv) == 3:
        count = cvtnum(argv[2])
        if count < 0:
            print_cvtnum_err(count, argv[2])
            return count
    else:
        count = BDRV_SECTOR_SIZE

    remaining = count
    sum_alloc = 0
    while remaining:
        ret = bdrv_is_allocated_bytes(bs, offset, remaining, num)
        if ret < 0:
            printf("is_allocated failed: %s\n", os.strerror(-ret))
            return ret
        offset += num[0]
        remaining -= num[0]
        if ret:
            sum_alloc += num[0]
        if num[0] == 0:
            count -= remaining
            remaining = 0

    s1 = cvtstr(start)

    printf("%d/%d bytes allocated at offset %s\n", sum_alloc, count, s1)
    return 0


alloc_cmd = cmdinfo_t(
    name="alloc", altname="a", argmin=1, argmax=2, cfunc=alloc_f,
    args="offset [count]",
    oneline="checks if offset is allocated in the file")


def map_is_allocated(bs, offset: int, bytes: int, pnum: list) -> int:
    """The allocation state at offset and how far it reaches."""
    num = [0]

    ret = bdrv_is_allocated_bytes(bs, offset, bytes, num)
    if ret < 0:
        return ret

    firstret = ret
    pnum[0] = num[0]

    while bytes > 0 and ret == firstret:
        offset += num[0]
        bytes -= num[0]

        ret = bdrv_is_allocated_bytes(bs, offset, bytes, num)
        if ret == firstret and num[0]:
            pnum[0] += num[0]
        else:
            break

    return firstret


def map_f(blk, argv: list[str]) -> int:
    num = [0]

    offset = 0
    bytes = bb.blk_getlength(blk)
    if bytes < 0:
        error_report("Failed to query image length: %s", os.strerror(-bytes))
        return bytes

    while bytes:
        ret = map_is_allocated(bb.blk_bs(blk), offset, bytes, num)
        if ret < 0:
            error_report("Failed to get allocation status: %s",
                         os.strerror(-ret))
            return ret
        elif not num[0]:
            error_report("Unexpected end of image")
            return -errno.EIO

        retstr = "    allocated" if ret else "not allocated"
        s1 = cvtstr(num[0])
        s2 = cvtstr(offset)
        printf("%s (0x%x) bytes %s at offset %s (0x%x)\n",
               s1, num[0], retstr, s2, offset)

        offset += num[0]
        bytes -= num[0]

    return 0


map_cmd = cmdinfo_t(
    name="map", argmin=0, argmax=0, cfunc=map_f, args="",
    oneline="prints the allocated areas of a file")


def reopen_help() -> None:
    printf(
        "\n"
        " Changes the open options of an already opened image\n"
        "\n"
        " Example:\n"
        " 'reopen -o lazy-refcounts=on' - activates lazy refcount writeback on a qcow2 image\n"
        "\n"
        " -r, -- Reopen the image read-only\n"
        " -w, -- Reopen the image read-write\n"
        " -c, -- Change the cache mode to the given value\n"
        " -o, -- Changes block driver options (cf. 'open' command)\n"
        "\n")


reopen_opts = QemuOptsList("reopen", [])
reopen_opts.merge_lists = True

# The QemuOpts of each merge_lists list (C keeps them in the list's head).
merged_opts: dict = {}


def qemu_opts_parse_merged(lst: QemuOptsList, params: str,
                           permit_abbrev: bool) -> bool:
    """qemu_opts_parse_noisily into the QemuOpts of lst that
    qemu_opts_take_merged() hands over (with permit_abbrev, a first value
    without a name belongs to the list's implied option); prints the error,
    or the list's options for a "help" when the list has a fixed set of
    them, and returns False on failure."""
    local_err = [None]
    help_wanted = [False] if lst.desc else None
    opts_id = qemu_opts_parse_id(params)
    # qemu_opts_create: an id names a QemuOpts, and a merged list has one
    if opts_id is not None and lst.merge_lists:
        error_setg(local_err, "Invalid parameter 'id'")
    elif opts_id is not None and not core.id_wellformed(opts_id):
        error_setg(local_err, "Parameter 'id' expects an identifier")
        error_append_hint(local_err, "Identifiers consist of letters, "
                          "digits, '-', '.', '_', starting with a letter.\n")
    else:
        opts = merged_opts.get(lst.name)
        if opts is None:
            opts = merged_opts[lst.name] = qemu_opts_create(lst, opts_id)
        qemu_opts_do_parse(opts, params,
                           lst.implied_opt_name if permit_abbrev else None,
                           local_err, True, help_wanted)
        if not local_err[0] and not (help_wanted and help_wanted[0]):
            return True
        # opts_parse deletes what it made, the options merged so far too
        del merged_opts[lst.name]
    if help_wanted and help_wanted[0]:
        qemu_opts_print_help(lst, True)
    else:
        error_report_err(local_err[0])
    return False


def qemu_opts_take_merged(lst: QemuOptsList) -> Optional[dict]:
    """qemu_opts_find + qemu_opts_to_qdict + qemu_opts_reset: the options
    given so far as a dict, None if there were none."""
    opts = merged_opts.pop(lst.name, None)
    return qemu_opts_to_qdict(opts) if opts is not None else None


# The on/off options of 7.2's bdrv_runtime_opts that qemu-io can reopen with.
REOPEN_BOOL_OPTS = ('read-only', BDRV_OPT_CACHE_DIRECT,
                    BDRV_OPT_CACHE_NO_FLUSH, 'force-share')


def _bool_opt(opts: dict, key: str) -> bool:
    """The on/off value of key in a checked options dict, popped."""
    return bool(parse_option_bool(key, opts.pop(key), None))


def reopen_child_options(bs, options: dict) -> dict:
    """Take the "<child>." options of the children that inherit from bs
    out of options, as 7.2's bdrv_reopen_queue_child() does, so that each
    node checks its own options (and names them without the prefix):
    node -> its options, for every level below bs."""
    split: dict = {}
    for child in bs.children:
        if child.bs.inherits_from is not bs:
            continue
        prefix = child.name + '.'
        mine = {key[len(prefix):]: options.pop(key) for key in list(options)
                if key.startswith(prefix)}
        split.update(reopen_child_options(child.bs, mine))
        if mine:
            split[child.bs] = mine
    return split


def reopen_read_only_conflict(blk, bs, flags: int, child_options: dict):
    """The node a reopen would make read-only while a user still writes
    through it (7.2's bdrv_node_refresh_perm), or None: bs while blk holds
    the write permission, or a storage child given read-only=on under a
    parent that stays writable."""
    if not flags & BDRV_O_RDWR:
        return bs if blk in write_perm_blks else None
    for child in bs.children:
        read_only = child_options.get(child.bs, {}).get('read-only')
        if child.name != 'backing' and read_only is not None \
                and parse_option_bool('read-only', read_only, None):
            return child.bs
    return None


def reopen_f(blk, argv: list[str]) -> int:
    bs = bb.blk_bs(blk)
    flags = [bs.open_flags]
    writethrough = [not bb.blk_enable_write_cache(blk)]
    has_rw_option = False
    has_cache_option = False
    local_err = [None]

    opts = Getopt(argv, "c:o:rw")
    for c, optarg in opts:
        if c == 'c':
            if core.bdrv_parse_cache_mode(optarg, flags, writethrough) < 0:
                error_report("Invalid cache option: %s", optarg)
                return -errno.EINVAL
            has_cache_option = True
        elif c == 'o':
            if not qemu_opts_parse_merged(reopen_opts, optarg, False):
                qemu_opts_take_merged(reopen_opts)
                return -errno.EINVAL
        elif c == 'r':
            if has_rw_option:
                error_report("Only one -r/-w option may be given")
                return -errno.EINVAL
            flags[0] &= ~BDRV_O_RDWR
            has_rw_option = True
        elif c == 'w':
            if has_rw_option:
                error_report("Only one -r/-w option may be given")
                return -errno.EINVAL
            flags[0] |= BDRV_O_RDWR
            has_rw_option = True
        else:
            qemu_opts_take_merged(reopen_opts)
            qemuio_command_usage(reopen_cmd)
            return -errno.EINVAL
    argv, optind = opts.argv, opts.optind

    if optind != len(argv):
        qemu_opts_take_merged(reopen_opts)
        qemuio_command_usage(reopen_cmd)
        return -errno.EINVAL

    if not flags[0] & BDRV_O_RDWR:
        write_perm_blks.discard(blk)

    qdict = qemu_opts_take_merged(reopen_opts) or {}

    if 'read-only' in qdict and has_rw_option:
        error_report("Cannot set both -r/-w and 'read-only'")
        return -errno.EINVAL
    if has_cache_option and (BDRV_OPT_CACHE_DIRECT in qdict
                             or BDRV_OPT_CACHE_NO_FLUSH in qdict):
        error_report("Cannot set both -c and the cache options")
        return -errno.EINVAL

    child_options = reopen_child_options(bs, qdict)
    # 7.2's bdrv_reopen_prepare() parses the options of bdrv_runtime_opts
    # before it looks for options that cannot change; force-share may stay
    # as it is
    for node, opts in ((bs, qdict), *child_options.items()):
        for key in REOPEN_BOOL_OPTS:
            if key in opts and parse_option_bool(key, opts[key],
                                                 local_err) is None:
                error_report_err(local_err[0])
                return -errno.EINVAL
        if 'force-share' in opts \
                and opts['force-share'] == force_share_values.get(node):
            del opts['force-share']

    # 7.2 passes read-only and the cache mode as options; this block layer
    # takes them as flags
    if 'read-only' in qdict:
        if _bool_opt(qdict, 'read-only'):
            flags[0] &= ~BDRV_O_RDWR
        else:
            flags[0] |= BDRV_O_RDWR
    for key, flag in ((BDRV_OPT_CACHE_DIRECT, BDRV_O_NOCACHE),
                      (BDRV_OPT_CACHE_NO_FLUSH, BDRV_O_NO_FLUSH)):
        if key in qdict:
            if _bool_opt(qdict, key):
                flags[0] |= flag
            else:
                flags[0] &= ~flag

    if not flags[0] & BDRV_O_RDWR:
        io.bdrv_drain(bs)

    node = reopen_read_only_conflict(blk, bs, flags[0], child_options)
    if node is not None:
        error_report("Read-only block node '%s' cannot support read-write "
                     "users", core.bdrv_get_node_name(node))
        return -errno.EINVAL

    brq = core.bdrv_reopen_queue(None, bs, qdict, flags[0])
    for entry in brq:
        entry.state.options.update(child_options.get(entry.state.bs, {}))
    core.bdrv_reopen_multiple(brq, local_err)
    if local_err[0]:
        error_report_err(local_err[0])
        return -errno.EINVAL

    bb.blk_set_enable_write_cache(blk, not writethrough[0])
    return 0


reopen_cmd = cmdinfo_t(
    name="reopen", argmin=0, argmax=-1, cfunc=reopen_f,
    args="[(-r|-w)] [-c cache] [-o options]",
    oneline="reopens an image with new options",
    help=reopen_help)


def break_f(blk, argv: list[str]) -> int:
    ret = core.bdrv_debug_breakpoint(bb.blk_bs(blk), argv[1], argv[2])
    if ret < 0:
        printf("Could not set breakpoint: %s\n", os.strerror(-ret))
        return ret
    return 0


def remove_break_f(blk, argv: list[str]) -> int:
    ret = core.bdrv_debug_remove_breakpoint(bb.blk_bs(blk), argv[1])
    if ret < 0:
        printf("Could not remove breakpoint %s: %s\n", argv[1],
               os.strerror(-ret))
        return ret
    return 0


break_cmd = cmdinfo_t(
    name="break", argmin=2, argmax=2, cfunc=break_f, args="event tag",
    oneline="sets a breakpoint on event and tags the stopped request as tag")

remove_break_cmd = cmdinfo_t(
    name="remove_break", argmin=1, argmax=1, cfunc=remove_break_f,
    args="tag", oneline="remove a breakpoint by tag")


def resume_f(blk, argv: list[str]) -> int:
    ret = core.bdrv_debug_resume(bb.blk_bs(blk), argv[1])
    if ret < 0:
        printf("Could not resume request: %s\n", os.strerror(-ret))
        return ret
    return 0


resume_cmd = cmdinfo_t(
    name="resume", argmin=1, argmax=1, cfunc=resume_f, args="tag",
    oneline="resumes the request tagged as tag")


def wait_break_f(blk, argv: list[str]) -> int:
    while not core.bdrv_debug_is_suspended(bb.blk_bs(blk), argv[1]):
        aio_poll(bb.blk_get_aio_context(blk), True)
    return 0


wait_break_cmd = cmdinfo_t(
    name="wait_break", argmin=1, argmax=1, cfunc=wait_break_f, args="tag",
    oneline="waits for the suspension of a request")


def abort_f(blk, argv: list[str]) -> int:
    # glibc's abort() does not flush stdio: buffered output is lost
    c_stdout.discard()
    os.abort()


abort_cmd = cmdinfo_t(
    name="abort", cfunc=abort_f, flags=CMD_NOFILE_OK,
    oneline="simulate a program crash using abort(3)")


def sigraise_help() -> None:
    printf(
        "\n"
        " raises the given signal\n"
        "\n"
        " Example:\n"
        " 'sigraise %i' - raises SIGTERM\n"
        "\n"
        " Invokes raise(signal), where \"signal\" is the mandatory integer argument\n"
        " given to sigraise.\n"
        "\n", signal.SIGTERM)


def sigraise_f(blk, argv: list[str]) -> int:
    sig = cvtnum(argv[1])
    if sig < 0:
        print_cvtnum_err(sig, argv[1])
        return sig
    elif sig > NSIG:
        printf("signal argument '%s' is too large to be a valid signal\n",
               argv[1])
        return -errno.EINVAL

    # raise() may kill the process without flushing stdio: flush first
    fflush_stdout()

    # C ignores raise() failing: for 0, NSIG and glibc's internal signals
    if 0 < sig < NSIG:
        try:
            signal.raise_signal(sig)
        except OSError:
            pass
    return 0


sigraise_cmd = cmdinfo_t(
    name="sigraise", cfunc=sigraise_f, argmin=1, argmax=1,
    flags=CMD_NOFILE_OK, args="signal", oneline="raises a signal",
    help=sigraise_help)


def sleep_cb(opaque: list) -> None:
    opaque[0] = True


def sleep_f(blk, argv: list[str]) -> int:
    expired = [False]

    ms, end, _ = strtol(argv[1], 0)
    if ms < 0 or end != len(argv[1]):
        printf("%s is not a valid number\n", argv[1])
        return -errno.EINVAL

    timer = aio_timer_new(qemu_get_aio_context(), QEMU_CLOCK_HOST, SCALE_NS,
                          sleep_cb, expired)
    timer_mod(timer, qemu_clock_get_ns(QEMU_CLOCK_HOST) + SCALE_MS * ms)

    while not expired[0]:
        main_loop_wait(False)

    timer_free(timer)
    return 0


sleep_cmd = cmdinfo_t(
    name="sleep", argmin=1, argmax=1, cfunc=sleep_f, flags=CMD_NOFILE_OK,
    oneline="waits for the given value in milliseconds")


def help_oneline(cmd: str, ct: cmdinfo_t) -> None:
    printf("%s ", cmd)

    if ct.args is not None:
        printf("%s ", ct.args)
    printf("-- %s\n", ct.oneline)


def help_onecmd(cmd: str, ct: cmdinfo_t) -> None:
    help_oneline(cmd, ct)
    if ct.help:
        ct.help()


def help_all() -> None:
    for ct in cmdtab:
        help_oneline(ct.name, ct)
    printf("\nUse 'help commandname' for extended help.\n")


def help_f(blk, argv: list[str]) -> int:
    if len(argv) < 2:
        help_all()
        return 0

    ct = find_command(argv[1])
    if ct is None:
        printf("command %s not found\n", argv[1])
        return -errno.EINVAL

    help_onecmd(argv[1], ct)
    return 0


help_cmd = cmdinfo_t(
    name="help", altname="?", cfunc=help_f, argmin=0, argmax=1,
    flags=CMD_FLAG_GLOBAL, args="[command]",
    oneline="help for one or all commands")


def qemuio_command(blk, cmd: str) -> int:
    """Run one command line; 0 or a negative errno."""
    ret = 0
    v = breakline(cmd)
    if v:
        ct = find_command(v[0])
        if ct:
            ret = command(blk, ct, v)
        else:
            c_stderr_write('command "%s" not found\n' % v[0])
            ret = -errno.EINVAL
    return ret


def init_qemuio_commands() -> None:
    for ct in (help_cmd, read_cmd, readv_cmd, write_cmd, writev_cmd,
               aio_read_cmd, aio_write_cmd, aio_flush_cmd, flush_cmd,
               truncate_cmd, length_cmd, info_cmd, discard_cmd, alloc_cmd,
               map_cmd, reopen_cmd, break_cmd, remove_break_cmd, resume_cmd,
               wait_break_cmd, abort_cmd, sleep_cmd, sigraise_cmd):
        qemuio_add_command(ct)


# C registers the commands from a constructor, before main() runs
init_qemuio_commands()
