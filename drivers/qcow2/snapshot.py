"""Reading and listing the internal snapshot table: the part of QEMU's
block/qcow2-snapshot.c (v2.5.0) that opening, checking and `qemu-img info`
need.  Creating, applying and deleting snapshots are not ported.
"""

from __future__ import annotations

import errno

from block import io
from block.block_int import (BDRV_SECTOR_SIZE, BlockDriverState)
from drivers.qcow2.qcow2_h import (INT_MAX, QCOW_MAX_SNAPSHOTS_SIZE,
                                   QCowSnapshot, QCowSnapshotExtraData,
                                   QCowSnapshotHeader, align_offset)


class QEMUSnapshotInfo:
    """include/block/snapshot.h's QEMUSnapshotInfo (it belongs to a
    block/snapshot.py, which this port does not have yet)."""
    __slots__ = ("id_str", "name", "vm_state_size", "date_sec", "date_nsec",
                 "vm_clock_nsec")

    def __init__(self) -> None:
        self.id_str = ""
        self.name = ""
        self.vm_state_size = 0
        self.date_sec = 0
        self.date_nsec = 0
        self.vm_clock_nsec = 0


def qcow2_free_snapshots(bs: BlockDriverState) -> None:
    s = bs.opaque
    s.snapshots = None
    s.nb_snapshots = 0


def qcow2_read_snapshots(bs: BlockDriverState) -> int:
    s = bs.opaque
    hdr_size = QCowSnapshotHeader.fmt.size
    extra_size = QCowSnapshotExtraData.fmt.size

    if not s.nb_snapshots:
        s.snapshots = None
        s.snapshots_size = 0
        return 0

    offset = s.snapshots_offset
    s.snapshots = [QCowSnapshot() for _ in range(s.nb_snapshots)]

    for sn in s.snapshots:
        # Read statically sized part of the snapshot header
        offset = align_offset(offset, 8)
        h = bytearray(hdr_size)
        ret = io.bdrv_pread(bs.file.bs, offset, h, hdr_size)
        if ret < 0:
            qcow2_free_snapshots(bs)
            return ret

        offset += hdr_size
        (sn.l1_table_offset, sn.l1_size, id_str_size, name_size,
         sn.date_sec, sn.date_nsec, sn.vm_clock_nsec, sn.vm_state_size,
         extra_data_size) = QCowSnapshotHeader.fmt.unpack(h)

        # Read extra data
        extra = bytearray(extra_size)
        ret = io.bdrv_pread(bs.file.bs, offset, extra,
                            min(extra_size, extra_data_size))
        if ret < 0:
            qcow2_free_snapshots(bs)
            return ret
        offset += extra_data_size

        vm_state_size_large, disk_size = QCowSnapshotExtraData.fmt.unpack(
            extra)
        if extra_data_size >= 8:
            sn.vm_state_size = vm_state_size_large

        if extra_data_size >= 16:
            sn.disk_size = disk_size
        else:
            sn.disk_size = bs.total_sectors * BDRV_SECTOR_SIZE

        # Read snapshot ID and name
        for field, size in (("id_str", id_str_size), ("name", name_size)):
            buf = bytearray(size)
            ret = io.bdrv_pread(bs.file.bs, offset, buf, size)
            if ret < 0:
                qcow2_free_snapshots(bs)
                return ret
            offset += size
            setattr(sn, field, buf.decode("utf-8", "replace"))

        if offset - s.snapshots_offset > QCOW_MAX_SNAPSHOTS_SIZE:
            qcow2_free_snapshots(bs)
            return -errno.EFBIG

    assert offset - s.snapshots_offset <= INT_MAX
    s.snapshots_size = offset - s.snapshots_offset
    return 0


def qcow2_snapshot_list(bs: BlockDriverState, psn_tab: list) -> int:
    """psn_tab[0] gets a list of QEMUSnapshotInfo (None if there are no
    snapshots); returns their number."""
    s = bs.opaque

    if not s.nb_snapshots:
        psn_tab[0] = None
        return s.nb_snapshots

    sn_tab = []
    for sn in s.snapshots:
        sn_info = QEMUSnapshotInfo()
        # C copies into char[128] and char[256]
        sn_info.id_str = sn.id_str[:127]
        sn_info.name = sn.name[:255]
        sn_info.vm_state_size = sn.vm_state_size
        sn_info.date_sec = sn.date_sec
        sn_info.date_nsec = sn.date_nsec
        sn_info.vm_clock_nsec = sn.vm_clock_nsec
        sn_tab.append(sn_info)
    psn_tab[0] = sn_tab
    return s.nb_snapshots
