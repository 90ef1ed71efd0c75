"""Opening, closing and the node graph: the Python twin of QEMU's block.c.

Functions keep the names and the order of block.c.  Conventions (see
block/block_int.py and util/error.py): negative errno returns, ``errp`` and
other out parameters as one-element lists, options as a flat dict with
dotted keys (QEMU's flattened QDict) whose values are str, int, float or
bool.  An options dict handed to bdrv_open() belongs to the block layer
afterwards, as the QDict reference does in C.

The structure is the one of the seed's era (between QEMU 2.5 and 2.7): the
cache mode lives in the options "cache.direct" and "cache.no-flush", children
inherit it through BdrvChildRole.inherit_options, and the write cache is a
property of the BlockBackend.  The node-level options "read-only", "discard"
and "detect-zeroes" are taken here, as the installed QEMU (7.2) does, and
user-visible messages follow 7.2.

Left out, because nothing in this port uses them yet: temporary snapshots
(BDRV_O_SNAPSHOT needs qcow2), encryption keys, bdrv_commit, bdrv_append and
the other graph surgery of block jobs, QMP queries, driver whitelists.
"""

from __future__ import annotations

import errno
import json
import mmap
import os
import random
import sys
import tempfile
from typing import Any, Optional

import drivers
from block import block_backend, io, throttle_groups
from block.block_int import (
    BDRV_O_ALLOW_RDWR, BDRV_O_CACHE_MASK, BDRV_O_COPY_ON_READ, BDRV_O_NOCACHE,
    BDRV_O_NO_BACKING, BDRV_O_NO_FLUSH, BDRV_O_NO_IO, BDRV_O_PROTOCOL,
    BDRV_O_RDWR, BDRV_O_SNAPSHOT, BDRV_O_TEMPORARY, BDRV_O_UNMAP,
    BDRV_OPT_CACHE_DIRECT, BDRV_OPT_CACHE_NO_FLUSH, BDRV_REQ_ZERO_WRITE,
    BDRV_SECTOR_BITS, BDRV_SECTOR_SIZE, BLOCK_OP_TYPE_COMMIT_TARGET,
    BLOCK_OP_TYPE_MAX, BLOCK_OPT_BACKING_FILE, BLOCK_OPT_BACKING_FMT,
    BLOCK_OPT_CLUSTER_SIZE, BLOCK_OPT_SIZE, BLOCK_PROBE_BUF_SIZE,
    BLOCKDEV_DETECT_ZEROES_OPTIONS_OFF, BLOCKDEV_DETECT_ZEROES_OPTIONS_ON,
    BLOCKDEV_DETECT_ZEROES_OPTIONS_UNMAP, BdrvChild, BdrvChildRole,
    BlockDriver, BlockDriverInfo, BlockDriverState, backing_bs)
from drivers import bdrv_find_format, bdrv_find_protocol, bdrv_probe_all
from util.aio import (aio_context_acquire, aio_context_release, aio_poll,
                      qemu_get_aio_context)
from util.coroutine import (coroutine_fn, qemu_coroutine_create,
                            qemu_coroutine_enter, qemu_in_coroutine)
from util.error import (Errp, Error, error_abort, error_get_pretty,
                        error_append_hint, error_propagate, error_setg,
                        error_setg_errno)
from util.hbitmap import (HBitmap, HBitmapIter, hbitmap_alloc, hbitmap_count,
                          hbitmap_get, hbitmap_granularity, hbitmap_iter_init,
                          hbitmap_reset, hbitmap_reset_all, hbitmap_set,
                          hbitmap_truncate)
from util import throttle
from util.qemu_error import warn_report
from util.notify import Notifier, notifier_list_add, notifier_list_notify
from util.qemu_option import (
    QEMU_OPT_BOOL, QEMU_OPT_STRING, QemuOptDesc, QemuOptsList,
    parse_option_bool, qemu_opt_get, qemu_opt_get_bool, qemu_opt_get_size,
    qemu_opt_set, qemu_opt_set_number, qemu_opts_absorb_qdict,
    qemu_opts_append, qemu_opts_create, qemu_opts_del, qemu_opts_do_parse,
    qemu_opts_from_qdict, qemu_opts_print, qemu_opts_to_qdict)


class BdrvDirtyBitmap:
    """A dirty bitmap of a node, in sectors.

    States: successor None and not disabled: active; disabled: read-only;
    successor set: frozen (only abdicate or reclaim allowed).
    """
    __slots__ = ('bitmap', 'successor', 'name', 'size', 'disabled')

    def __init__(self, bitmap: HBitmap, size: int, name: Optional[str]):
        self.bitmap = bitmap
        self.successor: Optional[BdrvDirtyBitmap] = None
        self.name = name
        self.size = size            # sectors
        self.disabled = False


NOT_DONE = 0x7fffffff   # while an emulated synchronous operation runs

# root nodes, those attached to a BlockBackend (QTAILQ bdrv_states)
bdrv_states: list = []
# nodes with a node name (QTAILQ graph_bdrv_states)
graph_bdrv_states: list = []

PAGE_SIZE = mmap.PAGESIZE


# util/id.c: ids the user may choose, and generated ones that the user cannot
# choose because they start with '#'.

def id_wellformed(id: str) -> bool:
    if not id or not (id[0].isascii() and id[0].isalpha()):
        return False
    return all((c.isascii() and c.isalnum()) or c in '-._' for c in id[1:])


_id_counter = [0]


def id_generate(subsystem: str) -> str:
    # the random part keeps users from relying on the numbering
    n = _id_counter[0]
    _id_counter[0] += 1
    return '#%s%d%02d' % (subsystem, n, random.randrange(100))


def qdict_get_try_str(options: dict, key: str) -> Optional[str]:
    value = options.get(key)
    return value if isinstance(value, str) else None


def qdict_join(dest: dict, src: dict, overwrite: bool) -> None:
    for key, value in src.items():
        if overwrite or key not in dest:
            dest[key] = value


def qdict_extract_subqdict(src: dict, start: str) -> dict:
    """Move the entries whose key starts with start into a new dict, without
    the prefix."""
    dst = {}
    for key in list(src):
        if key.startswith(start):
            dst[key[len(start):]] = src.pop(key)
    return dst


def qdict_flatten(obj: Any, prefix: str, target: dict) -> None:
    """{"file": {"filename": "a"}} -> {"file.filename": "a"}; list items get
    their index as key."""
    items = obj.items() if isinstance(obj, dict) else enumerate(obj)
    for key, value in items:
        full = '%s%s' % (prefix, key)
        if isinstance(value, (dict, list)):
            qdict_flatten(value, full + '.', target)
        else:
            target[full] = value


def bdrv_opt_mem_align(bs: Optional[BlockDriverState]) -> int:
    if not bs or not bs.drv:
        # page size or 4k (hdd sector size) should be on the safe side
        return max(4096, PAGE_SIZE)
    return bs.bl.opt_mem_alignment


def bdrv_min_mem_align(bs: Optional[BlockDriverState]) -> int:
    if not bs or not bs.drv:
        return max(4096, PAGE_SIZE)
    return bs.bl.min_mem_alignment


path_has_protocol = drivers.path_has_protocol


def path_is_absolute(path: str) -> bool:
    return path.startswith('/')


def path_combine(base_path: str, filename: str) -> str:
    """filename relative to the directory of base_path (which may carry a
    "protocol:" prefix); an absolute filename is returned as is."""
    if path_is_absolute(filename):
        return filename
    p = base_path.find(':') + 1
    p1 = base_path.rfind('/') + 1
    return base_path[:max(p, p1)] + filename


def bdrv_get_full_backing_filename_from_filename(backed: str, backing: str,
                                                 errp: Errp) -> str:
    if backing == '' or path_has_protocol(backing) or \
            path_is_absolute(backing):
        return backing
    if backed == '' or backed.startswith('json:'):
        error_setg(errp, "Cannot use relative backing file names for '%s'",
                   backed)
        return ''
    return path_combine(backed, backing)


def bdrv_dirname(bs: BlockDriverState, errp: Errp) -> Optional[str]:
    """The directory (with a trailing slash, or empty) that relative names
    met in bs are taken from: its primary child's, down to the node that
    has a plain filename of its own (7.2's bdrv_dirname)."""
    if not bs.drv:
        error_setg(errp, "Node '%s' is ejected", bs.node_name)
        return None
    if bs.file:
        return bdrv_dirname(bs.file.bs, errp)
    bdrv_refresh_filename(bs)
    if bs.exact_filename:
        return path_combine(bs.exact_filename, '')
    error_setg(errp, "Cannot generate a base directory for %s nodes",
               bs.drv.format_name)
    return None


def bdrv_get_full_backing_filename(bs: BlockDriverState, errp: Errp) -> str:
    """bs.backing_file made absolute against bs's directory, as 7.2's
    bdrv_make_absolute_filename; '' when there is none or on error."""
    backing = bs.backing_file
    if backing == '' or path_has_protocol(backing) or \
            path_is_absolute(backing):
        return backing
    directory = bdrv_dirname(bs, errp)
    if directory is None:
        return ''
    return directory + backing


def bdrv_new_root() -> BlockDriverState:
    bs = bdrv_new()
    bdrv_states.append(bs)
    return bs


def bdrv_new() -> BlockDriverState:
    bs = BlockDriverState()
    bs.refcnt = 1
    bs.aio_context = qemu_get_aio_context()
    return bs


def bdrv_add_close_notifier(bs: BlockDriverState, notify: Notifier) -> None:
    notifier_list_add(bs.close_notifiers, notify)


class CreateCo:
    __slots__ = ('drv', 'filename', 'opts', 'ret', 'err')

    def __init__(self, drv: BlockDriver, filename: str, opts):
        self.drv = drv
        self.filename = filename
        self.opts = opts
        self.ret = NOT_DONE
        self.err = [None]


def bdrv_create_co_entry(cco: CreateCo) -> None:
    assert cco.drv
    cco.ret = cco.drv.bdrv_create(cco.filename, cco.opts, cco.err)


def bdrv_create(drv: BlockDriver, filename: str, opts, errp: Errp) -> int:
    if not drv.bdrv_create:
        error_setg(errp, "Driver '%s' does not support image creation",
                   drv.format_name)
        return -errno.ENOTSUP

    cco = CreateCo(drv, filename, opts)
    if qemu_in_coroutine():
        bdrv_create_co_entry(cco)
    else:
        co = qemu_coroutine_create(bdrv_create_co_entry)
        qemu_coroutine_enter(co, cco)
        while cco.ret == NOT_DONE:
            aio_poll(qemu_get_aio_context(), True)

    ret = cco.ret
    if ret < 0:
        if cco.err[0]:
            error_propagate(errp, cco.err[0])
        else:
            error_setg_errno(errp, -ret, 'Could not create image')
    return ret


