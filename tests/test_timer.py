"""Timers and clocks (qemu-timer.c), and the external clock mode that a
simulator uses.  Not a port of a QEMU test."""

import asyncio
import threading
import time

import pytest

from util.aio import (aio_context_attach_asyncio, aio_context_detach_asyncio,
                      aio_context_new, aio_context_unref, aio_poll,
                      aio_timer_new)
from util.main_loop import main_loop_wait, qemu_notify_event
from util.timer import (QEMU_CLOCK_HOST, QEMU_CLOCK_REALTIME,
                        QEMU_CLOCK_VIRTUAL, SCALE_MS, SCALE_NS, SCALE_US,
                        qemu_clock_get_ms, qemu_clock_get_ns,
                        qemu_clock_get_us, qemu_clock_is_external,
                        qemu_clock_set_external, qemu_clock_set_ns,
                        qemu_clock_step_ns, qemu_clock_warp, timer_del,
                        timer_expire_time_ns, timer_expired, timer_free,
                        timer_mod, timer_mod_anticipate, timer_mod_ns,
                        timer_new_ms, timer_new_ns, timer_pending,
                        timerlistgroup_deadline_ns)


@pytest.fixture
def ctx():
    ctx = aio_context_new()
    yield ctx
    aio_context_unref(ctx)


@pytest.fixture
def external():
    """The virtual clock under the test's control, handed back after."""
    qemu_clock_set_external(QEMU_CLOCK_VIRTUAL, True)
    yield
    qemu_clock_set_external(QEMU_CLOCK_VIRTUAL, False)


def test_clocks_move() -> None:
    for type in (QEMU_CLOCK_REALTIME, QEMU_CLOCK_VIRTUAL, QEMU_CLOCK_HOST):
        assert not qemu_clock_is_external(type)
        a = qemu_clock_get_ns(type)
        time.sleep(0.002)
        b = qemu_clock_get_ns(type)
        assert b - a >= 2 * SCALE_MS
        assert qemu_clock_get_us(type) >= b // SCALE_US
        assert qemu_clock_get_ms(type) >= b // SCALE_MS
    # The host clock is the wall clock.
    assert abs(qemu_clock_get_ns(QEMU_CLOCK_HOST) - time.time_ns()) < 10**9


def test_timer_ordering(ctx, external) -> None:
    """Timers run in expiry order (ties in the order they were armed), each
    reading its own expiry time from the clock when warped to it."""
    now = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL)
    fired = []

    def cb(name):
        fired.append((name, qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL) - now))

    timers = {}
    for name, delay in (("c", 30), ("a", 10), ("b", 20), ("b2", 20),
                        ("gone", 15), ("moved", 5)):
        timers[name] = aio_timer_new(ctx, QEMU_CLOCK_VIRTUAL, SCALE_NS, cb,
                                     name)
        timer_mod(timers[name], now + delay)
    timer_del(timers["gone"])
    timer_mod(timers["moved"], now + 40)
    assert not timer_pending(timers["gone"])
    assert timer_expire_time_ns(timers["gone"]) == -1
    assert timer_expire_time_ns(timers["a"]) == now + 10

    while True:
        while aio_poll(ctx, False):
            pass
        if qemu_clock_warp(QEMU_CLOCK_VIRTUAL) < 0:
            break
    assert fired == [("a", 10), ("b", 20), ("b2", 20), ("c", 30),
                     ("moved", 40)]
    for ts in timers.values():
        assert not timer_pending(ts)
        timer_free(ts)


