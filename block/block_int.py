"""Block layer types and constants: the Python twin of QEMU's
include/block/block.h and include/block/block_int.h (spring 2016, the era of
the seed block/io.c).

Conventions shared by block/io.py, block/core.py and the drivers:

- Structs are classes with the C field names.  Per-request structs use
  __slots__.  QLIST heads become Python lists (see each field's comment for
  which end is the head).
- Out parameters (``int *pnum``, ``BlockDriverState **file``,
  ``int64_t *cluster_sector_num``) are one-element lists, as ``Error **errp``
  is in util/error.py: the caller passes ``pnum = [0]`` and the callee stores
  ``pnum[0] = n``.  A struct the caller owns (``BlockDriverInfo *bdi``) is
  passed as the object itself and filled in.
- ``uint8_t *buf`` is any writable buffer (bytearray, memoryview); pointer
  arithmetic ``buf + n`` becomes a memoryview slice.

This module holds types and trivial helpers only; behaviour lives in
block/core.py (block.c) and block/io.py (block/io.c).
"""

from __future__ import annotations

import enum
from typing import Any, Callable, Optional

from util.aio import AIOCBInfo, BlockAIOCB, BlockCompletionFunc  # noqa: F401 (re-exported)
from util.coroutine_lock import CoQueue
from util.notify import NotifierList, NotifierWithReturnList

# --- block.h: request flags, open flags, sectors ---------------------------

# BdrvRequestFlags
BDRV_REQ_COPY_ON_READ = 0x1
BDRV_REQ_ZERO_WRITE = 0x2
# The driver may unmap instead of writing zeroes if the range then reads as
# zeroes; only passed down when the image was opened with BDRV_O_UNMAP.
BDRV_REQ_MAY_UNMAP = 0x4
BDRV_REQ_NO_SERIALISING = 0x8
BDRV_REQ_FUA = 0x10

BDRV_O_RDWR = 0x0002
BDRV_O_SNAPSHOT = 0x0008       # open read-only, writes go to a temporary overlay
BDRV_O_TEMPORARY = 0x0010      # delete the file after use
BDRV_O_NOCACHE = 0x0020        # bypass the host page cache
BDRV_O_NATIVE_AIO = 0x0080     # linux-aio instead of the thread pool
BDRV_O_NO_BACKING = 0x0100
BDRV_O_NO_FLUSH = 0x0200       # cache=unsafe
BDRV_O_COPY_ON_READ = 0x0400
BDRV_O_INACTIVE = 0x0800       # image handed over to another process (migration)
BDRV_O_CHECK = 0x1000
BDRV_O_ALLOW_RDWR = 0x2000
BDRV_O_UNMAP = 0x4000          # pass discard requests down
BDRV_O_PROTOCOL = 0x8000       # without a driver name, open the protocol layer only
BDRV_O_NO_IO = 0x10000         # opened for metadata only; no I/O allowed

BDRV_O_CACHE_MASK = BDRV_O_NOCACHE | BDRV_O_NO_FLUSH

BDRV_OPT_CACHE_WB = "cache.writeback"
BDRV_OPT_CACHE_DIRECT = "cache.direct"
BDRV_OPT_CACHE_NO_FLUSH = "cache.no-flush"

BDRV_SECTOR_BITS = 9
BDRV_SECTOR_SIZE = 1 << BDRV_SECTOR_BITS
BDRV_SECTOR_MASK = ~(BDRV_SECTOR_SIZE - 1)

INT_MAX = 0x7fffffff
# MIN(SIZE_MAX >> BDRV_SECTOR_BITS, INT_MAX >> BDRV_SECTOR_BITS) on 64 bits
BDRV_REQUEST_MAX_SECTORS = INT_MAX >> BDRV_SECTOR_BITS

# Block status bits.  With BDRV_BLOCK_OFFSET_VALID, the bits above
# BDRV_SECTOR_BITS hold the byte offset of the data in bs->file.
BDRV_BLOCK_DATA = 0x01
BDRV_BLOCK_ZERO = 0x02
BDRV_BLOCK_OFFSET_VALID = 0x04
BDRV_BLOCK_RAW = 0x08          # internal: ask bs->file at the returned offset
BDRV_BLOCK_ALLOCATED = 0x10
BDRV_BLOCK_OFFSET_MASK = BDRV_SECTOR_MASK


