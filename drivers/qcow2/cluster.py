"""L1/L2 table handling, cluster allocation for writes, compressed clusters,
discard and zero clusters: the Python twin of QEMU's
block/qcow2-cluster.c (v2.5.0).

`uint64_t **table` arguments are one-element lists holding the cache's
bytearray; `int *num`, `uint64_t *host_offset`, `QCowL2Meta **m` and the
like are one-element lists too.  C's `&l2_table[l2_index]` becomes the
table plus a start index.
"""

from __future__ import annotations

import errno
import struct
import zlib

from block import io
from block.block_int import (BDRV_REQ_MAY_UNMAP, BDRV_SECTOR_BITS,
                             BDRV_SECTOR_MASK, BDRV_SECTOR_SIZE,
                             BLKDBG_COW_READ, BLKDBG_COW_WRITE, BLKDBG_EVENT,
                             BLKDBG_L1_GROW_ACTIVATE_TABLE,
                             BLKDBG_L1_GROW_ALLOC_TABLE,
                             BLKDBG_L1_GROW_WRITE_TABLE,
                             BLKDBG_L1_SHRINK_FREE_L2_CLUSTERS,
                             BLKDBG_L1_SHRINK_WRITE_TABLE, BLKDBG_L1_UPDATE,
                             BLKDBG_L2_ALLOC_COW_READ, BLKDBG_L2_ALLOC_WRITE,
                             BLKDBG_L2_UPDATE_COMPRESSED,
                             BLKDBG_READ_COMPRESSED, BlockDriverState)
from block.trace import trace_event_register
from drivers.qcow2 import cache, qcow2, refcount
from drivers.qcow2.qcow2_h import (
    INT_MAX, L1E_OFFSET_MASK, L2E_COMPRESSED_OFFSET_SIZE_MASK,
    L2E_OFFSET_MASK, QCOW2_CLUSTER_COMPRESSED, QCOW2_CLUSTER_NORMAL,
    QCOW2_CLUSTER_UNALLOCATED, QCOW2_CLUSTER_ZERO, QCOW2_DISCARD_ALWAYS,
    QCOW2_DISCARD_NEVER, QCOW2_DISCARD_OTHER, QCOW2_DISCARD_REQUEST,
    QCOW2_OL_ACTIVE_L1, QCOW_HEADER_OFFSETOF, QCOW_OFLAG_COMPRESSED,
    QCOW_OFLAG_COPIED, QCOW_OFLAG_ZERO, Qcow2COWRegion,
    Qcow2MetadataTable, QCowL2Meta, align_offset, be64, l2meta_cow_end,
    l2meta_cow_start, offset_into_cluster, offset_to_l2_index,
    qcow2_get_cluster_type, qcow2_need_accurate_refcounts,
    size_to_clusters, start_of_cluster)
from util.coroutine import coroutine_fn, qemu_coroutine_self
from util.coroutine_lock import (qemu_co_mutex_lock, qemu_co_mutex_unlock,
                                 qemu_co_queue_wait)
from util.iov import QEMUIOVector, qemu_iovec_init_external

trace_qcow2_l2_allocate = trace_event_register(
    "qcow2_l2_allocate", "bs %p l1_index %d")
trace_qcow2_l2_allocate_get_empty = trace_event_register(
    "qcow2_l2_allocate_get_empty", "bs %p l1_index %d")
trace_qcow2_l2_allocate_write_l2 = trace_event_register(
    "qcow2_l2_allocate_write_l2", "bs %p l1_index %d")
trace_qcow2_l2_allocate_write_l1 = trace_event_register(
    "qcow2_l2_allocate_write_l1", "bs %p l1_index %d")
trace_qcow2_l2_allocate_done = trace_event_register(
    "qcow2_l2_allocate_done", "bs %p l1_index %d ret %d")
trace_qcow2_cluster_link_l2 = trace_event_register(
    "qcow2_cluster_link_l2", "co %p nb_clusters %d")
trace_qcow2_handle_copied = trace_event_register(
    "qcow2_handle_copied",
    "co %p guest_offset 0x%x host_offset 0x%x bytes 0x%x")
trace_qcow2_handle_alloc = trace_event_register(
    "qcow2_handle_alloc",
    "co %p guest_offset 0x%x host_offset 0x%x bytes 0x%x")
trace_qcow2_do_alloc_clusters_offset = trace_event_register(
    "qcow2_do_alloc_clusters_offset",
    "co %p guest_offset 0x%x host_offset 0x%x nb_clusters %d")
trace_qcow2_cluster_alloc_phys = trace_event_register(
    "qcow2_cluster_alloc_phys", "co %p")
trace_qcow2_alloc_clusters_offset = trace_event_register(
    "qcow2_alloc_clusters_offset", "co %p offset 0x%x sectors %d")

_unpack_be64 = be64.unpack_from
_pack_be64 = be64.pack_into


def qcow2_shrink_l1_table(bs: BlockDriverState, exact_size: int) -> int:
    """Drop the L1 entries from exact_size on and free their L2 tables
    (QEMU 2.10).  The table keeps its size, in memory and in the header:
    the dropped entries become zero."""
    s = bs.opaque

    if exact_size >= s.l1_size:
        return 0

    new_l1_size = exact_size

    # 2.5's I/O layer writes zeroes by whole sectors only, and these
    # entries need not fill one: a zeroed buffer writes them instead
    BLKDBG_EVENT(bs.file, BLKDBG_L1_SHRINK_WRITE_TABLE)
    nbytes = (s.l1_size - new_l1_size) * 8
    ret = io.bdrv_pwrite(bs.file.bs, s.l1_table_offset + new_l1_size * 8,
                         bytes(nbytes), nbytes)
    if ret >= 0:
        ret = io.bdrv_flush(bs.file.bs)
    if ret < 0:
        # the table on disk may be zeroed in part only; forgetting the
        # entries in memory too keeps the L2 tables from being used
        s.l1_table[new_l1_size:] = [0] * (s.l1_size - new_l1_size)
        return ret

    BLKDBG_EVENT(bs.file, BLKDBG_L1_SHRINK_FREE_L2_CLUSTERS)
    for i in range(s.l1_size - 1, new_l1_size - 1, -1):
        l2_offset = s.l1_table[i] & L1E_OFFSET_MASK
        if not l2_offset:
            continue
        refcount.qcow2_free_clusters(bs, l2_offset, s.cluster_size,
                                     QCOW2_DISCARD_ALWAYS)
        s.l1_table[i] = 0
    return 0


