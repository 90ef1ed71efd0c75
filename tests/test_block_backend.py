"""Tests of block/block_backend.py (QEMU's block/block-backend.c) and
block/accounting.py: names, references, the request checks of every entry
point (-EIO past the end and for negative sizes, -ENOMEDIUM without a
medium), the AIO forms (errors come through the callback, never before the
call returns), the write cache (writethrough flushes every write) and the
I/O statistics.
"""

import errno

import pytest

from block import accounting, block_backend as bb, core, io
from block.accounting import (BLOCK_ACCT_FLUSH, BLOCK_ACCT_READ,
                              BLOCK_ACCT_WRITE, BlockAcctCookie)
from block.block_int import (BDRV_O_RDWR, BDRV_O_UNMAP, BDRV_REQ_FUA,
                             INT_MAX, BlockRequest)
from drivers.raw_posix import bdrv_file
from util.aio import aio_poll, qemu_get_aio_context
from util.coroutine import qemu_coroutine_create, qemu_coroutine_enter
from util.iov import QEMUIOVector, qemu_iovec_init_external

MiB = 1 << 20
CTX = qemu_get_aio_context()


@pytest.fixture
def img(tmp_path):
    path = tmp_path / 'test.raw'
    path.write_bytes(bytes(MiB))
    return str(path)


@pytest.fixture
def blk(img):
    errp = [None]
    blk = bb.blk_new_open('drive0', img, None, {'driver': 'raw'},
                          BDRV_O_RDWR | BDRV_O_UNMAP, errp)
    assert blk, errp[0]
    yield blk
    bb.blk_unref(blk)
    assert not bb.blk_backends


def wait_aio(start):
    """Start an AIO request with start(cb, opaque); check that it does not
    complete before start() returns; poll until it does; its ret."""
    done = []
    start(lambda opaque, ret: done.append(ret), None)
    assert done == []
    while not done:
        aio_poll(CTX, True)
    return done[0]


def qiov_of(buf):
    qiov = QEMUIOVector()
    qemu_iovec_init_external(qiov, [memoryview(buf)], 1)
    return qiov


def run_co(fn, *args):
    result = []
    co = qemu_coroutine_create(lambda _: result.append(fn(*args)))
    qemu_coroutine_enter(co, None)
    while not result:
        aio_poll(CTX, True)
    return result[0]


# --- names and references ---------------------------------------------------

def test_names():
    errp = [None]
    blk = bb.blk_new('disk0', errp)
    assert bb.blk_name(blk) == 'disk0'
    assert bb.blk_by_name('disk0') is blk
    assert bb.blk_next(None) is blk and bb.blk_next(blk) is None
    assert bb.blk_new('disk0', errp) is None
    assert errp[0].msg == "Device with id 'disk0' already exists"
    errp = [None]
    assert bb.blk_new('0disk', errp) is None
    assert errp[0].msg == 'Invalid device name'
    bb.blk_unref(blk)
    assert bb.blk_by_name('disk0') is None


def test_name_conflicts_with_node_name(img):
    pbs = [None]
    assert core.bdrv_open(pbs, img, None, {'driver': 'raw',
                                            'node-name': 'n0'},
                          BDRV_O_RDWR, None) == 0
    errp = [None]
    assert bb.blk_new('n0', errp) is None
    assert errp[0].msg == "Device name 'n0' conflicts with an existing " \
        "node name"
    core.bdrv_unref(pbs[0])


def test_refs_and_device(blk):
    bs = bb.blk_bs(blk)
    assert bs.blk is blk
    assert core.bdrv_get_device_name(bs) == 'drive0'
    bb.blk_ref(blk)
    assert bb.blk_get_refcnt(blk) == 2
    bb.blk_unref(blk)
    assert bb.blk_attach_dev(blk, 'dev') == 0
    assert bb.blk_attach_dev(blk, 'other') == -errno.EBUSY
    assert bb.blk_get_attached_dev(blk) == 'dev'
    bb.blk_detach_dev(blk, 'dev')
    assert bb.blk_get_refcnt(blk) == 1
    bb.blk_unref(None)


