"""Throttling through the block layer, on the virtual clock in external
mode: nothing but the test moves the time, so every figure is exact.

A stream is a coroutine issuing requests one after the other on a null-co
image; it records the virtual time at which each request completes (null-co
completes at once, so that is when the throttle let it through).  The event
loop runs what is ready, then warps the clock to the next timer.
"""

import pytest

import drivers.throttle  # noqa: F401 (registers the driver)
from block import block_backend, core, io
from block.block_int import BDRV_O_RDWR, BDRV_SECTOR_SIZE
from block.throttle_groups import (blockdev_throttle_setup,
                                   check_throttle_config,
                                   extract_throttle_options,
                                   throttle_group_exists,
                                   throttle_group_get_config,
                                   throttle_group_get_name,
                                   throttle_group_obj_add,
                                   throttle_group_obj_del, throttle_groups)
from util.aio import aio_poll, qemu_get_aio_context
from util.coroutine import qemu_coroutine_create, qemu_coroutine_enter
from util.error import error_abort
from util.iov import QEMUIOVector, qemu_iovec_init_external
from util.throttle import (NANOSECONDS_PER_SECOND, THROTTLE_BPS_READ,
                           THROTTLE_BPS_TOTAL, THROTTLE_BPS_WRITE,
                           THROTTLE_OPS_READ, THROTTLE_OPS_TOTAL,
                           THROTTLE_OPS_WRITE, ThrottleConfig)
from util.timer import (QEMU_CLOCK_REALTIME, QEMU_CLOCK_VIRTUAL,
                        qemu_clock_get_ns, qemu_clock_set_external,
                        qemu_clock_warp)


@pytest.fixture(autouse=True)
def virtual_clock():
    """The test drives QEMU_CLOCK_VIRTUAL (QEMU: qtest); the groups'
    timers then use it."""
    qemu_clock_set_external(QEMU_CLOCK_VIRTUAL, True)
    yield
    qemu_clock_set_external(QEMU_CLOCK_VIRTUAL, False)
    left = [tg.name for tg in throttle_groups]
    throttle_groups.clear()
    assert not left, "groups left behind"


def open_null(size: int = 1 << 30):
    pbs = [None]
    ret = core.bdrv_open(pbs, None, None,
                         {"driver": "null-co", "size": size},
                         BDRV_O_RDWR, error_abort)
    assert ret == 0
    return pbs[0]


def limits(group: str, *bss, op_size: int = 0, **buckets):
    """Put bss in `group` with the given avg/max(/burst length) values,
    for example limits("g", bs, ops_total=(100, 0))."""
    cfg = ThrottleConfig()
    names = {"bps_total": THROTTLE_BPS_TOTAL, "bps_read": THROTTLE_BPS_READ,
             "bps_write": THROTTLE_BPS_WRITE, "ops_total": THROTTLE_OPS_TOTAL,
             "ops_read": THROTTLE_OPS_READ, "ops_write": THROTTLE_OPS_WRITE}
    for name, (avg, max_, *length) in buckets.items():
        cfg.buckets[names[name]].avg = avg
        cfg.buckets[names[name]].max = max_
        cfg.buckets[names[name]].burst_length = length[0] if length else 1
    cfg.op_size = op_size
    for bs in bss:
        io.bdrv_io_limits_enable(bs, group)
    io.bdrv_set_io_limits(bss[0], cfg)


class Stream:
    """`count` requests of `size` bytes, one after the other."""

    def __init__(self, bs, is_write: bool, size: int, count: int) -> None:
        self.bs = bs
        self.is_write = is_write
        self.size = size
        self.count = count
        self.times: list[int] = []
        self.rets: list[int] = []
        self.done = False
        self.co = qemu_coroutine_create(stream_entry)

    def start(self) -> "Stream":
        qemu_coroutine_enter(self.co, self)
        return self


