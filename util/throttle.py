"""I/O throttling with leaky buckets: the Python twin of QEMU's util/throttle.c
and include/qemu/throttle.h (v2.5.0).

Six buckets (bytes and operations; total, read and write) fill up with each
request accounted and leak at their average rate.  A request may run while
every bucket that concerns it is at or below its burst size ``max``; when
one is above, the caller waits until enough has leaked, on a timer of the
ThrottleTimers' clock.  On QEMU_CLOCK_VIRTUAL driven from outside, throttling
is exact and repeatable: nothing but the program moves the time.

Each bucket may also carry QEMU 2.6's burst length (the -max-length
options of 2.6 and of the installed QEMU 7.2): with burst_length > 1,
``max`` is a burst *rate* that may be sustained for burst_length seconds,
tracked in burst_level.  With the default length of 1 every function here
behaves exactly as in 2.5.

Struct assignment of the C (``ts->cfg = *cfg``) copies; here that is
ThrottleConfig.copy(), so that a caller's configuration is never shared
with a ThrottleState.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from util.aio import aio_timer_new
from util.timer import (SCALE_NS, QEMUTimer, qemu_clock_get_ns, timer_del,
                        timer_free, timer_mod, timer_pending)

NANOSECONDS_PER_SECOND = 1000000000

# enum BucketType
THROTTLE_BPS_TOTAL = 0
THROTTLE_BPS_READ = 1
THROTTLE_BPS_WRITE = 2
THROTTLE_OPS_TOTAL = 3
THROTTLE_OPS_READ = 4
THROTTLE_OPS_WRITE = 5
BUCKETS_COUNT = 6


class LeakyBucket:
    """One bucket; ``max`` is the burst that may pass without waiting."""
    __slots__ = ("avg", "max", "level", "burst_level", "burst_length")

    def __init__(self, avg: float = 0, max: float = 0,
                 level: float = 0) -> None:
        self.avg = avg          # average goal in units per second
        self.max = max          # burst size in units (a rate if length > 1)
        self.level = level      # units accounted and not yet leaked
        self.burst_level = 0.0  # the same, leaking at max (length > 1)
        self.burst_length = 1   # seconds the burst rate max may last

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, LeakyBucket) and self.avg == other.avg
                and self.max == other.max and self.level == other.level
                and self.burst_level == other.burst_level
                and self.burst_length == other.burst_length)

    def __repr__(self) -> str:
        return ("LeakyBucket(avg=%r, max=%r, level=%r, burst_level=%r, "
                "burst_length=%r)" % (self.avg, self.max, self.level,
                                      self.burst_level, self.burst_length))


class ThrottleConfig:
    """The limits, plus the levels (reset by throttle_config)."""
    __slots__ = ("buckets", "op_size")

    def __init__(self) -> None:
        self.buckets = [LeakyBucket() for _ in range(BUCKETS_COUNT)]
        self.op_size = 0        # bytes counted as one operation, 0: any size

    def copy(self) -> "ThrottleConfig":
        cfg = ThrottleConfig()
        cfg.assign(self)
        return cfg

    def assign(self, src: "ThrottleConfig") -> None:
        """C's ``*self = *src``."""
        for dst_bkt, src_bkt in zip(self.buckets, src.buckets):
            dst_bkt.avg = src_bkt.avg
            dst_bkt.max = src_bkt.max
            dst_bkt.level = src_bkt.level
            dst_bkt.burst_level = src_bkt.burst_level
            dst_bkt.burst_length = src_bkt.burst_length
        self.op_size = src.op_size

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ThrottleConfig)
                and self.buckets == other.buckets
                and self.op_size == other.op_size)

    def __repr__(self) -> str:
        return "ThrottleConfig(buckets=%r, op_size=%r)" % (self.buckets,
                                                           self.op_size)


class ThrottleState:
    __slots__ = ("cfg", "previous_leak")

    def __init__(self) -> None:
        self.cfg = ThrottleConfig()
        self.previous_leak = 0  # clock time (ns) of the last leak


class ThrottleTimers:
    """The two timers (reads, writes) of one user, in its AioContext."""
    __slots__ = ("timers", "clock_type", "read_timer_cb", "write_timer_cb",
                 "timer_opaque")

    def __init__(self) -> None:
        self.timers: list[Optional[QEMUTimer]] = [None, None]
        self.clock_type = 0
        self.read_timer_cb: Optional[Callable[[Any], None]] = None
        self.write_timer_cb: Optional[Callable[[Any], None]] = None
        self.timer_opaque: Any = None


def throttle_config_init(cfg: ThrottleConfig) -> None:
    """Reset cfg to no limits and burst lengths of 1 (QEMU 2.6; the 2.5
    callers memset it)."""
    cfg.assign(ThrottleConfig())


