"""Tests of the drivers: file (drivers/raw_posix.py), raw
(drivers/raw_bsd.py), null-co and null-aio (drivers/null.py).

file: reads and writes through the thread pool with several iovecs and at
the end of a file that is not a multiple of 512, flush by fdatasync, discard
and write_zeroes on fallocate and their fallbacks, block status from
SEEK_DATA/SEEK_HOLE, cache.direct=on (O_DIRECT) with its alignment probing
on the file system of the test directory (skipped where O_DIRECT does not
work), creation with preallocation.  raw over file: status and requests go
through, probing protects sector 0.  null: options and the two completion
paths.
"""

import errno
import fcntl
import os

import pytest

import drivers
from block import core, io
from block.block_int import (BDRV_BLOCK_ALLOCATED, BDRV_BLOCK_DATA,
                             BDRV_BLOCK_OFFSET_VALID, BDRV_BLOCK_ZERO,
                             BDRV_O_PROTOCOL, BDRV_O_RDWR, BDRV_O_UNMAP,
                             BDRV_REQ_MAY_UNMAP, BlockDriver,
                             BlockDriverInfo)
from drivers import raw_posix
from util.aio import aio_poll, qemu_get_aio_context
from util.coroutine import qemu_coroutine_create, qemu_coroutine_enter
from util.iov import QEMUIOVector, qemu_iovec_init_external, qemu_memalign

KiB = 1 << 10
MiB = 1 << 20
CTX = qemu_get_aio_context()
STATUS = BDRV_BLOCK_DATA | BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID


def open_ok(filename, options=None, flags=BDRV_O_RDWR | BDRV_O_UNMAP):
    pbs, errp = [None], [None]
    ret = core.bdrv_open(pbs, filename, None, options, flags, errp)
    assert ret == 0, errp[0].msg
    return pbs[0]


def open_file(path, options=None, flags=BDRV_O_RDWR | BDRV_O_UNMAP):
    """The protocol layer alone."""
    return open_ok(path, dict(options or {}, driver='file'),
                   flags | BDRV_O_PROTOCOL)


def pread(bs, offset, count):
    buf = bytearray(count)
    assert io.bdrv_pread(bs, offset, buf, count) == count
    return bytes(buf)


def run_co(fn, *args):
    result = []
    co = qemu_coroutine_create(lambda _: result.append(fn(*args)))
    qemu_coroutine_enter(co, None)
    while not result:
        aio_poll(CTX, True)
    return result[0]


def block_status(bs, sector, nb):
    pnum, file = [0], [None]
    ret = io.bdrv_get_block_status(bs, sector, nb, pnum, file)
    return ret, pnum[0], file[0]


def allocated(path):
    return os.stat(path).st_blocks * 512


@pytest.fixture(autouse=True)
def no_leaks():
    nodes = list(core.graph_bdrv_states)
    yield
    assert core.graph_bdrv_states == nodes


@pytest.fixture
def path(tmp_path):
    """A 1 MiB file of 0x11 bytes, all allocated."""
    p = tmp_path / 'data.raw'
    p.write_bytes(b'\x11' * MiB)
    return str(p)


# --- file ---------------------------------------------------------------------

def test_file_read_write_iovecs(path):
    bs = open_file(path)
    assert core.bdrv_get_format_name(bs) == 'file'
    assert bs.request_alignment == 1    # buffered I/O
    parts = [bytearray(b'a' * 100), bytearray(b'b' * 312),
             bytearray(b'c' * 100)]
    qiov = QEMUIOVector()
    qemu_iovec_init_external(qiov, [memoryview(p) for p in parts], 3)
    assert run_co(io.bdrv_co_writev, bs, 4, 1, qiov) == 0
    with open(path, 'rb') as f:
        f.seek(2048)
        assert f.read(512) == b'a' * 100 + b'b' * 312 + b'c' * 100
    outs = [bytearray(200), bytearray(824)]
    qiov = QEMUIOVector()
    qemu_iovec_init_external(qiov, [memoryview(o) for o in outs], 2)
    assert run_co(io.bdrv_co_readv, bs, 3, 2, qiov) == 0
    assert bytes(outs[0] + outs[1]) == b'\x11' * 512 + b'a' * 100 + \
        b'b' * 312 + b'c' * 100
    # unaligned bytes are fine with buffered I/O
    assert io.bdrv_pwrite(bs, 3, b'xyz', 3) == 3
    assert pread(bs, 0, 8) == b'\x11\x11\x11xyz\x11\x11'
    core.bdrv_unref(bs)