def stream_entry(st: Stream) -> None:
    buf = bytearray(st.size)
    nb_sectors = st.size // BDRV_SECTOR_SIZE
    for i in range(st.count):
        qiov = QEMUIOVector()
        qemu_iovec_init_external(qiov, [memoryview(buf)], 1)
        if st.is_write:
            ret = io.bdrv_co_writev(st.bs, i * nb_sectors, nb_sectors, qiov)
        else:
            ret = io.bdrv_co_readv(st.bs, i * nb_sectors, nb_sectors, qiov)
        st.rets.append(ret)
        st.times.append(qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL))
    st.done = True


def run(streams) -> None:
    """The simulator's loop: run what is ready, then move the clock to the
    next timer, until every stream is done."""
    ctx = qemu_get_aio_context()
    while True:
        while aio_poll(ctx, False):
            pass
        if all(st.done for st in streams):
            break
        assert qemu_clock_warp(QEMU_CLOCK_VIRTUAL) >= 0, "stuck"
    for st in streams:
        assert st.rets == [0] * st.count


def close(*bss) -> None:
    for bs in bss:
        core.bdrv_unref(bs)


def check_rate(times: list[int], t0: int, units: float, avg: float,
               max_: float, slack: int = 0) -> None:
    """Request n (from 0) is let through as soon as the bucket, filled
    with the n requests before it and leaking since t0, is back at its
    burst size: at t0 + max(0, n * units - max_) / avg.  The burst passes
    at t0, not one request more; after it, each request comes to the
    nanosecond (C truncates each wait to whole ns, and the bucket keeps the
    remainder, so the errors do not add up).  With `slack`, a request may
    come up to that many requests' time early or late."""
    tolerance = 2 + slack * units * NANOSECONDS_PER_SECOND / avg
    burst = int(max_ // units) + 1
    assert times[:burst] == [t0] * burst
    assert times[burst] > t0
    for n, t in enumerate(times):
        expected = t0 + max(0.0, (n * units - max_) * NANOSECONDS_PER_SECOND
                            / avg)
        assert abs(t - expected) <= tolerance, (n, t, expected)


# --- one image against each kind of limit ---------------------------------

SIZE = 4096

# bucket, avg, is_write of the stream, units a request counts for
KINDS = [
    ("bps_total", 1 << 20, False, SIZE),
    ("bps_total", 1 << 20, True, SIZE),
    ("bps_read", 3 << 20, False, SIZE),
    ("bps_write", 640 * 1024, True, SIZE),
    ("ops_total", 100, False, 1),
    ("ops_total", 300, True, 1),
    ("ops_read", 250, False, 1),
    ("ops_write", 70, True, 1),
]


@pytest.mark.parametrize("bucket,avg,is_write,units", KINDS)
def test_rate(bucket, avg, is_write, units):
    bs = open_null()
    limits("rate", bs, **{bucket: (avg, 0)})
    t0 = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL)
    st = Stream(bs, is_write, SIZE, 200).start()
    run([st])

    # with no burst size set, the bucket holds a tenth of a second
    check_rate(st.times, t0, units, avg, avg / 10)
    # so the rate, past the burst, is the configured one
    achieved = ((len(st.times) - 1) * units - avg / 10) * \
        NANOSECONDS_PER_SECOND / (st.times[-1] - t0)
    assert achieved == pytest.approx(avg, rel=1e-6)
    close(bs)


@pytest.mark.parametrize("bucket,is_write", [
    ("bps_read", True), ("bps_write", False),
    ("ops_read", True), ("ops_write", False)])
def test_other_direction_unthrottled(bucket, is_write):
    bs = open_null()
    limits("other", bs, **{bucket: (10, 0)})
    st = Stream(bs, is_write, SIZE, 50).start()
    run([st])
    assert st.times == [st.times[0]] * 50
    close(bs)


