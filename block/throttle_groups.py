"""Throttle groups: the Python twin of QEMU's block/throttle-groups.c and
include/block/throttle-groups.h, as the seed block/io.c uses them (spring
2016: members are BlockDriverStates, drains bypass throttling through
bs.io_limits_disabled and throttle_group_restart_bs).

A group is a ThrottleState shared by every BlockDriverState registered
under its name.  Each member keeps its own queues of throttled requests
(bs.throttled_reqs) and its own timers (bs.throttle_timers), but only one
timer per direction is armed in the whole group at a time; when it fires,
the member holding the token runs one request and hands the token on to
the next member with requests waiting (round robin), so that members share
the limits fairly.

The second part holds what QEMU 2.5 does in blockdev.c for ``-drive``: the
``throttling.*`` options turned into a ThrottleConfig, checked, and applied
to the opened image (see extract_throttle_options and
blockdev_throttle_setup).  The last part is the installed QEMU's (7.2)
throttle-group object, which throttle filter nodes (drivers/throttle.py)
join.
"""

from __future__ import annotations

import threading
from typing import Optional

from block import core, io
from block.block_int import BlockDriverState
from util.coroutine import coroutine_fn, qemu_in_coroutine
from util.coroutine_lock import (qemu_co_enter_next, qemu_co_queue_empty,
                                 qemu_co_queue_next, qemu_co_queue_wait)
from util.error import Errp, error_propagate, error_setg
from util.qemu_option import (QEMU_OPT_NUMBER, QEMU_OPT_STRING, QemuOptDesc,
                              QemuOptsList, qemu_opt_get, qemu_opt_get_number,
                              qemu_opts_absorb_qdict, qemu_opts_create)
from util.throttle import (THROTTLE_BPS_READ, THROTTLE_BPS_TOTAL,
                           THROTTLE_BPS_WRITE, THROTTLE_OPS_READ,
                           THROTTLE_OPS_TOTAL, THROTTLE_OPS_WRITE,
                           ThrottleConfig, ThrottleState, ThrottleTimers,
                           throttle_account, throttle_config,
                           throttle_conflicting, throttle_enabled,
                           throttle_fix_bucket, throttle_get_config,
                           throttle_init, throttle_schedule_timer,
                           throttle_timers_destroy, throttle_timers_init)
from util.timer import (QEMU_CLOCK_REALTIME, QEMU_CLOCK_VIRTUAL,
                        qemu_clock_get_ns, qemu_clock_is_external,
                        timer_mod, timer_pending)


class ThrottleGroupState(ThrottleState):
    """The ThrottleState embedded in a ThrottleGroup; ``tg`` stands for
    C's container_of(ts, ThrottleGroup, ts)."""
    __slots__ = ("tg",)


class ThrottleGroup:
    __slots__ = ("name", "lock", "ts", "head", "tokens", "any_timer_armed",
                 "refcount")

    def __init__(self, name: str) -> None:
        self.name = name                # constant while the group lives
        # protects ts, head, tokens and any_timer_armed
        self.lock = threading.Lock()
        self.ts = ThrottleGroupState()
        self.ts.tg = self
        # QLIST of the members, head first (register inserts at 0)
        self.head: list[BlockDriverState] = []
        # the member whose turn it is, per direction (reads, writes)
        self.tokens: list[Optional[BlockDriverState]] = [None, None]
        self.any_timer_armed = [False, False]
        self.refcount = 0               # under throttle_groups_lock


throttle_groups_lock = threading.Lock()
throttle_groups: list[ThrottleGroup] = []       # QTAILQ, in creation order

def throttle_group_incref(name: str) -> ThrottleState:
    """Take a reference to the group `name`, created if it does not exist;
    return its ThrottleState."""
    with throttle_groups_lock:
        tg = None
        for it in throttle_groups:
            if it.name == name:
                tg = it
                break
        if tg is None:
            tg = ThrottleGroup(name)
            throttle_init(tg.ts)
            throttle_groups.append(tg)
        tg.refcount += 1
    return tg.ts


