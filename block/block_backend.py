"""Block backends: the Python twin of QEMU's block/block-backend.c.

A BlockBackend is what a user of the block layer holds: a named handle on
the root node with the request checks, the write cache setting and the I/O
statistics.  As in QEMU 2.5, every request is first checked against the
length of the device (blk_check_byte_request, blk_check_request: -EIO past
the end or for a negative size, -ENOMEDIUM without a medium).

Following the seed's era (QEMU 2.6/2.7), reads and writes then go through
blk_co_preadv/blk_co_pwritev in a coroutine, also for the synchronous and
AIO forms, and the write cache is a property of the backend: with it off
(writethrough), every write carries BDRV_REQ_FUA, which the block layer
honours by flushing.  Device models, I/O status, root state and the error
actions of QEMU are left out: nothing here uses them.
"""

from __future__ import annotations

import errno
from typing import Any, Optional

from block import core, io, throttle_groups
from block.accounting import BlockAcctStats
from block.block_int import (BDRV_O_RDWR, BDRV_REQ_FUA, BDRV_REQ_ZERO_WRITE,
                             BDRV_SECTOR_BITS, BDRV_SECTOR_SIZE,
                             BlockDriverState, INT_MAX)
from util.aio import (AIOCBInfo, BlockAIOCB, aio_bh_new,
                      aio_bh_schedule_oneshot,
                      aio_context_acquire, aio_context_release, aio_poll,
                      qemu_bh_delete, qemu_bh_schedule, qemu_get_aio_context)
from util.coroutine import qemu_coroutine_create, qemu_coroutine_enter
from util.error import Errp, error_setg
from util.iov import QEMUIOVector, qemu_iovec_init_external

NOT_DONE = 0x7fffffff   # while an emulated synchronous operation runs
INT64_MAX = (1 << 63) - 1


class BlockBackend:
    __slots__ = ('name', 'refcnt', 'bs', 'dev', 'guest_block_size', 'stats',
                 'enable_write_cache', 'recorder')

    def __init__(self, name: str):
        self.name = name
        self.refcnt = 1
        self.bs: Optional[BlockDriverState] = None
        self.dev: Any = None            # the attached device model, if any
        self.guest_block_size = 512
        self.stats = BlockAcctStats()   # "info blockstats"
        # off: writethrough, every write is sent with BDRV_REQ_FUA
        self.enable_write_cache = True
        # block/trace_record.py: told of every request that passed the
        # checks (begin() before, end() of its result after)
        self.recorder = None


class BlockBackendAIOCB(BlockAIOCB):
    __slots__ = ('bh', 'blk', 'ret')


# every BlockBackend, in creation order
blk_backends: list = []


def blk_aiocb_get_aio_context(acb: BlockBackendAIOCB):
    return blk_get_aio_context(acb.blk)


block_backend_aiocb_info = AIOCBInfo(
    BlockBackendAIOCB, get_aio_context=blk_aiocb_get_aio_context)


def blk_new(name: str, errp: Errp) -> Optional[BlockBackend]:
    """A new BlockBackend without a medium, with one reference.  name must
    be well formed and unique among devices and node names."""
    assert name
    if not core.id_wellformed(name):
        error_setg(errp, 'Invalid device name')
        return None
    if blk_by_name(name):
        error_setg(errp, "Device with id '%s' already exists", name)
        return None
    if core.bdrv_find_node(name):
        error_setg(errp, "Device name '%s' conflicts with an existing node "
                   "name", name)
        return None

    blk = BlockBackend(name)
    blk_backends.append(blk)
    return blk


def blk_new_with_bs(name: str, errp: Errp) -> Optional[BlockBackend]:
    """blk_new() with a new, empty root node attached."""
    blk = blk_new(name, errp)
    if not blk:
        return None
    bs = core.bdrv_new_root()
    blk.bs = bs
    bs.blk = blk
    return blk