def test_total_counts_both_directions():
    bs = open_null()
    limits("total", bs, ops_total=(100, 0))
    t0 = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL)
    reads = Stream(bs, False, SIZE, 100)
    writes = Stream(bs, True, SIZE, 100)
    reads.start()
    writes.start()
    run([reads, writes])
    times = sorted(reads.times + writes.times)
    # Reads and writes have a timer each, and a request woken by its timer
    # runs without looking at the bucket again: when both timers fire
    # together, both requests go (QEMU does the same).  So requests come
    # in pairs, one ahead of its time, and the rate holds on average.
    check_rate(times, t0, 1, 100, 10, slack=1)
    assert times[-1] - t0 == (len(times) - 11) * NANOSECONDS_PER_SECOND // 100
    close(bs)


def test_iops_size():
    """With iops-size, a request of n times that size counts n times."""
    bs = open_null()
    limits("size", bs, ops_total=(100, 0), op_size=1024)
    t0 = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL)
    st = Stream(bs, False, SIZE, 100).start()      # 4 operations each
    run([st])
    check_rate(st.times, t0, 4, 100, 10)
    close(bs)


# --- bursts ----------------------------------------------------------------

@pytest.mark.parametrize("bucket,avg,max_,units", [
    ("ops_total", 100, 250, 1),
    ("ops_read", 50, 500, 1),
    ("bps_total", 1 << 20, 8 << 20, SIZE),
])
def test_burst(bucket, avg, max_, units):
    """Many requests at once: up to the burst size they all pass at once,
    then not one more before the average allows it."""
    bs = open_null()
    limits("burst", bs, **{bucket: (avg, max_)})
    t0 = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL)
    burst = max_ // units + 1
    streams = [Stream(bs, False, SIZE, 1) for _ in range(burst + 20)]
    for st in streams:
        st.start()
    # nothing has moved the clock: exactly the burst went through
    assert sum(st.done for st in streams) == burst
    run(streams)
    times = sorted(st.times[0] for st in streams)
    check_rate(times, t0, units, avg, max_)
    close(bs)


def test_burst_length():
    """QEMU 2.6's burst length: the rate max may last about burst_length
    seconds (the bucket holds max * length), then the average holds; within
    the burst, a bucket of a tenth of a second at rate max keeps the pace."""
    bs = open_null()
    limits("length", bs, ops_total=(10, 50, 2))
    t0 = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL)
    st = Stream(bs, False, SIZE, 160).start()
    assert len(st.times) == 6          # burst bucket: 50 / 10 + 1
    run([st])
    for n, t in enumerate(st.times):
        expected = t0 + max(0.0, (n - 5) / 50, (n - 100) / 10) * \
            NANOSECONDS_PER_SECOND
        assert abs(t - expected) <= 2, (n, t, expected)
    # the burst rate held for 2.36 s, up to request 123, then the average
    assert st.times[123] - st.times[122] == NANOSECONDS_PER_SECOND // 50
    assert st.times[125] - st.times[124] == NANOSECONDS_PER_SECOND // 10
    close(bs)


# --- groups ----------------------------------------------------------------