def qcow2_grow_l1_table(bs: BlockDriverState, min_size: int,
                        exact_size: bool) -> int:
    s = bs.opaque

    if min_size <= s.l1_size:
        return 0

    # Check min_size before computing new_l1_size (keeps the loop below
    # from overflowing)
    if min_size > INT_MAX // 8:
        return -errno.EFBIG

    if exact_size:
        new_l1_size = min_size
    else:
        # Bump size up to reduce the number of times we have to grow
        new_l1_size = s.l1_size
        if new_l1_size == 0:
            new_l1_size = 1
        while min_size > new_l1_size:
            new_l1_size = (new_l1_size * 3 + 1) // 2

    if new_l1_size > INT_MAX // 8:
        return -errno.EFBIG

    new_l1_size2 = 8 * new_l1_size
    new_l1_table = Qcow2MetadataTable(s.l1_table)
    new_l1_table.extend([0] * (new_l1_size - s.l1_size))

    # write new table (align to cluster)
    BLKDBG_EVENT(bs.file, BLKDBG_L1_GROW_ALLOC_TABLE)
    new_l1_table_offset = refcount.qcow2_alloc_clusters(bs, new_l1_size2)
    if new_l1_table_offset < 0:
        return new_l1_table_offset

    ret = cache.qcow2_cache_flush(bs, s.refcount_block_cache)
    if ret >= 0:
        # the L1 position has not been updated yet, so these clusters
        # must indeed be completely free
        ret = refcount.qcow2_pre_write_overlap_check(
            bs, 0, new_l1_table_offset, new_l1_size2)
    if ret >= 0:
        BLKDBG_EVENT(bs.file, BLKDBG_L1_GROW_WRITE_TABLE)
        buf = bytearray(align_offset(new_l1_size2, 512))
        struct.pack_into(">%dQ" % new_l1_size, buf, 0, *new_l1_table)
        ret = io.bdrv_pwrite_sync(bs.file.bs, new_l1_table_offset, buf,
                                  new_l1_size2)
    if ret >= 0:
        # set new table
        BLKDBG_EVENT(bs.file, BLKDBG_L1_GROW_ACTIVATE_TABLE)
        data = struct.pack(">IQ", new_l1_size, new_l1_table_offset)
        ret = io.bdrv_pwrite_sync(bs.file.bs, QCOW_HEADER_OFFSETOF["l1_size"],
                                  data, len(data))
    if ret < 0:
        refcount.qcow2_free_clusters(bs, new_l1_table_offset, new_l1_size2,
                                     QCOW2_DISCARD_OTHER)
        return ret

    old_l1_table_offset = s.l1_table_offset
    s.l1_table_offset = new_l1_table_offset
    s.l1_table = new_l1_table
    old_l1_size = s.l1_size
    s.l1_size = new_l1_size
    refcount.qcow2_free_clusters(bs, old_l1_table_offset, old_l1_size * 8,
                                 QCOW2_DISCARD_OTHER)
    return 0


def l2_load(bs: BlockDriverState, l2_offset: int, l2_table: list) -> int:
    """Get the L2 table at l2_offset from the cache (reading it if need
    be)."""
    s = bs.opaque
    return cache.qcow2_cache_get(bs, s.l2_table_cache, l2_offset, l2_table)


L1_ENTRIES_PER_SECTOR = 512 // 8


def qcow2_write_l1_entry(bs: BlockDriverState, l1_index: int) -> int:
    """Write the sector of the L1 table holding l1_index (a single entry
    would make the layer below read-modify-write)."""
    s = bs.opaque

    l1_start_index = l1_index & ~(L1_ENTRIES_PER_SECTOR - 1)
    entries = s.l1_table[l1_start_index:
                         min(l1_start_index + L1_ENTRIES_PER_SECTOR,
                             s.l1_size)]
    buf = bytearray(L1_ENTRIES_PER_SECTOR * 8)
    struct.pack_into(">%dQ" % len(entries), buf, 0, *entries)

    ret = refcount.qcow2_pre_write_overlap_check(
        bs, QCOW2_OL_ACTIVE_L1, s.l1_table_offset + 8 * l1_start_index,
        len(buf))
    if ret < 0:
        return ret

    BLKDBG_EVENT(bs.file, BLKDBG_L1_UPDATE)
    ret = io.bdrv_pwrite_sync(bs.file.bs,
                              s.l1_table_offset + 8 * l1_start_index,
                              buf, len(buf))
    if ret < 0:
        return ret

    return 0


def l2_allocate(bs: BlockDriverState, l1_index: int, table: list) -> int:
    """Allocate a new L2 table for l1_index, a copy of the old one if the
    entry was in use (COW of the table), else zeroed."""
    s = bs.opaque
    l2_table = None

    old_l2_offset = s.l1_table[l1_index]

    trace_qcow2_l2_allocate(bs, l1_index)

    # allocate a new l2 entry
    l2_offset = refcount.qcow2_alloc_clusters(bs, s.l2_size * 8)
    if l2_offset < 0:
        ret = l2_offset
    elif l2_offset == 0:
        # the refcounts lost track of the header (QEMU 2.12's check)
        qcow2.qcow2_signal_corruption(bs, True, -1, -1, "Preventing invalid "
                                      "allocation of L2 table at offset 0")
        ret = -errno.EIO
    else:
        ret = cache.qcow2_cache_flush(bs, s.refcount_block_cache)

    if ret >= 0:
        # allocate a new entry in the l2 cache
        trace_qcow2_l2_allocate_get_empty(bs, l1_index)
        ret = cache.qcow2_cache_get_empty(bs, s.l2_table_cache, l2_offset,
                                          table)
    if ret >= 0:
        l2_table = table[0]

        if (old_l2_offset & L1E_OFFSET_MASK) == 0:
            # if there was no old l2 table, clear the new table
            l2_table[:] = bytes(s.l2_size * 8)
        else:
            # if there was an old l2 table, read it from the disk
            BLKDBG_EVENT(bs.file, BLKDBG_L2_ALLOC_COW_READ)
            old_table = [None]
            ret = cache.qcow2_cache_get(bs, s.l2_table_cache,
                                        old_l2_offset & L1E_OFFSET_MASK,
                                        old_table)
            if ret >= 0:
                l2_table[:] = old_table[0]
                cache.qcow2_cache_put(bs, s.l2_table_cache, old_table)

    if ret >= 0:
        # write the l2 table to the file
        BLKDBG_EVENT(bs.file, BLKDBG_L2_ALLOC_WRITE)

        trace_qcow2_l2_allocate_write_l2(bs, l1_index)
        cache.qcow2_cache_entry_mark_dirty(bs, s.l2_table_cache, l2_table)
        ret = cache.qcow2_cache_flush(bs, s.l2_table_cache)

    if ret >= 0:
        # update the L1 entry
        trace_qcow2_l2_allocate_write_l1(bs, l1_index)
        s.l1_table[l1_index] = l2_offset | QCOW_OFLAG_COPIED
        ret = qcow2_write_l1_entry(bs, l1_index)

    if ret >= 0:
        table[0] = l2_table
        trace_qcow2_l2_allocate_done(bs, l1_index, 0)
        return 0

    # fail:
    trace_qcow2_l2_allocate_done(bs, l1_index, ret)
    if l2_table is not None:
        cache.qcow2_cache_put(bs, s.l2_table_cache, table)
    s.l1_table[l1_index] = old_l2_offset
    if l2_offset > 0:
        refcount.qcow2_free_clusters(bs, l2_offset, s.l2_size * 8,
                                     QCOW2_DISCARD_ALWAYS)
    return ret


