"""The L2 table and refcount block caches: the Python twin of QEMU's
block/qcow2-cache.c (v2.5.0).

A table is one cluster as a bytearray, handed out by qcow2_cache_get() and
given back by qcow2_cache_put().  As in C, `table` arguments are one-element
lists (C: void **table) so that put can clear the caller's reference.

The C cache finds an entry by probing from a hash of the offset, and on a
miss scans every entry for the unreferenced one with the lowest lru_counter;
both cost too much in Python for caches of thousands of small tables.  Here
a dict from offset to entry index finds an entry (entries with offset 0 are
free and not in the dict), and an ordered dict keeps the unreferenced
entries in the order of their lru_counter, so the victim is its first one.
A third dict maps a table back to its index (C does pointer arithmetic on
table_array).
"""

from __future__ import annotations

import errno
from collections import OrderedDict
from typing import Optional

from block import io
from block.block_int import (BLKDBG_EVENT, BLKDBG_L2_LOAD, BLKDBG_L2_UPDATE,
                             BLKDBG_REFBLOCK_UPDATE_PART, BlockDriverState)
from block.trace import trace_event_register
from drivers.qcow2 import refcount
from drivers.qcow2.qcow2_h import QCOW2_OL_ACTIVE_L2, QCOW2_OL_REFCOUNT_BLOCK
from util.coroutine import qemu_coroutine_self

trace_qcow2_cache_get = trace_event_register(
    "qcow2_cache_get",
    "co %p is_l2_cache %d offset 0x%x read_from_disk %d")
trace_qcow2_cache_get_replace_entry = trace_event_register(
    "qcow2_cache_get_replace_entry", "co %p is_l2_cache %d index %d")
trace_qcow2_cache_get_read = trace_event_register(
    "qcow2_cache_get_read", "co %p is_l2_cache %d index %d")
trace_qcow2_cache_get_done = trace_event_register(
    "qcow2_cache_get_done", "co %p is_l2_cache %d index %d")
trace_qcow2_cache_flush = trace_event_register(
    "qcow2_cache_flush", "co %p is_l2_cache %d")
trace_qcow2_cache_entry_flush = trace_event_register(
    "qcow2_cache_entry_flush", "co %p is_l2_cache %d index %d")


class Qcow2CachedTable:
    __slots__ = ("offset", "lru_counter", "ref", "dirty")

    def __init__(self) -> None:
        self.offset = 0
        self.lru_counter = 0
        self.ref = 0
        self.dirty = False


class Qcow2Cache:
    __slots__ = ("entries", "depends", "size", "depends_on_flush",
                 "table_array", "lru_counter", "cache_clean_lru_counter",
                 "lookup", "lru", "table_idx")

    def __init__(self, num_tables: int, cluster_size: int) -> None:
        self.entries = [Qcow2CachedTable() for _ in range(num_tables)]
        self.depends: Optional[Qcow2Cache] = None
        self.size = num_tables
        self.depends_on_flush = False
        self.table_array = [bytearray(cluster_size)
                            for _ in range(num_tables)]
        self.lru_counter = 0
        self.cache_clean_lru_counter = 0
        # offset -> index of the entry caching it (C: linear probing)
        self.lookup: dict[int, int] = {}
        # the entries with ref 0, lowest lru_counter first (C: a scan)
        self.lru: OrderedDict[int, None] = OrderedDict.fromkeys(
            range(num_tables))
        # id(table) -> index (C: pointer arithmetic on table_array)
        self.table_idx = {id(t): i for i, t in enumerate(self.table_array)}


def qcow2_cache_get_table_addr(bs: BlockDriverState, c: Qcow2Cache,
                               table: int) -> bytearray:
    return c.table_array[table]


def qcow2_cache_get_table_idx(bs: BlockDriverState, c: Qcow2Cache,
                              table: bytearray) -> int:
    return c.table_idx[id(table)]


def _set_entry_offset(c: Qcow2Cache, i: int, offset: int) -> None:
    """entries[i].offset = offset, keeping the lookup dict in step."""
    t = c.entries[i]
    if t.offset:
        del c.lookup[t.offset]
    t.offset = offset
    if offset:
        c.lookup[offset] = i


def qcow2_cache_table_release(bs: BlockDriverState, c: Qcow2Cache, i: int,
                              num_tables: int) -> None:
    """C gives the memory of unused tables back with madvise(DONTNEED);
    with one bytearray per table there is nothing worth releasing."""


