"""AioContext figures: what a block-layer request pays to complete through
a bottom half, and through the thread pool.

Rows are (what, port ns/op, reference ns/op):
- bh schedule + aio_poll(ctx, false), and the same with a blocking
  aio_poll (a bh is ready, so it does not sleep), against one bare
  poll(timeout 0) on the context's eventfd: the system call that
  aio_poll cannot avoid;
- the same bh under asyncio (schedule + one loop iteration) against
  loop.call_soon + one loop iteration;
- thread_pool_submit_aio of an empty function until its completion
  callback ran, against concurrent.futures' submit + result().

Run alone with `python -m tests.bench_aio`; `make bench` prints them with
the other figures.
"""

import asyncio
import select
import time
from concurrent.futures import ThreadPoolExecutor

from util.aio import (aio_bh_new, aio_context_attach_asyncio,
                      aio_context_detach_asyncio, aio_context_new,
                      aio_context_unref, aio_get_thread_pool, aio_poll,
                      qemu_bh_delete, qemu_bh_schedule)
from util.event_notifier import event_notifier_get_fd
from util.thread_pool import thread_pool_submit_aio


def _best_ns_per_op(loop, n: int, repeat: int = 5) -> float:
    """The fastest of `repeat` runs of loop(n), in ns per iteration."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter_ns()
        loop(n)
        best = min(best, (time.perf_counter_ns() - start) / n)
    return best


def _nop(opaque) -> None:
    pass


def bench_aio() -> list:
    """Rows of (what, port ns/op, reference ns/op)."""
    ctx = aio_context_new()
    bh = aio_bh_new(ctx, _nop, None)

    def bh_poll(n: int, blocking: bool) -> None:
        for _ in range(n):
            qemu_bh_schedule(bh)
            aio_poll(ctx, blocking)

    bare = select.poll()
    bare.register(event_notifier_get_fd(ctx.notifier), select.POLLIN)

    def bare_poll(n: int) -> None:
        for _ in range(n):
            bare.poll(0)

    nonblocking = _best_ns_per_op(lambda n: bh_poll(n, False), 100_000)
    blocking = _best_ns_per_op(lambda n: bh_poll(n, True), 100_000)
    syscall = _best_ns_per_op(bare_poll, 100_000)

    loop = asyncio.new_event_loop()

    def asyncio_bh(n: int) -> None:
        for _ in range(n):
            qemu_bh_schedule(bh)
            loop.call_soon(loop.stop)
            loop.run_forever()

    def asyncio_call_soon(n: int) -> None:
        for _ in range(n):
            loop.call_soon(_nop, None)
            loop.call_soon(loop.stop)
            loop.run_forever()

    plain = _best_ns_per_op(asyncio_call_soon, 20_000)
    aio_context_attach_asyncio(ctx, loop)
    embedded = _best_ns_per_op(asyncio_bh, 20_000)
    aio_context_detach_asyncio(ctx)
    loop.close()
    qemu_bh_delete(bh)

    pool = aio_get_thread_pool(ctx)
    done = [0]

    def count(opaque, ret: int) -> None:
        done[0] += 1

    def pool_roundtrip(n: int) -> None:
        for i in range(n):
            thread_pool_submit_aio(pool, _nop, None, count, None)
            while done[0] <= i:
                aio_poll(ctx, True)
        done[0] = 0

    def executor_roundtrip(n: int) -> None:
        for _ in range(n):
            executor.submit(_nop, None).result()

    with ThreadPoolExecutor(max_workers=64) as executor:
        futures = _best_ns_per_op(executor_roundtrip, 5_000)
    submit = _best_ns_per_op(pool_roundtrip, 5_000)
    while aio_poll(ctx, False):
        pass
    aio_context_unref(ctx)

    return [
        ("aio bh schedule + aio_poll(false) vs bare poll(0)", nonblocking,
         syscall),
        ("aio bh schedule + aio_poll(true) vs bare poll(0)", blocking,
         syscall),
        ("aio bh schedule + asyncio iteration vs call_soon + iteration",
         embedded, plain),
        ("thread pool submit_aio + completion vs futures submit+result",
         submit, futures),
    ]


def print_rows(rows) -> None:
    for what, port, ref in rows:
        print(f"{what:58s} {port:9.0f} ns {ref:9.0f} ns  x{port / ref:5.2f}")


if __name__ == "__main__":
    print_rows(bench_aio())