@pytest.mark.parametrize("members", [2, 3])
@pytest.mark.parametrize("depth", [1, 4])
def test_group_round_robin(members, depth):
    """Members of a group share its limit in turns: however many requests
    each keeps in flight, each gets an equal share within one request."""
    bss = [open_null() for _ in range(members)]
    limits("rr", *bss, ops_total=(300, 0))
    assert bss[0].throttle_state is bss[-1].throttle_state
    t0 = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL)
    streams = [[Stream(bs, False, SIZE, 120 // depth) for _ in range(depth)]
               for bs in bss]
    for per_bs in streams:
        for st in per_bs:
            st.start()
    everything = [st for per_bs in streams for st in per_bs]
    total = sum(st.count for st in everything)
    run(everything)

    # the group as a whole gets exactly the limit
    times = sorted(t for st in everything for t in st.times)
    check_rate(times, t0, 1, 300, 30)

    # until the first member is done, the shares differ by one at most
    end = min(max(t for st in per_bs for t in st.times) for per_bs in streams)
    shares = [sum(1 for st in per_bs for t in st.times if t0 < t <= end)
              for per_bs in streams]
    assert max(shares) - min(shares) <= 1, shares
    assert sum(len(st.times) for st in everything) == total
    close(*bss)


def test_group_config_shared():
    bs1, bs2 = open_null(), open_null()
    limits("shared", bs1, bs2, bps_read=(1000, 0))
    assert throttle_group_get_name(bs2) == "shared"
    cfg = ThrottleConfig()
    throttle_group_get_config(bs2, cfg)
    assert cfg.buckets[THROTTLE_BPS_READ].avg == 1000
    assert cfg.buckets[THROTTLE_BPS_READ].max == 100
    close(bs1, bs2)


def test_update_group():
    """Moving an image to another group leaves the old group's limits."""
    bs1, bs2 = open_null(), open_null()
    limits("old", bs1, bs2, ops_total=(10, 0))
    io.bdrv_io_limits_update_group(bs2, "old")        # no change
    assert throttle_group_get_name(bs2) == "old"
    io.bdrv_io_limits_update_group(bs2, "new")
    assert throttle_group_get_name(bs2) == "new"
    assert bs1.throttle_state is not bs2.throttle_state
    # the new group has no limit yet
    st = Stream(bs2, False, SIZE, 50).start()
    assert st.done
    close(bs1, bs2)


def test_disable():
    bs = open_null()
    limits("off", bs, ops_total=(10, 0))
    io.bdrv_io_limits_disable(bs)
    assert bs.throttle_state is None
    st = Stream(bs, False, SIZE, 50).start()
    assert st.done
    close(bs)


# --- drains ----------------------------------------------------------------

def test_drain_bypasses_throttling():
    """bdrv_drain() lets every throttled request go at once, and requests
    made while draining are not throttled; afterwards the limit holds
    again (the seed's bdrv_no_throttling_begin/end)."""
    bs = open_null()
    limits("drain", bs, ops_total=(10, 0))
    streams = [Stream(bs, False, SIZE, 1) for _ in range(20)]
    for st in streams:
        st.start()
    assert sum(st.done for st in streams) == 2        # the burst of 1 + 1
    t = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL)
    io.bdrv_drain(bs)
    assert all(st.done for st in streams)
    assert qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL) == t
    assert bs.io_limits_disabled == 0

    # throttled again: the bucket is far above its size now
    st = Stream(bs, False, SIZE, 1).start()
    assert not st.done
    run([st])
    assert st.times[0] > t
    close(bs)


def test_drain_all_bypasses_throttling():
    # bdrv_drain_all() visits the nodes of BlockBackends (bdrv_next)
    blks = [block_backend.blk_new_open("drive%d" % i, None, None,
                                       {"driver": "null-co"}, BDRV_O_RDWR,
                                       error_abort) for i in range(2)]
    bs1, bs2 = (blk.bs for blk in blks)
    limits("all", bs1, bs2, bps_write=(4096, 0))
    streams = [Stream(bs, True, SIZE, 1) for bs in (bs1, bs2)
               for _ in range(5)]
    for st in streams:
        st.start()
    assert sum(st.done for st in streams) == 1
    t = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL)
    io.bdrv_drain_all()
    assert all(st.done for st in streams)
    assert qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL) == t
    for blk in blks:
        block_backend.blk_unref(blk)


def test_no_throttling_section():
    """Between bdrv_no_throttling_begin and _end requests are accounted but
    never wait; after it, the bucket they filled makes the next one wait
    for all of them."""
    bs = open_null()
    limits("section", bs, ops_read=(100, 0))
    io.bdrv_no_throttling_begin(bs)
    st = Stream(bs, False, SIZE, 50).start()
    assert st.done
    io.bdrv_no_throttling_end(bs)
    t = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL)
    st = Stream(bs, False, SIZE, 1).start()
    assert not st.done
    run([st])
    assert st.times[0] == t + (50 - 10) * NANOSECONDS_PER_SECOND // 100
    close(bs)