def bdrv_measure(drv: BlockDriver, opts, in_bs: Optional[BlockDriverState],
                 errp: Errp) -> Optional[dict]:
    """The file size an image of format drv made with opts (or converted
    from in_bs) needs: 7.2's bdrv_measure."""
    if not drv.bdrv_measure:
        error_setg(errp, "Block driver '%s' does not support size "
                   "measurement", drv.format_name)
        return None
    return drv.bdrv_measure(opts, in_bs, errp)


def bdrv_create_file(filename: str, opts, errp: Errp) -> int:
    """Create the protocol level of an image (7.2's bdrv_co_create_file).
    Only the options set in opts reach the protocol driver, parsed again
    against its own list: the format's defaults stay behind (and a size
    given with -o is parsed, and warned about, a second time, as in
    7.2)."""
    drv = bdrv_find_protocol(filename, True, errp)
    if drv is None:
        return -errno.ENOENT

    if not drv.create_opts:
        error_setg(errp, "Driver '%s' does not support image creation",
                   drv.format_name)
        return -errno.ENOTSUP

    protocol_opts = qemu_opts_from_qdict(drv.create_opts,
                                         qemu_opts_to_qdict(opts), errp)
    if protocol_opts is None:
        return -errno.EINVAL
    ret = bdrv_create(drv, filename, protocol_opts, errp)
    qemu_opts_del(protocol_opts)
    return ret


def find_image_format(bs: BlockDriverState, filename: Optional[str],
                      pdrv: list, errp: Errp) -> int:
    """Guess the format of the image in bs from its first sector."""
    # raw for scsi-generic devices and empty drives
    if bdrv_is_sg(bs) or not bdrv_is_inserted(bs) or bdrv_getlength(bs) == 0:
        pdrv[0] = bdrv_find_format('raw')
        return 0

    buf = bytearray(BLOCK_PROBE_BUF_SIZE)
    ret = io.bdrv_pread(bs, 0, buf, len(buf))
    if ret < 0:
        error_setg_errno(errp, -ret, 'Could not read image for determining '
                         'its format')
        pdrv[0] = None
        return ret

    drv = bdrv_probe_all(bytes(buf[:ret]), ret, filename)
    if not drv:
        error_setg(errp, 'Could not determine image format: No compatible '
                   'driver found')
        ret = -errno.ENOENT
    pdrv[0] = drv
    return ret


def refresh_total_sectors(bs: BlockDriverState, hint: int) -> int:
    """Set bs.total_sectors from the driver's length (or the hint)."""
    drv = bs.drv

    # no bdrv_getlength() on scsi-generic devices
    if bdrv_is_sg(bs):
        return 0

    if drv.bdrv_getlength:
        length = drv.bdrv_getlength(bs)
        if length < 0:
            return length
        hint = (length + BDRV_SECTOR_SIZE - 1) // BDRV_SECTOR_SIZE

    bs.total_sectors = hint
    return 0


def bdrv_parse_discard_flags(mode: str, pflags: list) -> int:
    """Apply a discard mode to pflags[0]; -1 if the mode is invalid."""
    pflags[0] &= ~BDRV_O_UNMAP
    if mode in ('off', 'ignore'):
        pass
    elif mode in ('on', 'unmap'):
        pflags[0] |= BDRV_O_UNMAP
    else:
        return -1
    return 0


def bdrv_parse_cache_mode(mode: str, pflags: list, pwritethrough: list) -> int:
    """Apply a cache mode: pflags[0] gets BDRV_O_NOCACHE / BDRV_O_NO_FLUSH,
    pwritethrough[0] whether the BlockBackend's write cache is off.

        mode          O_DIRECT  flush ignored  writethrough
        none, off        x                          -
        directsync       x                          x
        writeback        -            -             -
        unsafe           -            x             -
        writethrough     -            -             x

    Returns -1 if the mode is invalid.
    """
    pflags[0] &= ~BDRV_O_CACHE_MASK
    if mode in ('off', 'none'):
        pwritethrough[0] = False
        pflags[0] |= BDRV_O_NOCACHE
    elif mode == 'directsync':
        pwritethrough[0] = True
        pflags[0] |= BDRV_O_NOCACHE
    elif mode == 'writeback':
        pwritethrough[0] = False
    elif mode == 'unsafe':
        pwritethrough[0] = False
        pflags[0] |= BDRV_O_NO_FLUSH
    elif mode == 'writethrough':
        pwritethrough[0] = True
    else:
        return -1
    return 0


def qdict_copy_default(dst: dict, src: dict, key: str) -> None:
    if key not in dst and key in src:
        dst[key] = src[key]


def bdrv_inherited_options(child_options: dict, parent_options: dict) -> None:
    """bs->file inherits the cache mode unless it sets one itself."""
    qdict_copy_default(child_options, parent_options, BDRV_OPT_CACHE_DIRECT)
    qdict_copy_default(child_options, parent_options, BDRV_OPT_CACHE_NO_FLUSH)


def bdrv_inherited_flags(flags: int) -> int:
    """Flags of bs->file when a protocol driver is expected."""
    # open the protocol layer, no format probing
    flags |= BDRV_O_PROTOCOL
    # our drivers send flushes and respect the unmap policy themselves, so
    # the lower layers can always unmap
    flags |= BDRV_O_UNMAP
    # flags of the top layer only
    flags &= ~(BDRV_O_SNAPSHOT | BDRV_O_NO_BACKING | BDRV_O_COPY_ON_READ |
               BDRV_O_NO_IO)
    return flags


child_file = BdrvChildRole()
child_file.inherit_options = bdrv_inherited_options
child_file.inherit_flags = bdrv_inherited_flags


def bdrv_inherited_fmt_flags(parent_flags: int) -> int:
    """Flags of bs->file when formats (not only protocols) are allowed."""
    return child_file.inherit_flags(parent_flags) & ~BDRV_O_PROTOCOL


child_format = BdrvChildRole()
child_format.inherit_options = bdrv_inherited_options
child_format.inherit_flags = bdrv_inherited_fmt_flags


def bdrv_backing_options(child_options: dict, parent_options: dict) -> None:
    bdrv_inherited_options(child_options, parent_options)


def bdrv_backing_flags(flags: int) -> int:
    # backing files are always opened read-only
    flags &= ~(BDRV_O_RDWR | BDRV_O_COPY_ON_READ)
    # snapshot=on is handled on the top layer
    flags &= ~(BDRV_O_SNAPSHOT | BDRV_O_TEMPORARY)
    return flags


child_backing = BdrvChildRole()
child_backing.inherit_options = bdrv_backing_options
child_backing.inherit_flags = bdrv_backing_flags


def bdrv_open_flags(bs: BlockDriverState, flags: int) -> int:
    """The flags a driver's open function sees."""
    # flags internal to the block layer
    open_flags = flags & ~(BDRV_O_SNAPSHOT | BDRV_O_NO_BACKING |
                           BDRV_O_PROTOCOL)
    # temporary snapshots must be writable
    if flags & BDRV_O_TEMPORARY:
        open_flags |= BDRV_O_RDWR
    return open_flags


def update_flags_from_options(flags: int, opts) -> int:
    flags &= ~BDRV_O_CACHE_MASK
    if qemu_opt_get_bool(opts, BDRV_OPT_CACHE_NO_FLUSH, False):
        flags |= BDRV_O_NO_FLUSH
    if qemu_opt_get_bool(opts, BDRV_OPT_CACHE_DIRECT, False):
        flags |= BDRV_O_NOCACHE
    return flags


def update_options_from_flags(options: dict, flags: int) -> None:
    """Write the cache mode and read-only of flags into options as
    defaults, so that the options alone describe the node."""
    options.setdefault(BDRV_OPT_CACHE_DIRECT, bool(flags & BDRV_O_NOCACHE))
    options.setdefault(BDRV_OPT_CACHE_NO_FLUSH, bool(flags & BDRV_O_NO_FLUSH))
    options.setdefault(BDRV_OPT_READ_ONLY, not flags & BDRV_O_RDWR)


def bdrv_assign_node_name(bs: BlockDriverState, node_name: Optional[str],
                          errp: Errp) -> None:
    if not node_name:
        node_name = id_generate('block')
    elif not id_wellformed(node_name):
        # generated names may use characters a user may not
        error_setg(errp, "Invalid node-name: '%s'", node_name)
        return

    # node names and device names share one namespace
    if block_backend.blk_by_name(node_name):
        error_setg(errp, 'node-name=%s is conflicting with a device id',
                   node_name)
        return

    if bdrv_find_node(node_name):
        error_setg(errp, 'Duplicate node name')
        return

    bs.node_name = node_name
    graph_bdrv_states.append(bs)


BDRV_OPT_READ_ONLY = 'read-only'
BDRV_OPT_DISCARD = 'discard'
BDRV_OPT_DETECT_ZEROES = 'detect-zeroes'

bdrv_runtime_opts = QemuOptsList('bdrv_common', [
    QemuOptDesc('node-name', QEMU_OPT_STRING,
                'Node name of the block device node'),
    QemuOptDesc(BDRV_OPT_CACHE_DIRECT, QEMU_OPT_BOOL,
                'Bypass software writeback cache on the host'),
    QemuOptDesc(BDRV_OPT_CACHE_NO_FLUSH, QEMU_OPT_BOOL,
                'Ignore flush requests'),
    QemuOptDesc(BDRV_OPT_READ_ONLY, QEMU_OPT_BOOL,
                'Node is opened in read-only mode'),
    QemuOptDesc(BDRV_OPT_DISCARD, QEMU_OPT_STRING,
                'discard operation (ignore/off, unmap/on)'),
    QemuOptDesc(BDRV_OPT_DETECT_ZEROES, QEMU_OPT_STRING,
                'try to optimize zero writes (off, on, unmap)'),
])

_DETECT_ZEROES = {'off': BLOCKDEV_DETECT_ZEROES_OPTIONS_OFF,
                  'on': BLOCKDEV_DETECT_ZEROES_OPTIONS_ON,
                  'unmap': BLOCKDEV_DETECT_ZEROES_OPTIONS_UNMAP}


def _parse_discard_option(discard: Optional[str], flags: int,
                          errp: Errp) -> Optional[int]:
    """flags with the discard mode applied (unchanged without one); None
    for a bad mode."""
    if discard is None:
        return flags
    pflags = [flags]
    if bdrv_parse_discard_flags(discard, pflags) != 0:
        error_setg(errp, 'Invalid discard option')
        return None
    return pflags[0]


def bdrv_parse_detect_zeroes(value: Optional[str], flags: int,
                             errp: Errp) -> Optional[int]:
    """The detect-zeroes mode of an option value (off without one), None if
    the value is bad or asks for unmap where flags do not discard."""
    if value is None:
        return BLOCKDEV_DETECT_ZEROES_OPTIONS_OFF
    if value not in _DETECT_ZEROES:
        error_setg(errp, 'invalid parameter value: %s', value)
        return None
    if _DETECT_ZEROES[value] == BLOCKDEV_DETECT_ZEROES_OPTIONS_UNMAP and \
            not flags & BDRV_O_UNMAP:
        error_setg(errp, 'setting detect-zeroes to unmap is not allowed '
                   'without setting discard operation to unmap')
        return None
    return _DETECT_ZEROES[value]


