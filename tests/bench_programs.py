"""The whole-program rows of `make bench`: qemu-img bench against pyqemu-img
bench on the same work, qemu-io's start-up against pyqemu-io's, and
pyqemu-img bench's peak memory as the request count grows.

Each figure is measured RUNS times with each program, alternating so that a
change of load on the machine hits both alike; bench_img() returns rows of
(what, unit, QEMU's figures, the port's figures).  The images live in a
temporary directory on /dev/shm when there is one (the page cache, not the
disk, sets the pace).  The bench runs themselves are
tests/compare_img/bench_img.py's bench_time().
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT / "tests" / "compare_img"))

from bench_img import bench_time, child_env  # noqa: E402

RUNS = 3

# (what, request count, smoke count, bench arguments, fresh image per run)
CONFIGS = [
    ("null-co 4 KiB reads, depth 1", 200000, 200,
     "-f null-co -d 1 null-co://", None),
    ("null-co 4 KiB reads, depth 64", 200000, 200,
     "-f null-co -d 64 null-co://", None),
    ("null-co 4 KiB writes, depth 64", 200000, 200,
     "-w -f null-co -d 64 null-co://", None),
    ("raw file 4 KiB reads, depth 1", 50000, 100, "-f raw -d 1 r.raw", None),
    ("raw file 4 KiB reads, depth 16", 50000, 100, "-f raw -d 16 r.raw",
     None),
    ("raw file 1 MiB seq. writes, depth 4", 3000, 10,
     "-w -f raw -d 4 -s 1M -S 1M r.raw", None),
    ("raw file 1 MiB seq. reads, depth 4", 3000, 10,
     "-f raw -d 4 -s 1M -S 1M r.raw", None),
    # every request writes to a new cluster (64 KiB apart) of an empty image
    ("qcow2 4 KiB allocating writes, depth 16", 5000, 50,
     "-w -f qcow2 -d 16 -s 4K -S 64K e.qcow2", "e.qcow2"),
    ("qcow2 64 KiB reads, depth 16", 20000, 50,
     "-f qcow2 -d 16 -s 64K q.qcow2", None),
]

SETUP = ("qemu-img create -q -f raw r.raw 256M",
         "qemu-io -f raw -c 'write 0 256M' r.raw",
         "qemu-img create -q -f qcow2 q.qcow2 256M",
         "qemu-io -f qcow2 -c 'write 0 256M' q.qcow2")

# peak memory of pyqemu-img bench at depth 64: the counts should not matter
MEMORY_COUNTS = (200000, 2000000)
MEMORY_SMOKE_COUNTS = (200, 2000)
STARTUP_RUNS = 10


def median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def maxrss_kib(argv: list[str], env: dict, cwd: str) -> int:
    """The peak resident size of one child.  Linux keeps the high-water
    mark across fork and execve, so a child of this (large) process would
    report our size: a small GNU time forks the program instead, or
    failing that a bare Python (an upper bound of about 10 MiB)."""
    gnu_time = shutil.which("time") or "/usr/bin/time"
    if os.access(gnu_time, os.X_OK):
        proc = subprocess.run([gnu_time, "-f", "%M"] + argv, cwd=cwd,
                              env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, check=True)
        return int(proc.stderr.split()[-1])
    proc = subprocess.run(
        [sys.executable, "-S", "-c",
         "import os, sys; pid = os.fork()\n"
         "if pid == 0: os.execvp(sys.argv[1], sys.argv[1:])\n"
         "_, st, ru = os.wait4(pid, 0); print(ru.ru_maxrss)\n"
         "sys.exit(os.waitstatus_to_exitcode(st))"] + argv,
        cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return int(proc.stdout.split()[-1])


def wall_time(argv: list[str], env: dict, cwd: str) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def bench_img(smoke: bool = False) -> list:
    """Rows of (what, unit, QEMU's figures, the port's figures)."""
    qemu_img = shutil.which("qemu-img")
    qemu_io = shutil.which("qemu-io")
    if not qemu_img or not qemu_io:
        print("qemu-img/qemu-io not found: no whole-program rows")
        return []
    port_img = [sys.executable, "-m", "block.qemu_img"]
    port_io = [sys.executable, "-m", "block.qemu_io"]
    rows = []
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=base) as d:
        for step in SETUP:
            if smoke:
                step = step.replace("256M", "16M")
            subprocess.run(step, shell=True, cwd=d, check=True,
                           stdout=subprocess.DEVNULL)
        for what, count, smoke_count, args, fresh in CONFIGS:
            if smoke:
                count = smoke_count
            rates: dict[str, list[float]] = {"real": [], "port": []}
            for _ in range(RUNS):
                for key, prog in (("real", [qemu_img]), ("port", port_img)):
                    if fresh:
                        subprocess.run([qemu_img, "create", "-q", "-f",
                                        "qcow2", fresh, "1T"], cwd=d,
                                       check=True)
                    seconds = bench_time(prog, count, args, d)
                    rates[key].append(count / max(seconds, 1e-6))
            rows.append((what, "req/s", rates["real"], rates["port"]))

        # start-up: as an installed console script runs, with its bytecode
        # cached (here in a private cache so that the tree stays clean),
        # and once more with the project's bytecode left out of that cache
        # (the standard library's stays)
        warm_cache = os.path.join(d, "pycache")
        env = child_env()
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = warm_cache
        tiny = os.path.join(d, "s.raw")
        subprocess.run([qemu_img, "create", "-q", "-f", "raw", tiny, "1M"],
                       check=True)
        quit_args = ["-c", "quit", "-f", "raw", tiny]
        wall_time(port_io + quit_args, env, d)        # fills the cache
        cold_cache = os.path.join(d, "pycache-cold")
        shutil.copytree(warm_cache, cold_cache)
        shutil.rmtree(cold_cache + str(PROJECT_ROOT), ignore_errors=True)
        cold = child_env()
        cold["PYTHONDONTWRITEBYTECODE"] = "1"
        cold["PYTHONPYCACHEPREFIX"] = cold_cache
        runs = 3 if smoke else STARTUP_RUNS
        times: dict[str, list[float]] = {"real": [], "port": [], "cold": [],
                                         "python": []}
        for _ in range(runs):
            times["real"].append(wall_time([qemu_io] + quit_args, env, d))
            times["port"].append(wall_time(port_io + quit_args, env, d))
            times["cold"].append(wall_time(port_io + quit_args, cold, d))
            times["python"].append(wall_time([sys.executable, "-c", "pass"],
                                             env, d))
        ms = {k: [t * 1000 for t in v] for k, v in times.items()}
        rows.append(("start-up, -c quit on a 1 MiB raw image", "ms",
                     ms["real"], ms["port"]))
        rows.append(("start-up, project's bytecode not cached", "ms",
                     ms["real"], ms["cold"]))
        rows.append(("(python3 -c pass, for scale)", "ms", ms["real"],
                     ms["python"]))

        for count in MEMORY_SMOKE_COUNTS if smoke else MEMORY_COUNTS:
            args = ["bench", "-c", str(count), "-f", "null-co", "-d", "64",
                    "null-co://"]
            real = maxrss_kib([qemu_img] + args, child_env(), d)
            port = maxrss_kib(port_img + args, child_env(), d)
            rows.append((f"peak memory, null-co depth 64, {count} requests",
                         "MiB", [real / 1024], [port / 1024]))
    return rows


def print_rows(rows: list) -> None:
    print(f"{'what':50s} {'unit':>5s} {'QEMU median':>12s} {'spread':>7s}"
          f" {'port median':>12s} {'spread':>7s} {'port/QEMU':>9s}")
    for what, unit, real, port in rows:
        cells = []
        for values in (real, port):
            m = median(values)
            spread = (max(values) - min(values)) / m * 100 if m else 0.0
            cells.append(f"{m:12.1f} {spread:6.1f}%")
        ratio = median(port) / median(real) if median(real) else 0.0
        print(f"{what:50s} {unit:>5s} {cells[0]} {cells[1]} {ratio:8.1%}")


def main(argv: list[str]) -> int:
    print_rows(bench_img(smoke="--smoke" in argv))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
