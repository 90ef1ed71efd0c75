"""Several simulated VMs sharing one simulated disk, in SimPy.

Each VM is a SimPy process (with `depth` workers, its queue depth) issuing
a mix of 4 KiB reads and writes at random offsets of its own image: a
qcow2 image (raw if the qcow2 driver is missing) in memory over a shared
``sim`` disk (drivers/sim.py), whose channels, latency and bandwidth all
the VMs compete for.  Some VMs share a throttle group
(block/throttle_groups.py) that caps their combined IOPS.  At the end the
example prints, per VM, the requests done, throughput and latency
percentiles, and with --plot draws a latency histogram (needs matplotlib).

    python3 examples/simpy_vms.py [--vms 4] [--duration 2] [--plot lat.png]

simulate() is what the script runs; tests/test_sim_example.py calls it
with configurations whose figures follow from the model.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
from typing import Dict, List, Optional

if __name__ == '__main__' and __package__ in (None, ''):
    # run as a script from a checkout: the packages are one level up
    sys.path.insert(0, os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))

import simpy  # noqa: E402

from block import core, io  # noqa: E402
from block.front import Image, open_image  # noqa: E402
from block.simpy_adapter import SimPyBlock  # noqa: E402
from drivers import bdrv_iterate_format  # noqa: E402
from util.throttle import THROTTLE_OPS_TOTAL, ThrottleConfig  # noqa: E402

KiB = 1024
MiB = 1024 * KiB


class VMResult:
    """What one VM did; latencies in seconds of simulated time."""

    def __init__(self, name: str, throttled: bool) -> None:
        self.name = name
        self.throttled = throttled
        self.issued = 0
        self.reads = 0
        self.writes = 0
        self.bytes = 0
        self.errors = 0
        self.latencies: List[float] = []

    @property
    def ops(self) -> int:
        return self.reads + self.writes

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile of the latencies (0 if none)."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        rank = max(1, -(-len(ordered) * p // 100))
        return ordered[int(rank) - 1]


def default_disk() -> Dict[str, object]:
    """An SSD-like shared disk."""
    return {'channels': 4, 'latency-ns': 200000, 'latency-dist': 'normal',
            'latency-jitter-ns': 50000, 'write-latency-ns': 300000,
            'flush-latency-ns': 1000000, 'bandwidth': 400 * MiB, 'seed': 1}


def make_template(directory: str, fmt: str, size: int) -> str:
    """An empty image to start every VM from (the sim overlay keeps each
    VM's writes in memory and leaves the file as it is)."""
    path = os.path.join(directory, 'template.%s' % fmt)
    errp = [None]
    core.bdrv_img_create(path, fmt, None, None, None, size, 0, errp, True)
    if errp[0] is not None:
        raise OSError(errp[0].errno, errp[0].msg)
    return path


def open_vm_image(template: str, fmt: str, disk: Dict[str, object],
                  name: str) -> Image:
    file_opts = {'driver': 'sim', 'path': template, 'overlay': True,
                 'disk': name}
    file_opts.update(disk)
    return open_image({'driver': fmt, 'file': file_opts})


def throttle(img: Image, group: str, iops: int) -> None:
    """Put img in the throttle group `group` capped at iops (total)."""
    cfg = ThrottleConfig()
    cfg.buckets[THROTTLE_OPS_TOTAL].avg = iops
    io.bdrv_io_limits_enable(img.bs, group)
    io.bdrv_set_io_limits(img.bs, cfg)


def vm(env: simpy.Environment, sb: SimPyBlock, img: Image,
       result: VMResult, depth: int, **workload):
    """A VM: `depth` workers keep that many requests in flight."""
    yield env.all_of([env.process(vm_worker(env, sb, img, result, **workload))
                      for _ in range(depth)])


def vm_worker(env: simpy.Environment, sb: SimPyBlock, img: Image,
              result: VMResult, rng: random.Random, duration: float,
              requests: Optional[int], read_ratio: float,
              block_size: int, span: int, data: bytes):
    """One outstanding request at a time until the time is up (or, with
    `requests`, until the VM has issued that many)."""
    while env.now < duration:
        if requests is not None and result.issued >= requests:
            return
        result.issued += 1
        offset = rng.randrange(span // block_size) * block_size
        is_read = rng.random() < read_ratio
        start = env.now
        try:
            if is_read:
                yield sb.read(img, offset, block_size)
                result.reads += 1
            else:
                yield sb.write(img, offset, data)
                result.writes += 1
        except OSError:
            result.errors += 1
            continue
        result.bytes += block_size
        result.latencies.append(env.now - start)


def simulate(vms: int = 4, duration: float = 2.0,
             requests: Optional[int] = None, depth: int = 4,
             read_ratio: float = 0.7, block_size: int = 4 * KiB,
             span: int = 64 * MiB, fmt: Optional[str] = None,
             disk: Optional[Dict[str, object]] = None,
             throttled: int = 2, group_iops: int = 400,
             seed: int = 42) -> Dict[str, object]:
    """Run the simulation; returns {'vms': [VMResult], 'time': simulated
    seconds, 'format': fmt, 'disk': the sim disk's statistics}.

    vms VMs with `depth` workers each issue requests for `duration`
    simulated seconds (or, with `requests`, that many per VM); the first
    `throttled` VMs share a throttle group of group_iops IOPS."""
    if fmt is None:
        fmt = 'qcow2' if 'qcow2' in bdrv_iterate_format() else 'raw'
    if disk is None:
        disk = default_disk()
    if requests is not None:
        duration = float('inf')

    env = simpy.Environment()
    sb = SimPyBlock(env)
    results = []
    images = []
    with tempfile.TemporaryDirectory() as tmp:
        template = make_template(tmp, fmt, 2 * span)
        for i in range(vms):
            img = open_vm_image(template, fmt, disk, 'shared-disk')
            images.append(img)
            result = VMResult('vm%d' % i, i < throttled)
            if i < throttled:
                throttle(img, 'group0', group_iops)
            results.append(result)
            env.process(vm(env, sb, img, result, depth,
                           rng=random.Random(seed + i), duration=duration,
                           requests=requests, read_ratio=read_ratio,
                           block_size=block_size, span=span,
                           data=bytes([0x41 + i]) * block_size))
        start = env.now
        env.run()
        elapsed = env.now - start
        from drivers.sim import sim_disk_stats, sim_node
        stats = sim_disk_stats(sim_node(images[0].bs))
        summary = {'vms': results, 'time': elapsed, 'format': fmt,
                   'disk': {'ops': dict(stats.ops), 'bytes': dict(stats.bytes),
                            'busy_ns': stats.busy_ns,
                            'errors': stats.errors}}
        for img in images:
            img.close()
    return summary


def report(summary: Dict[str, object], out=sys.stdout) -> None:
    elapsed = summary['time']
    print('%d VMs on one simulated disk (%s images), %.3f s simulated' %
          (len(summary['vms']), summary['format'], elapsed), file=out)
    print('%-5s %-9s %7s %7s %8s %9s %9s %9s %9s' %
          ('vm', 'throttle', 'reads', 'writes', 'IOPS', 'MiB/s',
           'p50 ms', 'p95 ms', 'p99 ms'), file=out)
    for r in summary['vms']:
        print('%-5s %-9s %7d %7d %8.0f %9.2f %9.3f %9.3f %9.3f' % (
            r.name, 'group0' if r.throttled else '-', r.reads, r.writes,
            r.ops / elapsed if elapsed else 0,
            r.bytes / MiB / elapsed if elapsed else 0,
            r.percentile(50) * 1e3, r.percentile(95) * 1e3,
            r.percentile(99) * 1e3), file=out)
    d = summary['disk']
    print('disk: %d reads, %d writes, %d flushes (metadata included), '
          'channels busy %.3f s' % (d['ops']['read'], d['ops']['write'],
                                    d['ops']['flush'], d['busy_ns'] / 1e9),
          file=out)


def plot(summary: Dict[str, object], path: str) -> bool:
    """Draw the latency histogram of every VM to path; False without
    matplotlib."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in summary['vms']:
        ax.hist([lat * 1e3 for lat in r.latencies], bins=60,
                histtype='step',
                label='%s%s' % (r.name, ' (throttled)' if r.throttled
                                else ''))
    ax.set_xlabel('latency (ms, simulated)')
    ax.set_ylabel('requests')
    ax.set_yscale('log')
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--vms', type=int, default=4)
    parser.add_argument('--duration', type=float, default=2.0,
                        help='simulated seconds')
    parser.add_argument('--depth', type=int, default=4,
                        help='requests in flight per VM')
    parser.add_argument('--throttled', type=int, default=2,
                        help='how many VMs share the throttle group')
    parser.add_argument('--group-iops', type=int, default=400)
    parser.add_argument('--format', choices=('qcow2', 'raw'))
    parser.add_argument('--plot', metavar='PNG',
                        help='draw a latency histogram (matplotlib)')
    args = parser.parse_args(argv)
    summary = simulate(vms=args.vms, duration=args.duration,
                       depth=args.depth, fmt=args.format,
                       throttled=args.throttled, group_iops=args.group_iops)
    report(summary)
    if args.plot:
        if plot(summary, args.plot):
            print('latency histogram written to %s' % args.plot)
        else:
            print('--plot needs matplotlib', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