def bdrv_open_common(bs: BlockDriverState, file: Optional[BdrvChild],
                     options: dict, drv: BlockDriver, errp: Errp) -> int:
    """Open bs with drv: the part shared by formats and protocols.  Takes
    the options it knows out of options."""
    local_err = [None]

    assert drv is not None
    assert bs.file is None
    assert options is not None and bs.options is not options

    if file is not None:
        filename = file.bs.filename
    else:
        filename = qdict_get_try_str(options, 'filename')

    if drv.bdrv_needs_filename and not filename:
        error_setg(errp, "The '%s' block driver requires a file name",
                   drv.format_name)
        return -errno.EINVAL

    opts = qemu_opts_create(bdrv_runtime_opts)
    qemu_opts_absorb_qdict(opts, options, local_err)
    if local_err[0]:
        error_propagate(errp, local_err[0])
        return -errno.EINVAL

    bs.open_flags = update_flags_from_options(bs.open_flags, opts)

    flags = _parse_discard_option(qemu_opt_get(opts, BDRV_OPT_DISCARD),
                                  bs.open_flags, errp)
    if flags is None:
        return -errno.EINVAL
    bs.open_flags = flags

    detect_zeroes = bdrv_parse_detect_zeroes(
        qemu_opt_get(opts, BDRV_OPT_DETECT_ZEROES), bs.open_flags, errp)
    if detect_zeroes is None:
        return -errno.EINVAL
    bs.detect_zeroes = detect_zeroes

    node_name = qemu_opt_get(opts, 'node-name')
    bdrv_assign_node_name(bs, node_name, local_err)
    if local_err[0]:
        error_propagate(errp, local_err[0])
        return -errno.EINVAL

    bs.request_alignment = 512
    bs.zero_beyond_eof = True
    open_flags = bdrv_open_flags(bs, bs.open_flags)
    bs.read_only = not open_flags & BDRV_O_RDWR

    assert bs.copy_on_read == 0     # bdrv_new() and bdrv_close() make it so
    if bs.open_flags & BDRV_O_COPY_ON_READ:
        if not bs.read_only:
            io.bdrv_enable_copy_on_read(bs)
        else:
            error_setg(errp, "Can't use copy-on-read on read-only device")
            return -errno.EINVAL

    bs.filename = filename or ''
    bs.exact_filename = bs.filename

    bs.drv = drv
    bs.opaque = drv.instance_type() if drv.instance_type else None

    # open the image, either directly or on top of a protocol
    if drv.bdrv_file_open:
        assert file is None
        assert not drv.bdrv_needs_filename or filename is not None
        ret = drv.bdrv_file_open(bs, options, open_flags, local_err)
    else:
        if file is None:
            # QEMU 2.5 says "Can't use '<format>' as a block driver for the
            # protocol level"; 7.2, whose format drivers open their file
            # child themselves, says this
            error_setg(errp, 'A block device must be specified for "file"')
            ret = -errno.EINVAL
            return _open_common_fail(bs, ret)
        bs.file = file
        ret = drv.bdrv_open(bs, options, open_flags, local_err)

    if ret < 0:
        if local_err[0]:
            error_propagate(errp, local_err[0])
        elif bs.filename:
            error_setg_errno(errp, -ret, "Could not open '%s'", bs.filename)
        else:
            error_setg_errno(errp, -ret, 'Could not open image')
        return _open_common_fail(bs, ret)

    ret = refresh_total_sectors(bs, bs.total_sectors)
    if ret < 0:
        error_setg_errno(errp, -ret, 'Could not refresh total sector count')
        return _open_common_fail(bs, ret, opened=True)

    io.bdrv_refresh_limits(bs, local_err)
    if local_err[0]:
        error_propagate(errp, local_err[0])
        return _open_common_fail(bs, -errno.EINVAL, opened=True)

    assert bdrv_opt_mem_align(bs) != 0
    assert bdrv_min_mem_align(bs) != 0
    assert bs.request_alignment != 0 or bdrv_is_sg(bs)

    # A write padded to the alignment at the end of such an image would
    # grow it; QEMU 7.2 refuses the write permission (bdrv_node_refresh_perm)
    if (bs.open_flags & BDRV_O_RDWR and bs.request_alignment and
            (bs.total_sectors * BDRV_SECTOR_SIZE) % bs.request_alignment):
        error_setg(errp, "Cannot get 'write' permission without 'resize': "
                   "Image size is not a multiple of request alignment")
        return _open_common_fail(bs, -errno.EPERM, opened=True)
    return 0


def _open_common_fail(bs: BlockDriverState, ret: int,
                      opened: bool = False) -> int:
    """The free_and_fail path of bdrv_open_common.  Unlike QEMU 2.5 it also
    closes a driver that did open, so that no file descriptor leaks."""
    if opened:
        bs.drv.bdrv_close(bs)
    bs.file = None
    bs.opaque = None
    bs.drv = None
    return ret


def parse_json_filename(filename: str, errp: Errp) -> Optional[dict]:
    assert filename.startswith('json:')
    try:
        options_obj = json.loads(filename[len('json:'):])
    except ValueError:
        error_setg(errp, 'Could not parse the JSON options')
        return None

    if not isinstance(options_obj, dict):
        error_setg(errp, 'Invalid JSON object given')
        return None

    options: dict = {}
    qdict_flatten(options_obj, '', options)
    return options


def bdrv_fill_options(options: dict, pfilename: list, pflags: list,
                      errp: Errp) -> int:
    """Turn the legacy filename/flags pair into options: parse json:,
    find the protocol driver of a filename, set or clear BDRV_O_PROTOCOL in
    pflags[0] by whether a protocol driver was named."""
    filename = pfilename[0]
    protocol = bool(pflags[0] & BDRV_O_PROTOCOL)
    parse_filename = False
    drv = None
    local_err = [None]

    if filename and filename.startswith('json:'):
        json_options = parse_json_filename(filename, local_err)
        if local_err[0]:
            error_propagate(errp, local_err[0])
            return -errno.EINVAL
        # options given directly win over the ones in the filename
        qdict_join(options, json_options, False)
        pfilename[0] = filename = None

    drvname = qdict_get_try_str(options, 'driver')
    if drvname:
        drv = bdrv_find_format(drvname)
        if not drv:
            error_setg(errp, "Unknown driver '%s'", drvname)
            return -errno.ENOENT
        # an explicit driver decides whether this is the protocol layer
        protocol = drv.bdrv_file_open is not None

    if protocol:
        pflags[0] |= BDRV_O_PROTOCOL
    else:
        pflags[0] &= ~BDRV_O_PROTOCOL

    # the filename goes into the options of the protocol layer (as in C, an
    # empty filename is still a filename)
    if protocol and filename is not None:
        if 'filename' not in options:
            options['filename'] = filename
            parse_filename = True
        else:
            error_setg(errp, "Can't specify 'file' and 'filename' options at "
                       "the same time")
            return -errno.EINVAL

    filename = qdict_get_try_str(options, 'filename')

    if not drvname and protocol:
        if filename is not None:
            drv = bdrv_find_protocol(filename, parse_filename, errp)
            if not drv:
                return -errno.EINVAL
            drvname = drv.format_name
            options['driver'] = drvname
        else:
            error_setg(errp, 'Must specify either driver or file')
            return -errno.EINVAL

    assert drv or not protocol

    if drv and drv.bdrv_parse_filename and parse_filename:
        drv.bdrv_parse_filename(filename, options, local_err)
        if local_err[0]:
            error_propagate(errp, local_err[0])
            return -errno.EINVAL
        if not drv.bdrv_needs_filename:
            del options['filename']

    update_options_from_flags(options, pflags[0])
    return 0


def bdrv_attach_child(parent_bs: BlockDriverState,
                      child_bs: BlockDriverState, child_name: str,
                      child_role: BdrvChildRole) -> BdrvChild:
    child = BdrvChild(child_bs, child_name, child_role)
    parent_bs.children.insert(0, child)
    child_bs.parents.insert(0, child)
    return child


def bdrv_detach_child(parent: BlockDriverState, child: BdrvChild) -> None:
    """QLIST_REMOVE finds the parent's list through the list node; BdrvChild
    has no pointer to its parent, so the caller (which knows it) passes it."""
    parent.children.remove(child)
    child.bs.parents.remove(child)


def bdrv_unref_child(parent: BlockDriverState,
                     child: Optional[BdrvChild]) -> None:
    if child is None:
        return
    if child.bs.inherits_from is parent:
        child.bs.inherits_from = None
    child_bs = child.bs
    bdrv_detach_child(parent, child)
    bdrv_unref(child_bs)


def bdrv_set_backing_hd(bs: BlockDriverState,
                        backing_hd: Optional[BlockDriverState]) -> None:
    """Make backing_hd the backing file of bs (a new reference is taken)."""
    if backing_hd:
        bdrv_ref(backing_hd)

    if bs.backing:
        assert bs.backing_blocker
        bdrv_op_unblock_all(bs.backing.bs, bs.backing_blocker)
        bdrv_unref_child(bs, bs.backing)
    elif backing_hd:
        bs.backing_blocker = Error("node is used as backing hd of '%s'" %
                                   bdrv_get_device_or_node_name(bs))

    if not backing_hd:
        bs.backing_blocker = None
        bs.backing = None
    else:
        bs.backing = bdrv_attach_child(bs, backing_hd, 'backing',
                                       child_backing)
        bs.open_flags &= ~BDRV_O_NO_BACKING
        bs.backing_file = backing_hd.filename
        bs.backing_format = backing_hd.drv.format_name if backing_hd.drv \
            else ''
        bdrv_op_block_all(backing_hd, bs.backing_blocker)
        # bdrv_commit() checks this one
        bdrv_op_unblock(backing_hd, BLOCK_OP_TYPE_COMMIT_TARGET,
                        bs.backing_blocker)
    io.bdrv_refresh_limits(bs, None)


def get_tmp_filename() -> tuple[int, str]:
    """(0, name) of a new empty file in $TMPDIR or /var/tmp, or (-errno, '')."""
    tmpdir = os.environ.get('TMPDIR') or '/var/tmp'
    try:
        fd, filename = tempfile.mkstemp(prefix='vl.', dir=tmpdir)
    except OSError as e:
        return -e.errno, ''
    os.close(fd)
    return 0, filename


def bdrv_temp_snapshot_flags(flags: int) -> int:
    return (flags & ~BDRV_O_SNAPSHOT) | BDRV_O_TEMPORARY


