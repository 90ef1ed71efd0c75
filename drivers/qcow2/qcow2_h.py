"""Types, constants and inline helpers of the qcow2 driver: the Python twin
of QEMU's block/qcow2.h (v2.5.0).

Tables keep the layout they have on disk: an L2 table or a refcount block in
the metadata cache is a bytearray of one cluster, read and written with the
big-endian Structs below; the L1 table and the refcount table live in memory
as lists of ints in CPU order, as the C keeps them byte-swapped.
"""

from __future__ import annotations

import struct
from typing import Optional

from block.block_int import BDRV_SECTOR_BITS
from util.coroutine_lock import CoMutex, CoQueue

# --- qcow2.h ----------------------------------------------------------------

QCOW_MAGIC = (ord('Q') << 24) | (ord('F') << 16) | (ord('I') << 8) | 0xfb

QCOW_CRYPT_NONE = 0
QCOW_CRYPT_AES = 1

QCOW_MAX_CRYPT_CLUSTERS = 32
QCOW_MAX_SNAPSHOTS = 65536

# An 8 MB refcount table covers 2 PB at 64k clusters; a 32 MB L1 table too.
QCOW_MAX_REFTABLE_SIZE = 0x800000
QCOW_MAX_L1_SIZE = 0x2000000

# about 1k per snapshot table entry
QCOW_MAX_SNAPSHOTS_SIZE = 1024 * QCOW_MAX_SNAPSHOTS

QCOW_OFLAG_COPIED = 1 << 63        # refcount of the cluster is exactly one
QCOW_OFLAG_COMPRESSED = 1 << 62    # never together with COPIED
QCOW_OFLAG_ZERO = 1 << 0           # the cluster reads as zeroes

MIN_CLUSTER_BITS = 9
MAX_CLUSTER_BITS = 21

MIN_L2_CACHE_SIZE = 2              # clusters; COW needs two
MIN_REFCOUNT_CACHE_SIZE = 4        # clusters; refcount table growth needs four

DEFAULT_L2_CACHE_CLUSTERS = 8
DEFAULT_L2_CACHE_BYTE_SIZE = 1048576

# refcount blocks cover four times as many clusters as L2 tables of the
# same size (16-bit entries against 64-bit ones)
DEFAULT_L2_REFCOUNT_SIZE_RATIO = 4

DEFAULT_CLUSTER_SIZE = 65536

QCOW2_OPT_LAZY_REFCOUNTS = "lazy-refcounts"
QCOW2_OPT_DISCARD_REQUEST = "pass-discard-request"
QCOW2_OPT_DISCARD_SNAPSHOT = "pass-discard-snapshot"
QCOW2_OPT_DISCARD_OTHER = "pass-discard-other"
QCOW2_OPT_OVERLAP = "overlap-check"
QCOW2_OPT_OVERLAP_TEMPLATE = "overlap-check.template"
QCOW2_OPT_OVERLAP_MAIN_HEADER = "overlap-check.main-header"
QCOW2_OPT_OVERLAP_ACTIVE_L1 = "overlap-check.active-l1"
QCOW2_OPT_OVERLAP_ACTIVE_L2 = "overlap-check.active-l2"
QCOW2_OPT_OVERLAP_REFCOUNT_TABLE = "overlap-check.refcount-table"
QCOW2_OPT_OVERLAP_REFCOUNT_BLOCK = "overlap-check.refcount-block"
QCOW2_OPT_OVERLAP_SNAPSHOT_TABLE = "overlap-check.snapshot-table"
QCOW2_OPT_OVERLAP_INACTIVE_L1 = "overlap-check.inactive-l1"
QCOW2_OPT_OVERLAP_INACTIVE_L2 = "overlap-check.inactive-l2"
QCOW2_OPT_CACHE_SIZE = "cache-size"
QCOW2_OPT_L2_CACHE_SIZE = "l2-cache-size"
QCOW2_OPT_REFCOUNT_CACHE_SIZE = "refcount-cache-size"
QCOW2_OPT_CACHE_CLEAN_INTERVAL = "cache-clean-interval"


