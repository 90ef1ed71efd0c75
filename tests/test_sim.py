"""The sim protocol (drivers/sim.py): service times on the virtual clock,
channels, bandwidth, latency distributions, shared disks, faults, data in
memory or in a file, formats stacked on it.  Not a port of a QEMU test."""

import errno
import json
import statistics

import pytest

from block import core, io
from block.block_int import BDRV_REQ_MAY_UNMAP, BDRV_REQ_ZERO_WRITE
from block.front import open_image
from block.trace_record import blk_request_submit
from drivers import bdrv_iterate_format
from drivers.sim import sim_disk_log, sim_disk_stats, sim_disks, sim_node
from util.deterministic import (deterministic_disable, deterministic_enable,
                                deterministic_enabled, deterministic_now_ns,
                                deterministic_run)

MS = 10**6


@pytest.fixture(autouse=True)
def det():
    deterministic_enable()
    yield
    try:
        if deterministic_enabled():
            deterministic_run()     # what a failed test left in flight
    finally:
        deterministic_disable()
    assert not sim_disks


def sim(**opts):
    """A raw image over a sim disk."""
    file = {'driver': 'sim', 'size': 16 << 20}
    file.update({k.replace('_', '-'): v for k, v in opts.items()})
    return open_image({'driver': 'raw', 'file': file})


def concurrent(img, reqs):
    """Submit (op, offset, nbytes) requests at once; run to the end;
    return [(completion time relative to the start, ret)] in submission
    order."""
    t0 = deterministic_now_ns()
    done = {}
    for i, (op, offset, nbytes) in enumerate(reqs):
        buf = bytearray(nbytes) if op in ('read', 'write') else None
        blk_request_submit(
            img.blk, op, offset, nbytes, 0, buf,
            lambda req, i=i: done.__setitem__(
                i, (deterministic_now_ns() - t0, req.ret)))
    deterministic_run()
    return [done[i] for i in range(len(reqs))]


def latencies(img):
    return [r.end_ns - r.start_ns for r in sim_disk_log(sim_node(img.bs))]


# --- the service model -------------------------------------------------------

def test_fixed_latency_depth_one() -> None:
    """N requests one after the other on a disk of latency L take N*L."""
    with sim(latency_ns=2 * MS) as img:
        t0 = deterministic_now_ns()
        for i in range(10):
            img.write(i * 4096, b'x' * 4096)
        assert deterministic_now_ns() - t0 == 20 * MS
        img.read(0, 4096)
        img.flush()
        assert deterministic_now_ns() - t0 == 24 * MS


def test_one_channel_queues_fifo() -> None:
    with sim(latency_ns=MS) as img:
        result = concurrent(img, [('read', i * 512, 512) for i in range(5)])
        assert result == [((i + 1) * MS, 0) for i in range(5)]


def test_channels_serve_in_parallel() -> None:
    with sim(latency_ns=MS, channels=3, log=True) as img:
        result = concurrent(img, [('write', i * 512, 512) for i in range(7)])
        assert [t for t, _ in result] == [MS] * 3 + [2 * MS] * 3 + [3 * MS]
        log = sim_disk_log(sim_node(img.bs))
        assert [r.channel for r in log] == [0, 1, 2, 0, 1, 2, 0]
        stats = sim_disk_stats(sim_node(img.bs))
        assert stats.ops['write'] == 7 and stats.busy_ns == 7 * MS
        assert stats.bytes['write'] == 7 * 512


def test_bandwidth() -> None:
    """Transfer time bytes/bandwidth, rounded up to the ns, after the
    latency; zero writes and flushes transfer nothing."""
    with sim(latency_ns=1000, bandwidth='64M', log=True) as img:
        img.write(0, bytes(65536))
        img.read(0, 512)
        img.write_zeroes(0, 65536)
        img.flush()
        # 64 MiB/s: 65536 bytes in 976562.5 ns, 512 in 7629.39
        assert latencies(img) == [1000 + 976563, 1000 + 7630, 1000, 1000]


def test_latency_per_operation() -> None:
    with sim(latency_ns=100, read_latency_ns=200, flush_latency_ns=5000,
             log=True) as img:
        img.write(0, b'a' * 512)
        img.read(0, 512)
        img.flush()
        img.discard(0, 512)
        assert latencies(img) == [100, 200, 5000, 100]


