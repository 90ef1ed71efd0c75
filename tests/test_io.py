"""Tests of block/io.py (the seed, QEMU's block/io.c of spring 2016).

The drivers are test-only and defined here: an in-memory driver that logs
every call, one with a 4096-byte request_alignment, one with a backing file
and an allocation map, an AIO-only and a synchronous-only driver.  Nodes are
built directly with core.bdrv_new() and a private AioContext per test.  A
driver in "async" mode completes each request from a bottom half, i.e. in
the next aio_poll(), which lets requests overlap deterministically.
"""

import errno
import io as _stdio
import sys

import pytest

from block import core, io, trace
from block.block_int import (
    BDRV_BLOCK_ALLOCATED, BDRV_BLOCK_DATA, BDRV_BLOCK_OFFSET_VALID,
    BDRV_BLOCK_RAW, BDRV_BLOCK_ZERO, BDRV_O_NO_FLUSH, BDRV_O_RDWR,
    BDRV_O_UNMAP, BDRV_REQ_FUA, BDRV_REQ_MAY_UNMAP, BDRV_REQ_ZERO_WRITE,
    BDRV_TRACKED_READ, BLKDBG_FLUSH_TO_DISK, BLKDBG_FLUSH_TO_OS,
    BLKDBG_PWRITEV, BLKDBG_PWRITEV_DONE, BLKDBG_PWRITEV_RMW_AFTER_HEAD,
    BLKDBG_PWRITEV_RMW_AFTER_TAIL, BLKDBG_PWRITEV_RMW_HEAD,
    BLKDBG_PWRITEV_RMW_TAIL, BLKDBG_PWRITEV_ZERO,
    BLOCKDEV_DETECT_ZEROES_OPTIONS_ON, BLOCKDEV_DETECT_ZEROES_OPTIONS_UNMAP,
    BdrvTrackedRequest, BlockDriver, BlockRequest)
from util.aio import (AIOCBInfo, BlockAIOCB, aio_bh_new, aio_context_new,
                      aio_external_disabled, aio_poll, qemu_bh_delete,
                      qemu_bh_schedule)
from util.coroutine import (qemu_coroutine_create, qemu_coroutine_enter,
                            qemu_coroutine_self, qemu_coroutine_yield,
                            qemu_in_coroutine)
from util.iov import (QEMUIOVector, iov_base_address, qemu_iovec_from_buf,
                      qemu_iovec_init_external, qemu_iovec_to_buf)
from util.notify import NotifierWithReturn

SECTOR = 512


# --- harness ----------------------------------------------------------------

def co_wait_bh(ctx):
    """Yield until the next aio_poll() of ctx runs a bottom half."""
    co = qemu_coroutine_self()
    holder = []

    def cb(_):
        qemu_bh_delete(holder[0])
        qemu_coroutine_enter(co, None)

    holder.append(aio_bh_new(ctx, cb, None))
    qemu_bh_schedule(holder[0])
    qemu_coroutine_yield()


def run_co(ctx, fn, *args):
    """Run fn(*args) in a coroutine, polling ctx until it returns."""
    result = []
    co = qemu_coroutine_create(lambda _: result.append(fn(*args)))
    qemu_coroutine_enter(co, None)
    while not result:
        aio_poll(ctx, True)
    return result[0]


def make_qiov(buf):
    qiov = QEMUIOVector()
    qemu_iovec_init_external(qiov, [buf], 1)
    return qiov


class MemState:
    def __init__(self):
        self.data = bytearray()
        self.log = []
        self.async_io = False
        self.cluster_size = 0
        self.events = []


class MemDriver(BlockDriver):
    """RAM-backed, logging driver (a protocol: no backing file)."""
    format_name = "test-mem"
    instance_type = MemState

    def _maybe_wait(self, bs):
        if bs.opaque.async_io:
            co_wait_bh(bs.aio_context)

    def bdrv_co_readv(self, bs, sector_num, nb_sectors, qiov):
        s = bs.opaque
        s.log.append(("read", sector_num, nb_sectors))
        self._maybe_wait(bs)
        off, n = sector_num * SECTOR, nb_sectors * SECTOR
        chunk = bytes(s.data[off:off + n]).ljust(n, b"\0")
        qemu_iovec_from_buf(qiov, 0, chunk, n)
        return 0

    def bdrv_co_writev(self, bs, sector_num, nb_sectors, qiov):
        s = bs.opaque
        s.log.append(("write", sector_num, nb_sectors))
        self._maybe_wait(bs)
        self._store(bs, sector_num, nb_sectors, qiov)
        return 0

    def _store(self, bs, sector_num, nb_sectors, qiov):
        s = bs.opaque
        off, n = sector_num * SECTOR, nb_sectors * SECTOR
        buf = bytearray(n)
        if qiov is not None:
            qemu_iovec_to_buf(qiov, 0, buf, n)
        if len(s.data) < off + n:
            s.data.extend(bytes(off + n - len(s.data)))
        s.data[off:off + n] = buf

    def bdrv_get_info(self, bs, bdi):
        bdi.cluster_size = bs.opaque.cluster_size
        return 0

    def bdrv_debug_event(self, bs, event):
        bs.opaque.events.append(event)


class ZeroDriver(MemDriver):
    """With bdrv_co_write_zeroes (and a switch to refuse it)."""
    zero_ret = 0

    def bdrv_co_write_zeroes(self, bs, sector_num, nb_sectors, flags):
        bs.opaque.log.append(("write_zeroes", sector_num, nb_sectors, flags))
        if self.zero_ret:
            return self.zero_ret
        self._store(bs, sector_num, nb_sectors, None)
        return 0


class BackedState(MemState):
    def __init__(self):
        super().__init__()
        self.alloc = set()


class BackedDriver(ZeroDriver):
    """A format with a backing file: unallocated sectors come from it."""
    format_name = "test-backed"
    instance_type = BackedState
    supports_backing = True

    def bdrv_co_readv(self, bs, sector_num, nb_sectors, qiov):
        s = bs.opaque
        s.log.append(("read", sector_num, nb_sectors))
        for i in range(nb_sectors):
            sec = sector_num + i
            one = bytearray(SECTOR)
            if sec in s.alloc:
                one[:] = bytes(s.data[sec * SECTOR:(sec + 1) * SECTOR]).ljust(
                    SECTOR, b"\0")
            elif bs.backing:
                ret = io.bdrv_co_readv(bs.backing.bs, sec, 1, make_qiov(one))
                assert ret == 0
            qemu_iovec_from_buf(qiov, i * SECTOR, one, SECTOR)
        return 0

    def bdrv_co_writev(self, bs, sector_num, nb_sectors, qiov):
        bs.opaque.alloc.update(range(sector_num, sector_num + nb_sectors))
        return super().bdrv_co_writev(bs, sector_num, nb_sectors, qiov)

    def bdrv_co_write_zeroes(self, bs, sector_num, nb_sectors, flags):
        bs.opaque.alloc.update(range(sector_num, sector_num + nb_sectors))
        return super().bdrv_co_write_zeroes(bs, sector_num, nb_sectors, flags)

    def bdrv_co_get_block_status(self, bs, sector_num, nb_sectors, pnum,
                                 file):
        alloc = bs.opaque.alloc
        state = sector_num in alloc
        n = 1
        while n < nb_sectors and ((sector_num + n) in alloc) == state:
            n += 1
        pnum[0] = n
        return BDRV_BLOCK_DATA if state else 0


def new_drv(cls, **attrs):
    drv = cls()
    for k, v in attrs.items():
        setattr(drv, k, v)
    io.bdrv_setup_io_funcs(drv)
    return drv


def new_bs(ctx, drv, sectors=32, alignment=SECTOR, flags=BDRV_O_RDWR,
           data=None):
    bs = core.bdrv_new()
    bs.aio_context = ctx
    bs.drv = drv
    bs.opaque = drv.instance_type()
    bs.opaque.data = bytearray(data if data is not None
                               else bytes(sectors * SECTOR))
    bs.total_sectors = sectors
    bs.request_alignment = alignment
    bs.open_flags = flags
    io.bdrv_refresh_limits(bs, None)
    return bs


def attach(parent, child, name):
    role = core.child_backing if name == "backing" else core.child_file
    c = core.bdrv_attach_child(parent, child, name, role)
    setattr(parent, name, c)
    return c


def pattern(n, seed=1):
    return bytes((i * 7 + seed) & 0xff for i in range(n))


@pytest.fixture
def ctx():
    c = aio_context_new()
    yield c
    # nothing may be left behind by a test
    while aio_poll(c, False):
        pass


# --- throttling hooks, setup, limits ------------------------------------------

def test_bdrv_no_throttling_begin_end(ctx):
    bs = new_bs(ctx, new_drv(MemDriver))
    io.bdrv_no_throttling_begin(bs)
    io.bdrv_no_throttling_begin(bs)
    assert bs.io_limits_disabled == 2
    io.bdrv_no_throttling_end(bs)
    io.bdrv_no_throttling_end(bs)
    assert bs.io_limits_disabled == 0
    with pytest.raises(AssertionError):
        io.bdrv_no_throttling_end(bs)


def test_bdrv_io_limits_update_group_without_group(ctx):
    bs = new_bs(ctx, new_drv(MemDriver))
    io.bdrv_io_limits_update_group(bs, "g")     # not throttled: nothing
    assert bs.throttle_state is None


def test_bdrv_io_limits_enable_disable(ctx):
    """Group membership through block/throttle_groups.py; a request with a
    group but no limit goes straight through the intercept."""
    from block.throttle_groups import throttle_group_get_name
    bs = new_bs(ctx, new_drv(MemDriver))
    io.bdrv_io_limits_enable(bs, "test-io-g1")
    assert bs.throttle_state is not None
    assert throttle_group_get_name(bs) == "test-io-g1"
    io.bdrv_io_limits_update_group(bs, "test-io-g1")
    assert throttle_group_get_name(bs) == "test-io-g1"
    io.bdrv_io_limits_update_group(bs, "test-io-g2")
    assert throttle_group_get_name(bs) == "test-io-g2"
    assert io.bdrv_write(bs, 0, pattern(SECTOR), 1) == 0
    io.bdrv_drain(bs)               # restarts (no) throttled requests
    io.bdrv_io_limits_disable(bs)
    assert bs.throttle_state is None
    assert bs.opaque.log == [("write", 0, 1)]