def test_open_failure_leaves_nothing(tmp_path):
    errp = [None]
    assert bb.blk_new_open('d', str(tmp_path / 'none'), None, None,
                           BDRV_O_RDWR, errp) is None
    assert 'No such file or directory' in errp[0].msg
    assert not bb.blk_backends


@pytest.mark.parametrize('options', [
    {'driver': 'raw', 'read-only': 'on'},
    {'driver': 'raw', 'file.read-only': 'on'},
])
def test_open_rdwr_refused_by_read_only_node(img, options):
    """7.2: a read-write BlockBackend needs the write permission, which a
    node made read-only by its options (or its file) refuses."""
    errp = [None]
    pret = [0]
    assert bb.blk_new_open('d', img, None, dict(options), BDRV_O_RDWR,
                           errp, pret) is None
    assert errp[0].msg == 'Block node is read-only'
    assert pret == [-errno.EPERM]
    assert not bb.blk_backends
    blk = bb.blk_new_open('d', img, None, dict(options), 0, errp)
    assert blk is not None
    bb.blk_unref(blk)


# --- request checks ---------------------------------------------------------

@pytest.mark.parametrize('offset,count,ret', [
    (0, MiB, 0),
    (MiB, 0, 0),
    (MiB - 1, 1, 0),
    (MiB, 1, -errno.EIO),
    (MiB - 1, 2, -errno.EIO),
    (MiB + 512, 0, -errno.EIO),
    (-1, 1, -errno.EIO),
    (-512, 0, -errno.EIO),
    (0, -1, -errno.EIO),
    (0, INT_MAX + 1, -errno.EIO),
    (1 << 62, 512, -errno.EIO),
])
def test_check_byte_request(blk, offset, count, ret):
    assert bb.blk_check_byte_request(blk, offset, count) == ret
    buf = bytearray(max(count, 0)) if 0 <= count <= MiB else bytearray(1)
    expect = count if ret == 0 else ret
    assert bb.blk_pread(blk, offset, buf, count) == expect
    assert bb.blk_pwrite(blk, offset, buf, count) == expect