def test_file_short_last_sector(tmp_path):
    p = tmp_path / 'short.raw'
    p.write_bytes(b'\x22' * 1000)
    bs = open_file(str(p))
    # the length is rounded up to whole sectors; past EOF reads zeroes
    assert core.bdrv_getlength(bs) == 1024
    assert pread(bs, 512, 512) == b'\x22' * 488 + bytes(24)
    core.bdrv_unref(bs)


def test_file_flush_is_fdatasync(path, monkeypatch):
    calls = []
    real = os.fdatasync
    monkeypatch.setattr(os, 'fdatasync',
                        lambda fd: (calls.append(fd), real(fd))[1])
    bs = open_file(path)
    assert io.bdrv_flush(bs) == 0
    assert calls == []              # nothing written since the open
    assert io.bdrv_pwrite(bs, 0, b'x', 1) == 1
    assert io.bdrv_flush(bs) == 0
    assert calls == [bs.opaque.fd]
    core.bdrv_unref(bs)


def test_file_discard_punches_holes(path):
    bs = open_file(path)
    before = allocated(path)
    assert io.bdrv_discard(bs, 256, 1024) == 0   # 128 KiB .. 640 KiB
    assert allocated(path) <= before - 256 * KiB
    assert os.path.getsize(path) == MiB
    assert pread(bs, 128 * KiB, 512 * KiB) == bytes(512 * KiB)
    assert pread(bs, 128 * KiB - 1, 1) == b'\x11'
    assert pread(bs, 640 * KiB, 1) == b'\x11'

    ret, n, file = block_status(bs, 0, 2048)
    assert ret & STATUS == BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID
    assert ret & BDRV_BLOCK_ALLOCATED and n == 256 and file is bs
    ret, n, _ = block_status(bs, 256, 2048)
    assert ret & STATUS == BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID
    assert ret & ~0x1ff == 256 * 512 and n == 1024
    ret, n, _ = block_status(bs, 1280, 2048)
    assert ret & BDRV_BLOCK_DATA and n == 2048 - 1280
    core.bdrv_unref(bs)


def test_file_discard_ignored_without_unmap(path):
    bs = open_file(path, flags=BDRV_O_RDWR)
    assert io.bdrv_discard(bs, 0, 2048) == 0
    assert pread(bs, 0, 1) == b'\x11'
    core.bdrv_unref(bs)


def test_file_block_status_sparse(tmp_path):
    p = str(tmp_path / 'sparse.raw')
    with open(p, 'wb') as f:
        f.truncate(MiB)
        f.seek(64 * KiB)
        f.write(b'\x33' * 64 * KiB)
    bs = open_file(p)
    ret, n, _ = block_status(bs, 0, 2048)
    assert ret & STATUS == BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID
    assert n == 128
    ret, n, _ = block_status(bs, 128, 2048)
    assert ret & STATUS == BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID
    assert ret & ~0x1ff == 64 * KiB and n == 128
    # the trailing hole
    ret, n, _ = block_status(bs, 256, 2048)
    assert ret & STATUS == BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID
    assert n == 2048 - 256
    # at and past the end
    assert block_status(bs, 2048, 1)[:2] == (0, 0)
    core.bdrv_unref(bs)


def test_file_block_status_without_seek_data(path, monkeypatch):
    bs = open_file(path)
    real = os.lseek

    def no_seek_data(fd, pos, how):
        if how in (os.SEEK_DATA, os.SEEK_HOLE):
            raise OSError(errno.EINVAL, 'no')
        return real(fd, pos, how)

    monkeypatch.setattr(os, 'lseek', no_seek_data)
    ret, n, _ = block_status(bs, 10, 100)
    # no information: all data
    assert ret & STATUS == BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID
    assert n == 100
    core.bdrv_unref(bs)


def test_file_write_zeroes(path):
    bs = open_file(path)
    assert io.bdrv_write_zeroes(bs, 8, 8, 0) == 0
    assert pread(bs, 4 * KiB, 4 * KiB) == bytes(4 * KiB)
    assert pread(bs, 8 * KiB, 1) == b'\x11'
    assert bs.opaque.has_write_zeroes
    # with MAY_UNMAP it may punch a hole instead
    before = allocated(path)
    assert io.bdrv_write_zeroes(bs, 256, 512, BDRV_REQ_MAY_UNMAP) == 0
    assert pread(bs, 128 * KiB, 256 * KiB) == bytes(256 * KiB)
    assert allocated(path) <= before - 256 * KiB
    core.bdrv_unref(bs)


