"""Deterministic mode (util/deterministic.py): linked virtual clocks, the
thread pool without threads, and the same random concurrent workload run
twice in two processes giving the same trace.  Not a port of a QEMU test.

Run as a script (what the subprocess test does), this file runs the
workload and prints its full trace."""

import hashlib
import os
import random
import shutil
import subprocess
import sys
import threading

if __name__ == '__main__':
    sys.path.insert(0, os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))

import pytest  # noqa: E402

from block import core, io  # noqa: E402
from block.block_int import (BDRV_REQ_MAY_UNMAP,  # noqa: E402
                             BDRV_REQ_ZERO_WRITE)
from block.front import open_image  # noqa: E402
from block.trace_record import (blk_request_submit,  # noqa: E402
                                trace_record_start, trace_record_stop)
from drivers.sim import sim_disk_log, sim_node  # noqa: E402
from util.aio import (aio_get_thread_pool, aio_poll,  # noqa: E402
                      aio_timer_new, qemu_get_aio_context)
from util.deterministic import (HOST_START_NS,  # noqa: E402
                                deterministic_deadline_ns,
                                deterministic_disable, deterministic_enable,
                                deterministic_enabled, deterministic_now_ns,
                                deterministic_run)
from util.thread_pool import thread_pool_submit_aio  # noqa: E402
from util.throttle import THROTTLE_OPS_TOTAL, ThrottleConfig  # noqa: E402
from util.timer import (QEMU_CLOCK_HOST, QEMU_CLOCK_REALTIME,  # noqa: E402
                        QEMU_CLOCK_VIRTUAL, SCALE_NS, qemu_clock_get_ns,
                        qemu_clock_is_external, qemu_clock_step_ns,
                        qemu_clock_warp, timer_free, timer_mod_ns)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def det():
    deterministic_enable()
    yield
    try:
        if deterministic_enabled():
            deterministic_run()     # what a failed test left in flight
    finally:
        deterministic_disable()


def test_switch_links_the_clocks(det) -> None:
    assert deterministic_enabled()
    for type in (QEMU_CLOCK_VIRTUAL, QEMU_CLOCK_REALTIME, QEMU_CLOCK_HOST):
        assert qemu_clock_is_external(type)
    assert qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL) == 0
    assert qemu_clock_get_ns(QEMU_CLOCK_REALTIME) == 0
    assert qemu_clock_get_ns(QEMU_CLOCK_HOST) == HOST_START_NS
    # moving any clock moves all
    qemu_clock_step_ns(QEMU_CLOCK_REALTIME, 1500)
    assert qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL) == 1500
    assert qemu_clock_get_ns(QEMU_CLOCK_HOST) == HOST_START_NS + 1500
    # warping the virtual clock reaches a realtime timer
    ctx = qemu_get_aio_context()
    fired = []
    ts = aio_timer_new(ctx, QEMU_CLOCK_REALTIME, SCALE_NS,
                       lambda _: fired.append(deterministic_now_ns()), None)
    timer_mod_ns(ts, 5000)
    assert deterministic_deadline_ns() == 3500
    assert qemu_clock_warp(QEMU_CLOCK_VIRTUAL) == 3500
    assert aio_poll(ctx, False)
    assert fired == [5000]
    timer_free(ts)


def test_disable_hands_back(det) -> None:
    qemu_clock_step_ns(QEMU_CLOCK_VIRTUAL, 10**6)
    deterministic_disable()
    assert not deterministic_enabled()
    for type in (QEMU_CLOCK_VIRTUAL, QEMU_CLOCK_REALTIME, QEMU_CLOCK_HOST):
        assert not qemu_clock_is_external(type)
    # the virtual clock goes on from where it was, the host one is the host
    assert qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL) >= 10**6
    import time
    assert abs(qemu_clock_get_ns(QEMU_CLOCK_HOST) - time.time_ns()) < 10**9
    # enabling again starts from 0 again
    deterministic_enable()
    assert deterministic_now_ns() == 0


def test_enable_refuses_pending_timers() -> None:
    ctx = qemu_get_aio_context()
    ts = aio_timer_new(ctx, QEMU_CLOCK_VIRTUAL, SCALE_NS, lambda _: None, None)
    timer_mod_ns(ts, qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL) + 10**9)
    with pytest.raises(AssertionError, match='a timer is pending'):
        deterministic_enable()
    timer_free(ts)
    assert not deterministic_enabled()