@pytest.mark.parametrize('sector,nb,ret', [
    (0, 2048, 0),
    (2047, 1, 0),
    (2048, 0, 0),
    (2048, 1, -errno.EIO),
    (-1, 1, -errno.EIO),
    (0, -1, -errno.EIO),
    (0, INT_MAX // 512 + 1, -errno.EIO),
    ((1 << 63) // 512, 0, -errno.EIO),
])
def test_check_request(blk, sector, nb, ret):
    assert bb.blk_check_request(blk, sector, nb) == ret
    buf = bytearray(512 * max(0, min(nb, 2048)))
    if ret == 0:
        assert bb.blk_read(blk, sector, buf, nb) == 0
        assert bb.blk_write(blk, sector, buf, nb) == 0
    else:
        assert bb.blk_read(blk, sector, buf, nb) == ret
        assert bb.blk_write(blk, sector, buf, nb) == ret
    assert bb.blk_write_zeroes(blk, sector, nb, 0) == ret
    assert bb.blk_discard(blk, sector, nb) == ret
    assert bb.blk_write_compressed(blk, sector, buf, nb) == \
        (ret if ret else -errno.ENOTSUP)


def test_aio_request_checks(blk):
    buf = bytearray(512)
    qiov = qiov_of(buf)
    assert wait_aio(lambda cb, o: bb.blk_aio_readv(blk, 2048, qiov, 1, cb,
                                                   o)) == -errno.EIO
    assert wait_aio(lambda cb, o: bb.blk_aio_writev(blk, -1, qiov, 1, cb,
                                                    o)) == -errno.EIO
    assert wait_aio(lambda cb, o: bb.blk_aio_discard(blk, 0, -1, cb,
                                                     o)) == -errno.EIO
    assert wait_aio(lambda cb, o: bb.blk_aio_write_zeroes(
        blk, 2048, 1, 0, cb, o)) == -errno.EIO
    assert wait_aio(lambda cb, o: bb.blk_aio_preadv(blk, MiB, qiov, 0, cb,
                                                    o)) == -errno.EIO
    assert wait_aio(lambda cb, o: bb.blk_aio_pwrite_zeroes(
        blk, MiB - 1, 2, 0, cb, o)) == -errno.EIO
    # the valid ones complete after the call returns as well
    assert wait_aio(lambda cb, o: bb.blk_aio_readv(blk, 0, qiov, 1, cb,
                                                   o)) == 0
    assert wait_aio(lambda cb, o: bb.blk_aio_pwritev(blk, 512, qiov, 0, cb,
                                                     o)) == 0
    assert wait_aio(lambda cb, o: bb.blk_aio_flush(blk, cb, o)) == 0
    assert wait_aio(lambda cb, o: bb.blk_aio_discard(blk, 0, 8, cb, o)) == 0
    assert wait_aio(lambda cb, o: bb.blk_aio_write_zeroes(
        blk, 8, 8, 0, cb, o)) == 0


def test_no_medium():
    blk = bb.blk_new_with_bs('empty', None)
    buf = bytearray(512)
    assert not bb.blk_is_inserted(blk) and not bb.blk_is_available(blk)
    assert bb.blk_check_byte_request(blk, 0, 512) == -errno.ENOMEDIUM
    assert bb.blk_pread(blk, 0, buf, 512) == -errno.ENOMEDIUM
    assert bb.blk_read(blk, 0, buf, 1) == -errno.ENOMEDIUM
    # a negative size is -EIO before anything else
    assert bb.blk_pread(blk, 0, buf, -1) == -errno.EIO
    assert bb.blk_getlength(blk) == -errno.ENOMEDIUM
    assert bb.blk_nb_sectors(blk) == -errno.ENOMEDIUM
    assert bb.blk_get_geometry(blk) == 0
    assert bb.blk_flush(blk) == -errno.ENOMEDIUM
    errp = [None]
    assert bb.blk_truncate(blk, 0, 'off', errp) == -errno.ENOMEDIUM
    assert errp[0].msg == 'No medium inserted'
    assert wait_aio(lambda cb, o: bb.blk_aio_flush(blk, cb, o)) == \
        -errno.ENOMEDIUM
    assert wait_aio(lambda cb, o: bb.blk_aio_ioctl(blk, 0, None, cb, o)) == \
        -errno.ENOMEDIUM
    bb.blk_unref(blk)


# --- data paths --------------------------------------------------------------

def test_read_write_forms(blk):
    assert bb.blk_pwrite(blk, 100, b'abc', 3) == 3
    buf = bytearray(3)
    assert bb.blk_pread(blk, 100, buf, 3) == 3 and buf == b'abc'

    assert bb.blk_write(blk, 2, b'\x07' * 1024, 2) == 0
    buf = bytearray(512)
    assert bb.blk_read(blk, 3, buf, 1) == 0 and buf == b'\x07' * 512

    assert bb.blk_write_zeroes(blk, 3, 1, 0) == 0
    assert bb.blk_read(blk, 3, buf, 1) == 0 and buf == bytes(512)

    assert bb.blk_pwrite_zeroes(blk, 101, 1, 0) == 0
    buf = bytearray(3)
    assert bb.blk_pread(blk, 100, buf, 3) == 3 and buf == b'a\0c'

    qiov = qiov_of(bytearray(b'\x09' * 4096))
    assert run_co(bb.blk_co_pwritev, blk, 8192, 4096, qiov, 0) == 0
    out = bytearray(4096)
    assert run_co(bb.blk_co_preadv, blk, 8192, 4096, qiov_of(out), 0) == 0
    assert out == b'\x09' * 4096
    assert run_co(bb.blk_co_pwrite_zeroes, blk, 8192, 512, 0) == 0
    assert run_co(bb.blk_co_write_zeroes, blk, 17, 1, 0) == 0
    assert bb.blk_pread(blk, 8192, out, 4096) == 4096
    assert out == bytes(1024) + b'\x09' * 3072
    assert run_co(bb.blk_co_flush, blk) == 0
    assert run_co(bb.blk_co_discard, blk, 16, 8) == 0
    assert bb.blk_pdiscard(blk, 8192, 4096) == 0
    assert bb.blk_pdiscard(blk, MiB, 1) == -errno.EIO

    assert bb.blk_flush(blk) == 0
    assert bb.blk_flush_all() == 0
    bb.blk_drain(blk)
    bb.blk_drain_all()
    bb.blk_io_plug(blk)
    bb.blk_io_unplug(blk)


def test_length_and_truncate(blk):
    assert bb.blk_getlength(blk) == MiB
    assert bb.blk_nb_sectors(blk) == 2048
    assert bb.blk_get_geometry(blk) == 2048
    assert bb.blk_truncate(blk, 2 * MiB) == 0
    assert bb.blk_getlength(blk) == 2 * MiB
    buf = bytearray(512)
    assert bb.blk_pread(blk, 2 * MiB - 512, buf, 512) == 512
    errp = [None]
    assert bb.blk_truncate(blk, MiB, 'falloc', errp) == -errno.ENOTSUP
    assert errp[0].msg == 'Cannot use preallocation for shrinking files'
    errp = [None]
    assert bb.blk_truncate(blk, 3 * MiB, 'metadata', errp) == -errno.ENOTSUP
    assert errp[0].msg == 'Unsupported preallocation mode: metadata'
    errp = [None]
    assert bb.blk_truncate(blk, -1, 'off', errp) == -errno.EINVAL
    assert errp[0].msg == 'Image size cannot be negative'
    assert bb.blk_truncate(blk, 3 * MiB, 'full', None) == 0
    assert bb.blk_getlength(blk) == 3 * MiB


def test_flags_and_properties(blk):
    assert not bb.blk_is_read_only(blk) and not bb.blk_is_sg(blk)
    assert bb.blk_get_flags(blk) & BDRV_O_RDWR
    assert bb.blk_get_max_transfer_length(blk) == 0
    assert bb.blk_get_aio_context(blk) is CTX
    buf = bb.blk_blockalign(blk, 4096)
    assert len(buf) == 4096


def test_multiwrite_merges_and_accounts(blk):
    results = []
    reqs = [BlockRequest(0, 1, 0, qiov_of(bytearray(b'a' * 512)),
                         lambda o, ret: results.append(ret)),
            BlockRequest(1, 1, 0, qiov_of(bytearray(b'b' * 512)),
                         lambda o, ret: results.append(ret))]
    assert bb.blk_aio_multiwrite(blk, reqs, 2) == 0
    while len(results) < 2:
        aio_poll(CTX, True)
    assert results == [0, 0]
    assert bb.blk_get_stats(blk).merged[BLOCK_ACCT_WRITE] == 1
    buf = bytearray(1024)
    assert bb.blk_pread(blk, 0, buf, 1024) == 1024
    assert buf == b'a' * 512 + b'b' * 512
    bad = [BlockRequest(2048, 1, 0, qiov_of(bytearray(512)), None)]
    assert bb.blk_aio_multiwrite(blk, bad, 1) == -errno.EIO


# --- the write cache ---------------------------------------------------------

def count_flushes(monkeypatch):
    flushes = []
    real = bdrv_file.bdrv_aio_flush

    def counting(bs, cb, opaque):
        flushes.append(bs)
        return real(bs, cb, opaque)

    monkeypatch.setattr(bdrv_file, 'bdrv_aio_flush', counting)
    return flushes


def test_write_cache_on_no_flushes(blk, monkeypatch):
    assert bb.blk_enable_write_cache(blk)
    flushes = count_flushes(monkeypatch)
    assert bb.blk_pwrite(blk, 0, b'x' * 512, 512) == 512
    assert bb.blk_write(blk, 1, b'y' * 512, 1) == 0
    assert wait_aio(lambda cb, o: bb.blk_aio_writev(
        blk, 2, qiov_of(bytearray(512)), 1, cb, o)) == 0
    assert flushes == []
    # FUA asked for by the caller is still honoured
    assert bb.blk_pwrite(blk, 0, b'x', 1, BDRV_REQ_FUA) == 1
    assert len(flushes) == 1


def test_writethrough_flushes_every_write(blk, monkeypatch):
    bb.blk_set_enable_write_cache(blk, False)
    assert not bb.blk_enable_write_cache(blk)
    flushes = count_flushes(monkeypatch)
    assert bb.blk_pwrite(blk, 0, b'x' * 512, 512) == 512
    assert len(flushes) == 1
    assert bb.blk_write(blk, 1, b'y' * 512, 1) == 0
    assert len(flushes) == 2
    assert wait_aio(lambda cb, o: bb.blk_aio_writev(
        blk, 2, qiov_of(bytearray(512)), 1, cb, o)) == 0
    assert len(flushes) == 3
    assert flushes[0] is bb.blk_bs(blk).file.bs
    # reads never flush
    assert bb.blk_pread(blk, 0, bytearray(512), 512) == 512
    assert len(flushes) == 3


# --- accounting ---------------------------------------------------------------

def test_accounting():
    stats = accounting.BlockAcctStats()
    accounting.block_acct_init(stats, True, True)
    cookie = BlockAcctCookie()
    accounting.block_acct_start(stats, cookie, 4096, BLOCK_ACCT_READ)
    accounting.block_acct_done(stats, cookie)
    assert stats.nr_bytes[BLOCK_ACCT_READ] == 4096
    assert stats.nr_ops[BLOCK_ACCT_READ] == 1
    assert stats.total_time_ns[BLOCK_ACCT_READ] >= 0
    assert stats.last_access_time_ns > 0

    accounting.block_acct_start(stats, cookie, 512, BLOCK_ACCT_WRITE)
    accounting.block_acct_failed(stats, cookie)
    assert stats.failed_ops[BLOCK_ACCT_WRITE] == 1
    assert stats.nr_ops[BLOCK_ACCT_WRITE] == 0
    assert stats.nr_bytes[BLOCK_ACCT_WRITE] == 0

    accounting.block_acct_invalid(stats, BLOCK_ACCT_FLUSH)
    assert stats.invalid_ops[BLOCK_ACCT_FLUSH] == 1
    assert stats.total_time_ns[BLOCK_ACCT_FLUSH] == 0

    accounting.block_acct_merge_done(stats, BLOCK_ACCT_WRITE, 3)
    assert stats.merged[BLOCK_ACCT_WRITE] == 3
    assert accounting.block_acct_idle_time_ns(stats) >= 0


def test_accounting_failed_time_only_when_asked():
    stats = accounting.BlockAcctStats()
    cookie = BlockAcctCookie()
    accounting.block_acct_start(stats, cookie, 512, BLOCK_ACCT_WRITE)
    cookie.start_time_ns -= 1000    # a request that took 1 µs at least
    accounting.block_acct_failed(stats, cookie)
    assert stats.total_time_ns[BLOCK_ACCT_WRITE] == 0
    accounting.block_acct_init(stats, False, True)
    accounting.block_acct_failed(stats, cookie)
    assert stats.total_time_ns[BLOCK_ACCT_WRITE] >= 1000
    assert stats.failed_ops[BLOCK_ACCT_WRITE] == 2


def test_blk_stats_belong_to_the_backend(blk):
    stats = bb.blk_get_stats(blk)
    cookie = BlockAcctCookie()
    accounting.block_acct_start(stats, cookie, 512, BLOCK_ACCT_READ)
    assert bb.blk_pread(blk, 0, bytearray(512), 512) == 512
    accounting.block_acct_done(stats, cookie)
    assert bb.blk_get_stats(blk).nr_bytes[BLOCK_ACCT_READ] == 512