def blk_new_open(name: str, filename: Optional[str],
                 reference: Optional[str], options: Optional[dict],
                 flags: int, errp: Errp,
                 pret: Optional[list] = None) -> Optional[BlockBackend]:
    """blk_new_with_bs() and bdrv_open() of its node; the options belong to
    the block layer afterwards, also on failure.  pret, if given, receives
    the negative errno of a failure (the Pythonic front raises with it).

    The ``throttling.*`` options are taken here, as QEMU's blockdev_init()
    takes them for -drive, so that every way of opening an image (the
    Python API, the front, pyqemu-io --image-opts and open -o) accepts
    them; the group defaults to the backend's name."""
    throttling = (None, None)
    if options:
        throttling = throttle_groups.extract_throttle_options(options, errp)
        if throttling is None:
            if pret is not None:
                pret[0] = -errno.EINVAL
            return None

    blk = blk_new_with_bs(name, errp)
    if not blk:
        return None

    pbs = [blk.bs]
    ret = core.bdrv_open(pbs, filename, reference, options, flags, errp)
    if ret == 0 and flags & BDRV_O_RDWR and \
            core.bdrv_read_only_for_writer(blk.bs):
        # 7.2's blk_new_open() takes the write permission when it opens
        # read-write, which a node made read-only by its options refuses
        error_setg(errp, "Block node is read-only")
        ret = -errno.EPERM
    if ret < 0:
        if pret is not None:
            pret[0] = ret
        blk_unref(blk)
        return None
    group, cfg = throttling
    if cfg is not None:
        throttle_groups.blockdev_throttle_setup(blk.bs, group, cfg, name)
    return blk


def blk_delete(blk: BlockBackend) -> None:
    assert not blk.refcnt
    assert not blk.dev
    if blk.bs:
        assert blk.bs.blk is blk
        blk.bs.blk = None
        core.bdrv_unref(blk.bs)
        blk.bs = None
    blk_backends.remove(blk)


def blk_get_refcnt(blk: Optional[BlockBackend]) -> int:
    return blk.refcnt if blk else 0


def blk_ref(blk: BlockBackend) -> None:
    blk.refcnt += 1


def blk_unref(blk: Optional[BlockBackend]) -> None:
    """Drop a reference (None is allowed); the last one deletes blk and
    unrefs its node."""
    if blk:
        assert blk.refcnt > 0
        blk.refcnt -= 1
        if not blk.refcnt:
            blk_delete(blk)


def blk_next(blk: Optional[BlockBackend]) -> Optional[BlockBackend]:
    """Iterate: blk_next(None) is the first BlockBackend."""
    if blk is None:
        return blk_backends[0] if blk_backends else None
    i = blk_backends.index(blk) + 1
    return blk_backends[i] if i < len(blk_backends) else None


def blk_name(blk: BlockBackend) -> str:
    return blk.name


def blk_by_name(name: str) -> Optional[BlockBackend]:
    assert name is not None
    for blk in blk_backends:
        if blk.name == name:
            return blk
    return None


def blk_bs(blk: BlockBackend) -> Optional[BlockDriverState]:
    return blk.bs


def blk_attach_dev(blk: BlockBackend, dev: Any) -> int:
    """Attach a device model; -EBUSY if one is attached already."""
    if blk.dev:
        return -errno.EBUSY
    blk_ref(blk)
    blk.dev = dev
    return 0


def blk_detach_dev(blk: BlockBackend, dev: Any) -> None:
    assert blk.dev is dev
    blk.dev = None
    blk.guest_block_size = 512
    blk_unref(blk)


def blk_get_attached_dev(blk: BlockBackend) -> Any:
    return blk.dev


def blk_check_byte_request(blk: BlockBackend, offset: int, size: int) -> int:
    """0 if [offset, offset + size) lies within the device, else -errno."""
    # size is a size_t in C: a negative one is a huge one
    if size < 0 or size > INT_MAX:
        return -errno.EIO

    if not blk_is_available(blk):
        return -errno.ENOMEDIUM

    # blk_getlength() would only repeat the blk_is_available() just done
    length = core.bdrv_getlength(blk.bs)
    if length < 0:
        return length

    if offset < 0:
        return -errno.EIO

    if offset > length or length - offset < size:
        return -errno.EIO

    return 0


def blk_check_request(blk: BlockBackend, sector_num: int,
                      nb_sectors: int) -> int:
    if sector_num < 0 or sector_num > INT64_MAX // BDRV_SECTOR_SIZE:
        return -errno.EIO

    if nb_sectors < 0 or nb_sectors > INT_MAX // BDRV_SECTOR_SIZE:
        return -errno.EIO

    return blk_check_byte_request(blk, sector_num * BDRV_SECTOR_SIZE,
                                  nb_sectors * BDRV_SECTOR_SIZE)


