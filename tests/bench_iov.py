"""Benchmark of util/iov.py: the C helper against the pure-Python fallback.

Rows are (what, C helper ns/op, Python fallback ns/op), so the ratio that
tests/bench.py prints is C / Python (lower is better; the issue asks for at
most 0.33 on 64 x 512-byte vectors).  "reused" times an operation on a
vector that already served one (the C arrays of its entries are built);
"fresh" times building the vector with qemu_iovec_add and one operation, as
a block-layer request does (its first operation runs in Python with either
backend).  The last rows time the one-entry path of a request (active
backend) against a bare slice assignment.

Standalone: python3 -m tests.bench_iov
"""

from __future__ import annotations

import sys
import timeit

from util import iov as iov_mod
from util.iov import (QEMUIOVector, qemu_iovec_add, qemu_iovec_from_buf,
                      qemu_iovec_init, qemu_iovec_is_zero, qemu_iovec_memset,
                      qemu_iovec_to_buf, set_iov_backend)

SHAPES = [("64x512", 64, 512), ("1x1MiB", 1, 1 << 20)]


def _vector(bufs: list) -> QEMUIOVector:
    qiov = QEMUIOVector()
    qemu_iovec_init(qiov, len(bufs))
    for b in bufs:
        qemu_iovec_add(qiov, b, len(b))
    return qiov


def _ops(qiov: QEMUIOVector, flat: bytearray) -> dict:
    size = qiov.size
    return {
        "to_buf": lambda: qemu_iovec_to_buf(qiov, 0, flat, size),
        "from_buf": lambda: qemu_iovec_from_buf(qiov, 0, flat, size),
        "memset": lambda: qemu_iovec_memset(qiov, 0, 0, size),
        "is_zero": lambda: qemu_iovec_is_zero(qiov),
    }


def _time(fn, budget: float = 0.05) -> float:
    """Best ns per call of fn over a few repeats of about @budget seconds."""
    number = 1
    while True:
        t = timeit.timeit(fn, number=number)
        if t > budget / 5 or number >= 1 << 20:
            break
        number *= 2
    best = min(timeit.repeat(fn, number=number, repeat=5))
    return best / number * 1e9


def _measure(backend: str) -> dict:
    set_iov_backend(backend)
    results = {}
    for shape, count, length in SHAPES:
        bufs = [bytearray(length) for _ in range(count)]
        flat = bytearray(count * length)
        qiov = _vector(bufs)
        for op, fn in _ops(qiov, flat).items():
            fn()
            results[f"{op} {shape} reused"] = _time(fn)
        if count > 1:
            for op in ("to_buf", "is_zero"):
                def fresh(op=op):
                    _ops(_vector(bufs), flat)[op]()
                results[f"{op} {shape} fresh"] = _time(fresh)
    return results


def _single_entry() -> list[tuple[str, float, float]]:
    """The per-request path: one 4 KiB entry against a bare slice copy."""
    buf = bytearray(4096)
    flat = bytearray(4096)
    qiov = _vector([buf])
    view, flat_view = memoryview(buf), memoryview(flat)

    def slice_to():
        flat_view[0:4096] = view

    def slice_from():
        view[0:4096] = flat_view

    ops = _ops(qiov, flat)
    return [("iov to_buf 1x4KiB (qemu_iovec vs slice)",
             _time(ops["to_buf"]), _time(slice_to)),
            ("iov from_buf 1x4KiB (qemu_iovec vs slice)",
             _time(ops["from_buf"]), _time(slice_from))]


def bench_iov() -> list[tuple[str, float, float]]:
    """Rows of (what, C helper ns/op, Python fallback ns/op), then the
    one-entry path against a bare slice assignment; only the latter when
    the helper is not built."""
    saved = iov_mod.IOV_BACKEND
    try:
        try:
            c = _measure("c")
        except ImportError as e:
            print(f"bench_iov: {e}", file=sys.stderr)
            c = {}
        py = _measure("python") if c else {}
    finally:
        set_iov_backend(saved)
    rows = [(f"iov {what} (C vs Python)", c[what], py[what]) for what in c]
    return rows + _single_entry()


def main() -> int:
    rows = bench_iov()
    print(f"{'what':44s} {'port':>12s} {'reference':>12s}  ratio")
    for what, port, ref in rows:
        print(f"{what:44s} {port:9.0f} ns {ref:9.0f} ns  x{port / ref:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
