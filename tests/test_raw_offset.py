"""Tests of the offset and size options of the raw format
(drivers/raw_bsd.py, after QEMU 7.2's block/raw-format.c): requests moved
by offset and kept inside size (raw_adjust_offset), the block status
pointing into the file, length and truncate, the messages of a bad option,
reopen changing or keeping the options, an offset inside a sector, and the
probing guard looking at the image's own first sector.

The side-by-side runs against qemu-io 7.2 are the raw_offset_* and
raw_size_* cases of tests/compare/cases.py.
"""

import errno

import pytest

import drivers
from block import core, io
from block.block_int import (BDRV_BLOCK_DATA, BDRV_BLOCK_OFFSET_MASK,
                             BDRV_BLOCK_OFFSET_VALID, BDRV_BLOCK_RAW,
                             BDRV_BLOCK_ZERO, BDRV_O_RDWR, BDRV_O_UNMAP,
                             BlockDriver)
from drivers import raw_bsd
from util.aio import aio_poll, qemu_get_aio_context
from util.coroutine import qemu_coroutine_create, qemu_coroutine_enter
from util.iov import QEMUIOVector, qemu_iovec_init_external

KiB = 1 << 10
MiB = 1 << 20
CTX = qemu_get_aio_context()
FLAGS = BDRV_O_RDWR | BDRV_O_UNMAP
SIZE_HINT = ("Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, "
             "tera-, peta-\nand exabytes, respectively.\n")


def pattern(n):
    """Bytes that tell every offset of the file apart (251 is prime)."""
    return bytes(i % 251 for i in range(n))


@pytest.fixture
def path(tmp_path):
    p = tmp_path / 't.raw'
    p.write_bytes(pattern(MiB))
    return str(p)


@pytest.fixture(autouse=True)
def no_leaks():
    nodes = list(core.graph_bdrv_states)
    yield
    assert core.graph_bdrv_states == nodes


def open_raw(path, flags=FLAGS, **options):
    pbs, errp = [None], [None]
    ret = core.bdrv_open(pbs, path, None, dict(options, driver='raw'),
                         flags, errp)
    assert ret == 0, errp[0].msg
    return pbs[0]


def open_error(path, **options):
    pbs, errp = [None], [None]
    ret = core.bdrv_open(pbs, path, None, dict(options, driver='raw'),
                         FLAGS, errp)
    assert ret < 0 and pbs[0] is None
    return ret, errp[0]


def pread(bs, offset, count):
    buf = bytearray(count)
    ret = io.bdrv_pread(bs, offset, buf, count)
    return bytes(buf) if ret == count else ret


def file_bytes(path, offset, count):
    with open(path, 'rb') as f:
        f.seek(offset)
        return f.read(count)


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


def reopen(bs, errp=None, **options):
    queue = core.bdrv_reopen_queue(None, bs, options, bs.open_flags)
    return core.bdrv_reopen_multiple(queue, errp)


# --- offset ------------------------------------------------------------------

def test_offset_moves_requests(path):
    bs = open_raw(path, offset='512')
    assert (bs.opaque.offset, bs.opaque.size, bs.opaque.has_size) == \
        (512, MiB - 512, False)
    assert core.bdrv_getlength(bs) == MiB - 512
    assert pread(bs, 0, 1024) == pattern(MiB)[512:1536]
    assert pread(bs, MiB - 1024, 512) == pattern(MiB)[MiB - 512:]

    assert io.bdrv_pwrite(bs, 0, b'\x05' * 512, 512) == 512
    assert io.bdrv_pwrite(bs, 1000, b'abc', 3) == 3
    assert file_bytes(path, 0, 512) == pattern(512)
    assert file_bytes(path, 512, 512) == b'\x05' * 512
    assert file_bytes(path, 1512, 3) == b'abc'

    assert io.bdrv_write_zeroes(bs, 2, 2, 0) == 0
    assert file_bytes(path, 1536, 1024) == bytes(1024)
    assert file_bytes(path, 2560, 1) == pattern(MiB)[2560:2561]
    core.bdrv_unref(bs)