def can_clean_entry(c: Qcow2Cache, i: int) -> bool:
    t = c.entries[i]
    return (t.ref == 0 and not t.dirty and t.offset != 0 and
            t.lru_counter <= c.cache_clean_lru_counter)


def qcow2_cache_clean_unused(bs: BlockDriverState, c: Qcow2Cache) -> None:
    i = 0
    while i < c.size:
        to_clean = 0

        while i < c.size and not can_clean_entry(c, i):
            i += 1

        while i < c.size and can_clean_entry(c, i):
            _set_entry_offset(c, i, 0)
            c.entries[i].lru_counter = 0
            c.lru.move_to_end(i, last=False)
            i += 1
            to_clean += 1

        if to_clean > 0:
            qcow2_cache_table_release(bs, c, i - to_clean, to_clean)

    c.cache_clean_lru_counter = c.lru_counter


def qcow2_cache_create(bs: BlockDriverState, num_tables: int) -> Qcow2Cache:
    s = bs.opaque
    return Qcow2Cache(num_tables, s.cluster_size)


def qcow2_cache_destroy(bs: BlockDriverState, c: Qcow2Cache) -> int:
    for t in c.entries:
        assert t.ref == 0
    c.table_array = []
    c.lookup = {}
    c.table_idx = {}
    return 0


def qcow2_cache_flush_dependency(bs: BlockDriverState, c: Qcow2Cache) -> int:
    ret = qcow2_cache_flush(bs, c.depends)
    if ret < 0:
        return ret

    c.depends = None
    c.depends_on_flush = False
    return 0


def qcow2_cache_entry_flush(bs: BlockDriverState, c: Qcow2Cache,
                            i: int) -> int:
    s = bs.opaque
    ret = 0
    entry = c.entries[i]

    if not entry.dirty or not entry.offset:
        return 0

    trace_qcow2_cache_entry_flush(qemu_coroutine_self(),
                                  c is s.l2_table_cache, i)

    # what this table depends on must reach the disk first
    if c.depends:
        ret = qcow2_cache_flush_dependency(bs, c)
    elif c.depends_on_flush:
        ret = io.bdrv_flush(bs.file.bs)
        if ret >= 0:
            c.depends_on_flush = False

    if ret < 0:
        return ret

    if c is s.refcount_block_cache:
        ret = refcount.qcow2_pre_write_overlap_check(
            bs, QCOW2_OL_REFCOUNT_BLOCK, entry.offset, s.cluster_size)
    elif c is s.l2_table_cache:
        ret = refcount.qcow2_pre_write_overlap_check(
            bs, QCOW2_OL_ACTIVE_L2, entry.offset, s.cluster_size)
    else:
        ret = refcount.qcow2_pre_write_overlap_check(
            bs, 0, entry.offset, s.cluster_size)

    if ret < 0:
        return ret

    if c is s.refcount_block_cache:
        BLKDBG_EVENT(bs.file, BLKDBG_REFBLOCK_UPDATE_PART)
    elif c is s.l2_table_cache:
        BLKDBG_EVENT(bs.file, BLKDBG_L2_UPDATE)

    ret = io.bdrv_pwrite(bs.file.bs, entry.offset,
                         qcow2_cache_get_table_addr(bs, c, i),
                         s.cluster_size)
    if ret < 0:
        return ret

    entry.dirty = False
    return 0


def qcow2_cache_flush(bs: BlockDriverState, c: Qcow2Cache) -> int:
    s = bs.opaque
    result = 0

    trace_qcow2_cache_flush(qemu_coroutine_self(), c is s.l2_table_cache)

    for i in range(c.size):
        ret = qcow2_cache_entry_flush(bs, c, i)
        if ret < 0 and result != -errno.ENOSPC:
            result = ret

    if result == 0:
        ret = io.bdrv_flush(bs.file.bs)
        if ret < 0:
            result = ret

    return result


def qcow2_cache_set_dependency(bs: BlockDriverState, c: Qcow2Cache,
                               dependency: Qcow2Cache) -> int:
    """Make c's tables wait for dependency's tables to reach the disk."""
    if dependency.depends:
        ret = qcow2_cache_flush_dependency(bs, dependency)
        if ret < 0:
            return ret

    if c.depends and c.depends is not dependency:
        ret = qcow2_cache_flush_dependency(bs, c)
        if ret < 0:
            return ret

    c.depends = dependency
    return 0