class QCowHeader:
    """struct QCowHeader (packed, big endian on disk).  The version 3
    fields follow the 72 bytes of version 2."""
    __slots__ = ("magic", "version", "backing_file_offset",
                 "backing_file_size", "cluster_bits", "size", "crypt_method",
                 "l1_size", "l1_table_offset", "refcount_table_offset",
                 "refcount_table_clusters", "nb_snapshots", "snapshots_offset",
                 "incompatible_features", "compatible_features",
                 "autoclear_features", "refcount_order", "header_length")

    # field order and widths of the packed struct
    fmt = struct.Struct(">IIQIIQIIQQIIQQQQII")
    V2_SIZE = 72

    def __init__(self, *values: int) -> None:
        if not values:
            values = (0,) * len(self.__slots__)
        for name, value in zip(self.__slots__, values):
            setattr(self, name, value)

    @classmethod
    def unpack(cls, buf) -> "QCowHeader":
        return cls(*cls.fmt.unpack_from(buf, 0))

    def pack(self) -> bytes:
        return self.fmt.pack(*(getattr(self, n) for n in self.__slots__))


def _header_offsets() -> dict:
    """offsetof(QCowHeader, field) for every field."""
    offsets = {}
    pos = 0
    for name, code in zip(QCowHeader.__slots__, QCowHeader.fmt.format[1:]):
        offsets[name] = pos
        pos += 8 if code == "Q" else 4
    return offsets


QCOW_HEADER_OFFSETOF = _header_offsets()
assert QCowHeader.fmt.size == 104
assert QCOW_HEADER_OFFSETOF["incompatible_features"] == QCowHeader.V2_SIZE


class QCowSnapshotHeader:
    """struct QCowSnapshotHeader; id_str and name follow the extra data."""
    fmt = struct.Struct(">QIHHIIQII")   # 40 bytes, 8-byte aligned on disk


class QCowSnapshotExtraData:
    fmt = struct.Struct(">QQ")         # vm_state_size_large, disk_size


class QCowSnapshot:
    __slots__ = ("l1_table_offset", "l1_size", "id_str", "name", "disk_size",
                 "vm_state_size", "date_sec", "date_nsec", "vm_clock_nsec")

    def __init__(self) -> None:
        self.l1_table_offset = 0
        self.l1_size = 0
        self.id_str = ""
        self.name = ""
        self.disk_size = 0
        self.vm_state_size = 0
        self.date_sec = 0
        self.date_nsec = 0
        self.vm_clock_nsec = 0


class Qcow2UnknownHeaderExtension:
    __slots__ = ("magic", "len", "data")

    def __init__(self, magic: int, length: int) -> None:
        self.magic = magic
        self.len = length
        self.data = bytearray(length)


QCOW2_FEAT_TYPE_INCOMPATIBLE = 0
QCOW2_FEAT_TYPE_COMPATIBLE = 1
QCOW2_FEAT_TYPE_AUTOCLEAR = 2

QCOW2_INCOMPAT_DIRTY_BITNR = 0
QCOW2_INCOMPAT_CORRUPT_BITNR = 1
QCOW2_INCOMPAT_DIRTY = 1 << QCOW2_INCOMPAT_DIRTY_BITNR
QCOW2_INCOMPAT_CORRUPT = 1 << QCOW2_INCOMPAT_CORRUPT_BITNR
QCOW2_INCOMPAT_MASK = QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT

QCOW2_COMPAT_LAZY_REFCOUNTS_BITNR = 0
QCOW2_COMPAT_LAZY_REFCOUNTS = 1 << QCOW2_COMPAT_LAZY_REFCOUNTS_BITNR
QCOW2_COMPAT_FEAT_MASK = QCOW2_COMPAT_LAZY_REFCOUNTS

# enum qcow2_discard_type
QCOW2_DISCARD_NEVER = 0
QCOW2_DISCARD_ALWAYS = 1
QCOW2_DISCARD_REQUEST = 2
QCOW2_DISCARD_SNAPSHOT = 3
QCOW2_DISCARD_OTHER = 4
QCOW2_DISCARD_MAX = 5


class Qcow2Feature:
    """One entry of the feature name table extension (48 bytes on disk)."""
    fmt = struct.Struct(">BB46s")