def test_file_write_zeroes_fallbacks(path, monkeypatch):
    """Without FALLOC_FL_ZERO_RANGE: punch a hole and allocate it again;
    without fallocate at all: the block layer writes zeroes."""
    modes = []
    real = raw_posix.do_fallocate

    def no_zero_range(fd, mode, offset, length):
        modes.append(mode)
        if mode & raw_posix.FALLOC_FL_ZERO_RANGE:
            return -errno.ENOTSUP
        return real(fd, mode, offset, length)

    monkeypatch.setattr(raw_posix, 'do_fallocate', no_zero_range)
    bs = open_file(path)
    assert io.bdrv_write_zeroes(bs, 0, 8, 0) == 0
    assert pread(bs, 0, 4 * KiB) == bytes(4 * KiB)
    assert modes == [raw_posix.FALLOC_FL_ZERO_RANGE,
                     raw_posix.FALLOC_FL_PUNCH_HOLE |
                     raw_posix.FALLOC_FL_KEEP_SIZE, 0]
    assert not bs.opaque.has_write_zeroes
    # the hole was allocated again
    ret = block_status(bs, 0, 8)[0]
    assert ret & BDRV_BLOCK_DATA

    monkeypatch.setattr(raw_posix, 'do_fallocate',
                        lambda *args: -errno.ENOTSUP)
    assert io.bdrv_write_zeroes(bs, 16, 8, 0) == 0
    assert pread(bs, 8 * KiB, 4 * KiB) == bytes(4 * KiB)
    assert not bs.opaque.has_discard
    # discard is then not supported either: it succeeds doing nothing
    assert io.bdrv_discard(bs, 100, 8) == 0
    assert pread(bs, 100 * 512, 1) == b'\x11'
    core.bdrv_unref(bs)


def test_file_info_and_sizes(path):
    bs = open_file(path)
    bdi = BlockDriverInfo()
    assert core.bdrv_get_info(bs, bdi) == 0
    assert bdi.unallocated_blocks_are_zero
    assert bdi.can_write_zeroes_with_unmap
    assert core.bdrv_get_allocated_file_size(bs) == allocated(path)
    assert core.bdrv_has_zero_init(bs) == 1
    assert core.bdrv_truncate(bs, 2 * MiB) == 0
    assert os.path.getsize(path) == 2 * MiB
    core.bdrv_unref(bs)


def test_file_create(tmp_path):
    opts_list = drivers.bdrv_find_format('file').create_opts
    from util.qemu_option import qemu_opts_create, qemu_opts_do_parse

    def create(name, params):
        opts = qemu_opts_create(opts_list)
        qemu_opts_do_parse(opts, params, None, None)
        errp = [None]
        ret = core.bdrv_create_file(str(tmp_path / name), opts, errp)
        return ret, errp[0] and errp[0].msg

    assert create('off.raw', 'size=1000') == (0, None)
    assert os.path.getsize(tmp_path / 'off.raw') == 1024
    assert allocated(tmp_path / 'off.raw') == 0
    assert create('falloc.raw', 'size=64k,preallocation=falloc') == (0, None)
    assert allocated(tmp_path / 'falloc.raw') >= 64 * KiB
    assert create('full.raw', 'size=64k,preallocation=full,nocow=on') == \
        (0, None)
    assert allocated(tmp_path / 'full.raw') >= 64 * KiB
    assert create('bad.raw', 'size=64k,preallocation=bogus') == \
        (-errno.EINVAL, 'invalid parameter value: bogus')
    # the file: prefix is accepted
    assert create('x', 'size=512')[0] == 0


def direct_bs(path, monkeypatch=None):
    """The file opened with cache.direct=on, or a skip with the reason."""
    pbs, errp = [None], [None]
    ret = core.bdrv_open(pbs, path, None,
                         {'driver': 'file', 'cache.direct': 'on'},
                         BDRV_O_RDWR | BDRV_O_PROTOCOL, errp)
    if ret < 0:
        pytest.skip('O_DIRECT does not work in %s: %s' %
                    (os.path.dirname(path), errp[0].msg))
    return pbs[0]


