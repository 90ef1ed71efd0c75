"""Tests of block/front.py, the Pythonic front: the happy paths, the open
variants and options, and bad input of every kind: negative or too large
offsets and lengths, writes to a read-only image, missing, unreadable or
non-regular files, bad options.  Every failure is an OSError with QEMU's
errno and message, never another exception from inside, and never changes
a byte of the image.
"""

import errno
import hashlib
import os

import pytest
from hypothesis import given, settings, strategies as st

from block import block_backend, core
from block.block_int import BDRV_O_NOCACHE, INT_MAX
from block.front import BlockStatus, Image, open_image

KiB = 1 << 10
MiB = 1 << 20


@pytest.fixture(autouse=True)
def no_leaks():
    yield
    assert not block_backend.blk_backends


@pytest.fixture
def path(tmp_path):
    p = tmp_path / 'disk.raw'
    p.write_bytes(bytes(range(256)) * (MiB // 256))
    return str(p)


def digest(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_read_write(path):
    with open_image(path, fmt='raw') as img:
        assert isinstance(img, Image)
        assert img.format == 'raw' and img.filename == path
        assert not img.read_only
        assert img.length() == MiB
        assert img.read(0, 4) == b'\0\1\2\3'
        assert img.write(1000, b'hello') == 5
        assert img.read(998, 9) == bytes([230, 231]) + b'hello' + \
            bytes([237, 238])
        assert img.write(0, memoryview(b'xy')) == 2
        buf = bytearray(3)
        assert img.readinto(0, buf) == 3 and buf == b'xy\2'
        img.write_zeroes(4096, 8192)
        assert img.read(4096, 8192) == bytes(8192)
        img.write_zeroes(65536, 65536, unmap=True)
        assert img.read(65536, 65536) == bytes(65536)
        img.discard(MiB // 2, 4 * KiB + 100)
        assert img.read(MiB // 2, 4 * KiB) == bytes(4 * KiB)
        img.flush()
    with open(path, 'rb') as f:
        assert f.read(3) == b'xy\2'


def test_block_status(tmp_path):
    p = str(tmp_path / 'sparse.raw')
    with open(p, 'wb') as f:
        f.truncate(MiB)
        f.seek(64 * KiB)
        f.write(b'x' * 64 * KiB)
    with open_image(p, fmt='raw') as img:
        assert img.block_status(0, MiB) == BlockStatus(
            0, 64 * KiB, False, True, True, 0)
        assert img.block_status(64 * KiB + 100, MiB) == BlockStatus(
            64 * KiB, 64 * KiB, True, False, True, 64 * KiB)
        # the length is clipped to the end of the image
        status = img.block_status(128 * KiB, 10 * MiB)
        assert status.length == MiB - 128 * KiB and status.zero
        for offset, length in ((MiB, 1), (0, 0), (-1, 1), (0, -5)):
            with pytest.raises(OSError) as e:
                img.block_status(offset, length)
            assert e.value.errno in (errno.EIO, errno.EINVAL)


def test_probing_warns(path, capfd):
    with open_image(path) as img:
        assert img.format == 'raw'
    assert 'probing guessed raw' in capfd.readouterr().err
    with open_image(path, read_only=True) as img:
        assert img.read_only
    assert capfd.readouterr().err == ''


def test_open_forms(path):
    with open_image({'driver': 'raw', 'file': {'driver': 'file',
                                               'filename': path}}) as img:
        assert img.read(1, 1) == b'\1'
    with open_image({'driver': 'raw', 'file.filename': path}) as img:
        assert img.read(2, 1) == b'\2'
    with open_image('json:{"driver": "raw", "file": {"filename": "%s"}}'
                    % path) as img:
        assert img.read(3, 1) == b'\3'
    with open_image(path, fmt='file') as img:
        assert img.format == 'file'
    import pathlib
    with open_image(pathlib.Path(path), fmt='raw') as img:
        assert img.length() == MiB


def test_null_co_and_kwargs():
    with open_image('null-co://', fmt='null-co', size='4M', latency_ns=10,
                    read_zeroes=True) as img:
        assert img.length() == 4 * MiB
        assert img.read(0, 8) == bytes(8)
        assert img.block_status(0, MiB).zero
    with open_image('null-co://', fmt='raw',
                    file={'size': '1M', 'read_zeroes': 'on'}) as img:
        assert img.length() == MiB
        assert img.filename.startswith('json:')


def test_cache_modes(path):
    with open_image(path, fmt='raw') as img:
        assert block_backend.blk_enable_write_cache(img.blk)
    with open_image(path, fmt='raw', cache='writethrough') as img:
        assert not block_backend.blk_enable_write_cache(img.blk)
        img.write(0, b'wt')
    with open_image(path, fmt='raw', cache='unsafe') as img:
        img.write(0, b'un')
        img.flush()
    try:
        img = open_image(path, fmt='raw', cache='none')
    except OSError as e:
        pytest.skip('O_DIRECT does not work here: %s' % e)
    with img:
        assert img.bs.file.bs.open_flags & BDRV_O_NOCACHE
        img.write(3, b'direct')
        assert img.read(0, 9) == b'un\2direct'


def test_copy_on_read_and_discard_options(path):
    with open_image(path, fmt='raw', copy_on_read=True,
                    detect_zeroes='unmap', discard='unmap') as img:
        assert img.bs.copy_on_read == 1
        img.write(0, bytes(4096))
        assert img.read(0, 4096) == bytes(4096)
    with open_image(path, fmt='raw', discard='ignore') as img:
        img.discard(0, 64 * KiB)
        # ignored: the data is still there
        assert img.read(4096, 2) == b'\0\1'


# --- bad input -----------------------------------------------------------------

EIO_READ = 'read failed: Input/output error'


@pytest.mark.parametrize('offset,length', [
    (-1, 1), (-512, 512), (0, -1), (MiB, 1), (MiB - 1, 2), (MiB + 1, 0),
    (0, MiB + 1), (0, INT_MAX + 1), (0, 1 << 40), (1 << 62, 1),
    (-(1 << 63), 1), (1 << 70, 1),
])
def test_out_of_range(path, offset, length):
    before = digest(path)
    with open_image(path, fmt='raw') as img:
        with pytest.raises(OSError) as e:
            img.read(offset, length)
        assert (e.value.errno, e.value.strerror) == (errno.EIO, EIO_READ)
        if 0 <= length <= 2 * MiB:
            with pytest.raises(OSError) as e:
                img.write(offset, b'x' * length)
            assert e.value.errno == errno.EIO
        with pytest.raises(OSError) as e:
            img.write_zeroes(offset, length)
        assert e.value.errno == errno.EIO
        assert e.value.strerror == 'write failed: Input/output error'
        with pytest.raises(OSError) as e:
            img.discard(offset, length)
        assert e.value.strerror == 'discard failed: Input/output error'
    assert digest(path) == before


def test_write_past_end_changes_nothing(path):
    before = digest(path)
    with open_image(path, fmt='raw') as img:
        with pytest.raises(OSError) as e:
            img.write(MiB - 3, b'abcdef')
        assert e.value.errno == errno.EIO
    assert digest(path) == before


def test_zero_length_at_the_end_is_fine(path):
    with open_image(path, fmt='raw') as img:
        assert img.read(MiB, 0) == b''
        assert img.write(MiB, b'') == 0


@settings(max_examples=150, deadline=None)
@given(offset=st.integers(-2 * MiB, 2 * MiB) | st.integers(-2**64, 2**64),
       length=st.integers(-2 * MiB, 2 * MiB) | st.integers(-2**64, 2**64))
def test_random_ranges(tmp_path_factory, offset, length):
    p = tmp_path_factory.mktemp('r') / 'img.raw'
    p.write_bytes(b'\x5a' * (64 * KiB))
    with open_image(str(p), fmt='raw') as img:
        valid = 0 <= offset and 0 <= length and offset + length <= 64 * KiB
        try:
            data = img.read(offset, length)
        except OSError as e:
            assert not valid and e.errno == errno.EIO
        else:
            assert valid and data == b'\x5a' * length
        try:
            img.write_zeroes(offset, length)
        except OSError as e:
            assert not valid and e.errno == errno.EIO
        else:
            assert valid
    expect = bytearray(b'\x5a' * (64 * KiB))
    if valid:
        expect[offset:offset + length] = bytes(length)
    assert p.read_bytes() == expect


def test_wrong_types(path):
    with open_image(path, fmt='raw') as img:
        for bad in ('0', 1.0, None, True):
            with pytest.raises(TypeError):
                img.read(bad, 1)
            with pytest.raises(TypeError):
                img.read(0, bad)
        with pytest.raises(TypeError):
            img.write(0, 'text')
        with pytest.raises(TypeError):
            img.readinto(0, b'read-only')
    with pytest.raises(TypeError):
        open_image(42)


def test_read_only_image(path):
    before = digest(path)
    with open_image(path, fmt='raw', read_only=True) as img:
        assert img.read_only
        assert img.read(0, 2) == b'\0\1'
        for op, args in ((img.write, (0, b'x')),
                         (img.write_zeroes, (0, 512)),
                         (img.discard, (0, 512))):
            with pytest.raises(PermissionError) as e:
                op(*args)
            assert e.value.errno == errno.EPERM
            assert e.value.strerror.endswith('failed: Operation not '
                                             'permitted')
        img.flush()
    assert digest(path) == before


def test_missing_file(tmp_path):
    missing = str(tmp_path / 'missing.raw')
    for fmt in (None, 'raw', 'file'):
        with pytest.raises(FileNotFoundError) as e:
            open_image(missing, fmt=fmt)
        assert e.value.errno == errno.ENOENT
        assert e.value.strerror == \
            "Could not open '%s': No such file or directory" % missing


def test_directory_and_fifo(tmp_path):
    d = str(tmp_path)
    with pytest.raises(IsADirectoryError) as e:
        open_image(d, fmt='raw')
    assert e.value.strerror == "Could not open '%s': Is a directory" % d
    with pytest.raises(OSError) as e:
        open_image(d, fmt='raw', read_only=True)
    assert e.value.errno == errno.EINVAL
    assert e.value.strerror == \
        "'file' driver requires '%s' to be a regular file" % d
    fifo = str(tmp_path / 'fifo')
    os.mkfifo(fifo)
    with pytest.raises(OSError) as e:
        open_image(fifo, fmt='raw', read_only=True)
    assert e.value.errno == errno.EINVAL


@pytest.mark.skipif(os.geteuid() == 0,
                    reason='root reads files whatever their mode')
def test_unreadable_file(path):
    os.chmod(path, 0)
    with pytest.raises(PermissionError) as e:
        open_image(path, fmt='raw')
    assert e.value.errno == errno.EACCES
    assert e.value.strerror == \
        "Could not open '%s': Permission denied" % path


def test_unreadable_file_simulated(path, monkeypatch):
    """What an unprivileged user gets (this also runs as root)."""
    real = os.open

    def denied(name, *args, **kwargs):
        if name == path:
            raise PermissionError(errno.EACCES, 'Permission denied')
        return real(name, *args, **kwargs)

    monkeypatch.setattr(os, 'open', denied)
    with pytest.raises(PermissionError) as e:
        open_image(path, fmt='raw')
    assert e.value.strerror == \
        "Could not open '%s': Permission denied" % path


@pytest.mark.parametrize('kwargs,err,msg', [
    ({'fmt': 'foo'}, errno.ENOENT, "Unknown driver 'foo'"),
    ({'fmt': 'raw', 'bogus': 1}, errno.EINVAL,
     "Block format 'raw' does not support the option 'bogus'"),
    ({'fmt': 'raw', 'file': {'bogus': 1}}, errno.EINVAL,
     "Block protocol 'file' doesn't support the option 'bogus'"),
    ({'fmt': 'raw', 'cache': 'bogus'}, errno.EINVAL,
     'Invalid cache option: bogus'),
    ({'fmt': 'raw', 'discard': 'bogus'}, errno.EINVAL,
     'Invalid discard option'),
    ({'fmt': 'raw', 'detect_zeroes': 'bogus'}, errno.EINVAL,
     'invalid parameter value: bogus'),
    ({'fmt': 'raw', 'read_only': True, 'copy_on_read': True}, errno.EINVAL,
     "Can't use copy-on-read on read-only device"),
])
def test_bad_options(path, kwargs, err, msg):
    with pytest.raises(OSError) as e:
        open_image(path, **kwargs)
    assert (e.value.errno, e.value.strerror) == (err, msg)


def test_bad_open_strings():
    for name, msg in (('json:{bad', 'Could not parse the JSON options'),
                      ('json:[1]', 'Invalid JSON object given'),
                      ('foo://bar', "Unknown protocol 'foo'"),
                      ('null-co://x', "The only allowed filename for this "
                       "driver is 'null-co://'")):
        with pytest.raises(OSError) as e:
            open_image(name)
        assert (e.value.errno, e.value.strerror) == (errno.EINVAL, msg)


def test_close(path):
    img = open_image(path, fmt='raw')
    img.close()
    img.close()
    assert repr(img) == '<Image closed>'
    with pytest.raises(ValueError):
        img.read(0, 1)
    with pytest.raises(ValueError):
        img.length()
    # the file is closed, the node gone
    assert not core.graph_bdrv_states or all(
        bs.filename != path for bs in core.graph_bdrv_states)


def test_open_image_takes_throttling_options():
    """The -drive style throttling.* options work through the front, and a
    refused combination is an OSError with QEMU's message."""
    with open_image('null-co://', fmt='null-co',
                    **{'throttling.iops-total': 1000}) as img:
        assert img.bs.throttle_state is not None
        assert len(img.read(0, 512)) == 512
    with pytest.raises(OSError) as info:
        open_image('null-co://', fmt='null-co',
                   **{'throttling.iops-total': 10,
                      'throttling.iops-read': 1})
    assert info.value.errno == errno.EINVAL
    assert 'total values and read/write values' in str(info.value)