class Qcow2DiscardRegion:
    __slots__ = ("bs", "offset", "bytes")

    def __init__(self, bs, offset: int, nbytes: int) -> None:
        self.bs = bs
        self.offset = offset
        self.bytes = nbytes


class BDRVQcow2State:
    """struct BDRVQcow2State, zero-initialised as bdrv_open leaves it."""
    __slots__ = (
        "cluster_bits", "cluster_size", "cluster_sectors", "l2_bits",
        "l2_size", "l1_size", "l1_vm_state_index", "refcount_block_bits",
        "refcount_block_size", "csize_shift", "csize_mask",
        "cluster_offset_mask", "l1_table_offset", "l1_table",
        "l2_table_cache", "refcount_block_cache", "cache_clean_timer",
        "cache_clean_interval",
        "cluster_cache", "cluster_data", "cluster_cache_offset",
        "cluster_allocs",
        "refcount_table", "refcount_table_offset", "refcount_table_size",
        "free_cluster_index", "free_byte_offset",
        "lock",
        "cipher", "crypt_method_header", "snapshots_offset", "snapshots_size",
        "nb_snapshots", "snapshots",
        "flags", "qcow_version", "use_lazy_refcounts", "refcount_order",
        "refcount_bits", "refcount_max",
        "get_refcount", "set_refcount",
        "discard_passthrough",
        "overlap_check", "signaled_corruption",
        "incompatible_features", "compatible_features", "autoclear_features",
        "unknown_header_fields_size", "unknown_header_fields",
        "unknown_header_ext", "discards", "cache_discards",
        "image_backing_file", "image_backing_format",
    )

    def __init__(self) -> None:
        self.cluster_bits = 0
        self.cluster_size = 0
        self.cluster_sectors = 0
        self.l2_bits = 0
        self.l2_size = 0
        self.l1_size = 0
        self.l1_vm_state_index = 0
        self.refcount_block_bits = 0
        self.refcount_block_size = 0
        self.csize_shift = 0
        self.csize_mask = 0
        self.cluster_offset_mask = 0
        self.l1_table_offset = 0
        self.l1_table: Optional[Qcow2MetadataTable] = None

        self.l2_table_cache = None
        self.refcount_block_cache = None
        self.cache_clean_timer = None
        self.cache_clean_interval = 0

        # the last decompressed cluster, and its compressed bytes
        self.cluster_cache: Optional[bytearray] = None
        self.cluster_data: Optional[bytearray] = None
        self.cluster_cache_offset = 0
        # QLIST of in-flight QCowL2Meta, head (newest) first
        self.cluster_allocs: list = []

        self.refcount_table: Optional[Qcow2MetadataTable] = None
        self.refcount_table_offset = 0
        self.refcount_table_size = 0
        self.free_cluster_index = 0
        self.free_byte_offset = 0

        self.lock = CoMutex()

        self.cipher = None
        self.crypt_method_header = 0
        self.snapshots_offset = 0
        self.snapshots_size = 0
        self.nb_snapshots = 0
        self.snapshots: Optional[list] = None

        self.flags = 0
        self.qcow_version = 0
        self.use_lazy_refcounts = False
        self.refcount_order = 0
        self.refcount_bits = 0
        self.refcount_max = 0

        self.get_refcount = None
        self.set_refcount = None

        self.discard_passthrough = [False] * QCOW2_DISCARD_MAX

        self.overlap_check = 0         # QCow2MetadataOverlap bits
        self.signaled_corruption = False

        self.incompatible_features = 0
        self.compatible_features = 0
        self.autoclear_features = 0

        self.unknown_header_fields_size = 0
        self.unknown_header_fields: Optional[bytes] = None
        # QLIST, head first: qcow2_read_extensions inserts at the head
        self.unknown_header_ext: list = []
        self.discards: list = []       # QTAILQ of Qcow2DiscardRegion
        self.cache_discards = False

        # as stored in the image, not the effective (maybe overridden) one
        self.image_backing_file: Optional[str] = None
        self.image_backing_format: Optional[str] = None


