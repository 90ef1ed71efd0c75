"""`make bench` works: a smoke run with tiny counts exits 0 and prints both
tables.  It checks that the benchmarks run, not how fast."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_smoke():
    proc = subprocess.run([sys.executable, "-m", "tests.bench", "--smoke"],
                          cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "ratio" in proc.stdout
    assert "throttling.iops-total" in proc.stdout
    if shutil.which("qemu-img") and shutil.which("qemu-io"):
        assert "port/QEMU" in proc.stdout
        assert "null-co 4 KiB reads, depth 64" in proc.stdout
        assert "peak memory" in proc.stdout