def test_file_o_direct(path):
    bs = direct_bs(path)
    s = bs.opaque
    assert fcntl.fcntl(s.fd, fcntl.F_GETFL) & os.O_DIRECT
    assert s.needs_alignment
    assert bs.request_alignment >= 512
    assert s.buf_align >= 512
    assert bs.bl.min_mem_alignment == s.buf_align
    assert bs.bl.opt_mem_alignment >= s.buf_align

    # unaligned offsets and lengths: read-modify-write in the block layer
    assert io.bdrv_pwrite(bs, 1000, b'hello', 5) == 5
    assert pread(bs, 998, 9) == b'\x11\x11hello\x11\x11'

    # an unaligned buffer goes through a bounce buffer
    mem = qemu_memalign(4096, 8192)
    view = memoryview(mem)[1:1 + 4096]
    view[:] = b'\x44' * 4096
    qiov = QEMUIOVector()
    qemu_iovec_init_external(qiov, [view], 1)
    assert run_co(io.bdrv_co_writev, bs, 8, 8, qiov) == 0
    view[:] = bytes(4096)
    assert run_co(io.bdrv_co_readv, bs, 8, 8, qiov) == 0
    assert bytes(view) == b'\x44' * 4096
    core.bdrv_unref(bs)
    with open(path, 'rb') as f:
        f.seek(4096)
        assert f.read(4096) == b'\x44' * 4096


def test_file_o_direct_short_file(tmp_path):
    p = tmp_path / 'short.raw'
    p.write_bytes(b'\x55' * 1000)
    bs = direct_bs(str(p))
    assert pread(bs, 0, 1024) == b'\x55' * 1000 + bytes(24)
    core.bdrv_unref(bs)


def test_file_aio_and_locking_options(path):
    bs = direct_bs(path)
    core.bdrv_unref(bs)
    bs = open_ok(path, {'driver': 'file', 'cache.direct': 'on',
                        'aio': 'native', 'locking': 'off'},
                 BDRV_O_RDWR | BDRV_O_PROTOCOL)
    assert pread(bs, 0, 512) == b'\x11' * 512
    core.bdrv_unref(bs)
    for locking in ('on', 'auto'):
        bs = open_ok(path, {'driver': 'file', 'locking': locking},
                     BDRV_O_RDWR | BDRV_O_PROTOCOL)
        core.bdrv_unref(bs)


def test_file_read_only(path):
    bs = open_file(path, flags=0)
    assert fcntl.fcntl(bs.opaque.fd, fcntl.F_GETFL) & os.O_ACCMODE == \
        os.O_RDONLY
    assert io.bdrv_pwrite(bs, 0, b'x', 1) == -errno.EPERM
    assert io.bdrv_discard(bs, 0, 1) == -errno.EPERM
    core.bdrv_unref(bs)


# --- raw over file ------------------------------------------------------------

def test_raw_passes_through(path):
    bs = open_ok(path, {'driver': 'raw'})
    assert io.bdrv_pwrite(bs, 10, b'raw', 3) == 3
    assert pread(bs.file.bs, 10, 3) == b'raw'
    assert io.bdrv_discard(bs, 256, 256) == 0
    assert pread(bs, 128 * KiB, 2) == bytes(2)
    # the status of the file, found through BDRV_BLOCK_RAW
    ret, n, file = block_status(bs, 256, 2048)
    assert ret & STATUS == BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID
    assert n == 256 and file is bs.file.bs
    ret, n, file = block_status(bs, 0, 2048)
    assert ret & BDRV_BLOCK_DATA and n == 256
    assert io.bdrv_write_zeroes(bs, 0, 1, 0) == 0
    assert pread(bs, 0, 512) == bytes(512)
    bdi = BlockDriverInfo()
    assert core.bdrv_get_info(bs, bdi) == 0 and bdi.can_write_zeroes_with_unmap
    assert core.bdrv_truncate(bs, 3 * MiB) == 0
    assert core.bdrv_getlength(bs) == 3 * MiB
    assert core.bdrv_has_zero_init(bs) == 1
    assert bs.bl.opt_mem_alignment == bs.file.bs.bl.opt_mem_alignment
    core.bdrv_unref(bs)


class FakeFormat(BlockDriver):
    """Something that probes as a format, to test the raw probing guard."""
    format_name = 'fake-probe'
    bdrv_probe = staticmethod(lambda buf, size, name:
                              100 if buf[:4] == b'FAKE' else 0)