def qcow2_cache_depends_on_flush(c: Qcow2Cache) -> None:
    """Make c's tables wait for a flush of the image file (data first)."""
    c.depends_on_flush = True


def qcow2_cache_empty(bs: BlockDriverState, c: Qcow2Cache) -> int:
    ret = qcow2_cache_flush(bs, c)
    if ret < 0:
        return ret

    for i, t in enumerate(c.entries):
        assert t.ref == 0
        _set_entry_offset(c, i, 0)
        t.lru_counter = 0
    c.lru = OrderedDict.fromkeys(range(c.size))

    qcow2_cache_table_release(bs, c, 0, c.size)

    c.lru_counter = 0
    return 0


def qcow2_cache_do_get(bs: BlockDriverState, c: Qcow2Cache, offset: int,
                       table: list, read_from_disk: bool) -> int:
    s = bs.opaque

    trace_qcow2_cache_get(qemu_coroutine_self(), c is s.l2_table_cache,
                          offset, read_from_disk)

    i = c.lookup.get(offset)
    if i is None:
        # Cache miss: write a table back and replace it.  Every table
        # referenced cannot happen while each request holds at most two
        # tables, and the caches have at least two entries.
        assert c.lru, "qcow2 cache: no free entry"
        i = next(iter(c.lru))
        trace_qcow2_cache_get_replace_entry(qemu_coroutine_self(),
                                            c is s.l2_table_cache, i)

        ret = qcow2_cache_entry_flush(bs, c, i)
        if ret < 0:
            return ret

        trace_qcow2_cache_get_read(qemu_coroutine_self(),
                                   c is s.l2_table_cache, i)
        _set_entry_offset(c, i, 0)
        if read_from_disk:
            if c is s.l2_table_cache:
                BLKDBG_EVENT(bs.file, BLKDBG_L2_LOAD)

            ret = io.bdrv_pread(bs.file.bs, offset,
                                qcow2_cache_get_table_addr(bs, c, i),
                                s.cluster_size)
            if ret < 0:
                return ret

        _set_entry_offset(c, i, offset)

    entry = c.entries[i]
    if entry.ref == 0:
        del c.lru[i]
    entry.ref += 1
    table[0] = qcow2_cache_get_table_addr(bs, c, i)

    trace_qcow2_cache_get_done(qemu_coroutine_self(),
                               c is s.l2_table_cache, i)
    return 0


def qcow2_cache_get(bs: BlockDriverState, c: Qcow2Cache, offset: int,
                    table: list) -> int:
    return qcow2_cache_do_get(bs, c, offset, table, True)


def qcow2_cache_get_empty(bs: BlockDriverState, c: Qcow2Cache, offset: int,
                          table: list) -> int:
    return qcow2_cache_do_get(bs, c, offset, table, False)


def qcow2_cache_put(bs: BlockDriverState, c: Qcow2Cache, table: list) -> None:
    i = c.table_idx[id(table[0])]
    entry = c.entries[i]

    entry.ref -= 1
    table[0] = None

    if entry.ref == 0:
        c.lru_counter += 1
        entry.lru_counter = c.lru_counter
        c.lru[i] = None

    assert entry.ref >= 0


def qcow2_cache_entry_mark_dirty(bs: BlockDriverState, c: Qcow2Cache,
                                 table) -> None:
    i = c.table_idx[id(table)]
    assert c.entries[i].offset != 0
    c.entries[i].dirty = True


def qcow2_cache_is_table_offset(bs: BlockDriverState, c: Qcow2Cache,
                                offset: int) -> Optional[bytearray]:
    """The cached table at offset, or None (QEMU 2.10)."""
    i = c.lookup.get(offset)
    if i is None:
        return None
    return qcow2_cache_get_table_addr(bs, c, i)


def qcow2_cache_discard(bs: BlockDriverState, c: Qcow2Cache,
                        table: bytearray) -> None:
    """Forget an unreferenced table without writing it back: the cluster
    it came from is being freed (QEMU 2.10)."""
    i = qcow2_cache_get_table_idx(bs, c, table)
    entry = c.entries[i]

    assert entry.ref == 0

    _set_entry_offset(c, i, 0)
    entry.lru_counter = 0
    entry.dirty = False
    # with lru_counter 0 it is the next entry to be reused
    c.lru.move_to_end(i, last=False)

    qcow2_cache_table_release(bs, c, i, 1)
