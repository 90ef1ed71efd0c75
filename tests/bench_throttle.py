"""Throttling on the real clock: the rate a request stream achieves against
the rate configured, for byte and operation limits, a couple of seconds
each.  The limits are set as a user sets them, with -drive's
``throttling.*`` options.

Run alone with ``python3 -m tests.bench_throttle``; bench_throttle() gives
the rows for tests/bench.py (cost per unit: ns per byte or per operation,
achieved against configured, so a ratio of 1.00 is exact).
"""

from __future__ import annotations

import sys

from block import core, io
from block.block_int import BDRV_O_RDWR, BDRV_SECTOR_SIZE
from block.throttle_groups import (blockdev_throttle_setup,
                                   extract_throttle_options)
from util.aio import aio_poll, qemu_get_aio_context
from util.coroutine import qemu_coroutine_create, qemu_coroutine_enter
from util.error import error_abort
from util.iov import QEMUIOVector, qemu_iovec_init_external
from util.throttle import NANOSECONDS_PER_SECOND
from util.timer import QEMU_CLOCK_REALTIME, qemu_clock_get_ns

# option, limit, is_write, request size, unit name
CASES = [
    ("throttling.bps-total", 8 << 20, False, 64 * 1024, "B"),
    ("throttling.bps-write", 2 << 20, True, 16 * 1024, "B"),
    ("throttling.iops-total", 1000, False, 4096, "op"),
    ("throttling.iops-read", 300, False, 512, "op"),
]

DEPTH = 4           # requests each stream keeps in flight


class Worker:
    __slots__ = ("bs", "is_write", "size", "deadline", "times", "done")

    def __init__(self, bs, is_write: bool, size: int, deadline: int):
        self.bs = bs
        self.is_write = is_write
        self.size = size
        self.deadline = deadline
        self.times: list[int] = []
        self.done = False


def worker_entry(w: Worker) -> None:
    buf = memoryview(bytearray(w.size))
    nb_sectors = w.size // BDRV_SECTOR_SIZE
    sector = 0
    while qemu_clock_get_ns(QEMU_CLOCK_REALTIME) < w.deadline:
        qiov = QEMUIOVector()
        qemu_iovec_init_external(qiov, [buf], 1)
        if w.is_write:
            ret = io.bdrv_co_writev(w.bs, sector, nb_sectors, qiov)
        else:
            ret = io.bdrv_co_readv(w.bs, sector, nb_sectors, qiov)
        assert ret == 0
        w.times.append(qemu_clock_get_ns(QEMU_CLOCK_REALTIME))
        sector += nb_sectors
    w.done = True


def measure(option: str, limit: int, is_write: bool, size: int,
            seconds: float) -> float:
    """Run DEPTH streams against `option`=`limit` for `seconds`; return the
    achieved rate in units (bytes or operations) per second."""
    pbs = [None]
    core.bdrv_open(pbs, None, None, {"driver": "null-co", "size": 1 << 40},
                   BDRV_O_RDWR, error_abort)
    bs = pbs[0]
    group, cfg = extract_throttle_options({option: str(limit)}, error_abort)
    blockdev_throttle_setup(bs, group, cfg, "bench")
    t0 = qemu_clock_get_ns(QEMU_CLOCK_REALTIME)

    deadline = t0 + int(seconds * NANOSECONDS_PER_SECOND)
    workers = [Worker(bs, is_write, size, deadline) for _ in range(DEPTH)]
    for w in workers:
        qemu_coroutine_enter(qemu_coroutine_create(worker_entry), w)
    ctx = qemu_get_aio_context()
    while not all(w.done for w in workers):
        aio_poll(ctx, True)
    core.bdrv_unref(bs)

    # Request n goes when the bucket, filled by the n before it and leaking
    # since t0, is down to its size (a tenth of a second's worth): at
    # t0 + (n * units - size) / rate.  Solve that for the last request.
    units = size if option.startswith("throttling.bps") else 1
    times = sorted(t for w in workers for t in w.times)
    return ((len(times) - 1) * units - limit / 10) * \
        NANOSECONDS_PER_SECOND / (times[-1] - t0)


def bench_throttle(seconds: float = 2.0) -> list[tuple[str, float, float]]:
    """Rows (what, achieved ns per unit, configured ns per unit)."""
    rows = []
    for option, limit, is_write, size, unit in CASES:
        achieved = measure(option, limit, is_write, size, seconds)
        what = "%s=%d, %d-byte %ss: ns per %s" % (
            option, limit, size, "write" if is_write else "read", unit)
        rows.append((what, NANOSECONDS_PER_SECOND / achieved,
                     NANOSECONDS_PER_SECOND / limit))
    return rows


def main() -> int:
    print("%-34s %14s %14s %8s" % ("limit", "configured", "achieved",
                                   "error"))
    worst = 0.0
    for option, limit, is_write, size, unit in CASES:
        achieved = measure(option, limit, is_write, size, 2.0)
        error = (achieved - limit) / limit
        worst = max(worst, abs(error))
        print("%-34s %12d/s %12.0f/s %+7.2f%%" % (
            "%s (%d B %ss)" % (option[len("throttling."):], size,
                               "write" if is_write else "read"),
            limit, achieved, 100 * error))
    print("worst error %.2f%% (%s 5%%)" % (100 * worst,
                                          "within" if worst <= 0.05
                                          else "NOT within"))
    return 0 if worst <= 0.05 else 1


if __name__ == "__main__":
    sys.exit(main())