def count_contiguous_clusters(nb_clusters: int, cluster_size: int, l2_table,
                              l2_index: int, stop_flags: int) -> int:
    """How many clusters from l2_table[l2_index] on are contiguous in the
    image file?  Counting stops where a flag of stop_flags differs from
    the first cluster's (e.g. at the first compressed cluster)."""
    mask = stop_flags | L2E_OFFSET_MASK | QCOW_OFLAG_COMPRESSED
    first_entry = _unpack_be64(l2_table, l2_index * 8)[0]
    offset = first_entry & mask

    if not offset:
        return 0

    assert qcow2_get_cluster_type(first_entry) == QCOW2_CLUSTER_NORMAL

    entries = struct.unpack_from(">%dQ" % nb_clusters, l2_table,
                                 l2_index * 8)
    i = 0
    for l2_entry in entries:
        if offset + i * cluster_size != l2_entry & mask:
            break
        i += 1

    return i


def count_contiguous_clusters_by_type(nb_clusters: int, l2_table,
                                      l2_index: int, wanted_type: int) -> int:
    entries = struct.unpack_from(">%dQ" % nb_clusters, l2_table,
                                 l2_index * 8)
    i = 0
    for l2_entry in entries:
        if qcow2_get_cluster_type(l2_entry) != wanted_type:
            break
        i += 1

    return i


@coroutine_fn
def copy_sectors(bs: BlockDriverState, start_sect: int, cluster_offset: int,
                 n_start: int, n_end: int) -> int:
    """Copy sectors [n_start, n_end) of the guest cluster at start_sect,
    as the image reads them now, into the host cluster (COW)."""
    s = bs.opaque

    n = n_end - n_start
    if n <= 0:
        return 0

    buf = io.qemu_try_blockalign(bs, n * BDRV_SECTOR_SIZE)
    if buf is None:
        return -errno.ENOMEM

    qiov = QEMUIOVector()
    qemu_iovec_init_external(qiov, [buf], 1)

    BLKDBG_EVENT(bs.file, BLKDBG_COW_READ)

    if not bs.drv:
        return -errno.ENOMEDIUM

    # Call the driver directly rather than the block layer: this avoids
    # double throttling and request tracking, which can deadlock with
    # copy-on-read
    ret = bs.drv.bdrv_co_readv(bs, start_sect + n_start, n, qiov)
    if ret < 0:
        return ret

    assert not bs.encrypted

    ret = refcount.qcow2_pre_write_overlap_check(
        bs, 0, cluster_offset + n_start * BDRV_SECTOR_SIZE,
        n * BDRV_SECTOR_SIZE)
    if ret < 0:
        return ret

    BLKDBG_EVENT(bs.file, BLKDBG_COW_WRITE)
    ret = io.bdrv_co_writev(bs.file.bs, (cluster_offset >> 9) + n_start, n,
                            qiov)
    if ret < 0:
        return ret

    return 0