class Qcow2COWRegion:
    __slots__ = ("offset", "nb_sectors")

    def __init__(self, offset: int = 0, nb_sectors: int = 0) -> None:
        # bytes from the start of the first cluster the request touches
        self.offset = offset
        self.nb_sectors = nb_sectors


class QCowL2Meta:
    """An in-flight part of a write request to clusters that its L2 table
    does not reference yet."""
    __slots__ = ("offset", "alloc_offset", "nb_available", "nb_clusters",
                 "dependent_requests", "cow_start", "cow_end", "next")

    def __init__(self, offset: int, alloc_offset: int, nb_available: int,
                 nb_clusters: int, cow_start: Qcow2COWRegion,
                 cow_end: Qcow2COWRegion,
                 next: Optional["QCowL2Meta"]) -> None:
        self.offset = offset               # guest offset of the first cluster
        self.alloc_offset = alloc_offset   # host offset of the first cluster
        # sectors from the first allocated cluster to the end of the request
        self.nb_available = nb_available
        self.nb_clusters = nb_clusters
        # overlapping requests wait here until this allocation completes
        self.dependent_requests = CoQueue()
        self.cow_start = cow_start
        self.cow_end = cow_end
        self.next = next                   # next L2Meta of the same request


QCOW2_CLUSTER_UNALLOCATED = 0
QCOW2_CLUSTER_NORMAL = 1
QCOW2_CLUSTER_COMPRESSED = 2
QCOW2_CLUSTER_ZERO = 3

# enum QCow2MetadataOverlap
QCOW2_OL_MAIN_HEADER_BITNR = 0
QCOW2_OL_ACTIVE_L1_BITNR = 1
QCOW2_OL_ACTIVE_L2_BITNR = 2
QCOW2_OL_REFCOUNT_TABLE_BITNR = 3
QCOW2_OL_REFCOUNT_BLOCK_BITNR = 4
QCOW2_OL_SNAPSHOT_TABLE_BITNR = 5
QCOW2_OL_INACTIVE_L1_BITNR = 6
QCOW2_OL_INACTIVE_L2_BITNR = 7
QCOW2_OL_MAX_BITNR = 8

QCOW2_OL_NONE = 0
QCOW2_OL_MAIN_HEADER = 1 << QCOW2_OL_MAIN_HEADER_BITNR
QCOW2_OL_ACTIVE_L1 = 1 << QCOW2_OL_ACTIVE_L1_BITNR
QCOW2_OL_ACTIVE_L2 = 1 << QCOW2_OL_ACTIVE_L2_BITNR
QCOW2_OL_REFCOUNT_TABLE = 1 << QCOW2_OL_REFCOUNT_TABLE_BITNR
QCOW2_OL_REFCOUNT_BLOCK = 1 << QCOW2_OL_REFCOUNT_BLOCK_BITNR
QCOW2_OL_SNAPSHOT_TABLE = 1 << QCOW2_OL_SNAPSHOT_TABLE_BITNR
QCOW2_OL_INACTIVE_L1 = 1 << QCOW2_OL_INACTIVE_L1_BITNR
# checking inactive L2 tables reads them from disk
QCOW2_OL_INACTIVE_L2 = 1 << QCOW2_OL_INACTIVE_L2_BITNR

# the checks that take constant time
QCOW2_OL_CONSTANT = (QCOW2_OL_MAIN_HEADER | QCOW2_OL_ACTIVE_L1 |
                     QCOW2_OL_REFCOUNT_TABLE | QCOW2_OL_SNAPSHOT_TABLE)
# the checks that need no disk access
QCOW2_OL_CACHED = (QCOW2_OL_CONSTANT | QCOW2_OL_ACTIVE_L2 |
                   QCOW2_OL_REFCOUNT_BLOCK | QCOW2_OL_INACTIVE_L1)
QCOW2_OL_ALL = QCOW2_OL_CACHED | QCOW2_OL_INACTIVE_L2

L1E_OFFSET_MASK = 0x00fffffffffffe00
L2E_OFFSET_MASK = 0x00fffffffffffe00
L2E_COMPRESSED_OFFSET_SIZE_MASK = 0x3fffffffffffffff

REFT_OFFSET_MASK = 0xfffffffffffffe00

