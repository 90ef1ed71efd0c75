"""Shrinking qcow2 images (QEMU 7.2's qcow2_co_truncate with an offset
below the old length), checked against the real qemu-img and qemu-io: the
shrunk image must pass `qemu-img check`, read what QEMU reads, and the
file must lose its unused tail as it does with QEMU.
"""

import errno
import json
import os
import shutil

from test_qcow2 import (KiB, MiB, assert_clean, qemu_img, qemu_img_create,
                        qemu_io, qemu_tools, raw_contents)

from block import core
from block.front import open_image
from drivers.qcow2 import cache
from drivers.qcow2.qcow2_h import L1E_OFFSET_MASK

__all__ = ["qemu_tools"]    # the autouse fixture: skip without the tools


def port_truncate(path, size, prealloc="off", fmt="qcow2"):
    """Resize through the port; (return value, error message or None)."""
    errp = [None]
    with open_image(str(path), fmt=fmt) as img:
        ret = core.bdrv_truncate(img.bs, size, prealloc, errp)
        if ret == 0:
            assert img.length() == size
    return ret, errp[0].msg if errp[0] else None


def virtual_size(path):
    info = json.loads(qemu_img("info", "--output=json", str(path)).stdout)
    return info["virtual-size"]


def twin(path):
    """A copy of the image, for the real qemu-io to shrink alike."""
    other = path.with_name("qemu-" + path.name)
    shutil.copyfile(path, other)
    return other


def test_shrink_drops_l2_tables_and_refblocks(tmp_path):
    """512-byte clusters: an L2 table maps 32k and a refblock counts 128k
    of the file, so cutting 3.5M of data frees both kinds, and the file
    ends where QEMU's ends."""
    path = tmp_path / "t.qcow2"
    qemu_img_create(path, 4 * MiB, cluster_size=512)
    qemu_io(path, "write -P 7 0 3M", "write -P 8 3584k 64k")
    theirs = twin(path)
    size_before = os.path.getsize(path)

    assert port_truncate(path, 96 * KiB) == (0, None)
    qemu_io(theirs, "truncate 96k")

    assert os.path.getsize(path) < size_before // 10
    assert os.path.getsize(path) == os.path.getsize(theirs)
    assert_clean(path)
    assert virtual_size(path) == 96 * KiB
    assert raw_contents(path, tmp_path) == b"\x07" * (96 * KiB)


def test_shrink_unaligned_keeps_the_partial_cluster(tmp_path):
    """The cluster the new end falls into stays whole: growing again
    shows its old data past the end, as QEMU does."""
    path = tmp_path / "t.qcow2"
    qemu_img_create(path, MiB)
    qemu_io(path, "write -P 0x5a 0 64k", "write -P 0xa5 128k 64k",
            "write -P 0x11 512k 64k")
    size_before = os.path.getsize(path)

    assert port_truncate(path, 150 * KiB) == (0, None)
    assert os.path.getsize(path) < size_before
    assert_clean(path)
    expected = bytearray(150 * KiB)
    expected[:64 * KiB] = b"\x5a" * (64 * KiB)
    expected[128 * KiB:] = b"\xa5" * (22 * KiB)
    assert raw_contents(path, tmp_path) == bytes(expected)

    assert port_truncate(path, MiB) == (0, None)
    assert_clean(path)
    data = raw_contents(path, tmp_path)
    assert data[128 * KiB:192 * KiB] == b"\xa5" * (64 * KiB)
    assert data[192 * KiB:] == bytes(MiB - 192 * KiB)


def test_shrink_then_grow_reads_zeroes(tmp_path):
    path = tmp_path / "t.qcow2"
    qemu_img_create(path, MiB)
    qemu_io(path, "write -P 0x5a 0 64k", "write -P 0xa5 128k 64k")

    assert port_truncate(path, 64 * KiB) == (0, None)
    assert port_truncate(path, MiB) == (0, None)
    assert_clean(path)
    assert raw_contents(path, tmp_path) == \
        b"\x5a" * (64 * KiB) + bytes(MiB - 64 * KiB)


def test_shrink_v2_image(tmp_path):
    path = tmp_path / "t.qcow2"
    qemu_img_create(path, MiB, compat="0.10")
    qemu_io(path, "write -P 0x5a 0 64k", "write -P 0xa5 128k 64k")
    theirs = twin(path)

    assert port_truncate(path, 128 * KiB) == (0, None)
    qemu_io(theirs, "truncate 128k")
    assert os.path.getsize(path) == os.path.getsize(theirs)
    assert_clean(path)
    assert raw_contents(path, tmp_path) == raw_contents(theirs, tmp_path)


