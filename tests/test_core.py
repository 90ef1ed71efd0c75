"""Tests of block/core.py (QEMU's block.c): opening in every form, probing,
the error of every bad option, driver or file (checked against the
installed qemu-io where it is there), references, close and unref, length
and truncate, reopen, dirty bitmaps, before-write notifiers, image
creation and the helpers around them.
"""

import errno
import fcntl
import os
import shutil
import subprocess

import pytest

import drivers
from block import block_backend, core, io
from block.block_int import (BDRV_O_ALLOW_RDWR, BDRV_O_COPY_ON_READ,
                             BDRV_O_NOCACHE, BDRV_O_NO_BACKING,
                             BDRV_O_NO_FLUSH,
                             BDRV_O_PROTOCOL, BDRV_O_RDWR, BDRV_O_SNAPSHOT,
                             BDRV_O_UNMAP, BDRV_REQ_ZERO_WRITE,
                             BLKDBG_READ_AIO,
                             BLOCKDEV_DETECT_ZEROES_OPTIONS_UNMAP,
                             BlockDriver, BlockDriverInfo)
from util.aio import aio_context_new, qemu_get_aio_context
from util.hbitmap import HBitmapIter, hbitmap_iter_next
from util.notify import Notifier, NotifierWithReturn

MiB = 1 << 20


@pytest.fixture
def img(tmp_path):
    """A 1 MiB raw image whose sector n holds the byte n % 256."""
    path = tmp_path / 'test.raw'
    path.write_bytes(b''.join(bytes([n % 256]) * 512 for n in range(2048)))
    return str(path)


def bdrv_open(filename, options=None, flags=BDRV_O_RDWR):
    """(ret, bs, error message) of core.bdrv_open."""
    pbs, errp = [None], [None]
    ret = core.bdrv_open(pbs, filename, None, options, flags, errp)
    return ret, pbs[0], errp[0].msg if errp[0] else None


def open_ok(filename, options=None, flags=BDRV_O_RDWR):
    ret, bs, msg = bdrv_open(filename, options, flags)
    assert ret == 0, msg
    return bs


def pread(bs, offset, count):
    buf = bytearray(count)
    assert io.bdrv_pread(bs, offset, buf, count) == count
    return bytes(buf)


@pytest.fixture(autouse=True)
def no_leaks():
    """Every test closes what it opens."""
    nodes = list(core.graph_bdrv_states)
    yield
    assert core.graph_bdrv_states == nodes
    assert not block_backend.blk_backends


# --- opening ----------------------------------------------------------------

def test_open_filename_probes_raw(img, capfd):
    bs = open_ok(img)
    assert core.bdrv_get_format_name(bs) == 'raw'
    assert bs.probed
    assert core.bdrv_get_format_name(bs.file.bs) == 'file'
    assert not bs.file.bs.probed
    assert bs.filename == img
    assert core.bdrv_getlength(bs) == MiB
    assert pread(bs, 512 * 3, 4) == b'\3\3\3\3'
    # QEMU's warning, once, on stderr
    err = capfd.readouterr().err
    assert err == ("WARNING: Image format was not specified for '%s' and "
                   "probing guessed raw.\n"
                   "         Automatically detecting the format is dangerous "
                   "for raw images, write operations on block 0 will be "
                   "restricted.\n"
                   "         Specify the 'raw' format explicitly to remove "
                   "the restrictions.\n" % img)
    core.bdrv_unref(bs)


def test_open_probed_read_only_no_warning(img, capfd):
    bs = open_ok(img, flags=0)
    assert bs.probed and core.bdrv_is_read_only(bs)
    assert capfd.readouterr().err == ''
    core.bdrv_unref(bs)


def test_open_with_format(img, capfd):
    bs = open_ok(img, {'driver': 'raw'})
    assert not bs.probed
    assert capfd.readouterr().err == ''
    core.bdrv_unref(bs)


def test_open_protocol_only(img):
    bs = open_ok(img, None, BDRV_O_RDWR | BDRV_O_PROTOCOL)
    assert core.bdrv_get_format_name(bs) == 'file'
    assert bs.file is None
    core.bdrv_unref(bs)


def test_open_options_dict(img):
    bs = open_ok(None, {'driver': 'raw', 'file.driver': 'file',
                        'file.filename': img})
    assert core.bdrv_get_format_name(bs) == 'raw'
    assert bs.filename == img
    core.bdrv_unref(bs)


def test_open_json(img):
    bs = open_ok('json:{"driver": "raw", "file": {"driver": "file", '
                 '"filename": "%s"}}' % img)
    assert core.bdrv_get_format_name(bs) == 'raw'
    assert pread(bs, 512, 2) == b'\1\1'
    core.bdrv_unref(bs)


def test_open_json_options_given_directly_win(img, tmp_path):
    other = tmp_path / 'other.raw'
    other.write_bytes(b'\xee' * 512)
    bs = open_ok('json:{"driver": "raw", "file.filename": "%s"}' % img,
                 {'file.filename': str(other)})
    assert pread(bs, 0, 1) == b'\xee'
    core.bdrv_unref(bs)


def test_open_file_prefix(img):
    bs = open_ok('file:' + img, {'driver': 'raw'})
    assert bs.file.bs.filename == img
    core.bdrv_unref(bs)


def test_open_null_co_protocol_prefix(capfd):
    bs = open_ok('null-co://')
    assert core.bdrv_get_format_name(bs) == 'raw'
    assert core.bdrv_get_format_name(bs.file.bs) == 'null-co'
    assert bs.filename == 'null-co://'
    assert core.bdrv_getlength(bs) == 1 << 30
    assert 'null-co://' in capfd.readouterr().err
    core.bdrv_unref(bs)


