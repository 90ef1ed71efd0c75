"""The main loop (main-loop.c).

QEMU's main loop is glib's: main_loop_wait() polls the main AioContext (as
a GSource) together with the other sources, then runs the timers of
main_loop_tlg, i.e. those made by timer_new*().  Here the main AioContext,
qemu_get_aio_context() (in util.aio, where the project's modules look for
it), is the only source.
"""

from util.aio import (aio_context_acquire, aio_context_release,
                      aio_ctx_check, aio_ctx_dispatch, aio_ctx_prepare,
                      aio_notify, aio_poll_fds, qemu_get_aio_context)
from util.timer import (main_loop_tlg, qemu_clock_run_all_timers,
                        qemu_soonest_timeout, timerlistgroup_deadline_ns,
                        timerlistgroup_has_external_timers,
                        timerlistgroup_warp_idle)


def qemu_notify_event() -> None:
    """Wake main_loop_wait() up (from any thread)."""
    aio_notify(qemu_get_aio_context())


def os_host_main_loop_wait(timeout: int) -> int:
    """One glib iteration with the main AioContext as the only source:
    prepare, poll for at most timeout ns, check, dispatch."""
    ctx = qemu_get_aio_context()
    assert ctx.source is None, "main AioContext is attached to asyncio"
    aio_context_acquire(ctx)
    timeout = qemu_soonest_timeout(timeout, aio_ctx_prepare(ctx))
    idle_warp = False
    if timeout and (timerlistgroup_has_external_timers(ctx.tlg) or
                    timerlistgroup_has_external_timers(main_loop_tlg)):
        # Never sleep on the host clock for an external one (util/timer.py).
        timeout = 0
        idle_warp = True
    ctx.walking_handlers += 1
    if timeout:
        aio_context_release(ctx)
    ret = aio_poll_fds(ctx, timeout)
    if timeout:
        aio_context_acquire(ctx)
    ctx.walking_handlers -= 1
    if aio_ctx_check(ctx):
        aio_ctx_dispatch(ctx)
    elif idle_warp and (timerlistgroup_warp_idle(ctx.tlg) |
                        timerlistgroup_warp_idle(main_loop_tlg)):
        # nothing else can happen: warp as aio_poll does; main_loop_wait
        # runs the main loop's timers next
        aio_ctx_dispatch(ctx)
    aio_context_release(ctx)
    return ret


def main_loop_wait(nonblocking: bool) -> int:
    """Wait for and run the next events of the main loop (all of them if
    nonblocking); returns the number of ready fds."""
    timeout_ns = 0 if nonblocking else -1
    timeout_ns = qemu_soonest_timeout(timeout_ns,
                                      timerlistgroup_deadline_ns(main_loop_tlg))
    ret = os_host_main_loop_wait(timeout_ns)
    qemu_clock_run_all_timers()
    return ret