def blk_co_preadv(blk: BlockBackend, offset: int, nbytes: int,
                  qiov: QEMUIOVector, flags: int) -> int:
    ret = blk_check_byte_request(blk, offset, nbytes)
    if ret < 0:
        return ret
    rec = blk.recorder and blk.recorder.begin('read', offset, nbytes, flags,
                                              qiov)
    ret = io.bdrv_co_do_preadv(blk.bs, offset, nbytes, qiov, flags)
    return rec.end(ret) if rec else ret


def blk_co_pwritev(blk: BlockBackend, offset: int, nbytes: int,
                   qiov: Optional[QEMUIOVector], flags: int) -> int:
    """A write (qiov None for a zero write with BDRV_REQ_ZERO_WRITE)."""
    ret = blk_check_byte_request(blk, offset, nbytes)
    if ret < 0:
        return ret

    # writethrough: the data must be on the disk when we complete
    if not blk.enable_write_cache:
        flags |= BDRV_REQ_FUA

    rec = blk.recorder and blk.recorder.begin('write', offset, nbytes, flags,
                                              qiov)
    ret = io.bdrv_co_do_pwritev(blk.bs, offset, nbytes, qiov, flags)
    return rec.end(ret) if rec else ret


class BlkRwCo:
    """A request run in a coroutine.  C describes a zero write by an iovec
    over NULL; here qiov is None and bytes says the length."""
    __slots__ = ('blk', 'offset', 'qiov', 'bytes', 'ret', 'flags')

    def __init__(self, blk: BlockBackend, offset: int,
                 qiov: Optional[QEMUIOVector], nbytes: int, flags: int):
        self.blk = blk
        self.offset = offset
        self.qiov = qiov
        self.bytes = nbytes
        self.ret = NOT_DONE
        self.flags = flags


def blk_read_entry(rwco: BlkRwCo) -> None:
    rwco.ret = blk_co_preadv(rwco.blk, rwco.offset, rwco.bytes, rwco.qiov,
                             rwco.flags)


def blk_write_entry(rwco: BlkRwCo) -> None:
    rwco.ret = blk_co_pwritev(rwco.blk, rwco.offset, rwco.bytes, rwco.qiov,
                              rwco.flags)


def blk_prw(blk: BlockBackend, offset: int, buf: Any, nbytes: int,
            co_entry, flags: int) -> int:
    """Run co_entry on the first nbytes of buf (None for a zero write) in a
    coroutine and poll until it is done."""
    qiov = None
    if buf is not None:
        view = memoryview(buf).cast('B')
        assert len(view) >= nbytes
        qiov = QEMUIOVector()
        qemu_iovec_init_external(qiov, [view[:nbytes]], 1)
    rwco = BlkRwCo(blk, offset, qiov, nbytes, flags)
    co = qemu_coroutine_create(co_entry)
    qemu_coroutine_enter(co, rwco)

    aio_context = blk_get_aio_context(blk)
    while rwco.ret == NOT_DONE:
        aio_poll(aio_context, True)
    return rwco.ret


def blk_read(blk: BlockBackend, sector_num: int, buf: Any,
             nb_sectors: int) -> int:
    ret = blk_check_request(blk, sector_num, nb_sectors)
    if ret < 0:
        return ret
    return blk_prw(blk, sector_num << BDRV_SECTOR_BITS, buf,
                   nb_sectors << BDRV_SECTOR_BITS, blk_read_entry, 0)


def blk_write(blk: BlockBackend, sector_num: int, buf: Any,
              nb_sectors: int) -> int:
    ret = blk_check_request(blk, sector_num, nb_sectors)
    if ret < 0:
        return ret
    return blk_prw(blk, sector_num << BDRV_SECTOR_BITS, buf,
                   nb_sectors << BDRV_SECTOR_BITS, blk_write_entry, 0)


def blk_write_zeroes(blk: BlockBackend, sector_num: int, nb_sectors: int,
                     flags: int) -> int:
    ret = blk_check_request(blk, sector_num, nb_sectors)
    if ret < 0:
        return ret
    return blk_prw(blk, sector_num << BDRV_SECTOR_BITS, None,
                   nb_sectors << BDRV_SECTOR_BITS, blk_write_entry,
                   flags | BDRV_REQ_ZERO_WRITE)