def test_protocol_prefixes_come_from_the_registry():
    protocols = {d.protocol_name for d in drivers.bdrv_drivers
                 if d.protocol_name}
    assert {'file', 'null-co', 'null-aio'} <= protocols
    for name in protocols - {'file'}:
        assert drivers.bdrv_find_protocol(name + ':x', True, None) \
            .protocol_name == name
    # without a prefix, or a '/' before the ':', it is the file protocol
    assert drivers.bdrv_find_protocol('/a:b', True, None).format_name == \
        'file'
    assert drivers.bdrv_find_protocol('null-co://', False, None) \
        .format_name == 'file'


def test_refresh_filename_json():
    bs = open_ok(None, {'driver': 'null-co', 'size': '4096'},
                 BDRV_O_RDWR | BDRV_O_PROTOCOL)
    # an option of its own: the filename must carry it
    assert bs.filename == 'json:{"size": "4096", "driver": "null-co"}'
    core.bdrv_unref(bs)


def test_node_names(img):
    bs = open_ok(img, {'driver': 'raw', 'node-name': 'top',
                       'file.node-name': 'proto'})
    assert core.bdrv_find_node('top') is bs
    assert core.bdrv_find_node('proto') is bs.file.bs
    assert core.bdrv_lookup_bs(None, 'proto', None) is bs.file.bs
    # a generated name cannot be chosen by a user
    anon = open_ok(img, {'driver': 'raw'})
    assert anon.node_name.startswith('#block')
    assert not core.id_wellformed(anon.node_name)
    ret, _, msg = bdrv_open(img, {'driver': 'raw', 'node-name': 'top'})
    assert (ret, msg) == (-errno.EINVAL, 'Duplicate node name')
    core.bdrv_unref(anon)
    core.bdrv_unref(bs)
    assert core.bdrv_find_node('top') is None


def test_open_reference(img):
    bs = open_ok(img, {'driver': 'raw', 'node-name': 'base'})
    assert bs.refcnt == 1
    ref = open_ok(None, {'driver': 'raw', 'file': 'base'})
    assert ref.file.bs is bs
    assert bs.refcnt == 2
    core.bdrv_unref(ref)
    assert bs.refcnt == 1
    ret, _, msg = bdrv_open(None, {'driver': 'raw', 'file': 'nothere'})
    assert ret == -errno.EINVAL
    assert msg == "Cannot find device='nothere' nor node-name='nothere'"
    pbs, errp = [None], [None]
    assert core.bdrv_open(pbs, img, 'base', None, 0, errp) == -errno.EINVAL
    assert errp[0].msg == ('Cannot reference an existing block device with '
                           'additional options or a new filename')
    core.bdrv_unref(bs)


# --- errors of open: (filename, options, flags, errno, message) --------------

OPEN_ERRORS = [
    ('{dir}/nonexistent', None, BDRV_O_RDWR, -errno.EINVAL,
     "Could not open '{dir}/nonexistent': No such file or directory"),
    ('{dir}/nonexistent', {'driver': 'raw'}, BDRV_O_RDWR, -errno.EINVAL,
     "Could not open '{dir}/nonexistent': No such file or directory"),
    ('{dir}/nonexistent', None, BDRV_O_RDWR | BDRV_O_PROTOCOL,
     -errno.ENOENT,
     "Could not open '{dir}/nonexistent': No such file or directory"),
    ('{img}', {'driver': 'foo'}, BDRV_O_RDWR, -errno.ENOENT,
     "Unknown driver 'foo'"),
    ('json:{{bad', None, BDRV_O_RDWR, -errno.EINVAL,
     'Could not parse the JSON options'),
    ('json:[1]', None, BDRV_O_RDWR, -errno.EINVAL,
     'Invalid JSON object given'),
    ('foo://bar', None, BDRV_O_RDWR, -errno.EINVAL, "Unknown protocol 'foo'"),
    ('{img}', {'driver': 'raw', 'bogus': '1'}, BDRV_O_RDWR, -errno.EINVAL,
     "Block format 'raw' does not support the option 'bogus'"),
    ('{img}', {'driver': 'raw', 'file.bogus': '1'}, BDRV_O_RDWR,
     -errno.EINVAL, "Block protocol 'file' doesn't support the option "
     "'bogus'"),
    (None, {'driver': 'file', 'filename': '{img}', 'file.filename': 'x'},
     BDRV_O_RDWR, -errno.EINVAL,
     "Block protocol 'file' doesn't support the option 'file.filename'"),
    (None, {'driver': 'file'}, BDRV_O_RDWR, -errno.EINVAL,
     "The 'file' block driver requires a file name"),
    (None, {'filename': '{img}'}, BDRV_O_RDWR, -errno.EINVAL,
     'Must specify either driver or file'),
    (None, {'driver': 'raw'}, BDRV_O_RDWR, -errno.EINVAL,
     'A block device must be specified for "file"'),
    (None, {'driver': 'raw', 'file.driver': 'file', 'file.filename': '{img}',
            'file': 'foo'}, BDRV_O_RDWR, -errno.EINVAL,
     'Cannot reference an existing block device with additional options '
     'or a new filename'),
    ('{img}', {'driver': 'raw', 'cache.direct': 'maybe'}, BDRV_O_RDWR,
     -errno.EINVAL, "Parameter 'cache.direct' expects 'on' or 'off'"),
    ('{img}', {'driver': 'raw', 'read-only': 'maybe'}, BDRV_O_RDWR,
     -errno.EINVAL, "Parameter 'read-only' expects 'on' or 'off'"),
    ('{img}', {'driver': 'raw', 'discard': 'bogus'}, BDRV_O_RDWR,
     -errno.EINVAL, 'Invalid discard option'),
    ('{img}', {'driver': 'raw', 'detect-zeroes': 'bogus'}, BDRV_O_RDWR,
     -errno.EINVAL, 'invalid parameter value: bogus'),
    ('{img}', {'driver': 'raw', 'detect-zeroes': 'unmap'}, BDRV_O_RDWR,
     -errno.EINVAL, 'setting detect-zeroes to unmap is not allowed without '
     'setting discard operation to unmap'),
    ('{img}', {'driver': 'raw', 'node-name': '1abc'}, BDRV_O_RDWR,
     -errno.EINVAL, "Invalid node-name: '1abc'"),
    ('{img}', {'driver': 'file', 'aio': 'native'}, BDRV_O_RDWR,
     -errno.EINVAL, 'aio=native was specified, but it requires '
     'cache.direct=on, which was not specified.'),
    ('{img}', {'driver': 'file', 'aio': 'bogus'}, BDRV_O_RDWR,
     -errno.EINVAL, 'invalid parameter value: bogus'),
    ('{img}', {'driver': 'file', 'locking': 'bogus'}, BDRV_O_RDWR,
     -errno.EINVAL, 'invalid parameter value: bogus'),
    ('{dir}', {'driver': 'raw'}, BDRV_O_RDWR, -errno.EINVAL,
     "Could not open '{dir}': Is a directory"),
    ('{dir}', {'driver': 'raw'}, 0, -errno.EINVAL,
     "'file' driver requires '{dir}' to be a regular file"),
    (None, {'driver': 'null-co', 'size': 'abc'}, BDRV_O_RDWR, -errno.EINVAL,
     "Parameter 'size' expects a non-negative number below 2^64"),
    (None, {'driver': 'null-co', 'latency-ns': '-1'}, BDRV_O_RDWR,
     -errno.EINVAL, 'latency-ns is invalid'),
    (None, {'driver': 'null-co', 'latency-ns': 'x'}, BDRV_O_RDWR,
     -errno.EINVAL, "Parameter 'latency-ns' expects a number"),
    (None, {'driver': 'null-co', 'read-zeroes': 'maybe'}, BDRV_O_RDWR,
     -errno.EINVAL, "Parameter 'read-zeroes' expects 'on' or 'off'"),
    ('null-co://foo', None, BDRV_O_RDWR, -errno.EINVAL,
     "The only allowed filename for this driver is 'null-co://'"),
    ('{img}', {'driver': 'raw'}, BDRV_O_COPY_ON_READ, -errno.EINVAL,
     "Can't use copy-on-read on read-only device"),
]