def test_bdrv_setup_io_funcs():
    co_drv = new_drv(MemDriver)
    assert co_drv.bdrv_co_readv.__func__ is MemDriver.bdrv_co_readv
    assert co_drv.bdrv_aio_readv is None

    aio_drv = new_drv(AioOnlyDriver)
    assert aio_drv.bdrv_co_readv is io.bdrv_co_readv_em
    assert aio_drv.bdrv_co_writev is io.bdrv_co_writev_em
    assert aio_drv.bdrv_aio_readv.__func__ is AioOnlyDriver.bdrv_aio_readv

    sync_drv = new_drv(SyncOnlyDriver)
    assert sync_drv.bdrv_co_readv is io.bdrv_co_readv_em
    assert sync_drv.bdrv_aio_readv is io.bdrv_aio_readv_em
    assert sync_drv.bdrv_aio_writev is io.bdrv_aio_writev_em
    # the class stays untouched: the layers live on the registered instance
    assert SyncOnlyDriver.bdrv_co_readv is None


class LimitsDriver(MemDriver):
    def bdrv_refresh_limits(self, bs, errp):
        bs.bl.max_discard = 77


def test_bdrv_refresh_limits(ctx):
    proto = new_bs(ctx, new_drv(MemDriver))
    assert proto.bl.min_mem_alignment == 512
    assert proto.bl.opt_mem_alignment == io.mmap.PAGESIZE
    assert proto.bl.max_iov == io.IOV_MAX
    proto.bl.max_transfer_length = 64
    proto.bl.opt_transfer_length = 8
    backing = new_bs(ctx, new_drv(MemDriver))

    top = new_bs(ctx, new_drv(LimitsDriver))
    attach(top, proto, "file")
    attach(top, backing, "backing")
    # bdrv_refresh_limits of a child resets its limits first: set them in
    # the child's driver would be the way; here the file's own defaults
    # come through, then the backing file's.
    io.bdrv_refresh_limits(top, None)
    assert top.bl.max_discard == 77                 # the driver's word
    assert top.bl.max_iov == io.IOV_MAX
    assert top.bl.min_mem_alignment == 512
    assert top.bl.max_transfer_length == 0


def test_bdrv_enable_copy_on_read(ctx):
    bs = new_bs(ctx, new_drv(MemDriver))
    io.bdrv_enable_copy_on_read(bs)
    io.bdrv_enable_copy_on_read(bs)
    io.bdrv_disable_copy_on_read(bs)
    assert bs.copy_on_read == 1
    io.bdrv_disable_copy_on_read(bs)
    with pytest.raises(AssertionError):
        io.bdrv_disable_copy_on_read(bs)


# --- tracked requests ---------------------------------------------------------

def test_tracked_request_begin_end(ctx):
    bs = new_bs(ctx, new_drv(MemDriver))
    a, b = BdrvTrackedRequest(), BdrvTrackedRequest()

    def body():
        io.tracked_request_begin(a, bs, 0, 512, BDRV_TRACKED_READ)
        io.tracked_request_begin(b, bs, 512, 512, BDRV_TRACKED_READ)
        assert list(reversed(bs.tracked_requests)) == [b, a]   # head first
        assert (a.overlap_offset, a.overlap_bytes, a.serialising,
                a.co) == (0, 512, False, qemu_coroutine_self())
        assert io.bdrv_requests_pending(bs)
        io.tracked_request_end(a)
        io.tracked_request_end(b)
        return io.bdrv_requests_pending(bs)
    assert run_co(ctx, body) is False


def test_mark_request_serialising(ctx):
    bs = new_bs(ctx, new_drv(MemDriver))
    req = BdrvTrackedRequest()

    def body():
        io.tracked_request_begin(req, bs, 5000, 100, BDRV_TRACKED_READ)
        io.mark_request_serialising(req, 4096)
        assert (req.overlap_offset, req.overlap_bytes) == (4096, 4096)
        assert bs.serialising_in_flight == 1
        io.mark_request_serialising(req, 512)   # never shrinks, counts once
        assert (req.overlap_offset, req.overlap_bytes) == (4096, 4096)
        assert bs.serialising_in_flight == 1
        io.tracked_request_end(req)
        return bs.serialising_in_flight
    assert run_co(ctx, body) == 0


def test_tracked_request_overlaps(ctx):
    bs = new_bs(ctx, new_drv(MemDriver))
    req = BdrvTrackedRequest()
    io.tracked_request_begin(req, bs, 1024, 1024, BDRV_TRACKED_READ)
    assert not io.tracked_request_overlaps(req, 0, 1024)
    assert io.tracked_request_overlaps(req, 0, 1025)
    assert io.tracked_request_overlaps(req, 2047, 10)
    assert not io.tracked_request_overlaps(req, 2048, 10)
    bs.tracked_requests.remove(req)


def test_bdrv_round_to_clusters(ctx):
    bs = new_bs(ctx, new_drv(MemDriver))
    csn, cnb = [0], [0]
    io.bdrv_round_to_clusters(bs, 3, 2, csn, cnb)
    assert (csn[0], cnb[0]) == (3, 2)               # no cluster size
    assert io.bdrv_get_cluster_size(bs) == 512      # request_alignment
    bs.opaque.cluster_size = 4096
    io.bdrv_round_to_clusters(bs, 3, 7, csn, cnb)
    assert (csn[0], cnb[0]) == (0, 16)
    assert io.bdrv_get_cluster_size(bs) == 4096


def test_wait_serialising_requests_waiting_for(ctx):
    """A request that already waits for someone is not waited for (the
    deadlock rule), while one that does not is."""
    bs = new_bs(ctx, new_drv(MemDriver))
    other, blocker, me = (BdrvTrackedRequest() for _ in range(3))
    log = []

    def body(_):
        io.tracked_request_begin(other, bs, 0, 4096, BDRV_TRACKED_READ)
        io.mark_request_serialising(other, 4096)
        other.co = None                     # owned by another coroutine
        io.tracked_request_begin(me, bs, 0, 512, BDRV_TRACKED_READ)
        other.waiting_for = blocker         # other waits (for someone)
        log.append(io.wait_serialising_requests(me))
        other.waiting_for = None
        log.append("before wait")
        log.append(io.wait_serialising_requests(me))
        log.append("after wait")

    co = qemu_coroutine_create(body)
    qemu_coroutine_enter(co, None)
    assert log == [False, "before wait"]        # now waits for other
    assert me.waiting_for is other
    run_co(ctx, io.tracked_request_end, other)  # wakes me
    assert log == [False, "before wait", True, "after wait"]
    assert me.waiting_for is None
    run_co(ctx, io.tracked_request_end, me)


def test_wait_serialising_requests_rmw(ctx):
    """Two unaligned writes into one 4k block: the second read-modify-write
    waits for the first one, so that neither update is lost; the first does
    not wait for the second (which waits for it) in its tail RMW."""
    drv = new_drv(MemDriver)
    bs = new_bs(ctx, drv, alignment=4096, data=pattern(32 * SECTOR))
    bs.opaque.async_io = True
    done = []
    q1 = make_qiov(b"\x11" * SECTOR)
    q2 = make_qiov(b"\x22" * SECTOR)
    io.bdrv_aio_writev(bs, 1, q1, 1, lambda o, r: done.append((o, r)), "w1")
    io.bdrv_aio_writev(bs, 2, q2, 1, lambda o, r: done.append((o, r)), "w2")
    while len(done) < 2:
        aio_poll(ctx, True)
    assert done == [("w1", 0), ("w2", 0)]
    assert bs.opaque.log == [("read", 0, 8), ("read", 0, 8), ("write", 0, 8),
                             ("read", 0, 8), ("read", 0, 8), ("write", 0, 8)]
    expect = bytearray(pattern(32 * SECTOR))
    expect[512:1024] = b"\x11" * SECTOR
    expect[1024:1536] = b"\x22" * SECTOR
    assert bs.opaque.data == expect
    assert bs.serialising_in_flight == 0 and not bs.tracked_requests


# --- request checks and synchronous wrappers ---------------------------------

def test_bdrv_check_byte_request(ctx):
    bs = new_bs(ctx, new_drv(MemDriver))
    assert io.bdrv_check_byte_request(bs, 0, 512) == 0
    assert io.bdrv_check_byte_request(bs, -1, 512) == -errno.EIO
    assert io.bdrv_check_byte_request(
        bs, 0, (io.BDRV_REQUEST_MAX_SECTORS << 9) + 1) == -errno.EIO
    assert io.bdrv_check_request(bs, 0, -1) == -errno.EIO
    assert io.bdrv_check_request(bs, -1, 1) == -errno.EIO
    bs.drv = None
    assert io.bdrv_check_byte_request(bs, 0, 512) == -errno.ENOMEDIUM


def test_bdrv_read_write(ctx):
    bs = new_bs(ctx, new_drv(MemDriver))
    data = bytearray(pattern(3 * SECTOR))
    assert io.bdrv_write(bs, 4, data, 3) == 0
    out = bytearray(3 * SECTOR)
    assert io.bdrv_read(bs, 4, out, 3) == 0
    assert out == data
    assert bs.opaque.log == [("write", 4, 3), ("read", 4, 3)]
    assert io.bdrv_read(bs, 0, out, -1) == -errno.EINVAL
    assert bs.wr_highest_offset == 7 * SECTOR