def test_close_releases_throttled_requests():
    bs = open_null()
    limits("close", bs, ops_total=(10, 0))
    streams = [Stream(bs, False, SIZE, 1) for _ in range(5)]
    for st in streams:
        st.start()
    t = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL)
    close(bs)
    assert all(st.done for st in streams)
    assert qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL) == t


def test_real_clock_without_external_virtual_clock():
    """As QEMU outside qtest: with nobody driving the virtual clock, the
    timers are on the real-time clock."""
    qemu_clock_set_external(QEMU_CLOCK_VIRTUAL, False)
    try:
        bs = open_null()
        limits("rt", bs, ops_total=(10, 0))
        assert bs.throttle_timers.clock_type == QEMU_CLOCK_REALTIME
        close(bs)
    finally:
        qemu_clock_set_external(QEMU_CLOCK_VIRTUAL, True)


# --- the -drive options ----------------------------------------------------

def test_options_parsed():
    options = {"throttling.bps-total": "1048576",
               "throttling.iops-read": 100, "throttling.iops-write": "50",
               "throttling.iops-read-max": "200",
               "throttling.iops-size": "8192", "throttling.group": "grp",
               "driver": "null-co"}
    errp = [None]
    group, cfg = extract_throttle_options(options, errp)
    assert errp[0] is None
    assert options == {"driver": "null-co"}         # the rest is for open
    assert group == "grp"
    assert cfg.buckets[THROTTLE_BPS_TOTAL].avg == 1048576
    assert cfg.buckets[THROTTLE_OPS_READ].avg == 100
    assert cfg.buckets[THROTTLE_OPS_WRITE].avg == 50
    assert cfg.buckets[THROTTLE_OPS_READ].max == 200
    assert cfg.op_size == 8192


def test_options_none():
    options = {"driver": "raw"}
    group, cfg = extract_throttle_options(options, [None])
    assert group is None and cfg == ThrottleConfig()
    assert options == {"driver": "raw"}


@pytest.mark.parametrize("opts,msg", [
    ({"throttling.bps-total": "1", "throttling.bps-read": "1"},
     "bps/iops/max total values and read/write values cannot be used at "
     "the same time"),
    ({"throttling.iops-total-max": "10", "throttling.iops-write-max": "1",
      "throttling.iops-total": "1", },
     "bps/iops/max total values and read/write values cannot be used at "
     "the same time"),
    ({"throttling.bps-total": "100", "throttling.iops-size": "512"},
     "iops size requires an iops value to be set"),
    ({"throttling.bps-total-max": "2000000000000000"},
     "bps/iops/max values must be within [0, 1000000000000000]"),
    ({"throttling.iops-read": "-1"},
     "bps/iops/max values must be within [0, 1000000000000000]"),
    ({"throttling.bps-write-max": "100"},
     "bps_max/iops_max require corresponding bps/iops values"),
    ({"throttling.bps-total": "100", "throttling.bps-total-max": "50"},
     "bps_max/iops_max cannot be lower than bps/iops"),
    ({"throttling.iops-total": "lots"},
     "Parameter 'throttling.iops-total' expects a number"),
    ({"throttling.iops-total": "5", "throttling.iops-total-max-length": "0"},
     "the burst length cannot be 0"),
    ({"throttling.bps-read": "5", "throttling.bps-read-max-length": "2"},
     "burst length set without burst rate"),
    ({"throttling.iops-write": "5", "throttling.iops-write-max": "1" + "0" * 12,
      "throttling.iops-write-max-length": "2000"},
     "burst length too high for this burst rate"),
    ({"throttling.bps-write-max-length": "-1"},
     "bps-write-max-length value must be in the range [0, 4294967295]"),
])
def test_options_refused(opts, msg):
    errp = [None]
    assert extract_throttle_options(dict(opts), errp) is None
    assert errp[0].msg == msg