def qcow2_get_cluster_offset(bs: BlockDriverState, offset: int, num: list,
                             cluster_offset: list) -> int:
    """Find where guest offset is in the image file: cluster_offset[0]
    gets the cluster's host offset, num[0] (in: the sectors wanted) the
    number of contiguous sectors that can be read at once.  Returns the
    cluster type (QCOW2_CLUSTER_*) or -errno."""
    s = bs.opaque

    index_in_cluster = (offset >> 9) & (s.cluster_sectors - 1)
    nb_needed = num[0] + index_in_cluster

    l1_bits = s.l2_bits + s.cluster_bits

    # bytes between the offset and the end of its L1 entry's range, in
    # sectors from the start of the cluster
    nb_available = (1 << l1_bits) - (offset & ((1 << l1_bits) - 1))
    nb_available = (nb_available >> 9) + index_in_cluster

    if nb_needed > nb_available:
        nb_needed = nb_available
    assert nb_needed <= INT_MAX

    cluster_offset[0] = 0

    # seek to the l2 offset in the l1 table
    l1_index = offset >> l1_bits
    if l1_index >= s.l1_size:
        ret = QCOW2_CLUSTER_UNALLOCATED
    else:
        l2_offset = s.l1_table[l1_index] & L1E_OFFSET_MASK
        if not l2_offset:
            ret = QCOW2_CLUSTER_UNALLOCATED
        else:
            if offset_into_cluster(s, l2_offset):
                qcow2.qcow2_signal_corruption(
                    bs, True, -1, -1, "L2 table offset %#x unaligned (L1 "
                    "index: %#x)", l2_offset, l1_index)
                return -errno.EIO

            # load the l2 table in memory
            l2_table = [None]
            ret = l2_load(bs, l2_offset, l2_table)
            if ret < 0:
                return ret
            table = l2_table[0]

            # find the cluster offset for the given disk offset
            l2_index = (offset >> s.cluster_bits) & (s.l2_size - 1)
            entry = _unpack_be64(table, l2_index * 8)[0]

            # nb_needed <= INT_MAX, thus nb_clusters <= INT_MAX, too
            nb_clusters = size_to_clusters(s, nb_needed << 9)

            ret = qcow2_get_cluster_type(entry)
            if ret == QCOW2_CLUSTER_COMPRESSED:
                # Compressed clusters can only be processed one by one
                c = 1
                cluster_offset[0] = entry & L2E_COMPRESSED_OFFSET_SIZE_MASK
            elif ret == QCOW2_CLUSTER_ZERO:
                if s.qcow_version < 3:
                    qcow2.qcow2_signal_corruption(
                        bs, True, -1, -1, "Zero cluster entry found in "
                        "pre-v3 image (L2 offset: %#x, L2 index: %#x)",
                        l2_offset, l2_index)
                    cache.qcow2_cache_put(bs, s.l2_table_cache, l2_table)
                    return -errno.EIO
                c = count_contiguous_clusters_by_type(
                    nb_clusters, table, l2_index, QCOW2_CLUSTER_ZERO)
            elif ret == QCOW2_CLUSTER_UNALLOCATED:
                # how many empty clusters ?
                c = count_contiguous_clusters_by_type(
                    nb_clusters, table, l2_index, QCOW2_CLUSTER_UNALLOCATED)
            else:
                # how many allocated clusters ?
                c = count_contiguous_clusters(nb_clusters, s.cluster_size,
                                              table, l2_index,
                                              QCOW_OFLAG_ZERO)
                cluster_offset[0] = entry & L2E_OFFSET_MASK
                if offset_into_cluster(s, cluster_offset[0]):
                    # QEMU 7.2's words for what 2.5 calls "Data cluster
                    # offset"
                    qcow2.qcow2_signal_corruption(
                        bs, True, -1, -1, "Cluster allocation offset %#x "
                        "unaligned (L2 offset: %#x, L2 index: %#x)",
                        cluster_offset[0], l2_offset, l2_index)
                    cache.qcow2_cache_put(bs, s.l2_table_cache, l2_table)
                    return -errno.EIO

            cache.qcow2_cache_put(bs, s.l2_table_cache, l2_table)

            nb_available = c * s.cluster_sectors

    # out:
    if nb_available > nb_needed:
        nb_available = nb_needed

    num[0] = nb_available - index_in_cluster

    return ret


def get_cluster_table(bs: BlockDriverState, offset: int, new_l2_table: list,
                      new_l2_index: list) -> int:
    """Load (allocating it if needed) the L2 table for guest offset; give
    back the table and the index of offset in it."""
    s = bs.opaque
    l2_table = [None]

    # seek to the l2 offset in the l1 table
    l1_index = offset >> (s.l2_bits + s.cluster_bits)
    if l1_index >= s.l1_size:
        ret = qcow2_grow_l1_table(bs, l1_index + 1, False)
        if ret < 0:
            return ret

    assert l1_index < s.l1_size
    l1_entry = s.l1_table[l1_index]
    l2_offset = l1_entry & L1E_OFFSET_MASK
    if offset_into_cluster(s, l2_offset):
        qcow2.qcow2_signal_corruption(
            bs, True, -1, -1, "L2 table offset %#x unaligned (L1 index: "
            "%#x)", l2_offset, l1_index)
        return -errno.EIO

    # An L2 table "at" offset 0 with the copied flag: QEMU hits an
    # assertion (qcow2_cache_do_get: offset != 0) and aborts
    if (l1_entry & QCOW_OFLAG_COPIED) and not l2_offset:
        qcow2.qcow2_signal_corruption(
            bs, True, -1, -1, "L2 table offset 0 with the copied flag (L1 "
            "index: %#x)", l1_index)
        return -errno.EIO

    # seek the l2 table of the given l2 offset
    if l1_entry & QCOW_OFLAG_COPIED:
        # load the l2 table in memory
        ret = l2_load(bs, l2_offset, l2_table)
        if ret < 0:
            return ret
    else:
        # First allocate a new L2 table (and do COW if needed)
        ret = l2_allocate(bs, l1_index, l2_table)
        if ret < 0:
            return ret

        # Then decrease the refcount of the old table
        if l2_offset:
            refcount.qcow2_free_clusters(bs, l2_offset, s.l2_size * 8,
                                         QCOW2_DISCARD_OTHER)

    # find the cluster offset for the given disk offset
    new_l2_table[0] = l2_table[0]
    new_l2_index[0] = (offset >> s.cluster_bits) & (s.l2_size - 1)

    return 0


def qcow2_alloc_compressed_cluster_offset(bs: BlockDriverState, offset: int,
                                          compressed_size: int) -> int:
    """Allocate room for a compressed cluster at guest offset and enter it
    in the L2 table; the L2 entry, or 0 if the cluster was allocated
    already or allocation failed."""
    s = bs.opaque
    l2_table = [None]
    l2_index = [0]

    ret = get_cluster_table(bs, offset, l2_table, l2_index)
    if ret < 0:
        return 0

    # Compression can't overwrite anything: fail if already allocated
    cluster_offset = _unpack_be64(l2_table[0], l2_index[0] * 8)[0]
    if cluster_offset & L2E_OFFSET_MASK:
        cache.qcow2_cache_put(bs, s.l2_table_cache, l2_table)
        return 0

    cluster_offset = refcount.qcow2_alloc_bytes(bs, compressed_size)
    if cluster_offset < 0:
        cache.qcow2_cache_put(bs, s.l2_table_cache, l2_table)
        return 0
    if cluster_offset == 0:
        # the refcounts lost track of the header (QEMU 2.12's check)
        qcow2.qcow2_signal_corruption(bs, True, -1, -1, "Preventing invalid "
                                      "allocation of compressed cluster at "
                                      "offset 0")
        cache.qcow2_cache_put(bs, s.l2_table_cache, l2_table)
        return 0

    nb_csectors = (((cluster_offset + compressed_size - 1) >> 9)
                   - (cluster_offset >> 9))

    cluster_offset |= (QCOW_OFLAG_COMPRESSED
                       | (nb_csectors << s.csize_shift))

    # update L2 table; compressed clusters never have the copied flag
    BLKDBG_EVENT(bs.file, BLKDBG_L2_UPDATE_COMPRESSED)
    cache.qcow2_cache_entry_mark_dirty(bs, s.l2_table_cache, l2_table[0])
    _pack_be64(l2_table[0], l2_index[0] * 8, cluster_offset)
    cache.qcow2_cache_put(bs, s.l2_table_cache, l2_table)

    return cluster_offset


