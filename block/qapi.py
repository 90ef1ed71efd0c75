"""Image information for qemu-img: the Python twin of QEMU's block/qapi.c
(bdrv_query_image_info and the human-readable dumps), with the pieces of
qobject/ (QDict iteration order, the pretty JSON writer) that decide how
qemu-img prints a QAPI object.

A QAPI object is a dict whose keys are the QAPI member names ("virtual-size")
in the order the schema declares them, holding only the members that are
present; nested structs are dicts, lists are lists.  QEMU turns such a
struct into a QDict with the output visitor, and a QDict iterates in the
order of its hash buckets, newest entry first within a bucket: that is the
order in which 7.2's qemu-img prints the keys of `info --output=json`,
`check --output=json` and of "Format specific information", so it is
reproduced here (qdict_entries) rather than the declaration order.

Structure of QEMU 2.5's block/qapi.c; the ImageInfo members and the output
are those of the installed QEMU (7.2).  Snapshots are not listed: no driver
of this port has bdrv_snapshot_list.
"""

from __future__ import annotations

import math
from typing import Any, Optional

from block import core
from block.block_int import BlockDriverInfo, BlockDriverState
from util.cutils import printf
from util.error import Errp, error_propagate, error_setg_errno

# --- qobject/qdict.c: the iteration order of a QDict -------------------------

QDICT_BUCKET_MAX = 512


def tdb_hash(name: str) -> int:
    """The hash QDict uses for its keys (from tdb), on 32 bits."""
    data = name.encode('utf-8', 'surrogateescape')
    value = (0x238F13AF * len(data)) & 0xffffffff
    for i, ch in enumerate(data):
        value = (value + (ch << (i * 5 % 24))) & 0xffffffff
    return (1103515243 * value + 12345) & 0xffffffff


def qdict_entries(d: dict) -> list:
    """The (key, value) pairs of d in the order qdict_first/qdict_next give
    them for a QDict filled in d's order: by bucket, and the last inserted
    first within a bucket (QLIST_INSERT_HEAD)."""
    items = list(d.items())
    order = sorted(range(len(items)),
                   key=lambda i: (tdb_hash(items[i][0]) % QDICT_BUCKET_MAX,
                                  -i))
    return [items[i] for i in order]


# --- qobject/qjson.c: qobject_to_json_pretty ---------------------------------

_JSON_ESCAPES = {'"': '\\"', '\\': '\\\\', '\b': '\\b', '\f': '\\f',
                 '\n': '\\n', '\r': '\\r', '\t': '\\t'}


def quoted_str(s: str) -> str:
    """A JSON string as QEMU writes it: ASCII only, \\uXXXX in upper case,
    invalid UTF-8 as U+FFFD."""
    text = s.encode('utf-8', 'surrogateescape').decode('utf-8', 'replace')
    out = ['"']
    for ch in text:
        cp = ord(ch)
        if ch in _JSON_ESCAPES:
            out.append(_JSON_ESCAPES[ch])
        elif cp > 0xFFFF:
            # beyond the BMP: a surrogate pair
            out.append('\\u%04X\\u%04X' % (0xD800 + ((cp - 0x10000) >> 10),
                                           0xDC00 + ((cp - 0x10000) & 0x3FF)))
        elif cp < 0x20 or cp >= 0x7F:
            out.append('\\u%04X' % cp)
        else:
            out.append(ch)
    out.append('"')
    return ''.join(out)


def _json_newline(accu: list, pretty: bool, indent: int) -> None:
    if pretty:
        accu.append('\n' + ' ' * (4 * indent))


def to_json(obj: Any, accu: list, pretty: bool, indent: int) -> None:
    if obj is None:
        accu.append('null')
    elif isinstance(obj, bool):
        accu.append('true' if obj else 'false')
    elif isinstance(obj, int):
        accu.append('%d' % obj)
    elif isinstance(obj, float):
        accu.append(repr(obj))
    elif isinstance(obj, str):
        accu.append(quoted_str(obj))
    elif isinstance(obj, dict):
        sep = ''
        accu.append('{')
        for key, value in qdict_entries(obj):
            accu.append(sep)
            _json_newline(accu, pretty, indent + 1)
            accu.append(quoted_str(key) + ': ')
            to_json(value, accu, pretty, indent + 1)
            sep = ',' if pretty else ', '
        _json_newline(accu, pretty, indent)
        accu.append('}')
    elif isinstance(obj, list):
        sep = ''
        accu.append('[')
        for value in obj:
            accu.append(sep)
            _json_newline(accu, pretty, indent + 1)
            to_json(value, accu, pretty, indent + 1)
            sep = ',' if pretty else ', '
        _json_newline(accu, pretty, indent)
        accu.append(']')
    else:
        raise AssertionError('not a QObject: %r' % (obj,))


def qobject_to_json_pretty(obj: Any) -> str:
    accu: list = []
    to_json(obj, accu, True, 0)
    return ''.join(accu)


# --- util/cutils.c: size_to_str ----------------------------------------------

def size_to_str(val: int) -> str:
    """A size with a binary suffix and 3 significant digits ("196 KiB");
    the next suffix is used from 1000 of a unit on."""
    suffixes = ('', 'Ki', 'Mi', 'Gi', 'Ti', 'Pi', 'Ei')
    # frexp's exponent minus one is floor(log2(val * 1024 / 1000))
    _, i = math.frexp(val / (1000.0 / 1024.0))
    i = (i - 1) // 10 if i > 0 else 0
    div = 1 << (i * 10)
    return '%0.3g %sB' % (val / div, suffixes[i])


