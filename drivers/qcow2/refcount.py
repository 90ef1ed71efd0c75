"""Reference counts, cluster allocation, image checking and the metadata
overlap check: the Python twin of QEMU's block/qcow2-refcount.c (v2.5.0).

A refcount block (and the in-memory refcount table of a check) is a
bytearray in on-disk layout; get_refcount_roN/set_refcount_roN read and
write an entry of 2^N bits in it.  The messages of the check go to stderr,
as QEMU's fprintf(stderr) do.
"""

from __future__ import annotations

import errno
import os
import struct

from block import core, io
from block.block_int import (BDRV_FIX_ERRORS, BDRV_FIX_LEAKS,
                             BDRV_SECTOR_BITS, BDRV_SECTOR_SIZE,
                             BLKDBG_CLUSTER_ALLOC, BLKDBG_CLUSTER_ALLOC_BYTES,
                             BLKDBG_CLUSTER_FREE, BLKDBG_EVENT,
                             BLKDBG_REFBLOCK_ALLOC,
                             BLKDBG_REFBLOCK_ALLOC_HOOKUP,
                             BLKDBG_REFBLOCK_ALLOC_SWITCH_TABLE,
                             BLKDBG_REFBLOCK_ALLOC_WRITE,
                             BLKDBG_REFBLOCK_ALLOC_WRITE_BLOCKS,
                             BLKDBG_REFBLOCK_ALLOC_WRITE_TABLE,
                             BLKDBG_REFBLOCK_LOAD, BLKDBG_REFTABLE_GROW,
                             BLKDBG_REFTABLE_LOAD, BdrvCheckResult,
                             BlockDriverState)
from drivers.qcow2 import cache, cluster, qcow2
from drivers.qcow2.qcow2_h import (
    INT64_MAX, INT_MAX, L1E_OFFSET_MASK, L2E_OFFSET_MASK,
    QCOW2_CLUSTER_COMPRESSED, QCOW2_CLUSTER_NORMAL,
    QCOW2_CLUSTER_UNALLOCATED, QCOW2_CLUSTER_ZERO, QCOW2_DISCARD_ALWAYS,
    QCOW2_DISCARD_NEVER, QCOW2_DISCARD_OTHER,
    QCOW2_OL_ACTIVE_L1, QCOW2_OL_ACTIVE_L2, QCOW2_OL_INACTIVE_L1,
    QCOW2_OL_INACTIVE_L2, QCOW2_OL_MAIN_HEADER, QCOW2_OL_MAX_BITNR,
    QCOW2_OL_REFCOUNT_BLOCK, QCOW2_OL_REFCOUNT_TABLE,
    QCOW2_OL_SNAPSHOT_TABLE, QCOW_HEADER_OFFSETOF, QCOW_MAX_REFTABLE_SIZE,
    QCOW_OFLAG_COPIED, REFT_OFFSET_MASK, BDRVQcow2State,
    Qcow2DiscardRegion, Qcow2MetadataTable, align_offset, be64, int64,
    offset_into_cluster, offset_to_reftable_index, qcow2_get_cluster_type,
    refcount_diff, size_to_clusters, start_of_cluster)
from util.iov import buffer_is_zero
from util.qemu_error import error_printf

_be16 = struct.Struct(">H")
_be32 = struct.Struct(">I")


# --- refcount entry access, one pair per refcount_order ---------------------

def get_refcount_ro0(refcount_array, index: int) -> int:
    return (refcount_array[index >> 3] >> (index & 7)) & 0x1


def set_refcount_ro0(refcount_array, index: int, value: int) -> None:
    assert not (value >> 1)
    shift = index & 7
    b = refcount_array[index >> 3] & ~(0x1 << shift)
    refcount_array[index >> 3] = b | (value << shift)


def get_refcount_ro1(refcount_array, index: int) -> int:
    return (refcount_array[index >> 2] >> (2 * (index & 3))) & 0x3


def set_refcount_ro1(refcount_array, index: int, value: int) -> None:
    assert not (value >> 2)
    shift = 2 * (index & 3)
    b = refcount_array[index >> 2] & ~(0x3 << shift)
    refcount_array[index >> 2] = b | (value << shift)


def get_refcount_ro2(refcount_array, index: int) -> int:
    return (refcount_array[index >> 1] >> (4 * (index & 1))) & 0xf


def set_refcount_ro2(refcount_array, index: int, value: int) -> None:
    assert not (value >> 4)
    shift = 4 * (index & 1)
    b = refcount_array[index >> 1] & ~(0xf << shift)
    refcount_array[index >> 1] = b | (value << shift)


def get_refcount_ro3(refcount_array, index: int) -> int:
    return refcount_array[index]


def set_refcount_ro3(refcount_array, index: int, value: int) -> None:
    assert not (value >> 8)
    refcount_array[index] = value


def get_refcount_ro4(refcount_array, index: int,
                     _unpack=_be16.unpack_from) -> int:
    return _unpack(refcount_array, index << 1)[0]


def set_refcount_ro4(refcount_array, index: int, value: int,
                     _pack=_be16.pack_into) -> None:
    assert not (value >> 16)
    _pack(refcount_array, index << 1, value)


def get_refcount_ro5(refcount_array, index: int,
                     _unpack=_be32.unpack_from) -> int:
    return _unpack(refcount_array, index << 2)[0]


def set_refcount_ro5(refcount_array, index: int, value: int,
                     _pack=_be32.pack_into) -> None:
    assert not (value >> 32)
    _pack(refcount_array, index << 2, value)


def get_refcount_ro6(refcount_array, index: int,
                     _unpack=be64.unpack_from) -> int:
    return _unpack(refcount_array, index << 3)[0]


def set_refcount_ro6(refcount_array, index: int, value: int,
                     _pack=be64.pack_into) -> None:
    _pack(refcount_array, index << 3, value)


get_refcount_funcs = (get_refcount_ro0, get_refcount_ro1, get_refcount_ro2,
                      get_refcount_ro3, get_refcount_ro4, get_refcount_ro5,
                      get_refcount_ro6)

set_refcount_funcs = (set_refcount_ro0, set_refcount_ro1, set_refcount_ro2,
                      set_refcount_ro3, set_refcount_ro4, set_refcount_ro5,
                      set_refcount_ro6)


# --- refcount handling ------------------------------------------------------

def qcow2_refcount_init(bs: BlockDriverState) -> int:
    s = bs.opaque

    assert 0 <= s.refcount_order <= 6

    s.get_refcount = get_refcount_funcs[s.refcount_order]
    s.set_refcount = set_refcount_funcs[s.refcount_order]

    assert s.refcount_table_size <= INT_MAX // 8
    refcount_table_size2 = s.refcount_table_size * 8
    s.refcount_table = Qcow2MetadataTable()

    if s.refcount_table_size > 0:
        BLKDBG_EVENT(bs.file, BLKDBG_REFTABLE_LOAD)
        buf = bytearray(refcount_table_size2)
        ret = io.bdrv_pread(bs.file.bs, s.refcount_table_offset, buf,
                            refcount_table_size2)
        if ret < 0:
            return ret
        s.refcount_table = Qcow2MetadataTable(
            struct.unpack(">%dQ" % s.refcount_table_size, buf))
    return 0


def qcow2_refcount_close(bs: BlockDriverState) -> None:
    s = bs.opaque
    s.refcount_table = None


def load_refcount_block(bs: BlockDriverState, refcount_block_offset: int,
                        refcount_block: list) -> int:
    s = bs.opaque

    BLKDBG_EVENT(bs.file, BLKDBG_REFBLOCK_LOAD)
    return cache.qcow2_cache_get(bs, s.refcount_block_cache,
                                 refcount_block_offset, refcount_block)


def qcow2_get_refcount(bs: BlockDriverState, cluster_index: int,
                       refcount: list) -> int:
    """Store the refcount of the cluster in refcount[0]; 0 or -errno."""
    s = bs.opaque

    refcount_table_index = cluster_index >> s.refcount_block_bits
    if refcount_table_index >= s.refcount_table_size:
        refcount[0] = 0
        return 0
    refcount_block_offset = int64(s.refcount_table[refcount_table_index]
                                  & REFT_OFFSET_MASK)
    if not refcount_block_offset:
        refcount[0] = 0
        return 0

    if offset_into_cluster(s, refcount_block_offset):
        qcow2.qcow2_signal_corruption(
            bs, True, -1, -1, "Refblock offset %#x unaligned (reftable "
            "index: %#x)", refcount_block_offset, refcount_table_index)
        return -errno.EIO

    refcount_block = [None]
    ret = cache.qcow2_cache_get(bs, s.refcount_block_cache,
                                refcount_block_offset, refcount_block)
    if ret < 0:
        return ret

    block_index = cluster_index & (s.refcount_block_size - 1)
    refcount[0] = s.get_refcount(refcount_block[0], block_index)

    cache.qcow2_cache_put(bs, s.refcount_block_cache, refcount_block)
    return 0