def test_bdrv_prwv_co_in_coroutine(ctx):
    """From a coroutine the synchronous wrappers call straight through."""
    bs = new_bs(ctx, new_drv(MemDriver))
    bs.opaque.async_io = True
    out = bytearray(SECTOR)

    def body():
        assert qemu_in_coroutine()
        return io.bdrv_pwrite(bs, 0, b"x" * SECTOR, SECTOR), \
            io.bdrv_pread(bs, 0, out, SECTOR)
    assert run_co(ctx, body) == (SECTOR, SECTOR)
    assert out == b"x" * SECTOR


def test_bdrv_pread_pwrite(ctx):
    bs = new_bs(ctx, new_drv(MemDriver))
    assert io.bdrv_pwrite(bs, 100, b"hello", 5) == 5
    out = bytearray(5)
    assert io.bdrv_pread(bs, 100, out, 5) == 5
    assert out == b"hello"
    # sector-aligned driver requests; the write reads its block for the
    # head and again for the tail
    assert bs.opaque.log == [("read", 0, 1), ("read", 0, 1), ("write", 0, 1),
                             ("read", 0, 1)]
    assert io.bdrv_pread(bs, 0, out, -1) == -errno.EINVAL
    assert io.bdrv_pwrite(bs, 0, out, -1) == -errno.EINVAL
    qiov = make_qiov(b"ab")
    assert io.bdrv_pwritev(bs, 0, qiov) == 2


def test_bdrv_pwrite_sync(ctx):
    drv = new_drv(FlushDriver)
    bs = new_bs(ctx, drv)
    assert io.bdrv_pwrite_sync(bs, 0, b"z" * SECTOR, SECTOR) == 0
    assert bs.opaque.log == [("write", 0, 1), ("flush_to_os",),
                             ("flush_to_disk",)]


def test_bdrv_co_do_preadv_errors(ctx):
    bs = new_bs(ctx, new_drv(MemDriver))
    bs.drv = None
    assert io.bdrv_read(bs, 0, bytearray(SECTOR), 1) == -errno.ENOMEDIUM
    assert io.bdrv_write(bs, 0, bytearray(SECTOR), 1) == -errno.ENOMEDIUM


def test_bdrv_co_do_pwritev_read_only(ctx):
    bs = new_bs(ctx, new_drv(MemDriver))
    bs.read_only = True
    assert io.bdrv_write(bs, 0, bytearray(SECTOR), 1) == -errno.EPERM
    assert bs.opaque.log == []


def test_bdrv_co_do_preadv_unaligned(ctx):
    """Reads are padded to request_alignment with head and tail buffers."""
    data = pattern(32 * SECTOR)
    bs = new_bs(ctx, new_drv(MemDriver), alignment=4096, data=data)
    out = bytearray(4900)
    assert io.bdrv_pread(bs, 100, out, 4900) == 4900
    assert out == data[100:5000]
    assert bs.opaque.log == [("read", 0, 16)]
    assert not bs.tracked_requests


def test_bdrv_co_do_pwritev_rmw(ctx):
    """An unaligned write reads head and tail blocks, then writes it all."""
    data = pattern(32 * SECTOR)
    bs = new_bs(ctx, new_drv(MemDriver), alignment=4096, data=data)
    assert io.bdrv_pwrite(bs, 4000, b"\xee" * 200, 200) == 200
    expect = bytearray(data)
    expect[4000:4200] = b"\xee" * 200
    assert bs.opaque.data == expect
    assert bs.opaque.log == [("read", 0, 8), ("read", 8, 8), ("write", 0, 16)]
    assert bs.opaque.events == [
        BLKDBG_PWRITEV_RMW_HEAD, BLKDBG_PWRITEV_RMW_AFTER_HEAD,
        BLKDBG_PWRITEV_RMW_TAIL, BLKDBG_PWRITEV_RMW_AFTER_TAIL,
        BLKDBG_PWRITEV, BLKDBG_PWRITEV_DONE]
    assert bs.serialising_in_flight == 0
    assert bs.wr_highest_offset == 8192


def test_bdrv_aligned_preadv_zero_beyond_eof(ctx):
    bs = new_bs(ctx, new_drv(MemDriver), sectors=3,
                data=b"\xff" * (8 * SECTOR))
    bs.zero_beyond_eof = True
    out = bytearray(b"\x55" * 8 * SECTOR)
    assert io.bdrv_read(bs, 0, out, 8) == 0
    assert out == b"\xff" * (3 * SECTOR) + bytes(5 * SECTOR)
    assert bs.opaque.log == [("read", 0, 3)]
    # entirely past the end: no driver call
    bs.opaque.log.clear()
    assert io.bdrv_read(bs, 4, out, 2) == 0
    assert bs.opaque.log == []
    assert out[:2 * SECTOR] == bytes(2 * SECTOR)
    # without zero_beyond_eof the driver gets the whole request
    bs.zero_beyond_eof = False
    assert io.bdrv_read(bs, 0, out, 8) == 0
    assert bs.opaque.log == [("read", 0, 8)]
    assert out == b"\xff" * (8 * SECTOR)


def test_bdrv_aligned_preadv_zero_beyond_eof_aligned(ctx):
    """With a 4k alignment the driver reads whole blocks up to EOF."""
    bs = new_bs(ctx, new_drv(MemDriver), sectors=3, alignment=4096,
                data=b"\xff" * (16 * SECTOR))
    bs.zero_beyond_eof = True
    out = bytearray(16 * SECTOR)
    assert io.bdrv_read(bs, 0, out, 16) == 0
    assert bs.opaque.log == [("read", 0, 8)]
    assert out == b"\xff" * (3 * SECTOR) + bytes(13 * SECTOR)


# --- copy-on-read ---------------------------------------------------------------

def make_chain(ctx, base_data, top_drv_cls=BackedDriver, sectors=32):
    base = new_bs(ctx, new_drv(MemDriver), sectors=sectors, data=base_data)
    top = new_bs(ctx, new_drv(top_drv_cls), sectors=sectors)
    attach(top, base, "backing")
    top.opaque.cluster_size = 4096
    return top, base


def test_bdrv_co_do_copy_on_readv(ctx):
    base_data = pattern(32 * SECTOR)
    top, base = make_chain(ctx, base_data)
    io.bdrv_enable_copy_on_read(top)
    out = bytearray(SECTOR)
    assert io.bdrv_read(top, 3, out, 1) == 0
    assert out == base_data[3 * SECTOR:4 * SECTOR]
    # the whole cluster is read and written back into top
    assert top.opaque.log == [("read", 0, 8), ("write", 0, 8)]
    assert top.opaque.alloc == set(range(8))
    assert top.opaque.data[:4096] == base_data[:4096]
    # now allocated: a plain read
    top.opaque.log.clear()
    assert io.bdrv_read(top, 3, out, 1) == 0
    assert top.opaque.log == [("read", 3, 1)]
    assert top.serialising_in_flight == 0


def test_bdrv_co_do_copy_on_readv_zero(ctx):
    """A cluster that reads as zeroes is copied with write_zeroes."""
    top, base = make_chain(ctx, bytes(32 * SECTOR))
    io.bdrv_enable_copy_on_read(top)
    out = bytearray(b"\x01" * 2 * SECTOR)
    assert io.bdrv_read(top, 9, out, 2) == 0
    assert out == bytes(2 * SECTOR)
    assert top.opaque.log == [("read", 8, 8), ("write_zeroes", 8, 8, 0)]


def test_bdrv_co_copy_on_readv(ctx):
    base_data = pattern(32 * SECTOR)
    top, base = make_chain(ctx, base_data)
    out = bytearray(SECTOR)
    qiov = make_qiov(out)
    assert run_co(ctx, io.bdrv_co_copy_on_readv, top, 17, 1, qiov) == 0
    assert top.opaque.log == [("read", 16, 8), ("write", 16, 8)]
    assert out == base_data[17 * SECTOR:18 * SECTOR]


def test_bdrv_co_readv_no_serialising(ctx):
    top, base = make_chain(ctx, pattern(32 * SECTOR))
    io.bdrv_enable_copy_on_read(top)
    qiov = make_qiov(bytearray(SECTOR))
    assert run_co(ctx, io.bdrv_co_readv_no_serialising, top, 3, 1, qiov) == 0
    assert top.opaque.log == [("read", 3, 1)]       # no copy-on-read


# --- writes --------------------------------------------------------------------

class FlagsDriver(MemDriver):
    supported_write_flags = BDRV_REQ_FUA

    def bdrv_co_writev_flags(self, bs, sector_num, nb_sectors, qiov, flags):
        bs.opaque.log.append(("writev_flags", sector_num, nb_sectors, flags))
        self._store(bs, sector_num, nb_sectors, qiov)
        return 0

    def bdrv_co_flush_to_disk(self, bs):
        bs.opaque.log.append(("flush_to_disk",))
        return 0


class FlushDriver(MemDriver):
    flush_ret = 0

    def bdrv_co_flush_to_os(self, bs):
        bs.opaque.log.append(("flush_to_os",))
        return 0

    def bdrv_co_flush_to_disk(self, bs):
        bs.opaque.log.append(("flush_to_disk",))
        return self.flush_ret


def test_bdrv_driver_pwritev_fua(ctx):
    """FUA the driver cannot do becomes a flush after the write.  As in
    QEMU 2.7 the write is counted (write_gen) only after that flush, so the
    flush goes to disk only for what earlier writes left."""
    bs = new_bs(ctx, new_drv(FlushDriver))
    qiov = make_qiov(pattern(SECTOR))
    assert run_co(ctx, io.bdrv_co_do_pwritev, bs, 0, SECTOR, qiov,
                  BDRV_REQ_FUA) == 0
    assert bs.opaque.log == [("write", 0, 1), ("flush_to_os",)]
    assert bs.write_gen == 1 and bs.flushed_gen == 0
    bs.opaque.log.clear()
    assert run_co(ctx, io.bdrv_co_do_pwritev, bs, 0, SECTOR, qiov,
                  BDRV_REQ_FUA) == 0
    assert bs.opaque.log == [("write", 0, 1), ("flush_to_os",),
                             ("flush_to_disk",)]
    assert bs.write_gen == 2 and bs.flushed_gen == 1
    # a failing flush fails the write
    bs.drv.flush_ret = -errno.EIO
    assert run_co(ctx, io.bdrv_co_do_pwritev, bs, 0, SECTOR, qiov,
                  BDRV_REQ_FUA) == -errno.EIO


