"""QEMU's tests/test-throttle.c (v2.5.0), case by case with the same
assertions.  The C registers them as /throttle/leak_bucket ...
/throttle/groups; the Python names are the C function names."""

import math

import pytest

from block import core
from block.throttle_groups import (throttle_group_config,
                                   throttle_group_get_config,
                                   throttle_group_get_name,
                                   throttle_group_register_bs,
                                   throttle_group_unregister_bs)
from util.aio import qemu_get_aio_context
from util.throttle import (BUCKETS_COUNT, NANOSECONDS_PER_SECOND,
                           THROTTLE_BPS_READ, THROTTLE_BPS_TOTAL,
                           THROTTLE_BPS_WRITE, THROTTLE_OPS_READ,
                           THROTTLE_OPS_TOTAL, THROTTLE_OPS_WRITE,
                           LeakyBucket, ThrottleConfig, ThrottleState,
                           ThrottleTimers, throttle_account,
                           throttle_compute_wait, throttle_config,
                           throttle_conflicting, throttle_enabled,
                           throttle_get_config, throttle_init,
                           throttle_is_valid, throttle_leak_bucket,
                           throttle_max_is_missing_limit,
                           throttle_timers_are_initialized,
                           throttle_timers_attach_aio_context,
                           throttle_timers_destroy,
                           throttle_timers_detach_aio_context,
                           throttle_timers_init)
from util.timer import QEMU_CLOCK_VIRTUAL

# the C test's file-scope statics
bkt = LeakyBucket()
cfg = ThrottleConfig()
ts = ThrottleState()
tt = ThrottleTimers()


ctx = None


@pytest.fixture(autouse=True, scope="module")
def main_loop():
    """main() of the C: the tests run in the main AioContext."""
    global ctx
    ctx = qemu_get_aio_context()


def double_cmp(x: float, y: float) -> bool:
    return math.fabs(x - y) < 1e-6


def memset_cfg(c: ThrottleConfig) -> None:
    """memset(&cfg, 0, sizeof(cfg))"""
    c.assign(ThrottleConfig())


# tests for single bucket operations

