"""The ``sim`` protocol: a simulated disk whose requests complete on the
virtual clock after a modelled service time.  Not a QEMU driver; it plays
the part of ``file`` under a format (raw, qcow2) for simulators:

    {"driver": "qcow2",
     "file": {"driver": "sim", "path": "vm1.qcow2", "overlay": true,
              "disk": "ssd0", "channels": 4, "latency-ns": 100000,
              "bandwidth": "500M"}}

or ``json:{...}`` filenames, or ``sim:`` (an empty disk in memory) and
``sim:PATH`` (a disk whose data is the file PATH).

Service model.  A request waits for the first free channel of its disk
(FIFO; on ties the lowest channel), then holds it for latency + bytes /
bandwidth and completes when that time has passed on QEMU_CLOCK_VIRTUAL;
its data is read or written at completion.  The latency of an operation
(read, write, flush; zero writes and discards count as writes, without a
transfer) has the mean read-latency-ns, write-latency-ns or
flush-latency-ns (each defaulting to latency-ns), and latency-dist says
how it varies: "fixed", "uniform" (mean +- latency-jitter-ns) or "normal"
(standard deviation latency-jitter-ns, cut at 0), drawn from a generator
seeded with ``seed``.  bandwidth (bytes per second, 0 for unlimited) gives
the transfer time, rounded up to the ns.  Nodes that name the same
``disk`` share one model (channels, generator, statistics) while each
keeps its own data: images on one physical disk.  The first node to open
a disk sets its model; a later one may repeat options but not change them.

Faults.  error-rate (a probability, 0 to 1; read-error-rate etc. per
operation) fails requests at random with error-errno (a name such as
ENOSPC, or a number; default EIO), drawn from the node's own generator
(seeded with seed too).  faults lists requests that always fail:
``"read:4096;write:0:ENOSPC;flush"`` fails every read covering byte 4096
with EIO, every write covering byte 0 with ENOSPC and every flush.  A
failed request still takes its service time and changes no data.

Data.  Without a path the data lives in memory, sparse, in chunks of
64 KiB (what was never written reads as zeroes).  With a path it is
read from and written to that file (with overlay=on only read: writes stay
in memory, the file is left as it was).  size is the initial length
(default: the file's, or 1 GiB); as a file would, the disk grows when
written past its end, and reads past the end return zeroes.  A flush only
costs its modelled time: the file is not fsync'ed.

Each disk keeps statistics (sim_disk_stats) and, with log=on, a list of
every request it served (SimRequestLog), which shows a format's metadata
traffic.
"""

from __future__ import annotations

import errno
import os
import random
from typing import Optional

from block import core
from block.block_int import (BDRV_BLOCK_DATA, BDRV_BLOCK_OFFSET_VALID,
                             BDRV_BLOCK_ZERO, BDRV_O_RDWR, BDRV_REQ_ZERO_WRITE,
                             BDRV_SECTOR_SIZE, BLOCK_OPT_SIZE, BlockDriver)
from drivers import bdrv_register
from drivers.raw_posix import (FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE,
                               do_fallocate)
from util.coroutine_lock import co_aio_sleep_ns
from util.error import Errp, error_propagate, error_setg, error_setg_errno
from util.iov import qemu_iovec_from_buf, qemu_iovec_memset, qemu_iovec_to_buf
from util.qemu_option import (QEMU_OPT_BOOL, QEMU_OPT_NUMBER, QEMU_OPT_SIZE,
                              QEMU_OPT_STRING, QemuOptDesc, QemuOptsList,
                              qemu_opt_get, qemu_opt_get_bool,
                              qemu_opt_get_number, qemu_opt_get_size,
                              qemu_opts_absorb_qdict, qemu_opts_create)
from util.timer import QEMU_CLOCK_VIRTUAL, qemu_clock_get_ns

SIM_CHUNK_SIZE = 64 * 1024
NANOSECONDS_PER_SECOND = 1000000000