class BlockOpType(enum.IntEnum):
    BLOCK_OP_TYPE_BACKUP_SOURCE = 0
    BLOCK_OP_TYPE_BACKUP_TARGET = 1
    BLOCK_OP_TYPE_CHANGE = 2
    BLOCK_OP_TYPE_COMMIT_SOURCE = 3
    BLOCK_OP_TYPE_COMMIT_TARGET = 4
    BLOCK_OP_TYPE_DATAPLANE = 5
    BLOCK_OP_TYPE_DRIVE_DEL = 6
    BLOCK_OP_TYPE_EJECT = 7
    BLOCK_OP_TYPE_EXTERNAL_SNAPSHOT = 8
    BLOCK_OP_TYPE_INTERNAL_SNAPSHOT = 9
    BLOCK_OP_TYPE_INTERNAL_SNAPSHOT_DELETE = 10
    BLOCK_OP_TYPE_MIRROR = 11
    BLOCK_OP_TYPE_RESIZE = 12
    BLOCK_OP_TYPE_STREAM = 13
    BLOCK_OP_TYPE_REPLACE = 14
    BLOCK_OP_TYPE_MAX = 15


globals().update(BlockOpType.__members__)


class BlkDebugEvent(enum.IntEnum):
    """Events blkdebug can hook (qapi BlkdebugEvent).  The qapi name of an
    event is its member name without "BLKDBG_", in lower case."""
    BLKDBG_L1_UPDATE = 0
    BLKDBG_L1_GROW_ALLOC_TABLE = 1
    BLKDBG_L1_GROW_WRITE_TABLE = 2
    BLKDBG_L1_GROW_ACTIVATE_TABLE = 3
    BLKDBG_L2_LOAD = 4
    BLKDBG_L2_UPDATE = 5
    BLKDBG_L2_UPDATE_COMPRESSED = 6
    BLKDBG_L2_ALLOC_COW_READ = 7
    BLKDBG_L2_ALLOC_WRITE = 8
    BLKDBG_READ_AIO = 9
    BLKDBG_READ_BACKING_AIO = 10
    BLKDBG_READ_COMPRESSED = 11
    BLKDBG_WRITE_AIO = 12
    BLKDBG_WRITE_COMPRESSED = 13
    BLKDBG_VMSTATE_LOAD = 14
    BLKDBG_VMSTATE_SAVE = 15
    BLKDBG_COW_READ = 16
    BLKDBG_COW_WRITE = 17
    BLKDBG_REFTABLE_LOAD = 18
    BLKDBG_REFTABLE_GROW = 19
    BLKDBG_REFTABLE_UPDATE = 20
    BLKDBG_REFBLOCK_LOAD = 21
    BLKDBG_REFBLOCK_UPDATE = 22
    BLKDBG_REFBLOCK_UPDATE_PART = 23
    BLKDBG_REFBLOCK_ALLOC = 24
    BLKDBG_REFBLOCK_ALLOC_HOOKUP = 25
    BLKDBG_REFBLOCK_ALLOC_WRITE = 26
    BLKDBG_REFBLOCK_ALLOC_WRITE_BLOCKS = 27
    BLKDBG_REFBLOCK_ALLOC_WRITE_TABLE = 28
    BLKDBG_REFBLOCK_ALLOC_SWITCH_TABLE = 29
    BLKDBG_CLUSTER_ALLOC = 30
    BLKDBG_CLUSTER_ALLOC_BYTES = 31
    BLKDBG_CLUSTER_FREE = 32
    BLKDBG_FLUSH_TO_OS = 33
    BLKDBG_FLUSH_TO_DISK = 34
    BLKDBG_PWRITEV_RMW_HEAD = 35
    BLKDBG_PWRITEV_RMW_AFTER_HEAD = 36
    BLKDBG_PWRITEV_RMW_TAIL = 37
    BLKDBG_PWRITEV_RMW_AFTER_TAIL = 38
    BLKDBG_PWRITEV = 39
    BLKDBG_PWRITEV_ZERO = 40
    BLKDBG_PWRITEV_DONE = 41
    BLKDBG_EMPTY_IMAGE_PREPARE = 42
    # QEMU 2.10's events of qcow2's shrinking
    BLKDBG_L1_SHRINK_WRITE_TABLE = 43
    BLKDBG_L1_SHRINK_FREE_L2_CLUSTERS = 44
    BLKDBG_EVENT_MAX = 45


