"""blkverify: the Python twin of QEMU's block/blkverify.c (v2.5.0).

``blkverify:RAW:TEST`` opens TEST (any format) and a raw reference copy RAW
side by side.  Every write goes to both, every read is done on both and
compared; a difference in data or in return value is a bug in the layers
under TEST, reported on stderr before the process exits with status 1, as
QEMU does.  The options form is ``driver=blkverify,x-raw=RAW,x-image=TEST``
or the children ``raw.*`` and ``test.*``.

The message has the wording of the installed QEMU (7.2), in bytes:
``blkverify: read offset=0 bytes=8192 contents mismatch at offset 4096``.
QEMU 2.5 counted sectors ("read sector_num=0 nb_sectors=16 contents
mismatch in sector 8").  This driver works on sectors as 2.5's does, so a
request not aligned to 512 bytes is reported by its aligned extent, where
7.2 gives the bytes the user asked for.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Any, Optional

from block import core, io
from block.block_int import (BDRV_SECTOR_SIZE, BdrvChild, BlockDriver,
                             BlockDriverState)
from drivers import bdrv_register
from util.aio import (AIOCBInfo, BlockAIOCB, BlockCompletionFunc, QEMUBH,
                      aio_bh_new, qemu_bh_delete, qemu_bh_schedule)
from util.error import Errp, error_propagate, error_setg
from util.iov import (QEMUIOVector, qemu_iovec_clone, qemu_iovec_compare,
                      qemu_iovec_destroy, qemu_iovec_init)
from util.qemu_option import (QEMU_OPT_STRING, QemuOptDesc, QemuOptsList,
                              qemu_opt_get, qemu_opts_absorb_qdict,
                              qemu_opts_create, qemu_opts_del)

EINPROGRESS = errno.EINPROGRESS


class BDRVBlkverifyState:
    __slots__ = ("test_file",)

    def __init__(self) -> None:
        self.test_file: Optional[BdrvChild] = None


class BlkverifyAIOCB(BlockAIOCB):
    __slots__ = ("bh", "is_write", "sector_num", "nb_sectors",
                 "ret",             # the first completed request's result
                 "done",            # completions so far (two expected)
                 "qiov",            # the caller's vector
                 "raw_qiov",        # same shape, over buf, for RAW
                 "buf", "verify")

    def __init__(self) -> None:
        # the embedded QEMUIOVector of the C; blkverify_aio_get() sets the
        # other fields
        self.raw_qiov = QEMUIOVector()


blkverify_aiocb_info = AIOCBInfo(BlkverifyAIOCB)


def blkverify_err(acb: BlkverifyAIOCB, fmt: str, *args: Any) -> None:
    """Report a difference and stop the program, as QEMU's exit(1) does:
    the output so far is flushed, nothing else runs."""
    sys.stdout.flush()
    sys.stderr.write("blkverify: %s offset=%d bytes=%d %s\n" % (
        "write" if acb.is_write else "read",
        acb.sector_num * BDRV_SECTOR_SIZE,
        acb.nb_sectors * BDRV_SECTOR_SIZE, fmt % args))
    sys.stderr.flush()
    os._exit(1)


def blkverify_parse_filename(filename: str, options: dict,
                             errp: Errp) -> None:
    """blkverify:RAW:TEST; a filename without the prefix is TEST, and the
    rest must be in the options."""
    prefix = "blkverify:"
    if not filename.startswith(prefix):
        options["x-image"] = filename
        return
    filename = filename[len(prefix):]

    c = filename.find(":")
    if c < 0:
        error_setg(errp, "blkverify requires raw copy and original image path")
        return
    # RAW may not contain a ':'; TEST, after it, may (nested protocols)
    options["x-raw"] = filename[:c]
    options["x-image"] = filename[c + 1:]


runtime_opts = QemuOptsList("blkverify", [
    QemuOptDesc("x-raw", QEMU_OPT_STRING,
                "[internal use only, will be removed]"),
    QemuOptDesc("x-image", QEMU_OPT_STRING,
                "[internal use only, will be removed]"),
])


def blkverify_open(bs: BlockDriverState, options: dict, flags: int,
                   errp: Errp) -> int:
    s = bs.opaque
    local_err = [None]

    opts = qemu_opts_create(runtime_opts)
    qemu_opts_absorb_qdict(opts, options, local_err)
    if local_err[0]:
        error_propagate(errp, local_err[0])
        ret = -errno.EINVAL
    else:
        ret = 0
        # the reference copy, always raw
        bs.file = core.bdrv_open_child(qemu_opt_get(opts, "x-raw"), options,
                                       "raw", bs, core.child_file, False,
                                       local_err)
        if local_err[0]:
            error_propagate(errp, local_err[0])
            ret = -errno.EINVAL
        else:
            # the image under test, format probed as for any image
            s.test_file = core.bdrv_open_child(
                qemu_opt_get(opts, "x-image"), options, "test", bs,
                core.child_format, False, local_err)
            if local_err[0]:
                error_propagate(errp, local_err[0])
                ret = -errno.EINVAL

    if ret < 0:
        core.bdrv_unref_child(bs, bs.file)
        bs.file = None
    qemu_opts_del(opts)
    return ret


def blkverify_close(bs: BlockDriverState) -> None:
    s = bs.opaque
    core.bdrv_unref_child(bs, s.test_file)
    s.test_file = None


def blkverify_getlength(bs: BlockDriverState) -> int:
    s = bs.opaque
    return core.bdrv_getlength(s.test_file.bs)


def blkverify_aio_get(bs: BlockDriverState, is_write: bool, sector_num: int,
                      qiov: QEMUIOVector, nb_sectors: int,
                      cb: BlockCompletionFunc, opaque: Any) -> BlkverifyAIOCB:
    acb = io.qemu_aio_get(blkverify_aiocb_info, bs, cb, opaque)
    acb.bh = None
    acb.is_write = is_write
    acb.sector_num = sector_num
    acb.nb_sectors = nb_sectors
    acb.ret = -EINPROGRESS
    acb.done = 0
    acb.qiov = qiov
    acb.buf = None
    acb.verify = None
    return acb


def blkverify_aio_bh(acb: BlkverifyAIOCB) -> None:
    qemu_bh_delete(acb.bh)
    if acb.buf is not None:
        qemu_iovec_destroy(acb.raw_qiov)
        acb.buf = None
    acb.cb(acb.opaque, acb.ret)
    io.qemu_aio_unref(acb)


def blkverify_aio_cb(acb: BlkverifyAIOCB, ret: int) -> None:
    """Called once per image; the second call checks and completes (from
    a bottom half, so that the caller never sees a completion inside its
    own submission)."""
    acb.done += 1
    if acb.done == 1:
        acb.ret = ret
    elif acb.done == 2:
        if acb.ret != ret:
            blkverify_err(acb, "return value mismatch %d != %d", acb.ret, ret)
        if acb.verify:
            acb.verify(acb)
        acb.bh = aio_bh_new(core.bdrv_get_aio_context(acb.bs),
                            blkverify_aio_bh, acb)
        qemu_bh_schedule(acb.bh)


def blkverify_verify_readv(acb: BlkverifyAIOCB) -> None:
    offset = qemu_iovec_compare(acb.qiov, acb.raw_qiov)
    if offset != -1:
        blkverify_err(acb, "contents mismatch at offset %d",
                      acb.sector_num * BDRV_SECTOR_SIZE + offset)


def blkverify_aio_readv(bs: BlockDriverState, sector_num: int,
                        qiov: QEMUIOVector, nb_sectors: int,
                        cb: BlockCompletionFunc, opaque: Any) -> BlockAIOCB:
    """Read TEST into the caller's buffers and RAW into a copy of the same
    shape, then compare."""
    s = bs.opaque
    acb = blkverify_aio_get(bs, False, sector_num, qiov, nb_sectors,
                            cb, opaque)
    acb.verify = blkverify_verify_readv
    acb.buf = io.qemu_blockalign(bs.file.bs, qiov.size)
    qemu_iovec_init(acb.raw_qiov, acb.qiov.niov)
    qemu_iovec_clone(acb.raw_qiov, qiov, acb.buf)

    io.bdrv_aio_readv(s.test_file.bs, sector_num, qiov, nb_sectors,
                      blkverify_aio_cb, acb)
    io.bdrv_aio_readv(bs.file.bs, sector_num, acb.raw_qiov, nb_sectors,
                      blkverify_aio_cb, acb)
    return acb


def blkverify_aio_writev(bs: BlockDriverState, sector_num: int,
                         qiov: QEMUIOVector, nb_sectors: int,
                         cb: BlockCompletionFunc, opaque: Any) -> BlockAIOCB:
    s = bs.opaque
    acb = blkverify_aio_get(bs, True, sector_num, qiov, nb_sectors,
                            cb, opaque)
    io.bdrv_aio_writev(s.test_file.bs, sector_num, qiov, nb_sectors,
                       blkverify_aio_cb, acb)
    io.bdrv_aio_writev(bs.file.bs, sector_num, qiov, nb_sectors,
                       blkverify_aio_cb, acb)
    return acb


def blkverify_aio_flush(bs: BlockDriverState, cb: BlockCompletionFunc,
                        opaque: Any) -> BlockAIOCB:
    # only TEST matters; RAW is a reference copy
    s = bs.opaque
    return io.bdrv_aio_flush(s.test_file.bs, cb, opaque)


def blkverify_recurse_is_first_non_filter(
        bs: BlockDriverState, candidate: BlockDriverState) -> bool:
    s = bs.opaque
    if core.bdrv_recurse_is_first_non_filter(bs.file.bs, candidate):
        return True
    return core.bdrv_recurse_is_first_non_filter(s.test_file.bs, candidate)


def blkverify_detach_aio_context(bs: BlockDriverState) -> None:
    s = bs.opaque
    core.bdrv_detach_aio_context(s.test_file.bs)


def blkverify_attach_aio_context(bs: BlockDriverState,
                                 new_context: Any) -> None:
    s = bs.opaque
    core.bdrv_attach_aio_context(s.test_file.bs, new_context)


def blkverify_refresh_filename(bs: BlockDriverState) -> None:
    s = bs.opaque
    # bs.file.bs has been refreshed by the caller
    core.bdrv_refresh_filename(s.test_file.bs)

    if bs.file.bs.full_open_options and s.test_file.bs.full_open_options:
        bs.full_open_options = {
            "driver": "blkverify",
            "raw": bs.file.bs.full_open_options,
            "test": s.test_file.bs.full_open_options,
        }

    if bs.file.bs.exact_filename and s.test_file.bs.exact_filename:
        bs.exact_filename = "blkverify:%s:%s" % (
            bs.file.bs.exact_filename, s.test_file.bs.exact_filename)


class BdrvBlkverify(BlockDriver):
    format_name = "blkverify"
    protocol_name = "blkverify"
    instance_type = BDRVBlkverifyState

    bdrv_parse_filename = staticmethod(blkverify_parse_filename)
    bdrv_file_open = staticmethod(blkverify_open)
    bdrv_close = staticmethod(blkverify_close)
    bdrv_getlength = staticmethod(blkverify_getlength)
    bdrv_refresh_filename = staticmethod(blkverify_refresh_filename)

    bdrv_aio_readv = staticmethod(blkverify_aio_readv)
    bdrv_aio_writev = staticmethod(blkverify_aio_writev)
    bdrv_aio_flush = staticmethod(blkverify_aio_flush)

    bdrv_attach_aio_context = staticmethod(blkverify_attach_aio_context)
    bdrv_detach_aio_context = staticmethod(blkverify_detach_aio_context)

    is_filter = True
    bdrv_recurse_is_first_non_filter = staticmethod(
        blkverify_recurse_is_first_non_filter)


bdrv_blkverify = BdrvBlkverify()
bdrv_register(bdrv_blkverify)