UINT64_MAX = (1 << 64) - 1
INT64_MAX = (1 << 63) - 1
INT_MAX = 0x7fffffff

# be64 access to tables kept in on-disk layout
be64 = struct.Struct(">Q")
be32 = struct.Struct(">I")


class Qcow2MetadataTable(list):
    """The L1 table or the refcount table in memory (C: uint64_t *), one
    int per entry.

    It also answers the overlap check (qcow2_check_metadata_overlap), which
    runs before every data write: C scans the whole table each time, which
    costs too much in Python for a refcount table of thousands of entries.
    The table keeps the set of clusters its entries' one-cluster tables
    touch, rebuilt after any entry changed.
    """
    __slots__ = ("_clusters",)

    def __init__(self, entries=()) -> None:
        super().__init__(entries)
        self._clusters = None

    def __setitem__(self, index, value) -> None:
        list.__setitem__(self, index, value)
        self._clusters = None

    def touched_clusters(self, mask: int, cluster_size: int) -> frozenset:
        """Start offsets of the clusters that the cluster-sized tables at
        (entry & mask) overlap; an unaligned one touches two clusters."""
        clusters = self._clusters
        if clusters is None:
            found = set()
            for e in self:
                table_offset = e & mask
                if table_offset:
                    start = table_offset & ~(cluster_size - 1)
                    found.add(start)
                    if start != table_offset:
                        found.add(start + cluster_size)
            clusters = self._clusters = frozenset(found)
        return clusters


def int64(value: int) -> int:
    """C's conversion of a uint64_t to int64_t: an offset from the image
    with bit 63 set becomes negative, which the block layer refuses."""
    return value - (1 << 64) if value >> 63 else value


def start_of_cluster(s: BDRVQcow2State, offset: int) -> int:
    return offset & ~(s.cluster_size - 1)


def offset_into_cluster(s: BDRVQcow2State, offset: int) -> int:
    return offset & (s.cluster_size - 1)


def size_to_clusters(s: BDRVQcow2State, size: int) -> int:
    return (size + (s.cluster_size - 1)) >> s.cluster_bits


def size_to_l1(s: BDRVQcow2State, size: int) -> int:
    shift = s.cluster_bits + s.l2_bits
    return (size + (1 << shift) - 1) >> shift


def offset_to_l2_index(s: BDRVQcow2State, offset: int) -> int:
    return (offset >> s.cluster_bits) & (s.l2_size - 1)


def offset_to_reftable_index(s: BDRVQcow2State, offset: int) -> int:
    return offset >> (s.refcount_block_bits + s.cluster_bits)


def align_offset(offset: int, n: int) -> int:
    return (offset + n - 1) & ~(n - 1)


def qcow2_vm_state_offset(s: BDRVQcow2State) -> int:
    return s.l1_vm_state_index << (s.cluster_bits + s.l2_bits)


def qcow2_max_refcount_clusters(s: BDRVQcow2State) -> int:
    return QCOW_MAX_REFTABLE_SIZE >> s.cluster_bits


def qcow2_get_cluster_type(l2_entry: int) -> int:
    if l2_entry & QCOW_OFLAG_COMPRESSED:
        return QCOW2_CLUSTER_COMPRESSED
    elif l2_entry & QCOW_OFLAG_ZERO:
        return QCOW2_CLUSTER_ZERO
    elif not (l2_entry & L2E_OFFSET_MASK):
        return QCOW2_CLUSTER_UNALLOCATED
    else:
        return QCOW2_CLUSTER_NORMAL


def qcow2_need_accurate_refcounts(s: BDRVQcow2State) -> bool:
    """Are refcounts eager (not lazy)?"""
    return not (s.incompatible_features & QCOW2_INCOMPAT_DIRTY)


def l2meta_cow_start(m: QCowL2Meta) -> int:
    return m.offset + m.cow_start.offset


def l2meta_cow_end(m: QCowL2Meta) -> int:
    return (m.offset + m.cow_end.offset
            + (m.cow_end.nb_sectors << BDRV_SECTOR_BITS))


def refcount_diff(r1: int, r2: int) -> int:
    return r1 - r2 if r1 > r2 else r2 - r1