def blk_pwrite_zeroes(blk: BlockBackend, offset: int, count: int,
                      flags: int) -> int:
    """Write count zero bytes at offset (a QEMU 2.7 function: the byte
    form of blk_write_zeroes); 0 or -errno."""
    ret = blk_check_byte_request(blk, offset, count)
    if ret < 0:
        return ret
    return blk_prw(blk, offset, None, count, blk_write_entry,
                   flags | BDRV_REQ_ZERO_WRITE)


def error_callback_bh(acb: BlockBackendAIOCB) -> None:
    qemu_bh_delete(acb.bh)
    acb.cb(acb.opaque, acb.ret)
    io.qemu_aio_unref(acb)


def blk_abort_aio_request(blk: BlockBackend, cb, opaque,
                          ret: int) -> BlockAIOCB:
    """An AIO request that fails with ret, completed from a bottom half."""
    acb = blk_aio_get(block_backend_aiocb_info, blk, cb, opaque)
    acb.blk = blk
    acb.ret = ret
    acb.bh = aio_bh_new(blk_get_aio_context(blk), error_callback_bh, acb)
    qemu_bh_schedule(acb.bh)
    return acb


class BlkAioEmAIOCB(BlockAIOCB):
    __slots__ = ('rwco', 'bytes', 'has_returned')


blk_aio_em_aiocb_info = AIOCBInfo(BlkAioEmAIOCB)


def blk_aio_complete(acb: BlkAioEmAIOCB) -> None:
    # a request that completes before blk_aio_prwv() returns is completed
    # from a bottom half, so that the callback never runs before the caller
    # has the acb
    if acb.has_returned:
        acb.cb(acb.opaque, acb.rwco.ret)
        io.qemu_aio_unref(acb)


def blk_aio_complete_bh(acb: BlkAioEmAIOCB) -> None:
    assert acb.has_returned
    blk_aio_complete(acb)


def blk_aio_prwv(blk: BlockBackend, offset: int, nbytes: int,
                 qiov: Optional[QEMUIOVector], co_entry, flags: int, cb,
                 opaque) -> BlockAIOCB:
    acb = blk_aio_get(blk_aio_em_aiocb_info, blk, cb, opaque)
    acb.rwco = BlkRwCo(blk, offset, qiov, nbytes, flags)
    acb.bytes = nbytes
    acb.has_returned = False

    co = qemu_coroutine_create(co_entry)
    qemu_coroutine_enter(co, acb)

    acb.has_returned = True
    if acb.rwco.ret != NOT_DONE:
        # a one-shot bh (as QEMU 2.9+ does here): aio_bh_poll frees it
        aio_bh_schedule_oneshot(blk_get_aio_context(blk),
                                blk_aio_complete_bh, acb)
    return acb


def blk_aio_read_entry(acb: BlkAioEmAIOCB) -> None:
    rwco = acb.rwco
    assert rwco.qiov.size == acb.bytes
    rwco.ret = blk_co_preadv(rwco.blk, rwco.offset, acb.bytes, rwco.qiov,
                             rwco.flags)
    blk_aio_complete(acb)


def blk_aio_write_entry(acb: BlkAioEmAIOCB) -> None:
    rwco = acb.rwco
    assert rwco.qiov is None or rwco.qiov.size == acb.bytes
    rwco.ret = blk_co_pwritev(rwco.blk, rwco.offset, acb.bytes, rwco.qiov,
                              rwco.flags)
    blk_aio_complete(acb)


def blk_aio_write_zeroes(blk: BlockBackend, sector_num: int, nb_sectors: int,
                         flags: int, cb, opaque) -> BlockAIOCB:
    ret = blk_check_request(blk, sector_num, nb_sectors)
    if ret < 0:
        return blk_abort_aio_request(blk, cb, opaque, ret)
    return blk_aio_prwv(blk, sector_num << BDRV_SECTOR_BITS,
                        nb_sectors << BDRV_SECTOR_BITS, None,
                        blk_aio_write_entry, flags | BDRV_REQ_ZERO_WRITE,
                        cb, opaque)


def blk_aio_pwrite_zeroes(blk: BlockBackend, offset: int, count: int,
                          flags: int, cb, opaque) -> BlockAIOCB:
    """The byte form of blk_aio_write_zeroes (QEMU 2.7): the request checks
    happen in the coroutine and fail through the callback."""
    return blk_aio_prwv(blk, offset, count, None, blk_aio_write_entry,
                        flags | BDRV_REQ_ZERO_WRITE, cb, opaque)


