"""`qemu-img bench` against `pyqemu-img bench`: requests per second.

    python3 tests/compare_img/bench_img.py [-n RUNS] [-k SUBSTRING]

Each configuration runs RUNS times with each program (alternating, so that
a change of load on the machine hits both alike); the best time of each is
reported as requests per second.  The images are made with the real
qemu-img in a temporary directory (on /dev/shm when there is one, so that
the disk does not set the pace).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "compare"))

from harness import child_env  # noqa: E402

SETUP = ("qemu-img create -q -f raw r.raw 256M",
         "qemu-io -f raw -c 'write 0 256M' r.raw",
         "qemu-img create -q -f qcow2 q.qcow2 256M",
         "qemu-io -f qcow2 -c 'write 0 256M' q.qcow2")

# (name, request count, bench arguments)
CONFIGS = [
    ("null-co, depth 64", 100000, "-f null-co -d 64 null-co://"),
    ("null-co, depth 1", 100000, "-f null-co -d 1 null-co://"),
    ("null-aio, depth 64", 100000, "-f null-aio -d 64 null-aio://"),
    ("raw file read, depth 64", 50000, "-f raw -d 64 r.raw"),
    ("raw file write, depth 64", 50000, "-w -f raw -d 64 r.raw"),
    ("qcow2 read, depth 64", 50000, "-f qcow2 -d 64 q.qcow2"),
    ("qcow2 write, depth 64", 50000, "-w -f qcow2 -d 64 q.qcow2"),
]

_TIME_RE = re.compile(r"Run completed in ([0-9.]+) seconds")


def bench_time(prog: list[str], count: int, args: str, cwd: str) -> float:
    proc = subprocess.run(prog + ["bench", "-c", str(count)] + args.split(),
                          cwd=cwd, env=child_env(), capture_output=True,
                          text=True, check=True)
    return float(_TIME_RE.search(proc.stdout).group(1))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=3, help="runs of each")
    parser.add_argument("-k", default="", help="configurations with this")
    opts = parser.parse_args(argv)
    real = shutil.which("qemu-img")
    if not real:
        print("qemu-img is not installed")
        return 2
    port = [sys.executable, "-m", "block.qemu_img"]
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=base) as d:
        for step in SETUP:
            subprocess.run(step, shell=True, cwd=d, check=True,
                           stdout=subprocess.DEVNULL)
        print(f"{'configuration':28} {'qemu-img':>12} {'pyqemu-img':>12}"
              f" {'ratio':>6}")
        for name, count, args in CONFIGS:
            if opts.k not in name:
                continue
            times = {"real": [], "port": []}
            for _ in range(opts.n):
                times["real"].append(bench_time([real], count, args, d))
                times["port"].append(bench_time(port, count, args, d))
            rate = {k: count / max(min(v), 1e-3) for k, v in times.items()}
            print(f"{name:28} {rate['real']:10.0f}/s {rate['port']:10.0f}/s"
                  f" {rate['real'] / rate['port']:5.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
