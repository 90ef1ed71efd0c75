"""The SimPy adapter (block/simpy_adapter.py) and the example of
examples/simpy_vms.py, whose figures are checked against what the disk
model implies.  Not a port of a QEMU test."""

import errno
import importlib.util
import os
import subprocess
import sys
import time

import pytest

simpy = pytest.importorskip('simpy')

from block import io  # noqa: E402
from block.front import open_image  # noqa: E402
from block.simpy_adapter import SimPyBlock  # noqa: E402
from drivers import bdrv_iterate_format  # noqa: E402
from drivers.sim import sim_disks  # noqa: E402
from util.deterministic import (deterministic_disable,  # noqa: E402
                                deterministic_enabled, deterministic_now_ns,
                                deterministic_run)
from util.throttle import THROTTLE_OPS_TOTAL, ThrottleConfig  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MS = 10**6


@pytest.fixture(autouse=True)
def cleanup():
    yield
    try:
        if deterministic_enabled():
            deterministic_run()     # what a failed test left in flight
    finally:
        deterministic_disable()
    assert not sim_disks


def load_example():
    spec = importlib.util.spec_from_file_location(
        'simpy_vms', os.path.join(ROOT, 'examples', 'simpy_vms.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sim_image(**opts):
    file = {'driver': 'sim', 'size': 16 << 20}
    file.update({k.replace('_', '-'): v for k, v in opts.items()})
    return open_image({'driver': 'raw', 'file': file})


def test_requests_from_processes() -> None:
    env = simpy.Environment()
    sb = SimPyBlock(env)
    img = sim_image(latency_ns=2 * MS)
    seen = []

    def proc(env):
        n = yield sb.write(img, 4096, b'abc' * 512)
        seen.append(('write', n, env.now))
        data = yield sb.read(img, 4096, 6)
        seen.append(('read', data, env.now))
        yield sb.write_zeroes(img, 4096, 512)
        yield sb.discard(img, 0, 65536)
        yield sb.flush(img)
        seen.append(('rest', (yield sb.read(img, 4096, 3)), env.now))
        try:
            yield sb.read(img, 16 << 20, 512)      # past the end
        except OSError as e:
            seen.append(('error', e.errno, str(e)))

    env.process(proc(env))
    env.run()
    assert seen == [('write', 1536, pytest.approx(0.002)),
                    ('read', b'abcabc', pytest.approx(0.004)),
                    ('rest', bytes(3), pytest.approx(0.012)),
                    ('error', errno.EIO,
                     '[Errno 5] read failed: Input/output error')]
    # the virtual clock followed simpy
    assert deterministic_now_ns() == round(env.now * 1e9)
    img.close()


def test_concurrent_processes_share_the_channel() -> None:
    env = simpy.Environment()
    sb = SimPyBlock(env)
    img = sim_image(latency_ns=MS)
    done = []

    def proc(env, i, delay):
        yield env.timeout(delay)
        yield sb.read(img, i * 512, 512)
        done.append((i, round(env.now * 1e9)))

    # three at once, one later while the disk is still busy, one when idle
    for i in range(3):
        env.process(proc(env, i, 0))
    env.process(proc(env, 3, 0.0015))
    env.process(proc(env, 4, 0.010))
    env.run()
    assert done == [(0, MS), (1, 2 * MS), (2, 3 * MS), (3, 4 * MS),
                    (4, 11 * MS)]
    img.close()


def test_time_in_nanoseconds_and_failures() -> None:
    env = simpy.Environment()
    sb = SimPyBlock(env, ns_per_unit=1)
    img = sim_image(latency_ns=333, faults='write:0:ENOSPC')
    out = []

    def proc(env):
        yield env.timeout(1000)
        try:
            yield sb.write(img, 0, bytes(512))
        except OSError as e:
            out.append((env.now, e.errno))
        yield sb.write(img, 512, bytes(512), fua=True)
        out.append(env.now)

    env.process(proc(env))
    env.run()
    # the FUA write is a write then a flush
    assert out == [(1333, errno.ENOSPC), 1333 + 666]
    img.close()


def test_synchronous_calls_move_the_offset(tmp_path) -> None:
    """Opening an image costs virtual time simpy does not see: the
    adapter's offset absorbs it, latencies stay right."""
    env = simpy.Environment()
    sb = SimPyBlock(env)
    img = sim_image(latency_ns=5 * MS)
    img.write(0, b'x' * 512)                  # 5 ms outside simpy
    lat = []

    def proc(env):
        t = env.now
        yield sb.read(img, 0, 512)
        lat.append(env.now - t)

    env.process(proc(env))
    env.run()
    assert lat == [pytest.approx(0.005)]
    assert sb.offset_ns == 5 * MS
    assert deterministic_now_ns() == round(env.now * 1e9) + 5 * MS
    img.close()


def test_throttled_process() -> None:
    """A throttle group's timers run on the virtual clock too: 100 IOPS
    with a burst of 10 lets 60 requests through in 0.5 s."""
    env = simpy.Environment()
    sb = SimPyBlock(env)
    img = sim_image()
    cfg = ThrottleConfig()
    cfg.buckets[THROTTLE_OPS_TOTAL].avg = 100
    io.bdrv_io_limits_enable(img.bs, 'tg')
    io.bdrv_set_io_limits(img.bs, cfg)
    times = []

    def proc(env):
        for i in range(60):
            yield sb.read(img, 0, 512)
            times.append(env.now)

    env.process(proc(env))
    env.run()
    assert times[-1] == pytest.approx(0.5, abs=0.011)
    img.close()


# --- the example --------------------------------------------------------------

L = 250000      # ns


def fixed_disk(channels=1):
    return {'channels': channels, 'latency-ns': L}


def test_example_single_channel_depth_one() -> None:
    """One VM, one request at a time, one channel of fixed latency L: N
    requests take N*L, each L."""
    ex = load_example()
    n = 200
    summary = ex.simulate(vms=1, requests=n, depth=1, fmt='raw',
                          disk=fixed_disk(), throttled=0)
    vm = summary['vms'][0]
    assert vm.ops == n and vm.errors == 0
    assert summary['time'] == pytest.approx(n * L / 1e9)
    assert vm.latencies == [pytest.approx(L / 1e9)] * n
    assert summary['disk']['busy_ns'] == n * L


def test_example_queue_depth() -> None:
    """Depth 4 on one channel: the disk stays busy (N*L in all) and, once
    the queue is full, every request waits for the 3 ahead of it."""
    ex = load_example()
    n = 200
    summary = ex.simulate(vms=1, requests=n, depth=4, fmt='raw',
                          disk=fixed_disk(), throttled=0)
    vm = summary['vms'][0]
    assert summary['time'] == pytest.approx(n * L / 1e9)
    assert sorted(vm.latencies)[:3] == [pytest.approx(k * L / 1e9)
                                        for k in (1, 2, 3)]
    assert vm.percentile(50) == pytest.approx(4 * L / 1e9)
    assert vm.percentile(99) == pytest.approx(4 * L / 1e9)


def test_example_channels_in_parallel() -> None:
    """Two VMs at depth 1 on a two-channel disk never wait for each other;
    on one channel they take turns."""
    ex = load_example()
    n = 100
    two = ex.simulate(vms=2, requests=n, depth=1, fmt='raw',
                      disk=fixed_disk(2), throttled=0)
    assert two['time'] == pytest.approx(n * L / 1e9)
    for vm in two['vms']:
        assert vm.percentile(100) == pytest.approx(L / 1e9)
    one = ex.simulate(vms=2, requests=n, depth=1, fmt='raw',
                      disk=fixed_disk(1), throttled=0)
    assert one['time'] == pytest.approx(2 * n * L / 1e9)
    for vm in one['vms']:
        assert vm.percentile(50) == pytest.approx(2 * L / 1e9)


def test_example_throttle_group() -> None:
    """Two VMs in a group of 200 IOPS share it (about 100 each, plus the
    burst); a third, unthrottled, is limited by the disk alone."""
    ex = load_example()
    duration = 2.0
    summary = ex.simulate(vms=3, duration=duration, depth=2, fmt='raw',
                          disk=fixed_disk(4), throttled=2, group_iops=200)
    a, b, free = summary['vms']
    group = a.ops + b.ops
    # the bucket lets max + 1 = 21 requests through at once, and the 4
    # workers may each have issued one more just before the end
    assert 200 * duration <= group <= 200 * duration + 21 + 4
    assert min(a.ops, b.ops) > 0.9 * max(a.ops, b.ops)     # round robin
    # depth 2 on an idle disk: 2 requests per L
    assert free.ops == pytest.approx(2 * duration / (L / 1e9), abs=4)


@pytest.mark.skipif('qcow2' not in bdrv_iterate_format(),
                    reason='no qcow2 driver')
def test_example_qcow2_metadata() -> None:
    """With qcow2 the disk serves more than the guests asked for: the
    format's metadata (L2 tables, refcounts) and flushes."""
    ex = load_example()
    summary = ex.simulate(vms=2, requests=100, depth=2, fmt='qcow2',
                          disk=fixed_disk(2), throttled=0, read_ratio=0.0)
    guest_writes = sum(vm.writes for vm in summary['vms'])
    assert guest_writes == 200
    assert summary['disk']['ops']['write'] > guest_writes
    assert summary['disk']['ops']['flush'] > 0


def test_example_runs_quickly(tmp_path) -> None:
    """The script as a user runs it, with its defaults: under a minute."""
    env = dict(os.environ, PYTHONPATH='')
    start = time.monotonic()
    out = subprocess.run([sys.executable, 'examples/simpy_vms.py',
                          '--plot', str(tmp_path / 'lat.png')],
                         cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    elapsed = time.monotonic() - start
    assert out.returncode == 0, out.stderr
    assert elapsed < 60
    lines = out.stdout.splitlines()
    assert lines[0].startswith('4 VMs on one simulated disk')
    assert [line.split()[0] for line in lines[2:6]] == ['vm0', 'vm1', 'vm2',
                                                       'vm3']
    try:
        import matplotlib  # noqa: F401
        assert (tmp_path / 'lat.png').stat().st_size > 0
    except ImportError:
        assert '--plot needs matplotlib' in out.stderr
