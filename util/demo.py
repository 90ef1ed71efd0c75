"""A short tour of the foundation: coroutines, a bottom half, a timer and
thread-pool I/O on a real file, all driven by aio_poll.  `make run` runs it.
"""

import os
import tempfile
import time

from util.aio import (aio_bh_new, aio_get_thread_pool, aio_poll,
                      aio_timer_new, qemu_bh_schedule, qemu_get_aio_context)
from util.coroutine import (qemu_coroutine_create, qemu_coroutine_enter,
                            qemu_coroutine_yield)
from util.thread_pool import thread_pool_submit_co
from util.timer import QEMU_CLOCK_REALTIME, SCALE_MS, qemu_clock_get_ms, timer_mod


def main() -> None:
    ctx = qemu_get_aio_context()
    pool = aio_get_thread_pool(ctx)
    start = time.monotonic()
    log = []

    def say(what: str) -> None:
        line = f"[{(time.monotonic() - start) * 1000:7.2f} ms] {what}"
        log.append(line)
        print(line)

    fd, path = tempfile.mkstemp(prefix="pyqemu-demo-", suffix=".img")
    os.ftruncate(fd, 1 << 20)
    done = []

    def writer_and_reader(opaque):
        say("coroutine: started, submitting a 4 KiB pwrite to the thread pool")
        ret = thread_pool_submit_co(
            pool, lambda _: os.pwrite(fd, b"\xab" * 4096, 65536), None)
        say(f"coroutine: pwrite returned {ret}")
        say("coroutine: yielding until the bottom half re-enters it")
        qemu_coroutine_yield()
        ret = thread_pool_submit_co(
            pool, lambda _: len(os.pread(fd, 4096, 65536)), None)
        data = os.pread(fd, 16, 65536)
        say(f"coroutine: pread returned {ret}, first bytes {data[:4].hex()}")
        done.append(True)

    co = qemu_coroutine_create(writer_and_reader)

    def bh_cb(opaque):
        say("bottom half: re-entering the coroutine")
        qemu_coroutine_enter(co)

    bh = aio_bh_new(ctx, bh_cb, None)

    def timer_cb(opaque):
        say("timer: 20 ms passed, scheduling the bottom half")
        qemu_bh_schedule(bh)

    timer = aio_timer_new(ctx, QEMU_CLOCK_REALTIME, SCALE_MS, timer_cb, None)
    qemu_coroutine_enter(co)
    timer_mod(timer, qemu_clock_get_ms(QEMU_CLOCK_REALTIME) + 20)
    say("main loop: armed a 20 ms timer, polling")
    polls = 0
    while not done:
        aio_poll(ctx, True)
        polls += 1
    say(f"main loop: done after {polls} blocking aio_poll calls")
    os.close(fd)
    os.unlink(path)


if __name__ == "__main__":
    main()