# operation kinds of the model
SIM_READ = 'read'
SIM_WRITE = 'write'
SIM_FLUSH = 'flush'
SIM_OPS = (SIM_READ, SIM_WRITE, SIM_FLUSH)

LATENCY_DISTS = ('fixed', 'uniform', 'normal')

# the options that define a disk's model (shared by the nodes on it)
MODEL_OPTS = ('latency-ns', 'read-latency-ns', 'write-latency-ns',
              'flush-latency-ns', 'latency-dist', 'latency-jitter-ns',
              'bandwidth', 'channels', 'seed', 'log')


class SimRequestLog:
    """One request a disk served: what, for which node, and when it was
    submitted, started on a channel and completed (virtual ns)."""
    __slots__ = ('node', 'op', 'offset', 'bytes', 'submit_ns', 'start_ns',
                 'end_ns', 'channel', 'ret')

    def __init__(self, node: str, op: str, offset: int, nbytes: int,
                 submit_ns: int, start_ns: int, end_ns: int, channel: int,
                 ret: int) -> None:
        self.node = node
        self.op = op
        self.offset = offset
        self.bytes = nbytes
        self.submit_ns = submit_ns
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.channel = channel
        self.ret = ret

    def __repr__(self) -> str:
        return ('SimRequestLog(%s %s %d+%d submit=%d start=%d end=%d ch=%d '
                'ret=%d)' % (self.node, self.op, self.offset, self.bytes,
                             self.submit_ns, self.start_ns, self.end_ns,
                             self.channel, self.ret))


class SimDiskStats:
    """What a disk did: requests and bytes per operation, failures, the
    time its channels were busy, and the last completion."""
    __slots__ = ('ops', 'bytes', 'errors', 'busy_ns', 'last_end_ns')

    def __init__(self) -> None:
        self.ops = dict.fromkeys(SIM_OPS, 0)
        self.bytes = dict.fromkeys(SIM_OPS, 0)
        self.errors = 0
        self.busy_ns = 0
        self.last_end_ns = 0