def blk_pread(blk: BlockBackend, offset: int, buf: Any, count: int) -> int:
    """Read count bytes at offset into buf; count or -errno."""
    ret = blk_check_byte_request(blk, offset, count)
    if ret < 0:
        return ret
    ret = blk_prw(blk, offset, buf, count, blk_read_entry, 0)
    return ret if ret < 0 else count


def blk_pwrite(blk: BlockBackend, offset: int, buf: Any, count: int,
               flags: int = 0) -> int:
    """Write the first count bytes of buf at offset (flags: BDRV_REQ_FUA,
    as in QEMU 2.7); count or -errno."""
    ret = blk_check_byte_request(blk, offset, count)
    if ret < 0:
        return ret
    ret = blk_prw(blk, offset, buf, count, blk_write_entry, flags)
    return ret if ret < 0 else count


def blk_getlength(blk: BlockBackend) -> int:
    if not blk_is_available(blk):
        return -errno.ENOMEDIUM
    return core.bdrv_getlength(blk.bs)


def blk_get_geometry(blk: BlockBackend) -> int:
    """The number of sectors, 0 without a medium (C: *nb_sectors_ptr)."""
    if not blk.bs:
        return 0
    return core.bdrv_get_geometry(blk.bs)


def blk_nb_sectors(blk: BlockBackend) -> int:
    if not blk_is_available(blk):
        return -errno.ENOMEDIUM
    return core.bdrv_nb_sectors(blk.bs)


def blk_aio_readv(blk: BlockBackend, sector_num: int, iov: QEMUIOVector,
                  nb_sectors: int, cb, opaque) -> BlockAIOCB:
    ret = blk_check_request(blk, sector_num, nb_sectors)
    if ret < 0:
        return blk_abort_aio_request(blk, cb, opaque, ret)
    assert nb_sectors << BDRV_SECTOR_BITS == iov.size
    return blk_aio_prwv(blk, sector_num << BDRV_SECTOR_BITS, iov.size, iov,
                        blk_aio_read_entry, 0, cb, opaque)


def blk_aio_writev(blk: BlockBackend, sector_num: int, iov: QEMUIOVector,
                   nb_sectors: int, cb, opaque) -> BlockAIOCB:
    ret = blk_check_request(blk, sector_num, nb_sectors)
    if ret < 0:
        return blk_abort_aio_request(blk, cb, opaque, ret)
    assert nb_sectors << BDRV_SECTOR_BITS == iov.size
    return blk_aio_prwv(blk, sector_num << BDRV_SECTOR_BITS, iov.size, iov,
                        blk_aio_write_entry, 0, cb, opaque)


def blk_aio_preadv(blk: BlockBackend, offset: int, qiov: QEMUIOVector,
                   flags: int, cb, opaque) -> BlockAIOCB:
    """The byte form of blk_aio_readv (QEMU 2.7)."""
    return blk_aio_prwv(blk, offset, qiov.size, qiov, blk_aio_read_entry,
                        flags, cb, opaque)


def blk_aio_pwritev(blk: BlockBackend, offset: int, qiov: QEMUIOVector,
                    flags: int, cb, opaque) -> BlockAIOCB:
    """The byte form of blk_aio_writev (QEMU 2.7)."""
    return blk_aio_prwv(blk, offset, qiov.size, qiov, blk_aio_write_entry,
                        flags, cb, opaque)


def blk_aio_flush(blk: BlockBackend, cb, opaque) -> BlockAIOCB:
    if not blk_is_available(blk):
        return blk_abort_aio_request(blk, cb, opaque, -errno.ENOMEDIUM)
    if blk.recorder:
        cb, opaque = blk.recorder.begin('flush', 0, 0, 0, None).aio(cb, opaque)
    return io.bdrv_aio_flush(blk.bs, cb, opaque)


def blk_aio_discard(blk: BlockBackend, sector_num: int, nb_sectors: int, cb,
                    opaque) -> BlockAIOCB:
    ret = blk_check_request(blk, sector_num, nb_sectors)
    if ret < 0:
        return blk_abort_aio_request(blk, cb, opaque, ret)
    if blk.recorder:
        cb, opaque = blk.recorder.begin(
            'discard', sector_num << BDRV_SECTOR_BITS,
            nb_sectors << BDRV_SECTOR_BITS, 0, None).aio(cb, opaque)
    return io.bdrv_aio_discard(blk.bs, sector_num, nb_sectors, cb, opaque)


