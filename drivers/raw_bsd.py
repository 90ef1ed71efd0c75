"""The ``raw`` format: the Python twin of QEMU's block/raw_bsd.c, with the
``offset`` and ``size`` options of QEMU 7.2's block/raw-format.c.

Every request goes to the file child, moved by ``offset`` and, when ``size``
is given, refused past the end of that window (raw_adjust_offset), so that
a raw image can be a part of a larger file.  The messages are 7.2's.
When the format was guessed (bs.probed), a write to sector 0 that would
make the image probe as another format is refused with -EPERM
(CVE-2008-2004), as QEMU does.
Writes take the flags of the seed's era (bdrv_co_writev_flags), but raw
does not claim BDRV_REQ_FUA: QEMU 7.2's raw claims it only where its file
node does, which no protocol driver here does, so FUA is emulated by a
flush of the raw node, and a blkdebug file sees the flush events as in 7.2.

The callbacks take sectors, as the seed's drivers do; reads, writes and
zero writes reach the file through its byte interface, so that an offset
that is not a multiple of 512 works as in 7.2 (which takes bytes
throughout).  Two answers stay in sectors with such an offset: a discard
covers only the file's sectors that lie wholly inside the request, and the
block status is "data" without a file offset, because the status word
holds a sector-aligned offset only.
"""

from __future__ import annotations

import errno
import sys
from typing import Optional

from block import core, io
from block.block_int import (
    BDRV_BLOCK_DATA, BDRV_BLOCK_OFFSET_VALID, BDRV_BLOCK_RAW, BDRV_O_UNMAP,
    BDRV_REQ_FUA, BDRV_REQ_MAY_UNMAP, BDRV_REQ_ZERO_WRITE, BDRV_SECTOR_BITS,
    BDRV_SECTOR_SIZE, BLKDBG_EVENT, BLKDBG_READ_AIO, BLKDBG_WRITE_AIO,
    BLOCK_OPT_SIZE, BLOCK_PROBE_BUF_SIZE, BlockDriver)
from drivers import bdrv_probe_all, bdrv_register
from util.error import Errp, error_propagate, error_setg, error_setg_errno
from util.iov import (QEMUIOVector, qemu_iovec_add, qemu_iovec_concat,
                      qemu_iovec_init, qemu_iovec_to_buf)
from util.qemu_option import (QEMU_OPT_SIZE, QemuOptDesc, QemuOptsList,
                              qemu_opt_find, qemu_opt_get_size,
                              qemu_opt_get_size_del,
                              qemu_opts_absorb_qdict, qemu_opts_create,
                              qemu_opts_del)


class BDRVRawState:
    __slots__ = ('offset', 'size', 'has_size')

    def __init__(self) -> None:
        self.offset = 0
        self.size = 0
        self.has_size = False


# the options a reopen may change (7.2's mutable_opts)
mutable_opts = ('offset', 'size')

raw_runtime_opts = QemuOptsList('raw', [
    QemuOptDesc('offset', QEMU_OPT_SIZE,
                'offset in the disk where the image starts'),
    QemuOptDesc('size', QEMU_OPT_SIZE, 'virtual disk size'),
])

raw_create_opts = QemuOptsList('raw-create-opts', [
    QemuOptDesc(BLOCK_OPT_SIZE, QEMU_OPT_SIZE, 'Virtual disk size'),
])


def raw_read_options(options: dict, offset: list, has_size: list,
                     size: list, errp: Errp) -> int:
    """Take offset and size out of options into offset[0], has_size[0] and
    size[0]; -EINVAL (errp set) for a value that is not a size."""
    local_err = [None]

    opts = qemu_opts_create(raw_runtime_opts)
    qemu_opts_absorb_qdict(opts, options, local_err)
    if local_err[0]:
        error_propagate(errp, local_err[0])
        ret = -errno.EINVAL
    else:
        offset[0] = qemu_opt_get_size(opts, 'offset', 0)
        has_size[0] = qemu_opt_find(opts, 'size') is not None
        size[0] = qemu_opt_get_size(opts, 'size', 0)
        ret = 0

    qemu_opts_del(opts)
    return ret


