"""Record and replay (block/trace_record.py): a recorded concurrent
workload replays to the same final image on the same stack (timed) and on
another one (serial), and its qemu-io script gives the same image through
the real qemu-io (and pyqemu-io).  Not a port of a QEMU test."""

import errno
import io as pyio
import os
import random
import shutil
import subprocess
import sys

import pytest

from block import block_backend, core
from block.block_int import (BDRV_REQ_FUA, BDRV_REQ_MAY_UNMAP,
                             BDRV_REQ_ZERO_WRITE)
from block.front import open_image
from block.trace_record import (TraceEntry, blk_request_submit, main,
                                trace_load, trace_parse, trace_record_start,
                                trace_record_stop, trace_replay,
                                trace_to_qemu_io)
from drivers import bdrv_iterate_format
from util.aio import aio_poll
from util.deterministic import (deterministic_disable, deterministic_enable,
                                deterministic_enabled, deterministic_now_ns,
                                deterministic_run)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QEMU_IO = shutil.which('qemu-io') or '/usr/bin/qemu-io'
QEMU_IMG = shutil.which('qemu-img') or '/usr/bin/qemu-img'
SIZE = 1 << 20

needs_qemu_io = pytest.mark.skipif(not os.access(QEMU_IO, os.X_OK),
                                   reason='qemu-io is not installed')


@pytest.fixture(autouse=True)
def det():
    deterministic_enable()
    yield
    try:
        if deterministic_enabled():
            deterministic_run()     # what a failed test left in flight
    finally:
        deterministic_disable()


def base_image(path) -> str:
    """A raw image with some data in it, so that zeroes show."""
    rng = random.Random(99)
    with open(path, 'wb') as f:
        f.write(rng.randbytes(SIZE))
    return str(path)


def sim_stack(path):
    """raw over a 4-channel sim disk with random latency, data in path."""
    return open_image({'driver': 'raw',
                       'file': {'driver': 'sim', 'path': str(path),
                                'channels': 4, 'latency-ns': 100000,
                                'latency-dist': 'uniform',
                                'latency-jitter-ns': 90000,
                                'bandwidth': '100M', 'seed': 11}})


def workload(img, seed=5, n=150):
    """Four clients issue random requests, each as soon as its previous
    one completed, over a small span so that writes overlap."""
    rng = random.Random(seed)
    left = [n]

    def issue(_req=None):
        if not left[0]:
            return
        left[0] -= 1
        op = rng.choice(('read', 'write', 'write', 'pattern', 'zero',
                         'discard', 'flush', 'fua'))
        sectors = rng.randrange(1, 24)
        offset = rng.randrange(0, 256) * 512
        nbytes = sectors * 512
        if rng.random() < 0.3 and op in ('read', 'write', 'pattern'):
            offset += rng.randrange(1, 512)     # unaligned bytes
            nbytes -= rng.randrange(1, 256)
        flags, buf = 0, None
        if op == 'read':
            buf = bytearray(nbytes)
        elif op in ('write', 'fua'):
            buf = bytearray(rng.randbytes(nbytes))
            flags = BDRV_REQ_FUA if op == 'fua' else 0
        elif op == 'pattern':
            buf = bytearray([rng.randrange(256)]) * nbytes
        elif op == 'zero':
            flags = BDRV_REQ_ZERO_WRITE | (
                BDRV_REQ_MAY_UNMAP if rng.random() < 0.5 else 0)
        real_op = {'pattern': 'write', 'zero': 'write',
                   'fua': 'write'}.get(op, op)
        blk_request_submit(img.blk, real_op, offset, nbytes, flags, buf,
                           issue)

    for _ in range(4):
        issue()
    deterministic_run()


def record(tmp_path):
    """Record the workload on the sim stack; returns (trace path, final
    image path, initial image path)."""
    initial = base_image(tmp_path / 'initial.img')
    recorded = tmp_path / 'recorded.img'
    shutil.copy(initial, recorded)
    trace = str(tmp_path / 'trace.txt')
    with sim_stack(recorded) as img:
        trace_record_start(img, trace)
        workload(img)
        trace_record_stop(img)
    return trace, str(recorded), initial


def test_trace_file(tmp_path) -> None:
    trace, _, _ = record(tmp_path)
    with open(trace) as f:
        lines = f.read().splitlines()
    assert lines[0] == '# pyqemu-block trace 1'
    entries = trace_load(trace)
    assert len(entries) == 150
    assert sorted(e.id for e in entries) == list(range(150))
    # completion order differs from submission order: concurrent
    assert [e.id for e in entries] != list(range(150))
    ops = {e.op for e in entries}
    assert ops == {'read', 'write', 'flush', 'discard'}
    kinds = {e.format_data()[:2] for e in entries if e.op == 'write'}
    assert kinds == {'P:', 'B:', '-'}
    assert any(e.flags & BDRV_REQ_FUA for e in entries)
    assert all(e.complete_ns >= e.submit_ns for e in entries)
    # parsing gives back each line
    for line, entry in zip(lines[2:], entries):
        assert entry.format() == line