def blk_aio_cancel(acb: BlockAIOCB) -> None:
    io.bdrv_aio_cancel(acb)


def blk_aio_cancel_async(acb: BlockAIOCB) -> None:
    io.bdrv_aio_cancel_async(acb)


def blk_aio_multiwrite(blk: BlockBackend, reqs: list, num_reqs: int) -> int:
    for req in reqs[:num_reqs]:
        ret = blk_check_request(blk, req.sector, req.nb_sectors)
        if ret < 0:
            return ret
    return io.bdrv_aio_multiwrite(blk.bs, reqs, num_reqs)


def blk_ioctl(blk: BlockBackend, req: int, buf: Any) -> int:
    if not blk_is_available(blk):
        return -errno.ENOMEDIUM
    return io.bdrv_ioctl(blk.bs, req, buf)


def blk_aio_ioctl(blk: BlockBackend, req: int, buf: Any, cb,
                  opaque) -> BlockAIOCB:
    if not blk_is_available(blk):
        return blk_abort_aio_request(blk, cb, opaque, -errno.ENOMEDIUM)
    return io.bdrv_aio_ioctl(blk.bs, req, buf, cb, opaque)


def blk_co_discard(blk: BlockBackend, sector_num: int,
                   nb_sectors: int) -> int:
    ret = blk_check_request(blk, sector_num, nb_sectors)
    if ret < 0:
        return ret
    rec = blk.recorder and blk.recorder.begin(
        'discard', sector_num << BDRV_SECTOR_BITS,
        nb_sectors << BDRV_SECTOR_BITS, 0, None)
    ret = io.bdrv_co_discard(blk.bs, sector_num, nb_sectors)
    return rec.end(ret) if rec else ret


def blk_co_flush(blk: BlockBackend) -> int:
    if not blk_is_available(blk):
        return -errno.ENOMEDIUM
    rec = blk.recorder and blk.recorder.begin('flush', 0, 0, 0, None)
    ret = io.bdrv_co_flush(blk.bs)
    return rec.end(ret) if rec else ret


def blk_flush(blk: BlockBackend) -> int:
    if not blk_is_available(blk):
        return -errno.ENOMEDIUM
    rec = blk.recorder and blk.recorder.begin('flush', 0, 0, 0, None)
    ret = io.bdrv_flush(blk.bs)
    return rec.end(ret) if rec else ret


def blk_flush_all() -> int:
    """Flush every BlockBackend with a medium; the first error, or 0."""
    result = 0
    for blk in list(blk_backends):
        aio_context = blk_get_aio_context(blk)
        aio_context_acquire(aio_context)
        if blk_is_inserted(blk):
            ret = blk_flush(blk)
            if ret < 0 and not result:
                result = ret
        aio_context_release(aio_context)
    return result


def blk_drain(blk: BlockBackend) -> None:
    if blk.bs:
        io.bdrv_drain(blk.bs)


def blk_drain_all() -> None:
    io.bdrv_drain_all()


def blk_is_read_only(blk: BlockBackend) -> bool:
    # without a medium, a backend is read-only here (QEMU keeps the flag
    # of the removed medium in its root state)
    return core.bdrv_is_read_only(blk.bs) if blk.bs else True


def blk_is_sg(blk: BlockBackend) -> bool:
    return core.bdrv_is_sg(blk.bs) if blk.bs else False


def blk_enable_write_cache(blk: BlockBackend) -> bool:
    return blk.enable_write_cache


def blk_set_enable_write_cache(blk: BlockBackend, wce: bool) -> None:
    blk.enable_write_cache = wce


def blk_is_inserted(blk: BlockBackend) -> bool:
    return bool(blk.bs) and core.bdrv_is_inserted(blk.bs)


def blk_is_available(blk: BlockBackend) -> bool:
    """A medium is there (and, with a device model, its tray is closed:
    no device model here has a tray)."""
    return blk_is_inserted(blk)


def blk_get_flags(blk: BlockBackend) -> int:
    return core.bdrv_get_flags(blk.bs) if blk.bs else 0


def blk_get_max_transfer_length(blk: BlockBackend) -> int:
    return blk.bs.bl.max_transfer_length if blk.bs else 0


def blk_set_guest_block_size(blk: BlockBackend, align: int) -> None:
    blk.guest_block_size = align