def test_thread_pool_runs_inline(det) -> None:
    ctx = qemu_get_aio_context()
    pool = aio_get_thread_pool(ctx)
    threads = threading.active_count()
    ran, done = [], []

    def work(arg):
        ran.append(threading.current_thread() is threading.main_thread())
        return arg

    for i in range(5):
        thread_pool_submit_aio(pool, work, i,
                               lambda opaque, ret: done.append(ret), None)
    # the work ran at submission, in this thread; completion comes from
    # the bottom half, in submission order
    assert ran == [True] * 5 and done == []
    while aio_poll(ctx, False):
        pass
    assert done == [0, 1, 2, 3, 4]
    assert threading.active_count() == threads
    assert deterministic_now_ns() == 0


def test_synchronous_calls_take_virtual_time(det, tmp_path) -> None:
    """bdrv_* and front calls poll with warp_when_idle: they finish after
    the modelled time without waiting for the host."""
    img = open_image({'driver': 'raw',
                      'file': {'driver': 'sim', 'size': 1 << 20,
                               'latency-ns': 3 * 10**9}})
    t0 = deterministic_now_ns()
    img.write(0, b'x' * 512)
    assert deterministic_now_ns() - t0 == 3 * 10**9
    assert img.read(0, 3) == b'xxx'
    assert deterministic_now_ns() - t0 == 6 * 10**9
    img.close()
    # a file goes through the thread pool, inline: no virtual time at all
    path = tmp_path / 'f.img'
    path.write_bytes(bytes(4096))
    with open_image(str(path), fmt='raw') as img:
        t1 = deterministic_now_ns()
        img.write(512, b'y' * 512)
        img.flush()
        assert img.read(512, 2) == b'yy'
        assert deterministic_now_ns() == t1


def test_deterministic_run_until(det) -> None:
    ctx = qemu_get_aio_context()
    fired = []
    timers = []
    for t in (100, 200, 300):
        ts = aio_timer_new(ctx, QEMU_CLOCK_VIRTUAL, SCALE_NS,
                           lambda t: fired.append((t, deterministic_now_ns())),
                           t)
        timer_mod_ns(ts, t)
        timers.append(ts)
    assert deterministic_run(until_ns=250) == 250
    assert fired == [(100, 100), (200, 200)]
    assert deterministic_run() == 300
    assert fired[-1] == (300, 300)
    assert deterministic_run() == 300       # nothing left: time stays
    for ts in timers:
        timer_free(ts)


