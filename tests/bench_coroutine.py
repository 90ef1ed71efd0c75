"""Coroutine figures (the /perf cases of tests/test-coroutine.c become these):
enter+yield against a raw greenlet switch pair, and a pooled
create+enter+terminate against creating a raw greenlet.

Run alone with `python -m tests.bench_coroutine`; `make bench` prints them
with the other figures.
"""

import time

from greenlet import getcurrent, greenlet

from util.coroutine import (qemu_coroutine_create, qemu_coroutine_enter,
                            qemu_coroutine_yield)


def _best_ns_per_op(loop, n: int, repeat: int = 5) -> float:
    """The fastest of `repeat` runs of loop(n), in ns per iteration."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter_ns()
        loop(n)
        best = min(best, (time.perf_counter_ns() - start) / n)
    return best


def raw_switch_pair(n: int) -> None:
    def body(main):
        while True:
            main.switch()

    g = greenlet(body)
    g.switch(getcurrent())
    for _ in range(n):
        g.switch()


def enter_yield(n: int) -> None:
    def body(opaque):
        while True:
            qemu_coroutine_yield()

    co = qemu_coroutine_create(body)
    for _ in range(n):
        qemu_coroutine_enter(co)


def raw_greenlet_create(n: int) -> None:
    def body():
        pass

    for _ in range(n):
        greenlet(body).switch()


def pooled_lifecycle(n: int) -> None:
    def empty_coroutine(opaque):
        pass

    for _ in range(n):
        qemu_coroutine_enter(qemu_coroutine_create(empty_coroutine))


def bench_coroutine() -> list[tuple[str, float, float]]:
    """Rows of (what, port ns/op, reference ns/op)."""
    pair = _best_ns_per_op(raw_switch_pair, 200_000)
    ours = _best_ns_per_op(enter_yield, 200_000)
    raw_create = _best_ns_per_op(raw_greenlet_create, 20_000)
    pooled = _best_ns_per_op(pooled_lifecycle, 200_000)
    return [
        ("coroutine enter+yield vs raw greenlet switch pair", ours, pair),
        ("pooled create+enter+terminate vs raw greenlet create", pooled,
         raw_create),
    ]


def print_rows(rows) -> None:
    for what, port, ref in rows:
        print(f"{what:58s} {port:9.0f} ns {ref:9.0f} ns  x{port / ref:5.2f}")


if __name__ == "__main__":
    print_rows(bench_coroutine())