def _fill(value, img, tmp_path):
    if isinstance(value, str):
        return value.format(img=img, dir=tmp_path)
    if isinstance(value, dict):
        return {k: _fill(v, img, tmp_path) for k, v in value.items()}
    return value


@pytest.mark.parametrize('filename,options,flags,ret,msg', OPEN_ERRORS)
def test_open_errors(img, tmp_path, filename, options, flags, ret, msg):
    filename, options, msg = (_fill(x, img, tmp_path)
                              for x in (filename, options, msg))
    assert bdrv_open(filename, options, flags) == (ret, None, msg)


def test_open_error_keeps_errno(tmp_path):
    pbs, errp = [None], [None]
    core.bdrv_open(pbs, str(tmp_path / 'nonexistent'), None, None,
                   BDRV_O_RDWR, errp)
    assert errp[0].errno == errno.ENOENT


def test_open_fifo_does_not_block(tmp_path):
    fifo = str(tmp_path / 'fifo')
    os.mkfifo(fifo)
    assert bdrv_open(fifo, {'driver': 'raw'}, 0) == (
        -errno.EINVAL, None,
        "'file' driver requires '%s' to be a regular file" % fifo)


QEMU_IO = shutil.which('qemu-io')


def _image_opts(options):
    return ','.join('%s=%s' % kv for kv in options.items())


@pytest.mark.skipif(not QEMU_IO, reason='qemu-io is not installed')
@pytest.mark.parametrize('filename,options,flags,ret,msg', [
    e for e in OPEN_ERRORS
    # qemu-io aborts on these (error_abort in null.c), or has no such flag
    if not (e[1] and e[1].get('driver') == 'null-co' and
            e[4] != 'latency-ns is invalid')
    and not e[2] & (BDRV_O_PROTOCOL | BDRV_O_SNAPSHOT | BDRV_O_COPY_ON_READ)
    and not (e[1] and 'detect-zeroes' in e[1])
])
def test_open_errors_match_qemu_io(img, tmp_path, filename, options, flags,
                                   ret, msg):
    """Our message is what qemu-io 7.2 prints (its JSON parser says more)."""
    filename, options, msg = (_fill(x, img, tmp_path)
                              for x in (filename, options, msg))
    args = [QEMU_IO, '-c', 'read 0 512']
    if not flags & BDRV_O_RDWR:
        args.append('-r')
    if filename is None:
        args += ['--image-opts', _image_opts(options)]
    elif options:
        opts = dict(options)
        opts.setdefault('driver', 'raw')
        if opts['driver'] == 'raw':
            opts.setdefault('file.filename', filename)
        else:
            opts.setdefault('filename', filename)
        args += ['--image-opts', _image_opts(opts)]
    else:
        args.append(filename)
    out = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert msg in out.stderr


# --- close, references ------------------------------------------------------

def test_close_and_unref(img):
    bs = open_ok(img, {'driver': 'raw'})
    file_bs = bs.file.bs
    fd = file_bs.opaque.fd
    core.bdrv_ref(bs)
    core.bdrv_unref(bs)
    assert bs.drv is not None
    notified = []
    core.bdrv_add_close_notifier(bs, Notifier(lambda n, data:
                                              notified.append(data)))
    core.bdrv_unref(bs)
    assert notified == [bs]
    assert bs.drv is None and bs.file is None
    assert file_bs.drv is None and file_bs.refcnt == 0
    with pytest.raises(OSError):
        os.fstat(fd)