def bdrv_append_temp_snapshot(bs: BlockDriverState, flags: int,
                              errp: Errp) -> int:
    """Open a temporary qcow2 image backed by bs and put it in bs's place
    (snapshot=on: writes go to the overlay, which is deleted on close)."""
    total_size = bdrv_getlength(bs)
    if total_size < 0:
        error_setg_errno(errp, -total_size, "Could not get image size")
        return total_size

    ret, tmp_filename = get_tmp_filename()
    if ret < 0:
        error_setg_errno(errp, -ret, "Could not get temporary filename")
        return ret

    qcow2 = bdrv_find_format('qcow2')
    opts = qemu_opts_create(qcow2.create_opts)
    qemu_opt_set_number(opts, BLOCK_OPT_SIZE, total_size, error_abort)
    local_err = [None]
    ret = bdrv_create(qcow2, tmp_filename, opts, local_err)
    qemu_opts_del(opts)
    if ret < 0:
        error_setg_errno(errp, -ret, "Could not create temporary overlay "
                         "'%s': %s", tmp_filename,
                         error_get_pretty(local_err[0]))
        return ret

    snapshot_options = {'file.driver': 'file',
                        'file.filename': tmp_filename,
                        'driver': 'qcow2'}
    bs_snapshot = [bdrv_new()]
    ret = bdrv_open(bs_snapshot, None, None, snapshot_options, flags,
                    local_err)
    if ret < 0:
        error_propagate(errp, local_err[0])
        return ret

    bdrv_append(bs_snapshot[0], bs)
    return 0


def bdrv_move_feature_fields(bs_dest: BlockDriverState,
                             bs_src: BlockDriverState) -> None:
    """The fields that stay with the device, on the top of a chain (the
    write cache setting is the BlockBackend's in this port)."""
    bs_dest.copy_on_read = bs_src.copy_on_read
    bs_dest.dirty_bitmaps = bs_src.dirty_bitmaps


def change_parent_backing_link(from_bs: BlockDriverState,
                               to_bs: BlockDriverState) -> None:
    """Make every parent of from_bs (nodes and the BlockBackend) use
    to_bs instead."""
    for c in list(from_bs.parents):
        assert c.role is not child_backing
        c.bs = to_bs
        from_bs.parents.remove(c)
        to_bs.parents.insert(0, c)
        bdrv_ref(to_bs)
        bdrv_unref(from_bs)
    blk = from_bs.blk
    if blk:
        # blk_set_bs(): the backend's reference moves to to_bs
        bdrv_ref(to_bs)
        blk.bs = to_bs
        to_bs.blk = blk
        from_bs.blk = None
        bdrv_unref(from_bs)
        if to_bs not in bdrv_states:
            bdrv_states.insert(bdrv_states.index(from_bs), to_bs)
        bdrv_states.remove(from_bs)


def swap_feature_fields(bs_top: BlockDriverState,
                        bs_new: BlockDriverState) -> None:
    tmp = BlockDriverState()
    bdrv_move_feature_fields(tmp, bs_top)
    bdrv_move_feature_fields(bs_top, bs_new)
    bdrv_move_feature_fields(bs_new, tmp)

    assert not bs_new.throttle_state
    if bs_top.throttle_state:
        io.bdrv_io_limits_enable(
            bs_new, throttle_groups.throttle_group_get_name(bs_top))
        io.bdrv_io_limits_disable(bs_top)


def bdrv_append(bs_new: BlockDriverState, bs_top: BlockDriverState) -> None:
    """Put bs_new above bs_top: bs_top's parents now use bs_new, whose
    backing file bs_top becomes.  Takes over the caller's reference to
    bs_new."""
    assert not io.bdrv_requests_pending(bs_top)
    assert not io.bdrv_requests_pending(bs_new)

    bdrv_ref(bs_top)
    change_parent_backing_link(bs_top, bs_new)

    # some fields always stay on top of the backing file chain
    swap_feature_fields(bs_top, bs_new)

    bdrv_set_backing_hd(bs_new, bs_top)
    bdrv_unref(bs_top)

    # bs_new's new parents hold it now
    bdrv_unref(bs_new)


def bdrv_open_backing_file(bs: BlockDriverState, options: Optional[dict],
                           errp: Errp, reference: Optional[str] = None) -> int:
    """Open the backing file of bs (bs.backing_file, the "backing.*"
    options, or the node named by the "backing" option, as QEMU 7.2 takes
    it) unless it is open already.  Format drivers that support backing
    files call this after reading their header."""
    local_err = [None]

    if bs.backing is not None:
        return 0

    if options is None:
        options = {}

    bs.open_flags &= ~BDRV_O_NO_BACKING
    if reference or 'file.filename' in options:
        backing_filename = ''
    elif bs.backing_file == '' and not options:
        return 0
    else:
        backing_filename = bdrv_get_full_backing_filename(bs, local_err)
        if local_err[0]:
            error_propagate(errp, local_err[0])
            return -errno.EINVAL

    if not bs.drv or not bs.drv.supports_backing:
        error_setg(errp, "Driver doesn't support backing files")
        return -errno.EINVAL

    if bs.backing_format and 'driver' not in options and not reference:
        options['driver'] = bs.backing_format

    assert bs.backing is None
    # QEMU 7.2 stops a backing file loop with its image locks, which this
    # port does not have: refuse an image that is its own ancestor instead.
    if backing_filename and _backing_file_loops(bs, backing_filename):
        bs.open_flags |= BDRV_O_NO_BACKING
        error_setg(errp, "Backing file '%s' creates an infinite loop",
                   backing_filename)
        return -errno.EINVAL

    pbs = [None]
    ret = bdrv_open_inherit(pbs, backing_filename or None, reference, options,
                            0, bs, child_backing, local_err)
    if ret < 0:
        bs.open_flags |= BDRV_O_NO_BACKING
        error_setg(errp, 'Could not open backing file: %s',
                   error_get_pretty(local_err[0]))
        return ret

    # bs takes over our reference through the backing link
    bdrv_set_backing_hd(bs, pbs[0])
    bdrv_unref(pbs[0])
    return 0


def _backing_file_loops(bs: BlockDriverState, filename: str) -> bool:
    """Whether filename is the file of bs or of a node bs is opened for."""
    try:
        target = os.stat(filename)
    except OSError:
        return False        # the open will report it
    node = bs
    while node is not None:
        for name in (node.filename, node.file and node.file.bs.filename):
            try:
                st = os.stat(name) if name else None
            except OSError:
                st = None
            if st and (st.st_dev, st.st_ino) == (target.st_dev,
                                                   target.st_ino):
                return True
        node = node.inherits_from
    return False


def bdrv_open_child(filename: Optional[str], options: dict, bdref_key: str,
                    parent: BlockDriverState, child_role: BdrvChildRole,
                    allow_none: bool, errp: Errp) -> Optional[BdrvChild]:
    """Open the child bdref_key of parent: options[bdref_key] names an
    existing node, "bdref_key.*" options describe a new one.  Those options
    are taken out of options.  With allow_none, no child and no error when
    nothing is given."""
    assert child_role is not None
    c = None

    image_options = qdict_extract_subqdict(options, bdref_key + '.')
    reference = qdict_get_try_str(options, bdref_key)
    # An empty filename is a filename (the protocol layer refuses it).
    if filename is None and not reference and not image_options:
        if not allow_none:
            error_setg(errp, 'A block device must be specified for "%s"',
                       bdref_key)
    else:
        pbs = [None]
        ret = bdrv_open_inherit(pbs, filename, reference, image_options, 0,
                                parent, child_role, errp)
        if ret >= 0:
            c = bdrv_attach_child(parent, pbs[0], bdref_key, child_role)

    options.pop(bdref_key, None)
    return c


def _update_rdwr_from_options(options: dict, flags: int,
                              errp: Errp) -> Optional[int]:
    """Apply the "read-only" option to flags before the children are opened
    (as QEMU 7.2's bdrv_open_inherit does); None on a bad value."""
    value = options.get(BDRV_OPT_READ_ONLY)
    if isinstance(value, str):
        value = parse_option_bool(BDRV_OPT_READ_ONLY, value, errp)
        if value is None:
            return None
    if value:
        return flags & ~BDRV_O_RDWR
    return flags | BDRV_O_RDWR