def throttle_group_unref(ts: ThrottleState) -> None:
    """Drop a reference; the group goes away with the last one."""
    tg = ts.tg
    with throttle_groups_lock:
        tg.refcount -= 1
        if tg.refcount == 0:
            throttle_groups.remove(tg)


def throttle_group_get_name(bs: BlockDriverState) -> str:
    return bs.throttle_state.tg.name


def throttle_group_next_bs(bs: BlockDriverState) -> BlockDriverState:
    """The member after bs, the list seen as a circle (tg.lock held)."""
    head = bs.throttle_state.tg.head
    i = head.index(bs) + 1
    return head[i] if i < len(head) else head[0]


def next_throttle_token(bs: BlockDriverState,
                        is_write: bool) -> BlockDriverState:
    """The next member after the token holder with requests waiting; bs if
    none has any, as bs is about to queue one (tg.lock held)."""
    tg = bs.throttle_state.tg
    start = token = tg.tokens[is_write]
    token = throttle_group_next_bs(token)
    while token is not start and not token.pending_reqs[is_write]:
        token = throttle_group_next_bs(token)
    if token is start and not token.pending_reqs[is_write]:
        token = bs
    return token


def throttle_group_schedule_timer(bs: BlockDriverState,
                                  is_write: bool) -> bool:
    """Whether bs's next request of this direction must wait.  If it must
    and no timer of the group is armed, arm bs's and give bs the token
    (tg.lock held).  A member being drained never waits."""
    ts = bs.throttle_state
    tt = bs.throttle_timers
    tg = ts.tg
    if bs.io_limits_disabled:
        return False
    if tg.any_timer_armed[is_write]:
        return True
    must_wait = throttle_schedule_timer(ts, tt, is_write)
    if must_wait:
        tg.tokens[is_write] = bs
        tg.any_timer_armed[is_write] = True
    return must_wait


def schedule_next_request(bs: BlockDriverState, is_write: bool) -> None:
    """Start the next waiting request of the group, now or on a timer
    (tg.lock held)."""
    tg = bs.throttle_state.tg
    token = next_throttle_token(bs, is_write)
    if not token.pending_reqs[is_write]:
        return
    must_wait = throttle_group_schedule_timer(token, is_write)
    if not must_wait:
        # bs's own waiting request goes first when we can wake it from
        # here; anything else is started from a timer firing at once, in
        # the right AioContext.
        if (qemu_in_coroutine() and
                qemu_co_queue_next(bs.throttled_reqs[is_write])):
            token = bs
        else:
            tt = token.throttle_timers
            now = qemu_clock_get_ns(tt.clock_type)
            timer_mod(tt.timers[is_write], now + 1)
            tg.any_timer_armed[is_write] = True
        tg.tokens[is_write] = token


@coroutine_fn
def throttle_group_co_io_limits_intercept(bs: BlockDriverState, bytes: int,
                                          is_write: bool) -> None:
    """Wait until a request of `bytes` may run under the group's limits,
    account it, and schedule the next waiting request of the group."""
    tg = bs.throttle_state.tg
    tg.lock.acquire()

    token = next_throttle_token(bs, is_write)
    must_wait = throttle_group_schedule_timer(token, is_write)

    # Requests already waiting on bs keep their order.
    if must_wait or bs.pending_reqs[is_write]:
        bs.pending_reqs[is_write] += 1
        tg.lock.release()
        qemu_co_queue_wait(bs.throttled_reqs[is_write])
        tg.lock.acquire()
        bs.pending_reqs[is_write] -= 1

    throttle_account(bs.throttle_state, is_write, bytes)
    schedule_next_request(bs, is_write)
    tg.lock.release()


def throttle_group_restart_bs(bs: BlockDriverState) -> None:
    """Run every throttled request of bs now (a drain begins)."""
    for i in range(2):
        while qemu_co_enter_next(bs.throttled_reqs[i]):
            pass