class SimDisk:
    """The service model, shared by the nodes that name the same disk."""
    __slots__ = ('name', 'refcnt', 'params', 'latency', 'dist', 'jitter',
                 'bandwidth', 'free_at', 'rng', 'stats', 'log')

    def __init__(self, name: Optional[str], params: dict) -> None:
        self.name = name
        self.refcnt = 0
        self.params = params
        base = params['latency-ns']
        self.latency = {op: params.get('%s-latency-ns' % op, base)
                        for op in SIM_OPS}
        self.dist = params['latency-dist']
        self.jitter = params['latency-jitter-ns']
        self.bandwidth = params['bandwidth']
        # when each channel is next free (virtual ns)
        self.free_at = [0] * params['channels']
        self.rng = random.Random(params['seed'])
        self.stats = SimDiskStats()
        self.log: Optional[list] = [] if params['log'] else None

    def service_ns(self, op: str, nbytes: int) -> int:
        """Latency (drawn from the distribution) plus transfer time."""
        latency = self.latency[op]
        if self.dist == 'uniform':
            latency = self.rng.uniform(latency - self.jitter,
                                       latency + self.jitter)
        elif self.dist == 'normal':
            latency = self.rng.gauss(latency, self.jitter)
        ns = max(0, round(latency))
        if self.bandwidth and nbytes:
            ns += -(-nbytes * NANOSECONDS_PER_SECOND // self.bandwidth)
        return ns


# named disks, shared between nodes
sim_disks: dict[str, SimDisk] = {}


class SimFault:
    __slots__ = ('op', 'offset', 'errno')

    def __init__(self, op: str, offset: Optional[int], err: int) -> None:
        self.op = op
        self.offset = offset        # None: every request of op
        self.errno = err


class BDRVSimState:
    __slots__ = ('disk', 'size', 'chunks', 'fd', 'overlay', 'rng',
                 'error_rate', 'error_errno', 'faults')

    def __init__(self) -> None:
        self.disk: Optional[SimDisk] = None
        self.size = 0
        self.chunks: dict[int, bytearray] = {}
        self.fd = -1                # the data file, if any
        self.overlay = False        # writes kept in memory over the file
        self.rng: Optional[random.Random] = None
        self.error_rate = dict.fromkeys(SIM_OPS, 0.0)
        self.error_errno = errno.EIO
        self.faults: list[SimFault] = []


runtime_opts = QemuOptsList('sim', [
    QemuOptDesc('path', QEMU_OPT_STRING,
                'file holding the data (default: in memory)'),
    QemuOptDesc('overlay', QEMU_OPT_BOOL,
                'keep writes in memory, leave the file unchanged'),
    QemuOptDesc(BLOCK_OPT_SIZE, QEMU_OPT_SIZE, 'initial size of the disk'),
    QemuOptDesc('disk', QEMU_OPT_STRING,
                'name of the disk model shared with other nodes'),
    QemuOptDesc('latency-ns', QEMU_OPT_NUMBER,
                'mean latency of an operation (ns)'),
    QemuOptDesc('read-latency-ns', QEMU_OPT_NUMBER, 'mean read latency'),
    QemuOptDesc('write-latency-ns', QEMU_OPT_NUMBER, 'mean write latency'),
    QemuOptDesc('flush-latency-ns', QEMU_OPT_NUMBER, 'mean flush latency'),
    QemuOptDesc('latency-dist', QEMU_OPT_STRING,
                'fixed, uniform or normal'),
    QemuOptDesc('latency-jitter-ns', QEMU_OPT_NUMBER,
                'half-width (uniform) or standard deviation (normal)'),
    QemuOptDesc('bandwidth', QEMU_OPT_SIZE,
                'bytes per second (0: unlimited)'),
    QemuOptDesc('channels', QEMU_OPT_NUMBER, 'requests served at once'),
    QemuOptDesc('seed', QEMU_OPT_NUMBER, 'seed of the random generators'),
    QemuOptDesc('log', QEMU_OPT_BOOL, 'log every request the disk serves'),
    QemuOptDesc('error-rate', QEMU_OPT_STRING,
                'probability that a request fails'),
    QemuOptDesc('read-error-rate', QEMU_OPT_STRING, 'the same for reads'),
    QemuOptDesc('write-error-rate', QEMU_OPT_STRING, 'the same for writes'),
    QemuOptDesc('flush-error-rate', QEMU_OPT_STRING,
                'the same for flushes'),
    QemuOptDesc('error-errno', QEMU_OPT_STRING,
                'errno of a failed request (name or number)'),
    QemuOptDesc('faults', QEMU_OPT_STRING,
                'requests that fail: op[:offset[:errno]];...'),
])


def sim_parse_filename(filename: str, options: dict, errp: Errp) -> None:
    """sim: is a disk in memory, sim:PATH one whose data is PATH."""
    if filename.startswith('sim:'):
        filename = filename[len('sim:'):]
    if filename:
        options['path'] = filename


def _parse_errno(value: str, errp: Errp) -> int:
    if value.isdigit():
        err = int(value)
    else:
        err = getattr(errno, value.upper(), 0) if value.isidentifier() else 0
    if err <= 0:
        error_setg(errp, "Invalid errno '%s'", value)
        return -1
    return err


def _parse_rate(name: str, value: Optional[str], default: float,
                errp: Errp) -> float:
    if value is None:
        return default
    try:
        rate = float(value)
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        error_setg(errp, "Parameter '%s' expects a probability between 0 "
                   "and 1", name)
        return -1.0
    return rate


def _parse_faults(value: str, default_errno: int, errp: Errp) -> Optional[list]:
    faults = []
    for item in value.replace(' ', ';').split(';'):
        if not item:
            continue
        parts = item.split(':')
        op = parts[0]
        if op not in SIM_OPS or len(parts) > 3:
            error_setg(errp, "Invalid fault '%s' (expected "
                       "read|write|flush[:offset[:errno]])", item)
            return None
        offset = None
        if len(parts) > 1 and parts[1]:
            if not parts[1].isdigit():
                error_setg(errp, "Invalid offset in fault '%s'", item)
                return None
            offset = int(parts[1])
        err = default_errno
        if len(parts) > 2:
            err = _parse_errno(parts[2], errp)
            if err < 0:
                return None
        faults.append(SimFault(op, offset, err))
    return faults


def _model_params(opts, errp: Errp) -> Optional[dict]:
    """The model options that were given, checked."""
    given = {}
    for name in MODEL_OPTS:
        if qemu_opt_get(opts, name) is None:
            continue
        if name == 'latency-dist':
            value = qemu_opt_get(opts, name)
            if value not in LATENCY_DISTS:
                error_setg(errp, "Parameter 'latency-dist' expects fixed, "
                           "uniform or normal")
                return None
        elif name == 'log':
            value = qemu_opt_get_bool(opts, name, False)
        elif name == 'bandwidth':
            value = qemu_opt_get_size(opts, name, 0)
        else:
            value = qemu_opt_get_number(opts, name, 0)
            if value >= 1 << 63 or (name == 'channels' and value < 1):
                error_setg(errp, "Parameter '%s' is out of range", name)
                return None
        given[name] = value
    return given


MODEL_DEFAULTS = {'latency-ns': 0, 'latency-dist': 'fixed',
                  'latency-jitter-ns': 0, 'bandwidth': 0, 'channels': 1,
                  'seed': 0, 'log': False}


def sim_disk_ref(name: Optional[str], given: dict, errp: Errp
                 ) -> Optional[SimDisk]:
    """The disk `name` (created from the options given if it does not
    exist yet; a private one for None), with one more reference."""
    disk = sim_disks.get(name) if name is not None else None
    if disk is None:
        params = dict(MODEL_DEFAULTS)
        params.update(given)
        disk = SimDisk(name, params)
        if name is not None:
            sim_disks[name] = disk
    else:
        for key, value in given.items():
            if disk.params.get(key, MODEL_DEFAULTS.get(key)) != value:
                error_setg(errp, "sim disk '%s' exists with %s=%s", name,
                           key, disk.params.get(key, MODEL_DEFAULTS.get(key)))
                return None
    disk.refcnt += 1
    return disk


def sim_disk_unref(disk: SimDisk) -> None:
    disk.refcnt -= 1
    if not disk.refcnt and disk.name is not None:
        del sim_disks[disk.name]


def sim_file_open(bs, options: dict, flags: int, errp: Errp) -> int:
    s = bs.opaque
    local_err = [None]

    opts = qemu_opts_create(runtime_opts)
    qemu_opts_absorb_qdict(opts, options, local_err)
    if local_err[0]:
        error_propagate(errp, local_err[0])
        return -errno.EINVAL

    given = _model_params(opts, errp)
    if given is None:
        return -errno.EINVAL
    err = _parse_errno(qemu_opt_get(opts, 'error-errno') or 'EIO', errp)
    if err < 0:
        return -errno.EINVAL
    s.error_errno = err
    base_rate = _parse_rate('error-rate', qemu_opt_get(opts, 'error-rate'),
                            0.0, errp)
    if base_rate < 0:
        return -errno.EINVAL
    for op in SIM_OPS:
        name = '%s-error-rate' % op
        s.error_rate[op] = _parse_rate(name, qemu_opt_get(opts, name),
                                       base_rate, errp)
        if s.error_rate[op] < 0:
            return -errno.EINVAL
    faults = _parse_faults(qemu_opt_get(opts, 'faults') or '', err, errp)
    if faults is None:
        return -errno.EINVAL
    s.faults = faults

    path = qemu_opt_get(opts, 'path')
    s.overlay = qemu_opt_get_bool(opts, 'overlay', False)
    # what the disk grows by reads as zeroes (sim_truncate)
    bs.supported_truncate_flags = BDRV_REQ_ZERO_WRITE
    if s.overlay and not path:
        error_setg(errp, 'overlay=on needs a path')
        return -errno.EINVAL
    size = qemu_opt_get_size(opts, BLOCK_OPT_SIZE, -1)
    if path:
        writable = flags & BDRV_O_RDWR and not s.overlay
        try:
            s.fd = os.open(path, (os.O_RDWR if writable else os.O_RDONLY)
                           | os.O_CLOEXEC)
            file_size = os.fstat(s.fd).st_size
        except OSError as e:
            error_setg_errno(errp, e.errno, "Could not open '%s'", path)
            sim_close(bs)
            return -e.errno
        if size < 0:
            size = file_size
    elif size < 0:
        size = 1 << 30
    s.size = size

    s.rng = random.Random(given.get('seed', MODEL_DEFAULTS['seed']))
    s.disk = sim_disk_ref(qemu_opt_get(opts, 'disk'), given, errp)
    if s.disk is None:
        sim_close(bs)
        return -errno.EINVAL
    return 0


def sim_close(bs) -> None:
    s = bs.opaque
    if s.fd >= 0:
        os.close(s.fd)
        s.fd = -1
    if s.disk is not None:
        sim_disk_unref(s.disk)
        s.disk = None
    s.chunks.clear()


def sim_getlength(bs) -> int:
    return bs.opaque.size


def sim_fault(s: BDRVSimState, op: str, offset: int, nbytes: int) -> int:
    """0, or the -errno this request fails with."""
    for f in s.faults:
        if f.op == op and (f.offset is None or
                           offset <= f.offset < offset + max(nbytes, 1)):
            return -f.errno
    rate = s.error_rate[op]
    if rate and s.rng.random() < rate:
        return -s.error_errno
    return 0


def sim_co_service(bs, op: str, offset: int, nbytes: int,
                   transfer: int) -> int:
    """Queue for a channel of the disk, hold it for the service time and
    return when the request is done: 0 or the -errno it fails with."""
    s = bs.opaque
    disk = s.disk
    ret = sim_fault(s, op, offset, nbytes)
    now = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL)
    service = disk.service_ns(op, transfer)
    free_at = disk.free_at
    channel = free_at.index(min(free_at))
    start = max(now, free_at[channel])
    end = start + service
    free_at[channel] = end

    stats = disk.stats
    stats.ops[op] += 1
    stats.bytes[op] += transfer
    stats.busy_ns += service
    if ret:
        stats.errors += 1
    if disk.log is not None:
        disk.log.append(SimRequestLog(bs.node_name or bs.filename, op,
                                      offset, nbytes, now, start, end,
                                      channel, ret))
    if end > now:
        co_aio_sleep_ns(core.bdrv_get_aio_context(bs), QEMU_CLOCK_VIRTUAL,
                        end - now)
    stats.last_end_ns = max(stats.last_end_ns, end)
    return ret