def bdrv_open_inherit(pbs: list, filename: Optional[str],
                      reference: Optional[str], options: Optional[dict],
                      flags: int, parent: Optional[BlockDriverState],
                      child_role: Optional[BdrvChildRole],
                      errp: Errp) -> int:
    """Open an image (format and protocol layers) or reference a node.

    pbs[0] None: a new node is created and stored there; otherwise that
    node is opened.  A reference names an existing node; no options or
    filename may come with it.
    """
    file = None
    drv = None
    local_err = [None]

    assert pbs is not None
    assert not child_role or not flags
    assert (child_role is None) == (parent is None)

    if reference:
        options_non_empty = bool(options)
        if pbs[0]:
            error_setg(errp, 'Cannot reuse an existing BDS when referencing '
                       'another block device')
            return -errno.EINVAL
        if filename or options_non_empty:
            error_setg(errp, 'Cannot reference an existing block device with '
                       'additional options or a new filename')
            return -errno.EINVAL
        bs = bdrv_lookup_bs(reference, reference, errp)
        if not bs:
            return -errno.ENODEV
        bdrv_ref(bs)
        pbs[0] = bs
        return 0

    bs = pbs[0] if pbs[0] else bdrv_new()

    if options is None:
        options = {}

    if child_role:
        bs.inherits_from = parent
        child_role.inherit_options(options, parent.options)
        flags = child_role.inherit_flags(parent.open_flags)

    pfilename, pflags = [filename], [flags]
    ret = bdrv_fill_options(options, pfilename, pflags, local_err)
    filename, flags = pfilename[0], pflags[0]
    if local_err[0]:
        return _open_inherit_fail(pbs, bs, file, ret, local_err, errp)

    new_flags = _update_rdwr_from_options(options, flags, local_err)
    if new_flags is None:
        return _open_inherit_fail(pbs, bs, file, -errno.EINVAL, local_err,
                                  errp)
    flags = new_flags

    # find the format driver
    drvname = qdict_get_try_str(options, 'driver')
    if drvname:
        drv = bdrv_find_format(drvname)
        del options['driver']
        assert drv, 'bdrv_fill_options() checked the driver name'

    assert drvname or not flags & BDRV_O_PROTOCOL

    backing = qdict_get_try_str(options, 'backing')
    if backing == '':
        warn_report('Use of "backing": "" is deprecated; use "backing": '
                    'null instead')
        flags |= BDRV_O_NO_BACKING
        del options['backing']

    bs.open_flags = flags
    bs.options = options
    options = dict(options)

    # open the image file, without a format layer
    snapshot_flags = 0
    if not flags & BDRV_O_PROTOCOL:
        if flags & BDRV_O_RDWR:
            flags |= BDRV_O_ALLOW_RDWR
        if flags & BDRV_O_SNAPSHOT:
            snapshot_flags = bdrv_temp_snapshot_flags(flags)
            flags = bdrv_backing_flags(flags)
        bs.open_flags = flags

        file = bdrv_open_child(filename, options, 'file', bs, child_file,
                               True, local_err)
        if local_err[0]:
            return _open_inherit_fail(pbs, bs, file, -errno.EINVAL,
                                      local_err, errp)

    # probe the format
    bs.probed = not drv
    if not drv and file:
        pdrv = [None]
        ret = find_image_format(file.bs, filename, pdrv, local_err)
        drv = pdrv[0]
        if ret < 0:
            return _open_inherit_fail(pbs, bs, file, ret, local_err, errp)
    elif not drv:
        error_setg(local_err, 'Must specify either driver or file')
        return _open_inherit_fail(pbs, bs, file, -errno.EINVAL, local_err,
                                  errp)

    # BDRV_O_PROTOCOL is set iff a protocol node is about to be created, and
    # then there is no file child
    assert bool(flags & BDRV_O_PROTOCOL) == bool(drv.bdrv_file_open)
    assert not flags & BDRV_O_PROTOCOL or not file

    ret = bdrv_open_common(bs, file, options, drv, local_err)
    if ret < 0:
        return _open_inherit_fail(pbs, bs, file, ret, local_err, errp)

    if file and bs.file is not file:
        bdrv_unref_child(bs, file)
        file = None

    # open the backing file, if there is one
    if not flags & BDRV_O_NO_BACKING:
        backing_options = qdict_extract_subqdict(options, 'backing.')
        ret = bdrv_open_backing_file(bs, backing_options, local_err,
                                     options.pop('backing', None))
        if ret < 0:
            return _open_inherit_close_and_fail(pbs, bs, ret, local_err, errp)

    bdrv_refresh_filename(bs)

    # any option left was not understood by anyone
    if options:
        key = next(iter(options))
        if flags & BDRV_O_PROTOCOL:
            error_setg(local_err, "Block protocol '%s' doesn't support the "
                       "option '%s'", drv.format_name, key)
        else:
            error_setg(local_err, "Block format '%s' does not support the "
                       "option '%s'", drv.format_name, key)
        return _open_inherit_close_and_fail(pbs, bs, -errno.EINVAL,
                                            local_err, errp)

    pbs[0] = bs

    # snapshot=on: a temporary qcow2 overlay takes bs's place above it
    if snapshot_flags:
        ret = bdrv_append_temp_snapshot(bs, snapshot_flags, local_err)
        if local_err[0]:
            return _open_inherit_close_and_fail(pbs, bs, ret, local_err, errp)
    return 0


def _open_inherit_fail(pbs: list, bs: BlockDriverState,
                       file: Optional[BdrvChild], ret: int, local_err: list,
                       errp: Errp) -> int:
    """The fail path of bdrv_open_inherit: bs was not opened."""
    if file is not None:
        bdrv_unref_child(bs, file)
    bs.options = None
    if not pbs[0]:
        # a node created here goes away; a node of the caller stays
        bdrv_unref(bs)
    error_propagate(errp, local_err[0])
    return ret


def _open_inherit_close_and_fail(pbs: list, bs: BlockDriverState, ret: int,
                                 local_err: list, errp: Errp) -> int:
    """The close_and_fail path: bs was opened and must be closed."""
    if pbs[0]:
        bdrv_close(bs)
    else:
        bdrv_unref(bs)
    error_propagate(errp, local_err[0])
    return ret


def bdrv_open(pbs: list, filename: Optional[str], reference: Optional[str],
              options: Optional[dict], flags: int, errp: Errp) -> int:
    """Open an image; see bdrv_open_inherit."""
    return bdrv_open_inherit(pbs, filename, reference, options, flags, None,
                             None, errp)


class BDRVReopenState:
    """The staged state of one node during a reopen (block.h)."""
    __slots__ = ('bs', 'flags', 'options', 'opaque', 'detect_zeroes',
                 'runtime_options')

    def __init__(self, bs: BlockDriverState, flags: int, options: dict):
        self.bs = bs
        self.flags = flags
        self.options = options
        self.opaque: Any = None
        self.detect_zeroes = bs.detect_zeroes
        # discard and detect-zeroes as given, for bs.options at the commit
        self.runtime_options: dict = {}


class BlockReopenQueueEntry:
    __slots__ = ('prepared', 'state')

    def __init__(self, state: BDRVReopenState):
        self.prepared = False
        self.state = state


def bdrv_reopen_queue(bs_queue: Optional[list], bs: BlockDriverState,
                      options: Optional[dict], flags: int) -> list:
    """Add bs and the children that inherit from it to a reopen queue (a
    list, created when bs_queue is None) for bdrv_reopen_multiple()."""
    assert bs is not None

    if bs_queue is None:
        bs_queue = []
    if options is None:
        options = {}

    qdict_join(options, dict(bs.options or {}), False)

    # bdrv_open() masks this flag out
    flags &= ~BDRV_O_PROTOCOL

    for child in bs.children:
        if child.bs.inherits_from is not bs:
            continue
        child_flags = child.role.inherit_flags(flags)
        bdrv_reopen_queue(bs_queue, child.bs, None, child_flags)

    bs_queue.append(BlockReopenQueueEntry(BDRVReopenState(bs, flags,
                                                          options)))
    return bs_queue


def bdrv_reopen_multiple(bs_queue: list, errp: Errp) -> int:
    """Reopen every node of the queue, all or nothing: prepare all, then
    commit all, or abort the prepared ones if one fails."""
    ret = -1
    local_err = [None]

    assert bs_queue is not None

    io.bdrv_drain_all()

    for entry in bs_queue:
        if bdrv_reopen_prepare(entry.state, bs_queue, local_err):
            error_propagate(errp, local_err[0])
            break
        entry.prepared = True
    else:
        for entry in bs_queue:
            bdrv_reopen_commit(entry.state)
        ret = 0

    if ret:
        for entry in bs_queue:
            if entry.prepared:
                bdrv_reopen_abort(entry.state)
    return ret


def bdrv_reopen(bs: BlockDriverState, bdrv_flags: int, errp: Errp) -> int:
    """Reopen bs (and what inherits from it) with new flags."""
    queue = bdrv_reopen_queue(None, bs, None, bdrv_flags)
    return bdrv_reopen_multiple(queue, errp)


def bdrv_reopen_prepare(reopen_state: BDRVReopenState, queue: list,
                        errp: Errp) -> int:
    """Stage a reopen (the driver keeps its staged state in
    reopen_state.opaque).  0 on success; on failure the caller aborts."""
    local_err = [None]

    assert reopen_state is not None
    assert reopen_state.bs.drv is not None
    drv = reopen_state.bs.drv
    options = reopen_state.options

    # 7.2 takes the options every node has first: auto-read-only is only
    # checked (this port has no auto-read-only), discard and detect-zeroes
    # change
    value = options.pop('auto-read-only', None)
    if value is not None and \
            parse_option_bool('auto-read-only', value, errp) is None:
        return -errno.EINVAL
    for key in (BDRV_OPT_DISCARD, BDRV_OPT_DETECT_ZEROES):
        if key in options:
            reopen_state.runtime_options[key] = options.pop(key)
    flags = _parse_discard_option(
        reopen_state.runtime_options.get(BDRV_OPT_DISCARD),
        reopen_state.flags, errp)
    if flags is None:
        return -errno.EINVAL
    reopen_state.flags = flags
    detect_zeroes = bdrv_parse_detect_zeroes(
        reopen_state.runtime_options.get(BDRV_OPT_DETECT_ZEROES), flags, errp)
    if detect_zeroes is None:
        return -errno.EINVAL
    reopen_state.detect_zeroes = detect_zeroes

    # a node opened read-only may not become writable
    if not reopen_state.bs.open_flags & BDRV_O_ALLOW_RDWR and \
            reopen_state.flags & BDRV_O_RDWR:
        error_setg(errp, "Node '%s' is read only",
                   bdrv_get_device_or_node_name(reopen_state.bs))
        return -1

    # the new cache mode comes with the flags: drop the old one from the
    # options so that it does not count as a changed option below
    for key in (BDRV_OPT_CACHE_DIRECT, BDRV_OPT_CACHE_NO_FLUSH,
                BDRV_OPT_READ_ONLY):
        reopen_state.options.pop(key, None)

    ret = io.bdrv_flush(reopen_state.bs)
    if ret:
        error_setg_errno(errp, -ret, 'Error flushing drive')
        return ret

    if drv.bdrv_reopen_prepare:
        ret = drv.bdrv_reopen_prepare(reopen_state, queue, local_err)
        if ret:
            if local_err[0]:
                error_propagate(errp, local_err[0])
            else:
                error_setg(errp, "failed while preparing to reopen image "
                           "'%s'", reopen_state.bs.filename)
            return ret
    else:
        # every driver that can be reopened has bdrv_reopen_prepare
        error_setg(errp, "Block format '%s' used by node '%s' does not "
                   "support reopening files", drv.format_name,
                   bdrv_get_device_or_node_name(reopen_state.bs))
        return -1

    # options not taken by the driver may only stay as they were; some are
    # used by the first open only (filename, for instance).  The driver is
    # among 7.2's options of a node.
    old_options = dict(reopen_state.bs.options or {}, driver=drv.format_name)
    for key, new in reopen_state.options.items():
        if key not in old_options or old_options[key] != new:
            error_setg(errp, "Cannot change the option '%s'", key)
            return -errno.EINVAL

    return 0


def bdrv_reopen_commit(reopen_state: BDRVReopenState) -> None:
    """Make the staged reopen final."""
    assert reopen_state is not None
    bs = reopen_state.bs
    drv = bs.drv
    assert drv is not None

    if drv.bdrv_reopen_commit:
        drv.bdrv_reopen_commit(reopen_state)

    bs.open_flags = reopen_state.flags
    bs.read_only = not reopen_state.flags & BDRV_O_RDWR
    bs.detect_zeroes = reopen_state.detect_zeroes
    # the options describe the node as it is now
    if bs.options is not None:
        bs.options.update(reopen_state.runtime_options)
        bs.options[BDRV_OPT_CACHE_DIRECT] = bool(bs.open_flags &
                                                 BDRV_O_NOCACHE)
        bs.options[BDRV_OPT_CACHE_NO_FLUSH] = bool(bs.open_flags &
                                                   BDRV_O_NO_FLUSH)
        bs.options[BDRV_OPT_READ_ONLY] = bool(bs.read_only)

    io.bdrv_refresh_limits(bs, None)


