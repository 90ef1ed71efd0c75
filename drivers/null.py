"""The ``null-co`` and ``null-aio`` protocols: the Python twin of QEMU's
block/null.c.

Writes go nowhere, reads leave the buffer as it is unless read-zeroes=on.
null-co completes in the coroutine (after latency-ns on the realtime clock),
null-aio completes through a bottom half, or a timer when latency-ns is set.

Options as in the installed QEMU (7.2): size (default 1 GiB), latency-ns
and read-zeroes (default off), and the only filenames allowed are
``null-co://`` and ``null-aio://``.
"""

from __future__ import annotations

import errno

from block import core, io
from block.block_int import (BDRV_BLOCK_OFFSET_VALID, BDRV_BLOCK_ZERO,
                             BDRV_SECTOR_SIZE, BLOCK_OPT_SIZE, BlockAIOCB,
                             BlockDriver)
from drivers import bdrv_register
from util.aio import (AIOCBInfo, aio_bh_new, aio_timer_new, qemu_bh_delete,
                      qemu_bh_schedule)
from util.coroutine_lock import co_aio_sleep_ns
from util.error import Errp, error_propagate, error_setg
from util.iov import qemu_iovec_memset
from util.qemu_option import (QEMU_OPT_BOOL, QEMU_OPT_NUMBER, QEMU_OPT_SIZE,
                              QEMU_OPT_STRING, QemuOptDesc, QemuOptsList,
                              qemu_opt_get_bool, qemu_opt_get_number,
                              qemu_opt_get_size, qemu_opts_absorb_qdict,
                              qemu_opts_create)
from util.timer import (QEMU_CLOCK_REALTIME, SCALE_NS, qemu_clock_get_ns,
                        timer_free, timer_mod_ns)

NULL_OPT_LATENCY = 'latency-ns'
NULL_OPT_ZEROES = 'read-zeroes'


class BDRVNullState:
    __slots__ = ('length', 'latency_ns', 'read_zeroes')

    def __init__(self) -> None:
        self.length = 0
        self.latency_ns = 0
        self.read_zeroes = False


runtime_opts = QemuOptsList('null', [
    QemuOptDesc('filename', QEMU_OPT_STRING, ''),
    QemuOptDesc(BLOCK_OPT_SIZE, QEMU_OPT_SIZE, 'size of the null block'),
    QemuOptDesc(NULL_OPT_LATENCY, QEMU_OPT_NUMBER,
                'nanoseconds (approximated) to wait before completing '
                'request'),
    QemuOptDesc(NULL_OPT_ZEROES, QEMU_OPT_BOOL,
                'return zeroes when read'),
])


def null_parse_filename(prefix: str, filename: str, options: dict,
                        errp: Errp) -> None:
    # filename must be empty after the prefix; no options can be given in it
    if filename != prefix:
        error_setg(errp, "The only allowed filename for this driver is '%s'",
                   prefix)
        return


def null_co_parse_filename(filename: str, options: dict, errp: Errp) -> None:
    null_parse_filename('null-co://', filename, options, errp)


def null_aio_parse_filename(filename: str, options: dict,
                            errp: Errp) -> None:
    null_parse_filename('null-aio://', filename, options, errp)


def null_file_open(bs, options: dict, flags: int, errp: Errp) -> int:
    s = bs.opaque
    local_err = [None]

    opts = qemu_opts_create(runtime_opts)
    # QEMU parses these with &error_abort and aborts on a bad value; here
    # it is an open error
    qemu_opts_absorb_qdict(opts, options, local_err)
    if local_err[0]:
        error_propagate(errp, local_err[0])
        return -errno.EINVAL
    s.length = qemu_opt_get_size(opts, BLOCK_OPT_SIZE, 1 << 30)
    s.latency_ns = qemu_opt_get_number(opts, NULL_OPT_LATENCY, 0)
    if s.latency_ns >= 1 << 63:
        s.latency_ns -= 1 << 64         # C reads it back as int64_t
    if s.latency_ns < 0:
        error_setg(errp, 'latency-ns is invalid')
        return -errno.EINVAL
    s.read_zeroes = qemu_opt_get_bool(opts, NULL_OPT_ZEROES, False)
    return 0


def null_close(bs) -> None:
    pass


def null_getlength(bs) -> int:
    return bs.opaque.length


def null_co_common(bs) -> int:
    s = bs.opaque
    if s.latency_ns:
        co_aio_sleep_ns(core.bdrv_get_aio_context(bs), QEMU_CLOCK_REALTIME,
                        s.latency_ns)
    return 0


def null_co_readv(bs, sector_num: int, nb_sectors: int, qiov) -> int:
    if bs.opaque.read_zeroes:
        qemu_iovec_memset(qiov, 0, 0, nb_sectors * BDRV_SECTOR_SIZE)
    return null_co_common(bs)


def null_co_writev(bs, sector_num: int, nb_sectors: int, qiov) -> int:
    return null_co_common(bs)


def null_co_flush(bs) -> int:
    return null_co_common(bs)