def throttle_group_config(bs: BlockDriverState, cfg: ThrottleConfig) -> None:
    """Set the limits of bs's whole group; throttle_config() cancels bs's
    timers, so the group's armed flags follow, and a waiting request of
    each direction is restarted to see the new limits."""
    tt = bs.throttle_timers
    ts = bs.throttle_state
    tg = ts.tg
    with tg.lock:
        if timer_pending(tt.timers[0]):
            tg.any_timer_armed[0] = False
        if timer_pending(tt.timers[1]):
            tg.any_timer_armed[1] = False
        throttle_config(ts, tt, cfg)
    qemu_co_enter_next(bs.throttled_reqs[0])
    qemu_co_enter_next(bs.throttled_reqs[1])


def throttle_group_get_config(bs: BlockDriverState,
                              cfg: ThrottleConfig) -> None:
    ts = bs.throttle_state
    with ts.tg.lock:
        throttle_get_config(ts, cfg)


def timer_cb(bs: BlockDriverState, is_write: bool) -> None:
    """A member's timer fired: run its first waiting request, or if it has
    none, pass the turn on."""
    tg = bs.throttle_state.tg
    with tg.lock:
        tg.any_timer_armed[is_write] = False
    empty_queue = not qemu_co_enter_next(bs.throttled_reqs[is_write])
    if empty_queue:
        with tg.lock:
            schedule_next_request(bs, is_write)


def read_timer_cb(opaque: BlockDriverState) -> None:
    timer_cb(opaque, False)


def write_timer_cb(opaque: BlockDriverState) -> None:
    timer_cb(opaque, True)


def throttle_group_clock_type() -> int:
    """QEMU uses the virtual clock under qtest, where the test moves it;
    here, when the program drives the virtual clock (external mode)."""
    if qemu_clock_is_external(QEMU_CLOCK_VIRTUAL):
        return QEMU_CLOCK_VIRTUAL
    return QEMU_CLOCK_REALTIME


def throttle_group_register_bs(bs: BlockDriverState, groupname: str) -> None:
    """Make bs a member of the group `groupname` (created if needed), with
    timers in bs's AioContext.  Their clock is chosen here, once."""
    ts = throttle_group_incref(groupname)
    tg = ts.tg
    bs.throttle_state = ts
    with tg.lock:
        for i in range(2):
            if tg.tokens[i] is None:
                tg.tokens[i] = bs
        tg.head.insert(0, bs)
        bs.throttle_timers = ThrottleTimers()
        throttle_timers_init(bs.throttle_timers,
                             core.bdrv_get_aio_context(bs),
                             throttle_group_clock_type(),
                             read_timer_cb, write_timer_cb, bs)


def throttle_group_unregister_bs(bs: BlockDriverState) -> None:
    """Take bs out of its group (destroyed if bs was the last member).
    bs must have no throttled request left: drain it first."""
    tg = bs.throttle_state.tg
    assert bs.pending_reqs[0] == 0 and bs.pending_reqs[1] == 0
    assert qemu_co_queue_empty(bs.throttled_reqs[0])
    assert qemu_co_queue_empty(bs.throttled_reqs[1])

    with tg.lock:
        for i in range(2):
            if tg.tokens[i] is bs:
                token = throttle_group_next_bs(bs)
                if token is bs:             # the last member
                    token = None
                tg.tokens[i] = token
        tg.head.remove(bs)
        throttle_timers_destroy(bs.throttle_timers)

    throttle_group_unref(tg.ts)
    bs.throttle_state = None


# --- blockdev.c: the -drive throttling options -----------------------------

# The largest value a limit may take (QEMU 2.6 and later, THROTTLE_VALUE_MAX)
THROTTLE_VALUE_MAX = 1000000000000000
UINT_MAX = 0xffffffff

