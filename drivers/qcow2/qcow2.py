"""The qcow2 block driver: the Python twin of QEMU's block/qcow2.c (v2.5.0,
with the driver callbacks of the seed's era).

Differences from QEMU 2.5, each for what the installed QEMU (7.2) shows a
user or for safety:
- open errors use 7.2's messages where they differ ("Unsupported qcow2
  version 4", "Unsupported qcow2 feature(s): ...", "Active L1 table offset
  invalid", "Image does not contain a reference count table", ...);
- features newer than 2.5 are refused rather than misread: the
  incompatible bits external data file, compression type and extended L2
  entries (named even when the image has no feature table), a compression
  type other than zlib, and encryption of any kind (2.5's AES support needs
  a cipher this port does not have);
- creation takes compat=v2/v3 too, and words its errors as 7.2;
- write_zeroes honours BDRV_REQ_MAY_UNMAP (freeing the clusters, as QEMU
  2.10 does), and makes a zero cluster of a partly covered cluster whose
  rest reads as zeroes (QEMU 2.7);
- discard on a version 2 image with a backing file does nothing, rather
  than expose the backing file's data (QEMU 5.0); discard frees zero
  clusters that kept their allocation, and takes the partial cluster at
  the end of the image (2.10); write_zeroes on a version 2 image without
  a backing file discards (2.10);
- the clusters of an allocating write that fails are freed (2.11);
- truncate shrinks images (2.10, with 7.2's messages), and allows a v3
  image with internal snapshots to be resized (as 7.2); a cluster whose
  refcount drops to 0 leaves the table caches (2.10);
- truncate grows with preallocation metadata, falloc or full, and zeroes
  the new area on BDRV_REQ_ZERO_WRITE, as 7.2's; creation preallocates
  through truncate, as 7.2's qcow2_co_create;
- bdrv_get_specific_info also reports compression-type and extended-l2,
  which 7.2's qemu-img info prints.
"""

from __future__ import annotations

import errno
import os
import struct
import zlib
from typing import Optional

from block import core, io
from block.block_int import (BDRV_BLOCK_ALLOCATED, BDRV_BLOCK_DATA,
                             BDRV_BLOCK_OFFSET_VALID, BDRV_BLOCK_ZERO,
                             BDRV_FIX_ERRORS, BDRV_FIX_LEAKS,
                             BDRV_O_CHECK, BDRV_O_INACTIVE,
                             BDRV_O_NO_BACKING, BDRV_O_NO_FLUSH,
                             BDRV_O_PROTOCOL, BDRV_O_RDWR, BDRV_O_UNMAP,
                             BDRV_REQ_ZERO_WRITE, BDRV_SECTOR_BITS,
                             BDRV_SECTOR_SIZE, BLKDBG_EVENT, BLKDBG_READ_AIO,
                             BLKDBG_READ_BACKING_AIO, BLKDBG_VMSTATE_LOAD,
                             BLKDBG_VMSTATE_SAVE,
                             BLKDBG_WRITE_AIO, BLKDBG_WRITE_COMPRESSED,
                             BLOCK_FLAG_ENCRYPT, BLOCK_FLAG_LAZY_REFCOUNTS,
                             BLOCK_OPT_BACKING_FILE, BLOCK_OPT_BACKING_FMT,
                             BLOCK_OPT_CLUSTER_SIZE, BLOCK_OPT_COMPAT_LEVEL,
                             BLOCK_OPT_COMPRESSION_TYPE, BLOCK_OPT_DATA_FILE,
                             BLOCK_OPT_DATA_FILE_RAW, BLOCK_OPT_ENCRYPT,
                             BLOCK_OPT_ENCRYPT_FORMAT, BLOCK_OPT_EXTL2,
                             BLOCK_OPT_LAZY_REFCOUNTS, BLOCK_OPT_PREALLOC,
                             BLOCK_OPT_REFCOUNT_BITS, BLOCK_OPT_SIZE,
                             BdrvCheckResult, BlockDriver, BlockDriverInfo,
                             BlockDriverState)
from block.trace import trace_event_register
from drivers.qcow2 import cache, cluster, refcount, snapshot
from drivers.qcow2.qcow2_h import (
    DEFAULT_CLUSTER_SIZE, DEFAULT_L2_CACHE_BYTE_SIZE,
    DEFAULT_L2_CACHE_CLUSTERS, DEFAULT_L2_REFCOUNT_SIZE_RATIO, INT_MAX,
    INT64_MAX, MAX_CLUSTER_BITS,
    MIN_CLUSTER_BITS, MIN_L2_CACHE_SIZE, MIN_REFCOUNT_CACHE_SIZE,
    QCOW2_CLUSTER_COMPRESSED, QCOW2_CLUSTER_NORMAL, QCOW2_CLUSTER_UNALLOCATED,
    QCOW2_CLUSTER_ZERO, QCOW2_COMPAT_LAZY_REFCOUNTS,
    QCOW2_COMPAT_LAZY_REFCOUNTS_BITNR, QCOW2_DISCARD_ALWAYS, QCOW2_DISCARD_MAX,
    QCOW2_DISCARD_NEVER, QCOW2_DISCARD_OTHER, QCOW2_DISCARD_REQUEST,
    QCOW2_DISCARD_SNAPSHOT, QCOW2_FEAT_TYPE_COMPATIBLE,
    QCOW2_FEAT_TYPE_INCOMPATIBLE, QCOW2_INCOMPAT_CORRUPT,
    QCOW2_INCOMPAT_CORRUPT_BITNR, QCOW2_INCOMPAT_DIRTY,
    QCOW2_INCOMPAT_DIRTY_BITNR, QCOW2_INCOMPAT_MASK, QCOW2_OL_ALL,
    QCOW2_OL_CACHED, QCOW2_OL_CONSTANT, QCOW2_OL_MAX_BITNR,
    QCOW2_OPT_CACHE_CLEAN_INTERVAL, QCOW2_OPT_CACHE_SIZE,
    QCOW2_OPT_DISCARD_OTHER, QCOW2_OPT_DISCARD_REQUEST,
    QCOW2_OPT_DISCARD_SNAPSHOT, QCOW2_OPT_L2_CACHE_SIZE,
    QCOW2_OPT_LAZY_REFCOUNTS, QCOW2_OPT_OVERLAP, QCOW2_OPT_OVERLAP_ACTIVE_L1,
    QCOW2_OPT_OVERLAP_ACTIVE_L2, QCOW2_OPT_OVERLAP_INACTIVE_L1,
    QCOW2_OPT_OVERLAP_INACTIVE_L2, QCOW2_OPT_OVERLAP_MAIN_HEADER,
    QCOW2_OPT_OVERLAP_REFCOUNT_BLOCK, QCOW2_OPT_OVERLAP_REFCOUNT_TABLE,
    QCOW2_OPT_OVERLAP_SNAPSHOT_TABLE, QCOW2_OPT_OVERLAP_TEMPLATE,
    QCOW2_OPT_REFCOUNT_CACHE_SIZE, QCOW_CRYPT_NONE, QCOW_HEADER_OFFSETOF,
    QCOW_MAGIC, QCOW_MAX_CRYPT_CLUSTERS, QCOW_MAX_L1_SIZE,
    QCOW_MAX_REFTABLE_SIZE, QCOW_MAX_SNAPSHOTS, BDRVQcow2State,
    QCowHeader, QCowL2Meta, QCowSnapshotHeader, Qcow2COWRegion, Qcow2Feature,
    Qcow2MetadataTable, Qcow2UnknownHeaderExtension, align_offset,
    offset_into_cluster, offset_to_l2_index, qcow2_need_accurate_refcounts,
    qcow2_vm_state_offset, size_to_l1, start_of_cluster)
from util.aio import aio_timer_new
from util.coroutine import coroutine_fn, qemu_coroutine_self
from util.coroutine_lock import (qemu_co_mutex_init, qemu_co_mutex_lock,
                                 qemu_co_mutex_unlock,
                                 qemu_co_queue_restart_all)
from util.error import (Errp, error_get_pretty, error_propagate, error_setg,
                        error_setg_errno)
from util.iov import (QEMUIOVector, qemu_iovec_add, qemu_iovec_concat,
                      qemu_iovec_destroy, qemu_iovec_from_buf, qemu_iovec_init,
                      qemu_iovec_memset, qemu_iovec_reset)
from util.qemu_error import error_printf, error_report, warn_report
from util.qemu_option import (
    QEMU_OPT_BOOL, QEMU_OPT_NUMBER, QEMU_OPT_SIZE, QEMU_OPT_STRING,
    QemuOptDesc, QemuOptsList, qemu_opt_get, qemu_opt_get_bool,
    qemu_opt_get_bool_del, qemu_opt_get_del, qemu_opt_get_number,
    qemu_opt_get_number_del, qemu_opt_get_size, qemu_opt_get_size_del,
    qemu_opts_absorb_qdict, qemu_opts_create, qemu_opts_del)
from util.timer import (QEMU_CLOCK_VIRTUAL, SCALE_MS, qemu_clock_get_ms,
                        timer_del, timer_free, timer_mod)

trace_qcow2_writev_start_req = trace_event_register(
    "qcow2_writev_start_req", "co %p sector %d nb_sectors %d")
trace_qcow2_writev_done_req = trace_event_register(
    "qcow2_writev_done_req", "co %p ret %d")
trace_qcow2_writev_start_part = trace_event_register(
    "qcow2_writev_start_part", "co %p")
trace_qcow2_writev_done_part = trace_event_register(
    "qcow2_writev_done_part", "co %p cur_nr_sectors %d")
trace_qcow2_writev_data = trace_event_register(
    "qcow2_writev_data", "co %p offset 0x%x")

# struct QCowExtension {uint32_t magic; uint32_t len;}
QCowExtension = struct.Struct(">II")

QCOW2_EXT_MAGIC_END = 0
QCOW2_EXT_MAGIC_BACKING_FORMAT = 0xE2792ACA
QCOW2_EXT_MAGIC_FEATURE_TABLE = 0x6803f857

# sizeof(bs->backing_format) and sizeof(bs->backing_file) in C
BACKING_FORMAT_SIZE = 16
BACKING_FILE_SIZE = 4096

# Incompatible features of later QEMU versions, refused by name even when
# the image carries no feature name table
NEWER_INCOMPAT_FEATURES = ((2, "external data file"),
                           (3, "compression type"),
                           (4, "extended L2 entries"))

# The compression type byte follows the 104 bytes of the v3 header
COMPRESSION_TYPE_OFFSET = 104


def qcow2_probe(buf, buf_size: int, filename) -> int:
    if (buf_size >= QCowHeader.fmt.size and
            struct.unpack_from(">I", buf, 0)[0] == QCOW_MAGIC and
            struct.unpack_from(">I", buf, 4)[0] >= 2):
        return 100
    return 0


def qcow2_read_extensions(bs: BlockDriverState, start_offset: int,
                          end_offset: int, p_feature_table, errp: Errp) -> int:
    """Read the header extensions from start_offset up to the end marker
    or end_offset; unknown ones are kept for qcow2_update_header.  0 on
    success, non-0 otherwise."""
    s = bs.opaque

    offset = start_offset
    while offset < end_offset:
        ext = bytearray(QCowExtension.size)
        ret = io.bdrv_pread(bs.file.bs, offset, ext, len(ext))
        if ret < 0:
            error_setg_errno(errp, -ret, "qcow2_read_extension: ERROR: "
                             "pread fail from offset %d", offset)
            return 1
        ext_magic, ext_len = QCowExtension.unpack(ext)
        offset += QCowExtension.size
        if offset > end_offset or ext_len > end_offset - offset:
            error_setg(errp, "Header extension too large")
            return -errno.EINVAL

        if ext_magic == QCOW2_EXT_MAGIC_END:
            return 0

        elif ext_magic == QCOW2_EXT_MAGIC_BACKING_FORMAT:
            if ext_len >= BACKING_FORMAT_SIZE:
                error_setg(errp, "ERROR: ext_backing_format: len=%d too "
                           "large (>=%d)", ext_len, BACKING_FORMAT_SIZE)
                return 2
            buf = bytearray(ext_len)
            ret = io.bdrv_pread(bs.file.bs, offset, buf, ext_len)
            if ret < 0:
                error_setg_errno(errp, -ret, "ERROR: ext_backing_format: "
                                 "Could not read format name")
                return 3
            bs.backing_format = _c_string(buf)
            s.image_backing_format = bs.backing_format

        elif ext_magic == QCOW2_EXT_MAGIC_FEATURE_TABLE:
            if p_feature_table is not None:
                feature_table = bytearray(ext_len)
                ret = io.bdrv_pread(bs.file.bs, offset, feature_table,
                                    ext_len)
                if ret < 0:
                    error_setg_errno(errp, -ret, "ERROR: ext_feature_table: "
                                     "Could not read table")
                    return ret

                p_feature_table[0] = feature_table

        else:
            # unknown magic: keep it in case we rewrite the header
            uext = Qcow2UnknownHeaderExtension(ext_magic, ext_len)
            s.unknown_header_ext.insert(0, uext)

            ret = io.bdrv_pread(bs.file.bs, offset, uext.data, uext.len)
            if ret < 0:
                error_setg_errno(errp, -ret, "ERROR: unknown extension: "
                                 "Could not read data")
                return ret

        offset += (ext_len + 7) & ~7

    return 0


