"""The block driver registry: bdrv_register and the look-ups of QEMU's block.c.

Drivers register themselves when their module is imported (QEMU's
block_init()).  QEMU links every driver in; importing them all costs the
start-up of every command, so the modules are imported lazily: DRIVER_TABLE
says which format and protocol names each module registers and whether it
probes, and a look-up imports only the modules that can answer it.
bdrv_init() still imports them all (QEMU's module_call_init).  The list is
kept newest first in link order (QLIST_INSERT_HEAD), whatever order the
modules were imported in, because it decides ties when probing.

The protocol prefixes (``null-co://``, ``blkdebug:``) are not matched here
by a table of their own: bdrv_find_protocol() matches the prefix against
each registered driver's protocol_name; DRIVER_TABLE only says which module
to import for a name.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import NamedTuple, Optional

from util.error import Errp, error_setg


class DriverModule(NamedTuple):
    """What a driver module registers, known before it is imported."""
    format_names: tuple
    protocol_names: tuple
    probe: bool             # a driver with bdrv_probe (format probing)
    probe_device: bool      # a driver with bdrv_probe_device (host devices)


# in QEMU's link order (block/Makefile.objs); a module not in the tree is
# skipped.  tests/test_driver_table.py checks this against the drivers.
DRIVER_TABLE = {
    'raw_bsd': DriverModule(('raw',), (), True, False),
    'qcow2': DriverModule(('qcow2',), (), True, False),
    'null': DriverModule(('null-co', 'null-aio'), ('null-co', 'null-aio'),
                         False, False),
    'blkdebug': DriverModule(('blkdebug',), ('blkdebug',), False, False),
    'blkverify': DriverModule(('blkverify',), ('blkverify',), False, False),
    'raw_posix': DriverModule(('file',), ('file',), False, False),
    'throttle': DriverModule(('throttle',), (), False, False),
    'sim': DriverModule(('sim',), ('sim',), False, False),
}
DRIVER_MODULES = tuple(DRIVER_TABLE)

bdrv_drivers: list = []
_loaded: set = set()


def _link_rank(drv) -> int:
    """Sort key: drivers of other modules (tests) first, then link order
    reversed, as if every module had registered in link order."""
    parts = type(drv).__module__.split('.')
    if len(parts) >= 2 and parts[0] == __name__ and parts[1] in DRIVER_TABLE:
        return len(DRIVER_MODULES) - DRIVER_MODULES.index(parts[1])
    return 0


def bdrv_register(bdrv) -> None:
    from block import io
    io.bdrv_setup_io_funcs(bdrv)
    bdrv_drivers.insert(0, bdrv)
    rank = _link_rank(bdrv)
    if rank:
        _loaded.add(DRIVER_MODULES[len(DRIVER_MODULES) - rank])
        # sort is stable: drivers of one module keep their order
        bdrv_drivers.sort(key=_link_rank)


def _load(names) -> None:
    """Import the driver modules in names that are not imported yet."""
    for name in names:
        if name in _loaded:
            continue
        _loaded.add(name)
        module = '%s.%s' % (__name__, name)
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)


def bdrv_init() -> None:
    """Register every built-in driver (QEMU: module_call_init)."""
    _load(DRIVER_MODULES)


def _find_format_loaded(format_name: str):
    for drv in bdrv_drivers:
        if drv.format_name == format_name:
            return drv
    return None


def bdrv_find_format(format_name: str):
    drv = _find_format_loaded(format_name)
    if drv is None:
        _load(name for name, m in DRIVER_TABLE.items()
              if format_name in m.format_names)
        drv = _find_format_loaded(format_name)
    return drv


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
    _load(name for name, m in DRIVER_TABLE.items() if m.probe_device)
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
    # host device detection goes first, so that device names with a ':'
    # keep working (as in QEMU)
    drv = find_hdev_driver(filename)
    if drv:
        return drv

    if not path_has_protocol(filename) or not allow_protocol_prefix:
        return bdrv_find_format('file')

    protocol = filename[:filename.index(':')][:127]
    _load(name for name, m in DRIVER_TABLE.items()
          if protocol in m.protocol_names)
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
    _load(name for name, m in DRIVER_TABLE.items() if m.probe)
    score_max = 0
    drv = None
    for d in bdrv_drivers:
        if d.bdrv_probe:
            score = d.bdrv_probe(buf, buf_size, filename)
            if score > score_max:
                score_max = score
                drv = d
    return drv
