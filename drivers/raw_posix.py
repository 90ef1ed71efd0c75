"""The ``file`` protocol: the Python twin of QEMU's block/raw-posix.c
(regular files on Linux).

Requests run in the thread pool of the node's AioContext, as in QEMU: reads
and writes with os.preadv/os.pwritev straight into the request's
memoryviews (the coroutine form, paio_submit_co, which QEMU 2.7 uses for
them), flush and discard through the AIO form (paio_submit) as in 2.5.
Discard punches holes and write_zeroes uses fallocate(ZERO_RANGE), then
PUNCH_HOLE, then plain fallocate, through ctypes.  cache.direct=on opens
with O_DIRECT and probes the alignment the file system wants.

Where the installed QEMU (7.2) differs in what a user sees, this follows
7.2: only regular files are accepted, aio=native without cache.direct=on is
an error (with it, requests still use the thread pool), the option
``locking`` (auto/on/off) is accepted (no locks are taken), so are
``aio-max-batch``, ``drop-cache`` and ``x-check-cache-dropped`` (kept, not
used; the last two may change at reopen), ``pr-manager`` names no manager,
and creation takes the option ``extent_size_hint``.  The file is opened with O_NONBLOCK,
cleared right after, so that opening a FIFO fails with the "regular file"
error instead of blocking.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import mmap
import os
import stat
import struct

from block import core, io
from block.block_int import (
    BDRV_BLOCK_DATA, BDRV_BLOCK_OFFSET_VALID, BDRV_BLOCK_ZERO,
    BDRV_O_NATIVE_AIO, BDRV_O_NOCACHE, BDRV_O_RDWR, BDRV_O_TEMPORARY,
    BDRV_REQ_MAY_UNMAP, BDRV_REQ_ZERO_WRITE, BDRV_SECTOR_SIZE, BLOCK_OPT_NOCOW,
    BLOCK_OPT_PREALLOC, BLOCK_OPT_SIZE, BlockDriver)
from drivers import bdrv_register
from util.aio import aio_get_thread_pool
from util.error import Errp, error_propagate, error_setg, error_setg_errno
from util.iov import iov_memset, qemu_memalign
from util.qemu_error import warn_report
from util.qemu_option import (QEMU_OPT_BOOL, QEMU_OPT_NUMBER, QEMU_OPT_SIZE,
                              QEMU_OPT_STRING, QemuOptDesc, QemuOptsList,
                              qemu_opt_get, qemu_opt_get_bool,
                              qemu_opt_get_del, qemu_opt_get_number,
                              qemu_opt_get_size_del, qemu_opts_absorb_qdict,
                              qemu_opts_create)
from util.thread_pool import (thread_pool_submit_aio, thread_pool_submit_co,
                              thread_pool_submit_rw_co)

# block/raw-aio.h
QEMU_AIO_READ = 0x0001
QEMU_AIO_WRITE = 0x0002
QEMU_AIO_IOCTL = 0x0004
QEMU_AIO_FLUSH = 0x0008
QEMU_AIO_DISCARD = 0x0010
QEMU_AIO_WRITE_ZEROES = 0x0020
QEMU_AIO_TYPE_MASK = (QEMU_AIO_READ | QEMU_AIO_WRITE | QEMU_AIO_IOCTL |
                      QEMU_AIO_FLUSH | QEMU_AIO_DISCARD |
                      QEMU_AIO_WRITE_ZEROES)
QEMU_AIO_MISALIGNED = 0x1000   # needs a bounce buffer (O_DIRECT)

FTYPE_FILE = 0

MAX_BLOCKSIZE = 4096

# linux/falloc.h
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_ZERO_RANGE = 0x10

# linux/fs.h: FS_IOC_GETFLAGS/SETFLAGS and the btrfs "no copy on write" bit
FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_NOCOW_FL = 0x00800000
# linux/fs.h: struct fsxattr (five __u32 and 8 bytes of padding), its
# ioctls and the extent size hint flag
FSXATTR = struct.Struct('=5I8x')
FS_IOC_FSGETXATTR = 0x801c581f
FS_IOC_FSSETXATTR = 0x401c5820
FS_XFLAG_EXTSIZE = 0x00000800

# 7.2's include/block/block_int-common.h; only this driver uses it
BLOCK_OPT_EXTENT_SIZE_HINT = 'extent_size_hint'
UINT32_MAX = 0xffffffff

_libc = ctypes.CDLL(ctypes.util.find_library('c'), use_errno=True)
_libc.fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64,
                            ctypes.c_int64)
_libc.fallocate.restype = ctypes.c_int


class BDRVRawState:
    __slots__ = ('fd', 'type', 'open_flags', 'buf_align', 'has_discard',
                 'has_write_zeroes', 'discard_zeroes', 'has_fallocate',
                 'needs_alignment', 'aio_max_batch', 'drop_cache',
                 'check_cache_dropped')

    def __init__(self) -> None:
        self.fd = -1
        self.type = FTYPE_FILE
        self.open_flags = 0         # os.O_* flags of fd
        self.buf_align = 0
        self.has_discard = False
        self.has_write_zeroes = False
        self.discard_zeroes = False
        self.has_fallocate = False
        self.needs_alignment = False
        # 7.2's options for io_uring batches and live migration's page
        # cache checks: kept, with nothing here that uses them
        self.aio_max_batch = 0
        self.drop_cache = True
        self.check_cache_dropped = False


class BDRVRawReopenState:
    __slots__ = ('fd', 'open_flags', 'drop_cache', 'check_cache_dropped')

    def __init__(self) -> None:
        self.fd = -1
        self.open_flags = 0
        self.drop_cache = True
        self.check_cache_dropped = False


class RawPosixAIOData:
    """One request for a worker thread."""
    __slots__ = ('bs', 'aio_fildes', 'aio_iov', 'aio_niov', 'aio_nbytes',
                 'aio_offset', 'aio_type')

    def __init__(self, bs, fd: int, offset: int, nbytes: int, qiov,
                 aio_type: int):
        self.bs = bs
        self.aio_fildes = fd
        self.aio_offset = offset
        self.aio_nbytes = nbytes
        self.aio_type = aio_type
        # the vector's own list (exactly niov entries), as C shares the array
        self.aio_iov = qiov.iov if qiov else None
        self.aio_niov = qiov.niov if qiov else 0


def raw_is_io_aligned(fd: int, buf: memoryview, length: int) -> bool:
    """Does a read of length bytes into buf work with this fd?"""
    try:
        os.preadv(fd, [buf[:length]], 0)
    except OSError as e:
        # Linux says EINVAL for a misaligned O_DIRECT read; other errors
        # (a failing disk) say nothing about alignment
        return e.errno != errno.EINVAL
    return True


def raw_probe_alignment(bs, fd: int, errp: Errp) -> None:
    """Find the memory and request alignment O_DIRECT needs on fd."""
    s = bs.opaque
    max_align = max(MAX_BLOCKSIZE, mmap.PAGESIZE)

    # buffered I/O has no alignment restrictions
    if core.bdrv_is_sg(bs) or not s.needs_alignment:
        bs.request_alignment = 1
        s.buf_align = 1
        return

    # regular files have no logical block size to ask for: try reads
    bs.request_alignment = 0
    s.buf_align = 0

    buf = qemu_memalign(max_align, 2 * max_align)
    align = 512
    while align <= max_align:
        if raw_is_io_aligned(fd, buf[align:], max_align):
            s.buf_align = align
            break
        align <<= 1

    if s.buf_align:
        buf = qemu_memalign(s.buf_align, max_align)
        align = 512
        while align <= max_align:
            if raw_is_io_aligned(fd, buf, align):
                bs.request_alignment = align
                break
            align <<= 1

    if not s.buf_align or not bs.request_alignment:
        error_setg(errp, 'Could not find working O_DIRECT alignment. '
                   'Try cache.direct=off.')


def raw_parse_flags(bdrv_flags: int, open_flags: int) -> int:
    """The os.open flags for bdrv_flags (C: in/out *open_flags)."""
    open_flags &= ~os.O_ACCMODE
    if bdrv_flags & BDRV_O_RDWR:
        open_flags |= os.O_RDWR
    else:
        open_flags |= os.O_RDONLY
    # no flags for writeback, O_DIRECT to bypass the host page cache
    if bdrv_flags & BDRV_O_NOCACHE:
        open_flags |= os.O_DIRECT
    return open_flags


def raw_parse_filename(filename: str, options: dict, errp: Errp) -> None:
    # "file" is the default protocol, so the prefix is optional
    if filename.startswith('file:'):
        filename = filename[len('file:'):]
    options['filename'] = filename


raw_runtime_opts = QemuOptsList('raw', [
    QemuOptDesc('filename', QEMU_OPT_STRING, 'File name of the image'),
    QemuOptDesc('aio', QEMU_OPT_STRING,
                'host AIO implementation (threads, native)'),
    QemuOptDesc('aio-max-batch', QEMU_OPT_NUMBER,
                'AIO max batch size (0 = auto handled by AIO backend, '
                'default: 0)'),
    QemuOptDesc('locking', QEMU_OPT_STRING,
                'file locking mode (on/off/auto, default: auto)'),
    QemuOptDesc('pr-manager', QEMU_OPT_STRING,
                'id of persistent reservation manager object '
                '(default: none)'),
    QemuOptDesc('drop-cache', QEMU_OPT_BOOL,
                'invalidate page cache during live migration (default: on)'),
    QemuOptDesc('x-check-cache-dropped', QEMU_OPT_BOOL,
                'check that page cache was dropped on live migration '
                '(default: off)'),
])

# what raw_reopen_prepare takes of the options (7.2 absorbs the whole list
# and puts the rest back)
reopen_runtime_opts = QemuOptsList('raw', [
    desc for desc in raw_runtime_opts.desc
    if desc.name in ('drop-cache', 'x-check-cache-dropped')])


def raw_open_common(bs, options: dict, bdrv_flags: int, open_flags: int,
                    errp: Errp) -> int:
    s = bs.opaque
    local_err = [None]

    opts = qemu_opts_create(raw_runtime_opts)
    qemu_opts_absorb_qdict(opts, options, local_err)
    if local_err[0]:
        error_propagate(errp, local_err[0])
        return -errno.EINVAL

    filename = qemu_opt_get(opts, 'filename')

    aio = qemu_opt_get(opts, 'aio')
    if aio is None:
        aio = 'native' if bdrv_flags & BDRV_O_NATIVE_AIO else 'threads'
    if aio not in ('threads', 'native'):
        error_setg(errp, 'invalid parameter value: %s', aio)
        return -errno.EINVAL
    s.aio_max_batch = qemu_opt_get_number(opts, 'aio-max-batch', 0)
    locking = qemu_opt_get(opts, 'locking')
    if locking is not None and locking not in ('auto', 'on', 'off'):
        error_setg(errp, 'invalid parameter value: %s', locking)
        return -errno.EINVAL
    pr_manager = qemu_opt_get(opts, 'pr-manager')
    if pr_manager is not None:
        # no --object pr-manager-helper here: no id names one
        error_setg(errp, "No persistent reservation manager with id '%s'",
                   pr_manager)
        return -errno.EINVAL
    s.drop_cache = qemu_opt_get_bool(opts, 'drop-cache', True)
    s.check_cache_dropped = qemu_opt_get_bool(opts, 'x-check-cache-dropped',
                                              False)

    s.open_flags = raw_parse_flags(bdrv_flags, open_flags)

    if aio == 'native' and not s.open_flags & os.O_DIRECT:
        error_setg(errp, 'aio=native was specified, but it requires '
                   'cache.direct=on, which was not specified.')
        return -errno.EINVAL

    s.fd = -1
    ret = 0
    try:
        fd = os.open(filename, s.open_flags | os.O_NONBLOCK | os.O_CLOEXEC,
                     0o644)
    except OSError as e:
        ret = -e.errno
        if ret == -errno.EROFS:
            ret = -errno.EACCES
        fd = -1
    if ret == 0:
        s.fd = fd
        ret = _raw_check_file(bs, errp)

    if ret < 0 and s.fd >= 0:
        os.close(s.fd)
        s.fd = -1
    if filename and bdrv_flags & BDRV_O_TEMPORARY:
        os.unlink(filename)
    return ret


def _raw_check_file(bs, errp: Errp) -> int:
    """The part of raw_open_common after the file is open."""
    s = bs.opaque
    s.has_discard = True
    s.has_write_zeroes = True
    if bs.open_flags & BDRV_O_NOCACHE:
        s.needs_alignment = True

    try:
        st = os.fstat(s.fd)
    except OSError as e:
        error_setg_errno(errp, e.errno, 'Could not stat file')
        return -e.errno

    if not stat.S_ISREG(st.st_mode):
        error_setg(errp, "'%s' driver requires '%s' to be a regular file",
                   bs.drv.format_name, bs.filename)
        return -errno.EINVAL
    # a regular file: the O_NONBLOCK that kept a FIFO from blocking is not
    # wanted for I/O
    os.set_blocking(s.fd, True)
    s.discard_zeroes = True
    s.has_fallocate = True
    # a regular file grows with zeroes
    bs.supported_truncate_flags = BDRV_REQ_ZERO_WRITE
    return 0


def raw_open(bs, options: dict, flags: int, errp: Errp) -> int:
    bs.opaque.type = FTYPE_FILE
    return raw_open_common(bs, options, flags, 0, errp)


def raw_reopen_prepare(state, queue, errp: Errp) -> int:
    assert state is not None
    assert state.bs is not None
    s = state.bs.opaque
    local_err = [None]

    state.opaque = raw_s = BDRVRawReopenState()

    # the two options 7.2's raw_reopen_prepare lets change; the others
    # stay in state.options for bdrv_reopen_prepare to compare
    opts = qemu_opts_create(reopen_runtime_opts)
    qemu_opts_absorb_qdict(opts, state.options, local_err)
    if local_err[0]:
        error_propagate(errp, local_err[0])
        return -errno.EINVAL
    raw_s.drop_cache = qemu_opt_get_bool(opts, 'drop-cache', True)
    raw_s.check_cache_dropped = qemu_opt_get_bool(
        opts, 'x-check-cache-dropped', False)

    raw_s.open_flags = raw_parse_flags(state.flags, 0)
    raw_s.fd = -1
    ret = 0

    fcntl_flags = os.O_APPEND | os.O_NONBLOCK | os.O_NOATIME
    if (raw_s.open_flags & ~fcntl_flags) == (s.open_flags & ~fcntl_flags):
        # same access mode: a duplicate of the fd will do
        raw_s.fd = os.dup(s.fd)

    if raw_s.fd == -1:
        # the access mode changed: open the file again
        try:
            raw_s.fd = os.open(state.bs.filename,
                               raw_s.open_flags | os.O_CLOEXEC)
        except OSError as e:
            error_setg_errno(errp, e.errno, 'Could not reopen file')
            ret = -1

    # fail here already if the new fd has no working O_DIRECT alignment;
    # probe with the new cache mode, keep the old limits until the commit
    # (bdrv_reopen_commit refreshes them)
    if raw_s.fd != -1:
        bs = state.bs
        saved = s.needs_alignment, s.buf_align, bs.request_alignment
        s.needs_alignment = bool(state.flags & BDRV_O_NOCACHE)
        raw_probe_alignment(bs, raw_s.fd, local_err)
        s.needs_alignment, s.buf_align, bs.request_alignment = saved
        if local_err[0]:
            os.close(raw_s.fd)
            raw_s.fd = -1
            error_propagate(errp, local_err[0])
            ret = -errno.EINVAL

    return ret


def raw_reopen_commit(state) -> None:
    raw_s = state.opaque
    s = state.bs.opaque
    s.drop_cache = raw_s.drop_cache
    s.check_cache_dropped = raw_s.check_cache_dropped
    s.open_flags = raw_s.open_flags
    s.needs_alignment = bool(state.flags & BDRV_O_NOCACHE)
    os.close(s.fd)
    s.fd = raw_s.fd
    state.opaque = None


def raw_reopen_abort(state) -> None:
    raw_s = state.opaque
    # nothing to do if we did not get far enough
    if raw_s is None:
        return
    if raw_s.fd >= 0:
        os.close(raw_s.fd)
        raw_s.fd = -1
    state.opaque = None


def raw_refresh_limits(bs, errp: Errp) -> None:
    s = bs.opaque
    raw_probe_alignment(bs, s.fd, errp)
    bs.bl.min_mem_alignment = s.buf_align
    bs.bl.opt_mem_alignment = max(s.buf_align, mmap.PAGESIZE)


def handle_aiocb_flush(aiocb: RawPosixAIOData) -> int:
    try:
        os.fdatasync(aiocb.aio_fildes)
    except OSError as e:
        return -e.errno
    return 0


def handle_aiocb_rw_vector(aiocb: RawPosixAIOData) -> int:
    """preadv/pwritev on the request's own buffers.  Python retries EINTR
    itself; a short transfer goes on with the rest, up to EOF on reads."""
    iov = aiocb.aio_iov
    offset = aiocb.aio_offset
    done = 0
    is_write = aiocb.aio_type & QEMU_AIO_WRITE
    while done < aiocb.aio_nbytes:
        try:
            if is_write:
                n = os.pwritev(aiocb.aio_fildes, iov, offset + done)
            else:
                n = os.preadv(aiocb.aio_fildes, iov, offset + done)
        except OSError as e:
            return -e.errno
        if n == 0:
            break
        done += n
        if done < aiocb.aio_nbytes:
            iov = _iov_skip(iov, n)
    return done


def _iov_skip(iov: list, n: int) -> list:
    """The iovec list without its first n bytes (iov_discard_front on a
    copy of the array)."""
    i = 0
    while n >= len(iov[i]):
        n -= len(iov[i])
        i += 1
    return [iov[i][n:]] + iov[i + 1:]


def handle_aiocb_rw_linear(aiocb: RawPosixAIOData, buf: memoryview) -> int:
    """pread/pwrite on one buffer; returns the bytes done or -errno.  Short
    reads happen only at the end of the file."""
    offset = 0
    is_write = aiocb.aio_type & QEMU_AIO_WRITE
    while offset < aiocb.aio_nbytes:
        try:
            if is_write:
                n = os.pwrite(aiocb.aio_fildes, buf[offset:aiocb.aio_nbytes],
                              aiocb.aio_offset + offset)
            else:
                n = os.preadv(aiocb.aio_fildes,
                              [buf[offset:aiocb.aio_nbytes]],
                              aiocb.aio_offset + offset)
        except OSError as e:
            if e.errno == errno.EINVAL and \
                    aiocb.bs.open_flags & BDRV_O_NOCACHE and \
                    not is_write and offset > 0:
                # an O_DIRECT read may fail with EINVAL at an unaligned
                # offset after a short read; short reads only happen at
                # EOF, so this is one, not an I/O error
                break
            return -e.errno
        if n == 0:
            break
        offset += n
    return offset


def handle_aiocb_rw(aiocb: RawPosixAIOData) -> int:
    if not aiocb.aio_type & QEMU_AIO_MISALIGNED:
        # every buffer is aligned: I/O straight into them
        return handle_aiocb_rw_vector(aiocb)

    # misaligned for O_DIRECT: go through an aligned bounce buffer
    buf = io.qemu_try_blockalign(aiocb.bs, aiocb.aio_nbytes)
    if buf is None:
        return -errno.ENOMEM

    if aiocb.aio_type & QEMU_AIO_WRITE:
        p = 0
        for v in aiocb.aio_iov:
            buf[p:p + len(v)] = v
            p += len(v)
        assert p == aiocb.aio_nbytes

    nbytes = handle_aiocb_rw_linear(aiocb, buf)
    if not aiocb.aio_type & QEMU_AIO_WRITE:
        p = 0
        count = aiocb.aio_nbytes
        for v in aiocb.aio_iov:
            if not count:
                break
            copy = min(count, len(v))
            v[:copy] = buf[p:p + copy]
            p += copy
            count -= copy
        assert count == 0
    return nbytes


def translate_err(err: int) -> int:
    if err in (-errno.ENODEV, -errno.ENOSYS, -errno.EOPNOTSUPP,
               -errno.ENOTTY):
        err = -errno.ENOTSUP
    return err


def do_fallocate(fd: int, mode: int, offset: int, length: int) -> int:
    while True:
        if _libc.fallocate(fd, mode, offset, length) == 0:
            return 0
        err = ctypes.get_errno()
        if err != errno.EINTR:
            return translate_err(-err)


def handle_aiocb_write_zeroes(aiocb: RawPosixAIOData) -> int:
    s = aiocb.bs.opaque

    if s.has_write_zeroes:
        ret = do_fallocate(s.fd, FALLOC_FL_ZERO_RANGE, aiocb.aio_offset,
                           aiocb.aio_nbytes)
        if ret == 0 or ret != -errno.ENOTSUP:
            return ret
        s.has_write_zeroes = False

    if s.has_discard and s.has_fallocate:
        ret = do_fallocate(s.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                           aiocb.aio_offset, aiocb.aio_nbytes)
        if ret == 0:
            # the hole reads as zeroes; allocate it again
            ret = do_fallocate(s.fd, 0, aiocb.aio_offset, aiocb.aio_nbytes)
            if ret == 0 or ret != -errno.ENOTSUP:
                return ret
            s.has_fallocate = False
        elif ret != -errno.ENOTSUP:
            return ret
        else:
            s.has_discard = False

    if s.has_fallocate and \
            aiocb.aio_offset >= core.bdrv_getlength(aiocb.bs):
        # past the end of the file, new blocks read as zeroes anyway
        ret = do_fallocate(s.fd, 0, aiocb.aio_offset, aiocb.aio_nbytes)
        if ret == 0 or ret != -errno.ENOTSUP:
            return ret
        s.has_fallocate = False

    return -errno.ENOTSUP


def handle_aiocb_discard(aiocb: RawPosixAIOData) -> int:
    s = aiocb.bs.opaque

    if not s.has_discard:
        return -errno.ENOTSUP

    ret = do_fallocate(s.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                       aiocb.aio_offset, aiocb.aio_nbytes)
    if ret == -errno.ENOTSUP:
        s.has_discard = False
    return ret


def aio_worker(aiocb: RawPosixAIOData) -> int:
    """Runs in a worker thread of the pool."""
    kind = aiocb.aio_type & QEMU_AIO_TYPE_MASK
    if kind == QEMU_AIO_READ:
        ret = handle_aiocb_rw(aiocb)
        if 0 <= ret < aiocb.aio_nbytes:
            # the end of the file: the rest reads as zeroes
            iov_memset(aiocb.aio_iov, aiocb.aio_niov, ret, 0,
                       aiocb.aio_nbytes - ret)
            ret = aiocb.aio_nbytes
        if ret == aiocb.aio_nbytes:
            ret = 0
    elif kind == QEMU_AIO_WRITE:
        ret = handle_aiocb_rw(aiocb)
        if ret == aiocb.aio_nbytes:
            ret = 0
        elif 0 <= ret < aiocb.aio_nbytes:
            ret = -errno.EINVAL
    elif kind == QEMU_AIO_FLUSH:
        ret = handle_aiocb_flush(aiocb)
    elif kind == QEMU_AIO_DISCARD:
        ret = handle_aiocb_discard(aiocb)
    elif kind == QEMU_AIO_WRITE_ZEROES:
        ret = handle_aiocb_write_zeroes(aiocb)
    else:
        raise AssertionError('invalid aio request (0x%x)' % aiocb.aio_type)
    return ret


def paio_submit_co(bs, fd: int, sector_num: int, qiov, nb_sectors: int,
                   type: int) -> int:
    acb = RawPosixAIOData(bs, fd, sector_num * BDRV_SECTOR_SIZE,
                          nb_sectors * BDRV_SECTOR_SIZE, qiov, type)
    if qiov:
        assert qiov.size == acb.aio_nbytes
    pool = aio_get_thread_pool(core.bdrv_get_aio_context(bs))
    if type in (QEMU_AIO_READ, QEMU_AIO_WRITE):
        # (not QEMU_AIO_MISALIGNED): straight into the request's buffers
        return thread_pool_submit_rw_co(pool, aio_worker, acb, fd,
                                        acb.aio_iov, acb.aio_offset,
                                        acb.aio_nbytes,
                                        type == QEMU_AIO_WRITE)
    return thread_pool_submit_co(pool, aio_worker, acb)


def paio_submit(bs, fd: int, sector_num: int, qiov, nb_sectors: int, cb,
                opaque, type: int):
    acb = RawPosixAIOData(bs, fd, sector_num * BDRV_SECTOR_SIZE,
                          nb_sectors * BDRV_SECTOR_SIZE, qiov, type)
    if qiov:
        assert qiov.size == acb.aio_nbytes
    pool = aio_get_thread_pool(core.bdrv_get_aio_context(bs))
    return thread_pool_submit_aio(pool, aio_worker, acb, cb, opaque)


def raw_co_prw(bs, sector_num: int, nb_sectors: int, qiov,
               type: int) -> int:
    s = bs.opaque
    # buffers O_DIRECT cannot take go through a bounce buffer
    if s.needs_alignment and not io.bdrv_qiov_is_aligned(bs, qiov):
        type |= QEMU_AIO_MISALIGNED
    return paio_submit_co(bs, s.fd, sector_num, qiov, nb_sectors, type)


def raw_co_readv(bs, sector_num: int, nb_sectors: int, qiov) -> int:
    return raw_co_prw(bs, sector_num, nb_sectors, qiov, QEMU_AIO_READ)


def raw_co_writev(bs, sector_num: int, nb_sectors: int, qiov) -> int:
    return raw_co_prw(bs, sector_num, nb_sectors, qiov, QEMU_AIO_WRITE)


def raw_aio_flush(bs, cb, opaque):
    s = bs.opaque
    return paio_submit(bs, s.fd, 0, None, 0, cb, opaque, QEMU_AIO_FLUSH)


def raw_close(bs) -> None:
    s = bs.opaque
    if s.fd >= 0:
        os.close(s.fd)
        s.fd = -1


def raw_regular_truncate(fd: int, offset: int, prealloc: str,
                         errp: Errp) -> int:
    """Resize a regular file, allocating what is added as prealloc says
    (QEMU 7.2's raw_regular_truncate, which raw_create shares)."""
    try:
        current_length = os.lseek(fd, 0, os.SEEK_END)
    except OSError as e:
        error_setg_errno(errp, e.errno, 'Could not determine current size')
        return -e.errno

    if prealloc != 'off' and offset < current_length:
        error_setg(errp, 'Cannot use preallocation for shrinking files')
        return -errno.ENOTSUP

    if prealloc == 'off':
        try:
            os.ftruncate(fd, offset)
        except OSError as e:
            error_setg_errno(errp, e.errno, 'Could not resize file')
            return -e.errno
        return 0

    if prealloc == 'falloc':
        # no ftruncate first: on file systems without fallocate() that
        # would make posix_fallocate() check every block
        if offset != current_length:
            try:
                os.posix_fallocate(fd, current_length,
                                   offset - current_length)
            except OSError as e:
                error_setg_errno(errp, e.errno,
                                 'Could not preallocate new data')
                return -e.errno
        return 0

    if prealloc == 'full':
        # the final size first: fewer, larger allocations
        try:
            os.ftruncate(fd, offset)
        except OSError as e:
            error_setg_errno(errp, e.errno, 'Could not resize file')
            return -e.errno
        buf = bytes(65536)
        pos = current_length
        try:
            while pos < offset:
                pos += os.pwrite(fd, buf[:min(offset - pos, 65536)], pos)
        except OSError as e:
            error_setg_errno(errp, e.errno,
                             'Could not write zeros for preallocation')
            return -e.errno
        try:
            os.fsync(fd)
        except OSError as e:
            error_setg_errno(errp, e.errno, 'Could not flush file to disk')
            return -e.errno
        return 0

    error_setg(errp, 'Unsupported preallocation mode: %s', prealloc)
    return -errno.ENOTSUP


def raw_truncate(bs, offset: int, prealloc: str, flags: int,
                 errp: Errp) -> int:
    s = bs.opaque
    try:
        st = os.fstat(s.fd)
    except OSError as e:
        error_setg_errno(errp, e.errno, 'Failed to fstat() the file')
        return -e.errno
    if not stat.S_ISREG(st.st_mode):
        error_setg(errp, 'Resizing this file is not supported')
        return -errno.ENOTSUP
    return raw_regular_truncate(s.fd, offset, prealloc, errp)


def raw_getlength(bs) -> int:
    s = bs.opaque
    try:
        return os.lseek(s.fd, 0, os.SEEK_END)
    except OSError as e:
        return -e.errno


def raw_get_allocated_file_size(bs) -> int:
    try:
        st = os.fstat(bs.opaque.fd)
    except OSError as e:
        return -e.errno
    return st.st_blocks * 512


def raw_create(filename: str, opts, errp: Errp) -> int:
    """7.2's raw_co_create_opts and raw_co_create in one."""
    if filename.startswith('file:'):
        filename = filename[len('file:'):]

    size = qemu_opt_get_size_del(opts, BLOCK_OPT_SIZE, 0)
    total_size = (size + BDRV_SECTOR_SIZE - 1) // BDRV_SECTOR_SIZE * \
        BDRV_SECTOR_SIZE
    # only a hint given by the user earns a warning when it cannot be set
    has_extent_size_hint = qemu_opt_get(opts, BLOCK_OPT_EXTENT_SIZE_HINT) \
        is not None
    extent_size_hint = qemu_opt_get_size_del(opts, BLOCK_OPT_EXTENT_SIZE_HINT,
                                             1024 * 1024)
    nocow = qemu_opt_get_bool(opts, BLOCK_OPT_NOCOW, False)
    prealloc = qemu_opt_get_del(opts, BLOCK_OPT_PREALLOC) or 'off'
    if prealloc not in ('off', 'falloc', 'full'):
        error_setg(errp, 'invalid parameter value: %s', prealloc)
        return -errno.EINVAL

    if extent_size_hint > UINT32_MAX:
        error_setg(errp, 'Extent size hint is too large')
        return -errno.EINVAL

    try:
        fd = os.open(filename,
                     os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                     0o644)
    except OSError as e:
        error_setg_errno(errp, e.errno, "Could not create '%s'", filename)
        return -e.errno

    if nocow:
        # a btrfs optimisation: failing is harmless
        _set_nocow(fd)
    err = _set_extent_size_hint(fd, extent_size_hint)
    if err and has_extent_size_hint and extent_size_hint:
        warn_report('Failed to set extent size hint: %s', os.strerror(err))

    result = raw_regular_truncate(fd, total_size, prealloc, errp)

    try:
        os.close(fd)
    except OSError as e:
        if result == 0:
            error_setg_errno(errp, e.errno, 'Could not close the new file')
            result = -e.errno
    return result


def _set_nocow(fd: int) -> None:
    attr = bytearray(4)
    try:
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, attr)
        flags = int.from_bytes(attr, 'little') | FS_NOCOW_FL
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, flags.to_bytes(4, 'little'))
    except OSError:
        pass