def raw_apply_options(bs, s: BDRVRawState, offset: int, has_size: bool,
                      size: int, errp: Errp) -> int:
    """Check offset and size against the file and store them in s."""
    real_size = core.bdrv_getlength(bs.file.bs)
    if real_size < 0:
        error_setg_errno(errp, -real_size, 'Could not get image size')
        return real_size

    # the window must lie inside the file
    if offset > real_size:
        error_setg(errp, 'Offset (%d) cannot be greater than size of the '
                   'containing file (%d)', offset, real_size)
        return -errno.EINVAL

    if has_size and real_size - offset < size:
        # (two spaces before "actual", as 7.2 prints it)
        error_setg(errp, 'The sum of offset (%d) and size (%d) has to be '
                   'smaller or equal to the  actual size of the containing '
                   'file (%d)', offset, size, real_size)
        return -errno.EINVAL

    # a size in whole sectors, so that the block layer's rounding up of
    # lengths to sectors cannot reach past the window
    if has_size and size % BDRV_SECTOR_SIZE:
        error_setg(errp, 'Specified size is not multiple of %d',
                   BDRV_SECTOR_SIZE)
        return -errno.EINVAL

    s.offset = offset
    s.has_size = has_size
    s.size = size if has_size else real_size - offset
    return 0


def raw_reopen_prepare(reopen_state, queue, errp: Errp) -> int:
    offset, has_size, size = [0], [False], [0]

    assert reopen_state is not None
    assert reopen_state.bs is not None

    # QEMU 7.2 stores the options of a reopen in bs->options when it
    # commits; block/core.py keeps those of the open, so raw_reopen_commit
    # stores its own, which the next reopen starts from
    given = {key: reopen_state.options[key] for key in mutable_opts
             if key in reopen_state.options}
    reopen_state.opaque = (BDRVRawState(), given)

    ret = raw_read_options(reopen_state.options, offset, has_size, size,
                           errp)
    if ret < 0:
        return ret

    ret = raw_apply_options(reopen_state.bs, reopen_state.opaque[0],
                            offset[0], has_size[0], size[0], errp)
    if ret < 0:
        return ret

    return 0


def raw_reopen_commit(reopen_state) -> None:
    new_s, given = reopen_state.opaque
    s = reopen_state.bs.opaque

    s.offset, s.size, s.has_size = new_s.offset, new_s.size, new_s.has_size
    if reopen_state.bs.options is not None:
        reopen_state.bs.options.update(given)

    reopen_state.opaque = None


def raw_reopen_abort(reopen_state) -> None:
    reopen_state.opaque = None


def raw_adjust_offset(bs, offset: list, bytes: int, is_write: bool) -> int:
    """Move the request at offset[0] into the window of the file; a request
    past the given size fails without touching the file."""
    s = bs.opaque

    if s.has_size and (offset[0] > s.size or bytes > s.size - offset[0]):
        # nothing may leak out of the window: no partial request either
        return -errno.ENOSPC if is_write else -errno.EINVAL

    if offset[0] > core.INT64_MAX - s.offset:
        return -errno.EINVAL
    offset[0] += s.offset

    return 0


def raw_co_readv(bs, sector_num: int, nb_sectors: int, qiov) -> int:
    offset = [sector_num << BDRV_SECTOR_BITS]
    bytes = nb_sectors << BDRV_SECTOR_BITS

    ret = raw_adjust_offset(bs, offset, bytes, False)
    if ret:
        return ret

    BLKDBG_EVENT(bs.file, BLKDBG_READ_AIO)
    return io.bdrv_co_do_preadv(bs.file.bs, offset[0], bytes, qiov, 0)