def test_bdrv_close_keeps_the_node(img):
    bs = open_ok(img, {'driver': 'raw'})
    core.bdrv_close(bs)
    assert bs.drv is None
    assert not core.bdrv_is_inserted(bs)
    assert core.bdrv_getlength(bs) == -errno.ENOMEDIUM
    assert core.bdrv_truncate(bs, 0) == -errno.ENOMEDIUM
    core.bdrv_unref(bs)


def test_unref_none():
    core.bdrv_unref(None)


# --- length, truncate, info -------------------------------------------------

def test_getlength_truncate(img):
    bs = open_ok(img, {'driver': 'raw'})
    assert core.bdrv_nb_sectors(bs) == 2048
    assert core.bdrv_get_geometry(bs) == 2048
    assert core.bdrv_truncate(bs, 3 * MiB) == 0
    assert core.bdrv_getlength(bs) == 3 * MiB
    assert os.path.getsize(img) == 3 * MiB
    # not a multiple of the sector size: the length is rounded up
    assert core.bdrv_truncate(bs, 1000) == 0
    assert core.bdrv_getlength(bs) == 1024
    assert os.path.getsize(img) == 1000
    core.bdrv_unref(bs)

    ro = open_ok(img, {'driver': 'raw'}, 0)
    assert core.bdrv_truncate(ro, MiB) == -errno.EACCES
    core.bdrv_unref(ro)

    null = open_ok('null-co://', {'driver': 'null-co'},
                   BDRV_O_RDWR | BDRV_O_PROTOCOL)
    assert core.bdrv_truncate(null, MiB) == -errno.ENOTSUP
    core.bdrv_unref(null)


def test_truncate_checks_the_length(img):
    bs = open_ok(img, {'driver': 'raw'})
    errp = [None]
    assert core.bdrv_truncate(bs, -512, 'off', errp) == -errno.EINVAL
    assert errp[0].msg == 'Image size cannot be negative'
    errp = [None]
    assert (core.bdrv_truncate(bs, core.BDRV_MAX_LENGTH + 1, 'off', errp)
            == -errno.EIO)
    assert errp[0].msg == ('offset(9223372035781033985) exceeds '
                           'maximum(9223372035781033984)')
    assert core.bdrv_getlength(bs) == MiB
    core.bdrv_unref(bs)


def test_truncate_over_a_longer_backing_file_zeroes(tmp_path, img):
    overlay = str(tmp_path / 'overlay.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', img,
                    '-F', 'raw', overlay, '64k'], check=True)
    bs = open_ok(overlay)
    # the raw file driver zeroes by growing, qcow2 with zero clusters
    assert bs.supported_truncate_flags == BDRV_REQ_ZERO_WRITE
    assert bs.file.bs.supported_truncate_flags == BDRV_REQ_ZERO_WRITE
    assert core.bdrv_truncate(bs, 128 * 1024) == 0
    assert pread(bs, 64 * 1024, 64 * 1024) == bytes(64 * 1024)
    assert pread(bs, 512, 512) == bytes([1]) * 512

    # a driver that cannot zero refuses, as 7.2 does
    bs.supported_truncate_flags = 0
    errp = [None]
    assert core.bdrv_truncate(bs, 256 * 1024, 'off', errp) == -errno.ENOTSUP
    assert errp[0].msg == 'Block driver does not support requested flags'
    assert core.bdrv_getlength(bs) == 128 * 1024
    core.bdrv_unref(bs)


def test_allocated_file_size(tmp_path):
    path = str(tmp_path / 'sparse.raw')
    with open(path, 'wb') as f:
        f.truncate(16 * MiB)
    bs = open_ok(path, {'driver': 'raw'})
    before = core.bdrv_get_allocated_file_size(bs)
    assert before < MiB
    assert io.bdrv_pwrite(bs, 4 * MiB, b'x' * MiB, MiB) == MiB
    assert core.bdrv_get_allocated_file_size(bs) >= before + MiB
    core.bdrv_unref(bs)


def test_allocated_file_size_unknown_under_a_protocol_driver(img):
    """blkdebug's data need not be its image's, so 7.2 does not say (and
    qemu-img info prints "disk size: unavailable")."""
    bs = open_ok('blkdebug::' + img, {'driver': 'raw'})
    assert core.bdrv_get_allocated_file_size(bs) == -errno.ENOTSUP
    assert core.bdrv_get_allocated_file_size(bs.file.bs.file.bs) > 0
    core.bdrv_unref(bs)


def test_info_and_flags(img):
    bs = open_ok(img, {'driver': 'raw', 'discard': 'unmap'})
    bdi = BlockDriverInfo()
    assert core.bdrv_get_info(bs, bdi) == 0
    assert bdi.can_write_zeroes_with_unmap
    assert core.bdrv_unallocated_blocks_are_zero(bs)
    assert core.bdrv_can_write_zeroes_with_unmap(bs)
    assert core.bdrv_has_zero_init(bs) == 1
    flags = core.bdrv_get_flags(bs)
    assert flags & BDRV_O_RDWR and flags & BDRV_O_UNMAP
    assert flags & BDRV_O_ALLOW_RDWR
    assert not core.bdrv_is_read_only(bs) and not core.bdrv_is_sg(bs)
    assert core.bdrv_is_inserted(bs)
    assert core.bdrv_get_device_name(bs) == ''
    assert core.bdrv_get_device_or_node_name(bs) == bs.node_name
    assert core.bdrv_get_aio_context(bs) is qemu_get_aio_context()
    assert core.bdrv_opt_mem_align(bs) >= core.bdrv_min_mem_align(bs) > 0
    assert core.bdrv_opt_mem_align(None) >= 4096
    core.bdrv_unref(bs)

    no_unmap = open_ok(img, {'driver': 'raw', 'discard': 'ignore'})
    assert not core.bdrv_can_write_zeroes_with_unmap(no_unmap)
    core.bdrv_unref(no_unmap)