def test_offset_block_status_points_into_the_file(path):
    file_bs = open_raw(path)
    assert io.bdrv_discard(file_bs, 256, 256) == 0      # a hole at 128k
    core.bdrv_unref(file_bs)

    bs = open_raw(path, offset='64k')
    ret, n, file = block_status(bs, 0, 2048)
    assert ret & BDRV_BLOCK_DATA and ret & BDRV_BLOCK_OFFSET_VALID
    assert ret & BDRV_BLOCK_OFFSET_MASK == 64 * KiB
    assert n == 128 and file is bs.file.bs
    ret, n, file = block_status(bs, 128, 2048)
    assert ret & BDRV_BLOCK_ZERO and n == 256
    assert ret & BDRV_BLOCK_OFFSET_MASK == 128 * KiB
    # as far as the image goes, not the file
    ret, n, file = block_status(bs, 384, 4096)
    assert n == 2048 - 128 - 384
    core.bdrv_unref(bs)


def test_offset_discard_moves(path):
    bs = open_raw(path, offset='4k')
    assert io.bdrv_discard(bs, 0, 8) == 0
    assert file_bytes(path, 0, 4 * KiB) == pattern(4 * KiB)
    assert file_bytes(path, 4 * KiB, 4 * KiB) == bytes(4 * KiB)
    assert file_bytes(path, 8 * KiB, 1) == pattern(MiB)[8 * KiB:8 * KiB + 1]
    core.bdrv_unref(bs)


def test_offset_truncate_resizes_the_file(path):
    bs = open_raw(path, offset='512')
    assert core.bdrv_truncate(bs, 8 * KiB) == 0
    assert core.bdrv_getlength(bs) == 8 * KiB
    assert core.bdrv_getlength(bs.file.bs) == 8 * KiB + 512
    assert bs.opaque.size == 8 * KiB
    errp = [None]
    # bdrv_truncate refuses a length past BDRV_MAX_LENGTH before raw's own
    # check on the offset could
    assert core.bdrv_truncate(bs, core.INT64_MAX, 'off', errp) == -errno.EIO
    assert errp[0].msg == ('offset(9223372036854775807) exceeds '
                           'maximum(9223372035781033984)')
    core.bdrv_unref(bs)


def test_offset_at_the_end_is_empty(path):
    bs = open_raw(path, offset='1M')
    assert core.bdrv_getlength(bs) == 0
    core.bdrv_unref(bs)


def test_length_follows_the_file(path):
    bs = open_raw(path, offset='4k', size='64k')
    assert core.bdrv_getlength(bs) == 64 * KiB
    # the file shrinks under the image: a given size shrinks with it
    assert core.bdrv_truncate(bs.file.bs, 36 * KiB) == 0
    assert core.bdrv_getlength(bs) == 32 * KiB
    assert bs.opaque.has_size
    assert core.bdrv_truncate(bs.file.bs, 2 * KiB) == 0
    assert core.bdrv_getlength(bs) == 0
    core.bdrv_unref(bs)


# --- size --------------------------------------------------------------------

def test_size_bounds_requests(path):
    bs = open_raw(path, offset='4k', size='8k')
    assert core.bdrv_getlength(bs) == 8 * KiB
    assert pread(bs, 0, 8 * KiB) == pattern(MiB)[4 * KiB:12 * KiB]
    # the node reads zeroes past its end without asking the driver; the
    # driver refuses a request that leaves the window, and touches nothing
    assert pread(bs, 7 * KiB, 2 * KiB) == pattern(MiB)[11 * KiB:12 * KiB] \
        + bytes(KiB)
    buf = bytearray(1024)
    qiov = QEMUIOVector()
    qemu_iovec_init_external(qiov, [memoryview(buf)], 1)
    assert run_co(raw_bsd.raw_co_readv, bs, 15, 2, qiov) == -errno.EINVAL
    assert run_co(raw_bsd.raw_co_readv, bs, 17, 0, qiov) == -errno.EINVAL
    assert io.bdrv_pwrite(bs, 7 * KiB, bytes(2 * KiB), 2 * KiB) == \
        -errno.ENOSPC
    assert io.bdrv_write_zeroes(bs, 16, 1, 0) == -errno.ENOSPC
    assert io.bdrv_discard(bs, 15, 2) == -errno.ENOSPC
    assert file_bytes(path, 0, MiB) == pattern(MiB)
    assert io.bdrv_pwrite(bs, 7 * KiB, b'\x01' * KiB, KiB) == KiB
    assert file_bytes(path, 11 * KiB, KiB) == b'\x01' * KiB
    core.bdrv_unref(bs)