def throttle_leak_bucket(bkt: LeakyBucket, delta_ns: int) -> None:
    leak = (bkt.avg * float(delta_ns)) / NANOSECONDS_PER_SECOND
    bkt.level = max(bkt.level - leak, 0)
    # a burst longer than a second is bounded by the burst rate too
    if bkt.burst_length > 1:
        leak = (bkt.max * float(delta_ns)) / NANOSECONDS_PER_SECOND
        bkt.burst_level = max(bkt.burst_level - leak, 0)


def throttle_do_leak(ts: ThrottleState, now: int) -> None:
    """Leak every bucket for the time since the previous leak."""
    delta_ns = now - ts.previous_leak
    ts.previous_leak = now
    if delta_ns <= 0:
        return
    for bkt in ts.cfg.buckets:
        throttle_leak_bucket(bkt, delta_ns)


def throttle_do_compute_wait(limit: float, extra: float) -> int:
    """Nanoseconds for `extra` units to leak at `limit` units a second;
    truncated toward zero as C's double-to-int64 conversion is."""
    wait = extra * NANOSECONDS_PER_SECOND
    wait /= limit
    return int(wait)


def throttle_compute_wait(bkt: LeakyBucket) -> int:
    """The wait (ns) before the bucket is back at its burst size, 0 if it
    already is or has no limit."""
    if not bkt.avg:
        return 0
    if bkt.burst_length > 1:
        # QEMU 2.6: the rate max may last burst_length seconds (the main
        # bucket holds that much), and meanwhile the burst bucket, of a
        # tenth of a second at rate max, keeps the rate at max.
        extra = bkt.level - bkt.max * bkt.burst_length
        if extra > 0:
            return throttle_do_compute_wait(bkt.avg, extra)
        extra = bkt.burst_level - bkt.max / 10
        if extra > 0:
            return throttle_do_compute_wait(bkt.max, extra)
        return 0
    extra = bkt.level - bkt.max
    if extra <= 0:
        return 0
    return throttle_do_compute_wait(bkt.avg, extra)


# The buckets a read (index 0) or a write (index 1) must respect.
_to_check = (
    (THROTTLE_BPS_TOTAL, THROTTLE_OPS_TOTAL,
     THROTTLE_BPS_READ, THROTTLE_OPS_READ),
    (THROTTLE_BPS_TOTAL, THROTTLE_OPS_TOTAL,
     THROTTLE_BPS_WRITE, THROTTLE_OPS_WRITE),
)


def throttle_compute_wait_for(ts: ThrottleState, is_write: bool) -> int:
    """The longest wait among the buckets this kind of request uses."""
    max_wait = 0
    buckets = ts.cfg.buckets
    for index in _to_check[is_write]:
        wait = throttle_compute_wait(buckets[index])
        if wait > max_wait:
            max_wait = wait
    return max_wait


def throttle_compute_timer(ts: ThrottleState, is_write: bool, now: int,
                           next_timestamp: list) -> bool:
    """Leak up to `now`, then store in next_timestamp[0] when the request
    may run; return whether it has to wait."""
    throttle_do_leak(ts, now)
    wait = throttle_compute_wait_for(ts, is_write)
    if wait:
        next_timestamp[0] = now + wait
        return True
    next_timestamp[0] = now
    return False


def throttle_timers_attach_aio_context(tt: ThrottleTimers,
                                       new_context: Any) -> None:
    tt.timers[0] = aio_timer_new(new_context, tt.clock_type, SCALE_NS,
                                 tt.read_timer_cb, tt.timer_opaque)
    tt.timers[1] = aio_timer_new(new_context, tt.clock_type, SCALE_NS,
                                 tt.write_timer_cb, tt.timer_opaque)


def throttle_init(ts: ThrottleState) -> None:
    """To be called first on a ThrottleState (C: memset to 0)."""
    ts.cfg = ThrottleConfig()
    ts.previous_leak = 0


def throttle_timers_init(tt: ThrottleTimers, aio_context: Any,
                         clock_type: int,
                         read_timer_cb: Callable[[Any], None],
                         write_timer_cb: Callable[[Any], None],
                         timer_opaque: Any) -> None:
    """To be called first on a ThrottleTimers: create both timers."""
    tt.timers = [None, None]
    tt.clock_type = clock_type
    tt.read_timer_cb = read_timer_cb
    tt.write_timer_cb = write_timer_cb
    tt.timer_opaque = timer_opaque
    throttle_timers_attach_aio_context(tt, aio_context)


def throttle_timer_destroy(timers: list, i: int) -> None:
    """Delete and free timers[i] (C passes QEMUTimer **)."""
    timer = timers[i]
    assert timer is not None
    timer_del(timer)
    timer_free(timer)
    timers[i] = None


def throttle_timers_detach_aio_context(tt: ThrottleTimers) -> None:
    for i in range(2):
        throttle_timer_destroy(tt.timers, i)