def in_same_refcount_block(s: BDRVQcow2State, offset_a: int,
                           offset_b: int) -> bool:
    block_a = offset_a >> (s.cluster_bits + s.refcount_block_bits)
    block_b = offset_b >> (s.cluster_bits + s.refcount_block_bits)
    return block_a == block_b


def alloc_refcount_block(bs: BlockDriverState, cluster_index: int,
                         refcount_block: list) -> int:
    """Load the refcount block covering cluster_index, allocating it (and a
    bigger refcount table) first if needed.  -EAGAIN tells the caller that
    new metadata may sit where it wanted to allocate: search again."""
    s = bs.opaque

    BLKDBG_EVENT(bs.file, BLKDBG_REFBLOCK_ALLOC)

    refcount_table_index = cluster_index >> s.refcount_block_bits

    if refcount_table_index < s.refcount_table_size:
        refcount_block_offset = (s.refcount_table[refcount_table_index]
                                 & REFT_OFFSET_MASK)

        if refcount_block_offset:
            if offset_into_cluster(s, refcount_block_offset):
                qcow2.qcow2_signal_corruption(
                    bs, True, -1, -1, "Refblock offset %#x unaligned "
                    "(reftable index: %#x)", refcount_block_offset,
                    refcount_table_index)
                return -errno.EIO

            return load_refcount_block(bs, int64(refcount_block_offset),
                                       refcount_block)

    # A new refcount block cannot be allocated with qcow2_alloc_clusters
    # (that would recurse): it is placed so that it can describe itself, or
    # its own refcount is set through a block that already exists.  The
    # caller may hold clusters whose refcount is not raised yet, hence
    # -EAGAIN after any metadata allocation.
    refcount_block[0] = None

    # We write to the refcount table, so we might depend on L2 tables
    ret = cache.qcow2_cache_flush(bs, s.l2_table_cache)
    if ret < 0:
        return ret

    new_block = alloc_clusters_noref(bs, s.cluster_size)
    if new_block < 0:
        return new_block

    # A refcount table that lost track of the header (QEMU 2.12's check)
    if new_block == 0:
        qcow2.qcow2_signal_corruption(bs, True, -1, -1, "Preventing invalid "
                                      "allocation of refcount block at "
                                      "offset 0")
        return -errno.EIO

    if in_same_refcount_block(s, new_block, cluster_index << s.cluster_bits):
        # The block describes itself: zero it and count its own cluster
        ret = cache.qcow2_cache_get_empty(bs, s.refcount_block_cache,
                                          new_block, refcount_block)
        if ret < 0:
            return _alloc_refcount_block_fail(bs, refcount_block, ret)

        blk = refcount_block[0]
        blk[:] = bytes(s.cluster_size)

        block_index = ((new_block >> s.cluster_bits)
                       & (s.refcount_block_size - 1))
        s.set_refcount(blk, block_index, 1)
    else:
        # Described somewhere else; this recurses at most twice before a
        # block describes itself
        ret = update_refcount(bs, new_block, s.cluster_size, 1, False,
                              QCOW2_DISCARD_NEVER)
        if ret < 0:
            return _alloc_refcount_block_fail(bs, refcount_block, ret)

        ret = cache.qcow2_cache_flush(bs, s.refcount_block_cache)
        if ret < 0:
            return _alloc_refcount_block_fail(bs, refcount_block, ret)

        # initialise it only now: update_refcount uses the cache itself
        ret = cache.qcow2_cache_get_empty(bs, s.refcount_block_cache,
                                          new_block, refcount_block)
        if ret < 0:
            return _alloc_refcount_block_fail(bs, refcount_block, ret)

        refcount_block[0][:] = bytes(s.cluster_size)

    # Now the new refcount block needs to be written to disk
    BLKDBG_EVENT(bs.file, BLKDBG_REFBLOCK_ALLOC_WRITE)
    cache.qcow2_cache_entry_mark_dirty(bs, s.refcount_block_cache,
                                       refcount_block[0])
    ret = cache.qcow2_cache_flush(bs, s.refcount_block_cache)
    if ret < 0:
        return _alloc_refcount_block_fail(bs, refcount_block, ret)

    # If the refcount table is big enough, just hook the block up there
    if refcount_table_index < s.refcount_table_size:
        BLKDBG_EVENT(bs.file, BLKDBG_REFBLOCK_ALLOC_HOOKUP)
        ret = io.bdrv_pwrite_sync(
            bs.file.bs, s.refcount_table_offset + refcount_table_index * 8,
            be64.pack(new_block), 8)
        if ret < 0:
            return _alloc_refcount_block_fail(bs, refcount_block, ret)

        s.refcount_table[refcount_table_index] = new_block

        # The new block may be where the caller meant to put its data
        return -errno.EAGAIN

    cache.qcow2_cache_put(bs, s.refcount_block_cache, refcount_block)

    # The refcount table must grow.  New refcount blocks at the end of the
    # image describe themselves and the new table, so that the new table
    # references them all and the switch happens in one header write.
    BLKDBG_EVENT(bs.file, BLKDBG_REFTABLE_GROW)

    # refcount blocks needed so far; new_block (which may lie above
    # cluster_index) is in use as well
    blocks_used = -(-max(cluster_index + 1, (new_block >> s.cluster_bits) + 1)
                    // s.refcount_block_size)

    # Create the new refcount table and blocks
    meta_offset = (blocks_used * s.refcount_block_size) * s.cluster_size
    ret = qcow2_refcount_area(bs, meta_offset, 0, False,
                              refcount_table_index, new_block)
    if ret < 0:
        return ret

    ret = load_refcount_block(bs, new_block, refcount_block)
    if ret < 0:
        return ret

    # The caller's intended clusters may now hold the new metadata
    return -errno.EAGAIN


def qcow2_refcount_area(bs: BlockDriverState, start_offset: int,
                        additional_clusters: int, exact_size: bool,
                        new_refblock_index: int,
                        new_refblock_offset: int) -> int:
    """Build, at start_offset (the end of the used part of the file), a
    new refcount table and the refblocks it lacks, covering themselves and
    additional_clusters after them (QEMU 7.2's qcow2_refcount_area).  If
    exact_size is false, the table gets half as many entries again.  A
    new_refblock_offset is entered at new_refblock_index.  Returns where
    the additional clusters may go, or -errno."""
    s = bs.opaque
    cs = s.cluster_size

    assert start_offset % cs == 0

    refblock_count = [0]
    qcow2.qcow2_refcount_metadata_size(start_offset // cs
                                       + additional_clusters, cs,
                                       s.refcount_order, not exact_size,
                                       refblock_count)
    total_refblock_count = refblock_count[0]
    # (7.2 compares the counts with the byte limit, too)
    if total_refblock_count > QCOW_MAX_REFTABLE_SIZE:
        return -errno.EFBIG

    # the first refblock to cover the new structures
    area_reftable_index = (start_offset // cs) // s.refcount_block_size

    table_size = total_refblock_count
    if not exact_size:
        table_size += -(-total_refblock_count // 2)
    # the header gives the table's size in clusters
    table_size = align_offset(table_size, cs // 8)
    table_clusters = table_size * 8 // cs

    if table_size > QCOW_MAX_REFTABLE_SIZE:
        return -errno.EFBIG

    # entries past the new size can only be empty: the caller promised
    # that nothing is used after start_offset
    new_table = Qcow2MetadataTable(s.refcount_table[:table_size])
    new_table.extend([0] * (table_size - len(new_table)))

    if new_refblock_offset:
        assert new_refblock_index < total_refblock_count
        new_table[new_refblock_index] = new_refblock_offset

    additional_refblock_count = sum(
        1 for i in range(area_reftable_index, total_refblock_count)
        if not new_table[i])

    table_offset = start_offset + additional_refblock_count * cs
    end_offset = table_offset + table_clusters * cs

    # Fill the refblocks, making the missing ones
    block_offset = start_offset
    refblock = [None]
    for i in range(area_reftable_index, total_refblock_count):
        if new_table[i]:
            ret = cache.qcow2_cache_get(bs, s.refcount_block_cache,
                                        new_table[i], refblock)
            if ret < 0:
                return ret
        else:
            ret = cache.qcow2_cache_get_empty(bs, s.refcount_block_cache,
                                              block_offset, refblock)
            if ret < 0:
                return ret
            refblock[0][:] = bytes(cs)
            cache.qcow2_cache_entry_mark_dirty(bs, s.refcount_block_cache,
                                               refblock[0])
            new_table[i] = block_offset
            block_offset += cs

        # the new structures are in use: refcount 1
        first_offset_covered = i * s.refcount_block_size * cs
        if first_offset_covered < end_offset:
            if first_offset_covered < start_offset:
                assert i == area_reftable_index
                j = (start_offset - first_offset_covered) // cs
                assert j < s.refcount_block_size
            else:
                j = 0
            end_index = min((end_offset - first_offset_covered) // cs,
                            s.refcount_block_size)
            for j in range(j, end_index):
                assert s.get_refcount(refblock[0], j) == 0
                s.set_refcount(refblock[0], j, 1)
            cache.qcow2_cache_entry_mark_dirty(bs, s.refcount_block_cache,
                                               refblock[0])

        cache.qcow2_cache_put(bs, s.refcount_block_cache, refblock)

    assert block_offset == table_offset

    BLKDBG_EVENT(bs.file, BLKDBG_REFBLOCK_ALLOC_WRITE_BLOCKS)
    ret = cache.qcow2_cache_flush(bs, s.refcount_block_cache)
    if ret < 0:
        return ret

    BLKDBG_EVENT(bs.file, BLKDBG_REFBLOCK_ALLOC_WRITE_TABLE)
    ret = io.bdrv_pwrite_sync(bs.file.bs, table_offset,
                              struct.pack(">%dQ" % table_size, *new_table),
                              table_size * 8)
    if ret < 0:
        return ret

    # Hook up the new refcount table in the qcow2 header
    data = struct.pack(">QI", table_offset, table_clusters)
    BLKDBG_EVENT(bs.file, BLKDBG_REFBLOCK_ALLOC_SWITCH_TABLE)
    ret = io.bdrv_pwrite_sync(bs.file.bs,
                              QCOW_HEADER_OFFSETOF["refcount_table_offset"],
                              data, len(data))
    if ret < 0:
        return ret

    # And switch it in memory
    old_table_offset = s.refcount_table_offset
    old_table_size = s.refcount_table_size

    s.refcount_table = new_table
    s.refcount_table_size = table_size
    s.refcount_table_offset = table_offset

    qcow2_free_clusters(bs, old_table_offset, old_table_size * 8,
                        QCOW2_DISCARD_OTHER)

    return end_offset


def _alloc_refcount_block_fail(bs: BlockDriverState, refcount_block: list,
                               ret: int) -> int:
    """The fail_block label of alloc_refcount_block."""
    s = bs.opaque
    if refcount_block[0] is not None:
        cache.qcow2_cache_put(bs, s.refcount_block_cache, refcount_block)
    return ret


def qcow2_process_discards(bs: BlockDriverState, ret: int) -> None:
    s = bs.opaque

    discards = s.discards
    s.discards = []
    for d in discards:
        # Discard is optional, ignore the return value
        if ret >= 0:
            io.bdrv_discard(bs.file.bs, d.offset >> BDRV_SECTOR_BITS,
                            d.bytes >> BDRV_SECTOR_BITS)


def update_refcount_discard(bs: BlockDriverState, offset: int,
                            length: int) -> None:
    s = bs.opaque

    for d in s.discards:
        new_start = min(offset, d.offset)
        new_end = max(offset + length, d.offset + d.bytes)

        if new_end - new_start <= length + d.bytes:
            # Freed areas have no references left, so they cannot overlap
            assert d.bytes + length == new_end - new_start
            d.offset = new_start
            d.bytes = new_end - new_start
            break
    else:
        d = Qcow2DiscardRegion(bs, offset, length)
        s.discards.append(d)

    # Merge discard requests if they are adjacent now
    for p in list(s.discards):
        if (p is d or p.offset > d.offset + d.bytes
                or d.offset > p.offset + p.bytes):
            continue

        # Still no overlap possible
        assert (p.offset == d.offset + d.bytes
                or d.offset == p.offset + p.bytes)

        s.discards.remove(p)
        d.offset = min(d.offset, p.offset)
        d.bytes += p.bytes


def update_refcount(bs: BlockDriverState, offset: int, length: int,
                    addend: int, decrease: bool, type: int) -> int:
    """Add addend to (or with decrease, subtract it from) the refcount of
    every cluster in [offset, offset + length)."""
    s = bs.opaque
    refcount_block = [None]
    old_table_index = -1

    if length < 0:
        return -errno.EINVAL
    elif length == 0:
        return 0

    if decrease:
        cache.qcow2_cache_set_dependency(bs, s.refcount_block_cache,
                                         s.l2_table_cache)

    start = start_of_cluster(s, offset)
    last = start_of_cluster(s, offset + length - 1)
    cluster_offset = start
    ret = 0
    while cluster_offset <= last:
        cluster_index = cluster_offset >> s.cluster_bits
        table_index = cluster_index >> s.refcount_block_bits

        # Load the refcount block and allocate it if needed
        if table_index != old_table_index:
            if refcount_block[0] is not None:
                cache.qcow2_cache_put(bs, s.refcount_block_cache,
                                      refcount_block)
            ret = alloc_refcount_block(bs, cluster_index, refcount_block)
            # A caller that must search for free clusters again tries the
            # same ones first (as 7.2's): the new refcount metadata may
            # have been placed after them
            if (ret == -errno.EAGAIN and
                    s.free_cluster_index > (start >> s.cluster_bits)):
                s.free_cluster_index = start >> s.cluster_bits
            if ret < 0:
                break
        old_table_index = table_index

        blk = refcount_block[0]
        cache.qcow2_cache_entry_mark_dirty(bs, s.refcount_block_cache, blk)

        block_index = cluster_index & (s.refcount_block_size - 1)

        refcount = s.get_refcount(blk, block_index)
        if (refcount < addend if decrease
                else refcount + addend > s.refcount_max):
            ret = -errno.EINVAL
            break
        if decrease:
            refcount -= addend
        else:
            refcount += addend
        if refcount == 0 and cluster_index < s.free_cluster_index:
            s.free_cluster_index = cluster_index
        s.set_refcount(blk, block_index, refcount)

        if refcount == 0:
            # a freed cluster may hold a cached table, which must not be
            # written back there later (QEMU 2.10)
            table = cache.qcow2_cache_is_table_offset(
                bs, s.refcount_block_cache, cluster_offset)
            if table is not None:
                cache.qcow2_cache_put(bs, s.refcount_block_cache,
                                      refcount_block)
                old_table_index = -1
                cache.qcow2_cache_discard(bs, s.refcount_block_cache, table)

            table = cache.qcow2_cache_is_table_offset(
                bs, s.l2_table_cache, cluster_offset)
            if table is not None:
                cache.qcow2_cache_discard(bs, s.l2_table_cache, table)

            if s.discard_passthrough[type]:
                update_refcount_discard(bs, cluster_offset, s.cluster_size)

        cluster_offset += s.cluster_size

    if not s.cache_discards:
        qcow2_process_discards(bs, ret)

    # Write last changed block to disk
    if refcount_block[0] is not None:
        cache.qcow2_cache_put(bs, s.refcount_block_cache, refcount_block)

    # Try to undo the updates done so far (works e.g. after ENOSPC when
    # allocating a new refcount block)
    if ret < 0:
        update_refcount(bs, offset, cluster_offset - offset, addend,
                        not decrease, QCOW2_DISCARD_NEVER)

    return ret


def qcow2_update_cluster_refcount(bs: BlockDriverState, cluster_index: int,
                                  addend: int, decrease: bool,
                                  type: int) -> int:
    s = bs.opaque

    ret = update_refcount(bs, cluster_index << s.cluster_bits, 1, addend,
                          decrease, type)
    if ret < 0:
        return ret
    return 0


# --- cluster allocation functions -------------------------------------------

def alloc_clusters_noref(bs: BlockDriverState, size: int) -> int:
    """Find size bytes of free clusters without raising their refcount;
    the offset, or -errno."""
    s = bs.opaque
    refcount = [0]

    # We can't allocate clusters if they may still be queued for discard
    if s.cache_discards:
        qcow2_process_discards(bs, 0)

    nb_clusters = size_to_clusters(s, size)
    i = 0
    while i < nb_clusters:
        next_cluster_index = s.free_cluster_index
        s.free_cluster_index += 1
        ret = qcow2_get_refcount(bs, next_cluster_index, refcount)

        if ret < 0:
            return ret
        elif refcount[0] != 0:
            i = 0       # retry
        else:
            i += 1

    # every offset of the range must be representable in an int64_t
    if (s.free_cluster_index > 0 and
            s.free_cluster_index - 1 > (INT64_MAX >> s.cluster_bits)):
        return -errno.EFBIG

    return (s.free_cluster_index - nb_clusters) << s.cluster_bits


def qcow2_alloc_clusters(bs: BlockDriverState, size: int) -> int:
    BLKDBG_EVENT(bs.file, BLKDBG_CLUSTER_ALLOC)
    while True:
        offset = alloc_clusters_noref(bs, size)
        if offset < 0:
            return offset

        ret = update_refcount(bs, offset, size, 1, False, QCOW2_DISCARD_NEVER)
        if ret != -errno.EAGAIN:
            break

    if ret < 0:
        return ret

    return offset


def qcow2_alloc_clusters_at(bs: BlockDriverState, offset: int,
                            nb_clusters: int) -> int:
    """Allocate up to nb_clusters free clusters starting exactly at offset;
    the number allocated, or -errno."""
    s = bs.opaque
    refcount = [0]

    assert nb_clusters >= 0
    if nb_clusters == 0:
        return 0

    while True:
        # Check how many clusters there are free
        cluster_index = offset >> s.cluster_bits
        i = 0
        while i < nb_clusters:
            ret = qcow2_get_refcount(bs, cluster_index, refcount)
            cluster_index += 1
            if ret < 0:
                return ret
            elif refcount[0] != 0:
                break
            i += 1

        # And then allocate them
        ret = update_refcount(bs, offset, i << s.cluster_bits, 1, False,
                              QCOW2_DISCARD_NEVER)
        if ret != -errno.EAGAIN:
            break

    if ret < 0:
        return ret

    return i


def qcow2_alloc_bytes(bs: BlockDriverState, size: int) -> int:
    """Allocate size (<= cluster_size) bytes, packed after the previous
    allocation if possible; for compressed clusters."""
    s = bs.opaque

    BLKDBG_EVENT(bs.file, BLKDBG_CLUSTER_ALLOC_BYTES)
    assert 0 < size <= s.cluster_size
    assert (not s.free_byte_offset
            or offset_into_cluster(s, s.free_byte_offset))

    offset = s.free_byte_offset

    if offset:
        refcount = [0]
        ret = qcow2_get_refcount(bs, offset >> s.cluster_bits, refcount)
        if ret < 0:
            return ret

        if refcount[0] == s.refcount_max:
            offset = 0

    free_in_cluster = s.cluster_size - offset_into_cluster(s, offset)
    while True:
        if not offset or free_in_cluster < size:
            new_cluster = alloc_clusters_noref(bs, s.cluster_size)
            if new_cluster < 0:
                return new_cluster

            if (not offset
                    or align_offset(offset, s.cluster_size) != new_cluster):
                offset = new_cluster
                free_in_cluster = s.cluster_size
            else:
                free_in_cluster += s.cluster_size

        assert offset
        ret = update_refcount(bs, offset, size, 1, False, QCOW2_DISCARD_NEVER)
        if ret < 0:
            offset = 0
        if ret != -errno.EAGAIN:
            break
    if ret < 0:
        return ret

    # The refcount blocks must reach the disk before the caller's L2 update
    cache.qcow2_cache_set_dependency(bs, s.l2_table_cache,
                                     s.refcount_block_cache)

    s.free_byte_offset = offset + size
    if not offset_into_cluster(s, s.free_byte_offset):
        s.free_byte_offset = 0

    return offset


def qcow2_free_clusters(bs: BlockDriverState, offset: int, size: int,
                        type: int) -> None:
    BLKDBG_EVENT(bs.file, BLKDBG_CLUSTER_FREE)
    ret = update_refcount(bs, offset, size, 1, True, type)
    if ret < 0:
        # the clusters leak; a check with -r leaks gets them back
        error_printf("qcow2_free_clusters failed: %s\n", os.strerror(-ret))


def qcow2_free_any_clusters(bs: BlockDriverState, l2_entry: int,
                            nb_clusters: int, type: int) -> None:
    """Free a cluster of any type (normal, compressed, ...) by its L2
    entry."""
    s = bs.opaque

    ctype = qcow2_get_cluster_type(l2_entry)
    if ctype == QCOW2_CLUSTER_COMPRESSED:
        nb_csectors = ((l2_entry >> s.csize_shift) & s.csize_mask) + 1
        qcow2_free_clusters(bs, (l2_entry & s.cluster_offset_mask) & ~511,
                            nb_csectors * 512, type)
    elif ctype in (QCOW2_CLUSTER_NORMAL, QCOW2_CLUSTER_ZERO):
        if l2_entry & L2E_OFFSET_MASK:
            if offset_into_cluster(s, l2_entry & L2E_OFFSET_MASK):
                qcow2.qcow2_signal_corruption(
                    bs, False, -1, -1, "Cannot free unaligned cluster %#x",
                    l2_entry & L2E_OFFSET_MASK)
            else:
                qcow2_free_clusters(bs, l2_entry & L2E_OFFSET_MASK,
                                    nb_clusters << s.cluster_bits, type)
    else:
        assert ctype == QCOW2_CLUSTER_UNALLOCATED


# --- shrinking the image (QEMU 2.10) ----------------------------------------

def get_refblock_offset(bs: BlockDriverState, offset: int) -> int:
    """Offset of the refblock covering offset, or -EIO (the image is
    corrupt) if there is none."""
    s = bs.opaque
    index = offset_to_reftable_index(s, offset)

    covering_refblock_offset = 0
    if index < s.refcount_table_size:
        covering_refblock_offset = s.refcount_table[index] & REFT_OFFSET_MASK
    if not covering_refblock_offset:
        qcow2.qcow2_signal_corruption(
            bs, True, -1, -1, "Refblock at %#x is not covered by the "
            "refcount structures", offset)
        return -errno.EIO

    return covering_refblock_offset


def qcow2_discard_refcount_block(bs: BlockDriverState,
                                 discard_block_offs: int) -> int:
    """Free the cluster of a refblock that the reftable no longer names."""
    s = bs.opaque
    cluster_index = discard_block_offs >> s.cluster_bits
    block_index = cluster_index & (s.refcount_block_size - 1)

    refblock_offs = get_refblock_offset(bs, discard_block_offs)
    if refblock_offs < 0:
        return refblock_offs

    assert discard_block_offs != 0

    refblock = [None]
    ret = cache.qcow2_cache_get(bs, s.refcount_block_cache, refblock_offs,
                                refblock)
    if ret < 0:
        return ret

    old = s.get_refcount(refblock[0], block_index)
    if old != 1:
        qcow2.qcow2_signal_corruption(
            bs, True, -1, -1, "Invalid refcount: refblock offset %#x, "
            "reftable index %u, block offset %#x, refcount %#x",
            refblock_offs, offset_to_reftable_index(s, discard_block_offs),
            discard_block_offs, old)
        cache.qcow2_cache_put(bs, s.refcount_block_cache, refblock)
        return -errno.EINVAL
    s.set_refcount(refblock[0], block_index, 0)

    cache.qcow2_cache_entry_mark_dirty(bs, s.refcount_block_cache,
                                       refblock[0])
    cache.qcow2_cache_put(bs, s.refcount_block_cache, refblock)

    if cluster_index < s.free_cluster_index:
        s.free_cluster_index = cluster_index

    # the freed refblock may still be cached: never write it back
    table = cache.qcow2_cache_is_table_offset(bs, s.refcount_block_cache,
                                              discard_block_offs)
    if table is not None:
        cache.qcow2_cache_discard(bs, s.refcount_block_cache, table)
    update_refcount_discard(bs, discard_block_offs, s.cluster_size)

    return 0


def qcow2_shrink_reftable(bs: BlockDriverState) -> int:
    """Drop from the reftable the refblocks that count no cluster but
    (perhaps) themselves, and free them."""
    s = bs.opaque
    reftable_tmp = [0] * s.refcount_table_size

    for i in range(s.refcount_table_size):
        refblock_offs = s.refcount_table[i] & REFT_OFFSET_MASK
        if not refblock_offs:
            continue

        refblock = [None]
        ret = cache.qcow2_cache_get(bs, s.refcount_block_cache,
                                    refblock_offs, refblock)
        if ret < 0:
            return ret
        blk = refblock[0]

        if i == offset_to_reftable_index(s, refblock_offs):
            # the refblock counts itself: look past that reference
            block_index = ((refblock_offs >> s.cluster_bits)
                           & (s.refcount_block_size - 1))
            self_ref = s.get_refcount(blk, block_index)
            s.set_refcount(blk, block_index, 0)
            unused_block = buffer_is_zero(blk, s.cluster_size)
            s.set_refcount(blk, block_index, self_ref)
        else:
            unused_block = buffer_is_zero(blk, s.cluster_size)
        cache.qcow2_cache_put(bs, s.refcount_block_cache, refblock)

        reftable_tmp[i] = 0 if unused_block else s.refcount_table[i]

    ret = io.bdrv_pwrite_sync(
        bs.file.bs, s.refcount_table_offset,
        struct.pack(">%dQ" % s.refcount_table_size, *reftable_tmp),
        s.refcount_table_size * 8)

    # After a failed write the reftable on disk may be changed in part:
    # dropping the entries in memory as well is the safer way
    for i in range(s.refcount_table_size):
        if s.refcount_table[i] and not reftable_tmp[i]:
            if ret == 0:
                ret = qcow2_discard_refcount_block(
                    bs, s.refcount_table[i] & REFT_OFFSET_MASK)
            s.refcount_table[i] = 0

    if not s.cache_discards:
        qcow2_process_discards(bs, ret)

    return ret


def qcow2_get_last_cluster(bs: BlockDriverState, size: int) -> int:
    """Index of the last cluster below size with a reference, or -errno."""
    s = bs.opaque
    refcount = [0]

    for i in range(size_to_clusters(s, size) - 1, -1, -1):
        ret = qcow2_get_refcount(bs, i, refcount)
        if ret < 0:
            error_printf("Can't get refcount for cluster %d: %s\n", i,
                         os.strerror(-ret))
            return ret
        if refcount[0] > 0:
            return i

    qcow2.qcow2_signal_corruption(bs, True, -1, -1, "There are no "
                                  "references in the refcount table.")
    return -errno.EIO


# --- refcount checking functions --------------------------------------------

def refcount_array_byte_size(s: BDRVQcow2State, entries: int) -> int:
    # fewer than 2^(64 - 9) clusters can be addressed
    assert entries < (1 << (64 - 9))
    return -(-(entries << s.refcount_order) // 8)


def realloc_refcount_array(s: BDRVQcow2State, array: list, size: list,
                           new_size: int) -> int:
    """Resize array[0] to hold new_size entries (size[0] holds the current
    number); the byte size stays cluster aligned, new room is zeroed."""
    old_byte_size = (size_to_clusters(s, refcount_array_byte_size(s, size[0]))
                     * s.cluster_size)
    new_byte_size = (size_to_clusters(s, refcount_array_byte_size(s, new_size))
                     * s.cluster_size)

    if new_byte_size == old_byte_size:
        size[0] = new_size
        return 0

    assert new_byte_size > 0

    try:
        if array[0] is None:
            array[0] = bytearray(new_byte_size)
        elif new_byte_size > old_byte_size:
            array[0].extend(bytes(new_byte_size - old_byte_size))
        else:
            del array[0][new_byte_size:]
    except MemoryError:
        return -errno.ENOMEM
    size[0] = new_size
    return 0


def inc_refcounts(bs: BlockDriverState, res: BdrvCheckResult,
                  refcount_table: list, refcount_table_size: list, offset: int,
                  size: int) -> int:
    """Count one more reference to each cluster of [offset, offset + size)
    in the in-memory refcount table of a check."""
    s = bs.opaque

    if size <= 0:
        return 0

    start = start_of_cluster(s, offset)
    last = start_of_cluster(s, offset + size - 1)
    for cluster_offset in range(start, last + 1, s.cluster_size):
        k = cluster_offset >> s.cluster_bits
        if k >= refcount_table_size[0]:
            ret = realloc_refcount_array(s, refcount_table,
                                         refcount_table_size, k + 1)
            if ret < 0:
                res.check_errors += 1
                return ret

        refcount = s.get_refcount(refcount_table[0], k)
        if refcount == s.refcount_max:
            error_printf("ERROR: overflow cluster offset=0x%x\n",
                         cluster_offset)
            res.corruptions += 1
            continue
        s.set_refcount(refcount_table[0], k, refcount + 1)

    return 0


# Flags for check_refcounts_l1() and check_refcounts_l2()
CHECK_FRAG_INFO = 0x2      # update BlockFragInfo counters


def check_refcounts_l2(bs: BlockDriverState, res: BdrvCheckResult,
                       refcount_table: list, refcount_table_size: list,
                       l2_offset: int, flags: int) -> int:
    """Count the references of an L2 table and check its entries."""
    s = bs.opaque
    next_contiguous_offset = 0

    l2_size = s.l2_size * 8
    l2_table = bytearray(l2_size)

    ret = io.bdrv_pread(bs.file.bs, l2_offset, l2_table, l2_size)
    if ret < 0:
        error_printf("ERROR: I/O error in check_refcounts_l2\n")
        res.check_errors += 1
        return ret

    for l2_entry in struct.unpack(">%dQ" % s.l2_size, l2_table):
        ctype = qcow2_get_cluster_type(l2_entry)
        if ctype == QCOW2_CLUSTER_COMPRESSED:
            # Compressed clusters don't have QCOW_OFLAG_COPIED
            if l2_entry & QCOW_OFLAG_COPIED:
                error_printf(
                    "ERROR: cluster %d: copied flag must never be set "
                        "for compressed clusters\n",
                        l2_entry >> s.cluster_bits)
                l2_entry &= ~QCOW_OFLAG_COPIED
                res.corruptions += 1

            # Mark cluster as used
            nb_csectors = ((l2_entry >> s.csize_shift) & s.csize_mask) + 1
            l2_entry &= s.cluster_offset_mask
            ret = inc_refcounts(bs, res, refcount_table, refcount_table_size,
                                l2_entry & ~511, nb_csectors * 512)
            if ret < 0:
                return ret

            if flags & CHECK_FRAG_INFO:
                res.bfi.allocated_clusters += 1
                res.bfi.compressed_clusters += 1
                # compressed clusters are re-read sector-wise anyway
                res.bfi.fragmented_clusters += 1
            continue

        if ctype == QCOW2_CLUSTER_ZERO and not (l2_entry & L2E_OFFSET_MASK):
            continue

        if ctype in (QCOW2_CLUSTER_ZERO, QCOW2_CLUSTER_NORMAL):
            offset = l2_entry & L2E_OFFSET_MASK

            if flags & CHECK_FRAG_INFO:
                res.bfi.allocated_clusters += 1
                if (next_contiguous_offset and
                        offset != next_contiguous_offset):
                    res.bfi.fragmented_clusters += 1
                next_contiguous_offset = offset + s.cluster_size

            # Mark cluster as used
            ret = inc_refcounts(bs, res, refcount_table, refcount_table_size,
                                offset, s.cluster_size)
            if ret < 0:
                return ret

            # Correct offsets are cluster aligned
            if offset_into_cluster(s, offset):
                error_printf(
                    "ERROR offset=%x: Cluster is not properly aligned; "
                        "L2 entry corrupted.\n", offset)
                res.corruptions += 1

    return 0


def check_refcounts_l1(bs: BlockDriverState, res: BdrvCheckResult,
                       refcount_table: list, refcount_table_size: list,
                       l1_table_offset: int, l1_size: int, flags: int) -> int:
    """Count the references of an L1 table, its L2 tables and their
    clusters, checking the entries on the way."""
    s = bs.opaque

    l1_size2 = l1_size * 8

    # Mark L1 table as used
    ret = inc_refcounts(bs, res, refcount_table, refcount_table_size,
                        l1_table_offset, l1_size2)
    if ret < 0:
        return ret

    l1_table = ()
    if l1_size2 > 0:
        buf = bytearray(l1_size2)
        ret = io.bdrv_pread(bs.file.bs, l1_table_offset, buf, l1_size2)
        if ret < 0:
            error_printf("ERROR: I/O error in check_refcounts_l1\n")
            res.check_errors += 1
            return ret
        l1_table = struct.unpack(">%dQ" % l1_size, buf)

    for l2_offset in l1_table:
        if l2_offset:
            # Mark L2 table as used
            l2_offset &= L1E_OFFSET_MASK
            ret = inc_refcounts(bs, res, refcount_table, refcount_table_size,
                                l2_offset, s.cluster_size)
            if ret < 0:
                return ret

            # L2 tables are cluster aligned
            if offset_into_cluster(s, l2_offset):
                error_printf(
                    "ERROR l2_offset=%x: Table is not cluster aligned; "
                        "L1 entry corrupted\n", l2_offset)
                res.corruptions += 1

            # Process and check L2 entries
            ret = check_refcounts_l2(bs, res, refcount_table,
                                     refcount_table_size, l2_offset, flags)
            if ret < 0:
                return ret

    return 0


def check_oflag_copied(bs: BlockDriverState, res: BdrvCheckResult,
                       fix: int) -> int:
    """Check (and with BDRV_FIX_ERRORS repair) QCOW_OFLAG_COPIED in every
    L1 and L2 entry.  A failing qcow2_get_refcount was already reported
    by the caller."""
    s = bs.opaque
    l2_table = bytearray(s.cluster_size)
    refcount = [0]

    for i in range(s.l1_size):
        l1_entry = s.l1_table[i]
        l2_offset = l1_entry & L1E_OFFSET_MASK
        l2_dirty = False

        if not l2_offset:
            continue

        ret = qcow2_get_refcount(bs, l2_offset >> s.cluster_bits, refcount)
        if ret < 0:
            continue
        if (refcount[0] == 1) != ((l1_entry & QCOW_OFLAG_COPIED) != 0):
            error_printf("%s OFLAG_COPIED L2 cluster: l1_index=%d l1_entry=%x "
                    "refcount=%d\n",
                    "Repairing" if fix & BDRV_FIX_ERRORS else "ERROR",
                    i, l1_entry, refcount[0])
            if fix & BDRV_FIX_ERRORS:
                s.l1_table[i] = (l1_entry | QCOW_OFLAG_COPIED
                                 if refcount[0] == 1
                                 else l1_entry & ~QCOW_OFLAG_COPIED)
                ret = cluster.qcow2_write_l1_entry(bs, i)
                if ret < 0:
                    res.check_errors += 1
                    return ret
                res.corruptions_fixed += 1
            else:
                res.corruptions += 1

        ret = io.bdrv_pread(bs.file.bs, l2_offset, l2_table, s.l2_size * 8)
        if ret < 0:
            error_printf("ERROR: Could not read L2 table: %s\n",
                    os.strerror(-ret))
            res.check_errors += 1
            return ret

        for j in range(s.l2_size):
            l2_entry = be64.unpack_from(l2_table, j * 8)[0]
            data_offset = l2_entry & L2E_OFFSET_MASK
            cluster_type = qcow2_get_cluster_type(l2_entry)

            if (cluster_type == QCOW2_CLUSTER_NORMAL or
                    (cluster_type == QCOW2_CLUSTER_ZERO and data_offset)):
                ret = qcow2_get_refcount(bs, data_offset >> s.cluster_bits,
                                         refcount)
                if ret < 0:
                    continue
                if (refcount[0] == 1) != ((l2_entry & QCOW_OFLAG_COPIED)
                                          != 0):
                    error_printf("%s OFLAG_COPIED data cluster: l2_entry=%x "
                            "refcount=%d\n",
                            "Repairing" if fix & BDRV_FIX_ERRORS else "ERROR",
                            l2_entry, refcount[0])
                    if fix & BDRV_FIX_ERRORS:
                        be64.pack_into(l2_table, j * 8,
                                       l2_entry | QCOW_OFLAG_COPIED
                                       if refcount[0] == 1
                                       else l2_entry & ~QCOW_OFLAG_COPIED)
                        l2_dirty = True
                        res.corruptions_fixed += 1
                    else:
                        res.corruptions += 1

        if l2_dirty:
            ret = qcow2_pre_write_overlap_check(bs, QCOW2_OL_ACTIVE_L2,
                                                l2_offset, s.cluster_size)
            if ret < 0:
                error_printf(
                    "ERROR: Could not write L2 table; metadata overlap "
                        "check failed: %s\n", os.strerror(-ret))
                res.check_errors += 1
                return ret

            ret = io.bdrv_pwrite(bs.file.bs, l2_offset, l2_table,
                                 s.cluster_size)
            if ret < 0:
                error_printf("ERROR: Could not write L2 table: %s\n",
                        os.strerror(-ret))
                res.check_errors += 1
                return ret

    return 0


def check_refblocks(bs: BlockDriverState, res: BdrvCheckResult, fix: int,
                    rebuild: list, refcount_table: list,
                    nb_clusters: list) -> int:
    """Check the refcount blocks and count their references."""
    s = bs.opaque

    for i in range(s.refcount_table_size):
        offset = s.refcount_table[i]
        cluster_index = offset >> s.cluster_bits

        # Refcount blocks are cluster aligned
        if offset_into_cluster(s, offset):
            error_printf("ERROR refcount block %d is not cluster aligned; "
                    "refcount table entry corrupted\n", i)
            res.corruptions += 1
            rebuild[0] = True
            continue

        if cluster_index >= nb_clusters[0]:
            error_printf("%s refcount block %d is outside image\n",
                    "Repairing" if fix & BDRV_FIX_ERRORS else "ERROR", i)

            if fix & BDRV_FIX_ERRORS:
                # grow the image file so that the block lies inside
                if offset > INT64_MAX - s.cluster_size:
                    ret = -errno.EINVAL
                else:
                    ret = core.bdrv_truncate(bs.file.bs,
                                             offset + s.cluster_size)
                if ret >= 0:
                    ret = size = core.bdrv_getlength(bs.file.bs)
                if ret >= 0:
                    new_nb_clusters = size_to_clusters(s, size)
                    assert new_nb_clusters >= nb_clusters[0]

                    ret = realloc_refcount_array(s, refcount_table,
                                                 nb_clusters,
                                                 new_nb_clusters)
                    if ret < 0:
                        res.check_errors += 1
                        return ret

                    if cluster_index < nb_clusters[0]:
                        res.corruptions_fixed += 1
                        ret = inc_refcounts(bs, res, refcount_table,
                                            nb_clusters, offset,
                                            s.cluster_size)
                        if ret < 0:
                            return ret
                        # freshly allocated and zeroed: its refcount can
                        # only be 1 now
                        continue
                    ret = -errno.EINVAL

                # resize_fail:
                res.corruptions += 1
                rebuild[0] = True
                error_printf("ERROR could not resize image: %s\n",
                        os.strerror(-ret))
            else:
                res.corruptions += 1
            continue

        if offset != 0:
            ret = inc_refcounts(bs, res, refcount_table, nb_clusters,
                                offset, s.cluster_size)
            if ret < 0:
                return ret
            if s.get_refcount(refcount_table[0], cluster_index) != 1:
                error_printf("ERROR refcount block %d refcount=%d\n", i,
                        s.get_refcount(refcount_table[0], cluster_index))
                res.corruptions += 1
                rebuild[0] = True

    return 0


def calculate_refcounts(bs: BlockDriverState, res: BdrvCheckResult, fix: int,
                        rebuild: list, refcount_table: list,
                        nb_clusters: list) -> int:
    """Build the in-memory refcount table from the metadata."""
    s = bs.opaque

    if refcount_table[0] is None:
        old_size = [0]
        ret = realloc_refcount_array(s, refcount_table, old_size,
                                     nb_clusters[0])
        if ret < 0:
            res.check_errors += 1
            return ret

    # header
    ret = inc_refcounts(bs, res, refcount_table, nb_clusters,
                        0, s.cluster_size)
    if ret < 0:
        return ret

    # current L1 table
    ret = check_refcounts_l1(bs, res, refcount_table, nb_clusters,
                             s.l1_table_offset, s.l1_size, CHECK_FRAG_INFO)
    if ret < 0:
        return ret

    # snapshots
    for sn in s.snapshots or ():
        ret = check_refcounts_l1(bs, res, refcount_table, nb_clusters,
                                 sn.l1_table_offset, sn.l1_size, 0)
        if ret < 0:
            return ret
    ret = inc_refcounts(bs, res, refcount_table, nb_clusters,
                        s.snapshots_offset, s.snapshots_size)
    if ret < 0:
        return ret

    # refcount data
    ret = inc_refcounts(bs, res, refcount_table, nb_clusters,
                        s.refcount_table_offset, s.refcount_table_size * 8)
    if ret < 0:
        return ret

    return check_refblocks(bs, res, fix, rebuild, refcount_table,
                           nb_clusters)


def compare_refcounts(bs: BlockDriverState, res: BdrvCheckResult, fix: int,
                      rebuild: list, highest_cluster: list, refcount_table,
                      nb_clusters: int) -> None:
    """Compare the refcounts on disk with the counted references, fixing
    what fix allows."""
    s = bs.opaque
    refcount = [0]

    highest_cluster[0] = 0
    for i in range(nb_clusters):
        ret = qcow2_get_refcount(bs, i, refcount)
        if ret < 0:
            error_printf("Can't get refcount for cluster %d: %s\n", i,
                    os.strerror(-ret))
            res.check_errors += 1
            continue
        refcount1 = refcount[0]

        refcount2 = s.get_refcount(refcount_table, i)

        if refcount1 > 0 or refcount2 > 0:
            highest_cluster[0] = i

        if refcount1 != refcount2:
            # Check if we're allowed to fix the mismatch
            num_fixed = None
            if refcount1 == 0:
                rebuild[0] = True
            elif refcount1 > refcount2 and (fix & BDRV_FIX_LEAKS):
                num_fixed = "leaks_fixed"
            elif refcount1 < refcount2 and (fix & BDRV_FIX_ERRORS):
                num_fixed = "corruptions_fixed"

            error_printf("%s cluster %d refcount=%d reference=%d\n",
                    "Repairing" if num_fixed is not None else
                    "ERROR" if refcount1 < refcount2 else "Leaked",
                    i, refcount1, refcount2)

            if num_fixed is not None:
                ret = update_refcount(bs, i << s.cluster_bits, 1,
                                      refcount_diff(refcount1, refcount2),
                                      refcount1 > refcount2,
                                      QCOW2_DISCARD_ALWAYS)
                if ret >= 0:
                    setattr(res, num_fixed, getattr(res, num_fixed) + 1)
                    continue

            # And if we couldn't, print an error
            if refcount1 < refcount2:
                res.corruptions += 1
            else:
                res.leaks += 1


def alloc_clusters_imrt(bs: BlockDriverState, cluster_count: int,
                        refcount_table: list, imrt_nb_clusters: list,
                        first_free_cluster: list) -> int:
    """Allocate cluster_count contiguous clusters in the in-memory refcount
    table (not the on-disk one), at or after first_free_cluster[0], which
    is left at the first gap seen; the offset, or -errno."""
    s = bs.opaque
    cluster_index = first_free_cluster[0]
    first_gap = True
    contiguous_free_clusters = 0

    while (cluster_index < imrt_nb_clusters[0] and
           contiguous_free_clusters < cluster_count):
        if not s.get_refcount(refcount_table[0], cluster_index):
            contiguous_free_clusters += 1
            if first_gap:
                first_free_cluster[0] = cluster_index
                first_gap = False
        elif contiguous_free_clusters:
            contiguous_free_clusters = 0
        cluster_index += 1

    # Not found: grow the table to append free clusters at the image end
    if contiguous_free_clusters < cluster_count:
        ret = realloc_refcount_array(s, refcount_table, imrt_nb_clusters,
                                     cluster_index + cluster_count
                                     - contiguous_free_clusters)
        if ret < 0:
            return ret

    # Go back to the first free cluster
    cluster_index -= contiguous_free_clusters
    for i in range(cluster_count):
        s.set_refcount(refcount_table[0], cluster_index + i, 1)

    return cluster_index << s.cluster_bits


def rebuild_refcount_structure(bs: BlockDriverState, res: BdrvCheckResult,
                               refcount_table: list, nb_clusters: list) -> int:
    """Write a new refcount structure from the in-memory refcount table
    alone (allocating its clusters there too).  The old structure leaks."""
    s = bs.opaque
    first_free_cluster = [0]
    reftable_offset = -1
    cluster_index = 0
    reftable_size = 0
    on_disk_reftable: list = []

    cache.qcow2_cache_empty(bs, s.refcount_block_cache)

    while True:     # write_refblocks:
        while cluster_index < nb_clusters[0]:
            if not s.get_refcount(refcount_table[0], cluster_index):
                cluster_index += 1
                continue

            refblock_index = cluster_index >> s.refcount_block_bits
            refblock_start = refblock_index << s.refcount_block_bits

            # Don't allocate a cluster in a refblock already written to disk
            if first_free_cluster[0] < refblock_start:
                first_free_cluster[0] = refblock_start
            refblock_offset = alloc_clusters_imrt(bs, 1, refcount_table,
                                                  nb_clusters,
                                                  first_free_cluster)
            if refblock_offset < 0:
                error_printf("ERROR allocating refblock: %s\n",
                        os.strerror(-refblock_offset))
                res.check_errors += 1
                return refblock_offset

            if reftable_size <= refblock_index:
                reftable_size = (align_offset((refblock_index + 1) * 8,
                                              s.cluster_size) // 8)
                on_disk_reftable.extend([0] * (reftable_size
                                               - len(on_disk_reftable)))

                # the reftable needs a new place; the old one leaks, which
                # a leak-fixing check after this rebuild repairs
                reftable_offset = -1
            on_disk_reftable[refblock_index] = refblock_offset

            # If this is apparently the last refblock (for now), try to
            # squeeze the reftable in
            if (refblock_index == (nb_clusters[0] - 1)
                    >> s.refcount_block_bits and reftable_offset < 0):
                reftable_clusters = size_to_clusters(s, reftable_size * 8)
                reftable_offset = alloc_clusters_imrt(bs, reftable_clusters,
                                                      refcount_table,
                                                      nb_clusters,
                                                      first_free_cluster)
                if reftable_offset < 0:
                    error_printf("ERROR allocating reftable: %s\n",
                            os.strerror(-reftable_offset))
                    res.check_errors += 1
                    return reftable_offset

            ret = qcow2_pre_write_overlap_check(bs, 0, refblock_offset,
                                                s.cluster_size)
            if ret < 0:
                error_printf("ERROR writing refblock: %s\n", os.strerror(-ret))
                return ret

            # the array is cluster aligned: the slice is a whole block
            start = refblock_index * s.cluster_size
            on_disk_refblock = refcount_table[0][start:start + s.cluster_size]

            ret = io.bdrv_write(bs.file.bs,
                                refblock_offset // BDRV_SECTOR_SIZE,
                                on_disk_refblock, s.cluster_sectors)
            if ret < 0:
                error_printf("ERROR writing refblock: %s\n", os.strerror(-ret))
                return ret

            # Go to the end of this refblock
            cluster_index = refblock_start + s.refcount_block_size

        if reftable_offset >= 0:
            break

        post_refblock_start = align_offset(nb_clusters[0],
                                           s.refcount_block_size)
        reftable_clusters = size_to_clusters(s, reftable_size * 8)
        # Not pretty but simple
        if first_free_cluster[0] < post_refblock_start:
            first_free_cluster[0] = post_refblock_start
        reftable_offset = alloc_clusters_imrt(bs, reftable_clusters,
                                              refcount_table, nb_clusters,
                                              first_free_cluster)
        if reftable_offset < 0:
            error_printf("ERROR allocating reftable: %s\n",
                    os.strerror(-reftable_offset))
            res.check_errors += 1
            return reftable_offset

    assert on_disk_reftable

    ret = qcow2_pre_write_overlap_check(bs, 0, reftable_offset,
                                        reftable_size * 8)
    if ret < 0:
        error_printf("ERROR writing reftable: %s\n", os.strerror(-ret))
        return ret

    assert reftable_size < INT_MAX // 8
    ret = io.bdrv_pwrite(bs.file.bs, reftable_offset,
                         struct.pack(">%dQ" % reftable_size,
                                     *on_disk_reftable),
                         reftable_size * 8)
    if ret < 0:
        error_printf("ERROR writing reftable: %s\n", os.strerror(-ret))
        return ret

    # Enter new reftable into the image header
    data = struct.pack(">QI", reftable_offset,
                       size_to_clusters(s, reftable_size * 8))
    ret = io.bdrv_pwrite_sync(bs.file.bs,
                              QCOW_HEADER_OFFSETOF["refcount_table_offset"],
                              data, len(data))
    if ret < 0:
        error_printf("ERROR setting reftable: %s\n", os.strerror(-ret))
        return ret

    s.refcount_table = Qcow2MetadataTable(on_disk_reftable)
    s.refcount_table_offset = reftable_offset
    s.refcount_table_size = reftable_size
    return 0


def qcow2_check_refcounts(bs: BlockDriverState, res: BdrvCheckResult,
                          fix: int) -> int:
    """Check the refcounts of the image against its references.  0 if
    nothing is wrong, the number of errors if it is corrupted, -errno if
    the check itself failed."""
    s = bs.opaque
    refcount_table = [None]
    rebuild = [False]
    highest_cluster = [0]

    size = core.bdrv_getlength(bs.file.bs)
    if size < 0:
        res.check_errors += 1
        return size

    nb_clusters = [size_to_clusters(s, size)]
    if nb_clusters[0] > INT_MAX:
        res.check_errors += 1
        return -errno.EFBIG

    res.bfi.total_clusters = size_to_clusters(
        s, bs.total_sectors * BDRV_SECTOR_SIZE)

    ret = calculate_refcounts(bs, res, fix, rebuild, refcount_table,
                              nb_clusters)
    if ret < 0:
        return ret

    # Without a rebuild but with something to fix, the comparison runs
    # again below and this result is dropped
    pre_compare_res = _check_result_copy(res)
    compare_refcounts(bs, res, 0, rebuild, highest_cluster,
                      refcount_table[0], nb_clusters[0])

    if rebuild[0] and (fix & BDRV_FIX_ERRORS):
        old_res = _check_result_copy(res)
        fresh_leaks = 0

        error_printf("Rebuilding refcount structure\n")
        ret = rebuild_refcount_structure(bs, res, refcount_table,
                                         nb_clusters)
        if ret < 0:
            return ret

        res.corruptions = 0
        res.leaks = 0

        # The reftable changed: count the references again
        rebuild[0] = False
        refcount_table[0][:] = bytes(len(refcount_table[0]))
        ret = calculate_refcounts(bs, res, 0, rebuild, refcount_table,
                                  nb_clusters)
        if ret < 0:
            return ret

        if fix & BDRV_FIX_LEAKS:
            # The old refcount structure leaks now; fix that.  Only leaks
            # the rebuild made and that could not be fixed count.
            saved_res = _check_result_copy(res)
            _check_result_assign(res, BdrvCheckResult())

            compare_refcounts(bs, res, BDRV_FIX_LEAKS, rebuild,
                              highest_cluster, refcount_table[0],
                              nb_clusters[0])
            if rebuild[0]:
                error_printf("ERROR rebuilt refcount structure is still "
                             "broken\n")

            fresh_leaks = res.leaks
            _check_result_assign(res, saved_res)

        if res.corruptions < old_res.corruptions:
            res.corruptions_fixed += old_res.corruptions - res.corruptions
        if res.leaks < old_res.leaks:
            res.leaks_fixed += old_res.leaks - res.leaks
        res.leaks += fresh_leaks
    elif fix:
        if rebuild[0]:
            error_printf("ERROR need to rebuild refcount structures\n")
            res.check_errors += 1
            return -errno.EIO

        if res.leaks or res.corruptions:
            _check_result_assign(res, pre_compare_res)
            compare_refcounts(bs, res, fix, rebuild, highest_cluster,
                              refcount_table[0], nb_clusters[0])

    # check OFLAG_COPIED
    ret = check_oflag_copied(bs, res, fix)
    if ret < 0:
        return ret

    res.image_end_offset = (highest_cluster[0] + 1) * s.cluster_size
    return 0


_CHECK_RESULT_FIELDS = ("corruptions", "leaks", "check_errors",
                        "corruptions_fixed", "leaks_fixed", "image_end_offset")
_FRAG_INFO_FIELDS = ("allocated_clusters", "total_clusters",
                     "fragmented_clusters", "compressed_clusters")


def _check_result_assign(dst: BdrvCheckResult, src: BdrvCheckResult) -> None:
    """C's struct assignment *dst = *src (dst is the caller's object)."""
    for name in _CHECK_RESULT_FIELDS:
        setattr(dst, name, getattr(src, name))
    for name in _FRAG_INFO_FIELDS:
        setattr(dst.bfi, name, getattr(src.bfi, name))


def _check_result_copy(src: BdrvCheckResult) -> BdrvCheckResult:
    dst = BdrvCheckResult()
    _check_result_assign(dst, src)
    return dst


def ranges_overlap(first1: int, len1: int, first2: int, len2: int) -> bool:
    last1 = first1 + len1 - 1
    last2 = first2 + len2 - 1
    return not (last2 < first1 or last1 < first2)


def _range_touches(clusters: frozenset, offset: int, size: int,
                   cluster_size: int) -> bool:
    """Does the cluster-aligned range [offset, offset + size) contain one
    of clusters?  Walks whichever of the two is smaller."""
    if size // cluster_size <= len(clusters):
        for c in range(offset, offset + size, cluster_size):
            if c in clusters:
                return True
        return False
    end = offset + size
    for c in clusters:
        if offset <= c < end:
            return True
    return False


def qcow2_check_metadata_overlap(bs: BlockDriverState, ign: int, offset: int,
                                 size: int) -> int:
    """Would a write of [offset, offset + size) hit metadata?  0 if not,
    the QCow2MetadataOverlap bit of one section hit, or -errno if a check
    failed (reading inactive L1 tables).  ign lists sections to skip."""
    s = bs.opaque
    chk = s.overlap_check & ~ign

    if not size:
        return 0

    if chk & QCOW2_OL_MAIN_HEADER:
        if offset < s.cluster_size:
            return QCOW2_OL_MAIN_HEADER

    # align range to test to cluster boundaries
    size = align_offset(offset_into_cluster(s, offset) + size,
                        s.cluster_size)
    offset = start_of_cluster(s, offset)

    if (chk & QCOW2_OL_ACTIVE_L1) and s.l1_size:
        if ranges_overlap(offset, size, s.l1_table_offset, s.l1_size * 8):
            return QCOW2_OL_ACTIVE_L1

    if (chk & QCOW2_OL_REFCOUNT_TABLE) and s.refcount_table_size:
        if ranges_overlap(offset, size, s.refcount_table_offset,
                          s.refcount_table_size * 8):
            return QCOW2_OL_REFCOUNT_TABLE

    if (chk & QCOW2_OL_SNAPSHOT_TABLE) and s.snapshots_size:
        if ranges_overlap(offset, size, s.snapshots_offset, s.snapshots_size):
            return QCOW2_OL_SNAPSHOT_TABLE

    if (chk & QCOW2_OL_INACTIVE_L1) and s.snapshots:
        for sn in s.snapshots:
            if sn.l1_size and ranges_overlap(offset, size, sn.l1_table_offset,
                                             sn.l1_size * 8):
                return QCOW2_OL_INACTIVE_L1

    # The L2 tables and refcount blocks are one cluster each: the range
    # (now cluster aligned) overlaps one iff it contains a cluster the
    # table touches
    if (chk & QCOW2_OL_ACTIVE_L2) and s.l1_table:
        if _range_touches(s.l1_table.touched_clusters(L1E_OFFSET_MASK,
                                                      s.cluster_size),
                          offset, size, s.cluster_size):
            return QCOW2_OL_ACTIVE_L2

    if (chk & QCOW2_OL_REFCOUNT_BLOCK) and s.refcount_table:
        if _range_touches(s.refcount_table.touched_clusters(REFT_OFFSET_MASK,
                                                            s.cluster_size),
                          offset, size, s.cluster_size):
            return QCOW2_OL_REFCOUNT_BLOCK

    if (chk & QCOW2_OL_INACTIVE_L2) and s.snapshots:
        for sn in s.snapshots:
            l1_sz2 = sn.l1_size * 8
            l1 = bytearray(l1_sz2)
            ret = io.bdrv_pread(bs.file.bs, sn.l1_table_offset, l1, l1_sz2)
            if ret < 0:
                return ret

            for e in struct.unpack(">%dQ" % sn.l1_size, l1):
                l2_ofs = e & L1E_OFFSET_MASK
                if l2_ofs and ranges_overlap(offset, size, l2_ofs,
                                             s.cluster_size):
                    return QCOW2_OL_INACTIVE_L2

    return 0


metadata_ol_names = {
    QCOW2_OL_MAIN_HEADER: "qcow2_header",
    QCOW2_OL_ACTIVE_L1: "active L1 table",
    QCOW2_OL_ACTIVE_L2: "active L2 table",
    QCOW2_OL_REFCOUNT_TABLE: "refcount table",
    QCOW2_OL_REFCOUNT_BLOCK: "refcount block",
    QCOW2_OL_SNAPSHOT_TABLE: "snapshot table",
    QCOW2_OL_INACTIVE_L1: "inactive L1 table",
    QCOW2_OL_INACTIVE_L2: "inactive L2 table",
}
assert len(metadata_ol_names) == QCOW2_OL_MAX_BITNR


def qcow2_pre_write_overlap_check(bs: BlockDriverState, ign: int, offset: int,
                                  size: int) -> int:
    """qcow2_check_metadata_overlap; an overlap marks the image corrupt,
    makes the BDS unusable and returns -EIO."""
    ret = qcow2_check_metadata_overlap(bs, ign, offset, size)

    if ret < 0:
        return ret
    elif ret > 0:
        qcow2.qcow2_signal_corruption(
            bs, True, offset, size, "Preventing invalid write on metadata "
            "(overlaps with %s)", metadata_ol_names[ret])
        return -errno.EIO

    return 0