def test_check_throttle_config_accepts_limits():
    cfg = ThrottleConfig()
    cfg.buckets[THROTTLE_BPS_READ].avg = 100
    cfg.buckets[THROTTLE_BPS_READ].max = 100
    cfg.buckets[THROTTLE_OPS_TOTAL].avg = 10
    cfg.op_size = 4096
    assert check_throttle_config(cfg, error_abort)


def test_blockdev_throttle_setup():
    """The -drive flow: throttling options out of the open options, the
    rest opens the image, then the limits go on it."""
    options = {"driver": "null-co", "size": "1M",
               "throttling.iops-total": "20"}
    group, cfg = extract_throttle_options(options, error_abort)
    pbs = [None]
    assert core.bdrv_open(pbs, None, None, options, BDRV_O_RDWR,
                          error_abort) == 0
    bs = pbs[0]
    blockdev_throttle_setup(bs, group, cfg, "drive0")
    assert throttle_group_get_name(bs) == "drive0"
    t0 = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL)
    st = Stream(bs, True, SIZE, 10).start()
    run([st])
    check_rate(st.times, t0, 1, 20, 2)
    close(bs)

    # no limit: no group
    bs = open_null()
    blockdev_throttle_setup(bs, "g", ThrottleConfig(), "drive0")
    assert bs.throttle_state is None
    close(bs)


# --- QEMU 7.2: the throttle-group object and the throttle filter ----------


def open_filter(group: str, options: dict = None):
    pbs = [None]
    opts = {"driver": "throttle", "throttle-group": group,
            "file.driver": "null-co", "file.size": "1G"}
    opts.update(options or {})
    assert core.bdrv_open(pbs, None, None, opts, BDRV_O_RDWR,
                          error_abort) == 0
    return pbs[0]


@pytest.mark.parametrize("props,msg", [
    # as the installed qemu-io says them for --object throttle-group,...
    ({"x-bps-total": "100", "x-bps-read": "5"},
     "bps/iops/max total values and read/write values cannot be used at "
     "the same time"),
    ({"x-bps-total-max": "100"},
     "bps_max/iops_max require corresponding bps/iops values"),
    ({"x-bps-total": "-1"}, "Property values cannot be negative"),
    ({"x-iops-size": "-1"}, "Property values cannot be negative"),
    ({"limits.iops-total": "-5"},
     "bps/iops/max values must be within [0, 1000000000000000]"),
    ({"x-bps-total": "2000000000000000"},
     "bps/iops/max values must be within [0, 1000000000000000]"),
    ({"x-iops-size": "512"}, "iops size requires an iops value to be set"),
    ({"x-bps-total": "100", "x-bps-total-max": "50"},
     "bps_max/iops_max cannot be lower than bps/iops"),
    ({"x-iops-total-max-length": "0", "x-iops-total": "5"},
     "the burst length cannot be 0"),
    ({"limits.iops-total-max-length": "-1"},
     "burst length set without burst rate"),
    ({"limits.iops-total-max-length": "5000000000"},
     "iops-total-max-length value must be in the range [0, 4294967295]"),
    ({"x-iops-total": "5", "x-iops-total-max": "1000000000000",
      "x-iops-total-max-length": "2000"},
     "burst length too high for this burst rate"),
    ({"x-bps-total": "abc"}, "Parameter 'x-bps-total' expects integer"),
    ({"x-bps-total": "1.5"}, "Parameter 'x-bps-total' expects integer"),
    ({"x-iops-total": "20000000000000000000"},
     "Parameter 'x-iops-total' expects integer"),
    ({"limits.iops-total": "1.5"},
     "Parameter 'limits.iops-total' expects integer"),
    ({"bps-total": "100"}, "Parameter 'bps-total' is unexpected"),
    ({"limits.foo": "5"}, "Parameter 'limits.foo' is unexpected"),
    ({"limits": "5"}, "Invalid parameter type for 'limits', expected: object"),
])
def test_group_object_refused(props, msg):
    errp = [None]
    assert not throttle_group_obj_add("g", props, errp)
    assert errp[0].msg == msg
    assert not throttle_groups