def test_adjust_offset(path):
    bs = open_raw(path, offset='4k', size='8k')
    offset = [8 * KiB - 512]
    assert raw_bsd.raw_adjust_offset(bs, offset, 512, False) == 0
    assert offset == [12 * KiB - 512]
    offset = [8 * KiB]      # nothing, at the end: allowed
    assert raw_bsd.raw_adjust_offset(bs, offset, 0, True) == 0
    assert offset == [12 * KiB]
    for start, count in ((8 * KiB - 512, 1024), (8 * KiB + 1, 0)):
        offset = [start]
        assert raw_bsd.raw_adjust_offset(bs, offset, count, False) == \
            -errno.EINVAL
        assert raw_bsd.raw_adjust_offset(bs, offset, count, True) == \
            -errno.ENOSPC
        assert offset == [start]
    core.bdrv_unref(bs)


def test_size_refuses_truncate(path):
    bs = open_raw(path, size='4k')
    errp = [None]
    assert core.bdrv_truncate(bs, 8 * KiB, 'off', errp) == -errno.ENOTSUP
    assert errp[0].msg == 'Cannot resize fixed-size raw disks'
    assert core.bdrv_getlength(bs.file.bs) == MiB
    core.bdrv_unref(bs)


def test_window_refuses_ioctl(path, monkeypatch):
    calls = []
    monkeypatch.setattr(io, 'bdrv_aio_ioctl',
                        lambda bs, *args: calls.append(bs) or 'acb')
    plain = open_raw(path)
    assert raw_bsd.raw_aio_ioctl(plain, 1, None, None, None) == 'acb'
    assert calls == [plain.file.bs]
    core.bdrv_unref(plain)
    for options in ({'offset': '512'}, {'size': '4k'}):
        bs = open_raw(path, **options)
        # None: bdrv_co_do_ioctl() completes it with -ENOTSUP
        assert raw_bsd.raw_aio_ioctl(bs, 1, None, None, None) is None
        core.bdrv_unref(bs)
    assert len(calls) == 1


@pytest.mark.parametrize('options, values', [
    ({'size': '1.5k'}, (0, 1536, True)),
    ({'offset': '0x200'}, (512, MiB - 512, False)),
    ({'offset': 512, 'size': 4096}, (512, 4096, True)),     # JSON numbers
    ({'offset': '1M', 'size': '0'}, (MiB, 0, True)),
    ({'size': '1M'}, (0, MiB, True)),
])
def test_option_values(path, options, values):
    bs = open_raw(path, **options)
    s = bs.opaque
    assert (s.offset, s.size, s.has_size) == values
    assert core.bdrv_getlength(bs) == values[1]
    core.bdrv_unref(bs)


@pytest.mark.parametrize('options, msg', [
    ({'offset': '2M'}, 'Offset (2097152) cannot be greater than size of the '
     'containing file (1048576)'),
    ({'offset': '18446744073709551615'}, 'Offset (18446744073709551615) '
     'cannot be greater than size of the containing file (1048576)'),
    ({'size': '2M'}, 'The sum of offset (0) and size (2097152) has to be '
     'smaller or equal to the  actual size of the containing file (1048576)'),
    ({'offset': '512', 'size': '1M'}, 'The sum of offset (512) and size '
     '(1048576) has to be smaller or equal to the  actual size of the '
     'containing file (1048576)'),
    ({'size': '1000'}, 'Specified size is not multiple of 512'),
    ({'size': 'x'}, "Parameter 'size' expects a non-negative number below "
     "2^64"),
    ({'offset': '-1'}, "Parameter 'offset' expects a non-negative number "
     "below 2^64"),
    ({'offset': '1.5'}, "Parameter 'offset' expects a non-negative number "
     "below 2^64"),
    ({'size': True}, "Parameter 'size' expects a non-negative number below "
     "2^64"),
])
def test_option_errors(path, options, msg):
    ret, err = open_error(path, **options)
    assert ret == -errno.EINVAL
    assert err.msg == msg
    if msg.startswith('Parameter'):
        assert err.hint == SIZE_HINT


def test_unknown_option_still_refused(path):
    ret, err = open_error(path, offset='512', bogus='1')
    assert err.msg == "Block format 'raw' does not support the option 'bogus'"


# --- reopen ------------------------------------------------------------------