# (option, bucket, field) as QEMU's -drive spells them (the -max-length
# ones since 2.6); "iops_rd" style legacy names are renamed to these by
# drive_new() in QEMU.
THROTTLE_OPTS_MAP = (
    ("throttling.bps-total", THROTTLE_BPS_TOTAL, "avg"),
    ("throttling.bps-read", THROTTLE_BPS_READ, "avg"),
    ("throttling.bps-write", THROTTLE_BPS_WRITE, "avg"),
    ("throttling.iops-total", THROTTLE_OPS_TOTAL, "avg"),
    ("throttling.iops-read", THROTTLE_OPS_READ, "avg"),
    ("throttling.iops-write", THROTTLE_OPS_WRITE, "avg"),
    ("throttling.bps-total-max", THROTTLE_BPS_TOTAL, "max"),
    ("throttling.bps-read-max", THROTTLE_BPS_READ, "max"),
    ("throttling.bps-write-max", THROTTLE_BPS_WRITE, "max"),
    ("throttling.iops-total-max", THROTTLE_OPS_TOTAL, "max"),
    ("throttling.iops-read-max", THROTTLE_OPS_READ, "max"),
    ("throttling.iops-write-max", THROTTLE_OPS_WRITE, "max"),
    ("throttling.bps-total-max-length", THROTTLE_BPS_TOTAL, "burst_length"),
    ("throttling.bps-read-max-length", THROTTLE_BPS_READ, "burst_length"),
    ("throttling.bps-write-max-length", THROTTLE_BPS_WRITE, "burst_length"),
    ("throttling.iops-total-max-length", THROTTLE_OPS_TOTAL, "burst_length"),
    ("throttling.iops-read-max-length", THROTTLE_OPS_READ, "burst_length"),
    ("throttling.iops-write-max-length", THROTTLE_OPS_WRITE, "burst_length"),
)

throttle_opts = QemuOptsList("throttling", [
    QemuOptDesc("throttling.iops-total", QEMU_OPT_NUMBER,
                "limit total I/O operations per second"),
    QemuOptDesc("throttling.iops-read", QEMU_OPT_NUMBER,
                "limit read operations per second"),
    QemuOptDesc("throttling.iops-write", QEMU_OPT_NUMBER,
                "limit write operations per second"),
    QemuOptDesc("throttling.bps-total", QEMU_OPT_NUMBER,
                "limit total bytes per second"),
    QemuOptDesc("throttling.bps-read", QEMU_OPT_NUMBER,
                "limit read bytes per second"),
    QemuOptDesc("throttling.bps-write", QEMU_OPT_NUMBER,
                "limit write bytes per second"),
    QemuOptDesc("throttling.iops-total-max", QEMU_OPT_NUMBER,
                "I/O operations burst"),
    QemuOptDesc("throttling.iops-read-max", QEMU_OPT_NUMBER,
                "I/O operations read burst"),
    QemuOptDesc("throttling.iops-write-max", QEMU_OPT_NUMBER,
                "I/O operations write burst"),
    QemuOptDesc("throttling.bps-total-max", QEMU_OPT_NUMBER,
                "total bytes burst"),
    QemuOptDesc("throttling.bps-read-max", QEMU_OPT_NUMBER,
                "total bytes read burst"),
    QemuOptDesc("throttling.bps-write-max", QEMU_OPT_NUMBER,
                "total bytes write burst"),
    QemuOptDesc("throttling.iops-total-max-length", QEMU_OPT_NUMBER,
                "length of the iops-total-max burst period, in seconds"),
    QemuOptDesc("throttling.iops-read-max-length", QEMU_OPT_NUMBER,
                "length of the iops-read-max burst period, in seconds"),
    QemuOptDesc("throttling.iops-write-max-length", QEMU_OPT_NUMBER,
                "length of the iops-write-max burst period, in seconds"),
    QemuOptDesc("throttling.bps-total-max-length", QEMU_OPT_NUMBER,
                "length of the bps-total-max burst period, in seconds"),
    QemuOptDesc("throttling.bps-read-max-length", QEMU_OPT_NUMBER,
                "length of the bps-read-max burst period, in seconds"),
    QemuOptDesc("throttling.bps-write-max-length", QEMU_OPT_NUMBER,
                "length of the bps-write-max burst period, in seconds"),
    QemuOptDesc("throttling.iops-size", QEMU_OPT_NUMBER,
                "when limiting by iops max size of an I/O in bytes"),
    QemuOptDesc("throttling.group", QEMU_OPT_STRING,
                "name of the block throttling group"),
])