# BLKDBG_L1_UPDATE etc. as module names, as the C enum constants are.
globals().update(BlkDebugEvent.__members__)


def BLKDBG_EVENT(child: Optional["BdrvChild"], evt: int) -> None:
    """The block.h macro: report evt to the driver of child->bs (blkdebug)."""
    if child:
        core.bdrv_debug_event(child.bs, evt)


# qapi BlockdevDetectZeroesOptions
BLOCKDEV_DETECT_ZEROES_OPTIONS_OFF = 0
BLOCKDEV_DETECT_ZEROES_OPTIONS_ON = 1
BLOCKDEV_DETECT_ZEROES_OPTIONS_UNMAP = 2

# qapi BlockdevOnError
BLOCKDEV_ON_ERROR_REPORT = 0
BLOCKDEV_ON_ERROR_IGNORE = 1
BLOCKDEV_ON_ERROR_ENOSPC = 2
BLOCKDEV_ON_ERROR_STOP = 3


class BlockDriverInfo:
    """Filled in by bdrv_get_info(bs, bdi)."""
    __slots__ = ("cluster_size", "vm_state_offset", "is_dirty",
                 "unallocated_blocks_are_zero", "can_write_zeroes_with_unmap",
                 "needs_compressed_writes")

    def __init__(self) -> None:
        self.cluster_size = 0          # bytes, 0 if irrelevant
        self.vm_state_offset = 0       # 0: no room for VM state
        self.is_dirty = False
        self.unallocated_blocks_are_zero = False
        self.can_write_zeroes_with_unmap = False
        self.needs_compressed_writes = False


class BlockFragInfo:
    __slots__ = ("allocated_clusters", "total_clusters",
                 "fragmented_clusters", "compressed_clusters")

    def __init__(self) -> None:
        self.allocated_clusters = 0
        self.total_clusters = 0
        self.fragmented_clusters = 0
        self.compressed_clusters = 0


class BdrvCheckResult:
    """What bdrv_check found (and fixed); zeroed when made."""
    __slots__ = ("corruptions", "leaks", "check_errors", "corruptions_fixed",
                 "leaks_fixed", "image_end_offset", "bfi")

    def __init__(self) -> None:
        self.corruptions = 0
        self.leaks = 0
        self.check_errors = 0
        self.corruptions_fixed = 0
        self.leaks_fixed = 0
        self.image_end_offset = 0
        self.bfi = BlockFragInfo()


# BdrvCheckMode
BDRV_FIX_LEAKS = 1
BDRV_FIX_ERRORS = 2


class BlockRequest:
    """One request of bdrv_aio_multiwrite(), also the request embedded in a
    BlockAIOCBCoroutine.  The C union of {sector, nb_sectors, flags, qiov}
    and {req, buf} is flattened."""
    __slots__ = ("sector", "nb_sectors", "flags", "qiov", "req", "buf",
                 "cb", "opaque", "error")

    def __init__(self, sector: int = 0, nb_sectors: int = 0, flags: int = 0,
                 qiov: Any = None, cb: Optional[BlockCompletionFunc] = None,
                 opaque: Any = None) -> None:
        self.sector = sector
        self.nb_sectors = nb_sectors
        self.flags = flags
        self.qiov = qiov
        self.req = 0
        self.buf = None
        self.cb = cb
        self.opaque = opaque
        self.error = 0                 # filled in by the multiwrite code


# --- block_int.h ------------------------------------------------------------

BLOCK_FLAG_ENCRYPT = 1
BLOCK_FLAG_COMPAT6 = 4
BLOCK_FLAG_LAZY_REFCOUNTS = 8