def test_group_object_duplicate():
    assert throttle_group_obj_add("g", {"x-iops-total": "5"}, error_abort)
    errp = [None]
    assert not throttle_group_obj_add("g", {}, errp)
    assert errp[0].msg == ("attempt to add duplicate property 'g' to object "
                           "(type 'container')")
    throttle_group_obj_del("g")


@pytest.mark.parametrize("options,msg", [
    ({"throttle-group": ""}, "Please specify a throttle group"),
    ({"throttle-group": "nope"}, "Throttle group 'nope' does not exist"),
])
def test_filter_refused(options, msg):
    opts = {"driver": "throttle", "file.driver": "null-co"}
    opts.update(options)
    if not opts["throttle-group"]:
        del opts["throttle-group"]
    errp = [None]
    assert core.bdrv_open([None], None, None, opts, BDRV_O_RDWR, errp) < 0
    assert errp[0].msg == msg


@pytest.mark.parametrize("props", [{"x-iops-total": "25"},
                                   {"limits.iops-total": "25"}])
def test_filter_rate(props):
    assert throttle_group_obj_add("obj", props, error_abort)
    bs = open_filter("obj")
    t0 = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL)
    st = Stream(bs, False, SIZE, 40).start()
    run([st])
    check_rate(st.times, t0, 1, 25, 2.5)
    close(bs)
    # the group outlives its members while the object holds it
    assert throttle_group_exists("obj")
    throttle_group_obj_del("obj")
    assert not throttle_group_exists("obj")


def test_filter_nodes_share_group():
    """Two throttle nodes in one group, under raw format nodes: round robin
    as for -drive groups."""
    assert throttle_group_obj_add("pair", {"x-bps-read": str(1 << 20)},
                                  error_abort)
    bss = []
    for _ in range(2):
        pbs = [None]
        assert core.bdrv_open(
            pbs, None, None,
            {"driver": "raw", "file.driver": "throttle",
             "file.throttle-group": "pair", "file.file.driver": "null-co",
             "file.file.size": "1G"}, BDRV_O_RDWR, error_abort) == 0
        bss.append(pbs[0])
    assert bss[0].throttle_state is None
    assert bss[0].file.bs.throttle_state is bss[1].file.bs.throttle_state
    t0 = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL)
    streams = [Stream(bs, False, SIZE, 100) for bs in bss]
    for st in streams:
        st.start()
    run(streams)
    times = sorted(streams[0].times + streams[1].times)
    check_rate(times, t0, SIZE, 1 << 20, (1 << 20) / 10)
    end = min(st.times[-1] for st in streams)
    shares = [sum(1 for t in st.times if t0 < t <= end) for st in streams]
    assert abs(shares[0] - shares[1]) <= 1, shares
    close(*bss)
    throttle_group_obj_del("pair")


def test_filter_drain_from_above():
    """Draining the raw node above a throttle node does not wait for the
    throttle timers."""
    assert throttle_group_obj_add("below", {"x-iops-write": "5"},
                                  error_abort)
    pbs = [None]
    assert core.bdrv_open(
        pbs, None, None,
        {"driver": "raw", "file.driver": "throttle",
         "file.throttle-group": "below", "file.file.driver": "null-co"},
        BDRV_O_RDWR, error_abort) == 0
    bs = pbs[0]
    streams = [Stream(bs, True, SIZE, 1) for _ in range(10)]
    for st in streams:
        st.start()
    assert sum(st.done for st in streams) == 1     # a burst of 0.5 + 1
    t = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL)
    io.bdrv_drain(bs)
    assert all(st.done for st in streams)
    assert qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL) == t
    close(bs)
    throttle_group_obj_del("below")