def _set_extent_size_hint(fd: int, hint: int) -> int:
    """Ask the file system (XFS; ext4 accepts and ignores it) to allocate
    in extents of hint bytes; 0 or the errno of the failing ioctl."""
    attr = bytearray(FSXATTR.size)
    try:
        fcntl.ioctl(fd, FS_IOC_FSGETXATTR, attr)
        xflags, _, nextents, projid, cowextsize = FSXATTR.unpack(attr)
        fcntl.ioctl(fd, FS_IOC_FSSETXATTR,
                    FSXATTR.pack(xflags | FS_XFLAG_EXTSIZE, hint, nextents,
                                 projid, cowextsize))
    except OSError as e:
        return e.errno
    return 0


def find_allocation(bs, start: int, pdata: list, phole: list) -> int:
    """Find the allocation range of the file around start with SEEK_DATA and
    SEEK_HOLE.  In data: pdata[0] = start and phole[0] = the next hole.
    In a hole that data follows: phole[0] = start, pdata[0] = that data.
    -ENXIO in a trailing hole or past the end; another -errno if the file
    system cannot tell."""
    fd = bs.opaque.fd

    # SEEK_DATA: at start (in data), after it (in a hole), or ENXIO (in a
    # trailing hole or past an end that moved behind our back)
    try:
        offs = os.lseek(fd, start, os.SEEK_DATA)
    except OSError as e:
        return -e.errno
    assert offs >= start

    if offs > start:
        phole[0] = start
        pdata[0] = offs
        return 0

    # in data; SEEK_HOLE finds its end (at start means a hole was dug since
    # the first lseek)
    try:
        offs = os.lseek(fd, start, os.SEEK_HOLE)
    except OSError as e:
        return -e.errno
    assert offs >= start

    if offs > start:
        # data up to offs; if that became a trailing hole meanwhile, data
        # up to EOF is still a safe answer
        pdata[0] = start
        phole[0] = offs
        return 0

    return -errno.EBUSY