# --- the data: chunks in memory over zeroes or a file, or the file -----------

def _file_read(fd: int, offset: int, nbytes: int) -> bytes:
    data = os.pread(fd, nbytes, offset)
    return data + bytes(nbytes - len(data))


def _chunk(s: BDRVSimState, index: int) -> bytearray:
    """The chunk to write into, made if needed."""
    chunk = s.chunks.get(index)
    if chunk is None:
        if s.fd >= 0:
            chunk = bytearray(_file_read(s.fd, index * SIM_CHUNK_SIZE,
                                         SIM_CHUNK_SIZE))
        else:
            chunk = bytearray(SIM_CHUNK_SIZE)
        s.chunks[index] = chunk
    return chunk


def _chunk_ranges(offset: int, nbytes: int):
    """(chunk index, offset in it, length, offset in the request)."""
    done = 0
    while done < nbytes:
        index, start = divmod(offset + done, SIM_CHUNK_SIZE)
        length = min(SIM_CHUNK_SIZE - start, nbytes - done)
        yield index, start, length, done
        done += length


def sim_data_read(s: BDRVSimState, offset: int, nbytes: int, qiov) -> None:
    if s.fd >= 0 and not s.overlay:
        qemu_iovec_from_buf(qiov, 0, _file_read(s.fd, offset, nbytes), nbytes)
        return
    for index, start, length, done in _chunk_ranges(offset, nbytes):
        chunk = s.chunks.get(index)
        if chunk is not None:
            qemu_iovec_from_buf(qiov, done,
                                memoryview(chunk)[start:start + length],
                                length)
        elif s.fd >= 0:
            qemu_iovec_from_buf(qiov, done,
                                _file_read(s.fd, offset + done, length),
                                length)
        else:
            qemu_iovec_memset(qiov, done, 0, length)