def test_leak_bucket():
    # set initial value
    bkt.avg = 150
    bkt.max = 15
    bkt.level = 1.5

    # leak an op work of time
    throttle_leak_bucket(bkt, NANOSECONDS_PER_SECOND // 150)
    assert bkt.avg == 150
    assert bkt.max == 15
    assert double_cmp(bkt.level, 0.5)

    # leak again emptying the bucket
    throttle_leak_bucket(bkt, NANOSECONDS_PER_SECOND // 150)
    assert bkt.avg == 150
    assert bkt.max == 15
    assert double_cmp(bkt.level, 0)

    # check that the bucket level won't go lower
    throttle_leak_bucket(bkt, NANOSECONDS_PER_SECOND // 150)
    assert bkt.avg == 150
    assert bkt.max == 15
    assert double_cmp(bkt.level, 0)


def test_compute_wait():
    # no operation limit set
    bkt.avg = 0
    bkt.max = 15
    bkt.level = 1.5
    wait = throttle_compute_wait(bkt)
    assert not wait

    # zero delta
    bkt.avg = 150
    bkt.max = 15
    bkt.level = 15
    wait = throttle_compute_wait(bkt)
    assert not wait

    # below zero delta
    bkt.avg = 150
    bkt.max = 15
    bkt.level = 9
    wait = throttle_compute_wait(bkt)
    assert not wait

    # half an operation above max
    bkt.avg = 150
    bkt.max = 15
    bkt.level = 15.5
    wait = throttle_compute_wait(bkt)
    # time required to do half an operation
    result = NANOSECONDS_PER_SECOND // 150 // 2
    assert wait == result


# functions to test ThrottleState initialization/destroy methods

def read_timer_cb(opaque):
    pass


def write_timer_cb(opaque):
    pass


def test_init():
    # fill the structures with crap
    ts.previous_leak = 0x01010101
    ts.cfg.op_size = 0x01010101
    for b in ts.cfg.buckets:
        b.avg = b.max = b.level = 7.0e-304
    tt.timers = ["crap", "crap"]
    tt.clock_type = 0x01010101

    # init structures
    throttle_init(ts)
    throttle_timers_init(tt, ctx, QEMU_CLOCK_VIRTUAL,
                         read_timer_cb, write_timer_cb, ts)

    # check initialized fields
    assert tt.clock_type == QEMU_CLOCK_VIRTUAL
    assert tt.timers[0]
    assert tt.timers[1]

    # check other fields where cleared
    assert not ts.previous_leak
    assert not ts.cfg.op_size
    for i in range(BUCKETS_COUNT):
        assert not ts.cfg.buckets[i].avg
        assert not ts.cfg.buckets[i].max
        assert not ts.cfg.buckets[i].level

    throttle_timers_destroy(tt)


def test_destroy():
    throttle_init(ts)
    throttle_timers_init(tt, ctx, QEMU_CLOCK_VIRTUAL,
                         read_timer_cb, write_timer_cb, ts)
    throttle_timers_destroy(tt)
    for i in range(2):
        assert not tt.timers[i]


# function to test throttle_config and throttle_get_config

def test_config_functions():
    orig_cfg = ThrottleConfig()
    final_cfg = ThrottleConfig()
    b = orig_cfg.buckets

    b[THROTTLE_BPS_TOTAL].avg = 153
    b[THROTTLE_BPS_READ].avg = 56
    b[THROTTLE_BPS_WRITE].avg = 1

    b[THROTTLE_OPS_TOTAL].avg = 150
    b[THROTTLE_OPS_READ].avg = 69
    b[THROTTLE_OPS_WRITE].avg = 23

    b[THROTTLE_BPS_TOTAL].max = 0       # should be corrected
    b[THROTTLE_BPS_READ].max = 1        # should not be corrected
    b[THROTTLE_BPS_WRITE].max = 120

    b[THROTTLE_OPS_TOTAL].max = 150
    b[THROTTLE_OPS_READ].max = 400
    b[THROTTLE_OPS_WRITE].max = 500

    b[THROTTLE_BPS_TOTAL].level = 45
    b[THROTTLE_BPS_READ].level = 65
    b[THROTTLE_BPS_WRITE].level = 23

    b[THROTTLE_OPS_TOTAL].level = 1
    b[THROTTLE_OPS_READ].level = 90
    b[THROTTLE_OPS_WRITE].level = 75

    orig_cfg.op_size = 1

    throttle_init(ts)
    throttle_timers_init(tt, ctx, QEMU_CLOCK_VIRTUAL,
                         read_timer_cb, write_timer_cb, ts)
    # structure reset by throttle_init previous_leak should be null
    assert not ts.previous_leak
    throttle_config(ts, tt, orig_cfg)

    # has previous leak been initialized by throttle_config ?
    assert ts.previous_leak

    # get back the fixed configuration
    throttle_get_config(ts, final_cfg)

    throttle_timers_destroy(tt)

    f = final_cfg.buckets
    assert f[THROTTLE_BPS_TOTAL].avg == 153
    assert f[THROTTLE_BPS_READ].avg == 56
    assert f[THROTTLE_BPS_WRITE].avg == 1

    assert f[THROTTLE_OPS_TOTAL].avg == 150
    assert f[THROTTLE_OPS_READ].avg == 69
    assert f[THROTTLE_OPS_WRITE].avg == 23

    assert f[THROTTLE_BPS_TOTAL].max == 15.3     # fixed
    assert f[THROTTLE_BPS_READ].max == 1         # not fixed
    assert f[THROTTLE_BPS_WRITE].max == 120

    assert f[THROTTLE_OPS_TOTAL].max == 150
    assert f[THROTTLE_OPS_READ].max == 400
    assert f[THROTTLE_OPS_WRITE].max == 500

    assert final_cfg.op_size == 1

    # check bucket have been cleared
    for i in range(BUCKETS_COUNT):
        assert not f[i].level


# functions to test is throttle is enabled by a config

def set_cfg_value(is_max: bool, index: int, value: int) -> None:
    if is_max:
        cfg.buckets[index].max = value
    else:
        cfg.buckets[index].avg = value


def test_enabled():
    memset_cfg(cfg)
    assert not throttle_enabled(cfg)

    for i in range(BUCKETS_COUNT):
        memset_cfg(cfg)
        set_cfg_value(False, i, 150)
        assert throttle_enabled(cfg)

    for i in range(BUCKETS_COUNT):
        memset_cfg(cfg)
        set_cfg_value(False, i, -150)
        assert not throttle_enabled(cfg)


# tests functions for throttle_conflicting

def conflicts_for_one_set(is_max: bool, total: int, read: int,
                          write: int) -> None:
    """test_conflicts_for_one_set() of the C"""
    memset_cfg(cfg)
    assert not throttle_conflicting(cfg)

    set_cfg_value(is_max, total, 1)
    set_cfg_value(is_max, read, 1)
    assert throttle_conflicting(cfg)

    memset_cfg(cfg)
    set_cfg_value(is_max, total, 1)
    set_cfg_value(is_max, write, 1)
    assert throttle_conflicting(cfg)

    memset_cfg(cfg)
    set_cfg_value(is_max, total, 1)
    set_cfg_value(is_max, read, 1)
    set_cfg_value(is_max, write, 1)
    assert throttle_conflicting(cfg)

    memset_cfg(cfg)
    set_cfg_value(is_max, total, 1)
    assert not throttle_conflicting(cfg)

    memset_cfg(cfg)
    set_cfg_value(is_max, read, 1)
    set_cfg_value(is_max, write, 1)
    assert not throttle_conflicting(cfg)


def test_conflicting_config():
    # bps average conflicts
    conflicts_for_one_set(False, THROTTLE_BPS_TOTAL, THROTTLE_BPS_READ,
                          THROTTLE_BPS_WRITE)
    # ops average conflicts
    conflicts_for_one_set(False, THROTTLE_OPS_TOTAL, THROTTLE_OPS_READ,
                          THROTTLE_OPS_WRITE)
    # bps max conflicts
    conflicts_for_one_set(True, THROTTLE_BPS_TOTAL, THROTTLE_BPS_READ,
                          THROTTLE_BPS_WRITE)
    # ops max conflicts
    conflicts_for_one_set(True, THROTTLE_OPS_TOTAL, THROTTLE_OPS_READ,
                          THROTTLE_OPS_WRITE)


# functions to test the throttle_is_valid function

def is_valid_for_value(value: int, should_be_valid: bool) -> None:
    """test_is_valid_for_value() of the C"""
    for is_max in (False, True):
        for index in range(BUCKETS_COUNT):
            memset_cfg(cfg)
            set_cfg_value(is_max, index, value)
            assert throttle_is_valid(cfg) == should_be_valid


def test_is_valid():
    # negative number are invalid
    is_valid_for_value(-1, False)
    # zero are valids
    is_valid_for_value(0, True)
    # positives numers are valids
    is_valid_for_value(1, True)


def test_max_is_missing_limit():
    for i in range(BUCKETS_COUNT):
        memset_cfg(cfg)
        cfg.buckets[i].max = 100
        cfg.buckets[i].avg = 0
        assert throttle_max_is_missing_limit(cfg)

        cfg.buckets[i].max = 0
        cfg.buckets[i].avg = 0
        assert not throttle_max_is_missing_limit(cfg)

        cfg.buckets[i].max = 0
        cfg.buckets[i].avg = 100
        assert not throttle_max_is_missing_limit(cfg)


def test_have_timer():
    # zero structures
    global ts, tt
    ts = ThrottleState()
    tt = ThrottleTimers()

    # no timer set should return false
    assert not throttle_timers_are_initialized(tt)

    # init structures
    throttle_init(ts)
    throttle_timers_init(tt, ctx, QEMU_CLOCK_VIRTUAL,
                         read_timer_cb, write_timer_cb, ts)

    # timer set by init should return true
    assert throttle_timers_are_initialized(tt)

    throttle_timers_destroy(tt)


def test_detach_attach():
    # zero structures
    global ts, tt
    ts = ThrottleState()
    tt = ThrottleTimers()

    # init the structure
    throttle_init(ts)
    throttle_timers_init(tt, ctx, QEMU_CLOCK_VIRTUAL,
                         read_timer_cb, write_timer_cb, ts)

    # timer set by init should return true
    assert throttle_timers_are_initialized(tt)

    # timer should no longer exist after detaching
    throttle_timers_detach_aio_context(tt)
    assert not throttle_timers_are_initialized(tt)

    # timer should exist again after attaching
    throttle_timers_attach_aio_context(tt, ctx)
    assert throttle_timers_are_initialized(tt)

    throttle_timers_destroy(tt)


def do_test_accounting(is_ops: bool,        # are we testing bps or ops
                       size: int,           # size of the operation to do
                       avg: float,          # io limit
                       op_size: int,        # ideal size of an io
                       total_result: float,
                       read_result: float,
                       write_result: float) -> bool:
    to_test = ((THROTTLE_BPS_TOTAL, THROTTLE_BPS_READ, THROTTLE_BPS_WRITE),
               (THROTTLE_OPS_TOTAL, THROTTLE_OPS_READ, THROTTLE_OPS_WRITE))
    cfg = ThrottleConfig()

    for i in range(3):
        index = to_test[is_ops][i]
        cfg.buckets[index].avg = avg

    cfg.op_size = op_size

    throttle_init(ts)
    throttle_timers_init(tt, ctx, QEMU_CLOCK_VIRTUAL,
                         read_timer_cb, write_timer_cb, ts)
    throttle_config(ts, tt, cfg)

    # account a read
    throttle_account(ts, False, size)
    # account a write
    throttle_account(ts, True, size)

    # check total result
    index = to_test[is_ops][0]
    if not double_cmp(ts.cfg.buckets[index].level, total_result):
        return False

    # check read result
    index = to_test[is_ops][1]
    if not double_cmp(ts.cfg.buckets[index].level, read_result):
        return False

    # check write result
    index = to_test[is_ops][2]
    if not double_cmp(ts.cfg.buckets[index].level, write_result):
        return False

    throttle_timers_destroy(tt)

    return True


def test_accounting():
    # tests for bps

    # op of size 1
    assert do_test_accounting(False, 1 * 512, 150, 0, 1024, 512, 512)

    # op of size 2
    assert do_test_accounting(False, 2 * 512, 150, 0, 2048, 1024, 1024)

    # op of size 2 and orthogonal parameter change
    assert do_test_accounting(False, 2 * 512, 150, 17, 2048, 1024, 1024)

    # tests for ops

    # op of size 1
    assert do_test_accounting(True, 1 * 512, 150, 0, 2, 1, 1)

    # op of size 2
    assert do_test_accounting(True, 2 * 512, 150, 0, 2, 1, 1)

    # jumbo op accounting fragmentation : size 64 with op size of 13 units
    assert do_test_accounting(True, 64 * 512, 150, 13 * 512,
                              (64.0 * 2) / 13, (64.0 / 13), (64.0 / 13))

    # same with orthogonal parameters changes
    assert do_test_accounting(True, 64 * 512, 300, 13 * 512,
                              (64.0 * 2) / 13, (64.0 / 13), (64.0 / 13))


def test_groups():
    cfg1 = ThrottleConfig()
    cfg2 = ThrottleConfig()

    bdrv1 = core.bdrv_new()
    bdrv2 = core.bdrv_new()
    bdrv3 = core.bdrv_new()

    assert bdrv1.throttle_state is None
    assert bdrv2.throttle_state is None
    assert bdrv3.throttle_state is None

    throttle_group_register_bs(bdrv1, "bar")
    throttle_group_register_bs(bdrv2, "foo")
    throttle_group_register_bs(bdrv3, "bar")

    assert bdrv1.throttle_state is not None
    assert bdrv2.throttle_state is not None
    assert bdrv3.throttle_state is not None

    assert throttle_group_get_name(bdrv1) == "bar"
    assert throttle_group_get_name(bdrv2) == "foo"
    assert bdrv1.throttle_state is bdrv3.throttle_state

    # Setting the config of a group member affects the whole group
    memset_cfg(cfg1)
    cfg1.buckets[THROTTLE_BPS_READ].avg = 500000
    cfg1.buckets[THROTTLE_BPS_WRITE].avg = 285000
    cfg1.buckets[THROTTLE_OPS_READ].avg = 20000
    cfg1.buckets[THROTTLE_OPS_WRITE].avg = 12000
    throttle_group_config(bdrv1, cfg1)

    throttle_group_get_config(bdrv1, cfg1)
    throttle_group_get_config(bdrv3, cfg2)
    assert cfg1 == cfg2

    cfg2.buckets[THROTTLE_BPS_READ].avg = 4547
    cfg2.buckets[THROTTLE_BPS_WRITE].avg = 1349
    cfg2.buckets[THROTTLE_OPS_READ].avg = 123
    cfg2.buckets[THROTTLE_OPS_WRITE].avg = 86
    throttle_group_config(bdrv3, cfg1)

    throttle_group_get_config(bdrv1, cfg1)
    throttle_group_get_config(bdrv3, cfg2)
    assert cfg1 == cfg2

    throttle_group_unregister_bs(bdrv1)
    throttle_group_unregister_bs(bdrv2)
    throttle_group_unregister_bs(bdrv3)

    assert bdrv1.throttle_state is None
    assert bdrv2.throttle_state is None
    assert bdrv3.throttle_state is None