def test_shrink_compressed_clusters(tmp_path):
    raw = tmp_path / "b.raw"
    qemu_img_create(raw, MiB, fmt="raw")
    qemu_io(raw, "write -P 0x5a 0 64k", "write -P 0xa5 128k 64k",
            "write -P 0x66 512k 128k", fmt="raw")
    path = tmp_path / "t.qcow2"
    qemu_img("convert", "-c", "-f", "raw", "-O", "qcow2", str(raw), str(path))
    info = json.loads(qemu_img("check", "--output=json", str(path)).stdout)
    assert info["compressed-clusters"] == 4
    theirs = twin(path)

    assert port_truncate(path, 136 * KiB) == (0, None)
    qemu_io(theirs, "truncate 136k")
    # the compressed clusters share host clusters: where the file ends
    # depends on which of them stay, so compare with QEMU
    assert os.path.getsize(path) == os.path.getsize(theirs)
    assert_clean(path)
    info = json.loads(qemu_img("check", "--output=json", str(path)).stdout)
    assert info["compressed-clusters"] == 2
    assert raw_contents(path, tmp_path) == \
        raw.read_bytes()[:136 * KiB]


def test_shrink_v3_image_with_snapshot(tmp_path):
    """The snapshot keeps its clusters; applying it gives its data and
    size back (done by the real qemu-img)."""
    path = tmp_path / "t.qcow2"
    qemu_img_create(path, MiB)
    qemu_io(path, "write -P 0x5a 0 64k", "write -P 0xa5 128k 64k")
    before = raw_contents(path, tmp_path)
    qemu_img("snapshot", "-c", "s1", str(path))

    assert port_truncate(path, 64 * KiB) == (0, None)
    assert_clean(path)
    assert raw_contents(path, tmp_path) == before[:64 * KiB]

    qemu_img("snapshot", "-a", "s1", str(path))
    assert_clean(path)
    assert raw_contents(path, tmp_path) == before


def test_shrink_refused(tmp_path):
    path = tmp_path / "t.qcow2"
    qemu_img_create(path, MiB, compat="0.10")
    qemu_io(path, "write -P 0x5a 0 64k")
    qemu_img("snapshot", "-c", "s1", str(path))
    assert port_truncate(path, 64 * KiB) == (
        -errno.ENOTSUP, "Can't resize a v2 image which has snapshots")

    path = tmp_path / "u.qcow2"
    qemu_img_create(path, MiB)
    assert port_truncate(path, 64 * KiB, "metadata") == (
        -errno.EINVAL, "Preallocation can't be used for shrinking an image")
    assert port_truncate(path, 1000) == (
        -errno.EINVAL, "The new size must be a multiple of 512")
    assert virtual_size(path) == MiB
    assert_clean(path)


def test_cache_discard(tmp_path):
    """A discarded table is forgotten, not written back, and its entry is
    the next one reused."""
    path = tmp_path / "t.qcow2"
    qemu_img_create(path, MiB)
    qemu_io(path, "write -P 1 0 64k")
    with open_image(str(path), fmt="qcow2") as img:
        s = img.bs.opaque
        c = s.l2_table_cache
        l2_offset = s.l1_table[0] & L1E_OFFSET_MASK
        assert cache.qcow2_cache_is_table_offset(img.bs, c, l2_offset) \
            is None
        table = [None]
        assert cache.qcow2_cache_get(img.bs, c, l2_offset, table) == 0
        cached = table[0]
        cache.qcow2_cache_entry_mark_dirty(img.bs, c, cached)
        cached[0:8] = b"\xff" * 8
        cache.qcow2_cache_put(img.bs, c, table)
        assert cache.qcow2_cache_is_table_offset(img.bs, c, l2_offset) \
            is cached

        cache.qcow2_cache_discard(img.bs, c, cached)
        assert cache.qcow2_cache_is_table_offset(img.bs, c, l2_offset) \
            is None
        i = cache.qcow2_cache_get_table_idx(img.bs, c, cached)
        assert not c.entries[i].dirty
        assert next(iter(c.lru)) == i
    # the scribbled entry never reached the file
    assert_clean(path)
    assert raw_contents(path, tmp_path)[:64 * KiB] == b"\x01" * (64 * KiB)


def test_shrink_forgets_dirty_l2_tables(tmp_path):
    """The L2 table of the cut-off range is dirty in the cache (its entries
    were just cleared) when its cluster is freed: it must not be written
    back there, past the new end of the file."""
    path = tmp_path / "t.qcow2"
    qemu_img_create(path, 2048 * MiB)
    qemu_io(path, "write -P 1 0 64k", "write -P 2 1536M 64k")
    theirs = twin(path)

    assert port_truncate(path, 64 * MiB) == (0, None)
    qemu_io(theirs, "truncate 64M")
    assert os.path.getsize(path) == os.path.getsize(theirs)
    assert_clean(path)
    assert raw_contents(path, tmp_path)[:64 * KiB] == b"\x01" * (64 * KiB)