def sim_data_write(s: BDRVSimState, offset: int, nbytes: int,
                   qiov) -> None:
    if s.fd >= 0 and not s.overlay:
        buf = bytearray(nbytes)
        qemu_iovec_to_buf(qiov, 0, buf, nbytes)
        os.pwrite(s.fd, buf, offset)
    else:
        for index, start, length, done in _chunk_ranges(offset, nbytes):
            chunk = _chunk(s, index)
            qemu_iovec_to_buf(qiov, done,
                              memoryview(chunk)[start:start + length], length)
    s.size = max(s.size, offset + nbytes)


def sim_data_zero(s: BDRVSimState, offset: int, nbytes: int) -> None:
    if s.fd >= 0 and not s.overlay:
        if do_fallocate(s.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                        offset, nbytes) < 0:
            for _, _, length, done in _chunk_ranges(offset, nbytes):
                os.pwrite(s.fd, bytes(length), offset + done)
        if offset + nbytes > os.fstat(s.fd).st_size:
            os.ftruncate(s.fd, offset + nbytes)
    else:
        for index, start, length, _ in _chunk_ranges(offset, nbytes):
            if length == SIM_CHUNK_SIZE:
                if s.fd < 0:
                    s.chunks.pop(index, None)
                else:
                    s.chunks[index] = bytearray(SIM_CHUNK_SIZE)
            elif index in s.chunks or s.fd >= 0:
                _chunk(s, index)[start:start + length] = bytes(length)
    s.size = max(s.size, offset + nbytes)


