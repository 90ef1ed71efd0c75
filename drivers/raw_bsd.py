"""The ``raw`` format: the Python twin of QEMU's block/raw_bsd.c.

Every request goes to the file child unchanged.  When the format was
guessed (bs.probed), a write to sector 0 that would make the image probe as
another format is refused with -EPERM (CVE-2008-2004), as QEMU does.
Writes take the flags of the seed's era (bdrv_co_writev_flags), but raw
does not claim BDRV_REQ_FUA: QEMU 7.2's raw claims it only where its file
node does, which no protocol driver here does, so FUA is emulated by a
flush of the raw node, and a blkdebug file sees the flush events as in 7.2.
"""

from __future__ import annotations

import errno
import sys

from block import core, io
from block.block_int import (
    BDRV_BLOCK_DATA, BDRV_BLOCK_OFFSET_VALID, BDRV_BLOCK_RAW,
    BDRV_REQ_FUA, BDRV_SECTOR_BITS, BDRV_SECTOR_SIZE, BLKDBG_EVENT,
    BLKDBG_READ_AIO, BLKDBG_WRITE_AIO, BLOCK_OPT_SIZE, BLOCK_PROBE_BUF_SIZE,
    BlockDriver)
from drivers import bdrv_probe_all, bdrv_register
from util.error import Errp
from util.iov import (QEMUIOVector, qemu_iovec_add, qemu_iovec_concat,
                      qemu_iovec_init, qemu_iovec_to_buf)
from util.qemu_option import QEMU_OPT_SIZE, QemuOptDesc, QemuOptsList

raw_create_opts = QemuOptsList('raw-create-opts', [
    QemuOptDesc(BLOCK_OPT_SIZE, QEMU_OPT_SIZE, 'Virtual disk size'),
])


def raw_reopen_prepare(reopen_state, queue, errp: Errp) -> int:
    return 0


def raw_co_readv(bs, sector_num: int, nb_sectors: int, qiov) -> int:
    BLKDBG_EVENT(bs.file, BLKDBG_READ_AIO)
    return io.bdrv_co_readv(bs.file.bs, sector_num, nb_sectors, qiov)


def raw_co_writev_flags(bs, sector_num: int, nb_sectors: int, qiov,
                        flags: int) -> int:
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

    BLKDBG_EVENT(bs.file, BLKDBG_WRITE_AIO)
    # FUA is done by the flush of this node (see the module comment)
    return io.bdrv_co_do_pwritev(bs.file.bs, sector_num << BDRV_SECTOR_BITS,
                                 nb_sectors << BDRV_SECTOR_BITS, qiov,
                                 flags & ~BDRV_REQ_FUA)


def raw_co_get_block_status(bs, sector_num: int, nb_sectors: int,
                            pnum: list, file: list) -> int:
    pnum[0] = nb_sectors
    file[0] = bs.file.bs
    return BDRV_BLOCK_RAW | BDRV_BLOCK_OFFSET_VALID | BDRV_BLOCK_DATA | \
        (sector_num << BDRV_SECTOR_BITS)


def raw_co_write_zeroes(bs, sector_num: int, nb_sectors: int,
                        flags: int) -> int:
    return io.bdrv_co_write_zeroes(bs.file.bs, sector_num, nb_sectors, flags)


def raw_co_discard(bs, sector_num: int, nb_sectors: int) -> int:
    return io.bdrv_co_discard(bs.file.bs, sector_num, nb_sectors)


def raw_getlength(bs) -> int:
    return core.bdrv_getlength(bs.file.bs)


def raw_get_info(bs, bdi) -> int:
    return core.bdrv_get_info(bs.file.bs, bdi)


def raw_refresh_limits(bs, errp: Errp) -> None:
    bs.bl = bs.file.bs.bl


def raw_truncate(bs, offset: int, prealloc: str, errp: Errp) -> int:
    return core.bdrv_truncate(bs.file.bs, offset, prealloc, errp)


def raw_aio_ioctl(bs, req: int, buf, cb, opaque):
    return io.bdrv_aio_ioctl(bs.file.bs, req, buf, cb, opaque)


def raw_has_zero_init(bs) -> int:
    return core.bdrv_has_zero_init(bs.file.bs)


def raw_create(filename: str, opts, errp: Errp) -> int:
    return core.bdrv_create_file(filename, opts, errp)


def raw_open(bs, options: dict, flags: int, errp: Errp) -> int:
    bs.sg = bs.file.bs.sg

    if bs.probed and not core.bdrv_is_read_only(bs):
        sys.stderr.write(
            "WARNING: Image format was not specified for '%s' and probing "
            "guessed raw.\n"
            "         Automatically detecting the format is dangerous for "
            "raw images, write operations on block 0 will be restricted.\n"
            "         Specify the 'raw' format explicitly to remove the "
            "restrictions.\n" % bs.file.bs.filename)
        sys.stderr.flush()
    return 0


def raw_close(bs) -> None:
    pass


def raw_probe(buf: bytes, buf_size: int, filename) -> int:
    # the smallest positive score: raw if and only if nothing else fits
    return 1


class BdrvRaw(BlockDriver):
    format_name = 'raw'
    bdrv_probe = staticmethod(raw_probe)
    bdrv_reopen_prepare = staticmethod(raw_reopen_prepare)
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
    bdrv_has_zero_init = staticmethod(raw_has_zero_init)


bdrv_raw = BdrvRaw()
bdrv_register(bdrv_raw)