def check_throttle_config(cfg: ThrottleConfig, errp: Errp) -> bool:
    """Refuse a configuration a user may not set, with the messages and in
    the order of the installed QEMU (7.2's throttle_is_valid).  QEMU 2.5
    said "bps/iops/maxs values must be 0 or greater" for a negative value
    and accepted an iops-size without iops limit or a burst below its
    average; with burst lengths of 1 (all 2.5 had) both versions throttle
    alike every configuration both accept."""
    if throttle_conflicting(cfg):
        error_setg(errp, "bps/iops/max total values and read/write values"
                   " cannot be used at the same time")
        return False

    b = cfg.buckets
    if (cfg.op_size and not b[THROTTLE_OPS_TOTAL].avg and
            not b[THROTTLE_OPS_READ].avg and not b[THROTTLE_OPS_WRITE].avg):
        error_setg(errp, "iops size requires an iops value to be set")
        return False

    for bkt in b:
        if not (0 <= bkt.avg <= THROTTLE_VALUE_MAX and
                0 <= bkt.max <= THROTTLE_VALUE_MAX):
            error_setg(errp, "bps/iops/max values must be within [0, %d]",
                       THROTTLE_VALUE_MAX)
            return False
        if not bkt.burst_length:
            error_setg(errp, "the burst length cannot be 0")
            return False
        if bkt.burst_length > 1 and not bkt.max:
            error_setg(errp, "burst length set without burst rate")
            return False
        if bkt.max and bkt.burst_length > THROTTLE_VALUE_MAX / bkt.max:
            error_setg(errp, "burst length too high for this burst rate")
            return False
        if bkt.max and not bkt.avg:
            error_setg(errp, "bps_max/iops_max require corresponding"
                       " bps/iops values")
            return False
        if bkt.max and bkt.max < bkt.avg:
            error_setg(errp, "bps_max/iops_max cannot be lower than bps/iops")
            return False
    return True


def extract_throttle_options(options: dict, errp: Errp
                             ) -> Optional[tuple[Optional[str],
                                                 ThrottleConfig]]:
    """Take the ``throttling.*`` keys out of an open options dict (the
    throttling part of blockdev.c's extract_common_blockdev_options).

    Returns (group, cfg), group None when not given, cfg without limits
    when none is set; None with errp set when a value does not parse or
    the configuration is refused.
    """
    opts = qemu_opts_create(throttle_opts)
    local_err = [None]
    qemu_opts_absorb_qdict(opts, options, local_err)
    if local_err[0]:
        error_propagate(errp, local_err[0])
        return None

    group = qemu_opt_get(opts, "throttling.group")
    cfg = ThrottleConfig()
    for name, index, field in THROTTLE_OPTS_MAP:
        value = qemu_opt_get_number(opts, name,
                                    getattr(cfg.buckets[index], field))
        # an unsigned int in QEMU
        if field == "burst_length" and not 0 <= value <= UINT_MAX:
            error_setg(errp, "%s value must be in the range [0, %d]",
                       name[len("throttling."):], UINT_MAX)
            return None
        setattr(cfg.buckets[index], field, value)
    cfg.op_size = qemu_opt_get_number(opts, "throttling.iops-size", 0)

    if not check_throttle_config(cfg, errp):
        return None
    return group, cfg


def blockdev_throttle_setup(bs: BlockDriverState, group: Optional[str],
                            cfg: ThrottleConfig, default_group: str) -> None:
    """Apply what extract_throttle_options() returned to the opened root
    image, as blockdev_init() does; the group defaults to the name of the
    BlockBackend."""
    if throttle_enabled(cfg):
        io.bdrv_io_limits_enable(bs, group if group else default_group)
        io.bdrv_set_io_limits(bs, cfg)