def perform_cow(bs: BlockDriverState, m: QCowL2Meta, r: Qcow2COWRegion) -> int:
    s = bs.opaque

    if r.nb_sectors == 0:
        return 0

    qemu_co_mutex_unlock(s.lock)
    ret = copy_sectors(bs, m.offset // BDRV_SECTOR_SIZE, m.alloc_offset,
                       r.offset // BDRV_SECTOR_SIZE,
                       r.offset // BDRV_SECTOR_SIZE + r.nb_sectors)
    qemu_co_mutex_lock(s.lock)

    if ret < 0:
        return ret

    # The refcounts must be raised and the COW data written before the L2
    # table points to the new cluster
    cache.qcow2_cache_depends_on_flush(s.l2_table_cache)

    return 0


def qcow2_alloc_cluster_link_l2(bs: BlockDriverState, m: QCowL2Meta) -> int:
    """After the data of an allocating write is written: copy the rest of
    the clusters (COW) and enter the new clusters in the L2 table."""
    s = bs.opaque
    old_cluster = []
    cluster_offset = m.alloc_offset

    trace_qcow2_cluster_link_l2(qemu_coroutine_self(), m.nb_clusters)
    assert m.nb_clusters > 0

    # copy content of unmodified sectors
    ret = perform_cow(bs, m, m.cow_start)
    if ret < 0:
        return ret

    ret = perform_cow(bs, m, m.cow_end)
    if ret < 0:
        return ret

    # Update L2 table.
    if s.use_lazy_refcounts:
        qcow2.qcow2_mark_dirty(bs)
    if qcow2_need_accurate_refcounts(s):
        cache.qcow2_cache_set_dependency(bs, s.l2_table_cache,
                                         s.refcount_block_cache)

    l2_table = [None]
    l2_index = [0]
    ret = get_cluster_table(bs, m.offset, l2_table, l2_index)
    if ret < 0:
        return ret
    table = l2_table[0]
    l2_index = l2_index[0]
    cache.qcow2_cache_entry_mark_dirty(bs, s.l2_table_cache, table)

    assert l2_index + m.nb_clusters <= s.l2_size
    for i in range(m.nb_clusters):
        # Two concurrent writes to the same unallocated cluster each
        # allocate a cluster; the second to complete did a RMW above and
        # now replaces the first one's cluster, which it must free
        pos = (l2_index + i) * 8
        old = _unpack_be64(table, pos)[0]
        if old != 0:
            old_cluster.append(old)

        _pack_be64(table, pos, (cluster_offset + (i << s.cluster_bits))
                   | QCOW_OFLAG_COPIED)

    cache.qcow2_cache_put(bs, s.l2_table_cache, l2_table)

    # If this was a COW, decrease the refcount of the old cluster.  Don't
    # discard clusters that reach refcount 0 (e.g. compressed clusters):
    # the next write will reuse them anyway.
    for old in old_cluster:
        refcount.qcow2_free_any_clusters(bs, old, 1, QCOW2_DISCARD_NEVER)

    return 0


def qcow2_alloc_cluster_abort(bs: BlockDriverState, m: QCowL2Meta) -> None:
    """Free the clusters of an allocation that will not be linked into the
    L2 table (QEMU 2.11)."""
    s = bs.opaque
    refcount.qcow2_free_clusters(bs, m.alloc_offset,
                                 m.nb_clusters << s.cluster_bits,
                                 QCOW2_DISCARD_NEVER)


def count_cow_clusters(s, nb_clusters: int, l2_table, l2_index: int) -> int:
    """The number of clusters from l2_index on that an allocating write can
    use but that need COW (unallocated ones read from the backing file)."""
    entries = struct.unpack_from(">%dQ" % nb_clusters, l2_table,
                                 l2_index * 8)
    i = 0
    for l2_entry in entries:
        cluster_type = qcow2_get_cluster_type(l2_entry)
        if cluster_type == QCOW2_CLUSTER_NORMAL:
            if l2_entry & QCOW_OFLAG_COPIED:
                break
        i += 1

    assert i <= nb_clusters
    return i


def handle_dependencies(bs: BlockDriverState, guest_offset: int,
                        cur_bytes: list, m: list) -> int:
    """Wait for an in-flight allocating write to the same clusters, or
    shorten cur_bytes[0] to end where the next one begins.

    0: no dependency; cur_bytes[0] bytes from guest_offset can be handled
    before the next dependency.  -EAGAIN: we waited; what the caller
    gathered about the clusters may be stale, it must start over."""
    s = bs.opaque
    nbytes = cur_bytes[0]

    for old_alloc in s.cluster_allocs:
        start = guest_offset
        end = start + nbytes
        old_start = l2meta_cow_start(old_alloc)
        old_end = l2meta_cow_end(old_alloc)

        if end <= old_start or start >= old_end:
            continue            # No intersection

        if start < old_start:
            # Stop at the start of a running allocation
            nbytes = old_start - start
        else:
            nbytes = 0

        # With an L2Meta already gathered, stop here: after yielding it
        # would be stale, and cleaning it up is not worth the trouble
        if nbytes == 0 and m[0] is not None:
            cur_bytes[0] = 0
            return 0

        if nbytes == 0:
            # Wait for the dependency to complete, then recheck the
            # clusters
            qemu_co_mutex_unlock(s.lock)
            qemu_co_queue_wait(old_alloc.dependent_requests)
            qemu_co_mutex_lock(s.lock)
            return -errno.EAGAIN

    # use existing clusters and new allocations only up to the next
    # dependency
    cur_bytes[0] = nbytes

    return 0


def handle_copied(bs: BlockDriverState, guest_offset: int, host_offset: list,
                  nbytes: list, m: list) -> int:
    """Count the clusters at guest_offset (up to nbytes[0]) that are
    allocated and need no COW; with host_offset[0] set, only those
    physically contiguous from there.  host_offset[0] comes back as the
    byte for guest_offset (unaligned like it).

    0: no such clusters (nbytes[0] is 0 if the cluster is fine but not at
    the wanted host offset); 1: nbytes[0] (maybe less) can be written;
    -errno on error."""
    s = bs.opaque

    trace_qcow2_handle_copied(qemu_coroutine_self(), guest_offset,
                              host_offset[0], nbytes[0])

    assert (host_offset[0] == 0 or offset_into_cluster(s, guest_offset)
            == offset_into_cluster(s, host_offset[0]))

    # Look at no more than one L2 table
    nb_clusters = size_to_clusters(s, offset_into_cluster(s, guest_offset)
                                   + nbytes[0])

    l2_index = offset_to_l2_index(s, guest_offset)
    nb_clusters = min(nb_clusters, s.l2_size - l2_index)
    assert nb_clusters <= INT_MAX

    # Find L2 entry for the first involved cluster
    l2_table = [None]
    l2_index_p = [0]
    ret = get_cluster_table(bs, guest_offset, l2_table, l2_index_p)
    if ret < 0:
        return ret
    table = l2_table[0]
    l2_index = l2_index_p[0]

    cluster_offset = _unpack_be64(table, l2_index * 8)[0]

    # Check how many clusters are already allocated and don't need COW
    if (qcow2_get_cluster_type(cluster_offset) == QCOW2_CLUSTER_NORMAL
            and (cluster_offset & QCOW_OFLAG_COPIED)):
        # If a specific host_offset is required, check it
        offset_matches = (cluster_offset & L2E_OFFSET_MASK) == host_offset[0]

        if offset_into_cluster(s, cluster_offset & L2E_OFFSET_MASK):
            qcow2.qcow2_signal_corruption(
                bs, True, -1, -1, "Data cluster offset %#x unaligned "
                "(guest offset: %#x)", cluster_offset & L2E_OFFSET_MASK,
                guest_offset)
            ret = -errno.EIO
        elif host_offset[0] != 0 and not offset_matches:
            nbytes[0] = 0
            ret = 0
        else:
            # We keep all QCOW_OFLAG_COPIED clusters
            keep_clusters = count_contiguous_clusters(
                nb_clusters, s.cluster_size, table, l2_index,
                QCOW_OFLAG_COPIED | QCOW_OFLAG_ZERO)
            assert keep_clusters <= nb_clusters

            nbytes[0] = min(nbytes[0], keep_clusters * s.cluster_size
                            - offset_into_cluster(s, guest_offset))
            ret = 1
    else:
        ret = 0

    # Cleanup
    cache.qcow2_cache_put(bs, s.l2_table_cache, l2_table)

    # Only return a host offset if we actually made progress, otherwise
    # handle_alloc() would get requirements it cannot fulfil
    if ret > 0:
        host_offset[0] = ((cluster_offset & L2E_OFFSET_MASK)
                          + offset_into_cluster(s, guest_offset))

    return ret


def do_alloc_cluster_offset(bs: BlockDriverState, guest_offset: int,
                            host_offset: list, nb_clusters: list) -> int:
    """Allocate up to nb_clusters[0] new clusters, anywhere if
    host_offset[0] is 0, else exactly there (then nb_clusters[0] may come
    back 0 if that cluster is in use).  host_offset[0] gets the first."""
    s = bs.opaque

    trace_qcow2_do_alloc_clusters_offset(qemu_coroutine_self(), guest_offset,
                                         host_offset[0], nb_clusters[0])

    trace_qcow2_cluster_alloc_phys(qemu_coroutine_self())
    if host_offset[0] == 0:
        cluster_offset = refcount.qcow2_alloc_clusters(
            bs, nb_clusters[0] * s.cluster_size)
        if cluster_offset < 0:
            return cluster_offset
        host_offset[0] = cluster_offset
        return 0
    else:
        ret = refcount.qcow2_alloc_clusters_at(bs, host_offset[0],
                                               nb_clusters[0])
        if ret < 0:
            return ret
        nb_clusters[0] = ret
        return 0


def handle_alloc(bs: BlockDriverState, guest_offset: int, host_offset: list,
                 nbytes: list, m: list) -> int:
    """Allocate clusters for an unallocated area or one that needs COW;
    with host_offset[0] set, only if they can start there.  host_offset[0]
    comes back as the byte for guest_offset (unaligned like it).

    0: nothing allocated, nbytes[0] is 0; 1: new clusters, nbytes[0] may
    have shrunk; -errno on error."""
    s = bs.opaque

    trace_qcow2_handle_alloc(qemu_coroutine_self(), guest_offset,
                             host_offset[0], nbytes[0])
    assert nbytes[0] > 0

    # Look at no more than one L2 table
    nb_clusters = size_to_clusters(s, offset_into_cluster(s, guest_offset)
                                   + nbytes[0])

    l2_index = offset_to_l2_index(s, guest_offset)
    nb_clusters = min(nb_clusters, s.l2_size - l2_index)
    assert nb_clusters <= INT_MAX

    # Find L2 entry for the first involved cluster
    l2_table = [None]
    l2_index_p = [0]
    ret = get_cluster_table(bs, guest_offset, l2_table, l2_index_p)
    if ret < 0:
        return ret
    l2_index = l2_index_p[0]

    entry = _unpack_be64(l2_table[0], l2_index * 8)[0]

    # For the moment, overwrite compressed clusters one by one
    if entry & QCOW_OFLAG_COMPRESSED:
        nb_clusters = 1
    else:
        nb_clusters = count_cow_clusters(s, nb_clusters, l2_table[0],
                                         l2_index)

    # Only called when there were no non-COW clusters: if there are no
    # unallocated or COW clusters either, our code is wrong
    assert nb_clusters > 0

    cache.qcow2_cache_put(bs, s.l2_table_cache, l2_table)

    # Allocate, if necessary at a given offset in the image file
    alloc_cluster_offset = [start_of_cluster(s, host_offset[0])]
    nb_clusters_p = [nb_clusters]
    ret = do_alloc_cluster_offset(bs, guest_offset, alloc_cluster_offset,
                                  nb_clusters_p)
    if ret < 0:
        return _handle_alloc_fail(bs, m, ret)
    nb_clusters = nb_clusters_p[0]
    alloc_cluster_offset = alloc_cluster_offset[0]

    # Can't extend contiguous allocation
    if nb_clusters == 0:
        nbytes[0] = 0
        return 0

    # Host offset 0 would overwrite the header and means "no preference";
    # the overlap check catches it before it lands in host_offset
    if not alloc_cluster_offset:
        ret = refcount.qcow2_pre_write_overlap_check(
            bs, 0, alloc_cluster_offset, nb_clusters * s.cluster_size)
        assert ret < 0
        return _handle_alloc_fail(bs, m, ret)

    # Save info needed for meta data update.
    #
    # requested_sectors: from the start of the first newly allocated
    # cluster to the end of the (possibly shortened) write request.
    # avail_sectors: from the start of the first newly allocated cluster to
    # the end of the last one.
    # nb_sectors: from the start of the first newly allocated cluster to
    # the end of the area the request writes (without the COW at the end).
    requested_sectors = ((nbytes[0] + offset_into_cluster(s, guest_offset))
                         >> BDRV_SECTOR_BITS)
    avail_sectors = nb_clusters << (s.cluster_bits - BDRV_SECTOR_BITS)
    alloc_n_start = offset_into_cluster(s, guest_offset) >> BDRV_SECTOR_BITS
    nb_sectors = min(requested_sectors, avail_sectors)

    m[0] = QCowL2Meta(
        offset=start_of_cluster(s, guest_offset),
        alloc_offset=alloc_cluster_offset,
        nb_available=nb_sectors,
        nb_clusters=nb_clusters,
        cow_start=Qcow2COWRegion(0, alloc_n_start),
        cow_end=Qcow2COWRegion(nb_sectors * BDRV_SECTOR_SIZE,
                               avail_sectors - nb_sectors),
        next=m[0])
    s.cluster_allocs.insert(0, m[0])

    host_offset[0] = alloc_cluster_offset + offset_into_cluster(s,
                                                                guest_offset)
    nbytes[0] = min(nbytes[0], (nb_sectors * BDRV_SECTOR_SIZE)
                    - offset_into_cluster(s, guest_offset))
    assert nbytes[0] != 0

    return 1


def _handle_alloc_fail(bs: BlockDriverState, m: list, ret: int) -> int:
    """The fail label of handle_alloc."""
    s = bs.opaque
    if m[0] is not None and m[0].nb_clusters > 0:
        s.cluster_allocs.remove(m[0])
    return ret


def qcow2_alloc_cluster_offset(bs: BlockDriverState, offset: int, num: list,
                               host_offset: list, m: list) -> int:
    """Find or allocate the host clusters for an allocating write of
    num[0] sectors at guest offset.  host_offset[0] gets the host offset,
    num[0] the number of sectors that can be written there at once, m[0]
    the chain of QCowL2Meta for newly allocated clusters (None if all were
    allocated already).  Overlaps with allocating writes in flight wait
    for them.  0 or -errno."""
    s = bs.opaque

    trace_qcow2_alloc_clusters_offset(qemu_coroutine_self(), offset, num[0])

    assert (offset & ~BDRV_SECTOR_MASK) == 0

    while True:     # again:
        start = offset
        remaining = num[0] << BDRV_SECTOR_BITS
        cluster_offset = [0]
        host_offset[0] = 0
        cur_bytes = [0]
        m[0] = None

        while True:
            if not host_offset[0]:
                host_offset[0] = start_of_cluster(s, cluster_offset[0])

            assert remaining >= cur_bytes[0]

            start += cur_bytes[0]
            remaining -= cur_bytes[0]
            cluster_offset[0] += cur_bytes[0]

            if remaining == 0:
                break

            cur_bytes[0] = remaining

            # Gather as many contiguous clusters as possible:
            #
            # 1. Check for overlaps with in-flight allocations
            #    a) not in the first cluster: shorten this request, the
            #       rest is handled in the next loop iteration
            #    b) a real overlap: yield and start over (things may have
            #       changed meanwhile)
            #    c) TODO: the request starts in the cluster where the
            #       in-flight allocation ends: shorten that one's COW and
            #       share the cluster
            ret = handle_dependencies(bs, start, cur_bytes, m)
            if ret == -errno.EAGAIN:
                # handle_dependencies doesn't yield once we have an
                # allocation, else the L2Metas would need cleaning up
                assert m[0] is None
                break
            elif ret < 0:
                return ret
            elif cur_bytes[0] == 0:
                break
            # else: cur_bytes[0] may have shrunk so that the next
            # dependency is handled right in the next iteration

            # 2. Count contiguous COPIED clusters.
            ret = handle_copied(bs, start, cluster_offset, cur_bytes, m)
            if ret < 0:
                return ret
            elif ret:
                continue
            elif cur_bytes[0] == 0:
                break

            # 3. Allocate new clusters for what is left, starting at the
            #    cluster_offset of step 2 if there is one
            ret = handle_alloc(bs, start, cluster_offset, cur_bytes, m)
            if ret < 0:
                return ret
            elif ret:
                continue
            else:
                assert cur_bytes[0] == 0
                break

        if ret != -errno.EAGAIN:
            break

    num[0] -= remaining >> BDRV_SECTOR_BITS
    assert num[0] > 0
    assert host_offset[0] != 0

    return 0


def decompress_buffer(out_buf, out_buf_size: int, buf, buf_size: int) -> int:
    """Inflate raw deflate data (no zlib header, window 2^12 as written)
    into exactly out_buf_size bytes of out_buf; 0 or -1."""
    d = zlib.decompressobj(-12)
    try:
        out = d.decompress(bytes(buf[:buf_size]), out_buf_size)
    except zlib.error:
        return -1
    # a stream that does not end (the "Z_BUF_ERROR" case) is fine as long
    # as it filled the buffer
    if len(out) != out_buf_size:
        return -1
    out_buf[:out_buf_size] = out
    return 0


def qcow2_decompress_cluster(bs: BlockDriverState, cluster_offset: int) -> int:
    """Decompress the cluster into s.cluster_cache (unless it is there
    already)."""
    s = bs.opaque

    coffset = cluster_offset & s.cluster_offset_mask
    if s.cluster_cache_offset != coffset:
        nb_csectors = ((cluster_offset >> s.csize_shift) & s.csize_mask) + 1
        sector_offset = coffset & 511
        csize = nb_csectors * 512 - sector_offset
        BLKDBG_EVENT(bs.file, BLKDBG_READ_COMPRESSED)
        ret = io.bdrv_read(bs.file.bs, coffset >> 9, s.cluster_data,
                           nb_csectors)
        if ret < 0:
            return ret
        if decompress_buffer(s.cluster_cache, s.cluster_size,
                             memoryview(s.cluster_data)[sector_offset:],
                             csize) < 0:
            return -errno.EIO
        s.cluster_cache_offset = coffset
    return 0


def discard_single_l2(bs: BlockDriverState, offset: int, nb_clusters: int,
                      type: int, full_discard: bool) -> int:
    """Discard as many of nb_clusters as lie in one L2 table; the number
    discarded or -errno."""
    s = bs.opaque
    l2_table = [None]
    l2_index = [0]

    ret = get_cluster_table(bs, offset, l2_table, l2_index)
    if ret < 0:
        return ret
    table = l2_table[0]
    l2_index = l2_index[0]

    # Limit nb_clusters to one L2 table
    nb_clusters = min(nb_clusters, s.l2_size - l2_index)
    assert nb_clusters <= INT_MAX

    for i in range(nb_clusters):
        pos = (l2_index + i) * 8
        old_l2_entry = _unpack_be64(table, pos)[0]

        # Without full_discard, a discarded area must read back as zeroes
        # on v3 images (v2 would need a zero-filled write).  That is so
        # already for zero clusters and for unallocated ones without a
        # backing file.  With full_discard the area must fall through to
        # the backing file instead.  A zero cluster that keeps its
        # allocation gives it up, as since QEMU 2.10.
        cluster_type = qcow2_get_cluster_type(old_l2_entry)
        if cluster_type == QCOW2_CLUSTER_UNALLOCATED:
            if full_discard or not bs.backing:
                continue
        elif cluster_type == QCOW2_CLUSTER_ZERO:
            if not full_discard and not (old_l2_entry & L2E_OFFSET_MASK):
                continue

        # First remove L2 entries
        cache.qcow2_cache_entry_mark_dirty(bs, s.l2_table_cache, table)
        if not full_discard and s.qcow_version >= 3:
            _pack_be64(table, pos, QCOW_OFLAG_ZERO)
        else:
            _pack_be64(table, pos, 0)

        # Then decrease the refcount
        refcount.qcow2_free_any_clusters(bs, old_l2_entry, 1, type)

    cache.qcow2_cache_put(bs, s.l2_table_cache, l2_table)

    return nb_clusters


def qcow2_discard_clusters(bs: BlockDriverState, offset: int, nb_sectors: int,
                           type: int, full_discard: bool) -> int:
    s = bs.opaque

    end_offset = offset + (nb_sectors << BDRV_SECTOR_BITS)

    # Round start up and end down; the partial cluster at the end of an
    # image whose size is not cluster aligned counts whole (QEMU 2.10)
    offset = align_offset(offset, s.cluster_size)
    if end_offset != bs.total_sectors << BDRV_SECTOR_BITS:
        end_offset = start_of_cluster(s, end_offset)

    if offset > end_offset:
        return 0

    nb_clusters = size_to_clusters(s, end_offset - offset)

    s.cache_discards = True

    # Each L2 table is handled by its own loop iteration
    ret = 0
    while nb_clusters > 0:
        ret = discard_single_l2(bs, offset, nb_clusters, type, full_discard)
        if ret < 0:
            break

        nb_clusters -= ret
        offset += ret * s.cluster_size
    else:
        ret = 0

    s.cache_discards = False
    refcount.qcow2_process_discards(bs, ret)

    return ret


def zero_single_l2(bs: BlockDriverState, offset: int, nb_clusters: int,
                   flags: int) -> int:
    """Make as many of nb_clusters as lie in one L2 table read as zeroes;
    the number done or -errno.  With BDRV_REQ_MAY_UNMAP the clusters are
    freed as well (QEMU 2.10's "qcow2: Honor BDRV_REQ_MAY_UNMAP")."""
    s = bs.opaque
    l2_table = [None]
    l2_index = [0]

    ret = get_cluster_table(bs, offset, l2_table, l2_index)
    if ret < 0:
        return ret
    table = l2_table[0]
    l2_index = l2_index[0]

    # Limit nb_clusters to one L2 table
    nb_clusters = min(nb_clusters, s.l2_size - l2_index)
    assert nb_clusters <= INT_MAX

    unmap = bool(flags & BDRV_REQ_MAY_UNMAP)
    for i in range(nb_clusters):
        pos = (l2_index + i) * 8
        old_offset = _unpack_be64(table, pos)[0]

        # Update L2 entries
        cache.qcow2_cache_entry_mark_dirty(bs, s.l2_table_cache, table)
        if (old_offset & QCOW_OFLAG_COMPRESSED) or unmap:
            _pack_be64(table, pos, QCOW_OFLAG_ZERO)
            refcount.qcow2_free_any_clusters(bs, old_offset, 1,
                                             QCOW2_DISCARD_REQUEST)
        else:
            _pack_be64(table, pos, old_offset | QCOW_OFLAG_ZERO)

    cache.qcow2_cache_put(bs, s.l2_table_cache, l2_table)

    return nb_clusters


def qcow2_zero_clusters(bs: BlockDriverState, offset: int, nb_sectors: int,
                        flags: int) -> int:
    s = bs.opaque

    # The zero flag is only supported by version 3 and newer; without a
    # backing file a discard reads as zeroes too (QEMU 2.10)
    if s.qcow_version < 3:
        if not bs.backing:
            return qcow2_discard_clusters(bs, offset, nb_sectors,
                                          QCOW2_DISCARD_REQUEST, False)
        return -errno.ENOTSUP

    # Each L2 table is handled by its own loop iteration
    nb_clusters = size_to_clusters(s, nb_sectors << BDRV_SECTOR_BITS)

    s.cache_discards = True

    ret = 0
    while nb_clusters > 0:
        ret = zero_single_l2(bs, offset, nb_clusters, flags)
        if ret < 0:
            break

        nb_clusters -= ret
        offset += ret * s.cluster_size
    else:
        ret = 0

    s.cache_discards = False
    refcount.qcow2_process_discards(bs, ret)

    return ret