def test_cache_options_reach_the_file(img):
    bs = open_ok(img, {'driver': 'raw', 'cache.no-flush': 'on'})
    assert bs.open_flags & BDRV_O_NO_FLUSH
    assert bs.file.bs.open_flags & BDRV_O_NO_FLUSH
    assert not bs.file.bs.open_flags & BDRV_O_NOCACHE
    core.bdrv_unref(bs)

    # a child's own setting wins over the inherited one
    bs = open_ok(img, {'driver': 'raw', 'cache.no-flush': 'on',
                       'file.cache.no-flush': 'off'})
    assert not bs.file.bs.open_flags & BDRV_O_NO_FLUSH
    core.bdrv_unref(bs)


def test_read_only_option(img):
    bs = open_ok(img, {'driver': 'raw', 'read-only': 'on'})
    assert core.bdrv_is_read_only(bs)
    assert core.bdrv_is_read_only(bs.file.bs)
    assert io.bdrv_pwrite(bs, 0, b'x', 1) == -errno.EPERM
    core.bdrv_unref(bs)


def test_detect_zeroes_option(img):
    bs = open_ok(img, {'driver': 'raw', 'detect-zeroes': 'unmap',
                       'discard': 'unmap'})
    assert bs.detect_zeroes == BLOCKDEV_DETECT_ZEROES_OPTIONS_UNMAP
    core.bdrv_unref(bs)


def test_copy_on_read_flag(img):
    bs = open_ok(img, {'driver': 'raw'}, BDRV_O_RDWR | BDRV_O_COPY_ON_READ)
    assert bs.copy_on_read == 1
    assert not bs.file.bs.copy_on_read
    core.bdrv_unref(bs)


# --- reopen -----------------------------------------------------------------

def test_reopen_read_only_and_back(img):
    bs = open_ok(img, {'driver': 'raw'})
    assert core.bdrv_reopen(bs, bs.open_flags & ~BDRV_O_RDWR, None) == 0
    assert core.bdrv_is_read_only(bs) and core.bdrv_is_read_only(bs.file.bs)
    assert io.bdrv_pwrite(bs, 0, b'x', 1) == -errno.EPERM
    assert core.bdrv_reopen(bs, bs.open_flags | BDRV_O_RDWR, None) == 0
    assert io.bdrv_pwrite(bs, 0, b'x', 1) == 1
    core.bdrv_unref(bs)
    with open(img, 'rb') as f:
        assert f.read(2) == b'x\0'


def test_reopen_to_rw_refused_when_opened_read_only(img):
    bs = open_ok(img, {'driver': 'raw', 'file.node-name': 'ro'}, 0)
    errp = [None]
    assert core.bdrv_reopen(bs, BDRV_O_RDWR, errp) == -1
    # the children are prepared first
    assert errp[0].msg == "Node 'ro' is read only"
    assert core.bdrv_is_read_only(bs)
    core.bdrv_unref(bs)


def test_reopen_cache_mode(img):
    bs = open_ok(img, {'driver': 'raw'})
    fd_flags = fcntl.fcntl(bs.file.bs.opaque.fd, fcntl.F_GETFL)
    assert not fd_flags & os.O_DIRECT
    errp = [None]
    ret = core.bdrv_reopen(bs, bs.open_flags | BDRV_O_NOCACHE, errp)
    if ret < 0:
        pytest.skip('O_DIRECT not supported here: %s' % errp[0].msg)
    assert bs.file.bs.open_flags & BDRV_O_NOCACHE
    fd_flags = fcntl.fcntl(bs.file.bs.opaque.fd, fcntl.F_GETFL)
    assert fd_flags & os.O_DIRECT
    assert bs.file.bs.request_alignment >= 512
    # unaligned requests still work, through bounce buffers
    assert pread(bs, 513, 3) == b'\1\1\1'
    assert core.bdrv_reopen(bs, bs.open_flags & ~BDRV_O_NOCACHE, None) == 0
    assert bs.file.bs.request_alignment == 1
    core.bdrv_unref(bs)


def test_reopen_unchangeable_option(img):
    bs = open_ok(img, {'driver': 'raw'})
    queue = core.bdrv_reopen_queue(None, bs, {'filename': 'other'},
                                   bs.open_flags)
    errp = [None]
    assert core.bdrv_reopen_multiple(queue, errp) == -1
    assert errp[0].msg == "Cannot change the option 'filename'"
    core.bdrv_unref(bs)


def reopen_with(bs, options):
    """(ret, error message) of reopening bs with options."""
    queue = core.bdrv_reopen_queue(None, bs, dict(options), bs.open_flags)
    errp = [None]
    ret = core.bdrv_reopen_multiple(queue, errp)
    return ret, errp[0].msg if errp[0] else None


def test_reopen_discard_and_detect_zeroes(img):
    """They change, and stay for the next reopen; the driver may be given
    as it is."""
    bs = open_ok(img, {'driver': 'raw', 'discard': 'ignore'})
    assert reopen_with(bs, {'detect-zeroes': 'unmap'}) == (
        -1, 'setting detect-zeroes to unmap is not allowed without '
        'setting discard operation to unmap')
    assert reopen_with(bs, {'discard': 'unmap', 'detect-zeroes': 'unmap',
                            'driver': 'raw'}) == (0, None)
    assert bs.open_flags & BDRV_O_UNMAP
    assert bs.detect_zeroes == BLOCKDEV_DETECT_ZEROES_OPTIONS_UNMAP
    assert reopen_with(bs, {}) == (0, None)
    assert bs.detect_zeroes == BLOCKDEV_DETECT_ZEROES_OPTIONS_UNMAP
    assert reopen_with(bs, {'discard': 'off'})[1].startswith(
        'setting detect-zeroes to unmap')
    assert reopen_with(bs, {'discard': 'x'}) == (-1,
                                                 'Invalid discard option')
    assert reopen_with(bs, {'driver': 'qcow2'}) == (
        -1, "Cannot change the option 'driver'")
    assert reopen_with(bs, {'auto-read-only': 'x'}) == (
        -1, "Parameter 'auto-read-only' expects 'on' or 'off'")
    assert bs.open_flags & BDRV_O_UNMAP
    core.bdrv_unref(bs)