def test_bdrv_driver_pwritev_flags(ctx):
    bs = new_bs(ctx, new_drv(FlagsDriver))
    qiov = make_qiov(pattern(SECTOR))
    assert run_co(ctx, io.bdrv_co_do_pwritev, bs, 0, SECTOR, qiov,
                  BDRV_REQ_FUA) == 0
    assert bs.opaque.log == [("writev_flags", 0, 1, BDRV_REQ_FUA)]


def test_bdrv_driver_pwritev_unsupported_flags(ctx):
    drv = new_drv(MemDriver)
    drv.supported_write_flags = BDRV_REQ_FUA    # without writev_flags
    bs = new_bs(ctx, drv)
    with pytest.raises(AssertionError):
        io.bdrv_write(bs, 0, bytearray(SECTOR), 1)


def test_bdrv_aligned_pwritev_detect_zeroes(ctx):
    bs = new_bs(ctx, new_drv(ZeroDriver), data=b"\x01" * (32 * SECTOR))
    bs.detect_zeroes = BLOCKDEV_DETECT_ZEROES_OPTIONS_ON
    assert io.bdrv_write(bs, 2, bytes(2 * SECTOR), 2) == 0
    bs.detect_zeroes = BLOCKDEV_DETECT_ZEROES_OPTIONS_UNMAP
    assert io.bdrv_write(bs, 6, bytes(SECTOR), 1) == 0
    assert io.bdrv_write(bs, 8, b"\x02" * SECTOR, 1) == 0
    assert bs.opaque.log == [
        ("write_zeroes", 2, 2, BDRV_REQ_ZERO_WRITE),
        ("write_zeroes", 6, 1, BDRV_REQ_ZERO_WRITE | BDRV_REQ_MAY_UNMAP),
        ("write", 8, 1)]
    assert bs.opaque.data[2 * SECTOR:4 * SECTOR] == bytes(2 * SECTOR)
    # without a write_zeroes callback detection is off
    bs2 = new_bs(ctx, new_drv(MemDriver))
    bs2.detect_zeroes = BLOCKDEV_DETECT_ZEROES_OPTIONS_ON
    assert io.bdrv_write(bs2, 0, bytes(SECTOR), 1) == 0
    assert bs2.opaque.log == [("write", 0, 1)]


def test_bdrv_aligned_pwritev_bookkeeping(ctx):
    """wr_highest_offset, total_sectors growth and dirty bitmaps."""
    bs = new_bs(ctx, new_drv(MemDriver), sectors=4)
    bitmap = core.bdrv_create_dirty_bitmap(bs, 512, None, None)
    assert io.bdrv_write(bs, 2, bytearray(SECTOR), 1) == 0
    assert bs.wr_highest_offset == 3 * SECTOR
    assert core.bdrv_get_dirty(bs, bitmap, 2)
    assert not core.bdrv_get_dirty(bs, bitmap, 1)
    # the driver grows the image: a request past the end is allowed
    assert io.bdrv_write(bs, 6, bytearray(2 * SECTOR), 2) == 0
    assert bs.total_sectors == 8
    core.bdrv_release_dirty_bitmap(bs, bitmap)


def test_bdrv_add_before_write_notifier(ctx):
    bs = new_bs(ctx, new_drv(MemDriver))
    seen = []

    def notify(notifier, req):
        seen.append((req.offset, req.bytes))
        return -errno.EIO

    io.bdrv_add_before_write_notifier(bs, NotifierWithReturn(notify))
    assert io.bdrv_write(bs, 1, bytearray(SECTOR), 1) == -errno.EIO
    assert seen == [(512, 512)]
    assert bs.opaque.log == []                  # the driver never saw it
    assert bs.opaque.events == [BLKDBG_PWRITEV_DONE]


def test_bdrv_co_do_write_zeroes_split(ctx):
    """Write zeroes splits at write_zeroes_alignment and max_write_zeroes."""
    bs = new_bs(ctx, new_drv(ZeroDriver), sectors=64)
    bs.bl.write_zeroes_alignment = 8
    bs.bl.max_write_zeroes = 16
    assert io.bdrv_write_zeroes(bs, 3, 40, 0) == 0
    assert bs.opaque.log == [
        ("write_zeroes", 3, 5, BDRV_REQ_ZERO_WRITE),
        ("write_zeroes", 8, 16, BDRV_REQ_ZERO_WRITE),
        ("write_zeroes", 24, 16, BDRV_REQ_ZERO_WRITE),
        ("write_zeroes", 40, 3, BDRV_REQ_ZERO_WRITE)]


def test_bdrv_co_do_write_zeroes_split_crossing_head(ctx):
    """A request shorter than the alignment that crosses an alignment
    boundary is split there (QEMU 2.7; the seed left it whole)."""
    bs = new_bs(ctx, new_drv(ZeroDriver))
    bs.bl.write_zeroes_alignment = 8
    assert io.bdrv_write_zeroes(bs, 6, 4, 0) == 0
    assert io.bdrv_write_zeroes(bs, 16, 4, 0) == 0
    assert bs.opaque.log == [
        ("write_zeroes", 6, 2, BDRV_REQ_ZERO_WRITE),
        ("write_zeroes", 8, 2, BDRV_REQ_ZERO_WRITE),
        ("write_zeroes", 16, 4, BDRV_REQ_ZERO_WRITE)]


def test_bdrv_co_do_write_zeroes_bounce(ctx):
    """Without efficient write zeroes: zeroed bounce buffers, split by
    max_transfer_length."""
    drv = new_drv(ZeroDriver)
    drv.zero_ret = -errno.ENOTSUP
    bs = new_bs(ctx, drv, data=b"\x01" * (32 * SECTOR))
    bs.bl.max_transfer_length = 4
    assert io.bdrv_write_zeroes(bs, 0, 10, 0) == 0
    assert bs.opaque.log == [
        ("write_zeroes", 0, 10, BDRV_REQ_ZERO_WRITE), ("write", 0, 4),
        ("write_zeroes", 4, 6, BDRV_REQ_ZERO_WRITE), ("write", 4, 4),
        ("write_zeroes", 8, 2, BDRV_REQ_ZERO_WRITE), ("write", 8, 2)]
    assert bs.opaque.data[:10 * SECTOR] == bytes(10 * SECTOR)
    assert bs.opaque.data[10 * SECTOR:] == b"\x01" * (22 * SECTOR)
    # a driver without write_zeroes at all
    bs2 = new_bs(ctx, new_drv(MemDriver), data=b"\x01" * (32 * SECTOR))
    assert io.bdrv_write_zeroes(bs2, 1, 2, 0) == 0
    assert bs2.opaque.log == [("write", 1, 2)]
    assert bs2.opaque.data[:4 * SECTOR] == (b"\x01" * SECTOR +
                                            bytes(2 * SECTOR) +
                                            b"\x01" * SECTOR)


def test_bdrv_co_write_zeroes_may_unmap(ctx):
    """BDRV_REQ_MAY_UNMAP only reaches the driver with BDRV_O_UNMAP."""
    bs = new_bs(ctx, new_drv(ZeroDriver))
    assert run_co(ctx, io.bdrv_co_write_zeroes, bs, 0, 1,
                  BDRV_REQ_MAY_UNMAP) == 0
    bs.open_flags |= BDRV_O_UNMAP
    assert run_co(ctx, io.bdrv_co_write_zeroes, bs, 1, 1,
                  BDRV_REQ_MAY_UNMAP) == 0
    assert bs.opaque.log == [
        ("write_zeroes", 0, 1, BDRV_REQ_ZERO_WRITE),
        ("write_zeroes", 1, 1, BDRV_REQ_ZERO_WRITE | BDRV_REQ_MAY_UNMAP)]


def test_bdrv_co_do_zero_pwritev(ctx):
    """Unaligned write zeroes: RMW of head and tail blocks with zeroes, and
    write_zeroes for the aligned middle."""
    data = pattern(32 * SECTOR)
    bs = new_bs(ctx, new_drv(ZeroDriver), alignment=4096, data=data)
    assert run_co(ctx, io.bdrv_co_write_zeroes, bs, 1, 17, 0) == 0
    assert bs.opaque.log == [
        ("read", 0, 8), ("write", 0, 8),
        ("write_zeroes", 8, 8, BDRV_REQ_ZERO_WRITE),
        ("read", 16, 8), ("write", 16, 8)]
    expect = bytearray(data)
    expect[SECTOR:18 * SECTOR] = bytes(17 * SECTOR)
    assert bs.opaque.data == expect
    assert bs.opaque.events == [
        BLKDBG_PWRITEV_RMW_HEAD, BLKDBG_PWRITEV_RMW_AFTER_HEAD,
        BLKDBG_PWRITEV, BLKDBG_PWRITEV_DONE,
        BLKDBG_PWRITEV_ZERO, BLKDBG_PWRITEV_DONE,
        BLKDBG_PWRITEV_RMW_TAIL, BLKDBG_PWRITEV_RMW_AFTER_TAIL,
        BLKDBG_PWRITEV, BLKDBG_PWRITEV_DONE]