def bdrv_reopen_abort(reopen_state: BDRVReopenState) -> None:
    """Drop the staged reopen."""
    assert reopen_state is not None
    drv = reopen_state.bs.drv
    assert drv is not None
    if drv.bdrv_reopen_abort:
        drv.bdrv_reopen_abort(reopen_state)


def bdrv_close(bs: BlockDriverState) -> None:
    assert not bs.job

    # disable I/O limits and let the throttled requests go
    if bs.throttle_state:
        io.bdrv_io_limits_disable(bs)

    io.bdrv_drain(bs)      # complete I/O
    io.bdrv_flush(bs)
    io.bdrv_drain(bs)      # in case flush left pending I/O
    notifier_list_notify(bs.close_notifiers, bs)

    if bs.drv:
        bs.drv.bdrv_close(bs)
        bs.drv = None

        bdrv_set_backing_hd(bs, None)

        if bs.file is not None:
            bdrv_unref_child(bs, bs.file)
            bs.file = None

        for child in list(bs.children):
            # drivers unref their other children in their close function
            if child.bs.inherits_from is bs:
                child.bs.inherits_from = None
            bdrv_detach_child(bs, child)

        bs.opaque = None
        bs.copy_on_read = 0
        bs.backing_file = ''
        bs.backing_format = ''
        bs.total_sectors = 0
        bs.encrypted = False
        bs.valid_key = False
        bs.sg = False
        bs.zero_beyond_eof = False
        bs.options = None
        bs.full_open_options = None

    bs.aio_notifiers = []


def bdrv_close_all() -> None:
    for bs in list(bdrv_states):
        aio_context = bdrv_get_aio_context(bs)
        aio_context_acquire(aio_context)
        bdrv_close(bs)
        aio_context_release(aio_context)


def bdrv_make_anon(bs: BlockDriverState) -> None:
    """Take bs out of the device and node name lists."""
    if bs in bdrv_states:
        bdrv_states.remove(bs)
    if bs.node_name:
        graph_bdrv_states.remove(bs)
    bs.node_name = ''


def bdrv_delete(bs: BlockDriverState) -> None:
    assert not bs.job
    assert bdrv_op_blocker_is_empty(bs)
    assert not bs.refcnt
    assert not bs.dirty_bitmaps

    bdrv_close(bs)
    bdrv_make_anon(bs)


def bdrv_check(bs: BlockDriverState, res, fix: int) -> int:
    """Run the driver's consistency check; res (a BdrvCheckResult) is
    reset by the caller.  0 if the check ran, whatever it found."""
    if bs.drv is None:
        return -errno.ENOMEDIUM
    if bs.drv.bdrv_check is None:
        return -errno.ENOTSUP
    return bs.drv.bdrv_check(bs, res, fix)


def bdrv_change_backing_file(bs: BlockDriverState,
                             backing_file: Optional[str],
                             backing_fmt: Optional[str]) -> int:
    """Change the backing file name recorded in the image header."""
    drv = bs.drv

    # a backing format without a backing file makes no sense
    if backing_fmt and not backing_file:
        return -errno.EINVAL

    if drv.bdrv_change_backing_file is not None:
        ret = drv.bdrv_change_backing_file(bs, backing_file, backing_fmt)
    else:
        ret = -errno.ENOTSUP

    if ret == 0:
        bs.backing_file = backing_file or ''
        bs.backing_format = backing_fmt or ''
    return ret


PREALLOC_MODES = ('off', 'metadata', 'falloc', 'full')

# The longest image: INT64_MAX aligned down to the largest request
# alignment (1 GiB), as 7.2's BDRV_MAX_LENGTH
BDRV_MAX_LENGTH = ((1 << 63) - 1) & ~((1 << 30) - 1)


@coroutine_fn
def bdrv_co_truncate(bs: BlockDriverState, offset: int, prealloc: str,
                     flags: int, errp: Errp) -> int:
    """Resize the image to offset bytes, as QEMU 7.2's bdrv_co_truncate.
    prealloc (7.2's PreallocMode: off, metadata, falloc, full) says how to
    allocate what is added; flags may ask for BDRV_REQ_ZERO_WRITE.  The
    driver callback takes (bs, offset, prealloc, flags, errp) and runs in
    a coroutine."""
    drv = bs.drv
    if not drv:
        error_setg(errp, 'No medium inserted')
        return -errno.ENOMEDIUM
    if offset < 0:
        error_setg(errp, 'Image size cannot be negative')
        return -errno.EINVAL
    # bdrv_check_request(offset, 0) in 7.2: only the upper bound can fail
    if offset > BDRV_MAX_LENGTH:
        error_setg(errp, 'offset(%d) exceeds maximum(%d)', offset,
                   BDRV_MAX_LENGTH)
        return -errno.EIO
    assert prealloc in PREALLOC_MODES

    old_size = bdrv_getlength(bs)
    if old_size < 0:
        error_setg_errno(errp, -old_size, 'Failed to get old image size')
        return old_size

    if bs.read_only:
        error_setg(errp, 'Image is read-only')
        return -errno.EACCES

    # Growing over a backing file longer than the image would let the
    # backing file's data show in the new area: have it zeroed instead
    if offset > old_size and bs.backing:
        backing_len = bdrv_getlength(bs.backing.bs)
        if backing_len < 0:
            error_setg_errno(errp, -backing_len,
                             'Could not get backing file size')
            return backing_len
        if backing_len > old_size:
            flags |= BDRV_REQ_ZERO_WRITE

    if not drv.bdrv_truncate:
        error_setg(errp, 'Image format driver does not support resize')
        return -errno.ENOTSUP
    if flags & ~bs.supported_truncate_flags:
        error_setg(errp, 'Block driver does not support requested flags')
        return -errno.ENOTSUP

    ret = drv.bdrv_truncate(bs, offset, prealloc, flags, errp)
    if ret == 0:
        ret = refresh_total_sectors(bs, offset >> BDRV_SECTOR_BITS)
        if ret < 0:
            error_setg_errno(errp, -ret, 'Could not refresh total sector '
                             'count')
        bdrv_dirty_bitmap_truncate(bs)
    return ret


def bdrv_truncate(bs: BlockDriverState, offset: int, prealloc: str = 'off',
                  errp: Errp = None, flags: int = 0) -> int:
    """bdrv_co_truncate, from inside or outside a coroutine."""
    if qemu_in_coroutine():
        return bdrv_co_truncate(bs, offset, prealloc, flags, errp)

    result = [NOT_DONE]

    def entry(_opaque) -> None:
        result[0] = bdrv_co_truncate(bs, offset, prealloc, flags, errp)

    co = qemu_coroutine_create(entry)
    qemu_coroutine_enter(co, None)
    while result[0] == NOT_DONE:
        aio_poll(bdrv_get_aio_context(bs), True)
    return result[0]


def bdrv_get_allocated_file_size(bs: BlockDriverState) -> int:
    """Bytes the image takes on the host (sparse files counted by what is
    allocated); negative errno if unknown."""
    drv = bs.drv
    if not drv:
        return -errno.ENOMEDIUM
    if drv.bdrv_get_allocated_file_size:
        return drv.bdrv_get_allocated_file_size(bs)
    # a protocol driver's data need not lie in its children (7.2)
    if bs.file and not drv.bdrv_file_open:
        return bdrv_get_allocated_file_size(bs.file.bs)
    return -errno.ENOTSUP


def bdrv_nb_sectors(bs: BlockDriverState) -> int:
    drv = bs.drv
    if not drv:
        return -errno.ENOMEDIUM

    if drv.has_variable_length:
        ret = refresh_total_sectors(bs, bs.total_sectors)
        if ret < 0:
            return ret
    return bs.total_sectors


INT64_MAX = (1 << 63) - 1


def bdrv_getlength(bs: BlockDriverState) -> int:
    """Length in bytes (a multiple of BDRV_SECTOR_SIZE), or -errno."""
    ret = bdrv_nb_sectors(bs)
    if ret > INT64_MAX // BDRV_SECTOR_SIZE:
        ret = -errno.EFBIG
    return ret if ret < 0 else ret * BDRV_SECTOR_SIZE


def bdrv_get_geometry(bs: BlockDriverState) -> int:
    """The number of sectors, 0 if no medium or an error (C stores it
    through nb_sectors_ptr)."""
    nb_sectors = bdrv_nb_sectors(bs)
    return 0 if nb_sectors < 0 else nb_sectors


def bdrv_is_read_only(bs: BlockDriverState) -> bool:
    return bs.read_only


def bdrv_is_sg(bs: BlockDriverState) -> bool:
    return bs.sg


def bdrv_get_format_name(bs: BlockDriverState) -> Optional[str]:
    return bs.drv.format_name if bs.drv else None


def bdrv_find_node(node_name: str) -> Optional[BlockDriverState]:
    assert node_name
    for bs in graph_bdrv_states:
        if bs.node_name == node_name:
            return bs
    return None


def bdrv_lookup_bs(device: Optional[str], node_name: Optional[str],
                   errp: Errp) -> Optional[BlockDriverState]:
    if device:
        blk = block_backend.blk_by_name(device)
        if blk:
            bs = block_backend.blk_bs(blk)
            if not bs:
                error_setg(errp, "Device '%s' has no medium", device)
            return bs

    if node_name:
        bs = bdrv_find_node(node_name)
        if bs:
            return bs

    error_setg(errp, "Cannot find device='%s' nor node-name='%s'",
               device or '', node_name or '')
    return None


def bdrv_chain_contains(top: Optional[BlockDriverState],
                        base: Optional[BlockDriverState]) -> bool:
    """Is base in the backing chain of top?  False if either is None."""
    while top and top is not base:
        top = backing_bs(top)
    return top is not None


def bdrv_next_node(bs: Optional[BlockDriverState]
                   ) -> Optional[BlockDriverState]:
    return _next_in(graph_bdrv_states, bs)


def bdrv_next(bs: Optional[BlockDriverState]) -> Optional[BlockDriverState]:
    """Iterate over the root nodes: bdrv_next(None) is the first."""
    return _next_in(bdrv_states, bs)


def _next_in(lst: list, bs: Optional[BlockDriverState]
             ) -> Optional[BlockDriverState]:
    if bs is None:
        return lst[0] if lst else None
    i = lst.index(bs) + 1
    return lst[i] if i < len(lst) else None


def bdrv_get_node_name(bs: BlockDriverState) -> str:
    return bs.node_name


def bdrv_get_device_name(bs: BlockDriverState) -> str:
    return block_backend.blk_name(bs.blk) if bs.blk else ''


def bdrv_get_device_or_node_name(bs: BlockDriverState) -> str:
    """The device name, else the node name (one namespace for both)."""
    return block_backend.blk_name(bs.blk) if bs.blk else bs.node_name


def bdrv_get_flags(bs: BlockDriverState) -> int:
    return bs.open_flags


def bdrv_has_zero_init_1(bs: BlockDriverState) -> int:
    return 1