# --- driver callbacks --------------------------------------------------------

def sim_co_readv(bs, sector_num: int, nb_sectors: int, qiov) -> int:
    offset = sector_num * BDRV_SECTOR_SIZE
    nbytes = nb_sectors * BDRV_SECTOR_SIZE
    ret = sim_co_service(bs, SIM_READ, offset, nbytes, nbytes)
    if ret == 0:
        sim_data_read(bs.opaque, offset, nbytes, qiov)
    return ret


def sim_co_writev(bs, sector_num: int, nb_sectors: int, qiov) -> int:
    offset = sector_num * BDRV_SECTOR_SIZE
    nbytes = nb_sectors * BDRV_SECTOR_SIZE
    ret = sim_co_service(bs, SIM_WRITE, offset, nbytes, nbytes)
    if ret == 0:
        sim_data_write(bs.opaque, offset, nbytes, qiov)
    return ret


def sim_co_write_zeroes(bs, sector_num: int, nb_sectors: int,
                        flags: int) -> int:
    """A zero write costs a write of its length; the zeroes are not sent."""
    offset = sector_num * BDRV_SECTOR_SIZE
    nbytes = nb_sectors * BDRV_SECTOR_SIZE
    ret = sim_co_service(bs, SIM_WRITE, offset, nbytes, 0)
    if ret == 0:
        sim_data_zero(bs.opaque, offset, nbytes)
    return ret


def sim_co_discard(bs, sector_num: int, nb_sectors: int) -> int:
    """Discarded sectors read as zeroes, like a file's punched holes."""
    offset = sector_num * BDRV_SECTOR_SIZE
    nbytes = nb_sectors * BDRV_SECTOR_SIZE
    ret = sim_co_service(bs, SIM_WRITE, offset, nbytes, 0)
    if ret == 0:
        sim_data_zero(bs.opaque, offset, nbytes)
    return ret