def raw_co_get_block_status(bs, sector_num: int, nb_sectors: int,
                            pnum: list, file: list) -> int:
    """Data or zero for the sectors from sector_num, from the holes of the
    file; pnum[0] sectors are in the same state.  Past the end: 0."""
    start = sector_num * BDRV_SECTOR_SIZE
    total_size = core.bdrv_getlength(bs)
    if total_size < 0:
        return total_size
    elif start >= total_size:
        pnum[0] = 0
        return 0
    elif start + nb_sectors * BDRV_SECTOR_SIZE > total_size:
        nb_sectors = (total_size - start + BDRV_SECTOR_SIZE - 1) // \
            BDRV_SECTOR_SIZE

    data, hole = [0], [0]
    ret = find_allocation(bs, start, data, hole)
    if ret == -errno.ENXIO:
        # trailing hole
        pnum[0] = nb_sectors
        ret = BDRV_BLOCK_ZERO
    elif ret < 0:
        # no information: no holes then
        pnum[0] = nb_sectors
        ret = BDRV_BLOCK_DATA
    elif data[0] == start:
        # up to the end of the extent, a partial sector at EOF included
        pnum[0] = min(nb_sectors, (hole[0] - start + BDRV_SECTOR_SIZE - 1) //
                      BDRV_SECTOR_SIZE)
        ret = BDRV_BLOCK_DATA
    else:
        # up to the start of the next extent
        assert hole[0] == start
        pnum[0] = min(nb_sectors, (data[0] - start) // BDRV_SECTOR_SIZE)
        ret = BDRV_BLOCK_ZERO
    file[0] = bs
    return ret | BDRV_BLOCK_OFFSET_VALID | start


def raw_aio_discard(bs, sector_num: int, nb_sectors: int, cb, opaque):
    s = bs.opaque
    return paio_submit(bs, s.fd, sector_num, None, nb_sectors, cb, opaque,
                       QEMU_AIO_DISCARD)


def raw_co_write_zeroes(bs, sector_num: int, nb_sectors: int,
                        flags: int) -> int:
    s = bs.opaque
    if not flags & BDRV_REQ_MAY_UNMAP:
        return paio_submit_co(bs, s.fd, sector_num, None, nb_sectors,
                              QEMU_AIO_WRITE_ZEROES)
    elif s.discard_zeroes:
        return paio_submit_co(bs, s.fd, sector_num, None, nb_sectors,
                              QEMU_AIO_DISCARD)
    return -errno.ENOTSUP


def raw_get_info(bs, bdi) -> int:
    s = bs.opaque
    bdi.unallocated_blocks_are_zero = s.discard_zeroes
    bdi.can_write_zeroes_with_unmap = s.discard_zeroes
    return 0


raw_create_opts = QemuOptsList('raw-create-opts', [
    QemuOptDesc(BLOCK_OPT_SIZE, QEMU_OPT_SIZE, 'Virtual disk size'),
    QemuOptDesc(BLOCK_OPT_NOCOW, QEMU_OPT_BOOL,
                'Turn off copy-on-write (valid only on btrfs)'),
    QemuOptDesc(BLOCK_OPT_PREALLOC, QEMU_OPT_STRING,
                'Preallocation mode (allowed values: off, falloc, full)'),
    QemuOptDesc(BLOCK_OPT_EXTENT_SIZE_HINT, QEMU_OPT_SIZE,
                'Extent size hint for the image file, 0 to disable'),
])


class BdrvFile(BlockDriver):
    format_name = 'file'
    protocol_name = 'file'
    instance_type = BDRVRawState
    bdrv_needs_filename = True
    bdrv_parse_filename = staticmethod(raw_parse_filename)
    bdrv_file_open = staticmethod(raw_open)
    bdrv_reopen_prepare = staticmethod(raw_reopen_prepare)
    bdrv_reopen_commit = staticmethod(raw_reopen_commit)
    bdrv_reopen_abort = staticmethod(raw_reopen_abort)
    bdrv_close = staticmethod(raw_close)
    bdrv_create = staticmethod(raw_create)
    bdrv_has_zero_init = staticmethod(core.bdrv_has_zero_init_1)
    bdrv_co_get_block_status = staticmethod(raw_co_get_block_status)
    bdrv_co_write_zeroes = staticmethod(raw_co_write_zeroes)

    bdrv_co_readv = staticmethod(raw_co_readv)
    bdrv_co_writev = staticmethod(raw_co_writev)
    bdrv_aio_flush = staticmethod(raw_aio_flush)
    bdrv_aio_discard = staticmethod(raw_aio_discard)
    bdrv_refresh_limits = staticmethod(raw_refresh_limits)

    bdrv_truncate = staticmethod(raw_truncate)
    bdrv_getlength = staticmethod(raw_getlength)
    bdrv_get_info = staticmethod(raw_get_info)
    bdrv_get_allocated_file_size = staticmethod(raw_get_allocated_file_size)

    create_opts = raw_create_opts


bdrv_file = BdrvFile()
bdrv_register(bdrv_file)