def bdrv_has_zero_init(bs: BlockDriverState) -> int:
    """Do new images of this node read as zeroes?  Never with a backing
    file, whose contents show through."""
    assert bs.drv
    if bs.backing:
        return 0
    if bs.drv.bdrv_has_zero_init:
        return bs.drv.bdrv_has_zero_init(bs)
    return 0


def bdrv_unallocated_blocks_are_zero(bs: BlockDriverState) -> bool:
    if bs.backing:
        return False
    bdi = BlockDriverInfo()
    if bdrv_get_info(bs, bdi) == 0:
        return bdi.unallocated_blocks_are_zero
    return False


def bdrv_can_write_zeroes_with_unmap(bs: BlockDriverState) -> bool:
    if bs.backing or not bs.open_flags & BDRV_O_UNMAP:
        return False
    bdi = BlockDriverInfo()
    if bdrv_get_info(bs, bdi) == 0:
        return bdi.can_write_zeroes_with_unmap
    return False


def bdrv_get_backing_filename(bs: BlockDriverState) -> str:
    return bs.backing_file


def bdrv_get_info(bs: BlockDriverState, bdi: BlockDriverInfo) -> int:
    drv = bs.drv
    if not drv:
        return -errno.ENOMEDIUM
    if not drv.bdrv_get_info:
        return -errno.ENOTSUP
    bdi.__init__()
    return drv.bdrv_get_info(bs, bdi)


def bdrv_debug_event(bs: Optional[BlockDriverState], event: int) -> None:
    """Tell the driver of bs (blkdebug) that event happened (BLKDBG_EVENT)."""
    if not bs or not bs.drv or not bs.drv.bdrv_debug_event:
        return
    bs.drv.bdrv_debug_event(bs, event)


def _debug_node(bs: Optional[BlockDriverState], callback: str
                ) -> Optional[BlockDriverState]:
    """The first node down the bs->file chain whose driver has callback."""
    while bs and bs.drv and not getattr(bs.drv, callback):
        bs = bs.file.bs if bs.file else None
    if bs and bs.drv and getattr(bs.drv, callback):
        return bs
    return None


def bdrv_debug_breakpoint(bs: Optional[BlockDriverState], event: str,
                          tag: str) -> int:
    bs = _debug_node(bs, 'bdrv_debug_breakpoint')
    if bs:
        return bs.drv.bdrv_debug_breakpoint(bs, event, tag)
    return -errno.ENOTSUP


def bdrv_debug_remove_breakpoint(bs: Optional[BlockDriverState],
                                 tag: str) -> int:
    bs = _debug_node(bs, 'bdrv_debug_remove_breakpoint')
    if bs:
        return bs.drv.bdrv_debug_remove_breakpoint(bs, tag)
    return -errno.ENOTSUP


def bdrv_debug_resume(bs: Optional[BlockDriverState], tag: str) -> int:
    # unlike the others, this one walks on past nodes without a driver
    while bs and (not bs.drv or not bs.drv.bdrv_debug_resume):
        bs = bs.file.bs if bs.file else None
    if bs and bs.drv and bs.drv.bdrv_debug_resume:
        return bs.drv.bdrv_debug_resume(bs, tag)
    return -errno.ENOTSUP


def bdrv_debug_is_suspended(bs: Optional[BlockDriverState], tag: str) -> bool:
    bs = _debug_node(bs, 'bdrv_debug_is_suspended')
    if bs:
        return bs.drv.bdrv_debug_is_suspended(bs, tag)
    return False


def bdrv_read_only_for_writer(bs: BlockDriverState) -> bool:
    """Is bs, or a node it stores its data on, read-only?  A writer needs
    them all writable (7.2's permissions: a format node passes the write
    permission down to its file, a filter to its image)."""
    if bdrv_is_read_only(bs):
        return True
    return any(bdrv_read_only_for_writer(child.bs) for child in bs.children
               if child.name in ('file', 'image'))


def bdrv_is_inserted(bs: BlockDriverState) -> bool:
    """Is there a medium (in bs and in all its children)?"""
    drv = bs.drv
    if not drv:
        return False
    if drv.bdrv_is_inserted:
        return drv.bdrv_is_inserted(bs)
    for child in bs.children:
        if not bdrv_is_inserted(child.bs):
            return False
    return True


def bdrv_find_dirty_bitmap(bs: BlockDriverState,
                           name: str) -> Optional[BdrvDirtyBitmap]:
    assert name
    for bm in bs.dirty_bitmaps:
        if bm.name and bm.name == name:
            return bm
    return None


def bdrv_dirty_bitmap_make_anon(bitmap: BdrvDirtyBitmap) -> None:
    assert not bdrv_dirty_bitmap_frozen(bitmap)
    bitmap.name = None


def bdrv_create_dirty_bitmap(bs: BlockDriverState, granularity: int,
                             name: Optional[str],
                             errp: Errp) -> Optional[BdrvDirtyBitmap]:
    """A new bitmap of bs with one bit per granularity bytes (a power of
    two, at least a sector); writes to bs mark it from now on."""
    assert granularity & (granularity - 1) == 0

    if name and bdrv_find_dirty_bitmap(bs, name):
        error_setg(errp, 'Bitmap already exists: %s', name)
        return None
    sector_granularity = granularity >> BDRV_SECTOR_BITS
    assert sector_granularity
    bitmap_size = bdrv_nb_sectors(bs)
    if bitmap_size < 0:
        error_setg_errno(errp, -bitmap_size, 'could not get length of device')
        return None
    bitmap = BdrvDirtyBitmap(
        hbitmap_alloc(bitmap_size, sector_granularity.bit_length() - 1),
        bitmap_size, name)
    bs.dirty_bitmaps.insert(0, bitmap)
    return bitmap


def bdrv_dirty_bitmap_frozen(bitmap: BdrvDirtyBitmap) -> bool:
    return bitmap.successor is not None


def bdrv_dirty_bitmap_enabled(bitmap: BdrvDirtyBitmap) -> bool:
    return not (bitmap.disabled or bitmap.successor)


def bdrv_dirty_bitmap_truncate(bs: BlockDriverState) -> None:
    """Resize every bitmap of bs to the node's new length."""
    size = bdrv_nb_sectors(bs)
    for bitmap in bs.dirty_bitmaps:
        assert not bdrv_dirty_bitmap_frozen(bitmap)
        hbitmap_truncate(bitmap.bitmap, size)
        bitmap.size = size


def bdrv_release_dirty_bitmap(bs: BlockDriverState,
                              bitmap: BdrvDirtyBitmap) -> None:
    for bm in bs.dirty_bitmaps:
        if bm is bitmap:
            assert not bdrv_dirty_bitmap_frozen(bm)
            bs.dirty_bitmaps.remove(bm)
            return


def bdrv_disable_dirty_bitmap(bitmap: BdrvDirtyBitmap) -> None:
    assert not bdrv_dirty_bitmap_frozen(bitmap)
    bitmap.disabled = True


def bdrv_enable_dirty_bitmap(bitmap: BdrvDirtyBitmap) -> None:
    assert not bdrv_dirty_bitmap_frozen(bitmap)
    bitmap.disabled = False


def bdrv_get_dirty(bs: BlockDriverState, bitmap: Optional[BdrvDirtyBitmap],
                   sector: int) -> int:
    if bitmap:
        return int(hbitmap_get(bitmap.bitmap, sector))
    return 0


def bdrv_get_default_bitmap_granularity(bs: BlockDriverState) -> int:
    """The cluster size clamped to [4K, 64K]; 64K if unknown."""
    bdi = BlockDriverInfo()
    if bdrv_get_info(bs, bdi) >= 0 and bdi.cluster_size > 0:
        return min(65536, max(4096, bdi.cluster_size))
    return 65536


def bdrv_dirty_bitmap_granularity(bitmap: BdrvDirtyBitmap) -> int:
    return BDRV_SECTOR_SIZE << hbitmap_granularity(bitmap.bitmap)


def bdrv_dirty_iter_init(bitmap: BdrvDirtyBitmap, hbi: HBitmapIter) -> None:
    hbitmap_iter_init(hbi, bitmap.bitmap, 0)


def bdrv_set_dirty_bitmap(bitmap: BdrvDirtyBitmap, cur_sector: int,
                          nr_sectors: int) -> None:
    assert bdrv_dirty_bitmap_enabled(bitmap)
    hbitmap_set(bitmap.bitmap, cur_sector, nr_sectors)


def bdrv_reset_dirty_bitmap(bitmap: BdrvDirtyBitmap, cur_sector: int,
                            nr_sectors: int) -> None:
    assert bdrv_dirty_bitmap_enabled(bitmap)
    hbitmap_reset(bitmap.bitmap, cur_sector, nr_sectors)


def bdrv_clear_dirty_bitmap(bitmap: BdrvDirtyBitmap) -> None:
    assert bdrv_dirty_bitmap_enabled(bitmap)
    hbitmap_reset_all(bitmap.bitmap)


def bdrv_set_dirty(bs: BlockDriverState, cur_sector: int,
                   nr_sectors: int) -> None:
    """Mark sectors dirty in every enabled bitmap of bs (after a write)."""
    for bitmap in bs.dirty_bitmaps:
        if not bdrv_dirty_bitmap_enabled(bitmap):
            continue
        hbitmap_set(bitmap.bitmap, cur_sector, nr_sectors)


def bdrv_get_dirty_count(bitmap: BdrvDirtyBitmap) -> int:
    """Dirty sectors (whole granularity groups)."""
    return hbitmap_count(bitmap.bitmap)


def bdrv_ref(bs: BlockDriverState) -> None:
    bs.refcnt += 1


def bdrv_unref(bs: Optional[BlockDriverState]) -> None:
    """Drop a reference; the last one deletes bs."""
    if not bs:
        return
    assert bs.refcnt > 0
    bs.refcnt -= 1
    if bs.refcnt == 0:
        bdrv_delete(bs)


def bdrv_op_is_blocked(bs: BlockDriverState, op: int, errp: Errp) -> bool:
    assert 0 <= op < BLOCK_OP_TYPE_MAX
    if bs.op_blockers[op]:
        # QLIST_FIRST: the newest blocker
        reason = bs.op_blockers[op][0]
        error_setg(errp, "Node '%s' is busy: %s",
                   bdrv_get_device_or_node_name(bs), error_get_pretty(reason))
        return True
    return False


def bdrv_op_block(bs: BlockDriverState, op: int, reason: Error) -> None:
    assert 0 <= op < BLOCK_OP_TYPE_MAX
    bs.op_blockers[op].insert(0, reason)


def bdrv_op_unblock(bs: BlockDriverState, op: int, reason: Error) -> None:
    assert 0 <= op < BLOCK_OP_TYPE_MAX
    bs.op_blockers[op] = [r for r in bs.op_blockers[op] if r is not reason]


