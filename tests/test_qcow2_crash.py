"""Write ordering of the qcow2 driver: a crash at any point leaks clusters
at worst and never corrupts the image (refcounts reach the disk before the
L2 entries that depend on them, COW data before the L2 entry, ...).

The image file's node is wrapped so that every write, discard and flush
that reaches it is logged.  A crash image is the file as it was at the
start plus what the log says reached the disk: everything up to the last
completed flush, and any subset of the writes after it (the disk may
reorder those).  Each one must pass the real `qemu-img check` without
corruption, and what the guest had flushed must read back.
"""

import json
import random

import pytest

from block.front import open_image
from test_qcow2 import (MiB, pattern, qemu_img,  # noqa: F401
                        qemu_img_create, qemu_tools)
from util.iov import qemu_iovec_to_buf


class LoggingDriver:
    """Stands in for the file node's driver: forwards everything, and
    logs what reaches the disk."""

    def __init__(self, real, log: list):
        self._real = real
        self._log = log

    def __getattr__(self, name):
        return getattr(self._real, name)

    def bdrv_co_writev(self, bs, sector_num, nb_sectors, qiov):
        data = bytearray(nb_sectors * 512)
        qemu_iovec_to_buf(qiov, 0, data, len(data))
        ret = self._real.bdrv_co_writev(bs, sector_num, nb_sectors, qiov)
        if ret >= 0:
            self._log.append(("write", sector_num * 512, bytes(data)))
        return ret

    def bdrv_co_write_zeroes(self, bs, sector_num, nb_sectors, flags):
        ret = self._real.bdrv_co_write_zeroes(bs, sector_num, nb_sectors,
                                              flags)
        if ret >= 0:
            self._log.append(("write", sector_num * 512,
                              bytes(nb_sectors * 512)))
        return ret

    def bdrv_aio_flush(self, bs, cb, opaque):
        def done(opaque, ret):
            if ret >= 0:
                self._log.append(("flush",))
            cb(opaque, ret)
        return self._real.bdrv_aio_flush(bs, done, opaque)

    def bdrv_aio_discard(self, bs, sector_num, nb_sectors, cb, opaque):
        def done(opaque, ret):
            if ret >= 0:
                self._log.append(("write", sector_num * 512,
                                  bytes(nb_sectors * 512)))
            cb(opaque, ret)
        return self._real.bdrv_aio_discard(bs, sector_num, nb_sectors, done,
                                           opaque)

    def bdrv_truncate(self, bs, offset, prealloc, flags, errp):
        ret = self._real.bdrv_truncate(bs, offset, prealloc, flags, errp)
        if ret >= 0:
            self._log.append(("truncate", offset))
        return ret


def run_workload(path, size, rnd, log):
    """The workload on the image, logging what reaches its file; the
    guest contents at each guest flush, by log position."""
    flushed = []
    with open_image(str(path), fmt="qcow2") as img:
        file_bs = img.bs.file.bs
        file_bs.drv = LoggingDriver(file_bs.drv, log)
        for model in workload(img, rnd, size):
            flushed.append((len(log), model))
        # grow the L1 table and the file's metadata as well
        img.write(size - 512, b"\x01" * 512)
        file_bs.drv = file_bs.drv._real
    assert any(op[0] == "flush" for op in log)
    return flushed


def apply(image: bytearray, op) -> None:
    if op[0] == "write":
        _, offset, data = op
        if len(image) < offset + len(data):
            image.extend(bytes(offset + len(data) - len(image)))
        image[offset:offset + len(data)] = data
    elif op[0] == "truncate":
        _, size = op
        if size < len(image):
            del image[size:]
        else:
            image.extend(bytes(size - len(image)))


def crash_images(initial: bytes, log: list, rnd: random.Random):
    """(name, image bytes) of crash states: after each logged write, the
    state with everything before the last flush plus all, none, or a
    random part of the writes since."""
    durable = bytearray(initial)
    pending = []
    for pos, op in enumerate(log):
        if op[0] == "flush":
            for p in pending:
                apply(durable, p)
            pending = []
            continue
        pending.append(op)
        subsets = [("all", pending), ("last", pending[-1:]),
                   ("but-last", pending[:-1])]
        for n in range(2):
            subsets.append(("random%d" % n,
                            [p for p in pending if rnd.random() < 0.5]))
        for name, ops in subsets:
            image = bytearray(durable)
            for p in ops:
                apply(image, p)
            yield "%d-%s" % (pos, name), bytes(image)