def test_bdrv_co_do_zero_pwritev_zero_padding(ctx):
    """A padded head or tail block that is all zeroes after the write stays
    a zero write (7.2's qcow2 makes a zero cluster of it); one with data
    around the zeroed bytes is written as data."""
    data = bytearray(32 * SECTOR)
    data[20 * SECTOR:24 * SECTOR] = b"\x07" * (4 * SECTOR)
    bs = new_bs(ctx, new_drv(ZeroDriver), alignment=4096, data=data)
    bs.open_flags |= BDRV_O_UNMAP
    assert run_co(ctx, io.bdrv_co_write_zeroes, bs, 1, 2,
                  BDRV_REQ_MAY_UNMAP) == 0
    assert run_co(ctx, io.bdrv_co_write_zeroes, bs, 17, 2, 0) == 0
    assert bs.opaque.log == [
        ("read", 0, 8),
        ("write_zeroes", 0, 8, BDRV_REQ_ZERO_WRITE | BDRV_REQ_MAY_UNMAP),
        ("read", 16, 8), ("write", 16, 8)]
    data[17 * SECTOR:19 * SECTOR] = bytes(2 * SECTOR)
    assert bs.opaque.data == data


def test_bdrv_co_do_zero_pwritev_aligned(ctx):
    bs = new_bs(ctx, new_drv(ZeroDriver), alignment=4096,
                data=pattern(32 * SECTOR))
    assert run_co(ctx, io.bdrv_co_write_zeroes, bs, 8, 16, 0) == 0
    assert bs.opaque.log == [("write_zeroes", 8, 16, BDRV_REQ_ZERO_WRITE)]


def test_bdrv_make_zero(ctx):
    bs = new_bs(ctx, new_drv(StatusZeroDriver), sectors=32)
    bs.opaque.data[8 * SECTOR:12 * SECTOR] = b"\x09" * (4 * SECTOR)
    assert io.bdrv_make_zero(bs, BDRV_REQ_MAY_UNMAP) == 0
    assert [e for e in bs.opaque.log if e[0] == "write_zeroes"] == [
        ("write_zeroes", 8, 4, BDRV_REQ_ZERO_WRITE | BDRV_REQ_MAY_UNMAP)]
    assert bs.opaque.data == bytes(32 * SECTOR)


def test_bdrv_make_zero_error(ctx, capsys):
    drv = new_drv(StatusZeroDriver)
    drv.status_ret = -errno.EIO
    bs = new_bs(ctx, drv)
    assert io.bdrv_make_zero(bs, 0) == -errno.EIO
    assert "error getting block status at sector 0" in capsys.readouterr().err


# --- block status ---------------------------------------------------------------

class StatusZeroDriver(ZeroDriver):
    """A protocol reporting zero runs as BDRV_BLOCK_ZERO."""
    protocol_name = "test-zero"
    status_ret = 0

    def bdrv_co_get_block_status(self, bs, sector_num, nb_sectors, pnum,
                                 file):
        if self.status_ret:
            return self.status_ret
        data = bs.opaque.data

        def is_zero(sec):
            return not any(data[sec * SECTOR:(sec + 1) * SECTOR])
        state = is_zero(sector_num)
        n = 1
        while n < nb_sectors and is_zero(sector_num + n) == state:
            n += 1
        pnum[0] = n
        file[0] = bs
        ret = BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID | (sector_num * 512)
        return ret | (BDRV_BLOCK_ZERO if state else 0)


class RawLikeDriver(MemDriver):
    """Answers every status query with BDRV_BLOCK_RAW, as raw does."""
    def bdrv_co_get_block_status(self, bs, sector_num, nb_sectors, pnum,
                                 file):
        pnum[0] = nb_sectors
        file[0] = bs.file.bs
        return (BDRV_BLOCK_RAW | BDRV_BLOCK_OFFSET_VALID |
                (sector_num * SECTOR))


class MappedDriver(MemDriver):
    """A format whose sectors are at offset + 4 sectors in bs->file."""
    def bdrv_co_get_block_status(self, bs, sector_num, nb_sectors, pnum,
                                 file):
        pnum[0] = nb_sectors
        file[0] = bs.file.bs
        return (BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID |
                ((sector_num + 4) * SECTOR))


def block_status(bs, sector_num, nb_sectors):
    pnum, file = [0], [None]
    ret = io.bdrv_get_block_status(bs, sector_num, nb_sectors, pnum, file)
    return ret, pnum[0], file[0]


def test_bdrv_co_get_block_status_no_callback(ctx):
    drv = new_drv(MemDriver)
    bs = new_bs(ctx, drv, sectors=10)
    assert block_status(bs, 2, 4)[:2] == (BDRV_BLOCK_DATA |
                                          BDRV_BLOCK_ALLOCATED, 4)
    assert block_status(bs, 8, 4)[1] == 2           # clamped at the end
    assert block_status(bs, 10, 4)[:2] == (0, 0)    # past the end
    drv.protocol_name = "test"
    assert block_status(bs, 2, 4)[:2] == (
        BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED | BDRV_BLOCK_OFFSET_VALID |
        2 * SECTOR, 4)
    bs.drv = None
    assert block_status(bs, 0, 1)[0] == -errno.ENOMEDIUM


def test_bdrv_co_get_block_status_raw(ctx):
    """BDRV_BLOCK_RAW passes the question to bs->file."""
    proto = new_bs(ctx, new_drv(StatusZeroDriver), sectors=16)
    proto.opaque.data[4 * SECTOR:6 * SECTOR] = b"\x01" * (2 * SECTOR)
    raw = new_bs(ctx, new_drv(RawLikeDriver), sectors=16)
    attach(raw, proto, "file")
    ret, pnum, file = block_status(raw, 0, 16)
    assert (ret & ~0x1ff, pnum, file) == (0, 4, proto)
    assert ret & BDRV_BLOCK_ZERO and ret & BDRV_BLOCK_ALLOCATED
    ret, pnum, file = block_status(raw, 4, 12)
    assert pnum == 2 and not ret & BDRV_BLOCK_ZERO
    assert ret & ~0x1ff == 4 * SECTOR


def test_bdrv_co_get_block_status_refined_by_protocol(ctx):
    """DATA at an offset in bs->file: the protocol limits pnum and adds
    ZERO; an offset past the protocol's end reads as zeroes."""
    proto = new_bs(ctx, new_drv(StatusZeroDriver), sectors=16)
    proto.opaque.data[8 * SECTOR:10 * SECTOR] = b"\x01" * (2 * SECTOR)
    fmt = new_bs(ctx, new_drv(MappedDriver), sectors=16)
    attach(fmt, proto, "file")
    ret, pnum, file = block_status(fmt, 0, 16)
    assert pnum == 4 and ret & BDRV_BLOCK_ZERO and file is proto
    assert ret & BDRV_BLOCK_ALLOCATED and ret & ~0x1ff == 4 * SECTOR
    ret, pnum, file = block_status(fmt, 4, 12)
    assert pnum == 2 and not ret & BDRV_BLOCK_ZERO
    ret, pnum, file = block_status(fmt, 12, 4)      # file offset 16: EOF
    assert pnum == 4 and ret & BDRV_BLOCK_ZERO


def test_bdrv_co_get_block_status_unallocated(ctx):
    """Unallocated past the end of a shorter backing file reads as zero;
    a driver reporting unallocated_blocks_are_zero also makes it zero."""
    top, base = make_chain(ctx, pattern(32 * SECTOR))
    base.total_sectors = 8
    pnum, file = [0], [None]
    ret = run_co(ctx, io.bdrv_co_get_block_status, top, 0, 32, pnum, file)
    assert (ret, pnum[0]) == (0, 32)
    ret = run_co(ctx, io.bdrv_co_get_block_status, top, 8, 32, pnum, file)
    assert (ret, pnum[0]) == (BDRV_BLOCK_ZERO, 24)

    class ZeroInfoDriver(BackedDriver):
        def bdrv_get_info(self, bs, bdi):
            bdi.unallocated_blocks_are_zero = True
            return 0
    lone = new_bs(ctx, new_drv(ZeroInfoDriver), sectors=8)
    assert block_status(lone, 0, 8)[:2] == (BDRV_BLOCK_ZERO, 8)


def test_bdrv_get_block_status_above(ctx):
    """Through a chain top -> mid -> base, the first allocating layer
    answers; unallocated layers shorten the range."""
    base = new_bs(ctx, new_drv(BackedDriver), sectors=32)
    mid = new_bs(ctx, new_drv(BackedDriver), sectors=32)
    top = new_bs(ctx, new_drv(BackedDriver), sectors=32)
    attach(mid, base, "backing")
    attach(top, mid, "backing")
    top.opaque.alloc.update(range(0, 4))
    mid.opaque.alloc.update(range(8, 12))
    base.opaque.alloc.update(range(16, 32))

    def above(bs, b, s, n):
        pnum, file = [0], [None]
        ret = io.bdrv_get_block_status_above(bs, b, s, n, pnum, file)
        return ret, pnum[0]
    assert above(top, None, 0, 32) == (BDRV_BLOCK_DATA |
                                       BDRV_BLOCK_ALLOCATED, 4)
    assert above(top, None, 8, 24) == (BDRV_BLOCK_DATA |
                                       BDRV_BLOCK_ALLOCATED, 4)
    assert above(top, None, 4, 28) == (0, 4)        # cut by mid's data
    assert above(top, None, 16, 16) == (BDRV_BLOCK_DATA |
                                        BDRV_BLOCK_ALLOCATED, 16)
    assert above(top, mid, 16, 16) == (0, 16)       # base not asked
    assert block_status(top, 8, 4)[:2] == (0, 4)    # top only

    pnum = [0]
    assert io.bdrv_is_allocated(top, 0, 8, pnum) == 1 and pnum[0] == 4
    assert io.bdrv_is_allocated(top, 4, 8, pnum) == 0 and pnum[0] == 8
    assert io.bdrv_is_allocated_above(top, base, 4, 8, pnum) == 0
    assert pnum[0] == 4                             # mid has data at 8
    assert io.bdrv_is_allocated_above(top, base, 8, 8, pnum) == 1
    assert pnum[0] == 4
    assert io.bdrv_is_allocated_above(top, None, 16, 8, pnum) == 1
    assert io.bdrv_is_allocated_above(top, base, 16, 8, pnum) == 0
    assert pnum[0] == 8


# --- compressed, vmstate ---------------------------------------------------------