def bdrv_op_block_all(bs: BlockDriverState, reason: Error) -> None:
    for op in range(BLOCK_OP_TYPE_MAX):
        bdrv_op_block(bs, op, reason)


def bdrv_op_unblock_all(bs: BlockDriverState, reason: Error) -> None:
    for op in range(BLOCK_OP_TYPE_MAX):
        bdrv_op_unblock(bs, op, reason)


def bdrv_op_blocker_is_empty(bs: BlockDriverState) -> bool:
    return not any(bs.op_blockers)


def bdrv_img_create(filename: str, fmt: str, base_filename: Optional[str],
                    base_fmt: Optional[str], options: Optional[str],
                    img_size: int, flags: int, errp: Errp,
                    quiet: bool) -> None:
    """Create an image file of format fmt (qemu-img create): options is
    the "-o" string; img_size -1 takes the size of the backing file."""
    local_err = [None]

    drv = bdrv_find_format(fmt)
    if not drv:
        error_setg(errp, "Unknown file format '%s'", fmt)
        return

    proto_drv = bdrv_find_protocol(filename, True, errp)
    if not proto_drv:
        return

    if not drv.create_opts:
        error_setg(errp, "Format driver '%s' does not support image "
                   "creation", drv.format_name)
        return

    if not proto_drv.create_opts:
        error_setg(errp, "Protocol driver '%s' does not support image "
                   "creation", proto_drv.format_name)
        return

    create_opts = qemu_opts_append(None, drv.create_opts)
    create_opts = qemu_opts_append(create_opts, proto_drv.create_opts)

    opts = qemu_opts_create(create_opts)
    if img_size != -1:
        qemu_opt_set_number(opts, BLOCK_OPT_SIZE, img_size, None)

    if options:
        qemu_opts_do_parse(opts, options, None, local_err)
        if local_err[0]:
            error_propagate(errp, local_err[0])
            return

    if base_filename:
        qemu_opt_set(opts, BLOCK_OPT_BACKING_FILE, base_filename, local_err)
        if local_err[0]:
            error_setg(errp, "Backing file not supported for file format "
                       "'%s'", fmt)
            return

    if base_fmt:
        qemu_opt_set(opts, BLOCK_OPT_BACKING_FMT, base_fmt, local_err)
        if local_err[0]:
            error_setg(errp, "Backing file format not supported for file "
                       "format '%s'", fmt)
            return

    backing_file = qemu_opt_get(opts, BLOCK_OPT_BACKING_FILE)
    if backing_file and filename == backing_file:
        error_setg(errp, 'Error: Trying to create an image with the same '
                   'filename as the backing file')
        return

    backing_fmt = qemu_opt_get(opts, BLOCK_OPT_BACKING_FMT)

    # 7.2 opens the backing file whenever it may (not under -u, i.e.
    # BDRV_O_NO_BACKING), to check it and to learn its format and size, and
    # refuses a backing file whose format is not given rather than probe it
    # on every later open
    size = qemu_opt_get_size(opts, BLOCK_OPT_SIZE, -1)
    if backing_file and not (flags & BDRV_O_NO_BACKING):
        full_backing = bdrv_get_full_backing_filename_from_filename(
            filename, backing_file, local_err)
        if local_err[0]:
            error_propagate(errp, local_err[0])
            return
        # backing files are always opened read-only
        back_flags = flags & ~(BDRV_O_RDWR | BDRV_O_SNAPSHOT |
                               BDRV_O_NO_BACKING)
        backing_options = {'driver': backing_fmt} if backing_fmt else None
        pbs = [None]
        ret = bdrv_open(pbs, full_backing, None, backing_options, back_flags,
                        local_err)
        if ret < 0:
            error_append_hint(local_err, "Could not open backing image.\n")
            error_propagate(errp, local_err[0])
            return
        if not backing_fmt:
            error_setg(errp, "Backing file specified without backing format")
            error_append_hint(errp, "Detected format of %s.",
                              pbs[0].drv.format_name)
            bdrv_unref(pbs[0])
            return
        if size == -1:
            size = bdrv_getlength(pbs[0])
            if size < 0:
                error_setg_errno(errp, -size, "Could not get size of '%s'",
                                 backing_file)
                bdrv_unref(pbs[0])
                return
            qemu_opt_set_number(opts, BLOCK_OPT_SIZE, size, None)
        bdrv_unref(pbs[0])
    elif backing_file and not backing_fmt:
        error_setg(errp, "Backing file specified without backing format")
        return

    if size == -1:
        error_setg(errp, 'Image creation needs a size parameter')
        return

    if not quiet:
        print("Formatting '%s', fmt=%s %s" %
              (filename, fmt, qemu_opts_print(opts, ' ')))
        sys.stdout.flush()

    ret = bdrv_create(drv, filename, opts, local_err)
    if ret == -errno.EFBIG:
        # clearer than what a driver says; mostly "image too large"
        hint = ''
        if qemu_opt_get_size(opts, BLOCK_OPT_CLUSTER_SIZE, 0):
            hint = ' (try using a larger cluster size)'
        error_setg(errp, "The image size is too large for file format "
                   "'%s'%s", fmt, hint)
        return
    error_propagate(errp, local_err[0])


def bdrv_get_aio_context(bs: BlockDriverState):
    return bs.aio_context


class BdrvAioNotifier:
    __slots__ = ('attached_aio_context', 'detach_aio_context', 'opaque')

    def __init__(self, attached_aio_context, detach_aio_context, opaque):
        self.attached_aio_context = attached_aio_context
        self.detach_aio_context = detach_aio_context
        self.opaque = opaque


def bdrv_detach_aio_context(bs: BlockDriverState) -> None:
    """Remove bs and its children from their AioContext (parents first)."""
    if not bs.drv:
        return

    for ban in bs.aio_notifiers:
        ban.detach_aio_context(ban.opaque)

    if bs.throttle_state:
        throttle.throttle_timers_detach_aio_context(bs.throttle_timers)
    if bs.drv.bdrv_detach_aio_context:
        bs.drv.bdrv_detach_aio_context(bs)
    if bs.file:
        bdrv_detach_aio_context(bs.file.bs)
    if bs.backing:
        bdrv_detach_aio_context(bs.backing.bs)

    bs.aio_context = None


def bdrv_attach_aio_context(bs: BlockDriverState, new_context) -> None:
    """Move bs and its children to new_context (children first)."""
    if not bs.drv:
        return

    bs.aio_context = new_context

    if bs.backing:
        bdrv_attach_aio_context(bs.backing.bs, new_context)
    if bs.file:
        bdrv_attach_aio_context(bs.file.bs, new_context)
    if bs.drv.bdrv_attach_aio_context:
        bs.drv.bdrv_attach_aio_context(bs, new_context)
    if bs.throttle_state:
        throttle.throttle_timers_attach_aio_context(bs.throttle_timers,
                                                    new_context)

    for ban in bs.aio_notifiers:
        ban.attached_aio_context(new_context, ban.opaque)


def bdrv_set_aio_context(bs: BlockDriverState, new_context) -> None:
    io.bdrv_drain(bs)   # no request may be in flight while we move
    bdrv_detach_aio_context(bs)
    # we run in the old context; the new one may belong to another thread
    aio_context_acquire(new_context)
    bdrv_attach_aio_context(bs, new_context)
    aio_context_release(new_context)


def bdrv_add_aio_context_notifier(bs: BlockDriverState, attached_aio_context,
                                  detach_aio_context, opaque) -> None:
    bs.aio_notifiers.insert(0, BdrvAioNotifier(attached_aio_context,
                                               detach_aio_context, opaque))


def bdrv_remove_aio_context_notifier(bs: BlockDriverState,
                                     attached_aio_context,
                                     detach_aio_context, opaque) -> None:
    for ban in bs.aio_notifiers:
        if ban.attached_aio_context == attached_aio_context and \
                ban.detach_aio_context == detach_aio_context and \
                ban.opaque is opaque:
            bs.aio_notifiers.remove(ban)
            return
    raise AssertionError('bdrv_remove_aio_context_notifier: not found')


def bdrv_recurse_is_first_non_filter(bs: Optional[BlockDriverState],
                                     candidate: BlockDriverState) -> bool:
    """Is candidate the first node below bs that is not a filter?  Filters
    say it through their own bdrv_recurse_is_first_non_filter."""
    if not bs or not bs.drv:
        return False

    # a non-filter ends the recursion
    if not bs.drv.is_filter:
        return bs is candidate

    if bs.drv.bdrv_recurse_is_first_non_filter:
        return bs.drv.bdrv_recurse_is_first_non_filter(bs, candidate)

    # a filter that does not let us recurse
    return False


def bdrv_is_first_non_filter(candidate: BlockDriverState) -> bool:
    """Is candidate the first non-filter below one of the root nodes?"""
    for bs in bdrv_states:
        if bdrv_recurse_is_first_non_filter(bs, candidate):
            return True
    return False


_COMMON_OPTIONS = frozenset(d.name for d in bdrv_runtime_opts.desc)


def append_open_options(d: dict, bs: BlockDriverState) -> bool:
    """Copy the driver options of this level (no '.', none of the options
    every node has) from bs.options into d; True if there were any."""
    found_any = False
    for key, value in (bs.options or {}).items():
        if '.' not in key and key not in _COMMON_OPTIONS:
            d[key] = value
            found_any = True
    return found_any


def bdrv_refresh_filename(bs: BlockDriverState) -> None:
    """Update bs.exact_filename (a plain filename opening the same image, if
    there is one), bs.full_open_options (options opening the same image)
    and bs.filename (exact_filename, else "json:" + full_open_options)."""
    drv = bs.drv
    if not drv:
        return

    # our name mostly depends on the file's name
    if bs.file:
        bdrv_refresh_filename(bs.file.bs)

    if drv.bdrv_refresh_filename:
        bs.exact_filename = ''
        bs.full_open_options = None
        drv.bdrv_refresh_filename(bs)
    elif bs.file:
        # build it from the file's information
        bs.exact_filename = ''
        bs.full_open_options = None

        opts: dict = {}
        has_open_options = append_open_options(opts, bs)

        # without options of our own, the file's name is ours
        if bs.file.bs.exact_filename and not has_open_options:
            bs.exact_filename = bs.file.bs.exact_filename
        if bs.file.bs.full_open_options:
            opts['driver'] = drv.format_name
            opts['file'] = bs.file.bs.full_open_options
            bs.full_open_options = opts
    elif not bs.full_open_options and bs.options:
        # no file child: our own options plus the driver say it all
        opts = {}
        append_open_options(opts, bs)
        opts['driver'] = drv.format_name
        if bs.exact_filename:
            opts['filename'] = bs.exact_filename
        bs.full_open_options = opts

    if bs.exact_filename:
        bs.filename = bs.exact_filename
    elif bs.full_open_options:
        bs.filename = 'json:' + json.dumps(bs.full_open_options,
                                           separators=(', ', ': '))