def test_reopen_changes_and_keeps_options(path):
    bs = open_raw(path, offset='512')
    assert reopen(bs) == 0
    assert (bs.opaque.offset, bs.opaque.has_size) == (512, False)

    assert reopen(bs, offset='1k') == 0
    assert core.bdrv_getlength(bs) == MiB - KiB
    assert pread(bs, 0, 4) == pattern(MiB)[KiB:KiB + 4]

    # the next reopen starts from the options of the last one
    assert reopen(bs, size='4k') == 0
    assert (bs.opaque.offset, bs.opaque.size, bs.opaque.has_size) == \
        (KiB, 4 * KiB, True)
    assert core.bdrv_getlength(bs) == 4 * KiB

    assert reopen(bs, offset='0', size='2k') == 0
    assert core.bdrv_getlength(bs) == 2 * KiB
    assert pread(bs, 0, 4) == pattern(4)
    core.bdrv_unref(bs)


@pytest.mark.parametrize('options, msg', [
    ({'offset': '2M'}, 'Offset (2097152) cannot be greater than size of the '
     'containing file (1048576)'),
    ({'size': '1000'}, 'Specified size is not multiple of 512'),
    ({'size': 'x'}, "Parameter 'size' expects a non-negative number below "
     "2^64"),
    ({'offset': '512', 'size': '1M'}, 'The sum of offset (512) and size '
     '(1048576) has to be smaller or equal to the  actual size of the '
     'containing file (1048576)'),
])
def test_reopen_failure_keeps_the_state(path, options, msg):
    bs = open_raw(path, offset='1k', size='4k')
    errp = [None]
    assert reopen(bs, errp, **options) < 0
    assert errp[0].msg == msg
    assert (bs.opaque.offset, bs.opaque.size, bs.opaque.has_size) == \
        (KiB, 4 * KiB, True)
    assert pread(bs, 0, 4) == pattern(MiB)[KiB:KiB + 4]
    # and the options of the node stay those that are in force
    assert reopen(bs) == 0
    assert (bs.opaque.offset, bs.opaque.size) == (KiB, 4 * KiB)
    core.bdrv_unref(bs)


# --- an offset inside a sector -----------------------------------------------

def test_unaligned_offset_reads_and_writes_bytes(path):
    bs = open_raw(path, offset='1')
    # lengths are sectors: the last one reaches a byte past the file, which
    # reads as zero
    assert core.bdrv_getlength(bs) == MiB
    assert pread(bs, 0, 1024) == pattern(MiB)[1:1025]
    assert pread(bs, MiB - 512, 512) == pattern(MiB)[MiB - 511:] + b'\0'

    assert io.bdrv_pwrite(bs, 1, b'\x03' * 3, 3) == 3
    assert file_bytes(path, 0, 6) == pattern(2) + b'\x03' * 3 + \
        pattern(6)[5:]
    assert io.bdrv_write_zeroes(bs, 8, 8, 0) == 0
    assert file_bytes(path, 4 * KiB, 2) == pattern(MiB)[4 * KiB:4 * KiB + 1] \
        + b'\0'
    assert file_bytes(path, 4 * KiB + 1, 4 * KiB) == bytes(4 * KiB)
    assert file_bytes(path, 8 * KiB + 1, 1) == \
        pattern(MiB)[8 * KiB + 1:8 * KiB + 2]
    core.bdrv_unref(bs)


def test_unaligned_offset_status_and_discard(path):
    bs = open_raw(path, offset='1')
    ret, n, file = block_status(bs, 0, 16)
    assert ret & BDRV_BLOCK_DATA and not ret & BDRV_BLOCK_OFFSET_VALID
    assert not ret & BDRV_BLOCK_RAW and n == 16

    # the file's sectors 1..7 lie wholly in the image's sectors 0..7
    assert io.bdrv_discard(bs, 0, 8) == 0
    assert file_bytes(path, 0, 512) == pattern(512)
    assert file_bytes(path, 4 * KiB, 1) == pattern(MiB)[4 * KiB:4 * KiB + 1]
    core.bdrv_unref(bs)


# --- probing -----------------------------------------------------------------

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


def test_probed_guard_looks_at_the_image(path, fake_format, capfd):
    pbs = [None]
    assert core.bdrv_open(pbs, path, None, {'offset': '512'}, FLAGS,
                          None) == 0
    bs = pbs[0]
    assert bs.probed and bs.opaque.offset == 512
    assert "probing guessed raw" in capfd.readouterr().err
    assert io.bdrv_pwrite(bs, 0, b'FAKE', 4) == -errno.EPERM
    assert file_bytes(path, 512, 4) == pattern(516)[512:]
    assert io.bdrv_pwrite(bs, 512, b'FAKE', 4) == 4
    assert file_bytes(path, 1024, 4) == b'FAKE'
    core.bdrv_unref(bs)