def workload(img, rnd: random.Random, size: int):
    """Allocating writes, COW of partial clusters, overwrites, zeroes,
    discards and flushes; returns the guest contents at each guest flush
    (counted by position in the log)."""
    model = bytearray(img.read(0, size))
    for n in range(40):
        kind = rnd.choice(["write", "write", "write", "zero", "discard",
                           "flush"])
        off = rnd.randrange(0, size // 512) * 512 + rnd.choice([0, 100])
        length = min(rnd.randrange(1, 64) * 512, size - off)
        if kind == "write":
            data = pattern(n, length)
            img.write(off, data)
            model[off:off + length] = data
        elif kind == "zero":
            img.write_zeroes(off, length, unmap=rnd.random() < 0.5)
            model[off:off + length] = bytes(length)
        elif kind == "discard":
            img.discard(off, length)
            cs = img.bs.opaque.cluster_size
            start = -(-off // cs) * cs
            end = (off + length) // cs * cs
            if start < end:
                model[start:end] = bytes(end - start)
        else:
            img.flush()
            yield bytes(model)


@pytest.mark.parametrize("cluster_size,refcount_bits", [(512, 16),
                                                        (4096, 1),
                                                        (65536, 64)])
def test_crash_consistency(tmp_path, cluster_size, refcount_bits):
    path = tmp_path / "t.qcow2"
    size = 2 * MiB
    qemu_img_create(path, size, cluster_size=cluster_size,
                    refcount_bits=refcount_bits)
    initial = path.read_bytes()
    rnd = random.Random(cluster_size)

    log = []
    flushed = run_workload(path, size, rnd, log)

    crash = tmp_path / "crash.qcow2"
    checked = 0
    for name, image in crash_images(initial, log, rnd):
        if rnd.random() > 0.25:     # a sample keeps the test fast
            continue
        crash.write_bytes(image)
        p = qemu_img("check", "--output=json", str(crash), check=False)
        assert p.returncode in (0, 3), (name, p.stdout, p.stderr)
        res = json.loads(p.stdout)
        assert res.get("corruptions", 0) == 0, (name, res)
        assert res.get("check-errors", 0) == 0, (name, res)
        checked += 1
    assert checked > 20

    # what the guest had flushed is there after a crash right after it
    for pos, model in flushed[-3:]:
        image = bytearray(initial)
        for op in log[:pos]:
            apply(image, op)
        crash.write_bytes(image)
        with open_image(str(crash), fmt="qcow2", read_only=True) as im:
            assert im.read(0, size) == model


def test_crash_with_lazy_refcounts(tmp_path):
    """With lazy refcounts the refcounts may be wrong after a crash, but
    then the dirty bit is set, and opening the image repairs it."""
    path = tmp_path / "t.qcow2"
    size = 2 * MiB
    qemu_img_create(path, size, cluster_size=4096, lazy_refcounts="on")
    initial = path.read_bytes()
    rnd = random.Random(1)
    log = []
    run_workload(path, size, rnd, log)

    crash = tmp_path / "crash.qcow2"
    checked = 0
    for name, image in crash_images(initial, log, rnd):
        if rnd.random() > 0.05:
            continue
        crash.write_bytes(image)
        p = qemu_img("check", "--output=json", str(crash), check=False)
        res = json.loads(p.stdout)
        info = json.loads(qemu_img("info", "--output=json",
                                   str(crash)).stdout)
        if res.get("corruptions", 0):
            assert info["dirty-flag"], name
        with open_image(str(crash), fmt="qcow2"):
            pass
        p = qemu_img("check", "--output=json", str(crash), check=False)
        assert p.returncode == 0, (name, p.stdout)
        checked += 1
    assert checked > 5