def raw_co_writev_flags(bs, sector_num: int, nb_sectors: int, qiov,
                        flags: int) -> int:
    # the guard looks at the image's own first sector, before the offset
    if bs.probed and sector_num == 0:
        # the first sector is written whole here (BLOCK_PROBE_BUF_SIZE and
        # the sector size are both 512), so the request can be checked
        # directly
        assert BLOCK_PROBE_BUF_SIZE == BDRV_SECTOR_SIZE == 512

        if nb_sectors == 0:
            # qemu_iovec_to_buf() would fail; succeed instead
            return 0

        buf = io.qemu_try_blockalign(bs.file.bs, 512)
        if buf is None:
            return -errno.ENOMEM

        if qemu_iovec_to_buf(qiov, 0, buf, 512) != 512:
            return -errno.EINVAL

        if bdrv_probe_all(bytes(buf), 512, None) is not bs.drv:
            return -errno.EPERM

        # write the checked copy: the caller may change its buffer meanwhile
        local_qiov = QEMUIOVector()
        qemu_iovec_init(local_qiov, qiov.niov + 1)
        qemu_iovec_add(local_qiov, buf, 512)
        qemu_iovec_concat(local_qiov, qiov, 512, qiov.size - 512)
        qiov = local_qiov

    offset = [sector_num << BDRV_SECTOR_BITS]
    ret = raw_adjust_offset(bs, offset, nb_sectors << BDRV_SECTOR_BITS, True)
    if ret:
        return ret

    BLKDBG_EVENT(bs.file, BLKDBG_WRITE_AIO)
    # FUA is done by the flush of this node (see the module comment)
    return io.bdrv_co_do_pwritev(bs.file.bs, offset[0],
                                 nb_sectors << BDRV_SECTOR_BITS, qiov,
                                 flags & ~BDRV_REQ_FUA)


def raw_co_get_block_status(bs, sector_num: int, nb_sectors: int,
                            pnum: list, file: list) -> int:
    s = bs.opaque
    pnum[0] = nb_sectors
    file[0] = bs.file.bs
    if s.offset % BDRV_SECTOR_SIZE:
        # no sector of the file corresponds (see the module comment)
        return BDRV_BLOCK_DATA
    return BDRV_BLOCK_RAW | BDRV_BLOCK_OFFSET_VALID | BDRV_BLOCK_DATA | \
        ((sector_num << BDRV_SECTOR_BITS) + s.offset)


def raw_co_write_zeroes(bs, sector_num: int, nb_sectors: int,
                        flags: int) -> int:
    offset = [sector_num << BDRV_SECTOR_BITS]
    bytes = nb_sectors << BDRV_SECTOR_BITS

    ret = raw_adjust_offset(bs, offset, bytes, True)
    if ret:
        return ret

    # bdrv_co_write_zeroes() on the file, in bytes (7.2's
    # bdrv_co_pwrite_zeroes()): the offset may be inside a sector
    if not bs.file.bs.open_flags & BDRV_O_UNMAP:
        flags &= ~BDRV_REQ_MAY_UNMAP
    return io.bdrv_co_do_pwritev(bs.file.bs, offset[0], bytes, None,
                                 BDRV_REQ_ZERO_WRITE | flags)


def raw_co_discard(bs, sector_num: int, nb_sectors: int) -> int:
    offset = [sector_num << BDRV_SECTOR_BITS]
    bytes = nb_sectors << BDRV_SECTOR_BITS

    ret = raw_adjust_offset(bs, offset, bytes, True)
    if ret:
        return ret

    # the sectors of the file inside the request (all of it, unless the
    # offset is inside a sector)
    start = io.QEMU_ALIGN_UP(offset[0], BDRV_SECTOR_SIZE)
    end = io.QEMU_ALIGN_DOWN(offset[0] + bytes, BDRV_SECTOR_SIZE)
    if end <= start:
        return 0
    return io.bdrv_co_discard(bs.file.bs, start >> BDRV_SECTOR_BITS,
                              (end - start) >> BDRV_SECTOR_BITS)


def raw_getlength(bs) -> int:
    s = bs.opaque

    # the file may have changed size behind our back: the window shrinks
    # with it, and a given size is kept where it still fits
    length = core.bdrv_getlength(bs.file.bs)
    if length < 0:
        return length

    if length < s.offset:
        s.size = 0
    elif s.has_size:
        s.size = min(s.size, length - s.offset)
    else:
        s.size = length - s.offset

    return s.size


def raw_get_info(bs, bdi) -> int:
    return core.bdrv_get_info(bs.file.bs, bdi)


def raw_refresh_limits(bs, errp: Errp) -> None:
    bs.bl = bs.file.bs.bl


def raw_truncate(bs, offset: int, prealloc: str, flags: int,
                 errp: Errp) -> int:
    s = bs.opaque

    if s.has_size:
        error_setg(errp, 'Cannot resize fixed-size raw disks')
        return -errno.ENOTSUP

    if core.INT64_MAX - offset < s.offset:
        error_setg(errp, 'Disk size too large for the chosen offset')
        return -errno.EINVAL

    s.size = offset
    offset += s.offset
    return core.bdrv_truncate(bs.file.bs, offset, prealloc, errp, flags)