# --- dirty bitmaps, notifiers -----------------------------------------------

def test_dirty_bitmap_marked_by_writes(img):
    bs = open_ok(img, {'driver': 'raw'})
    bitmap = core.bdrv_create_dirty_bitmap(bs, 65536, 'bm', None)
    other = core.bdrv_create_dirty_bitmap(bs, 4096, None, None)
    assert core.bdrv_dirty_bitmap_granularity(bitmap) == 65536
    assert core.bdrv_find_dirty_bitmap(bs, 'bm') is bitmap
    assert core.bdrv_get_dirty_count(bitmap) == 0

    assert io.bdrv_pwrite(bs, 70000, b'x' * 10, 10) == 10
    # one 64k granule: 128 sectors
    assert core.bdrv_get_dirty_count(bitmap) == 128
    assert core.bdrv_get_dirty(bs, bitmap, 65536 // 512)
    assert not core.bdrv_get_dirty(bs, bitmap, 0)
    assert core.bdrv_get_dirty_count(other) == 8

    core.bdrv_disable_dirty_bitmap(bitmap)
    assert io.bdrv_pwrite(bs, 0, b'x', 1) == 1
    assert core.bdrv_get_dirty_count(bitmap) == 128
    assert core.bdrv_get_dirty_count(other) == 16
    core.bdrv_enable_dirty_bitmap(bitmap)

    assert io.bdrv_write_zeroes(bs, 1024, 1, 0) == 0
    hbi = HBitmapIter()
    core.bdrv_dirty_iter_init(bitmap, hbi)
    assert [hbitmap_iter_next(hbi) for _ in range(3)] == [128, 1024, -1]

    errp = [None]
    assert core.bdrv_create_dirty_bitmap(bs, 65536, 'bm', errp) is None
    assert errp[0].msg == 'Bitmap already exists: bm'

    # truncate resizes the bitmaps
    assert core.bdrv_truncate(bs, 2 * MiB) == 0
    assert bitmap.size == 4096
    assert io.bdrv_pwrite(bs, 2 * MiB - 1, b'x', 1) == 1
    assert core.bdrv_get_dirty(bs, bitmap, 4095)

    core.bdrv_clear_dirty_bitmap(bitmap)
    assert core.bdrv_get_dirty_count(bitmap) == 0
    core.bdrv_release_dirty_bitmap(bs, bitmap)
    core.bdrv_release_dirty_bitmap(bs, other)
    assert bs.dirty_bitmaps == []
    core.bdrv_unref(bs)


def test_default_bitmap_granularity(img):
    bs = open_ok(img, {'driver': 'raw'})
    assert core.bdrv_get_default_bitmap_granularity(bs) == 65536
    core.bdrv_unref(bs)


def test_before_write_notifier(img):
    bs = open_ok(img, {'driver': 'raw'})
    seen = []

    def notify(notifier, req):
        seen.append((req.offset, req.bytes))
        return -errno.EROFS if req.offset == 0 else 0

    io.bdrv_add_before_write_notifier(bs, NotifierWithReturn(notify))
    assert io.bdrv_pwrite(bs, 0, b'x' * 512, 512) == -errno.EROFS
    assert io.bdrv_pwrite(bs, 512, b'y' * 512, 512) == 512
    assert seen == [(0, 512), (512, 512)]
    assert pread(bs, 0, 1) == b'\0'
    core.bdrv_unref(bs)


def test_debug_functions_without_blkdebug(img):
    bs = open_ok(img, {'driver': 'raw'})
    core.bdrv_debug_event(bs, BLKDBG_READ_AIO)
    assert core.bdrv_debug_breakpoint(bs, 'read_aio', 'tag') == -errno.ENOTSUP
    assert core.bdrv_debug_remove_breakpoint(bs, 'tag') == -errno.ENOTSUP
    assert core.bdrv_debug_resume(bs, 'tag') == -errno.ENOTSUP
    assert core.bdrv_debug_is_suspended(bs, 'tag') is False
    core.bdrv_unref(bs)


def test_set_aio_context(img):
    bs = open_ok(img, {'driver': 'raw'})
    ctx = aio_context_new()
    core.bdrv_set_aio_context(bs, ctx)
    assert core.bdrv_get_aio_context(bs) is ctx
    assert core.bdrv_get_aio_context(bs.file.bs) is ctx
    events = []
    core.bdrv_add_aio_context_notifier(
        bs, lambda c, o: events.append(('attach', c)),
        lambda o: events.append(('detach',)), None)
    core.bdrv_set_aio_context(bs, qemu_get_aio_context())
    assert events == [('detach',), ('attach', qemu_get_aio_context())]
    assert core.bdrv_get_aio_context(bs.file.bs) is qemu_get_aio_context()
    core.bdrv_unref(bs)


def test_bdrv_next_iterates_root_nodes(img):
    blk = block_backend.blk_new_open('drive0', img, None, {'driver': 'raw'},
                                     BDRV_O_RDWR, None)
    roots = []
    bs = core.bdrv_next(None)
    while bs:
        roots.append(bs)
        bs = core.bdrv_next(bs)
    assert blk.bs in roots and blk.bs.file.bs not in roots
    assert core.bdrv_get_device_name(blk.bs) == 'drive0'
    assert core.bdrv_lookup_bs('drive0', None, None) is blk.bs
    block_backend.blk_unref(blk)


# --- creation ---------------------------------------------------------------

def test_img_create_raw(tmp_path, capsys):
    path = str(tmp_path / 'new.raw')
    errp = [None]
    core.bdrv_img_create(path, 'raw', None, None, None, MiB + 1, 0, errp,
                         False)
    assert errp[0] is None
    assert capsys.readouterr().out == \
        "Formatting '%s', fmt=raw size=1048577\n" % path
    # rounded up to whole sectors
    assert os.path.getsize(path) == MiB + 512

    core.bdrv_img_create(path, 'raw', None, None,
                         'preallocation=full,nocow=on', 65536, 0, errp, True)
    assert errp[0] is None
    assert os.path.getsize(path) == 65536
    assert os.stat(path).st_blocks * 512 >= 65536

    core.bdrv_img_create(path, 'raw', None, None, 'preallocation=falloc',
                         65536, 0, errp, True)
    assert errp[0] is None
    assert os.stat(path).st_blocks * 512 >= 65536

    core.bdrv_img_create(path, 'raw', None, None, 'size=4k', -1, 0, errp,
                         True)
    assert errp[0] is None
    assert os.path.getsize(path) == 4096


@pytest.mark.parametrize('fmt,options,size,msg', [
    ('foo', None, MiB, "Unknown file format 'foo'"),
    ('raw', None, -1, 'Image creation needs a size parameter'),
    ('raw', 'bogus=1', MiB, "Invalid parameter 'bogus'"),
    ('raw', 'preallocation=bogus', MiB, 'invalid parameter value: bogus'),
    ('raw', 'size=abc', -1,
     "Parameter 'size' expects a non-negative number below 2^64"),
    ('raw', 'backing_file=x', MiB,
     "Backing file not supported for file format 'raw'"),
    ('null-co', None, MiB,
     "Format driver 'null-co' does not support image creation"),
])
def test_img_create_errors(tmp_path, fmt, options, size, msg):
    path = str(tmp_path / 'new.raw')
    errp = [None]
    if options == 'backing_file=x':
        core.bdrv_img_create(path, fmt, 'x', None, None, size, 0, errp, True)
    else:
        core.bdrv_img_create(path, fmt, None, None, options, size, 0, errp,
                             True)
    assert errp[0].msg == msg


def test_create_missing_directory(tmp_path):
    path = str(tmp_path / 'nodir' / 'new.raw')
    errp = [None]
    core.bdrv_img_create(path, 'raw', None, None, None, MiB, 0, errp, True)
    assert errp[0].msg == \
        "Could not create '%s': No such file or directory" % path


def test_bdrv_create_unsupported():
    errp = [None]
    ret = core.bdrv_create(drivers.bdrv_find_format('null-co'), 'x', None,
                           errp)
    assert ret == -errno.ENOTSUP
    assert errp[0].msg == "Driver 'null-co' does not support image creation"


# --- helpers ----------------------------------------------------------------

@pytest.mark.parametrize('mode,flags,writethrough', [
    ('none', BDRV_O_NOCACHE, False),
    ('off', BDRV_O_NOCACHE, False),
    ('directsync', BDRV_O_NOCACHE, True),
    ('writeback', 0, False),
    ('unsafe', BDRV_O_NO_FLUSH, False),
    ('writethrough', 0, True),
])
def test_parse_cache_mode(mode, flags, writethrough):
    pflags, pwt = [BDRV_O_RDWR | BDRV_O_NOCACHE | BDRV_O_NO_FLUSH], [None]
    assert core.bdrv_parse_cache_mode(mode, pflags, pwt) == 0
    assert pflags[0] == BDRV_O_RDWR | flags
    assert pwt[0] is writethrough


def test_parse_cache_and_discard_errors():
    assert core.bdrv_parse_cache_mode('bogus', [0], [False]) == -1
    pflags = [BDRV_O_UNMAP]
    assert core.bdrv_parse_discard_flags('ignore', pflags) == 0
    assert pflags[0] == 0
    for mode in ('on', 'unmap'):
        assert core.bdrv_parse_discard_flags(mode, pflags) == 0
        assert pflags[0] == BDRV_O_UNMAP
    assert core.bdrv_parse_discard_flags('bogus', pflags) == -1


def test_path_helpers():
    assert core.path_has_protocol('null-co://')
    assert core.path_has_protocol('blkdebug:conf:file')
    assert not core.path_has_protocol('/a:b')
    assert not core.path_has_protocol('plain')
    assert core.path_combine('/a/b/img.qcow2', 'base.raw') == '/a/b/base.raw'
    assert core.path_combine('/a/b/img.qcow2', '/c/base') == '/c/base'
    assert core.path_combine('img.qcow2', 'base.raw') == 'base.raw'
    assert core.path_combine('nbd:host:img', 'x') == 'nbd:x'
    errp = [None]
    assert core.bdrv_get_full_backing_filename_from_filename(
        'json:{}', 'base', errp) == ''
    assert errp[0].msg == "Cannot use relative backing file names for " \
        "'json:{}'"


def test_flatten_json_options():
    options = core.parse_json_filename(
        'json:{"driver": "raw", "file": {"driver": "file", "filename": "a"},'
        ' "n": 1, "b": true, "l": [1, {"x": 2}]}', None)
    assert options == {'driver': 'raw', 'file.driver': 'file',
                       'file.filename': 'a', 'n': 1, 'b': True, 'l.0': 1,
                       'l.1.x': 2}


# --- backing files ------------------------------------------------------------

class BackedFormat(BlockDriver):
    """A test format: sector 0 holds b'BKNG' and the backing file name; all
    reads come from the backing file."""
    format_name = 'backed-test'
    supports_backing = True

    @staticmethod
    def bdrv_probe(buf, buf_size, filename):
        return 100 if buf[:4] == b'BKNG' else 0

    @staticmethod
    def bdrv_open(bs, options, flags, errp):
        buf = bytearray(512)
        ret = io.bdrv_pread(bs.file.bs, 0, buf, 512)
        if ret < 0:
            return ret
        bs.backing_file = bytes(buf[4:]).rstrip(b'\0').decode()
        return 0

    @staticmethod
    def bdrv_close(bs):
        pass

    @staticmethod
    def bdrv_getlength(bs):
        return MiB

    @staticmethod
    def bdrv_co_readv(bs, sector_num, nb_sectors, qiov):
        return io.bdrv_co_readv(bs.backing.bs, sector_num, nb_sectors, qiov)


@pytest.fixture
def backed_format():
    drv = BackedFormat()
    drivers.bdrv_register(drv)
    yield drv
    drivers.bdrv_drivers.remove(drv)


def write_backed(path, backing):
    with open(path, 'wb') as f:
        f.write(b'BKNG' + backing.encode())
        f.truncate(4096)


def test_backing_file_opened(img, tmp_path, backed_format):
    top = str(tmp_path / 'top.img')
    write_backed(top, 'test.raw')       # relative to the image
    bs = open_ok(top, flags=BDRV_O_RDWR)
    assert core.bdrv_get_format_name(bs) == 'backed-test'
    base = core.backing_bs(bs)
    assert base.filename == img
    assert core.bdrv_get_format_name(base) == 'raw'
    assert core.bdrv_is_read_only(base)
    assert bs.backing_file == img and bs.backing_format == 'raw'
    assert base.inherits_from is bs
    assert core.bdrv_chain_contains(bs, base)
    assert not core.bdrv_chain_contains(base, bs)
    assert core.bdrv_has_zero_init(bs) == 0
    assert pread(bs, 512 * 5, 2) == b'\5\5'
    core.bdrv_unref(bs)
    assert base.refcnt == 0


@pytest.mark.parametrize('form', ['filename', 'options'])
def test_backing_file_relative_through_blkdebug(img, tmp_path, backed_format,
                                                form):
    """A relative backing file name is taken from the directory of the
    file under the filter (7.2's bdrv_dirname goes down to it)."""
    top = str(tmp_path / 'top.img')
    write_backed(top, 'test.raw')
    if form == 'filename':
        bs = open_ok('blkdebug::' + top, {'driver': 'backed-test'})
    else:
        bs = open_ok(None, {'driver': 'backed-test', 'file.driver': 'blkdebug',
                            'file.image.filename': top})
    assert core.backing_bs(bs).filename == img
    assert core.bdrv_dirname(bs, None) == str(tmp_path) + '/'
    core.bdrv_unref(bs)


def test_backing_options(img, tmp_path, backed_format, capfd):
    top = str(tmp_path / 'top.img')
    write_backed(top, img)
    bs = open_ok(top, {'backing.driver': 'raw', 'backing.node-name': 'b'})
    assert core.bdrv_find_node('b') is core.backing_bs(bs)
    assert not core.backing_bs(bs).probed
    core.bdrv_unref(bs)

    # backing='' opens no backing file
    bs = open_ok(top, {'backing': ''})
    assert bs.backing is None and bs.open_flags & BDRV_O_NO_BACKING
    core.bdrv_unref(bs)
    capfd.readouterr()


def test_backing_file_missing(tmp_path, backed_format):
    top = str(tmp_path / 'top.img')
    write_backed(top, 'missing.raw')
    ret, bs, msg = bdrv_open(top)
    assert (ret, bs) == (-errno.EINVAL, None)
    assert msg == "Could not open backing file: Could not open '%s': No " \
        "such file or directory" % (tmp_path / 'missing.raw')


def test_backing_file_unsupported(img, tmp_path):
    pbs = [None]
    assert core.bdrv_open(pbs, img, None, {'driver': 'raw'}, BDRV_O_RDWR,
                          None) == 0
    bs = pbs[0]
    bs.backing_file = 'x'
    errp = [None]
    assert core.bdrv_open_backing_file(bs, None, errp) == -errno.EINVAL
    assert errp[0].msg == "Driver doesn't support backing files"
    core.bdrv_unref(bs)


def test_bdrv_append_temp_snapshot(img, tmp_path, monkeypatch):
    """snapshot=on: the backend gets a temporary qcow2 overlay over the
    image, opened read-only; writes go to the overlay, which is deleted."""
    monkeypatch.setenv('TMPDIR', str(tmp_path))
    before = open(img, 'rb').read()
    errp = [None]
    blk = block_backend.blk_new_open('snap', img, None, {'driver': 'raw'},
                                     BDRV_O_RDWR | BDRV_O_SNAPSHOT, errp)
    assert blk is not None, errp[0]
    top = block_backend.blk_bs(blk)
    assert top.drv.format_name == 'qcow2'
    base = top.backing.bs
    assert base.drv.format_name == 'raw' and base.read_only
    assert top.blk is blk and base.blk is None
    # the overlay file was unlinked at open (BDRV_O_TEMPORARY)
    assert list(tmp_path.iterdir()) == [tmp_path / 'test.raw']
    assert block_backend.blk_pwrite(blk, 0, b'\xee' * 512, 512) == 512
    buf = bytearray(1024)
    assert block_backend.blk_pread(blk, 0, buf, 1024) == 1024
    assert buf == b'\xee' * 512 + bytes([1]) * 512
    block_backend.blk_unref(blk)
    assert open(img, 'rb').read() == before