# --- block/qapi.c ------------------------------------------------------------

# qapi/block-core.json: the members of ImageInfo, in schema order
IMAGE_INFO_MEMBERS = (
    'filename', 'format', 'dirty-flag', 'actual-size', 'virtual-size',
    'cluster-size', 'encrypted', 'compressed', 'backing-filename',
    'full-backing-filename', 'backing-filename-format', 'snapshots',
    'backing-image', 'format-specific')


def qapi_struct(members: tuple, values: dict) -> dict:
    """values as the output visitor sees a struct: present members only, in
    schema order."""
    return {name: values[name] for name in members if name in values}


def bdrv_query_image_info(bs: BlockDriverState, p_info: list,
                          errp: Errp) -> None:
    """Fill p_info[0] with the ImageInfo of bs (a QAPI dict, see the module
    docstring)."""
    info: dict = {}

    size = core.bdrv_getlength(bs)
    if size < 0:
        error_setg_errno(errp, -size, "Can't get image size '%s'",
                         bs.exact_filename)
        return

    core.bdrv_refresh_filename(bs)

    info['filename'] = bs.filename
    info['format'] = core.bdrv_get_format_name(bs)
    info['virtual-size'] = size
    actual_size = core.bdrv_get_allocated_file_size(bs)
    if actual_size >= 0:
        info['actual-size'] = actual_size
    if bs.encrypted:
        info['encrypted'] = True

    bdi = BlockDriverInfo()
    if core.bdrv_get_info(bs, bdi) >= 0:
        if bdi.cluster_size != 0:
            info['cluster-size'] = bdi.cluster_size
        info['dirty-flag'] = bool(bdi.is_dirty)

    local_err = [None]
    format_specific = bdrv_get_specific_info(bs, local_err)
    if local_err[0]:
        error_propagate(errp, local_err[0])
        return
    if format_specific is not None:
        info['format-specific'] = format_specific

    backing_filename = bs.backing_file
    if backing_filename:
        info['backing-filename'] = backing_filename
        backing_filename2 = core.bdrv_get_full_backing_filename(bs, None)
        # reported even when it equals backing-filename: that they are the
        # same is worth knowing
        if backing_filename2:
            info['full-backing-filename'] = backing_filename2
        if bs.backing_format:
            info['backing-filename-format'] = bs.backing_format

    p_info[0] = qapi_struct(IMAGE_INFO_MEMBERS, info)


def bdrv_get_specific_info(bs: BlockDriverState,
                           errp: Errp) -> Optional[dict]:
    """block.c's bdrv_get_specific_info: the driver's ImageInfoSpecific
    ({"type": ..., "data": {...}}), or None."""
    drv = bs.drv
    if drv and drv.bdrv_get_specific_info:
        return drv.bdrv_get_specific_info(bs)
    return None


def dump_qobject(comp_indent: int, obj: Any) -> None:
    if isinstance(obj, bool):
        printf('%s', 'true' if obj else 'false')
    elif isinstance(obj, (int, float)):
        printf('%s', obj)
    elif isinstance(obj, str):
        printf('%s', obj)
    elif isinstance(obj, dict):
        dump_qdict(comp_indent, obj)
    elif isinstance(obj, list):
        dump_qlist(comp_indent, obj)
    else:
        raise AssertionError('not a QObject: %r' % (obj,))


def dump_qlist(indentation: int, lst: list) -> None:
    for i, value in enumerate(lst):
        composite = isinstance(value, (dict, list))
        printf('%*s[%i]:%c', indentation * 4, '', i,
               '\n' if composite else ' ')
        dump_qobject(indentation + 1, value)
        if not composite:
            printf('\n')


def dump_qdict(indentation: int, d: dict) -> None:
    for key, value in qdict_entries(d):
        composite = isinstance(value, (dict, list))
        # dashes in member names read as spaces
        printf('%*s%s:%c', indentation * 4, '', key.replace('-', ' '),
               '\n' if composite else ' ')
        dump_qobject(indentation + 1, value)
        if not composite:
            printf('\n')


def bdrv_image_info_specific_dump(info_spec: dict) -> None:
    dump_qobject(1, info_spec['data'])


def bdrv_image_info_dump(info: dict) -> None:
    """The human-readable form of an ImageInfo (qemu-img info)."""
    if 'actual-size' not in info:
        dsize_buf = 'unavailable'
    else:
        dsize_buf = size_to_str(info['actual-size'])
    size_buf = size_to_str(info['virtual-size'])
    printf("image: %s\n"
           "file format: %s\n"
           "virtual size: %s (%d bytes)\n"
           "disk size: %s\n",
           info['filename'], info['format'], size_buf,
           info['virtual-size'], dsize_buf)

    if info.get('encrypted'):
        printf("encrypted: yes\n")

    if 'cluster-size' in info:
        printf("cluster_size: %d\n", info['cluster-size'])

    if info.get('dirty-flag'):
        printf("cleanly shut down: no\n")

    if 'backing-filename' in info:
        printf("backing file: %s", info['backing-filename'])
        if 'full-backing-filename' not in info:
            printf(" (cannot determine actual path)")
        elif info['backing-filename'] != info['full-backing-filename']:
            printf(" (actual path: %s)", info['full-backing-filename'])
        printf("\n")
        if 'backing-filename-format' in info:
            printf("backing file format: %s\n",
                   info['backing-filename-format'])

    if 'format-specific' in info:
        printf("Format specific information:\n")
        bdrv_image_info_specific_dump(info['format-specific'])