def raw_aio_ioctl(bs, req: int, buf, cb, opaque):
    s = bs.opaque
    # a command would reach the whole device, not the window
    if s.offset or s.has_size:
        return None     # -ENOTSUP
    return io.bdrv_aio_ioctl(bs.file.bs, req, buf, cb, opaque)


def raw_has_zero_init(bs) -> int:
    return core.bdrv_has_zero_init(bs.file.bs)


def raw_create(filename: str, opts, errp: Errp) -> int:
    return core.bdrv_create_file(filename, opts, errp)


def raw_measure(opts, in_bs, errp: Errp) -> Optional[dict]:
    """7.2's raw_measure: a raw file holds every byte, allocated or not."""
    if in_bs:
        required = core.bdrv_getlength(in_bs)
        if required < 0:
            error_setg_errno(errp, -required, "Unable to get image size")
            return None
    else:
        required = qemu_opt_get_size_del(opts, BLOCK_OPT_SIZE, 0)
        required = -(-required // BDRV_SECTOR_SIZE) * BDRV_SECTOR_SIZE
    return {'required': required, 'fully-allocated': required}


def raw_open(bs, options: dict, flags: int, errp: Errp) -> int:
    s = bs.opaque
    offset, has_size, size = [0], [False], [0]

    # (7.2 reads the options before it opens the file child; here
    # bdrv_open_inherit() has opened it already)
    ret = raw_read_options(options, offset, has_size, size, errp)
    if ret < 0:
        return ret

    bs.sg = bs.file.bs.sg
    bs.supported_truncate_flags = (bs.file.bs.supported_truncate_flags &
                                   BDRV_REQ_ZERO_WRITE)

    if bs.probed and not core.bdrv_is_read_only(bs):
        sys.stderr.write(
            "WARNING: Image format was not specified for '%s' and probing "
            "guessed raw.\n"
            "         Automatically detecting the format is dangerous for "
            "raw images, write operations on block 0 will be restricted.\n"
            "         Specify the 'raw' format explicitly to remove the "
            "restrictions.\n" % bs.file.bs.filename)
        sys.stderr.flush()

    ret = raw_apply_options(bs, s, offset[0], has_size[0], size[0], errp)
    if ret < 0:
        return ret

    if core.bdrv_is_sg(bs) and (s.offset or s.has_size):
        error_setg(errp, 'Cannot use offset/size with SCSI generic devices')
        return -errno.EINVAL

    return 0


def raw_close(bs) -> None:
    pass


def raw_probe(buf: bytes, buf_size: int, filename) -> int:
    # the smallest positive score: raw if and only if nothing else fits
    return 1


class BdrvRaw(BlockDriver):
    format_name = 'raw'
    instance_type = BDRVRawState
    bdrv_probe = staticmethod(raw_probe)
    bdrv_reopen_prepare = staticmethod(raw_reopen_prepare)
    bdrv_reopen_commit = staticmethod(raw_reopen_commit)
    bdrv_reopen_abort = staticmethod(raw_reopen_abort)
    bdrv_open = staticmethod(raw_open)
    bdrv_close = staticmethod(raw_close)
    bdrv_create = staticmethod(raw_create)
    bdrv_co_readv = staticmethod(raw_co_readv)
    bdrv_co_writev_flags = staticmethod(raw_co_writev_flags)
    bdrv_co_write_zeroes = staticmethod(raw_co_write_zeroes)
    bdrv_co_discard = staticmethod(raw_co_discard)
    bdrv_co_get_block_status = staticmethod(raw_co_get_block_status)
    bdrv_truncate = staticmethod(raw_truncate)
    bdrv_getlength = staticmethod(raw_getlength)
    has_variable_length = True
    bdrv_get_info = staticmethod(raw_get_info)
    bdrv_refresh_limits = staticmethod(raw_refresh_limits)
    bdrv_aio_ioctl = staticmethod(raw_aio_ioctl)
    create_opts = raw_create_opts
    bdrv_measure = staticmethod(raw_measure)
    bdrv_has_zero_init = staticmethod(raw_has_zero_init)


bdrv_raw = BdrvRaw()
bdrv_register(bdrv_raw)