# --- QEMU 7.2: the throttle-group object and its existence check -----------
#
# In the installed QEMU a group can also be made on its own, as a QOM
# object: ``--object throttle-group,id=NAME,x-iops-total=...`` (or
# ``limits.iops-total=...``); throttle filter nodes (drivers/throttle.py)
# then join it by name.  Here the object is the group plus one reference,
# held until throttle_group_obj_del().

# property names without their "x-" or "limits." prefix -> (bucket, field)
THROTTLE_GROUP_PROPERTIES = {
    name[len("throttling."):]: (index, field)
    for name, index, field in THROTTLE_OPTS_MAP
}
THROTTLE_GROUP_PROPERTIES["iops-size"] = (None, "op_size")

throttle_group_objects: dict[str, ThrottleState] = {}


def throttle_group_exists(name: str) -> bool:
    with throttle_groups_lock:
        return any(tg.name == name for tg in throttle_groups)


def _parse_group_property(key: str, value: object, errp: Errp
                          ) -> Optional[int]:
    """An integer property value as 7.2's visitors read it: "x-" ones are
    uint64 (and must fit an int64), "limits." ones int64."""
    text = str(value).strip()
    try:
        number = int(text, 10)
    except ValueError:
        number = None
    if number is not None and key.startswith("x-"):
        if number >= 1 << 64:
            number = None
        elif number < 0 or number >= 1 << 63:
            error_setg(errp, "Property values cannot be negative")
            return None
    elif number is not None and not -(1 << 63) <= number < 1 << 63:
        number = None
    if number is None:
        error_setg(errp, "Parameter '%s' expects integer", key)
    return number


def throttle_group_obj_add(id: str, props: dict, errp: Errp) -> bool:
    """Create the group `id` from the properties of ``--object
    throttle-group`` (keys without "qom-type" and "id"), with the installed
    QEMU's checks and messages."""
    if id in throttle_group_objects:
        error_setg(errp, "attempt to add duplicate property '%s' to object "
                   "(type 'container')", id)
        return False

    cfg = ThrottleConfig()
    for key, value in props.items():
        if key.startswith("x-"):
            name = key[len("x-"):]
        elif key.startswith("limits."):
            name = key[len("limits."):]
        elif key == "limits":
            error_setg(errp, "Invalid parameter type for 'limits', "
                       "expected: object")
            return False
        else:
            name = None
        if name not in THROTTLE_GROUP_PROPERTIES:
            error_setg(errp, "Parameter '%s' is unexpected", key)
            return False
        number = _parse_group_property(key, value, errp)
        if number is None:
            return False
        index, field = THROTTLE_GROUP_PROPERTIES[name]
        if field == "burst_length":
            if number < 0:              # an int64 stored as unsigned
                number &= UINT_MAX
            if number > UINT_MAX:
                error_setg(errp, "%s value must be in the range [0, %d]",
                           key if key.startswith("x-") else name, UINT_MAX)
                return False
        if index is None:
            cfg.op_size = number
        else:
            setattr(cfg.buckets[index], field, number)

    if not check_throttle_config(cfg, errp):
        return False
    if throttle_group_exists(id):
        error_setg(errp, "A group with this name already exists")
        return False

    ts = throttle_group_incref(id)
    # No member, so no timers to cancel yet: what throttle_config() does
    # to the state, with the clock the members will use.
    ts.cfg.assign(cfg)
    for bkt in ts.cfg.buckets:
        throttle_fix_bucket(bkt)
    ts.previous_leak = qemu_clock_get_ns(throttle_group_clock_type())
    throttle_group_objects[id] = ts
    return True


def throttle_group_obj_del(id: str) -> None:
    """Drop the object's reference; the group lives on while members use
    it."""
    throttle_group_unref(throttle_group_objects.pop(id))