class VmDriver(MemDriver):
    def bdrv_write_compressed(self, bs, sector_num, buf, nb_sectors):
        bs.opaque.log.append(("compressed", sector_num, bytes(buf)))
        return 0

    def bdrv_save_vmstate(self, bs, qiov, pos):
        buf = bytearray(qiov.size)
        qemu_iovec_to_buf(qiov, 0, buf, qiov.size)
        bs.opaque.log.append(("save_vmstate", pos, bytes(buf)))
        return qiov.size

    def bdrv_load_vmstate(self, bs, buf, pos, size):
        buf[:size] = b"v" * size
        bs.opaque.log.append(("load_vmstate", pos, size))
        return size


def test_bdrv_write_compressed(ctx):
    bs = new_bs(ctx, new_drv(MemDriver))
    assert io.bdrv_write_compressed(bs, 0, b"x" * SECTOR, 1) == -errno.ENOTSUP
    bs = new_bs(ctx, new_drv(VmDriver))
    assert io.bdrv_write_compressed(bs, 1, b"x" * SECTOR, 1) == 0
    assert bs.opaque.log == [("compressed", 1, b"x" * SECTOR)]
    assert io.bdrv_write_compressed(bs, -1, b"x" * SECTOR, 1) == -errno.EIO
    bs.drv = None
    assert io.bdrv_write_compressed(bs, 1, b"", 0) == -errno.ENOMEDIUM


def test_bdrv_save_load_vmstate(ctx):
    proto = new_bs(ctx, new_drv(VmDriver))
    fmt = new_bs(ctx, new_drv(MemDriver))
    attach(fmt, proto, "file")
    assert io.bdrv_save_vmstate(fmt, b"state", 10, 5) == 5
    buf = bytearray(4)
    assert io.bdrv_load_vmstate(fmt, buf, 3, 4) == 4
    assert buf == b"vvvv"
    assert proto.opaque.log == [("save_vmstate", 10, b"state"),
                                ("load_vmstate", 3, 4)]
    lone = new_bs(ctx, new_drv(MemDriver))
    assert io.bdrv_save_vmstate(lone, b"s", 0, 1) == -errno.ENOTSUP
    assert io.bdrv_load_vmstate(lone, buf, 0, 1) == -errno.ENOTSUP


# --- AIO -----------------------------------------------------------------------

def test_bdrv_co_aio_rw_vector_completes_from_bh(ctx):
    """Even a request done before submission returns calls back from a BH."""
    bs = new_bs(ctx, new_drv(MemDriver), data=pattern(32 * SECTOR))
    out = bytearray(SECTOR)
    done = []
    acb = io.bdrv_aio_readv(bs, 2, make_qiov(out), 1,
                            lambda o, r: done.append((o, r)), "op")
    assert done == [] and acb.refcnt == 1
    aio_poll(ctx, True)
    assert done == [("op", 0)] and acb.refcnt == 0
    assert out == pattern(32 * SECTOR)[2 * SECTOR:3 * SECTOR]


def test_bdrv_co_aio_rw_vector_async(ctx):
    """A request that yields calls back directly when it completes."""
    bs = new_bs(ctx, new_drv(MemDriver))
    bs.opaque.async_io = True
    done = []
    io.bdrv_aio_writev(bs, 0, make_qiov(b"a" * SECTOR), 1,
                       lambda o, r: done.append(r), None)
    io.bdrv_aio_write_zeroes(bs, 1, 1, 0, lambda o, r: done.append(r), None)
    io.bdrv_aio_discard(bs, 0, 1, lambda o, r: done.append(r), None)
    io.bdrv_aio_flush(bs, lambda o, r: done.append(r), None)
    assert done == []       # discard and flush completed, but call back later
    while len(done) < 4:
        aio_poll(ctx, True)
    assert done == [0, 0, 0, 0]
    assert bs.opaque.log == [("write", 0, 1), ("write", 1, 1)]


def test_bdrv_aio_multiwrite(ctx):
    bs = new_bs(ctx, new_drv(MemDriver), sectors=16)
    done = []

    def cb(opaque, ret):
        done.append((opaque, ret))
    reqs = [BlockRequest(8, 2, 0, make_qiov(b"c" * 2 * SECTOR), cb, "c"),
            BlockRequest(0, 8, 0, make_qiov(b"a" * 8 * SECTOR), cb, "a"),
            BlockRequest(4, 2, 0, make_qiov(b"b" * 2 * SECTOR), cb, "b")]
    assert io.bdrv_aio_multiwrite(bs, reqs, 3) == 0
    while len(done) < 3:
        aio_poll(ctx, True)
    # the callbacks run in submission order, all with the merged result
    assert done == [("c", 0), ("a", 0), ("b", 0)]
    assert bs.opaque.log == [("write", 0, 10)]
    assert bs.opaque.data[:10 * SECTOR] == (b"a" * 4 * SECTOR +
                                            b"b" * 2 * SECTOR +
                                            b"a" * 2 * SECTOR +
                                            b"c" * 2 * SECTOR)


def test_multiwrite_merge_limits(ctx):
    """max_iov and max_transfer_length stop merging; gaps are not merged."""
    bs = new_bs(ctx, new_drv(MemDriver), sectors=16)
    bs.bl.max_transfer_length = 3
    mcb = io.MultiwriteCB()
    reqs = [BlockRequest(0, 2, 0, make_qiov(bytes(1024))),
            BlockRequest(2, 2, 0, make_qiov(bytes(1024))),
            BlockRequest(6, 1, 0, make_qiov(bytes(512)))]
    mcb.callbacks = [io.MultiwriteCallback(None, None) for _ in reqs]
    assert io.multiwrite_merge(bs, reqs, 3, mcb) == 3
    bs.bl.max_transfer_length = 0
    bs.bl.max_iov = 2
    assert io.multiwrite_merge(bs, reqs, 3, mcb) == 3
    bs.bl.max_iov = 1024
    assert io.multiwrite_merge(bs, reqs, 3, mcb) == 2
    assert (reqs[0].sector, reqs[0].nb_sectors) == (0, 4)
    assert mcb.callbacks[1].free_qiov is reqs[0].qiov
    assert io.multiwrite_req_compare(reqs[0], reqs[1]) == -1


def test_bdrv_aio_multiwrite_no_medium(ctx):
    bs = new_bs(ctx, new_drv(MemDriver))
    bs.drv = None
    reqs = [BlockRequest(0, 1, 0, make_qiov(bytes(512)))]
    assert io.bdrv_aio_multiwrite(bs, reqs, 1) == -1
    assert reqs[0].error == -errno.ENOMEDIUM
    assert io.bdrv_aio_multiwrite(new_bs(ctx, new_drv(MemDriver)), [], 0) == 0


class CancelACB(BlockAIOCB):
    __slots__ = ("bh",)


def test_bdrv_aio_cancel(ctx):
    """bdrv_aio_cancel polls until the cancelled request calls back."""
    bs = new_bs(ctx, new_drv(MemDriver))
    done = []

    def complete(acb):
        qemu_bh_delete(acb.bh)
        acb.cb(acb.opaque, -errno.ECANCELED)
        io.qemu_aio_unref(acb)

    def cancel_async(acb):
        acb.bh = aio_bh_new(ctx, complete, acb)
        qemu_bh_schedule(acb.bh)

    info = AIOCBInfo(CancelACB, cancel_async=cancel_async)
    acb = io.qemu_aio_get(info, bs, lambda o, r: done.append(r), None)
    io.bdrv_aio_cancel(acb)
    assert done == [-errno.ECANCELED] and acb.refcnt == 0


def test_bdrv_aio_cancel_without_cancel_async(ctx):
    """Without cancel_async the request runs to completion."""
    bs = new_bs(ctx, new_drv(MemDriver))
    bs.opaque.async_io = True
    done = []
    acb = io.bdrv_aio_readv(bs, 0, make_qiov(bytearray(SECTOR)), 1,
                            lambda o, r: done.append(r), None)
    io.bdrv_aio_cancel_async(acb)
    assert done == []
    io.bdrv_aio_cancel(acb)
    assert done == [0] and acb.refcnt == 0


class AioOnlyACB(BlockAIOCB):
    __slots__ = ("bh", "ret")


class AioOnlyDriver(BlockDriver):
    """Only AIO callbacks; completes from a bottom half."""
    format_name = "test-aio"
    instance_type = MemState
    aiocb_info = AIOCBInfo(AioOnlyACB)

    def _submit(self, bs, cb, opaque, what, fn):
        bs.opaque.log.append(what)
        acb = io.qemu_aio_get(self.aiocb_info, bs, cb, opaque)

        def bh_cb(a):
            qemu_bh_delete(a.bh)
            a.cb(a.opaque, fn())
            io.qemu_aio_unref(a)
        acb.bh = aio_bh_new(bs.aio_context, bh_cb, acb)
        qemu_bh_schedule(acb.bh)
        return acb

    def bdrv_aio_readv(self, bs, sector_num, qiov, nb_sectors, cb, opaque):
        def fn():
            off = sector_num * SECTOR
            qemu_iovec_from_buf(qiov, 0, bs.opaque.data[off:],
                                nb_sectors * SECTOR)
            return 0
        return self._submit(bs, cb, opaque,
                            ("aio_readv", sector_num, nb_sectors), fn)

    def bdrv_aio_writev(self, bs, sector_num, qiov, nb_sectors, cb, opaque):
        def fn():
            buf = bytearray(nb_sectors * SECTOR)
            qemu_iovec_to_buf(qiov, 0, buf, len(buf))
            off = sector_num * SECTOR
            bs.opaque.data[off:off + len(buf)] = buf
            return 0
        return self._submit(bs, cb, opaque,
                            ("aio_writev", sector_num, nb_sectors), fn)

    def bdrv_aio_flush(self, bs, cb, opaque):
        return self._submit(bs, cb, opaque, ("aio_flush",), lambda: 0)

    def bdrv_aio_discard(self, bs, sector_num, nb_sectors, cb, opaque):
        return self._submit(bs, cb, opaque,
                            ("aio_discard", sector_num, nb_sectors),
                            lambda: 0)