BLOCK_OPT_SIZE = "size"
BLOCK_OPT_ENCRYPT = "encryption"
BLOCK_OPT_COMPAT6 = "compat6"
BLOCK_OPT_BACKING_FILE = "backing_file"
BLOCK_OPT_BACKING_FMT = "backing_fmt"
BLOCK_OPT_CLUSTER_SIZE = "cluster_size"
BLOCK_OPT_TABLE_SIZE = "table_size"
BLOCK_OPT_PREALLOC = "preallocation"
BLOCK_OPT_SUBFMT = "subformat"
BLOCK_OPT_COMPAT_LEVEL = "compat"
BLOCK_OPT_LAZY_REFCOUNTS = "lazy_refcounts"
BLOCK_OPT_ADAPTER_TYPE = "adapter_type"
BLOCK_OPT_REDUNDANCY = "redundancy"
BLOCK_OPT_NOCOW = "nocow"
BLOCK_OPT_OBJECT_SIZE = "object_size"
BLOCK_OPT_REFCOUNT_BITS = "refcount_bits"
# newer than 2.5: the names of 7.2's qcow2 creation options
BLOCK_OPT_DATA_FILE = "data_file"
BLOCK_OPT_DATA_FILE_RAW = "data_file_raw"
BLOCK_OPT_ENCRYPT_FORMAT = "encrypt.format"
BLOCK_OPT_EXTL2 = "extended_l2"
BLOCK_OPT_COMPRESSION_TYPE = "compression_type"

BLOCK_PROBE_BUF_SIZE = 512

# enum BdrvTrackedRequestType
BDRV_TRACKED_READ = 0
BDRV_TRACKED_WRITE = 1
BDRV_TRACKED_FLUSH = 2
BDRV_TRACKED_IOCTL = 3
BDRV_TRACKED_DISCARD = 4


class BdrvTrackedRequest:
    """An in-flight request, listed in bs.tracked_requests.

    Like the C struct on the caller's stack it starts uninitialised:
    tracked_request_begin() sets every field, wait_queue (the coroutines
    blocked on this request) included.
    """
    __slots__ = ("bs", "offset", "bytes", "type", "serialising",
                 "overlap_offset", "overlap_bytes", "co", "wait_queue",
                 "waiting_for")


class BlockDriver:
    """struct BlockDriver.

    A driver is a subclass; one instance of it is registered and shared by
    every BlockDriverState it opens (bs.drv), as the C struct is.  Callbacks
    are methods with the C signature after self:

        class BdrvNull(BlockDriver):
            format_name = "null-co"
            def bdrv_co_readv(self, bs, sector_num, nb_sectors, qiov): ...

    so ``drv.bdrv_co_readv(bs, ...)`` reads as in C, and a callback the driver
    lacks is None here, so ``if drv.bdrv_co_readv:`` also reads as in C.
    bdrv_setup_io_funcs() stores its emulation functions (plain functions
    taking bs first) on the instance, which calls them the same way.
    Per-image state lives in bs.opaque, an instance of instance_type (which
    replaces C's instance_size).
    """

    format_name: Optional[str] = None
    instance_type: Optional[type] = None

    is_filter = False
    bdrv_recurse_is_first_non_filter = None

    bdrv_probe = None
    bdrv_probe_device = None
    bdrv_parse_filename = None
    bdrv_needs_filename = False
    supports_backing = False

    bdrv_reopen_prepare = None
    bdrv_reopen_commit = None
    bdrv_reopen_abort = None

    bdrv_open = None
    bdrv_file_open = None
    bdrv_read = None
    bdrv_write = None
    bdrv_close = None
    bdrv_create = None
    bdrv_set_key = None
    bdrv_make_empty = None
    bdrv_refresh_filename = None

    bdrv_aio_readv = None
    bdrv_aio_writev = None
    bdrv_aio_flush = None
    bdrv_aio_discard = None

    bdrv_co_readv = None
    bdrv_co_writev = None
    bdrv_co_writev_flags = None
    bdrv_co_write_zeroes = None
    bdrv_co_discard = None
    bdrv_co_get_block_status = None

    bdrv_invalidate_cache = None
    bdrv_inactivate = None

    # Write back every layer at once; when set, bdrv_co_flush() calls only it.
    bdrv_co_flush = None
    # Flush data already written to the OS down to the disk (fsync).
    bdrv_co_flush_to_disk = None
    # Flush the driver's own caches to the OS.
    bdrv_co_flush_to_os = None

    protocol_name: Optional[str] = None
    # bdrv_truncate(bs, offset, prealloc, flags, errp): prealloc is QEMU
    # 7.2's PreallocMode ('off', 'metadata', 'falloc', 'full'), for qemu-io's
    # "truncate -m"; a driver that cannot do one sets errp and fails.  flags
    # holds only BDRV_REQ_ZERO_WRITE (the added area must read as zeroes),
    # and only if the node's supported_truncate_flags has it.
    bdrv_truncate = None
    bdrv_getlength = None
    has_variable_length = False
    bdrv_get_allocated_file_size = None

    bdrv_write_compressed = None

    bdrv_snapshot_create = None
    bdrv_snapshot_goto = None
    bdrv_snapshot_delete = None
    bdrv_snapshot_list = None
    bdrv_snapshot_load_tmp = None
    bdrv_get_info = None
    bdrv_get_specific_info = None

    bdrv_save_vmstate = None
    bdrv_load_vmstate = None

    bdrv_change_backing_file = None

    bdrv_is_inserted = None
    bdrv_media_changed = None
    bdrv_eject = None
    bdrv_lock_medium = None

    bdrv_aio_ioctl = None

    create_opts = None
    # bdrv_measure(opts, in_bs, errp): 7.2's BlockMeasureInfo as a QAPI dict
    # ('required', 'fully-allocated', 'bitmaps' when known), or None
    bdrv_measure = None
    bdrv_supports_persistent_dirty_bitmap = None

    bdrv_check = None
    bdrv_amend_options = None

    bdrv_debug_event = None
    bdrv_debug_breakpoint = None
    bdrv_debug_remove_breakpoint = None
    bdrv_debug_resume = None
    bdrv_debug_is_suspended = None

    bdrv_refresh_limits = None
    bdrv_has_zero_init = None

    bdrv_detach_aio_context = None
    bdrv_attach_aio_context = None

    bdrv_io_plug = None
    bdrv_io_unplug = None

    bdrv_probe_blocksizes = None
    bdrv_probe_geometry = None

    # Stop the driver's own sources of requests until the next request.
    bdrv_drain = None

    # BDRV_REQ_* flags bdrv_co_writev_flags handles itself
    supported_write_flags = 0