def _c_string(buf) -> str:
    """The bytes up to the first NUL, as C reads a char array."""
    return bytes(buf).split(b"\0", 1)[0].decode("utf-8", "replace")


def cleanup_unknown_header_ext(bs: BlockDriverState) -> None:
    s = bs.opaque
    s.unknown_header_ext = []


def report_unsupported_feature(errp: Errp, table, mask: int) -> None:
    """Name the incompatible features of mask from the image's feature
    name table (and the names of later QEMU versions' features)."""
    features = []

    entries = []
    if table is not None:
        size = Qcow2Feature.fmt.size
        for pos in range(0, len(table) - size + 1, size):
            ftype, bit, name = Qcow2Feature.fmt.unpack_from(table, pos)
            if name[0] == 0:
                break
            entries.append((ftype, bit, _c_string(name)))
    entries.extend((QCOW2_FEAT_TYPE_INCOMPATIBLE, bit, name)
                   for bit, name in NEWER_INCOMPAT_FEATURES)

    for ftype, bit, name in entries:
        if ftype == QCOW2_FEAT_TYPE_INCOMPATIBLE and bit < 64:
            if mask & (1 << bit):
                features.append(name)
                mask &= ~(1 << bit)

    if mask:
        features.append("Unknown incompatible feature: %x" % mask)

    error_setg(errp, "Unsupported qcow2 feature(s): %s",
               ", ".join(features))


def qcow2_mark_dirty(bs: BlockDriverState) -> int:
    """Set the dirty bit (and flush).  The in-memory bit is only set once
    the header is updated, so callers need not check the result."""
    s = bs.opaque

    assert s.qcow_version >= 3

    if s.incompatible_features & QCOW2_INCOMPAT_DIRTY:
        return 0    # already dirty

    val = struct.pack(">Q", s.incompatible_features | QCOW2_INCOMPAT_DIRTY)
    ret = io.bdrv_pwrite(bs.file.bs,
                         QCOW_HEADER_OFFSETOF["incompatible_features"],
                         val, len(val))
    if ret < 0:
        return ret
    ret = io.bdrv_flush(bs.file.bs)
    if ret < 0:
        return ret

    # Only treat image as dirty if the header was updated successfully
    s.incompatible_features |= QCOW2_INCOMPAT_DIRTY
    return 0


def qcow2_mark_clean(bs: BlockDriverState) -> int:
    """Flush, then clear the dirty bit.  Only with no request in flight:
    nothing stops a concurrent request from dirtying the image again."""
    s = bs.opaque

    if s.incompatible_features & QCOW2_INCOMPAT_DIRTY:
        s.incompatible_features &= ~QCOW2_INCOMPAT_DIRTY

        ret = io.bdrv_flush(bs)
        if ret < 0:
            return ret

        return qcow2_update_header(bs)
    return 0


def qcow2_mark_corrupt(bs: BlockDriverState) -> int:
    s = bs.opaque

    s.incompatible_features |= QCOW2_INCOMPAT_CORRUPT
    return qcow2_update_header(bs)


def qcow2_mark_consistent(bs: BlockDriverState) -> int:
    """Flush, then clear the corrupt bit."""
    s = bs.opaque

    if s.incompatible_features & QCOW2_INCOMPAT_CORRUPT:
        ret = io.bdrv_flush(bs)
        if ret < 0:
            return ret

        s.incompatible_features &= ~QCOW2_INCOMPAT_CORRUPT
        return qcow2_update_header(bs)
    return 0


def qcow2_check(bs: BlockDriverState, result: BdrvCheckResult,
                fix: int) -> int:
    ret = refcount.qcow2_check_refcounts(bs, result, fix)
    if ret < 0:
        return ret

    if fix and result.check_errors == 0 and result.corruptions == 0:
        ret = qcow2_mark_clean(bs)
        if ret < 0:
            return ret
        return qcow2_mark_consistent(bs)
    return ret


def qcow2_validate_table(bs: BlockDriverState, offset: int, entries: int,
                         entry_len: int, max_size_bytes: int, table_name: str,
                         errp: Errp) -> int:
    """validate_table_offset of 2.5 with 7.2's size limit and messages."""
    s = bs.opaque

    if entries > max_size_bytes // entry_len:
        error_setg(errp, "%s too large", table_name)
        return -errno.EFBIG

    # INT64_MAX even for uint64_t fields: the values go to functions
    # taking int64_t
    if (INT64_MAX - entries * entry_len < offset or
            offset_into_cluster(s, offset) != 0):
        error_setg(errp, "%s offset invalid", table_name)
        return -errno.EINVAL

    return 0


qcow2_runtime_opts = QemuOptsList("qcow2", [
    QemuOptDesc(QCOW2_OPT_LAZY_REFCOUNTS, QEMU_OPT_BOOL,
                "Postpone refcount updates"),
    QemuOptDesc(QCOW2_OPT_DISCARD_REQUEST, QEMU_OPT_BOOL,
                "Pass guest discard requests to the layer below"),
    QemuOptDesc(QCOW2_OPT_DISCARD_SNAPSHOT, QEMU_OPT_BOOL,
                "Generate discard requests when snapshot related space "
                "is freed"),
    QemuOptDesc(QCOW2_OPT_DISCARD_OTHER, QEMU_OPT_BOOL,
                "Generate discard requests when other clusters are freed"),
    QemuOptDesc(QCOW2_OPT_OVERLAP, QEMU_OPT_STRING,
                "Selects which overlap checks to perform from a range of "
                "templates (none, constant, cached, all)"),
    QemuOptDesc(QCOW2_OPT_OVERLAP_TEMPLATE, QEMU_OPT_STRING,
                "Selects which overlap checks to perform from a range of "
                "templates (none, constant, cached, all)"),
    QemuOptDesc(QCOW2_OPT_OVERLAP_MAIN_HEADER, QEMU_OPT_BOOL,
                "Check for unintended writes into the main qcow2 header"),
    QemuOptDesc(QCOW2_OPT_OVERLAP_ACTIVE_L1, QEMU_OPT_BOOL,
                "Check for unintended writes into the active L1 table"),
    QemuOptDesc(QCOW2_OPT_OVERLAP_ACTIVE_L2, QEMU_OPT_BOOL,
                "Check for unintended writes into an active L2 table"),
    QemuOptDesc(QCOW2_OPT_OVERLAP_REFCOUNT_TABLE, QEMU_OPT_BOOL,
                "Check for unintended writes into the refcount table"),
    QemuOptDesc(QCOW2_OPT_OVERLAP_REFCOUNT_BLOCK, QEMU_OPT_BOOL,
                "Check for unintended writes into a refcount block"),
    QemuOptDesc(QCOW2_OPT_OVERLAP_SNAPSHOT_TABLE, QEMU_OPT_BOOL,
                "Check for unintended writes into the snapshot table"),
    QemuOptDesc(QCOW2_OPT_OVERLAP_INACTIVE_L1, QEMU_OPT_BOOL,
                "Check for unintended writes into an inactive L1 table"),
    QemuOptDesc(QCOW2_OPT_OVERLAP_INACTIVE_L2, QEMU_OPT_BOOL,
                "Check for unintended writes into an inactive L2 table"),
    QemuOptDesc(QCOW2_OPT_CACHE_SIZE, QEMU_OPT_SIZE,
                "Maximum combined metadata (L2 tables and refcount blocks) "
                "cache size"),
    QemuOptDesc(QCOW2_OPT_L2_CACHE_SIZE, QEMU_OPT_SIZE,
                "Maximum L2 table cache size"),
    QemuOptDesc(QCOW2_OPT_REFCOUNT_CACHE_SIZE, QEMU_OPT_SIZE,
                "Maximum refcount block cache size"),
    QemuOptDesc(QCOW2_OPT_CACHE_CLEAN_INTERVAL, QEMU_OPT_NUMBER,
                "Clean unused cache entries after this time (in seconds)"),
])

overlap_bool_option_names = (
    QCOW2_OPT_OVERLAP_MAIN_HEADER,
    QCOW2_OPT_OVERLAP_ACTIVE_L1,
    QCOW2_OPT_OVERLAP_ACTIVE_L2,
    QCOW2_OPT_OVERLAP_REFCOUNT_TABLE,
    QCOW2_OPT_OVERLAP_REFCOUNT_BLOCK,
    QCOW2_OPT_OVERLAP_SNAPSHOT_TABLE,
    QCOW2_OPT_OVERLAP_INACTIVE_L1,
    QCOW2_OPT_OVERLAP_INACTIVE_L2,
)
assert len(overlap_bool_option_names) == QCOW2_OL_MAX_BITNR


def cache_clean_timer_cb(opaque) -> None:
    bs = opaque
    s = bs.opaque
    cache.qcow2_cache_clean_unused(bs, s.l2_table_cache)
    cache.qcow2_cache_clean_unused(bs, s.refcount_block_cache)
    timer_mod(s.cache_clean_timer, qemu_clock_get_ms(QEMU_CLOCK_VIRTUAL)
              + s.cache_clean_interval * 1000)


def cache_clean_timer_init(bs: BlockDriverState, context) -> None:
    s = bs.opaque
    if s.cache_clean_interval > 0:
        s.cache_clean_timer = aio_timer_new(context, QEMU_CLOCK_VIRTUAL,
                                            SCALE_MS, cache_clean_timer_cb,
                                            bs)
        timer_mod(s.cache_clean_timer, qemu_clock_get_ms(QEMU_CLOCK_VIRTUAL)
                  + s.cache_clean_interval * 1000)


def cache_clean_timer_del(bs: BlockDriverState) -> None:
    s = bs.opaque
    if s.cache_clean_timer:
        timer_del(s.cache_clean_timer)
        timer_free(s.cache_clean_timer)
        s.cache_clean_timer = None


def qcow2_detach_aio_context(bs: BlockDriverState) -> None:
    cache_clean_timer_del(bs)


def qcow2_attach_aio_context(bs: BlockDriverState, new_context) -> None:
    cache_clean_timer_init(bs, new_context)