def test_bdrv_co_io_em(ctx):
    """A driver with AIO callbacks only, under the coroutine emulation."""
    bs = new_bs(ctx, new_drv(AioOnlyDriver))
    assert io.bdrv_write(bs, 3, pattern(2 * SECTOR), 2) == 0
    out = bytearray(2 * SECTOR)
    assert io.bdrv_read(bs, 3, out, 2) == 0
    assert out == pattern(2 * SECTOR)
    assert io.bdrv_flush(bs) == 0
    assert bs.opaque.log == [("aio_writev", 3, 2), ("aio_readv", 3, 2),
                             ("aio_flush",)]


class SyncOnlyDriver(BlockDriver):
    """Only synchronous bdrv_read/bdrv_write."""
    format_name = "test-sync"
    instance_type = MemState

    def bdrv_read(self, bs, sector_num, buf, nb_sectors):
        bs.opaque.log.append(("sync_read", sector_num, nb_sectors))
        off = sector_num * SECTOR
        buf[:nb_sectors * SECTOR] = bs.opaque.data[off:off +
                                                   nb_sectors * SECTOR]
        return 0

    def bdrv_write(self, bs, sector_num, buf, nb_sectors):
        bs.opaque.log.append(("sync_write", sector_num, nb_sectors))
        off = sector_num * SECTOR
        bs.opaque.data[off:off + nb_sectors * SECTOR] = buf[:nb_sectors *
                                                            SECTOR]
        return -errno.EIO if sector_num == 31 else 0


def test_bdrv_aio_readv_em(ctx):
    """A synchronous driver under AIO and coroutine emulation."""
    bs = new_bs(ctx, new_drv(SyncOnlyDriver))
    assert io.bdrv_write(bs, 5, pattern(SECTOR), 1) == 0
    out = bytearray(SECTOR)
    assert io.bdrv_read(bs, 5, out, 1) == 0
    assert out == pattern(SECTOR)
    assert io.bdrv_write(bs, 31, pattern(SECTOR), 1) == -errno.EIO
    assert bs.opaque.log == [("sync_write", 5, 1), ("sync_read", 5, 1),
                             ("sync_write", 31, 1)]
    # the read-side AIO emulation on its own: completion from a BH
    done = []
    io.bdrv_aio_readv_em(bs, 5, make_qiov(out), 1,
                         lambda o, r: done.append(r), None)
    assert done == []
    aio_poll(ctx, True)
    assert done == [0]


# --- flush ---------------------------------------------------------------------

class DebugDriver(MemDriver):
    def bdrv_co_flush_to_disk(self, bs):
        bs.opaque.log.append(("flush_to_disk",))
        return 0


def test_bdrv_co_flush(ctx):
    """flush_to_os, then flush_to_disk unless BDRV_O_NO_FLUSH, then the
    same for bs->file; debug events go to bs->file."""
    proto = new_bs(ctx, new_drv(DebugDriver))
    fmt = new_bs(ctx, new_drv(FlushDriver))
    attach(fmt, proto, "file")
    # nothing written yet: only the flush to the OS (QEMU 2.7's write_gen)
    assert io.bdrv_flush(fmt) == 0
    assert fmt.opaque.log == [("flush_to_os",)]
    assert proto.opaque.log == []
    assert proto.opaque.events == [BLKDBG_FLUSH_TO_OS]

    # as completed writes on both layers leave them
    fmt.write_gen += 1
    proto.write_gen += 1
    fmt.opaque.log.clear()
    proto.opaque.events.clear()
    assert io.bdrv_flush(fmt) == 0
    assert fmt.opaque.log == [("flush_to_os",), ("flush_to_disk",)]
    assert proto.opaque.log == [("flush_to_disk",)]
    assert proto.opaque.events == [BLKDBG_FLUSH_TO_OS, BLKDBG_FLUSH_TO_DISK]
    assert fmt.flushed_gen == fmt.write_gen
    assert proto.flushed_gen == proto.write_gen

    fmt.opaque.log.clear()
    proto.opaque.log.clear()
    fmt.open_flags |= BDRV_O_NO_FLUSH
    proto.open_flags |= BDRV_O_NO_FLUSH
    assert io.bdrv_flush(fmt) == 0
    assert fmt.opaque.log == [("flush_to_os",)]
    assert proto.opaque.log == []

    # an error stops before the parent's file
    fmt.open_flags &= ~BDRV_O_NO_FLUSH
    fmt.write_gen += 1
    proto.write_gen += 1
    fmt.drv.flush_ret = -errno.EIO
    fmt.opaque.log.clear()
    assert io.bdrv_flush(fmt) == -errno.EIO
    assert proto.opaque.log == []
    assert not fmt.tracked_requests


class YieldingFlushDriver(FlushDriver):
    """flush_to_disk waits until the test re-enters it."""

    def bdrv_co_flush_to_disk(self, bs):
        bs.opaque.log.append(("flush_to_disk", bs.write_gen))
        bs.opaque.waiting.append(qemu_coroutine_self())
        qemu_coroutine_yield()
        return 0


def test_bdrv_co_flush_serialised(ctx):
    """QEMU 2.7: a flush waits for the running one, then skips the flush to
    disk if no write completed in between."""
    bs = new_bs(ctx, new_drv(YieldingFlushDriver))
    bs.opaque.waiting = []
    bs.write_gen = 1
    done = []
    for _ in range(2):
        qemu_coroutine_enter(qemu_coroutine_create(
            lambda _: done.append(io.bdrv_co_flush(bs))))
    assert bs.opaque.log == [("flush_to_os",), ("flush_to_disk", 1)]
    assert len(bs.opaque.waiting) == 1 and not done
    qemu_coroutine_enter(bs.opaque.waiting.pop())
    # the second flush ran after the first and found nothing new to write
    assert done == [0, 0]
    assert bs.opaque.log == [("flush_to_os",), ("flush_to_disk", 1),
                             ("flush_to_os",)]
    assert bs.flushed_gen == bs.flush_started_gen == 1
    assert not bs.tracked_requests


def test_bdrv_co_flush_skipped(ctx):
    bs = new_bs(ctx, new_drv(FlushDriver))
    bs.read_only = True
    assert io.bdrv_flush(bs) == 0
    bs.read_only = False
    bs.sg = True
    assert io.bdrv_flush(bs) == 0
    assert bs.opaque.log == []
    assert run_co(ctx, io.bdrv_co_flush, None) == 0


class AllLayersFlushDriver(FlushDriver):
    def bdrv_co_flush(self, bs):
        bs.opaque.log.append(("flush",))
        return 0


def test_bdrv_co_flush_driver_callback(ctx):
    proto = new_bs(ctx, new_drv(FlushDriver))
    fmt = new_bs(ctx, new_drv(AllLayersFlushDriver))
    attach(fmt, proto, "file")
    assert io.bdrv_flush(fmt) == 0
    assert fmt.opaque.log == [("flush",)]
    assert proto.opaque.log == []


# --- discard ---------------------------------------------------------------------

class DiscardDriver(MemDriver):
    discard_ret = 0

    def bdrv_co_discard(self, bs, sector_num, nb_sectors):
        bs.opaque.log.append(("discard", sector_num, nb_sectors))
        return self.discard_ret


def test_bdrv_co_discard(ctx):
    bs = new_bs(ctx, new_drv(DiscardDriver), sectors=64,
                flags=BDRV_O_RDWR | BDRV_O_UNMAP)
    bs.bl.discard_alignment = 8
    bs.bl.max_discard = 16
    assert io.bdrv_discard(bs, 3, 40) == 0
    assert bs.opaque.log == [("discard", 3, 5), ("discard", 8, 16),
                             ("discard", 24, 16), ("discard", 40, 3)]
    bs.opaque.log.clear()
    bs.drv.discard_ret = -errno.ENOTSUP     # ignored
    assert io.bdrv_discard(bs, 0, 20) == 0
    assert len(bs.opaque.log) == 2
    bs.drv.discard_ret = -errno.EIO         # stops at the first piece
    bs.opaque.log.clear()
    assert io.bdrv_discard(bs, 0, 20) == -errno.EIO
    assert bs.opaque.log == [("discard", 0, 16)]
    assert not bs.tracked_requests


def test_bdrv_co_discard_disabled(ctx):
    bs = new_bs(ctx, new_drv(DiscardDriver))
    assert io.bdrv_discard(bs, 0, 4) == 0           # no BDRV_O_UNMAP
    bs.open_flags |= BDRV_O_UNMAP
    bs.read_only = True
    assert io.bdrv_discard(bs, 0, 4) == -errno.EPERM
    assert io.bdrv_discard(bs, -1, 4) == -errno.EIO
    bs.drv = None
    assert io.bdrv_discard(bs, 0, 4) == -errno.ENOMEDIUM
    nodisc = new_bs(ctx, new_drv(MemDriver), flags=BDRV_O_RDWR | BDRV_O_UNMAP)
    assert io.bdrv_discard(nodisc, 0, 4) == 0
    assert bs.opaque.log == [] and nodisc.opaque.log == []


def test_bdrv_co_discard_aio(ctx):
    """Through bdrv_aio_discard, which (as in the seed) is asked for all
    remaining sectors each round."""
    bs = new_bs(ctx, new_drv(AioOnlyDriver), sectors=64,
                flags=BDRV_O_RDWR | BDRV_O_UNMAP)
    bs.bl.max_discard = 16
    assert io.bdrv_discard(bs, 0, 20) == 0
    assert bs.opaque.log == [("aio_discard", 0, 20), ("aio_discard", 16, 4)]


# --- ioctl ---------------------------------------------------------------------

class IoctlDriver(AioOnlyDriver):
    def bdrv_aio_ioctl(self, bs, req, buf, cb, opaque):
        if req == 0:
            return None
        buf[0] = req
        return self._submit(bs, cb, opaque, ("ioctl", req), lambda: 7)