class BlockLimits:
    """Limits of a node, set by bdrv_refresh_limits().  Lengths and
    alignments in sectors unless the name says bytes; 0 means no limit."""
    __slots__ = ("max_discard", "discard_alignment", "max_write_zeroes",
                 "write_zeroes_alignment", "opt_transfer_length",
                 "max_transfer_length", "min_mem_alignment",
                 "opt_mem_alignment", "max_iov")

    def __init__(self) -> None:
        self.max_discard = 0
        self.discard_alignment = 0
        self.max_write_zeroes = 0
        self.write_zeroes_alignment = 0
        self.opt_transfer_length = 0
        self.max_transfer_length = 0
        self.min_mem_alignment = 0     # bytes: no bounce buffer needed
        self.opt_mem_alignment = 0     # bytes: for bounce buffers
        self.max_iov = 0               # iovec elements in one request


class BdrvChildRole:
    """How a child inherits options and flags from its parent
    (child_file, child_format, child_backing live in block/core.py)."""
    inherit_options: Optional[Callable] = None
    inherit_flags: Optional[Callable] = None


class BdrvChild:
    """An edge of the graph: listed in parent.children and bs.parents."""
    __slots__ = ("bs", "name", "role")

    def __init__(self, bs: "BlockDriverState", name: str,
                 role: BdrvChildRole) -> None:
        self.bs = bs
        self.name = name
        self.role = role


