"""Growing qcow2 images with preallocation (QEMU 7.2's qcow2_co_truncate
with metadata, falloc or full) and over a longer backing file
(BDRV_REQ_ZERO_WRITE), checked against the real qemu-img: the port's image
must map, check and read as the one qemu-img grows alike, and the file
must have the same length.
"""

import errno

import pytest
from test_qcow2 import (KiB, MiB, assert_clean, image_map, qemu_img,
                        qemu_img_create, qemu_io, qemu_tools, raw_contents)
from test_qcow2_shrink import port_truncate, twin

from drivers.qcow2.qcow2 import qcow2_refcount_metadata_size

__all__ = ["qemu_tools"]    # the autouse fixture: skip without the tools


def assert_grows_as_qemu(path, tmp_path, size, prealloc):
    theirs = twin(path)
    qemu_img("resize", "--preallocation=" + prealloc, str(theirs), str(size))
    assert port_truncate(path, size, prealloc) == (0, None)
    assert_clean(path)
    assert image_map(path) == image_map(theirs)
    assert path.stat().st_size == theirs.stat().st_size
    assert raw_contents(path, tmp_path) == raw_contents(theirs, tmp_path)


@pytest.mark.parametrize("prealloc", ["metadata", "falloc", "full"])
@pytest.mark.parametrize("cluster_size, refcount_bits",
                         [(65536, 16), (512, 16), (4096, 1), (4096, 64)])
def test_grow_with_preallocation(tmp_path, prealloc, cluster_size,
                                 refcount_bits):
    """From a partial cluster at the old end, far enough for new L2
    tables and (with small clusters) new refblocks and refcount table."""
    path = tmp_path / "t.qcow2"
    qemu_img_create(path, 100 * KiB, cluster_size=cluster_size,
                    refcount_bits=refcount_bits)
    qemu_io(path, "write -P 7 0 4k", "write -P 8 96k 4k")
    assert_grows_as_qemu(path, tmp_path, 3 * MiB, prealloc)


@pytest.mark.parametrize("prealloc", ["off", "metadata", "falloc", "full"])
def test_grow_over_a_longer_backing_file(tmp_path, prealloc):
    """What the image grows by reads as zeroes, not as the backing file."""
    base = tmp_path / "base.raw"
    qemu_img_create(base, 2 * MiB, fmt="raw")
    qemu_io(base, "write -P 0x5a 0 2M", fmt="raw")
    path = tmp_path / "t.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-b", str(base), "-F", "raw",
             str(path), "100k")
    qemu_io(path, "write -P 1 0 4k")
    assert_grows_as_qemu(path, tmp_path, MiB, prealloc)
    data = raw_contents(path, tmp_path)
    assert data[4 * KiB:100 * KiB] == b"\x5a" * (96 * KiB)
    assert data[100 * KiB:] == bytes(924 * KiB)


def test_grow_v2_over_a_longer_backing_file_fails(tmp_path):
    """Without zero clusters the new area cannot hide the backing file."""
    base = tmp_path / "base.raw"
    qemu_img_create(base, 2 * MiB, fmt="raw")
    path = tmp_path / "t.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-o", "compat=0.10", "-b",
             str(base), "-F", "raw", str(path), "128k")
    assert port_truncate(path, MiB) == (
        -errno.ENOTSUP,
        "Failed to zero out new clusters: Operation not supported")


def test_refcount_metadata_size():
    # 64k clusters, 16-bit refcounts: a refblock counts 2 GiB of clusters
    count = [0]
    assert qcow2_refcount_metadata_size(16, 65536, 4, False, count) == \
        2 * 65536
    assert count[0] == 1
    assert qcow2_refcount_metadata_size(32768, 65536, 4, False, count) == \
        3 * 65536
    assert count[0] == 2
    # room for the table to grow: half as many entries again
    assert qcow2_refcount_metadata_size(16, 65536, 4, True, count) == \
        2 * 65536


@pytest.mark.parametrize("event", ["refblock_alloc_write_table",
                                   "refblock_alloc_switch_table",
                                   "l2_update", "refblock_update_part"])
@pytest.mark.parametrize("prealloc", ["metadata", "falloc"])
def test_failing_preallocation_as_qemu(tmp_path, event, prealloc):
    """An I/O error on the way leaves the image as QEMU's: the same
    message, length and check results (a leak where QEMU leaks)."""
    conf = tmp_path / "blkdebug.conf"
    conf.write_text('[inject-error]\nevent = "%s"\nerrno = "5"\n'
                    'once = "on"\n' % event)
    path = tmp_path / "t.qcow2"
    qemu_img_create(path, 100 * KiB)
    qemu_io(path, "write -P 1 64k 36k")
    theirs = twin(path)

    p = qemu_io("blkdebug:%s:%s" % (conf, theirs),
                "truncate -m %s 1M" % prealloc, check=False)
    their_msg = p.stderr.strip().removeprefix("qemu-io: ") or None
    ret, msg = port_truncate("blkdebug:%s:%s" % (conf, path), MiB, prealloc)
    assert msg == their_msg
    assert (ret == 0) == (their_msg is None)

    def check(image):
        return qemu_img("check", "--output=json", str(image),
                        check=False).stdout.replace(str(theirs), str(path))
    assert check(path) == check(theirs)
    assert image_map(path) == image_map(theirs)