def test_timer_scales(ctx, external) -> None:
    ts = aio_timer_new(ctx, QEMU_CLOCK_VIRTUAL, SCALE_MS, lambda o: None,
                       None)
    now_ms = qemu_clock_get_ms(QEMU_CLOCK_VIRTUAL)
    timer_mod(ts, now_ms + 3)
    assert timer_expire_time_ns(ts) == (now_ms + 3) * SCALE_MS
    assert not timer_expired(ts, now_ms + 2)
    assert timer_expired(ts, now_ms + 3)
    # Anticipating to a later time keeps the earlier one, and vice versa.
    timer_mod_anticipate(ts, now_ms + 5)
    assert timer_expire_time_ns(ts) == (now_ms + 3) * SCALE_MS
    timer_mod_anticipate(ts, now_ms + 1)
    assert timer_expire_time_ns(ts) == (now_ms + 1) * SCALE_MS
    timer_del(ts)
    timer_mod_anticipate(ts, now_ms + 7)
    assert timer_expire_time_ns(ts) == (now_ms + 7) * SCALE_MS
    timer_free(ts)
    assert not timer_pending(ts)


def test_external_clock_step(ctx, external) -> None:
    t0 = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL)
    time.sleep(0.005)
    assert qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL) == t0
    qemu_clock_step_ns(QEMU_CLOCK_VIRTUAL, 123)
    assert qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL) == t0 + 123
    qemu_clock_set_ns(QEMU_CLOCK_VIRTUAL, t0 + 1000)
    assert qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL) == t0 + 1000
    with pytest.raises(AssertionError):
        qemu_clock_set_ns(QEMU_CLOCK_VIRTUAL, t0)
    # The other clocks still follow the host.
    assert not qemu_clock_is_external(QEMU_CLOCK_REALTIME)

    # Stepping runs nothing by itself; the context's next poll does.
    fired = []
    ts = aio_timer_new(ctx, QEMU_CLOCK_VIRTUAL, SCALE_NS, fired.append, 1)
    timer_mod_ns(ts, t0 + 1000 + 10 * SCALE_MS)
    while aio_poll(ctx, False):
        pass
    qemu_clock_step_ns(QEMU_CLOCK_VIRTUAL, 10 * SCALE_MS - 1)
    assert not aio_poll(ctx, False)
    qemu_clock_step_ns(QEMU_CLOCK_VIRTUAL, 1)
    assert fired == []
    assert aio_poll(ctx, False)
    assert fired == [1]
    timer_free(ts)


def test_external_clock_handback() -> None:
    qemu_clock_set_external(QEMU_CLOCK_VIRTUAL, True)
    far = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL) + 3600 * 10**9
    qemu_clock_set_ns(QEMU_CLOCK_VIRTUAL, far)
    qemu_clock_set_external(QEMU_CLOCK_VIRTUAL, False)
    # Resumes from where it was left and moves with the host again.
    a = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL)
    assert far <= a < far + 10**9
    time.sleep(0.002)
    assert qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL) >= a + 2 * SCALE_MS


def test_external_blocking_poll_does_not_sleep(ctx, external) -> None:
    fired = []
    ts = aio_timer_new(ctx, QEMU_CLOCK_VIRTUAL, SCALE_NS, fired.append, 1)
    timer_mod(ts, qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL) + 3600 * 10**9)
    while aio_poll(ctx, False):
        pass
    # Only moving the clock could end the wait: it must not sleep.
    assert timerlistgroup_deadline_ns(ctx.tlg) == -1
    start = time.monotonic()
    assert not aio_poll(ctx, True)
    assert time.monotonic() - start < 5
    assert qemu_clock_warp(QEMU_CLOCK_VIRTUAL) == 3600 * 10**9
    assert timerlistgroup_deadline_ns(ctx.tlg) == 0
    assert aio_poll(ctx, True)
    assert fired == [1]
    assert qemu_clock_warp(QEMU_CLOCK_VIRTUAL) == -1
    timer_free(ts)