def throttle_timers_destroy(tt: ThrottleTimers) -> None:
    """To be called last on a ThrottleTimers."""
    throttle_timers_detach_aio_context(tt)


def throttle_timers_are_initialized(tt: ThrottleTimers) -> bool:
    return tt.timers[0] is not None


def throttle_enabled(cfg: ThrottleConfig) -> bool:
    """Whether any limit is set."""
    for bkt in cfg.buckets:
        if bkt.avg > 0:
            return True
    return False


def throttle_conflicting(cfg: ThrottleConfig) -> bool:
    """A total limit may not be combined with a read or write limit of the
    same kind (average or burst, bytes or operations)."""
    b = cfg.buckets
    bps_flag = bool(b[THROTTLE_BPS_TOTAL].avg and
                    (b[THROTTLE_BPS_READ].avg or b[THROTTLE_BPS_WRITE].avg))
    ops_flag = bool(b[THROTTLE_OPS_TOTAL].avg and
                    (b[THROTTLE_OPS_READ].avg or b[THROTTLE_OPS_WRITE].avg))
    bps_max_flag = bool(b[THROTTLE_BPS_TOTAL].max and
                        (b[THROTTLE_BPS_READ].max or
                         b[THROTTLE_BPS_WRITE].max))
    ops_max_flag = bool(b[THROTTLE_OPS_TOTAL].max and
                        (b[THROTTLE_OPS_READ].max or
                         b[THROTTLE_OPS_WRITE].max))
    return bps_flag or ops_flag or bps_max_flag or ops_max_flag


def throttle_is_valid(cfg: ThrottleConfig) -> bool:
    """No negative limit or burst."""
    for bkt in cfg.buckets:
        if bkt.avg < 0 or bkt.max < 0:
            return False
    return True


def throttle_max_is_missing_limit(cfg: ThrottleConfig) -> bool:
    """A burst size without the average limit it belongs to."""
    for bkt in cfg.buckets:
        if bkt.max and not bkt.avg:
            return True
    return False


def throttle_fix_bucket(bkt: LeakyBucket) -> None:
    """Empty the bucket and give it a burst of a tenth of a second when
    none is set: a guest's I/O scheduler (CFQ) batches reads and writes by
    about 100 ms, and such batches should not be throttled one by one."""
    bkt.level = 0
    bkt.burst_level = 0
    min_ = bkt.avg / 10
    if bkt.avg and not bkt.max:
        bkt.max = min_


def throttle_cancel_timer(timer: QEMUTimer) -> None:
    assert timer is not None
    timer_del(timer)


def throttle_config(ts: ThrottleState, tt: ThrottleTimers,
                    cfg: ThrottleConfig) -> None:
    """Set a copy of cfg (buckets fixed and emptied) and cancel the
    timers; the leak restarts from now."""
    ts.cfg.assign(cfg)
    for bkt in ts.cfg.buckets:
        throttle_fix_bucket(bkt)
    ts.previous_leak = qemu_clock_get_ns(tt.clock_type)
    for i in range(2):
        throttle_cancel_timer(tt.timers[i])


def throttle_get_config(ts: ThrottleState, cfg: ThrottleConfig) -> None:
    """Copy the configuration in use into cfg."""
    cfg.assign(ts.cfg)


def throttle_schedule_timer(ts: ThrottleState, tt: ThrottleTimers,
                            is_write: bool) -> bool:
    """Whether the request must wait; if so, make sure the timer of its
    kind is armed (an armed timer is left as it is)."""
    now = qemu_clock_get_ns(tt.clock_type)
    next_timestamp = [0]
    must_wait = throttle_compute_timer(ts, is_write, now, next_timestamp)
    if not must_wait:
        return False
    timer = tt.timers[is_write]
    if timer_pending(timer):
        return True
    timer_mod(timer, next_timestamp[0])
    return True


def throttle_account(ts: ThrottleState, is_write: bool, size: int) -> None:
    """Fill the buckets with a request of `size` bytes; with op_size set, a
    larger request counts as size / op_size operations."""
    units = 1.0
    if ts.cfg.op_size and size > ts.cfg.op_size:
        units = float(size) / ts.cfg.op_size
    b = ts.cfg.buckets
    if is_write:
        fill = ((THROTTLE_BPS_TOTAL, size), (THROTTLE_OPS_TOTAL, units),
                (THROTTLE_BPS_WRITE, size), (THROTTLE_OPS_WRITE, units))
    else:
        fill = ((THROTTLE_BPS_TOTAL, size), (THROTTLE_OPS_TOTAL, units),
                (THROTTLE_BPS_READ, size), (THROTTLE_OPS_READ, units))
    for index, amount in fill:
        bkt = b[index]
        bkt.level += amount
        if bkt.burst_length > 1:
            bkt.burst_level += amount
