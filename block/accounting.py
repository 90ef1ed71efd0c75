"""I/O accounting: the Python twin of QEMU's block/accounting.c.

Counts bytes, operations, failed, invalid and merged requests and the total
latency per request type.  The per-interval latency averages of QEMU
(block_acct_add_interval, TimedAverage) are left out: nothing here reads
them.
"""

from __future__ import annotations

from util.timer import QEMU_CLOCK_REALTIME, qemu_clock_get_ns

BLOCK_ACCT_READ = 0
BLOCK_ACCT_WRITE = 1
BLOCK_ACCT_FLUSH = 2
BLOCK_MAX_IOTYPE = 3

clock_type = QEMU_CLOCK_REALTIME


class BlockAcctStats:
    __slots__ = ('nr_bytes', 'nr_ops', 'invalid_ops', 'failed_ops',
                 'total_time_ns', 'merged', 'last_access_time_ns',
                 'account_invalid', 'account_failed')

    def __init__(self) -> None:
        self.nr_bytes = [0] * BLOCK_MAX_IOTYPE
        self.nr_ops = [0] * BLOCK_MAX_IOTYPE
        self.invalid_ops = [0] * BLOCK_MAX_IOTYPE
        self.failed_ops = [0] * BLOCK_MAX_IOTYPE
        self.total_time_ns = [0] * BLOCK_MAX_IOTYPE
        self.merged = [0] * BLOCK_MAX_IOTYPE
        self.last_access_time_ns = 0
        self.account_invalid = False
        self.account_failed = False


class BlockAcctCookie:
    __slots__ = ('bytes', 'start_time_ns', 'type')

    def __init__(self) -> None:
        self.bytes = 0
        self.start_time_ns = 0
        self.type = BLOCK_ACCT_READ


def block_acct_init(stats: BlockAcctStats, account_invalid: bool,
                    account_failed: bool) -> None:
    stats.account_invalid = account_invalid
    stats.account_failed = account_failed


def block_acct_start(stats: BlockAcctStats, cookie: BlockAcctCookie,
                     nbytes: int, type: int) -> None:
    assert type < BLOCK_MAX_IOTYPE
    cookie.bytes = nbytes
    cookie.start_time_ns = qemu_clock_get_ns(clock_type)
    cookie.type = type


def block_acct_done(stats: BlockAcctStats, cookie: BlockAcctCookie) -> None:
    time_ns = qemu_clock_get_ns(clock_type)
    assert cookie.type < BLOCK_MAX_IOTYPE
    stats.nr_bytes[cookie.type] += cookie.bytes
    stats.nr_ops[cookie.type] += 1
    stats.total_time_ns[cookie.type] += time_ns - cookie.start_time_ns
    stats.last_access_time_ns = time_ns


def block_acct_failed(stats: BlockAcctStats, cookie: BlockAcctCookie) -> None:
    assert cookie.type < BLOCK_MAX_IOTYPE
    stats.failed_ops[cookie.type] += 1
    if stats.account_failed:
        time_ns = qemu_clock_get_ns(clock_type)
        stats.total_time_ns[cookie.type] += time_ns - cookie.start_time_ns
        stats.last_access_time_ns = time_ns


def block_acct_invalid(stats: BlockAcctStats, type: int) -> None:
    # no total_time_ns here: an invalid request never reached the disk
    assert type < BLOCK_MAX_IOTYPE
    stats.invalid_ops[type] += 1
    if stats.account_invalid:
        stats.last_access_time_ns = qemu_clock_get_ns(clock_type)


def block_acct_merge_done(stats: BlockAcctStats, type: int,
                          num_requests: int) -> None:
    assert type < BLOCK_MAX_IOTYPE
    stats.merged[type] += num_requests


def block_acct_idle_time_ns(stats: BlockAcctStats) -> int:
    return qemu_clock_get_ns(clock_type) - stats.last_access_time_ns
