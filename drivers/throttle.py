"""The ``throttle`` filter: the installed QEMU's (7.2) block/throttle.c, on
the 2.5-era block layer of this port.

``driver=throttle,throttle-group=NAME,file.driver=...`` puts a node above
its file child that is a member of the throttle group NAME, made before by
``--object throttle-group,id=NAME,...`` (block/throttle_groups.py,
throttle_group_obj_add).  Several nodes may share one group.

In 7.2 the filter calls the group's intercept in its own request
functions.  Here membership is what the seed's block/io.c already
throttles on: a node with a throttle_state waits in bdrv_co_do_preadv /
bdrv_co_do_pwritev before the request reaches this driver, so the driver
itself only passes requests down.
"""

from __future__ import annotations

import errno

from block import core, io
from block.block_int import (BDRV_BLOCK_DATA, BDRV_BLOCK_OFFSET_VALID,
                             BDRV_BLOCK_RAW, BDRV_REQ_FUA, BDRV_SECTOR_BITS,
                             BlockDriver, BlockDriverState)
from block.throttle_groups import (throttle_group_exists,
                                   throttle_group_restart_bs)
from drivers import bdrv_register
from util.error import Errp, error_propagate, error_setg
from util.qemu_option import (QEMU_OPT_STRING, QemuOptDesc, QemuOptsList,
                              qemu_opt_get, qemu_opts_absorb_qdict,
                              qemu_opts_create, qemu_opts_del)

QEMU_OPT_THROTTLE_GROUP_NAME = "throttle-group"

throttle_opts = QemuOptsList("throttle", [
    QemuOptDesc(QEMU_OPT_THROTTLE_GROUP_NAME, QEMU_OPT_STRING,
                "Name of the throttle group"),
])


def throttle_parse_options(options: dict, errp: Errp):
    """The group named in the options, which must exist; None on error."""
    local_err = [None]
    opts = qemu_opts_create(throttle_opts)
    qemu_opts_absorb_qdict(opts, options, local_err)
    group = None
    if local_err[0]:
        error_propagate(errp, local_err[0])
    else:
        group = qemu_opt_get(opts, QEMU_OPT_THROTTLE_GROUP_NAME)
        if not group:
            error_setg(errp, "Please specify a throttle group")
        elif not throttle_group_exists(group):
            error_setg(errp, "Throttle group '%s' does not exist", group)
            group = None
    qemu_opts_del(opts)
    return group


def throttle_open(bs: BlockDriverState, options: dict, flags: int,
                  errp: Errp) -> int:
    group = throttle_parse_options(options, errp)
    if not group:
        return -errno.EINVAL
    # bdrv_close() leaves the group (bdrv_io_limits_disable) before
    # throttle_close() runs
    io.bdrv_io_limits_enable(bs, group)
    return 0


def throttle_close(bs: BlockDriverState) -> None:
    pass


def throttle_getlength(bs: BlockDriverState) -> int:
    return core.bdrv_getlength(bs.file.bs)


def throttle_co_readv(bs: BlockDriverState, sector_num: int, nb_sectors: int,
                      qiov) -> int:
    return io.bdrv_co_readv(bs.file.bs, sector_num, nb_sectors, qiov)


def throttle_co_writev_flags(bs: BlockDriverState, sector_num: int,
                             nb_sectors: int, qiov, flags: int) -> int:
    return io.bdrv_co_do_pwritev(bs.file.bs, sector_num << BDRV_SECTOR_BITS,
                                 nb_sectors << BDRV_SECTOR_BITS, qiov, flags)


def throttle_co_write_zeroes(bs: BlockDriverState, sector_num: int,
                             nb_sectors: int, flags: int) -> int:
    return io.bdrv_co_write_zeroes(bs.file.bs, sector_num, nb_sectors, flags)


def throttle_co_discard(bs: BlockDriverState, sector_num: int,
                        nb_sectors: int) -> int:
    return io.bdrv_co_discard(bs.file.bs, sector_num, nb_sectors)


def throttle_co_get_block_status(bs: BlockDriverState, sector_num: int,
                                 nb_sectors: int, pnum: list,
                                 file: list) -> int:
    # the data is where the file child has it (bdrv_co_get_block_status
    # asks it, as for raw)
    pnum[0] = nb_sectors
    file[0] = bs.file.bs
    return BDRV_BLOCK_RAW | BDRV_BLOCK_OFFSET_VALID | BDRV_BLOCK_DATA | \
        (sector_num << BDRV_SECTOR_BITS)


def throttle_refresh_limits(bs: BlockDriverState, errp: Errp) -> None:
    bs.bl = bs.file.bs.bl


def throttle_reopen_prepare(reopen_state, queue, errp: Errp) -> int:
    # the group cannot change on reopen here; keep the node's own
    return 0


def throttle_recurse_is_first_non_filter(
        bs: BlockDriverState, candidate: BlockDriverState) -> bool:
    return core.bdrv_recurse_is_first_non_filter(bs.file.bs, candidate)


def throttle_drain(bs: BlockDriverState) -> None:
    """A drain of a node above must not wait for this node's timers: let
    the throttled requests go (7.2 does it in drained_begin).  The seed
    drains only call bdrv_no_throttling_begin() on the node drained."""
    if bs.throttle_state:
        throttle_group_restart_bs(bs)


class BdrvThrottle(BlockDriver):
    format_name = "throttle"
    is_filter = True

    bdrv_open = staticmethod(throttle_open)
    bdrv_close = staticmethod(throttle_close)
    bdrv_reopen_prepare = staticmethod(throttle_reopen_prepare)
    bdrv_getlength = staticmethod(throttle_getlength)
    bdrv_refresh_limits = staticmethod(throttle_refresh_limits)

    bdrv_co_readv = staticmethod(throttle_co_readv)
    bdrv_co_writev_flags = staticmethod(throttle_co_writev_flags)
    supported_write_flags = BDRV_REQ_FUA
    bdrv_co_write_zeroes = staticmethod(throttle_co_write_zeroes)
    bdrv_co_discard = staticmethod(throttle_co_discard)
    bdrv_co_get_block_status = staticmethod(throttle_co_get_block_status)

    bdrv_drain = staticmethod(throttle_drain)
    bdrv_recurse_is_first_non_filter = staticmethod(
        throttle_recurse_is_first_non_filter)


bdrv_throttle = BdrvThrottle()
bdrv_register(bdrv_throttle)