def sim_co_flush_to_disk(bs) -> int:
    return sim_co_service(bs, SIM_FLUSH, 0, 0, 0)


def sim_co_get_block_status(bs, sector_num: int, nb_sectors: int,
                            pnum: list, file: list) -> int:
    """In memory, chunks never written read as zeroes; data otherwise."""
    s = bs.opaque
    start = sector_num * BDRV_SECTOR_SIZE
    file[0] = bs
    if s.fd >= 0 or start >= s.size:
        pnum[0] = nb_sectors if start < s.size else 0
        return BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID | start
    end = min(start + nb_sectors * BDRV_SECTOR_SIZE, s.size)
    allocated = start // SIM_CHUNK_SIZE in s.chunks
    pos = start
    while pos < end and (pos // SIM_CHUNK_SIZE in s.chunks) == allocated:
        pos = (pos // SIM_CHUNK_SIZE + 1) * SIM_CHUNK_SIZE
    pnum[0] = min(nb_sectors,
                  (min(pos, end) - start + BDRV_SECTOR_SIZE - 1) //
                  BDRV_SECTOR_SIZE)
    state = BDRV_BLOCK_DATA if allocated else BDRV_BLOCK_ZERO
    return state | BDRV_BLOCK_OFFSET_VALID | start


def sim_truncate(bs, offset: int, prealloc: str, flags: int,
                 errp: Errp) -> int:
    s = bs.opaque
    if prealloc != 'off':
        error_setg(errp, 'Unsupported preallocation mode: %s', prealloc)
        return -errno.ENOTSUP
    if s.fd >= 0 and not s.overlay:
        try:
            os.ftruncate(s.fd, offset)
        except OSError as e:
            error_setg_errno(errp, e.errno, 'Failed to resize the file')
            return -e.errno
    elif offset < s.size:
        # what lies past the new end reads as zeroes if it grows again
        last = offset // SIM_CHUNK_SIZE
        for index in [i for i in s.chunks if i > last]:
            del s.chunks[index]
        if last in s.chunks:
            start = offset - last * SIM_CHUNK_SIZE
            s.chunks[last][start:] = bytes(SIM_CHUNK_SIZE - start)
    s.size = offset
    return 0


def sim_has_zero_init(bs) -> int:
    return int(bs.opaque.fd < 0)


def sim_reopen_prepare(reopen_state, queue, errp: Errp) -> int:
    return 0


class BdrvSim(BlockDriver):
    format_name = 'sim'
    protocol_name = 'sim'
    instance_type = BDRVSimState

    bdrv_parse_filename = staticmethod(sim_parse_filename)
    bdrv_file_open = staticmethod(sim_file_open)
    bdrv_close = staticmethod(sim_close)
    bdrv_getlength = staticmethod(sim_getlength)
    bdrv_truncate = staticmethod(sim_truncate)
    bdrv_has_zero_init = staticmethod(sim_has_zero_init)
    bdrv_reopen_prepare = staticmethod(sim_reopen_prepare)

    bdrv_co_readv = staticmethod(sim_co_readv)
    bdrv_co_writev = staticmethod(sim_co_writev)
    bdrv_co_write_zeroes = staticmethod(sim_co_write_zeroes)
    bdrv_co_discard = staticmethod(sim_co_discard)
    bdrv_co_flush_to_disk = staticmethod(sim_co_flush_to_disk)
    bdrv_co_get_block_status = staticmethod(sim_co_get_block_status)


def sim_disk_stats(bs) -> SimDiskStats:
    """The statistics of the disk under the sim node bs."""
    return bs.opaque.disk.stats


def sim_disk_log(bs) -> Optional[list]:
    """The log of the disk under bs (None without log=on)."""
    return bs.opaque.disk.log


def sim_node(bs):
    """The sim node at or below bs (following file children), or None."""
    while bs is not None:
        if bs.drv is bdrv_sim:
            return bs
        bs = bs.file.bs if bs.file else None
    return None


bdrv_sim = BdrvSim()
bdrv_register(bdrv_sim)