class NullAIOCB(BlockAIOCB):
    __slots__ = ('bh', 'timer')


def null_bh_cb(acb: NullAIOCB) -> None:
    acb.cb(acb.opaque, 0)
    qemu_bh_delete(acb.bh)
    io.qemu_aio_unref(acb)


def null_timer_cb(acb: NullAIOCB) -> None:
    acb.cb(acb.opaque, 0)
    timer_free(acb.timer)
    io.qemu_aio_unref(acb)


null_aiocb_info = AIOCBInfo(NullAIOCB)


def null_aio_common(bs, cb, opaque) -> NullAIOCB:
    s = bs.opaque
    acb = io.qemu_aio_get(null_aiocb_info, bs, cb, opaque)
    if s.latency_ns:
        acb.timer = aio_timer_new(core.bdrv_get_aio_context(bs),
                                  QEMU_CLOCK_REALTIME, SCALE_NS,
                                  null_timer_cb, acb)
        timer_mod_ns(acb.timer,
                     qemu_clock_get_ns(QEMU_CLOCK_REALTIME) + s.latency_ns)
    else:
        acb.bh = aio_bh_new(core.bdrv_get_aio_context(bs), null_bh_cb, acb)
        qemu_bh_schedule(acb.bh)
    return acb


def null_aio_readv(bs, sector_num: int, qiov, nb_sectors: int, cb, opaque):
    if bs.opaque.read_zeroes:
        qemu_iovec_memset(qiov, 0, 0, nb_sectors * BDRV_SECTOR_SIZE)
    return null_aio_common(bs, cb, opaque)


def null_aio_writev(bs, sector_num: int, qiov, nb_sectors: int, cb, opaque):
    return null_aio_common(bs, cb, opaque)


def null_aio_flush(bs, cb, opaque):
    return null_aio_common(bs, cb, opaque)


def null_reopen_prepare(reopen_state, queue, errp: Errp) -> int:
    return 0


def null_co_get_block_status(bs, sector_num: int, nb_sectors: int,
                             pnum: list, file: list) -> int:
    """Nothing is allocated; with read-zeroes everything reads as zero."""
    start = sector_num * BDRV_SECTOR_SIZE
    pnum[0] = nb_sectors
    file[0] = bs
    if bs.opaque.read_zeroes:
        return BDRV_BLOCK_OFFSET_VALID | start | BDRV_BLOCK_ZERO
    return BDRV_BLOCK_OFFSET_VALID | start


def null_allocated_file_size(bs) -> int:
    """null_allocated_file_size() of 7.2: the node stores nothing, so 0
    bytes (without it qemu-img info would call the size unavailable)."""
    return 0


def null_refresh_filename(bs) -> None:
    """"null-co://" names the node when no option of its own was given."""
    opts: dict = {}
    core.append_open_options(opts, bs)
    opts.pop('filename', None)
    if not opts:
        bs.exact_filename = '%s://' % bs.drv.format_name
    opts['driver'] = bs.drv.format_name
    bs.full_open_options = opts


class BdrvNullCo(BlockDriver):
    format_name = 'null-co'
    protocol_name = 'null-co'
    instance_type = BDRVNullState

    bdrv_file_open = staticmethod(null_file_open)
    bdrv_parse_filename = staticmethod(null_co_parse_filename)
    bdrv_close = staticmethod(null_close)
    bdrv_getlength = staticmethod(null_getlength)

    bdrv_co_readv = staticmethod(null_co_readv)
    bdrv_co_writev = staticmethod(null_co_writev)
    bdrv_co_flush_to_disk = staticmethod(null_co_flush)
    bdrv_reopen_prepare = staticmethod(null_reopen_prepare)

    bdrv_co_get_block_status = staticmethod(null_co_get_block_status)
    bdrv_refresh_filename = staticmethod(null_refresh_filename)
    bdrv_get_allocated_file_size = staticmethod(null_allocated_file_size)


class BdrvNullAio(BlockDriver):
    format_name = 'null-aio'
    protocol_name = 'null-aio'
    instance_type = BDRVNullState

    bdrv_file_open = staticmethod(null_file_open)
    bdrv_parse_filename = staticmethod(null_aio_parse_filename)
    bdrv_close = staticmethod(null_close)
    bdrv_getlength = staticmethod(null_getlength)

    bdrv_aio_readv = staticmethod(null_aio_readv)
    bdrv_aio_writev = staticmethod(null_aio_writev)
    bdrv_aio_flush = staticmethod(null_aio_flush)
    bdrv_reopen_prepare = staticmethod(null_reopen_prepare)

    bdrv_co_get_block_status = staticmethod(null_co_get_block_status)
    bdrv_refresh_filename = staticmethod(null_refresh_filename)
    bdrv_get_allocated_file_size = staticmethod(null_allocated_file_size)


bdrv_null_co = BdrvNullCo()
bdrv_null_aio = BdrvNullAio()
bdrv_register(bdrv_null_co)
bdrv_register(bdrv_null_aio)