@pytest.fixture
def fake_format():
    drv = FakeFormat()
    drivers.bdrv_register(drv)
    yield drv
    drivers.bdrv_drivers.remove(drv)


def test_raw_probed_protects_sector0(path, fake_format, capfd):
    bs = open_ok(path)
    assert bs.probed
    # a write that would make the image probe as another format
    assert io.bdrv_pwrite(bs, 0, b'FAKE', 4) == -errno.EPERM
    assert pread(bs, 0, 4) == b'\x11' * 4
    assert io.bdrv_pwrite(bs, 0, b'SAFE', 4) == 4
    assert io.bdrv_pwrite(bs, 512, b'FAKE', 4) == 4
    core.bdrv_unref(bs)
    capfd.readouterr()

    # with the format given, anything goes
    explicit = open_ok(path, {'driver': 'raw'})
    assert io.bdrv_pwrite(explicit, 0, b'FAKE', 4) == 4
    core.bdrv_unref(explicit)
    with open(path, 'rb') as f:
        assert drivers.bdrv_probe_all(f.read(512), 512, path) is fake_format


# --- null -----------------------------------------------------------------------

@pytest.mark.parametrize('name', ['null-co', 'null-aio'])
def test_null_defaults(name):
    bs = open_ok('%s://' % name, None, BDRV_O_RDWR | BDRV_O_PROTOCOL)
    assert core.bdrv_get_format_name(bs) == name
    assert bs.filename == '%s://' % name
    assert core.bdrv_getlength(bs) == 1 << 30
    # reads leave the buffer alone
    buf = bytearray(b'\xab' * 1024)
    assert io.bdrv_pread(bs, 0, buf, 1024) == 1024
    assert buf == b'\xab' * 1024
    assert io.bdrv_pwrite(bs, 0, b'x' * 512, 512) == 512
    assert io.bdrv_flush(bs) == 0
    # nothing is allocated
    ret, n, _ = block_status(bs, 0, 100)
    assert ret == BDRV_BLOCK_OFFSET_VALID and n == 100
    core.bdrv_unref(bs)


@pytest.mark.parametrize('name', ['null-co', 'null-aio'])
def test_null_options(name):
    bs = open_ok(None, {'driver': name, 'size': '1M', 'read-zeroes': 'on',
                        'latency-ns': '1000'},
                 BDRV_O_RDWR | BDRV_O_PROTOCOL)
    assert core.bdrv_getlength(bs) == MiB
    buf = bytearray(b'\xab' * 1024)
    assert io.bdrv_pread(bs, 0, buf, 1024) == 1024
    assert buf == bytes(1024)
    ret, n, _ = block_status(bs, 0, 4096)
    assert ret & STATUS == BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID
    assert ret & BDRV_BLOCK_ALLOCATED and n == 2048
    assert io.bdrv_pwrite(bs, MiB - 512, b'x' * 512, 512) == 512
    assert io.bdrv_flush(bs) == 0
    assert bs.filename.startswith('json:')
    core.bdrv_unref(bs)


def test_null_aio_completes_from_the_event_loop():
    bs = open_ok('null-aio://', None, BDRV_O_RDWR | BDRV_O_PROTOCOL)
    done = []
    qiov = QEMUIOVector()
    qemu_iovec_init_external(qiov, [memoryview(bytearray(512))], 1)
    io.bdrv_aio_readv(bs, 0, qiov, 1, lambda o, ret: done.append(ret), None)
    assert done == []
    while not done:
        aio_poll(CTX, True)
    assert done == [0]
    core.bdrv_unref(bs)


def test_null_reopen():
    bs = open_ok('null-co://', None, BDRV_O_RDWR | BDRV_O_PROTOCOL)
    # opened as a protocol alone: BDRV_O_ALLOW_RDWR is not set
    assert core.bdrv_reopen(bs, 0, None) == 0
    assert core.bdrv_is_read_only(bs)
    core.bdrv_unref(bs)


def test_registry():
    names = drivers.bdrv_iterate_format()
    assert {'file', 'raw', 'null-co', 'null-aio'} <= set(names)
    assert names == sorted(names)
    assert drivers.bdrv_find_format('nope') is None
    errp = [None]
    assert drivers.bdrv_find_protocol('nope:x', True, errp) is None
    assert errp[0].msg == "Unknown protocol 'nope'"
    assert drivers.bdrv_probe_all(bytes(512), 512, None).format_name == 'raw'