class BlockDriverState:
    """struct BlockDriverState, zero-initialised as g_new0 leaves it plus
    the list and queue heads bdrv_new() initialises; bdrv_new() (block/core.py)
    sets refcnt and aio_context.  __slots__ catch misspelt fields: add new
    fields both here and in __init__.
    """
    __slots__ = (
        "total_sectors", "read_only", "open_flags", "encrypted", "valid_key",
        "sg", "copy_on_read", "probed",
        "drv", "opaque", "blk",
        "aio_context", "aio_notifiers",
        "filename", "backing_file", "backing_format",
        "full_open_options", "exact_filename",
        "backing", "file",
        "close_notifiers", "before_write_notifiers",
        "serialising_in_flight",
        "throttled_reqs", "io_limits_disabled", "throttle_state",
        "throttle_timers", "pending_reqs",
        "wr_highest_offset", "supported_truncate_flags",
        "bl", "zero_beyond_eof", "request_alignment",
        "node_name", "dirty_bitmaps", "refcnt", "tracked_requests",
        "op_blockers", "job", "inherits_from", "children", "parents",
        "options", "explicit_options", "detect_zeroes", "backing_blocker",
        "write_threshold_offset", "write_threshold_notifier",
        "io_plugged", "io_plug_disabled", "quiesce_counter",
        "write_gen", "flush_started_gen", "flushed_gen", "flush_queue",
    )

    def __init__(self) -> None:
        self.total_sectors = 0         # image size in sectors
        self.read_only = False
        self.open_flags = 0            # BDRV_O_*, kept for reopen
        self.encrypted = False
        self.valid_key = False
        self.sg = False                # a /dev/sg* device
        self.copy_on_read = 0          # a reference count, see bdrv_enable_copy_on_read
        self.probed = False

        self.drv: Optional[BlockDriver] = None   # None: no medium
        self.opaque: Any = None
        self.blk = None                # the owning BlockBackend, if any

        self.aio_context = None
        self.aio_notifiers: list = []

        self.filename = ""
        self.backing_file = ""         # the image is a diff of this file
        self.backing_format = ""
        self.full_open_options = None
        self.exact_filename = ""

        self.backing: Optional[BdrvChild] = None
        self.file: Optional[BdrvChild] = None

        self.close_notifiers = NotifierList()
        # run before a write is processed (after throttling and serialisation)
        self.before_write_notifiers = NotifierWithReturnList()

        self.serialising_in_flight = 0

        # I/O throttling: throttle_state is set when limits are configured;
        # io_limits_disabled counts bdrv_no_throttling_begin() sections.
        self.throttled_reqs = [CoQueue(), CoQueue()]   # [reads, writes]
        self.io_limits_disabled = 0
        self.throttle_state = None
        self.throttle_timers = None
        self.pending_reqs = [0, 0]

        self.wr_highest_offset = 0     # end of the highest byte written
        # BDRV_REQ_* flags the driver's bdrv_truncate handles (set at open)
        self.supported_truncate_flags = 0

        self.bl = BlockLimits()
        self.zero_beyond_eof = False   # reads past the end return zeroes
        self.request_alignment = 0     # bytes; bdrv_open_common sets 512
        # (the cache mode is the BlockBackend's enable_write_cache: it turns
        # writethrough into BDRV_REQ_FUA)

        self.node_name = ""
        self.dirty_bitmaps: list = []
        self.refcnt = 0
        # QLIST: the head (newest request) is the *last* element
        self.tracked_requests: list = []
        self.op_blockers = [[] for _ in range(BLOCK_OP_TYPE_MAX)]
        self.job = None                # no BlockJob in this port yet
        self.inherits_from: Optional[BlockDriverState] = None
        # QLISTs of BdrvChild, head first (bdrv_attach_child inserts at 0)
        self.children: list = []
        self.parents: list = []

        self.options = None
        self.explicit_options = None
        self.detect_zeroes = BLOCKDEV_DETECT_ZEROES_OPTIONS_OFF
        self.backing_blocker = None

        self.write_threshold_offset = 0
        self.write_threshold_notifier = None

        self.io_plugged = 0            # bdrv_io_plug() nesting
        self.io_plug_disabled = 0      # bdrv_io_unplugged_begin() nesting
        self.quiesce_counter = 0       # bdrv_drained_begin() nesting

        # QEMU 2.7's flush bookkeeping (see bdrv_co_flush in block/io.py):
        # completed writes, the generation the running flush started at,
        # and the one the last finished flush covered.
        self.write_gen = 0
        self.flush_started_gen = 0
        self.flushed_gen = 0
        self.flush_queue = CoQueue()   # flushes waiting for the running one


def backing_bs(bs: BlockDriverState) -> Optional[BlockDriverState]:
    return bs.backing.bs if bs.backing else None


# block.c (block/core.py) is built on this header, as block.c includes
# block_int.h; BLKDBG_EVENT needs it at call time only, so bind it last.
from block import core  # noqa: E402
