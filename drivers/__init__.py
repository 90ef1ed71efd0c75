"""The block driver registry: bdrv_register and the look-ups of QEMU's block.c.

Drivers register themselves when their module is imported (QEMU's
block_init()).  bdrv_init() imports the driver modules listed in
DRIVER_MODULES (QEMU's block/Makefile.objs) that exist in the tree; every
look-up calls it, so that callers need not remember to.  The list is kept
newest first (QLIST_INSERT_HEAD), which decides ties when probing.

The protocol prefixes (``null-co://``, ``blkdebug:``) are not a table here:
bdrv_find_protocol() matches the prefix against each registered driver's
protocol_name, so a new protocol driver only has to register.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Optional

from util.error import Errp, error_setg

# modules of the built-in drivers, imported by bdrv_init()
BUILTIN_DRIVERS = ('drivers.raw_posix', 'drivers.raw_bsd', 'drivers.null')

# in QEMU's link order; a module not (yet) in the tree is skipped
DRIVER_MODULES = ('raw_bsd', 'qcow2', 'null', 'blkdebug', 'blkverify',
                  'raw_posix', 'throttle', 'sim')

bdrv_drivers: list = []
_initialized = False


def bdrv_register(bdrv) -> None:
    from block import io
    io.bdrv_setup_io_funcs(bdrv)
    bdrv_drivers.insert(0, bdrv)


def bdrv_init() -> None:
    """Register the built-in drivers once (QEMU: module_call_init)."""
    global _initialized
    if _initialized:
        return
    _initialized = True
    for name in DRIVER_MODULES:
        module = '%s.%s' % (__name__, name)
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)


def bdrv_find_format(format_name: str):
    bdrv_init()
    for drv in bdrv_drivers:
        if drv.format_name == format_name:
            return drv
    return None


def bdrv_iterate_format() -> list:
    """The sorted, distinct format names (C calls a callback on each)."""
    bdrv_init()
    return sorted({drv.format_name for drv in bdrv_drivers
                   if drv.format_name})


def path_has_protocol(path: str) -> bool:
    """Does path start with "<protocol>:" (a ':' before any '/')?"""
    for ch in path:
        if ch == '/':
            return False
        if ch == ':':
            return True
    return False


def find_hdev_driver(filename: str):
    """The driver whose bdrv_probe_device scores filename highest."""
    score_max = 0
    drv = None
    for d in bdrv_drivers:
        if d.bdrv_probe_device:
            score = d.bdrv_probe_device(filename)
            if score > score_max:
                score_max = score
                drv = d
    return drv


def bdrv_find_protocol(filename: str, allow_protocol_prefix: bool,
                       errp: Errp):
    bdrv_init()
    # host device detection goes first, so that device names with a ':'
    # keep working (as in QEMU)
    drv = find_hdev_driver(filename)
    if drv:
        return drv

    if not path_has_protocol(filename) or not allow_protocol_prefix:
        return bdrv_find_format('file')

    protocol = filename[:filename.index(':')][:127]
    for drv in bdrv_drivers:
        if drv.protocol_name and drv.protocol_name == protocol:
            return drv

    error_setg(errp, "Unknown protocol '%s'", protocol)
    return None


def bdrv_probe_all(buf: bytes, buf_size: int, filename: Optional[str]):
    """The first driver with the highest probe score for the image header.

    Guessing a format is unsafe for raw images (CVE-2008-2004); raw scores
    1 so that it is chosen only when nothing else matches.
    """
    bdrv_init()
    score_max = 0
    drv = None
    for d in bdrv_drivers:
        if d.bdrv_probe:
            score = d.bdrv_probe(buf, buf_size, filename)
            if score > score_max:
                score_max = score
                drv = d
    return drv