def read_cache_sizes(bs: BlockDriverState, opts, l2_cache_size: list,
                     refcount_cache_size: list, errp: Errp) -> None:
    s = bs.opaque

    combined_cache_size_set = qemu_opt_get(opts, QCOW2_OPT_CACHE_SIZE)
    l2_cache_size_set = qemu_opt_get(opts, QCOW2_OPT_L2_CACHE_SIZE)
    refcount_cache_size_set = qemu_opt_get(opts,
                                           QCOW2_OPT_REFCOUNT_CACHE_SIZE)

    combined_cache_size = qemu_opt_get_size(opts, QCOW2_OPT_CACHE_SIZE, 0)
    l2_cache_size[0] = qemu_opt_get_size(opts, QCOW2_OPT_L2_CACHE_SIZE, 0)
    refcount_cache_size[0] = qemu_opt_get_size(
        opts, QCOW2_OPT_REFCOUNT_CACHE_SIZE, 0)

    if combined_cache_size_set:
        if l2_cache_size_set and refcount_cache_size_set:
            error_setg(errp, QCOW2_OPT_CACHE_SIZE + ", " +
                       QCOW2_OPT_L2_CACHE_SIZE + " and " +
                       QCOW2_OPT_REFCOUNT_CACHE_SIZE + " may not be set "
                       "the same time")
            return
        elif l2_cache_size[0] > combined_cache_size:
            error_setg(errp, QCOW2_OPT_L2_CACHE_SIZE + " may not exceed " +
                       QCOW2_OPT_CACHE_SIZE)
            return
        elif refcount_cache_size[0] > combined_cache_size:
            error_setg(errp, QCOW2_OPT_REFCOUNT_CACHE_SIZE +
                       " may not exceed " + QCOW2_OPT_CACHE_SIZE)
            return

        if l2_cache_size_set:
            refcount_cache_size[0] = combined_cache_size - l2_cache_size[0]
        elif refcount_cache_size_set:
            l2_cache_size[0] = combined_cache_size - refcount_cache_size[0]
        else:
            refcount_cache_size[0] = (combined_cache_size
                                      // (DEFAULT_L2_REFCOUNT_SIZE_RATIO + 1))
            l2_cache_size[0] = combined_cache_size - refcount_cache_size[0]
    else:
        if not l2_cache_size_set and not refcount_cache_size_set:
            l2_cache_size[0] = max(DEFAULT_L2_CACHE_BYTE_SIZE,
                                   DEFAULT_L2_CACHE_CLUSTERS
                                   * s.cluster_size)
            refcount_cache_size[0] = (l2_cache_size[0]
                                      // DEFAULT_L2_REFCOUNT_SIZE_RATIO)
        elif not l2_cache_size_set:
            l2_cache_size[0] = (refcount_cache_size[0]
                                * DEFAULT_L2_REFCOUNT_SIZE_RATIO)
        elif not refcount_cache_size_set:
            refcount_cache_size[0] = (l2_cache_size[0]
                                      // DEFAULT_L2_REFCOUNT_SIZE_RATIO)


class Qcow2ReopenState:
    __slots__ = ("l2_table_cache", "refcount_block_cache",
                 "use_lazy_refcounts", "overlap_check",
                 "discard_passthrough", "cache_clean_interval")

    def __init__(self) -> None:
        self.l2_table_cache = None
        self.refcount_block_cache = None
        self.use_lazy_refcounts = False
        self.overlap_check = 0
        self.discard_passthrough = [False] * QCOW2_DISCARD_MAX
        self.cache_clean_interval = 0


def qcow2_update_options_prepare(bs: BlockDriverState, r: Qcow2ReopenState,
                                 options: dict, flags: int, errp: Errp) -> int:
    opts = qemu_opts_create(qcow2_runtime_opts, None, 0, None)
    try:
        return _update_options_prepare(bs, r, opts, options, flags, errp)
    finally:
        qemu_opts_del(opts)


def _update_options_prepare(bs: BlockDriverState, r: Qcow2ReopenState, opts,
                            options: dict, flags: int, errp: Errp) -> int:
    """The body of qcow2_update_options_prepare; its fail label is the
    caller's finally."""
    s = bs.opaque
    local_err = [None]
    qemu_opts_absorb_qdict(opts, options, local_err)
    if local_err[0]:
        error_propagate(errp, local_err[0])
        return -errno.EINVAL

    # get L2 table/refcount block cache size from command line options
    l2_cache_size = [0]
    refcount_cache_size = [0]
    read_cache_sizes(bs, opts, l2_cache_size, refcount_cache_size, local_err)
    if local_err[0]:
        error_propagate(errp, local_err[0])
        return -errno.EINVAL

    l2_cache_size = max(l2_cache_size[0] // s.cluster_size,
                        MIN_L2_CACHE_SIZE)
    if l2_cache_size > INT_MAX:
        error_setg(errp, "L2 cache size too big")
        return -errno.EINVAL

    refcount_cache_size = max(refcount_cache_size[0] // s.cluster_size,
                              MIN_REFCOUNT_CACHE_SIZE)
    if refcount_cache_size > INT_MAX:
        error_setg(errp, "Refcount cache size too big")
        return -errno.EINVAL

    # alloc new L2 table/refcount block cache, flush old one
    if s.l2_table_cache:
        ret = cache.qcow2_cache_flush(bs, s.l2_table_cache)
        if ret:
            error_setg_errno(errp, -ret, "Failed to flush the L2 table cache")
            return ret

    if s.refcount_block_cache:
        ret = cache.qcow2_cache_flush(bs, s.refcount_block_cache)
        if ret:
            error_setg_errno(errp, -ret,
                             "Failed to flush the refcount block cache")
            return ret

    try:
        r.l2_table_cache = cache.qcow2_cache_create(bs, l2_cache_size)
        r.refcount_block_cache = cache.qcow2_cache_create(
            bs, refcount_cache_size)
    except MemoryError:
        error_setg(errp, "Could not allocate metadata caches")
        return -errno.ENOMEM

    # New interval for cache cleanup timer
    r.cache_clean_interval = qemu_opt_get_number(
        opts, QCOW2_OPT_CACHE_CLEAN_INTERVAL, s.cache_clean_interval)
    if r.cache_clean_interval > 0xffffffff:
        error_setg(errp, "Cache clean interval too big")
        return -errno.EINVAL

    # lazy-refcounts; flush if going from enabled to disabled
    r.use_lazy_refcounts = qemu_opt_get_bool(
        opts, QCOW2_OPT_LAZY_REFCOUNTS,
        bool(s.compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS))
    if r.use_lazy_refcounts and s.qcow_version < 3:
        error_setg(errp, "Lazy refcounts require a qcow2 image with at least "
                   "qemu 1.1 compatibility level")
        return -errno.EINVAL

    if s.use_lazy_refcounts and not r.use_lazy_refcounts:
        ret = qcow2_mark_clean(bs)
        if ret < 0:
            error_setg_errno(errp, -ret, "Failed to disable lazy refcounts")
            return ret

    # Overlap check options
    opt_overlap_check = qemu_opt_get(opts, QCOW2_OPT_OVERLAP)
    opt_overlap_check_template = qemu_opt_get(opts,
                                              QCOW2_OPT_OVERLAP_TEMPLATE)
    if (opt_overlap_check_template and opt_overlap_check and
            opt_overlap_check_template != opt_overlap_check):
        error_setg(errp, "Conflicting values for qcow2 options '" +
                   QCOW2_OPT_OVERLAP + "' ('%s') and '" +
                   QCOW2_OPT_OVERLAP_TEMPLATE + "' ('%s')",
                   opt_overlap_check, opt_overlap_check_template)
        return -errno.EINVAL
    if not opt_overlap_check:
        opt_overlap_check = opt_overlap_check_template or "cached"

    templates = {"none": 0, "constant": QCOW2_OL_CONSTANT,
                 "cached": QCOW2_OL_CACHED, "all": QCOW2_OL_ALL}
    if opt_overlap_check not in templates:
        error_setg(errp, "Unsupported value '%s' for qcow2 option "
                   "'overlap-check'. Allowed are any of the following: "
                   "none, constant, cached, all", opt_overlap_check)
        return -errno.EINVAL
    overlap_check_template = templates[opt_overlap_check]

    # the template sets every check; each boolean option can override one
    r.overlap_check = 0
    for i in range(QCOW2_OL_MAX_BITNR):
        if qemu_opt_get_bool(opts, overlap_bool_option_names[i],
                             bool(overlap_check_template & (1 << i))):
            r.overlap_check |= 1 << i

    r.discard_passthrough[QCOW2_DISCARD_NEVER] = False
    r.discard_passthrough[QCOW2_DISCARD_ALWAYS] = True
    r.discard_passthrough[QCOW2_DISCARD_REQUEST] = qemu_opt_get_bool(
        opts, QCOW2_OPT_DISCARD_REQUEST, bool(flags & BDRV_O_UNMAP))
    r.discard_passthrough[QCOW2_DISCARD_SNAPSHOT] = qemu_opt_get_bool(
        opts, QCOW2_OPT_DISCARD_SNAPSHOT, True)
    r.discard_passthrough[QCOW2_DISCARD_OTHER] = qemu_opt_get_bool(
        opts, QCOW2_OPT_DISCARD_OTHER, False)

    return 0


def qcow2_update_options_commit(bs: BlockDriverState,
                                r: Qcow2ReopenState) -> None:
    s = bs.opaque

    if s.l2_table_cache:
        cache.qcow2_cache_destroy(bs, s.l2_table_cache)
    if s.refcount_block_cache:
        cache.qcow2_cache_destroy(bs, s.refcount_block_cache)
    s.l2_table_cache = r.l2_table_cache
    s.refcount_block_cache = r.refcount_block_cache

    s.overlap_check = r.overlap_check
    s.use_lazy_refcounts = r.use_lazy_refcounts

    s.discard_passthrough = list(r.discard_passthrough)

    if s.cache_clean_interval != r.cache_clean_interval:
        cache_clean_timer_del(bs)
        s.cache_clean_interval = r.cache_clean_interval
        cache_clean_timer_init(bs, core.bdrv_get_aio_context(bs))


def qcow2_update_options_abort(bs: BlockDriverState,
                               r: Qcow2ReopenState) -> None:
    if r.l2_table_cache:
        cache.qcow2_cache_destroy(bs, r.l2_table_cache)
    if r.refcount_block_cache:
        cache.qcow2_cache_destroy(bs, r.refcount_block_cache)


def qcow2_update_options(bs: BlockDriverState, options: dict, flags: int,
                         errp: Errp) -> int:
    r = Qcow2ReopenState()

    ret = qcow2_update_options_prepare(bs, r, options, flags, errp)
    if ret >= 0:
        qcow2_update_options_commit(bs, r)
    else:
        qcow2_update_options_abort(bs, r)

    return ret


def qcow2_open(bs: BlockDriverState, options: dict, flags: int,
               errp: Errp) -> int:
    ret = _qcow2_do_open(bs, options, flags, errp)
    if ret < 0:
        _qcow2_open_fail(bs)
    return ret


def _qcow2_open_fail(bs: BlockDriverState) -> None:
    """The fail label of qcow2_open: drop what the open built."""
    s = bs.opaque
    s.unknown_header_fields = None
    cleanup_unknown_header_ext(bs)
    snapshot.qcow2_free_snapshots(bs)
    refcount.qcow2_refcount_close(bs)
    # else pre-write overlap checks in cache_destroy may crash
    s.l1_table = None
    cache_clean_timer_del(bs)
    if s.l2_table_cache:
        cache.qcow2_cache_destroy(bs, s.l2_table_cache)
        s.l2_table_cache = None
    if s.refcount_block_cache:
        cache.qcow2_cache_destroy(bs, s.refcount_block_cache)
        s.refcount_block_cache = None
    s.cluster_cache = None
    s.cluster_data = None


def _qcow2_do_open(bs: BlockDriverState, options: dict, flags: int,
                   errp: Errp) -> int:
    """The body of qcow2_open, every goto fail a return."""
    s = bs.opaque

    buf = bytearray(QCowHeader.fmt.size)
    ret = io.bdrv_pread(bs.file.bs, 0, buf, len(buf))
    if ret < 0:
        error_setg_errno(errp, -ret, "Could not read qcow2 header")
        return ret
    header = QCowHeader.unpack(buf)

    if header.magic != QCOW_MAGIC:
        error_setg(errp, "Image is not in qcow2 format")
        return -errno.EINVAL
    if header.version < 2 or header.version > 3:
        error_setg(errp, "Unsupported qcow2 version %d", header.version)
        return -errno.ENOTSUP

    s.qcow_version = header.version

    # Initialise cluster size
    if (header.cluster_bits < MIN_CLUSTER_BITS or
            header.cluster_bits > MAX_CLUSTER_BITS):
        error_setg(errp, "Unsupported cluster size: 2^%d",
                   header.cluster_bits)
        return -errno.EINVAL

    s.cluster_bits = header.cluster_bits
    s.cluster_size = 1 << s.cluster_bits
    s.cluster_sectors = 1 << (s.cluster_bits - 9)

    # Initialise version 3 header fields
    if header.version == 2:
        header.incompatible_features = 0
        header.compatible_features = 0
        header.autoclear_features = 0
        header.refcount_order = 4
        header.header_length = 72
    else:
        if header.header_length < 104:
            error_setg(errp, "qcow2 header too short")
            return -errno.EINVAL

    if header.header_length > s.cluster_size:
        error_setg(errp, "qcow2 header exceeds cluster size")
        return -errno.EINVAL

    if header.header_length > QCowHeader.fmt.size:
        s.unknown_header_fields_size = (header.header_length
                                        - QCowHeader.fmt.size)
        fields = bytearray(s.unknown_header_fields_size)
        ret = io.bdrv_pread(bs.file.bs, QCowHeader.fmt.size, fields,
                            len(fields))
        if ret < 0:
            error_setg_errno(errp, -ret, "Could not read unknown qcow2 "
                             "header fields")
            return ret
        s.unknown_header_fields = bytes(fields)

    if header.backing_file_offset > s.cluster_size:
        error_setg(errp, "Invalid backing file offset")
        return -errno.EINVAL

    if header.backing_file_offset:
        ext_end = header.backing_file_offset
    else:
        ext_end = 1 << header.cluster_bits

    # Handle feature bits
    s.incompatible_features = header.incompatible_features
    s.compatible_features = header.compatible_features
    s.autoclear_features = header.autoclear_features

    if s.incompatible_features & ~QCOW2_INCOMPAT_MASK:
        feature_table = [None]
        qcow2_read_extensions(bs, header.header_length, ext_end,
                              feature_table, None)
        report_unsupported_feature(errp, feature_table[0],
                                   s.incompatible_features
                                   & ~QCOW2_INCOMPAT_MASK)
        return -errno.ENOTSUP

    # Only zlib is known here; later QEMU versions mark any other
    # compression type with an incompatible bit, refused above
    if (s.unknown_header_fields and
            s.unknown_header_fields[COMPRESSION_TYPE_OFFSET
                                    - QCowHeader.fmt.size]):
        error_setg(errp, "qcow2: Compression type incompatible feature bit "
                   "must be set")
        return -errno.EINVAL

    if s.incompatible_features & QCOW2_INCOMPAT_CORRUPT:
        # Corrupt images may only be written to for repairing them
        if (flags & BDRV_O_RDWR) and not (flags & BDRV_O_CHECK):
            error_setg(errp, "qcow2: Image is corrupt; cannot be opened "
                       "read/write")
            return -errno.EACCES

    # Check support for various header values
    if header.refcount_order > 6:
        error_setg(errp, "Reference count entry width too large; may not "
                   "exceed 64 bits")
        return -errno.EINVAL
    s.refcount_order = header.refcount_order
    s.refcount_bits = 1 << s.refcount_order
    s.refcount_max = (1 << s.refcount_bits) - 1

    if header.crypt_method != QCOW_CRYPT_NONE:
        error_setg(errp, "Unsupported encryption method: %d",
                   header.crypt_method)
        return -errno.EINVAL
    s.crypt_method_header = header.crypt_method

    s.l2_bits = s.cluster_bits - 3    # L2 is always one cluster
    s.l2_size = 1 << s.l2_bits
    # 2^(s.refcount_order - 3) is the refcount width in bytes
    s.refcount_block_bits = s.cluster_bits - (s.refcount_order - 3)
    s.refcount_block_size = 1 << s.refcount_block_bits
    bs.total_sectors = header.size // 512
    s.csize_shift = 62 - (s.cluster_bits - 8)
    s.csize_mask = (1 << (s.cluster_bits - 8)) - 1
    s.cluster_offset_mask = (1 << s.csize_shift) - 1

    s.refcount_table_offset = header.refcount_table_offset
    s.refcount_table_size = (header.refcount_table_clusters
                             << (s.cluster_bits - 3))

    if header.refcount_table_clusters == 0 and not (flags & BDRV_O_CHECK):
        error_setg(errp, "Image does not contain a reference count table")
        return -errno.EINVAL

    ret = qcow2_validate_table(bs, s.refcount_table_offset,
                               header.refcount_table_clusters,
                               s.cluster_size, QCOW_MAX_REFTABLE_SIZE,
                               "Reference count table", errp)
    if ret < 0:
        return ret

    # Snapshot table offset/length
    sn_header_size = QCowSnapshotHeader.fmt.size
    ret = qcow2_validate_table(bs, header.snapshots_offset,
                               header.nb_snapshots, sn_header_size,
                               sn_header_size * QCOW_MAX_SNAPSHOTS,
                               "Snapshot table", errp)
    if ret < 0:
        return ret

    # read the level 1 table
    ret = qcow2_validate_table(bs, header.l1_table_offset, header.l1_size, 8,
                               QCOW_MAX_L1_SIZE, "Active L1 table", errp)
    if ret < 0:
        return ret
    s.l1_size = header.l1_size
    s.l1_table_offset = header.l1_table_offset

    l1_vm_state_index = size_to_l1(s, header.size)
    if l1_vm_state_index > INT_MAX:
        error_setg(errp, "Image is too big")
        return -errno.EFBIG
    s.l1_vm_state_index = l1_vm_state_index

    # the L1 table must contain at least enough entries to put
    # header.size bytes
    if s.l1_size < s.l1_vm_state_index:
        error_setg(errp, "L1 table is too small")
        return -errno.EINVAL

    s.l1_table = Qcow2MetadataTable()
    if s.l1_size > 0:
        l1 = bytearray(s.l1_size * 8)
        ret = io.bdrv_pread(bs.file.bs, s.l1_table_offset, l1, len(l1))
        if ret < 0:
            error_setg_errno(errp, -ret, "Could not read L1 table")
            return ret
        s.l1_table = Qcow2MetadataTable(
            struct.unpack(">%dQ" % s.l1_size, l1))

    # Parse driver-specific options
    ret = qcow2_update_options(bs, options, flags, errp)
    if ret < 0:
        return ret

    s.cluster_cache = bytearray(s.cluster_size)
    # one more sector for decompressed data alignment
    s.cluster_data = bytearray(QCOW_MAX_CRYPT_CLUSTERS * s.cluster_size
                               + 512)

    s.cluster_cache_offset = -1
    s.flags = flags

    ret = refcount.qcow2_refcount_init(bs)
    if ret != 0:
        error_setg_errno(errp, -ret, "Could not initialize refcount handling")
        return ret

    s.cluster_allocs = []
    s.discards = []

    # read qcow2 extensions
    local_err = [None]
    if qcow2_read_extensions(bs, header.header_length, ext_end, None,
                             local_err):
        error_propagate(errp, local_err[0])
        return -errno.EINVAL

    # read the backing file name
    if header.backing_file_offset != 0:
        length = header.backing_file_size
        if (length > min(1023, s.cluster_size - header.backing_file_offset)
                or length >= BACKING_FILE_SIZE):
            error_setg(errp, "Backing file name too long")
            return -errno.EINVAL
        name = bytearray(length)
        ret = io.bdrv_pread(bs.file.bs, header.backing_file_offset, name,
                            length)
        if ret < 0:
            error_setg_errno(errp, -ret, "Could not read backing file name")
            return ret
        bs.backing_file = _c_string(name)
        s.image_backing_file = bs.backing_file

    # Internal snapshots
    s.snapshots_offset = header.snapshots_offset
    s.nb_snapshots = header.nb_snapshots

    ret = snapshot.qcow2_read_snapshots(bs)
    if ret < 0:
        error_setg_errno(errp, -ret, "Could not read snapshots")
        return ret

    # Clear unknown autoclear feature bits
    if (not bs.read_only and not (flags & BDRV_O_INACTIVE) and
            s.autoclear_features):
        s.autoclear_features = 0
        ret = qcow2_update_header(bs)
        if ret < 0:
            error_setg_errno(errp, -ret, "Could not update qcow2 header")
            return ret

    # Initialise locks
    qemu_co_mutex_init(s.lock)

    bs.supported_truncate_flags = BDRV_REQ_ZERO_WRITE

    # Repair image if dirty
    if (not (flags & (BDRV_O_CHECK | BDRV_O_INACTIVE)) and
            not bs.read_only and
            (s.incompatible_features & QCOW2_INCOMPAT_DIRTY)):
        result = BdrvCheckResult()

        ret = qcow2_check(bs, result, BDRV_FIX_ERRORS | BDRV_FIX_LEAKS)
        if ret < 0:
            error_setg_errno(errp, -ret, "Could not repair dirty image")
            return ret

    return ret


def qcow2_refresh_limits(bs: BlockDriverState, errp: Errp) -> None:
    s = bs.opaque

    bs.bl.write_zeroes_alignment = s.cluster_sectors


def qcow2_reopen_prepare(state, queue, errp: Errp) -> int:
    r = Qcow2ReopenState()
    state.opaque = r

    ret = qcow2_update_options_prepare(state.bs, r, state.options,
                                       state.flags, errp)
    if ret >= 0 and (state.flags & BDRV_O_RDWR) == 0:
        # write out what is not written yet when reopening read-only
        ret = io.bdrv_flush(state.bs)
        if ret >= 0:
            ret = qcow2_mark_clean(state.bs)

    if ret < 0:
        qcow2_update_options_abort(state.bs, r)
        state.opaque = None
        return ret
    return 0


def qcow2_reopen_commit(state) -> None:
    qcow2_update_options_commit(state.bs, state.opaque)
    state.opaque = None


def qcow2_reopen_abort(state) -> None:
    qcow2_update_options_abort(state.bs, state.opaque)
    state.opaque = None


@coroutine_fn
def qcow2_co_get_block_status(bs: BlockDriverState, sector_num: int,
                              nb_sectors: int, pnum: list, file: list) -> int:
    s = bs.opaque
    cluster_offset = [0]
    status = 0

    pnum[0] = nb_sectors
    qemu_co_mutex_lock(s.lock)
    ret = cluster.qcow2_get_cluster_offset(bs, sector_num << 9, pnum,
                                           cluster_offset)
    qemu_co_mutex_unlock(s.lock)
    if ret < 0:
        return ret

    if (cluster_offset[0] != 0 and ret != QCOW2_CLUSTER_COMPRESSED and
            not s.cipher):
        index_in_cluster = sector_num & (s.cluster_sectors - 1)
        file[0] = bs.file.bs
        status |= (BDRV_BLOCK_OFFSET_VALID | cluster_offset[0]
                   | (index_in_cluster << BDRV_SECTOR_BITS))
    if ret == QCOW2_CLUSTER_ZERO:
        status |= BDRV_BLOCK_ZERO
    elif ret != QCOW2_CLUSTER_UNALLOCATED:
        status |= BDRV_BLOCK_DATA
    return status


def qcow2_backing_read1(bs: BlockDriverState, qiov: QEMUIOVector,
                        sector_num: int, nb_sectors: int) -> int:
    """Zero what of the request lies past the end of the backing file bs;
    the number of sectors still to read from it."""
    if sector_num + nb_sectors <= bs.total_sectors:
        return nb_sectors
    if sector_num >= bs.total_sectors:
        n1 = 0
    else:
        n1 = bs.total_sectors - sector_num

    qemu_iovec_memset(qiov, 512 * n1, 0, 512 * (nb_sectors - n1))

    return n1


@coroutine_fn
def qcow2_co_readv(bs: BlockDriverState, sector_num: int,
                   remaining_sectors: int, qiov: QEMUIOVector) -> int:
    s = bs.opaque
    cluster_offset = [0]
    cur_nr_sectors = [0]    # number of sectors in current iteration
    bytes_done = 0
    hd_qiov = QEMUIOVector()

    qemu_iovec_init(hd_qiov, qiov.niov)

    qemu_co_mutex_lock(s.lock)

    ret = 0
    while remaining_sectors != 0:
        # prepare next request
        cur_nr_sectors[0] = remaining_sectors

        ret = cluster.qcow2_get_cluster_offset(bs, sector_num << 9,
                                               cur_nr_sectors, cluster_offset)
        if ret < 0:
            break
        n = cur_nr_sectors[0]

        index_in_cluster = sector_num & (s.cluster_sectors - 1)

        qemu_iovec_reset(hd_qiov)
        qemu_iovec_concat(hd_qiov, qiov, bytes_done, n * 512)

        if ret == QCOW2_CLUSTER_UNALLOCATED:
            if bs.backing:
                # read from the base image
                n1 = qcow2_backing_read1(bs.backing.bs, hd_qiov, sector_num,
                                         n)
                if n1 > 0:
                    local_qiov = QEMUIOVector()
                    qemu_iovec_init(local_qiov, hd_qiov.niov)
                    qemu_iovec_concat(local_qiov, hd_qiov, 0,
                                      n1 * BDRV_SECTOR_SIZE)

                    BLKDBG_EVENT(bs.file, BLKDBG_READ_BACKING_AIO)
                    qemu_co_mutex_unlock(s.lock)
                    ret = io.bdrv_co_readv(bs.backing.bs, sector_num, n1,
                                           local_qiov)
                    qemu_co_mutex_lock(s.lock)

                    qemu_iovec_destroy(local_qiov)

                    if ret < 0:
                        break
            else:
                # Note: in this case, no need to wait
                qemu_iovec_memset(hd_qiov, 0, 0, 512 * n)

        elif ret == QCOW2_CLUSTER_ZERO:
            qemu_iovec_memset(hd_qiov, 0, 0, 512 * n)

        elif ret == QCOW2_CLUSTER_COMPRESSED:
            ret = cluster.qcow2_decompress_cluster(bs, cluster_offset[0])
            if ret < 0:
                break

            qemu_iovec_from_buf(hd_qiov, 0,
                                memoryview(s.cluster_cache)
                                [index_in_cluster * 512:],
                                512 * n)

        else:
            assert ret == QCOW2_CLUSTER_NORMAL
            if (cluster_offset[0] & 511) != 0:
                ret = -errno.EIO
                break

            BLKDBG_EVENT(bs.file, BLKDBG_READ_AIO)
            qemu_co_mutex_unlock(s.lock)
            ret = io.bdrv_co_readv(bs.file.bs,
                                   (cluster_offset[0] >> 9) + index_in_cluster,
                                   n, hd_qiov)
            qemu_co_mutex_lock(s.lock)
            if ret < 0:
                break

        remaining_sectors -= n
        sector_num += n
        bytes_done += n * 512
    else:
        ret = 0

    qemu_co_mutex_unlock(s.lock)

    qemu_iovec_destroy(hd_qiov)

    return ret


def _l2meta_done(s: BDRVQcow2State, l2meta) -> None:
    """Take an allocation off the list of running requests and wake the
    requests waiting for it."""
    if l2meta.nb_clusters != 0 and l2meta in s.cluster_allocs:
        # C's QLIST_REMOVE is harmless on an entry that handle_alloc's
        # error path removed already
        s.cluster_allocs.remove(l2meta)
    qemu_co_queue_restart_all(l2meta.dependent_requests)


@coroutine_fn
def qcow2_co_writev(bs: BlockDriverState, sector_num: int,
                    remaining_sectors: int, qiov: QEMUIOVector) -> int:
    s = bs.opaque
    cur_nr_sectors = [0]    # number of sectors in current iteration
    cluster_offset = [0]
    bytes_done = 0
    l2meta = [None]
    hd_qiov = QEMUIOVector()

    trace_qcow2_writev_start_req(qemu_coroutine_self(), sector_num,
                                 remaining_sectors)

    qemu_iovec_init(hd_qiov, qiov.niov)

    s.cluster_cache_offset = -1    # disable compressed cache

    qemu_co_mutex_lock(s.lock)

    ret = 0
    while remaining_sectors != 0:
        l2meta[0] = None

        trace_qcow2_writev_start_part(qemu_coroutine_self())
        index_in_cluster = sector_num & (s.cluster_sectors - 1)
        cur_nr_sectors[0] = remaining_sectors

        ret = cluster.qcow2_alloc_cluster_offset(bs, sector_num << 9,
                                                 cur_nr_sectors,
                                                 cluster_offset, l2meta)
        if ret < 0:
            break
        n = cur_nr_sectors[0]

        assert (cluster_offset[0] & 511) == 0

        qemu_iovec_reset(hd_qiov)
        qemu_iovec_concat(hd_qiov, qiov, bytes_done, n * 512)

        ret = refcount.qcow2_pre_write_overlap_check(
            bs, 0, cluster_offset[0] + index_in_cluster * BDRV_SECTOR_SIZE,
            n * BDRV_SECTOR_SIZE)
        if ret < 0:
            break

        qemu_co_mutex_unlock(s.lock)
        BLKDBG_EVENT(bs.file, BLKDBG_WRITE_AIO)
        trace_qcow2_writev_data(qemu_coroutine_self(),
                                (cluster_offset[0] >> 9) + index_in_cluster)
        ret = io.bdrv_co_writev(bs.file.bs,
                                (cluster_offset[0] >> 9) + index_in_cluster,
                                n, hd_qiov)
        qemu_co_mutex_lock(s.lock)
        if ret < 0:
            break

        while l2meta[0] is not None:
            m = l2meta[0]
            ret = cluster.qcow2_alloc_cluster_link_l2(bs, m)
            if ret < 0:
                break

            _l2meta_done(s, m)
            l2meta[0] = m.next
        if ret < 0:
            break

        remaining_sectors -= n
        sector_num += n
        bytes_done += n * 512
        trace_qcow2_writev_done_part(qemu_coroutine_self(), n)
    else:
        ret = 0

    # Allocations whose write failed are never linked: free their
    # clusters rather than leak them (QEMU 2.11)
    m = l2meta[0]
    while m is not None:
        cluster.qcow2_alloc_cluster_abort(bs, m)
        m = m.next

    qemu_co_mutex_unlock(s.lock)

    while l2meta[0] is not None:
        m = l2meta[0]
        _l2meta_done(s, m)
        l2meta[0] = m.next

    qemu_iovec_destroy(hd_qiov)
    trace_qcow2_writev_done_req(qemu_coroutine_self(), ret)

    return ret


def qcow2_close(bs: BlockDriverState) -> None:
    s = bs.opaque
    # else pre-write overlap checks in cache_destroy may crash
    s.l1_table = None

    if not (bs.open_flags & BDRV_O_INACTIVE):
        ret1 = cache.qcow2_cache_flush(bs, s.l2_table_cache)
        ret2 = cache.qcow2_cache_flush(bs, s.refcount_block_cache)

        if ret1:
            error_report("Failed to flush the L2 table cache: %s",
                         os.strerror(-ret1))
        if ret2:
            error_report("Failed to flush the refcount block cache: %s",
                         os.strerror(-ret2))

        if not ret1 and not ret2:
            qcow2_mark_clean(bs)

    cache_clean_timer_del(bs)
    cache.qcow2_cache_destroy(bs, s.l2_table_cache)
    cache.qcow2_cache_destroy(bs, s.refcount_block_cache)

    s.unknown_header_fields = None
    cleanup_unknown_header_ext(bs)

    s.image_backing_file = None
    s.image_backing_format = None

    s.cluster_cache = None
    s.cluster_data = None
    refcount.qcow2_refcount_close(bs)
    snapshot.qcow2_free_snapshots(bs)


def header_ext_add(buf: bytearray, pos: int, magic: int, data: bytes,
                   buflen: int) -> int:
    """Write an extension at buf[pos:]; its length with padding, or
    -ENOSPC if buflen bytes are too few."""
    ext_len = QCowExtension.size + ((len(data) + 7) & ~7)

    if buflen < ext_len:
        return -errno.ENOSPC

    QCowExtension.pack_into(buf, pos, magic, len(data))
    start = pos + QCowExtension.size
    buf[start:start + len(data)] = data

    return ext_len


def qcow2_update_header(bs: BlockDriverState) -> int:
    """Rewrite the header with its variable parts (backing file name and
    extensions).  Everything must fit in the first cluster, -ENOSPC if
    not."""
    s = bs.opaque
    buflen = s.cluster_size
    buf = bytearray(buflen)

    header_length = QCowHeader.fmt.size + s.unknown_header_fields_size
    total_size = bs.total_sectors * BDRV_SECTOR_SIZE
    refcount_table_clusters = s.refcount_table_size >> (s.cluster_bits - 3)

    header = QCowHeader(
        QCOW_MAGIC, s.qcow_version, 0, 0, s.cluster_bits, total_size,
        s.crypt_method_header, s.l1_size, s.l1_table_offset,
        s.refcount_table_offset, refcount_table_clusters, s.nb_snapshots,
        s.snapshots_offset,
        s.incompatible_features, s.compatible_features,
        s.autoclear_features, s.refcount_order, header_length)

    # For older versions, write a shorter header
    if s.qcow_version == 2:
        pos = QCOW_HEADER_OFFSETOF["incompatible_features"]
    elif s.qcow_version == 3:
        pos = QCowHeader.fmt.size
    else:
        return -errno.EINVAL
    buflen -= pos

    # Preserve any unknown field in the header
    if s.unknown_header_fields_size:
        if buflen < s.unknown_header_fields_size:
            return -errno.ENOSPC

        buf[pos:pos + s.unknown_header_fields_size] = s.unknown_header_fields
        pos += s.unknown_header_fields_size
        buflen -= s.unknown_header_fields_size

    exts = []
    # Backing file format header extension
    if s.image_backing_format:
        exts.append((QCOW2_EXT_MAGIC_BACKING_FORMAT,
                     s.image_backing_format.encode()))

    # Feature table
    features = b"".join(Qcow2Feature.fmt.pack(*feature) for feature in (
        (QCOW2_FEAT_TYPE_INCOMPATIBLE, QCOW2_INCOMPAT_DIRTY_BITNR,
         b"dirty bit"),
        (QCOW2_FEAT_TYPE_INCOMPATIBLE, QCOW2_INCOMPAT_CORRUPT_BITNR,
         b"corrupt bit"),
        (QCOW2_FEAT_TYPE_COMPATIBLE, QCOW2_COMPAT_LAZY_REFCOUNTS_BITNR,
         b"lazy refcounts"),
    ))
    exts.append((QCOW2_EXT_MAGIC_FEATURE_TABLE, features))

    # Keep unknown header extensions
    exts.extend((uext.magic, bytes(uext.data))
                for uext in s.unknown_header_ext)

    # End of header extensions
    exts.append((QCOW2_EXT_MAGIC_END, b""))

    for magic, data in exts:
        ret = header_ext_add(buf, pos, magic, data, buflen)
        if ret < 0:
            return ret
        pos += ret
        buflen -= ret

    # Backing file name
    if s.image_backing_file:
        backing_file = s.image_backing_file.encode()

        if buflen < len(backing_file):
            return -errno.ENOSPC

        buf[pos:pos + len(backing_file)] = backing_file

        header.backing_file_offset = pos
        header.backing_file_size = len(backing_file)

    header_bytes = header.pack()
    if s.qcow_version == 2:
        header_bytes = header_bytes[:QCowHeader.V2_SIZE]
    buf[:len(header_bytes)] = header_bytes

    # Write the new header
    ret = io.bdrv_pwrite(bs.file.bs, 0, buf, s.cluster_size)
    if ret < 0:
        return ret

    return 0


def qcow2_change_backing_file(bs: BlockDriverState, backing_file,
                              backing_fmt) -> int:
    s = bs.opaque

    bs.backing_file = backing_file or ""
    bs.backing_format = backing_fmt or ""

    s.image_backing_file = bs.backing_file if backing_file else None
    s.image_backing_format = bs.backing_format if backing_fmt else None

    return qcow2_update_header(bs)


def qcow2_refcount_metadata_size(clusters: int, cluster_size: int,
                                 refcount_order: int, generous_increase: bool,
                                 refblock_count: Optional[list]) -> int:
    """Bytes of refblocks and refcount table needed to count clusters
    clusters and themselves (QEMU 7.2's qcow2_refcount_metadata_size);
    with generous_increase, room for a table half as large again.  The
    number of refblocks goes to refblock_count[0]."""
    # the fixed point where the refcount structures also count themselves
    blocks_per_table_cluster = cluster_size // 8
    refcounts_per_block = cluster_size * 8 // (1 << refcount_order)
    table = 0
    blocks = 0
    n = 0
    while True:
        last = n
        blocks = -(-(clusters + table + blocks) // refcounts_per_block)
        table = -(-blocks // blocks_per_table_cluster)
        n = clusters + blocks + table

        if n == last and generous_increase:
            clusters += -(-table // 2)
            n = 0
            generous_increase = False
        if n == last:
            break

    if refblock_count is not None:
        refblock_count[0] = blocks
    return (blocks + table) * cluster_size


@coroutine_fn
def qcow2_handle_l2meta(bs: BlockDriverState, meta: list,
                        link_l2: bool) -> int:
    """Link the allocations of the chain meta[0] into the L2 tables (or,
    link_l2 false, free their clusters) and take them off the running
    requests (QEMU 7.2's qcow2_handle_l2meta).  meta[0] keeps what a failed
    link left."""
    s = bs.opaque
    while meta[0] is not None:
        m = meta[0]
        if link_l2:
            ret = cluster.qcow2_alloc_cluster_link_l2(bs, m)
            if ret < 0:
                return ret
        else:
            cluster.qcow2_alloc_cluster_abort(bs, m)
        _l2meta_done(s, m)
        meta[0] = m.next
    return 0


@coroutine_fn
def preallocate(bs: BlockDriverState, offset: int, new_length: int,
                mode: str, errp: Errp) -> int:
    """Allocate the L2 entries and clusters for the guest range offset to
    new_length, with s.lock held (QEMU 7.2's preallocate_co); the file then
    reaches the last cluster allocated, preallocated as mode says (metadata
    leaves it sparse)."""
    s = bs.opaque
    host_offset = [0]
    num = [0]
    meta = [None]
    host_end = 0

    assert offset <= new_length
    nb_sectors = (new_length - offset) >> BDRV_SECTOR_BITS
    max_sectors = (INT_MAX & ~(s.cluster_size - 1)) >> BDRV_SECTOR_BITS

    ret = 0
    while nb_sectors:
        num[0] = min(nb_sectors, max_sectors)
        ret = cluster.qcow2_alloc_cluster_offset(bs, offset, num,
                                                 host_offset, meta)
        if ret < 0:
            error_setg_errno(errp, -ret, "Allocating clusters failed")
            break

        ret = qcow2_handle_l2meta(bs, meta, True)
        if ret < 0:
            error_setg_errno(errp, -ret, "Mapping clusters failed")
            break

        host_end = (host_offset[0] + offset_into_cluster(s, offset)
                    + (num[0] << BDRV_SECTOR_BITS))
        nb_sectors -= num[0]
        offset += num[0] << BDRV_SECTOR_BITS

    if ret == 0:
        # The file must contain every allocated cluster, else reads after
        # its end fail
        file_length = core.bdrv_getlength(bs.file.bs)
        if file_length < 0:
            error_setg_errno(errp, -file_length, "Could not get file size")
            ret = file_length
        elif host_end > file_length:
            ret = core.bdrv_truncate(bs.file.bs, host_end,
                                     "off" if mode == "metadata" else mode,
                                     errp)

    qcow2_handle_l2meta(bs, meta, False)
    return ret


def qcow2_create2(filename: str, total_size: int, backing_file, backing_format,
                  flags: int, cluster_size: int, prealloc: str, opts,
                  version: int, refcount_order: int, errp: Errp) -> int:
    # Calculate cluster_bits
    cluster_bits = (cluster_size & -cluster_size).bit_length() - 1
    if (cluster_bits < MIN_CLUSTER_BITS or cluster_bits > MAX_CLUSTER_BITS
            or (1 << cluster_bits) != cluster_size):
        error_setg(errp, "Cluster size must be a power of two between %d and "
                   "%dk", 1 << MIN_CLUSTER_BITS, 1 << (MAX_CLUSTER_BITS - 10))
        return -errno.EINVAL

    # Write a minimal header to the image file first: zero-sized, without
    # refcount blocks or L1 table (that inconsistency is fixed below), but
    # with a refcount table, because growing one means allocating two
    # refcount blocks, the second at 2 GB for 64k clusters.  The file
    # itself is created empty: the preallocation is the truncate's.
    local_err = [None]
    ret = core.bdrv_create_file(filename, opts, local_err)
    if ret < 0:
        error_propagate(errp, local_err[0])
        return ret

    pbs = [None]
    ret = core.bdrv_open(pbs, filename, None, None,
                         BDRV_O_RDWR | BDRV_O_PROTOCOL, local_err)
    if ret < 0:
        error_propagate(errp, local_err[0])
        return ret

    try:
        return _qcow2_create2_write(pbs, filename, total_size, backing_file,
                                    backing_format, flags, cluster_size,
                                    cluster_bits, prealloc, version,
                                    refcount_order, errp)
    finally:
        if pbs[0] is not None:
            core.bdrv_unref(pbs[0])


def _qcow2_create2_write(pbs: list, filename: str, total_size: int,
                         backing_file, backing_format, flags: int,
                         cluster_size: int, cluster_bits: int, prealloc: str,
                         version: int, refcount_order: int, errp: Errp) -> int:
    """The rest of qcow2_create2, from the protocol node open in pbs[0]
    (which the caller unrefs, as C's out label does)."""
    local_err = [None]
    bs = pbs[0]

    # Write the header
    header = QCowHeader()
    header.magic = QCOW_MAGIC
    header.version = version
    header.cluster_bits = cluster_bits
    header.refcount_table_offset = cluster_size
    header.refcount_table_clusters = 1
    header.refcount_order = refcount_order
    header.header_length = QCowHeader.fmt.size
    assert not (flags & BLOCK_FLAG_ENCRYPT)
    header.crypt_method = QCOW_CRYPT_NONE
    if flags & BLOCK_FLAG_LAZY_REFCOUNTS:
        header.compatible_features |= QCOW2_COMPAT_LAZY_REFCOUNTS

    buf = bytearray(cluster_size)
    buf[:QCowHeader.fmt.size] = header.pack()
    ret = io.bdrv_pwrite(bs, 0, buf, cluster_size)
    if ret < 0:
        error_setg_errno(errp, -ret, "Could not write qcow2 header")
        return ret

    # Write a refcount table with one refcount block
    refcount_table = bytearray(2 * cluster_size)
    struct.pack_into(">Q", refcount_table, 0, 2 * cluster_size)
    ret = io.bdrv_pwrite(bs, cluster_size, refcount_table, 2 * cluster_size)
    if ret < 0:
        error_setg_errno(errp, -ret, "Could not write refcount table")
        return ret

    core.bdrv_unref(bs)
    pbs[0] = None

    # Open the image and make it consistent first: raise the refcounts of
    # the header and refcount table clusters
    options = {"driver": "qcow2"}
    ret = core.bdrv_open(pbs, filename, None, options,
                         BDRV_O_RDWR | BDRV_O_NO_FLUSH, local_err)
    if ret < 0:
        error_propagate(errp, local_err[0])
        return ret
    bs = pbs[0]

    ret = refcount.qcow2_alloc_clusters(bs, 3 * cluster_size)
    if ret < 0:
        error_setg_errno(errp, -ret, "Could not allocate clusters for qcow2 "
                         "header and refcount table")
        return ret
    assert ret == 0, "Huh, first cluster in empty image is already in use?"

    # Okay, now that we have a valid image, let's give it the right size,
    # preallocated as asked (as 7.2's qcow2_co_create does)
    ret = core.bdrv_truncate(bs, total_size, prealloc, errp)
    if ret < 0:
        return ret

    # Want a backing file? There you go.
    if backing_file:
        ret = core.bdrv_change_backing_file(bs, backing_file, backing_format)
        if ret < 0:
            error_setg_errno(errp, -ret, "Could not assign backing file '%s' "
                             "with format '%s'", backing_file,
                             backing_format)
            return ret

    core.bdrv_unref(bs)
    pbs[0] = None

    # Reopen the image without BDRV_O_NO_FLUSH to flush it before returning
    options = {"driver": "qcow2"}
    ret = core.bdrv_open(pbs, filename, None, options,
                         BDRV_O_RDWR | BDRV_O_NO_BACKING, local_err)
    if local_err[0]:
        error_propagate(errp, local_err[0])
        return ret

    return 0


def qcow2_create(filename: str, opts, errp: Errp) -> int:
    flags = 0
    version = 3
    refcount_bits = 16

    # Read out options
    size = qemu_opt_get_size_del(opts, BLOCK_OPT_SIZE, 0)
    size = (size + BDRV_SECTOR_SIZE - 1) & ~(BDRV_SECTOR_SIZE - 1)
    backing_file = qemu_opt_get_del(opts, BLOCK_OPT_BACKING_FILE)
    backing_fmt = qemu_opt_get_del(opts, BLOCK_OPT_BACKING_FMT)
    if (qemu_opt_get_bool_del(opts, BLOCK_OPT_ENCRYPT, False)
            or qemu_opt_get_del(opts, BLOCK_OPT_ENCRYPT_FORMAT)):
        error_setg(errp, "Encrypted images are not supported")
        return -errno.ENOTSUP
    # 7.2's options for features not ported: refuse anything but the default
    if qemu_opt_get_del(opts, BLOCK_OPT_DATA_FILE):
        error_setg(errp, "External data files are not supported")
        return -errno.ENOTSUP
    if qemu_opt_get_bool_del(opts, BLOCK_OPT_EXTL2, False):
        error_setg(errp, "Extended L2 tables are not supported")
        return -errno.ENOTSUP
    buf = qemu_opt_get_del(opts, BLOCK_OPT_COMPRESSION_TYPE)
    if buf not in (None, "zlib"):
        error_setg(errp, "Compression type '%s' is not supported", buf)
        return -errno.ENOTSUP
    cluster_size = qemu_opt_get_size_del(opts, BLOCK_OPT_CLUSTER_SIZE,
                                         DEFAULT_CLUSTER_SIZE)
    prealloc = qemu_opt_get_del(opts, BLOCK_OPT_PREALLOC) or "off"
    if prealloc not in core.PREALLOC_MODES:
        error_setg(errp, "Parameter 'preallocation' does not accept value "
                   "'%s'", prealloc)
        return -errno.EINVAL

    # 7.2 also takes its own names v2 and v3, and words the error so
    buf = qemu_opt_get_del(opts, BLOCK_OPT_COMPAT_LEVEL)
    if not buf:
        pass    # keep the default
    elif buf in ("0.10", "v2"):
        version = 2
    elif buf in ("1.1", "v3"):
        version = 3
    else:
        error_setg(errp, "Parameter 'version' does not accept value '%s'",
                   buf)
        return -errno.EINVAL

    if qemu_opt_get_bool_del(opts, BLOCK_OPT_LAZY_REFCOUNTS, False):
        flags |= BLOCK_FLAG_LAZY_REFCOUNTS

    if backing_file and prealloc != "off":
        error_setg(errp, "Backing file and preallocation cannot be used at "
                   "the same time")
        return -errno.EINVAL

    if version < 3 and (flags & BLOCK_FLAG_LAZY_REFCOUNTS):
        error_setg(errp, "Lazy refcounts only supported with compatibility "
                   "level 1.1 and above (use version=v3 or greater)")
        return -errno.EINVAL

    refcount_bits = qemu_opt_get_number_del(opts, BLOCK_OPT_REFCOUNT_BITS,
                                            refcount_bits)
    if (refcount_bits > 64 or refcount_bits <= 0
            or refcount_bits & (refcount_bits - 1)):
        error_setg(errp, "Refcount width must be a power of two and may not "
                   "exceed 64 bits")
        return -errno.EINVAL

    if version < 3 and refcount_bits != 16:
        error_setg(errp, "Different refcount widths than 16 bits require "
                   "compatibility level 1.1 or above (use version=v3 or "
                   "greater)")
        return -errno.EINVAL

    refcount_order = refcount_bits.bit_length() - 1

    local_err = [None]
    ret = qcow2_create2(filename, size, backing_file, backing_fmt, flags,
                        cluster_size, prealloc, opts, version, refcount_order,
                        local_err)
    if local_err[0]:
        error_propagate(errp, local_err[0])
    return ret


def is_zero_sectors(bs: BlockDriverState, start: int, count: int) -> bool:
    """Do count sectors from start read as zeroes (the image end counts as
    zeroes)?"""
    pnum = [0]
    file = [None]

    if start + count > bs.total_sectors:
        count = bs.total_sectors - start

    if not count:
        return True
    res = io.bdrv_get_block_status_above(bs, None, start, count, pnum, file)
    return res >= 0 and bool(res & BDRV_BLOCK_ZERO) and pnum[0] == count


@coroutine_fn
def qcow2_co_write_zeroes(bs: BlockDriverState, sector_num: int,
                          nb_sectors: int, flags: int) -> int:
    """Zero clusters (v3).  A cluster the request covers in part still
    becomes a zero cluster if the rest of it reads as zeroes already, as
    in QEMU 2.7; otherwise the block layer writes zeroes (-ENOTSUP).

    The block layer sends the unaligned head of a request apart (as 2.7's
    does), but a request may still end in a partial cluster after whole
    ones: the partial clusters at both ends are checked."""
    s = bs.opaque
    cs = s.cluster_sectors

    head = sector_num % cs
    tail = (sector_num + nb_sectors) % cs
    if sector_num + nb_sectors == bs.total_sectors:
        tail = 0

    if head or tail:
        start = sector_num - head
        end = sector_num + nb_sectors + (-tail % cs)

        # check whether the rest of the clusters reads as zeroes already
        if not (is_zero_sectors(bs, start, head) and
                is_zero_sectors(bs, sector_num + nb_sectors,
                                -tail % cs)):
            return -errno.ENOTSUP

        qemu_co_mutex_lock(s.lock)
        # a write may have allocated the clusters since the check
        partial = {start} if head else set()
        if tail:
            partial.add(end - cs)
        for cl_start in partial:
            nr = [cs]
            off = [0]
            ret = cluster.qcow2_get_cluster_offset(bs, cl_start << 9, nr,
                                                   off)
            if ret not in (QCOW2_CLUSTER_UNALLOCATED, QCOW2_CLUSTER_ZERO):
                qemu_co_mutex_unlock(s.lock)
                return -errno.ENOTSUP
        sector_num = start
        nb_sectors = min(end, bs.total_sectors) - start
    else:
        qemu_co_mutex_lock(s.lock)

    # Whatever is left can use real zero clusters
    ret = cluster.qcow2_zero_clusters(bs, sector_num << BDRV_SECTOR_BITS,
                                      nb_sectors, flags)
    qemu_co_mutex_unlock(s.lock)

    return ret


@coroutine_fn
def qcow2_co_discard(bs: BlockDriverState, sector_num: int,
                     nb_sectors: int) -> int:
    s = bs.opaque

    # Without QCOW_OFLAG_ZERO (v2), a discarded cluster would show stale
    # data of the backing file: refuse, as QEMU does since 5.0
    if s.qcow_version < 3 and bs.backing:
        return -errno.ENOTSUP

    qemu_co_mutex_lock(s.lock)
    ret = cluster.qcow2_discard_clusters(bs, sector_num << BDRV_SECTOR_BITS,
                                         nb_sectors, QCOW2_DISCARD_REQUEST,
                                         False)
    qemu_co_mutex_unlock(s.lock)
    return ret


@coroutine_fn
def qcow2_co_truncate(bs: BlockDriverState, offset: int, prealloc: str,
                      flags: int, errp: Errp) -> int:
    """Resize the image to offset bytes, as QEMU 7.2's qcow2_co_truncate:
    shrinking drops the clusters past the new end, the L2 tables and
    refblocks left unused, and the unused tail of the file; growing can
    preallocate, and with BDRV_REQ_ZERO_WRITE makes the new area read as
    zeroes whatever the backing file holds."""
    s = bs.opaque

    if offset & 511:
        error_setg(errp, "The new size must be a multiple of 512")
        return -errno.EINVAL

    qemu_co_mutex_lock(s.lock)
    ret = _qcow2_co_truncate_locked(bs, offset, prealloc, flags, errp)
    qemu_co_mutex_unlock(s.lock)
    return ret


@coroutine_fn
def _qcow2_co_truncate_locked(bs: BlockDriverState, offset: int,
                              prealloc: str, flags: int, errp: Errp) -> int:
    s = bs.opaque

    # v2 images need not record the disk size of a snapshot, so a resize
    # would leave their snapshots without one
    if s.nb_snapshots and s.qcow_version < 3:
        error_setg(errp, "Can't resize a v2 image which has snapshots")
        return -errno.ENOTSUP

    old_length = bs.total_sectors * BDRV_SECTOR_SIZE
    new_l1_size = size_to_l1(s, offset)

    if offset < old_length:
        if prealloc != "off":
            error_setg(errp,
                       "Preallocation can't be used for shrinking an image")
            return -errno.EINVAL

        ret = qcow2_shrink(bs, offset, new_l1_size, errp)
        if ret < 0:
            return ret
    else:
        ret = cluster.qcow2_grow_l1_table(bs, new_l1_size, True)
        if ret < 0:
            error_setg_errno(errp, -ret, "Failed to grow the L1 table")
            return ret

    if prealloc == "metadata":
        ret = preallocate(bs, old_length, offset, prealloc, errp)
        if ret < 0:
            return ret
    elif prealloc in ("falloc", "full"):
        zero_write = [flags & BDRV_REQ_ZERO_WRITE]
        ret = qcow2_preallocate_data(bs, old_length, offset, prealloc,
                                     zero_write, errp)
        if ret < 0:
            return ret
        flags = flags & ~BDRV_REQ_ZERO_WRITE | zero_write[0]

    if flags & BDRV_REQ_ZERO_WRITE and offset > old_length:
        ret = qcow2_zero_new_area(bs, old_length, offset, errp)
        if ret < 0:
            return ret

    if prealloc != "off":
        # the metadata must be on disk before the image size covers it
        ret = qcow2_write_caches(bs)
        if ret < 0:
            error_setg_errno(errp, -ret,
                             "Failed to flush the preallocated area to disk")
            return ret

    # write updated header.size
    data = struct.pack(">Q", offset)
    ret = io.bdrv_pwrite_sync(bs.file.bs, QCOW_HEADER_OFFSETOF["size"],
                              data, len(data))
    if ret < 0:
        error_setg_errno(errp, -ret, "Failed to update the image size")
        return ret

    s.l1_vm_state_index = new_l1_size
    return 0


@coroutine_fn
def qcow2_preallocate_data(bs: BlockDriverState, old_length: int,
                           offset: int, prealloc: str, zero_write: list,
                           errp: Errp) -> int:
    """Growing with falloc or full preallocation (that case of 7.2's
    qcow2_co_truncate): new refcount structures after the used part of the
    file, then data clusters for old_length to offset after them, the file
    grown over them with prealloc, and the L2 entries.  zero_write[0]
    (BDRV_REQ_ZERO_WRITE or 0) is cleared if the file's growth zeroes the
    new area already.  Called with s.lock held."""
    s = bs.opaque
    cs = s.cluster_size

    old_file_size = core.bdrv_getlength(bs.file.bs)
    if old_file_size < 0:
        error_setg_errno(errp, -old_file_size,
                         "Failed to inquire current file length")
        return old_file_size

    last_cluster = refcount.qcow2_get_last_cluster(bs, old_file_size)
    if last_cluster >= 0:
        old_file_size = (last_cluster + 1) * cs
    else:
        old_file_size = align_offset(old_file_size, cs)

    nb_new_data_clusters = ((align_offset(offset, cs)
                             - start_of_cluster(s, old_length))
                            >> s.cluster_bits)

    # More L2 tables than can be needed (plus one for a head or tail not
    # aligned to an L2 table): the new refcount structures must cover them
    # so that entering the data clusters allocates no refblock.  Where the
    # L2 tables go does not matter.
    nb_new_l2_tables = -(-nb_new_data_clusters // (cs // 8)) + 1

    allocation_start = refcount.qcow2_refcount_area(
        bs, old_file_size, nb_new_data_clusters + nb_new_l2_tables, True,
        0, 0)
    if allocation_start < 0:
        error_setg_errno(errp, -allocation_start,
                         "Failed to resize refcount structures")
        return allocation_start

    clusters_allocated = refcount.qcow2_alloc_clusters_at(
        bs, allocation_start, nb_new_data_clusters)
    if clusters_allocated < 0:
        error_setg_errno(errp, -clusters_allocated,
                         "Failed to allocate data clusters")
        return clusters_allocated
    assert clusters_allocated == nb_new_data_clusters

    # The file grows, so the protocol driver may zero the new area itself
    new_file_size = allocation_start + nb_new_data_clusters * cs
    ret = -1
    if zero_write[0]:
        ret = core.bdrv_truncate(bs.file.bs, new_file_size, prealloc, None,
                                 BDRV_REQ_ZERO_WRITE)
        if ret >= 0:
            zero_write[0] = 0
    if ret < 0:
        local_err = [None]
        ret = core.bdrv_truncate(bs.file.bs, new_file_size, prealloc,
                                 local_err)
        if ret < 0:
            error_setg(errp, "Failed to resize underlying file: %s",
                       error_get_pretty(local_err[0]))
            refcount.qcow2_free_clusters(bs, allocation_start,
                                         nb_new_data_clusters * cs,
                                         QCOW2_DISCARD_OTHER)
            return ret

    # Enter the clusters in the L2 tables, one table at a time; the head of
    # a partial cluster at the old end is copied into the new cluster
    host_offset = allocation_start
    guest_offset = old_length
    while nb_new_data_clusters:
        nb_clusters = min(nb_new_data_clusters,
                          s.l2_size - offset_to_l2_index(s, guest_offset))
        cow_start_length = offset_into_cluster(s, guest_offset)
        guest_offset = start_of_cluster(s, guest_offset)
        allocation = QCowL2Meta(
            guest_offset, host_offset,
            nb_clusters << (s.cluster_bits - BDRV_SECTOR_BITS), nb_clusters,
            Qcow2COWRegion(0, cow_start_length >> BDRV_SECTOR_BITS),
            Qcow2COWRegion(nb_clusters << s.cluster_bits, 0), None)
        ret = cluster.qcow2_alloc_cluster_link_l2(bs, allocation)
        if ret < 0:
            error_setg_errno(errp, -ret, "Failed to update L2 tables")
            refcount.qcow2_free_clusters(bs, host_offset,
                                         nb_new_data_clusters * cs,
                                         QCOW2_DISCARD_OTHER)
            return ret

        guest_offset += nb_clusters * cs
        host_offset += nb_clusters * cs
        nb_new_data_clusters -= nb_clusters
    return 0


@coroutine_fn
def qcow2_zero_new_area(bs: BlockDriverState, old_length: int, offset: int,
                        errp: Errp) -> int:
    """Make old_length..offset, which the image grows by, read as zeroes
    (the end of 7.2's qcow2_co_truncate): zero clusters where whole
    clusters are new, written zeroes in the partial cluster at the old
    end.  Called with s.lock held."""
    s = bs.opaque
    zero_start = align_offset(old_length, s.cluster_size)

    # the end may be unaligned: it is the end of the image
    if offset > zero_start:
        ret = cluster.qcow2_zero_clusters(
            bs, zero_start, (offset - zero_start) >> BDRV_SECTOR_BITS, 0)
        if ret < 0:
            error_setg_errno(errp, -ret, "Failed to zero out new clusters")
            return ret

    if zero_start > old_length:
        nbytes = min(zero_start, offset) - old_length
        qiov = QEMUIOVector()
        qemu_iovec_init(qiov, 1)
        qemu_iovec_add(qiov, bytearray(nbytes), nbytes)
        qemu_co_mutex_unlock(s.lock)
        ret = qcow2_co_writev(bs, old_length >> BDRV_SECTOR_BITS,
                              nbytes >> BDRV_SECTOR_BITS, qiov)
        qemu_co_mutex_lock(s.lock)
        qemu_iovec_destroy(qiov)
        if ret < 0:
            error_setg_errno(errp, -ret, "Failed to zero out the new area")
            return ret
    return 0


def qcow2_shrink(bs: BlockDriverState, offset: int, new_l1_size: int,
                 errp: Errp) -> int:
    """The shrinking half of qcow2_co_truncate: free what lies past offset
    and cut the file after its last used cluster.  The header's size is
    the caller's."""
    s = bs.opaque
    old_length = bs.total_sectors * BDRV_SECTOR_SIZE

    # the cluster that offset falls into stays; the discard takes the
    # partial cluster at the old end whole
    discard_start = align_offset(offset, s.cluster_size)
    if discard_start < old_length:
        nb_sectors = (old_length - discard_start) >> BDRV_SECTOR_BITS
        ret = cluster.qcow2_discard_clusters(bs, discard_start, nb_sectors,
                                             QCOW2_DISCARD_ALWAYS, True)
        if ret < 0:
            error_setg_errno(errp, -ret, "Failed to discard cropped clusters")
            return ret

    ret = cluster.qcow2_shrink_l1_table(bs, new_l1_size)
    if ret < 0:
        error_setg_errno(errp, -ret,
                         "Failed to reduce the number of L2 tables")
        return ret

    ret = refcount.qcow2_shrink_reftable(bs)
    if ret < 0:
        error_setg_errno(errp, -ret, "Failed to discard unused refblocks")
        return ret

    old_file_size = core.bdrv_getlength(bs.file.bs)
    if old_file_size < 0:
        error_setg_errno(errp, -old_file_size,
                         "Failed to inquire current file length")
        return old_file_size

    last_cluster = refcount.qcow2_get_last_cluster(bs, old_file_size)
    if last_cluster < 0:
        error_setg_errno(errp, -last_cluster,
                         "Failed to find the last cluster")
        return last_cluster

    new_file_size = (last_cluster + 1) * s.cluster_size
    if new_file_size < old_file_size:
        # a file that cannot shrink only wastes space: not an error
        local_err = [None]
        core.bdrv_truncate(bs.file.bs, new_file_size, "off", local_err)
        if local_err[0]:
            warn_report("Failed to truncate the tail of the image: %s",
                        error_get_pretty(local_err[0]))
    return 0


def qcow2_write_compressed(bs: BlockDriverState, sector_num: int, buf,
                           nb_sectors: int) -> int:
    """Write one compressed cluster (raw deflate, window 2^12 as QEMU
    writes it); a cluster that does not shrink is written normally.  No
    sectors: align the file end to a sector."""
    s = bs.opaque

    if nb_sectors == 0:
        # align end of file to a sector boundary to ease reading with
        # sector based I/Os
        cluster_offset = core.bdrv_getlength(bs.file.bs)
        return core.bdrv_truncate(bs.file.bs, cluster_offset)

    if nb_sectors != s.cluster_sectors:
        ret = -errno.EINVAL

        # Zero-pad last write if image size is not cluster aligned
        if (sector_num + nb_sectors == bs.total_sectors and
                nb_sectors < s.cluster_sectors):
            pad_buf = bytearray(s.cluster_size)
            pad_buf[:nb_sectors * BDRV_SECTOR_SIZE] = \
                memoryview(buf)[:nb_sectors * BDRV_SECTOR_SIZE]
            ret = qcow2_write_compressed(bs, sector_num, pad_buf,
                                         s.cluster_sectors)
        return ret

    # best compression, small window, no zlib header
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED,
                                  -12, 9, zlib.Z_DEFAULT_STRATEGY)
    out_buf = compressor.compress(memoryview(buf)[:s.cluster_size])
    out_buf += compressor.flush(zlib.Z_FINISH)
    out_len = len(out_buf)

    if out_len >= s.cluster_size:
        # could not compress: write normal cluster
        ret = io.bdrv_write(bs, sector_num, buf, s.cluster_sectors)
        if ret < 0:
            return ret
    else:
        cluster_offset = cluster.qcow2_alloc_compressed_cluster_offset(
            bs, sector_num << 9, out_len)
        if not cluster_offset:
            return -errno.EIO
        cluster_offset &= s.cluster_offset_mask

        ret = refcount.qcow2_pre_write_overlap_check(bs, 0, cluster_offset,
                                                     out_len)
        if ret < 0:
            return ret

        BLKDBG_EVENT(bs.file, BLKDBG_WRITE_COMPRESSED)
        ret = io.bdrv_pwrite(bs.file.bs, cluster_offset, out_buf, out_len)
        if ret < 0:
            return ret

    return 0


def qcow2_write_caches(bs: BlockDriverState) -> int:
    """Write back the cached L2 tables and, unless lazy refcounts make
    them optional, the refblocks (QEMU 7.2's qcow2_write_caches)."""
    s = bs.opaque

    ret = cache.qcow2_cache_flush(bs, s.l2_table_cache)
    if ret < 0:
        return ret

    if qcow2_need_accurate_refcounts(s):
        ret = cache.qcow2_cache_flush(bs, s.refcount_block_cache)
        if ret < 0:
            return ret

    return 0


@coroutine_fn
def qcow2_co_flush_to_os(bs: BlockDriverState) -> int:
    s = bs.opaque

    qemu_co_mutex_lock(s.lock)
    ret = qcow2_write_caches(bs)
    qemu_co_mutex_unlock(s.lock)
    return ret


def qcow2_get_info(bs: BlockDriverState, bdi: BlockDriverInfo) -> int:
    s = bs.opaque
    bdi.unallocated_blocks_are_zero = True
    bdi.can_write_zeroes_with_unmap = s.qcow_version >= 3
    bdi.cluster_size = s.cluster_size
    bdi.vm_state_offset = qcow2_vm_state_offset(s)
    # 7.2 reports the header's dirty bit, so qemu-img info can say that the
    # image was not cleanly shut down
    bdi.is_dirty = bool(s.incompatible_features & QCOW2_INCOMPAT_DIRTY)
    return 0


def qcow2_get_specific_info(bs: BlockDriverState) -> dict:
    """ImageInfoSpecific as its QAPI JSON form: {"type": "qcow2", "data":
    {...}}, the keys in the order 7.2's qemu-img prints them."""
    s = bs.opaque

    if s.qcow_version == 2:
        data = {
            "compat": "0.10",
            "compression-type": "zlib",
            "refcount-bits": s.refcount_bits,
        }
    else:
        data = {
            "compat": "1.1",
            "compression-type": "zlib",
            "lazy-refcounts": bool(s.compatible_features
                                   & QCOW2_COMPAT_LAZY_REFCOUNTS),
            "refcount-bits": s.refcount_bits,
            "corrupt": bool(s.incompatible_features & QCOW2_INCOMPAT_CORRUPT),
            "extended-l2": False,
        }
    return {"type": "qcow2", "data": data}


def qcow2_save_vmstate(bs: BlockDriverState, qiov: QEMUIOVector,
                       pos: int) -> int:
    s = bs.opaque
    total_sectors = bs.total_sectors
    zero_beyond_eof = bs.zero_beyond_eof

    BLKDBG_EVENT(bs.file, BLKDBG_VMSTATE_SAVE)
    bs.zero_beyond_eof = False
    ret = io.bdrv_pwritev(bs, qcow2_vm_state_offset(s) + pos, qiov)
    bs.zero_beyond_eof = zero_beyond_eof

    # The write made total_sectors cover the VM state, which is not part
    # of the block device: restore it
    bs.total_sectors = total_sectors

    return ret


def qcow2_load_vmstate(bs: BlockDriverState, buf, pos: int, size: int) -> int:
    s = bs.opaque
    zero_beyond_eof = bs.zero_beyond_eof

    BLKDBG_EVENT(bs.file, BLKDBG_VMSTATE_LOAD)
    bs.zero_beyond_eof = False
    ret = io.bdrv_pread(bs, qcow2_vm_state_offset(s) + pos, buf, size)
    bs.zero_beyond_eof = zero_beyond_eof

    return ret


def qcow2_signal_corruption(bs: BlockDriverState, fatal: bool, offset: int,
                            size: int, message_format: str, *args) -> None:
    """Report corruption found in the image.  A fatal one (ignored for a
    read-only BDS) marks the image corrupt and makes the BDS unusable.
    offset and size (negative: unknown) would go to the
    BLOCK_IMAGE_CORRUPTED event, which this port does not send."""
    s = bs.opaque

    fatal = fatal and not bs.read_only

    if (s.signaled_corruption and
            (not fatal or (s.incompatible_features & QCOW2_INCOMPAT_CORRUPT))):
        return

    message = message_format % args

    if fatal:
        error_printf("qcow2: Marking image as corrupt: %s; further "
                     "corruption events will be suppressed\n", message)
    else:
        error_printf("qcow2: Image is corrupt: %s; further non-fatal "
                     "corruption events will be suppressed\n", message)

    if fatal:
        qcow2_mark_corrupt(bs)
        bs.drv = None    # make BDS unusable

    s.signaled_corruption = True


# --- measure: 7.2's option helpers, qcow2_calc_prealloc_size, qcow2_measure

L1E_SIZE = 8
L2E_SIZE_NORMAL = 8
L2E_SIZE_EXTENDED = 16
QCOW_EXTL2_SUBCLUSTERS_PER_CLUSTER = 32


def qcow2_opt_get_cluster_size_del(opts, extended_l2: bool,
                                   errp: Errp) -> int:
    cluster_size = qemu_opt_get_size_del(opts, BLOCK_OPT_CLUSTER_SIZE,
                                         DEFAULT_CLUSTER_SIZE)
    cluster_bits = (cluster_size & -cluster_size).bit_length() - 1
    if (cluster_bits < MIN_CLUSTER_BITS or cluster_bits > MAX_CLUSTER_BITS
            or (1 << cluster_bits) != cluster_size):
        error_setg(errp, "Cluster size must be a power of two between %d and "
                   "%dk", 1 << MIN_CLUSTER_BITS, 1 << (MAX_CLUSTER_BITS - 10))
        return 0
    if extended_l2:
        min_cluster_size = (QCOW_EXTL2_SUBCLUSTERS_PER_CLUSTER
                            << BDRV_SECTOR_BITS)
        if cluster_size < min_cluster_size:
            error_setg(errp, "Extended L2 entries are only supported with "
                       "cluster sizes of at least %d bytes", min_cluster_size)
            return 0
    return cluster_size


def qcow2_opt_get_version_del(opts, errp: Errp) -> int:
    """The compat option as measure reads it: only 0.10 and 1.1 (create
    goes through QAPI and takes v2/v3 too)."""
    buf = qemu_opt_get_del(opts, BLOCK_OPT_COMPAT_LEVEL)
    if not buf or buf == "1.1":
        return 3
    if buf == "0.10":
        return 2
    error_setg(errp, "Invalid compatibility level: '%s'", buf)
    return -errno.EINVAL


def qcow2_opt_get_refcount_bits_del(opts, version: int, errp: Errp) -> int:
    refcount_bits = qemu_opt_get_number_del(opts, BLOCK_OPT_REFCOUNT_BITS, 16)
    if (refcount_bits > 64 or refcount_bits <= 0
            or refcount_bits & (refcount_bits - 1)):
        error_setg(errp, "Refcount width must be a power of two and may not "
                   "exceed 64 bits")
        return 0
    if version < 3 and refcount_bits != 16:
        error_setg(errp, "Different refcount widths than 16 bits require "
                   "compatibility level 1.1 or above (use compat=1.1 or "
                   "greater)")
        return 0
    return refcount_bits


def qcow2_calc_prealloc_size(total_size: int, cluster_size: int,
                             refcount_order: int, extended_l2: bool) -> int:
    """The file size of a fully allocated image: header, L1 and L2 tables,
    refcount structures and data (7.2's qcow2_calc_prealloc_size)."""
    aligned_total_size = align_offset(total_size, cluster_size)
    l2e_size = L2E_SIZE_EXTENDED if extended_l2 else L2E_SIZE_NORMAL

    meta_size = cluster_size    # the header
    nl2e = align_offset(aligned_total_size // cluster_size,
                        cluster_size // l2e_size)
    meta_size += nl2e * l2e_size
    nl1e = align_offset(nl2e * l2e_size // cluster_size,
                        cluster_size // L1E_SIZE)
    meta_size += nl1e * L1E_SIZE
    meta_size += qcow2_refcount_metadata_size(
        (meta_size + aligned_total_size) // cluster_size, cluster_size,
        refcount_order, False, None)
    return meta_size + aligned_total_size


def qcow2_supports_persistent_dirty_bitmap(bs: BlockDriverState) -> bool:
    return bs.opaque.qcow_version >= 3


def qcow2_measure(opts, in_bs: Optional[BlockDriverState],
                  errp: Errp) -> Optional[dict]:
    """7.2's qcow2_measure: the data clusters in_bs has (or none) plus the
    metadata of a fully allocated image of that size."""
    local_err = [None]
    extended_l2 = qemu_opt_get_bool_del(opts, BLOCK_OPT_EXTL2, False)
    cluster_size = qcow2_opt_get_cluster_size_del(opts, extended_l2,
                                                  local_err)
    if not local_err[0]:
        version = qcow2_opt_get_version_del(opts, local_err)
    if not local_err[0]:
        refcount_bits = qcow2_opt_get_refcount_bits_del(opts, version,
                                                        local_err)
    if local_err[0]:
        error_propagate(errp, local_err[0])
        return None

    prealloc = qemu_opt_get_del(opts, BLOCK_OPT_PREALLOC) or "off"
    if prealloc not in core.PREALLOC_MODES:
        error_setg(errp, "invalid parameter value: %s", prealloc)
        return None
    has_backing_file = bool(qemu_opt_get_del(opts, BLOCK_OPT_BACKING_FILE))
    if qemu_opt_get_del(opts, BLOCK_OPT_ENCRYPT_FORMAT) == "luks":
        error_setg(errp, "Encrypted images are not supported")
        return None

    virtual_size = align_offset(qemu_opt_get_size_del(opts, BLOCK_OPT_SIZE, 0),
                                cluster_size)
    l2e_size = L2E_SIZE_EXTENDED if extended_l2 else L2E_SIZE_NORMAL
    l2_tables = -(-(virtual_size // cluster_size)
                  // (cluster_size // l2e_size))
    if l2_tables * L1E_SIZE > QCOW_MAX_L1_SIZE:
        error_setg(errp, "The image size is too large (try using a larger "
                   "cluster size)")
        return None

    required = 0
    if in_bs:
        ssize = core.bdrv_getlength(in_bs)
        if ssize < 0:
            error_setg_errno(errp, -ssize, "Unable to get image virtual_size")
            return None
        virtual_size = align_offset(ssize, cluster_size)
        if has_backing_file:
            # the new backing file may share nothing with in_bs
            required = virtual_size
        else:
            offset = 0
            while offset < ssize:
                spnum = [0]
                ret = io.bdrv_get_block_status_above(
                    in_bs, None, offset >> BDRV_SECTOR_BITS,
                    min(-(-(ssize - offset) // BDRV_SECTOR_SIZE), INT_MAX),
                    spnum, [None])
                if ret < 0:
                    error_setg_errno(errp, -ret,
                                     "Unable to get block status")
                    return None
                pnum = spnum[0] << BDRV_SECTOR_BITS
                if ret & BDRV_BLOCK_ZERO:
                    pass    # reads as zeroes: no cluster needed
                elif (ret & (BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED)
                      == BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED):
                    # count whole clusters, and go on after this one
                    pnum = align_offset(offset + pnum, cluster_size) - offset
                    required += offset % cluster_size + pnum
                offset += pnum

    # metadata preallocation is counted anyway
    if prealloc in ("full", "falloc"):
        required = virtual_size

    fully_allocated = qcow2_calc_prealloc_size(
        virtual_size, cluster_size, refcount_bits.bit_length() - 1,
        extended_l2)
    info = {'required': fully_allocated - virtual_size + required,
            'fully-allocated': fully_allocated}
    # bitmaps are shown when both images could have them; this port loads
    # no persistent bitmaps, so there are none to count
    if (version >= 3 and in_bs and in_bs.drv
            and in_bs.drv.bdrv_supports_persistent_dirty_bitmap
            and in_bs.drv.bdrv_supports_persistent_dirty_bitmap(in_bs)):
        info['bitmaps'] = 0
    return info


# 7.2's list and order (qcow2_create_opts of block/qcow2.c, the encryption
# and layout options first, then its QCOW_COMMON_OPTIONS): the order is what
# bdrv_img_create's "Formatting ..." line follows.  qcow2_create refuses the
# values of the features this port lacks (data file, encryption, extended
# L2, compression other than zlib).
qcow2_create_opts = QemuOptsList("qcow2-create-opts", [
    QemuOptDesc(BLOCK_OPT_ENCRYPT, QEMU_OPT_BOOL,
                "Encrypt the image with format 'aes'. (Deprecated in favor "
                "of " + BLOCK_OPT_ENCRYPT_FORMAT + "=aes)"),
    QemuOptDesc(BLOCK_OPT_ENCRYPT_FORMAT, QEMU_OPT_STRING,
                "Encrypt the image, format choices: 'aes', 'luks'"),
    QemuOptDesc("encrypt.key-secret", QEMU_OPT_STRING,
                "ID of secret providing qcow AES key or LUKS passphrase"),
    QemuOptDesc("encrypt.cipher-alg", QEMU_OPT_STRING,
                "Name of encryption cipher algorithm"),
    QemuOptDesc("encrypt.cipher-mode", QEMU_OPT_STRING,
                "Name of encryption cipher mode"),
    QemuOptDesc("encrypt.ivgen-alg", QEMU_OPT_STRING,
                "Name of IV generator algorithm"),
    QemuOptDesc("encrypt.ivgen-hash-alg", QEMU_OPT_STRING,
                "Name of IV generator hash algorithm"),
    QemuOptDesc("encrypt.hash-alg", QEMU_OPT_STRING,
                "Name of encryption hash algorithm"),
    QemuOptDesc("encrypt.iter-time", QEMU_OPT_NUMBER,
                "Time to spend in PBKDF in milliseconds"),
    QemuOptDesc(BLOCK_OPT_CLUSTER_SIZE, QEMU_OPT_SIZE, "qcow2 cluster size",
                str(DEFAULT_CLUSTER_SIZE)),
    QemuOptDesc(BLOCK_OPT_EXTL2, QEMU_OPT_BOOL, "Extended L2 tables", "off"),
    QemuOptDesc(BLOCK_OPT_PREALLOC, QEMU_OPT_STRING,
                "Preallocation mode (allowed values: off, metadata, "
                "falloc, full)"),
    QemuOptDesc(BLOCK_OPT_COMPRESSION_TYPE, QEMU_OPT_STRING,
                "Compression method used for image cluster compression",
                "zlib"),
    QemuOptDesc(BLOCK_OPT_SIZE, QEMU_OPT_SIZE, "Virtual disk size"),
    QemuOptDesc(BLOCK_OPT_COMPAT_LEVEL, QEMU_OPT_STRING,
                "Compatibility level (v2 [0.10] or v3 [1.1])"),
    QemuOptDesc(BLOCK_OPT_BACKING_FILE, QEMU_OPT_STRING,
                "File name of a base image"),
    QemuOptDesc(BLOCK_OPT_BACKING_FMT, QEMU_OPT_STRING,
                "Image format of the base image"),
    QemuOptDesc(BLOCK_OPT_DATA_FILE, QEMU_OPT_STRING,
                "File name of an external data file"),
    QemuOptDesc(BLOCK_OPT_DATA_FILE_RAW, QEMU_OPT_BOOL,
                "The external data file must stay valid as a raw image"),
    QemuOptDesc(BLOCK_OPT_LAZY_REFCOUNTS, QEMU_OPT_BOOL,
                "Postpone refcount updates", "off"),
    QemuOptDesc(BLOCK_OPT_REFCOUNT_BITS, QEMU_OPT_NUMBER,
                "Width of a reference count entry in bits", "16"),
])


class BdrvQcow2(BlockDriver):
    """BlockDriver bdrv_qcow2."""
    format_name = "qcow2"
    instance_type = BDRVQcow2State
    bdrv_probe = staticmethod(qcow2_probe)
    bdrv_open = staticmethod(qcow2_open)
    bdrv_close = staticmethod(qcow2_close)
    bdrv_reopen_prepare = staticmethod(qcow2_reopen_prepare)
    bdrv_reopen_commit = staticmethod(qcow2_reopen_commit)
    bdrv_reopen_abort = staticmethod(qcow2_reopen_abort)
    bdrv_create = staticmethod(qcow2_create)
    bdrv_has_zero_init = staticmethod(core.bdrv_has_zero_init_1)
    bdrv_co_get_block_status = staticmethod(qcow2_co_get_block_status)

    bdrv_co_readv = staticmethod(qcow2_co_readv)
    bdrv_co_writev = staticmethod(qcow2_co_writev)
    bdrv_co_flush_to_os = staticmethod(qcow2_co_flush_to_os)

    bdrv_co_write_zeroes = staticmethod(qcow2_co_write_zeroes)
    bdrv_co_discard = staticmethod(qcow2_co_discard)
    bdrv_truncate = staticmethod(qcow2_co_truncate)
    bdrv_write_compressed = staticmethod(qcow2_write_compressed)

    bdrv_snapshot_list = staticmethod(snapshot.qcow2_snapshot_list)
    bdrv_get_info = staticmethod(qcow2_get_info)
    bdrv_get_specific_info = staticmethod(qcow2_get_specific_info)

    bdrv_save_vmstate = staticmethod(qcow2_save_vmstate)
    bdrv_load_vmstate = staticmethod(qcow2_load_vmstate)

    supports_backing = True
    bdrv_change_backing_file = staticmethod(qcow2_change_backing_file)

    bdrv_refresh_limits = staticmethod(qcow2_refresh_limits)

    create_opts = qcow2_create_opts
    bdrv_measure = staticmethod(qcow2_measure)
    bdrv_supports_persistent_dirty_bitmap = staticmethod(
        qcow2_supports_persistent_dirty_bitmap)
    bdrv_check = staticmethod(qcow2_check)

    bdrv_detach_aio_context = staticmethod(qcow2_detach_aio_context)
    bdrv_attach_aio_context = staticmethod(qcow2_attach_aio_context)


bdrv_qcow2 = BdrvQcow2()
