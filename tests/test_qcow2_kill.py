"""Crash consistency of qcow2 under SIGKILL: a child process writes to an
image (allocating writes, zero writes, discards, flushes) and is killed at a
random moment; the real `qemu-img check` must then find no corruption.
Leaked clusters are allowed, as in QEMU.  The counts are printed (run with
-s to see them)."""

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
KILLS = int(os.environ.get("PYQEMU_KILL_RUNS", "12"))

WRITER = r"""
import random, sys
from block.front import open_image
path, seed = sys.argv[1], int(sys.argv[2])
rng = random.Random(seed)
with open_image(path, fmt='qcow2') as img:
    size = img.length()
    print('ready', flush=True)
    while True:
        op = rng.random()
        off = rng.randrange(0, size - 65536) & ~511
        n = rng.choice([512, 4096, 65536, 3 * 512])
        if op < 0.6:
            img.write(off, bytes([rng.randrange(256)]) * n)
        elif op < 0.75:
            img.write_zeroes(off, n)
        elif op < 0.9:
            img.discard(off, n)
        else:
            img.flush()
"""


def _qemu_img() -> str:
    path = shutil.which("qemu-img")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("qemu-img is missing (install Debian's qemu-utils)")
        pytest.skip("qemu-img is not installed")
    return path


def test_sigkill_never_corrupts(tmp_path):
    qemu_img = _qemu_img()
    rng = random.Random(20161)
    results = {"clean": 0, "leaks only": 0, "corrupt": 0}
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    for run in range(KILLS):
        image = tmp_path / f"kill{run}.qcow2"
        cluster = rng.choice(["4096", "65536"])
        subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", "-o",
                        f"cluster_size={cluster}", str(image), "16M"],
                       check=True)
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(image), str(run)],
            stdout=subprocess.PIPE, env=env, cwd=tmp_path)
        assert child.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.05, 0.6))
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
        child.stdout.close()

        check = subprocess.run([qemu_img, "check", str(image)],
                               capture_output=True, text=True, timeout=60)
        # qemu-img check: 0 clean, 2 corruptions, 3 leaks only
        if check.returncode == 0:
            results["clean"] += 1
        elif check.returncode == 3:
            results["leaks only"] += 1
        else:
            results["corrupt"] += 1
            print(check.stdout, check.stderr)
    print(f"\nqcow2 SIGKILL runs: {KILLS} kills, " +
          ", ".join(f"{k}: {v}" for k, v in results.items()))
    assert results["corrupt"] == 0
    assert sum(results.values()) == KILLS