def test_bdrv_ioctl(ctx):
    bs = new_bs(ctx, new_drv(MemDriver))
    assert io.bdrv_ioctl(bs, 1, bytearray(1)) == -errno.ENOTSUP
    bs = new_bs(ctx, new_drv(IoctlDriver))
    buf = bytearray(1)
    assert io.bdrv_ioctl(bs, 5, buf) == 7 and buf[0] == 5
    # no AIOCB: -ENOTSUP, delivered from a BH
    assert io.bdrv_ioctl(bs, 0, buf) == -errno.ENOTSUP
    done = []
    io.bdrv_aio_ioctl(bs, 9, buf, lambda o, r: done.append(r), None)
    while not done:
        aio_poll(ctx, True)
    assert done == [7] and buf[0] == 9
    assert not bs.tracked_requests


# --- memory ----------------------------------------------------------------------

def test_qemu_blockalign(ctx):
    bs = new_bs(ctx, new_drv(MemDriver))
    align = core.bdrv_opt_mem_align(bs)
    mem = io.qemu_blockalign(bs, 1000)
    assert len(mem) == 1000 and iov_base_address(mem) % align == 0
    assert bytes(io.qemu_blockalign0(bs, 100)) == bytes(100)
    assert bytes(io.qemu_try_blockalign0(bs, 64)) == bytes(64)
    assert len(io.qemu_try_blockalign(bs, 0)) == align


def test_bdrv_qiov_is_aligned(ctx):
    bs = new_bs(ctx, new_drv(MemDriver))
    mem = io.qemu_blockalign(bs, 4096)
    assert io.bdrv_qiov_is_aligned(bs, make_qiov(mem))
    assert not io.bdrv_qiov_is_aligned(bs, make_qiov(mem[1:513]))
    assert not io.bdrv_qiov_is_aligned(bs, make_qiov(mem[:100]))


# --- drain, plug ------------------------------------------------------------------

class DrainDriver(MemDriver):
    def bdrv_drain(self, bs):
        bs.opaque.log.append(("drain",))


def test_bdrv_drain(ctx):
    proto = new_bs(ctx, new_drv(DrainDriver))
    fmt = new_bs(ctx, new_drv(DrainDriver))
    attach(fmt, proto, "file")
    proto.opaque.async_io = True
    done = []
    io.bdrv_aio_readv(proto, 0, make_qiov(bytearray(SECTOR)), 1,
                      lambda o, r: done.append(r), None)
    assert io.bdrv_requests_pending(fmt)        # through the child
    io.bdrv_drain(fmt)
    assert done == [0]
    assert not io.bdrv_requests_pending(fmt)
    assert fmt.opaque.log == [("drain",)]
    assert proto.opaque.log == [("read", 0, 1), ("drain",)]
    assert fmt.io_limits_disabled == 0 and fmt.io_plug_disabled == 0


def test_bdrv_co_drain(ctx):
    """Draining from a coroutine yields to a BH that polls."""
    bs = new_bs(ctx, new_drv(MemDriver))
    bs.opaque.async_io = True
    done = []
    io.bdrv_aio_writev(bs, 0, make_qiov(b"w" * SECTOR), 1,
                       lambda o, r: done.append(r), None)

    def body():
        io.bdrv_co_drain(bs)
        return list(done)
    assert run_co(ctx, body) == [0]

    io.bdrv_aio_writev(bs, 0, make_qiov(b"w" * SECTOR), 1,
                       lambda o, r: done.append(r), None)

    def body2():
        io.bdrv_drain(bs)       # in a coroutine: bdrv_co_yield_to_drain
        return list(done)
    assert run_co(ctx, body2) == [0, 0]


def test_bdrv_drain_all(ctx, monkeypatch):
    a = new_bs(ctx, new_drv(MemDriver))
    ctx2 = aio_context_new()
    b = new_bs(ctx2, new_drv(DrainDriver))
    monkeypatch.setattr(core, "bdrv_states", [a, b])
    a.opaque.async_io = b.opaque.async_io = True
    done = []
    io.bdrv_aio_readv(a, 0, make_qiov(bytearray(SECTOR)), 1,
                      lambda o, r: done.append("a"), None)
    io.bdrv_aio_readv(b, 0, make_qiov(bytearray(SECTOR)), 1,
                      lambda o, r: done.append("b"), None)
    io.bdrv_drain_all()
    assert sorted(done) == ["a", "b"]
    assert b.opaque.log == [("read", 0, 1), ("drain",)]
    assert a.io_plug_disabled == b.io_plug_disabled == 0


def test_bdrv_drained_begin_end(ctx):
    bs = new_bs(ctx, new_drv(MemDriver))
    io.bdrv_drained_begin(bs)
    io.bdrv_drained_begin(bs)
    assert aio_external_disabled(ctx) and bs.quiesce_counter == 2
    io.bdrv_drained_end(bs)
    assert aio_external_disabled(ctx)
    io.bdrv_drained_end(bs)
    assert not aio_external_disabled(ctx)
    with pytest.raises(AssertionError):
        io.bdrv_drained_end(bs)


class PlugDriver(MemDriver):
    def bdrv_io_plug(self, bs):
        bs.opaque.log.append("plug")

    def bdrv_io_unplug(self, bs):
        bs.opaque.log.append("unplug")


def test_bdrv_io_plug_unplug(ctx):
    proto = new_bs(ctx, new_drv(PlugDriver))
    fmt = new_bs(ctx, new_drv(PlugDriver))
    attach(fmt, proto, "file")
    io.bdrv_io_plug(fmt)
    io.bdrv_io_plug(fmt)                        # nested: no second call
    assert fmt.opaque.log == ["plug"] and proto.opaque.log == ["plug"]
    assert (fmt.io_plugged, proto.io_plugged) == (2, 2)
    io.bdrv_io_unplug(fmt)
    assert fmt.opaque.log == ["plug"]
    io.bdrv_io_unplug(fmt)
    assert fmt.opaque.log == ["plug", "unplug"]
    assert proto.opaque.log == ["plug", "unplug"]
    with pytest.raises(AssertionError):
        io.bdrv_io_unplug(fmt)


def test_bdrv_io_unplugged_begin_end(ctx):
    proto = new_bs(ctx, new_drv(PlugDriver))
    fmt = new_bs(ctx, new_drv(PlugDriver))
    attach(fmt, proto, "file")
    io.bdrv_io_unplugged_begin(fmt)             # not plugged: no calls
    io.bdrv_io_unplugged_end(fmt)
    assert fmt.opaque.log == []
    io.bdrv_io_plug(fmt)
    io.bdrv_io_unplugged_begin(fmt)
    io.bdrv_io_plug(fmt)                        # disabled: no call
    io.bdrv_io_unplug(fmt)
    io.bdrv_io_unplugged_end(fmt)
    assert fmt.opaque.log == ["plug", "unplug", "plug"]
    assert proto.opaque.log == ["plug", "unplug", "plug"]
    io.bdrv_io_unplug(fmt)
    assert fmt.io_plugged == proto.io_plugged == 0


# --- trace -----------------------------------------------------------------------

def test_trace_bdrv_co_readv(ctx):
    bs = new_bs(ctx, new_drv(MemDriver))
    out = _stdio.StringIO()
    trace.trace_set_output(out)
    try:
        # bdrv_co_readv, bdrv_co_copy_on_readv, bdrv_co_do_copy_on_readv
        assert trace.trace_enable("bdrv_co_*readv") == 3
        # '?' is one character, as in glib's patterns
        assert trace.trace_enable("bdrv_co_?eadv*", False) == 2
        assert trace.trace_enable("bdrv_co_?eadv", True) == 1
        qiov = make_qiov(bytearray(SECTOR))
        assert run_co(ctx, io.bdrv_co_readv, bs, 1, 1, qiov) == 0
        assert run_co(ctx, io.bdrv_co_writev, bs, 1, 1, qiov) == 0
    finally:
        trace.trace_reset()
        trace.trace_set_output(sys.stderr)
    assert out.getvalue() == "bdrv_co_readv bs %s sector_num 1 nb_sectors 1\n" \
        % hex(id(bs))


# --- through the real drivers (block/core.py, drivers/) ---------------------------

def open_image(filename, options, flags=BDRV_O_RDWR):
    pbs, errp = [None], [None]
    ret = core.bdrv_open(pbs, filename, None, options, flags, errp)
    assert ret == 0, errp[0]
    return pbs[0]


def test_raw_over_file(tmp_path):
    """raw answers block status with BDRV_BLOCK_RAW: file answers."""
    path = tmp_path / "img"
    path.write_bytes(b"\x01" * 4096 + bytes(4096))
    bs = open_image(str(path), {"driver": "raw"})
    try:
        pnum, file = [0], [None]
        ret = io.bdrv_get_block_status(bs, 0, 16, pnum, file)
        assert ret & (BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID |
                      BDRV_BLOCK_ALLOCATED)
        assert file[0] is bs.file.bs and pnum[0] > 0
        buf = bytearray(SECTOR)
        assert io.bdrv_read(bs, 1, buf, 1) == 0 and buf == b"\x01" * SECTOR
        assert io.bdrv_pwrite(bs, 5000, b"xyz", 3) == 3
        assert io.bdrv_flush(bs) == 0
    finally:
        core.bdrv_unref(bs)
    assert path.read_bytes()[5000:5003] == b"xyz"


def test_null_co():
    bs = open_image("null-co://", {"driver": "null-co", "size": 1 << 20})
    try:
        buf = bytearray(b"\x05" * SECTOR)
        assert io.bdrv_read(bs, 0, buf, 1) == 0
        assert io.bdrv_write(bs, 0, buf, 1) == 0
        done = []
        io.bdrv_aio_readv(bs, 0, make_qiov(buf), 1,
                          lambda o, r: done.append(r), None)
        io.bdrv_drain(bs)
        assert done == [0]
    finally:
        core.bdrv_unref(bs)