def test_timed_replay_same_stack(tmp_path) -> None:
    """On the same stack the replay is the recording again: same final
    image, same completion order and times (shifted), same results."""
    trace, recorded, initial = record(tmp_path)
    entries = trace_load(trace)
    target = tmp_path / 'timed.img'
    shutil.copy(initial, target)
    again = pyio.StringIO()
    with sim_stack(target) as img:
        trace_record_start(img, again)
        t0 = deterministic_now_ns()
        results = trace_replay(img, entries)
        trace_record_stop(img)
    assert open(target, 'rb').read() == open(recorded, 'rb').read()
    assert [r.ret for r in results] == [e.ret for e in
                                       sorted(entries, key=lambda e: e.id)]
    replayed = trace_parse(again.getvalue().splitlines())
    shift = t0 - min(e.submit_ns for e in entries)
    assert [(e.id, e.op, e.offset, e.bytes, e.flags, e.submit_ns + shift,
             e.complete_ns + shift, e.ret) for e in entries] == \
        [(e.id, e.op, e.offset, e.bytes, e.flags, e.submit_ns,
          e.complete_ns, e.ret) for e in replayed]


def test_timed_replay_instant_disk(tmp_path) -> None:
    """On a disk without latency every request completes when it is
    submitted (inside the submission, which the replayer must survive)."""
    trace, _, _ = record(tmp_path)
    entries = trace_load(trace)
    with open_image('sim:', fmt='raw', file={'size': SIZE}) as img:
        results = trace_replay(img, entries)
    assert sorted(r.entry.id for r in results) == list(range(150))
    assert all(r.complete_ns == r.submit_ns for r in results)
    shift = results[0].submit_ns - results[0].entry.submit_ns
    assert all(r.submit_ns - r.entry.submit_ns == shift for r in results)


def test_serial_replay_other_stack(tmp_path) -> None:
    """One request at a time in completion order, on raw over a plain
    file: the same final image."""
    trace, recorded, initial = record(tmp_path)
    target = tmp_path / 'serial.img'
    shutil.copy(initial, target)
    with open_image(str(target), fmt='raw') as img:
        results = trace_replay(img, trace_load(trace), mode='serial')
    assert all(r.ret == 0 for r in results)
    # each ran alone
    assert all(b.submit_ns >= a.complete_ns
               for a, b in zip(results, results[1:]))
    assert open(target, 'rb').read() == open(recorded, 'rb').read()