def test_uniform_latency_is_seeded() -> None:
    def run(seed):
        with sim(latency_ns=MS, latency_dist='uniform',
                 latency_jitter_ns=MS // 2, seed=seed, log=True) as img:
            for i in range(200):
                img.read(i * 512, 512)
            return latencies(img)
    a, b, c = run(1), run(1), run(2)
    assert a == b and a != c
    assert all(MS // 2 <= lat <= 3 * MS // 2 for lat in a)
    assert max(a) - min(a) > MS // 2


def test_normal_latency() -> None:
    with sim(latency_ns=MS, latency_dist='normal', latency_jitter_ns=MS // 10,
             log=True) as img:
        for i in range(400):
            img.read(i * 512, 512)
        lats = latencies(img)
    assert abs(statistics.mean(lats) - MS) < MS // 50
    assert abs(statistics.stdev(lats) - MS // 10) < MS // 50
    # cut at 0
    with sim(latency_ns=100, latency_dist='normal', latency_jitter_ns=MS,
             log=True) as img:
        for i in range(50):
            img.read(i * 512, 512)
        assert min(latencies(img)) == 0


def test_shared_disk() -> None:
    """Two images on one disk compete for its channel and share its
    statistics; each keeps its own data."""
    a = sim(disk='d', latency_ns=MS, log=True)
    b = sim(disk='d', log=True)         # repeats nothing: takes d's model
    assert sim_node(a.bs).opaque.disk is sim_node(b.bs).opaque.disk
    t0 = deterministic_now_ns()
    done = []
    for img, pattern in ((a, 1), (b, 2)):
        blk_request_submit(img.blk, 'write', 0, 512, 0,
                           bytearray([pattern]) * 512,
                           lambda req: done.append(deterministic_now_ns()))
    deterministic_run()
    assert [t - t0 for t in done] == [MS, 2 * MS]
    assert a.read(0, 1) == b'\x01' and b.read(0, 1) == b'\x02'
    assert sim_disk_stats(sim_node(a.bs)).ops['write'] == 2
    with pytest.raises(OSError, match="sim disk 'd' exists with "
                                      "latency-ns=1000000"):
        sim(disk='d', latency_ns=5)
    a.close()
    b.close()
    # the last close forgets the disk
    with sim(disk='d', latency_ns=5) as c:
        assert sim_node(c.bs).opaque.disk.latency['read'] == 5


# --- faults ------------------------------------------------------------------

def test_fault_list() -> None:
    with sim(faults='read:4096;write:0:ENOSPC;flush::28', latency_ns=10,
             log=True) as img:
        with pytest.raises(OSError) as e:
            img.read(4096, 512)
        assert e.value.errno == errno.EIO
        img.read(0, 4096)                   # does not cover byte 4096
        with pytest.raises(OSError) as e:
            img.read(0, 8192)
        assert e.value.errno == errno.EIO
        with pytest.raises(OSError) as e:
            img.write(0, b'x' * 512)
        assert e.value.errno == errno.ENOSPC
        assert img.read(0, 512) == bytes(512)   # the failed write wrote nothing
        img.write(512, b'y' * 512)
        with pytest.raises(OSError) as e:
            img.flush()
        assert e.value.errno == errno.ENOSPC
        # failed requests took their time too
        assert all(lat == 10 for lat in latencies(img))
        assert sim_disk_stats(sim_node(img.bs)).errors == 4


def test_error_rate() -> None:
    def run(seed):
        with sim(write_error_rate='0.3', error_errno='EROFS',
                 seed=seed) as img:
            rets = [r for _, r in concurrent(
                img, [('write', i * 512, 512) for i in range(200)])]
            assert all(r == 0 for _, r in concurrent(
                img, [('read', 0, 512)] * 20))
            return rets
    a = run(5)
    assert a == run(5) and a != run(6)
    assert set(a) == {0, -errno.EROFS}
    assert 40 < a.count(-errno.EROFS) < 80
    with sim(error_rate=1) as img:
        assert {r for _, r in concurrent(
            img, [('read', 0, 512), ('write', 0, 512), ('flush', 0, 0)])} \
            == {-errno.EIO}


@pytest.mark.parametrize('opts, message', [
    ({'latency-dist': 'pareto'}, "'latency-dist' expects fixed, uniform or "
                                 "normal"),
    ({'error-rate': '1.5'}, "'error-rate' expects a probability"),
    ({'read-error-rate': 'x'}, "'read-error-rate' expects a probability"),
    ({'faults': 'trim:0'}, "Invalid fault 'trim:0'"),
    ({'faults': 'read:x'}, "Invalid offset in fault 'read:x'"),
    ({'faults': 'read:0:ENOTANERRNO'}, "Invalid errno 'ENOTANERRNO'"),
    ({'error-errno': '-3'}, "Invalid errno '-3'"),
    ({'channels': 0}, "Parameter 'channels' is out of range"),
    ({'latency-ns': 'fast'}, "Parameter 'latency-ns' expects a number"),
    ({'overlay': True}, 'overlay=on needs a path'),
    ({'colour': 'red'}, "doesn't support the option 'colour'"),
    ({'path': '/nonexistent/x'}, "Could not open '/nonexistent/x'"),
])
def test_bad_options(opts, message) -> None:
    file = {'driver': 'sim'}
    file.update(opts)
    with pytest.raises(OSError) as e:
        open_image({'driver': 'raw', 'file': file})
    assert message in str(e.value)


# --- data ----------------------------------------------------------------------

def test_memory_is_sparse() -> None:
    with sim(size=4 << 20) as img:
        assert img.block_status(0, 4 << 20).zero
        img.write(65000, b'z' * 1000)
        st = img.block_status(0, 4 << 20)
        assert (st.data, st.length) == (True, 65536 * 2)
        assert img.block_status(131072, 4 << 20).zero
        assert len(sim_node(img.bs).opaque.chunks) == 2
        assert img.read(64999, 1002) == b'\0' + b'z' * 1000 + b'\0'
        # zeroing whole chunks frees them
        img.write_zeroes(0, 4 << 20, unmap=True)
        assert not sim_node(img.bs).opaque.chunks
        img.write(0, b'q' * 65536 * 2)
        img.discard(4096, 65536 * 2 - 8192)
        assert img.read(0, 4097) == b'q' * 4096 + b'\0'
        assert len(sim_node(img.bs).opaque.chunks) == 2


def test_grows_like_a_file() -> None:
    """A format writing past the end of its file grows it; reads past the
    end are zeroes; truncate cuts and zeroes what lies beyond."""
    img = open_image('sim:', fmt='raw', file={'size': 1024})
    bs = sim_node(img.bs)
    assert core.bdrv_getlength(bs) == 1024
    assert io.bdrv_pwrite(bs, 1 << 20, b'e' * 512, 512) == 512
    assert core.bdrv_getlength(bs) == (1 << 20) + 512
    buf = bytearray(1024)
    assert io.bdrv_pread(bs, 1 << 21, buf, 1024) == 1024
    assert buf == bytes(1024)
    assert core.bdrv_truncate(bs, (1 << 20) + 100) == 0
    assert core.bdrv_truncate(bs, 2 << 20) == 0
    assert io.bdrv_pread(bs, 1 << 20, buf, 512) == 512
    assert buf[:512] == b'e' * 100 + bytes(412)
    img.close()


def test_file_data(tmp_path) -> None:
    path = tmp_path / 'disk.img'
    path.write_bytes(b'A' * 8192)
    with open_image('sim:%s' % path, fmt='raw') as img:
        assert img.length() == 8192             # the file's size
        assert img.read(0, 2) == b'AA'
        img.write(512, b'B' * 512)
        img.write_zeroes(1024, 1024)
    assert path.read_bytes() == (b'A' * 512 + b'B' * 512 + bytes(1024) +
                                 b'A' * 6144)
    # overlay: reads the file, keeps writes in memory
    with open_image({'driver': 'raw',
                     'file': {'driver': 'sim', 'path': str(path),
                              'overlay': True}}) as img:
        img.write(0, b'C' * 100)
        img.write_zeroes(2048, 512)
        img.discard(4096, 4096)
        assert img.read(0, 1536) == (b'C' * 100 + b'A' * 412 +
                                     b'B' * 512 + bytes(512))
        assert img.read(2048, 1024) == bytes(512) + b'A' * 512
        assert img.read(4096, 4096) == bytes(4096)
    assert path.read_bytes() == (b'A' * 512 + b'B' * 512 + bytes(1024) +
                                 b'A' * 6144)


def test_json_filename(tmp_path) -> None:
    opts = {'driver': 'raw', 'file': {'driver': 'sim', 'size': 1 << 20,
                                      'latency-ns': 7}}
    with open_image('json:' + json.dumps(opts)) as img:
        assert img.length() == 1 << 20
        t0 = deterministic_now_ns()
        img.read(0, 512)
        assert deterministic_now_ns() - t0 == 7


@pytest.mark.skipif('qcow2' not in bdrv_iterate_format(),
                    reason='no qcow2 driver')
def test_qcow2_metadata_traffic(tmp_path) -> None:
    """qcow2 over a sim disk: the log shows the header read at open and the
    metadata updates of a first write."""
    template = str(tmp_path / 't.qcow2')
    errp = [None]
    core.bdrv_img_create(template, 'qcow2', None, None, None, 64 << 20, 0,
                         errp, True)
    assert errp[0] is None
    img = open_image({'driver': 'qcow2',
                      'file': {'driver': 'sim', 'path': template,
                               'overlay': True, 'latency-ns': 1000,
                               'log': True}})
    log = sim_disk_log(sim_node(img.bs))
    assert log[0].op == 'read' and log[0].offset == 0      # the header
    opened = len(log)
    img.write(0, b'x' * 4096)
    writes = [r for r in log[opened:] if r.op == 'write']
    # data, L2 table, refcount block (in some order): more than the data
    assert len(writes) >= 3
    assert any(r.bytes == 4096 for r in writes)
    n = len(log)
    assert img.read(0, 4096) == b'x' * 4096
    assert img.read(1 << 20, 512) == bytes(512)     # unallocated: no I/O
    assert [r.op for r in log[n:]] == ['read']
    img.close()
    # overlay: the template is untouched
    with open_image(template) as img:
        assert img.read(0, 4096) == bytes(4096)


def test_zero_write_flags_pass() -> None:
    with sim(log=True) as img:
        img.write(0, b'x' * 65536)
        done = []
        blk_request_submit(img.blk, 'write', 0, 65536,
                           BDRV_REQ_ZERO_WRITE | BDRV_REQ_MAY_UNMAP, None,
                           done.append)
        deterministic_run()
        assert done[0].ret == 0
        assert img.read(0, 65536) == bytes(65536)