def test_environment_variable() -> None:
    env = dict(os.environ, PYQEMU_DETERMINISTIC='1', PYTHONPATH=ROOT)
    out = subprocess.run(
        [sys.executable, '-c',
         'import util.aio\n'
         'from util.deterministic import deterministic_enabled\n'
         'from util.timer import *\n'
         'print(deterministic_enabled(), '
         'qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL), '
         'qemu_clock_get_ns(QEMU_CLOCK_HOST))'],
        env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ['True', '0', str(HOST_START_NS)]


# --- the same workload twice ------------------------------------------------

def run_workload(template: str, raw_file: str, seed: int) -> str:
    """Clients issue random requests concurrently to three images (qcow2
    over a simulated disk with random latency, raw over a file through the
    thread pool, raw over a faulty simulated disk in a throttle group);
    returns the full record: traces, disk logs, times, final contents."""
    assert deterministic_enabled()
    ctx = qemu_get_aio_context()
    rng = random.Random(seed)
    images = {
        'qcow2-sim': open_image({
            'driver': 'qcow2',
            'file': {'driver': 'sim', 'path': template, 'overlay': True,
                     'disk': 'd0', 'channels': 3, 'latency-ns': 80000,
                     'latency-dist': 'normal', 'latency-jitter-ns': 30000,
                     'bandwidth': 200 << 20, 'seed': 7, 'log': True}}),
        'raw-file': open_image(raw_file, fmt='raw'),
        'raw-sim': open_image({
            'driver': 'raw',
            'file': {'driver': 'sim', 'size': 4 << 20, 'disk': 'd1',
                     'channels': 2, 'latency-ns': 50000,
                     'latency-dist': 'uniform', 'latency-jitter-ns': 40000,
                     'error-rate': '0.05', 'seed': 3, 'log': True}}),
    }
    cfg = ThrottleConfig()
    cfg.buckets[THROTTLE_OPS_TOTAL].avg = 2000
    io.bdrv_io_limits_enable(images['raw-sim'].bs, 'g')
    io.bdrv_set_io_limits(images['raw-sim'].bs, cfg)

    streams = {}
    for name, img in images.items():
        streams[name] = []
        trace_record_start(img, _ListStream(streams[name]))

    left = {name: 60 for name in images}

    def issue(client):
        name, img = client
        if not left[name]:
            return
        left[name] -= 1
        length = img.length()
        op = rng.choice(('read', 'read', 'write', 'write', 'zero',
                         'discard', 'flush'))
        nbytes = rng.choice((512, 4096, 65536, 3 * 4096))
        offset = rng.randrange(0, length - nbytes) // 512 * 512
        flags, buf = 0, None
        if op == 'read':
            buf = bytearray(nbytes)
        elif op == 'write':
            buf = bytearray(rng.randbytes(nbytes))
        elif op == 'zero':
            op, flags = 'write', BDRV_REQ_ZERO_WRITE | BDRV_REQ_MAY_UNMAP
        blk_request_submit(img.blk, op, offset, nbytes, flags, buf,
                           lambda req: think(client))

    def think(client):
        ts = aio_timer_new(ctx, QEMU_CLOCK_VIRTUAL, SCALE_NS, after_think,
                           client)
        timer_mod_ns(ts, deterministic_now_ns() + rng.randrange(0, 40000))
        thinking[id(ts)] = ts

    def after_think(client):
        issue(client)

    thinking = {}
    for name, img in images.items():
        for _ in range(4):
            issue((name, img))
    deterministic_run()
    assert not any(left.values())

    lines = ['end %d' % deterministic_now_ns()]
    for name, img in images.items():
        trace_record_stop(img)
        lines.append('trace %s' % name)
        lines.extend(streams[name])
        log = sim_disk_log(sim_node(img.bs)) if sim_node(img.bs) else None
        for r in log or ():
            lines.append('disk %s %s %d %d %d %d %d %d %d' % (
                name, r.op, r.offset, r.bytes, r.submit_ns, r.start_ns,
                r.end_ns, r.channel, r.ret))
        data = img.read(0, img.length())
        lines.append('sha256 %s %s' % (name, hashlib.sha256(data).hexdigest()))
    for img in images.values():
        img.close()
    for ts in thinking.values():
        timer_free(ts)
    return '\n'.join(lines) + '\n'


class _ListStream:
    """A text stream that keeps lines (the recorder writes whole lines)."""

    def __init__(self, lines: list) -> None:
        self.lines = lines

    def write(self, text: str) -> None:
        self.lines.extend(text.splitlines())

    def flush(self) -> None:
        pass


def test_same_workload_same_trace(tmp_path) -> None:
    """The random concurrent workload, run in two processes (with different
    hash seeds), produces the same requests, completions, timestamps, disk
    traffic and final images."""
    template = str(tmp_path / 'template.qcow2')
    errp = [None]
    core.bdrv_img_create(template, 'qcow2', None, None, None, 4 << 20, 0,
                         errp, True)
    assert errp[0] is None
    raw = tmp_path / 'raw0.img'
    raw.write_bytes(bytes(4 << 20))
    outputs = []
    for run, hashseed in ((1, '1'), (2, '2')):
        raw_copy = str(tmp_path / ('raw%d.img' % run))
        shutil.copy(raw, raw_copy)
        env = dict(os.environ, PYQEMU_DETERMINISTIC='1', PYTHONPATH=ROOT,
                   PYTHONHASHSEED=hashseed)
        proc = subprocess.run(
            [sys.executable, os.path.abspath(__file__), template, raw_copy,
             '12345'], env=env, cwd=ROOT, capture_output=True, text=True,
            timeout=300)
        assert proc.returncode == 0, proc.stderr
        outputs.append(proc.stdout)
    assert outputs[0] == outputs[1]

    lines = outputs[0].splitlines()
    requests = [line for line in lines if line[:1].isdigit()]
    disk = [line for line in lines if line.startswith('disk ')]
    assert len(requests) == 180
    assert len(disk) > 120       # the qcow2 metadata traffic is in there
    # concurrent: requests complete out of submission order; errors too
    assert any(int(a.split()[0]) > int(b.split()[0])
               for a, b in zip(requests, requests[1:]))
    assert any(int(line.split()[7]) < 0 for line in requests)
    assert int(lines[0].split()[1]) > 0


if __name__ == '__main__':
    deterministic_enable()
    sys.stdout.write(run_workload(sys.argv[1], sys.argv[2],
                                  int(sys.argv[3])))