def blk_blockalign(blk: Optional[BlockBackend], size: int) -> memoryview:
    return io.qemu_blockalign(blk.bs if blk else None, size)


def blk_get_aio_context(blk: BlockBackend):
    if blk.bs:
        return core.bdrv_get_aio_context(blk.bs)
    return qemu_get_aio_context()


def blk_set_aio_context(blk: BlockBackend, new_context) -> None:
    if blk.bs:
        core.bdrv_set_aio_context(blk.bs, new_context)


def blk_io_plug(blk: BlockBackend) -> None:
    if blk.bs:
        io.bdrv_io_plug(blk.bs)


def blk_io_unplug(blk: BlockBackend) -> None:
    if blk.bs:
        io.bdrv_io_unplug(blk.bs)


def blk_get_stats(blk: BlockBackend) -> BlockAcctStats:
    return blk.stats


def blk_aio_get(aiocb_info: AIOCBInfo, blk: BlockBackend, cb,
                opaque) -> BlockAIOCB:
    return io.qemu_aio_get(aiocb_info, blk_bs(blk), cb, opaque)


def blk_co_write_zeroes(blk: BlockBackend, sector_num: int, nb_sectors: int,
                        flags: int) -> int:
    ret = blk_check_request(blk, sector_num, nb_sectors)
    if ret < 0:
        return ret
    return blk_co_pwritev(blk, sector_num << BDRV_SECTOR_BITS,
                          nb_sectors << BDRV_SECTOR_BITS, None,
                          flags | BDRV_REQ_ZERO_WRITE)


def blk_co_pwrite_zeroes(blk: BlockBackend, offset: int, count: int,
                         flags: int) -> int:
    """The byte form of blk_co_write_zeroes (QEMU 2.7)."""
    return blk_co_pwritev(blk, offset, count, None,
                          flags | BDRV_REQ_ZERO_WRITE)


def blk_write_compressed(blk: BlockBackend, sector_num: int, buf: Any,
                         nb_sectors: int) -> int:
    ret = blk_check_request(blk, sector_num, nb_sectors)
    if ret < 0:
        return ret
    return io.bdrv_write_compressed(blk.bs, sector_num, buf, nb_sectors)


def blk_truncate(blk: BlockBackend, offset: int, prealloc: str = 'off',
                 errp: Errp = None) -> int:
    """Resize; see core.bdrv_truncate (prealloc and errp as in QEMU 7.2)."""
    if not blk_is_available(blk):
        error_setg(errp, 'No medium inserted')
        return -errno.ENOMEDIUM
    return core.bdrv_truncate(blk.bs, offset, prealloc, errp)


def blk_discard(blk: BlockBackend, sector_num: int, nb_sectors: int) -> int:
    ret = blk_check_request(blk, sector_num, nb_sectors)
    if ret < 0:
        return ret
    rec = blk.recorder and blk.recorder.begin(
        'discard', sector_num << BDRV_SECTOR_BITS,
        nb_sectors << BDRV_SECTOR_BITS, 0, None)
    ret = io.bdrv_discard(blk.bs, sector_num, nb_sectors)
    return rec.end(ret) if rec else ret


def blk_pdiscard(blk: BlockBackend, offset: int, count: int) -> int:
    """Discard count bytes at offset (QEMU 2.7's byte form).  The block layer
    of the seed discards whole sectors: the sectors that lie inside the
    range are discarded, partial ones at either end are left alone."""
    ret = blk_check_byte_request(blk, offset, count)
    if ret < 0:
        return ret
    rec = blk.recorder and blk.recorder.begin('discard', offset, count, 0,
                                              None)
    start = (offset + BDRV_SECTOR_SIZE - 1) >> BDRV_SECTOR_BITS
    end = (offset + count) >> BDRV_SECTOR_BITS
    ret = io.bdrv_discard(blk.bs, start, end - start) if end > start else 0
    return rec.end(ret) if rec else ret


def blk_save_vmstate(blk: BlockBackend, buf: Any, pos: int,
                     size: int) -> int:
    if not blk_is_available(blk):
        return -errno.ENOMEDIUM
    return io.bdrv_save_vmstate(blk.bs, buf, pos, size)


def blk_load_vmstate(blk: BlockBackend, buf: Any, pos: int,
                     size: int) -> int:
    if not blk_is_available(blk):
        return -errno.ENOMEDIUM
    return io.bdrv_load_vmstate(blk.bs, buf, pos, size)