def run_script(program, fmt, image, script) -> None:
    with open(script) as f:
        proc = subprocess.run(program + ['-f', fmt, image], stdin=f,
                              capture_output=True, text=True, cwd=ROOT,
                              env=dict(os.environ, PYTHONPATH=ROOT),
                              timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert 'failed' not in proc.stdout, proc.stdout[-2000:]


@needs_qemu_io
def test_qemu_io_script(tmp_path) -> None:
    """The trace as a qemu-io script gives the recorded image through the
    real qemu-io, and through pyqemu-io."""
    trace, recorded, initial = record(tmp_path)
    script = tmp_path / 'script.qemu-io'
    data_dir = tmp_path / 'data'
    data_dir.mkdir()
    with open(script, 'w') as f:
        n = trace_to_qemu_io(trace_load(trace), f, str(data_dir))
    assert n == 150
    text = script.read_text()
    for cmd in ('read -q ', 'write -q -P 0x', 'write -q -s ',
                'write -q -z ', 'write -q -f ', 'discard -q ', 'flush'):
        assert cmd in text
    for name, program in (('qemu-io', [QEMU_IO]),
                          ('pyqemu-io', [sys.executable, '-m',
                                         'block.qemu_io'])):
        target = tmp_path / ('%s.img' % name)
        shutil.copy(initial, target)
        run_script(program, 'raw', str(target), script)
        assert open(target, 'rb').read() == open(recorded, 'rb').read(), name


@needs_qemu_io
@pytest.mark.skipif('qcow2' not in bdrv_iterate_format(),
                    reason='no qcow2 driver')
def test_qcow2_trace_through_qemu_io(tmp_path) -> None:
    """A workload recorded on qcow2 over a sim disk, replayed by qemu-io
    on a fresh qcow2: qemu-img compare finds the same guest data."""
    template = str(tmp_path / 'template.qcow2')
    errp = [None]
    core.bdrv_img_create(template, 'qcow2', None, None, None, SIZE, 0, errp,
                         True)
    assert errp[0] is None
    trace = str(tmp_path / 'trace.txt')
    img = open_image({'driver': 'qcow2',
                      'file': {'driver': 'sim', 'path': template,
                               'overlay': True, 'channels': 2,
                               'latency-ns': 50000, 'latency-dist': 'normal',
                               'latency-jitter-ns': 20000}})
    trace_record_start(img, trace)
    workload(img, seed=8, n=100)
    trace_record_stop(img)
    guest = tmp_path / 'guest.raw'
    guest.write_bytes(img.read(0, SIZE))
    img.close()

    script = tmp_path / 'script'
    with open(script, 'w') as f:
        trace_to_qemu_io(trace_load(trace), f, str(tmp_path))
    target = str(tmp_path / 'replayed.qcow2')
    shutil.copy(template, target)
    run_script([QEMU_IO], 'qcow2', target, script)
    out = subprocess.run([QEMU_IMG, 'compare', '-f', 'raw', '-F', 'qcow2',
                          str(guest), target], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    check = subprocess.run([QEMU_IMG, 'check', target], capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stdout


def test_aio_flush_and_discard_are_recorded(tmp_path) -> None:
    path = tmp_path / 'a.img'
    path.write_bytes(bytes(SIZE))
    out = pyio.StringIO()
    with open_image(str(path), fmt='raw') as img:
        trace_record_start(img, out, data=False)
        done = []
        block_backend.blk_aio_flush(img.blk, lambda o, r: done.append(r),
                                    None)
        block_backend.blk_aio_discard(img.blk, 8, 8,
                                      lambda o, r: done.append(r), None)
        img.write(0, b'x' * 512)
        img.write_zeroes(512, 512)
        img.discard(1024, 1000)         # whole sectors only: none here
        while len(done) < 2:
            aio_poll(block_backend.blk_get_aio_context(img.blk), True)
        # a request the checks refuse is not recorded
        with pytest.raises(OSError):
            img.read(SIZE, 512)
        trace_record_stop(img)
    entries = trace_parse(out.getvalue().splitlines())
    assert [(e.id, e.op, e.offset, e.bytes, e.flags, e.ret, e.data)
            for e in entries] == [
        (0, 'flush', 0, 0, 0, 0, None),
        (1, 'discard', 4096, 4096, 0, 0, None),
        (2, 'write', 0, 512, 0, 0, None),
        (3, 'write', 512, 512, BDRV_REQ_ZERO_WRITE, 0, None),
        (4, 'discard', 1024, 1000, 0, 0, None)]
    # without data, the replay writes the byte id & 0xff
    path.write_bytes(bytes(SIZE))
    with open_image(str(path), fmt='raw') as img:
        trace_replay(img, entries, mode='serial')
        assert img.read(0, 513) == b'\x02' * 512 + b'\0'


def test_failed_requests(tmp_path) -> None:
    """Errors are recorded; the qemu-io script leaves failed requests out,
    the replayer can too."""
    out = pyio.StringIO()
    img = open_image({'driver': 'raw',
                      'file': {'driver': 'sim', 'size': SIZE,
                               'faults': 'write:4096:ENOSPC'}})
    trace_record_start(img, out)
    img.write(0, b'a' * 512)
    with pytest.raises(OSError):
        img.write(4096, b'b' * 512)
    trace_record_stop(img)
    img.close()
    entries = trace_parse(out.getvalue().splitlines())
    assert [e.ret for e in entries] == [0, -errno.ENOSPC]
    script = pyio.StringIO()
    assert trace_to_qemu_io(entries, script) == 1
    assert script.getvalue() == 'write -q -P 0x61 0 512\n'
    with open_image('sim:', fmt='raw') as img:
        results = trace_replay(img, entries, mode='serial', skip_failed=True)
        assert [r.entry.id for r in results] == [0]


def test_bad_trace_lines() -> None:
    with pytest.raises(ValueError, match='trace line 2: expected 9 fields'):
        trace_parse(['# comment', '0 read 0 512'])
    with pytest.raises(ValueError, match='trace line 1: bad data field'):
        trace_parse(['0 write 0 512 0x0 0 0 0 X:zz'])
    entry = TraceEntry(3, 'write', 0, 4, 0, 0, 0, 0, b'\x07' * 4)
    assert entry.format().endswith(' P:07')


def test_command_line(tmp_path, capsys) -> None:
    trace, recorded, initial = record(tmp_path)
    script = str(tmp_path / 'out.qemu-io')
    assert main(['convert', trace, script]) == 0
    assert os.path.isdir(script + '.d')
    target = tmp_path / 'cli.img'
    shutil.copy(initial, target)
    deterministic_disable()             # main() switches it on itself
    assert main(['replay', trace, str(target), '-f', 'raw', '--serial']) == 0
    assert capsys.readouterr().out.startswith('150 requests, 0 failed, ')
    assert open(target, 'rb').read() == open(recorded, 'rb').read()
    assert main(['replay', str(tmp_path / 'missing'), str(target)]) == 1