def test_external_warp_when_idle(ctx) -> None:
    """A synchronous wait (aio_poll(ctx, True) in a loop) on a virtual timer
    finishes in simulated time when the clock warps when idle."""
    qemu_clock_set_external(QEMU_CLOCK_VIRTUAL, True, warp_when_idle=True)
    try:
        t0 = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL)
        fired = []
        ts = aio_timer_new(ctx, QEMU_CLOCK_VIRTUAL, SCALE_NS,
                           lambda o: fired.append(
                               qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL)), None)
        timer_mod(ts, t0 + 3600 * 10**9)
        while not fired:
            aio_poll(ctx, True)
        assert fired == [t0 + 3600 * 10**9]
        timer_free(ts)
    finally:
        qemu_clock_set_external(QEMU_CLOCK_VIRTUAL, False)


def test_external_warp_across_contexts(external) -> None:
    """qemu_clock_warp stops at the earliest deadline of any context."""
    ctx1 = aio_context_new()
    ctx2 = aio_context_new()
    t0 = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL)
    fired = []
    ts1 = aio_timer_new(ctx1, QEMU_CLOCK_VIRTUAL, SCALE_NS, fired.append, 1)
    ts2 = aio_timer_new(ctx2, QEMU_CLOCK_VIRTUAL, SCALE_NS, fired.append, 2)
    timer_mod(ts1, t0 + 700)
    timer_mod(ts2, t0 + 300)
    assert qemu_clock_warp(QEMU_CLOCK_VIRTUAL) == 300
    assert aio_poll(ctx1, False) is False
    assert aio_poll(ctx2, False)
    assert qemu_clock_warp(QEMU_CLOCK_VIRTUAL) == 400
    assert qemu_clock_warp(QEMU_CLOCK_VIRTUAL) == 0   # not run yet
    assert aio_poll(ctx1, False)
    assert fired == [2, 1]
    assert qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL) == t0 + 700
    timer_free(ts1)
    timer_free(ts2)
    aio_context_unref(ctx1)
    aio_context_unref(ctx2)


def test_asyncio_external_clock(ctx, external) -> None:
    """Under asyncio a pending external timer arms nothing (no busy loop);
    moving the clock wakes the loop, which runs the timer."""
    loop = asyncio.new_event_loop()
    src = aio_context_attach_asyncio(ctx, loop)
    try:
        fired = []
        ts = aio_timer_new(ctx, QEMU_CLOCK_VIRTUAL, SCALE_NS, fired.append, 1)
        timer_mod(ts, qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL) + 10**9)

        async def main() -> None:
            await asyncio.sleep(0.01)
            assert src.soon_handle is None and src.timer_handle is None
            assert fired == []
            threading.Thread(target=qemu_clock_step_ns,
                             args=(QEMU_CLOCK_VIRTUAL, 10**9)).start()
            while not fired:
                await asyncio.sleep(0.001)

        loop.run_until_complete(asyncio.wait_for(main(), 10))
        assert fired == [1]
        timer_free(ts)
    finally:
        aio_context_detach_asyncio(ctx)
        loop.close()


def test_main_loop_timer() -> None:
    """timer_new_*() timers belong to the main loop: main_loop_wait runs
    them, aio_poll on the main AioContext does not."""
    fired = []
    ts = timer_new_ms(QEMU_CLOCK_REALTIME, fired.append, 1)
    timer_mod(ts, qemu_clock_get_ms(QEMU_CLOCK_REALTIME) + 20)
    deadline = time.monotonic() + 10
    while not fired and time.monotonic() < deadline:
        main_loop_wait(False)
    assert fired == [1]
    timer_free(ts)


def test_main_loop_notify_from_thread() -> None:
    """qemu_notify_event from another thread ends a blocking
    main_loop_wait (here the guard timer would end it after 10 s)."""
    guard = timer_new_ns(QEMU_CLOCK_REALTIME, lambda o: None, None)
    timer_mod(guard, qemu_clock_get_ns(QEMU_CLOCK_REALTIME) + 10**10)
    while main_loop_wait(True):
        pass
    thread = threading.Thread(target=lambda: (time.sleep(0.01),
                                              qemu_notify_event()))
    start = time.monotonic()
    thread.start()
    assert main_loop_wait(False) == 1
    assert time.monotonic() - start < 5
    thread.join()
    timer_free(guard)
