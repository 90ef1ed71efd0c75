"""`make bench`: every benchmark figure of the project, measured in one run.

    python3 -m tests.bench [--smoke]

The first table has the in-process rows: (what, the port's figure, the
reference figure) as costs, so the ratio port / reference is better lower.
The second (tests/bench_programs.py) runs the real qemu-img/qemu-io and
pyqemu-img/pyqemu-io on the same work, several times each, and gives the
median and spread of each and the ratio port / QEMU of the medians.
--smoke uses tiny counts: it shows that every benchmark runs, not how fast.
"""

import importlib
import os
import platform
import sys

from tests.bench_programs import bench_img, print_rows

# (module, function, keyword arguments for --smoke) triples; each function
# returns rows of (what, port ns/op, reference ns/op).
BENCHMARKS = [
    ("tests.bench_coroutine", "bench_coroutine", {}),
    ("tests.bench_aio", "bench_aio", {}),
    ("tests.bench_iov", "bench_iov", {}),
    ("tests.bench_throttle", "bench_throttle", {"seconds": 0.1}),
]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str]) -> int:
    smoke = "--smoke" in argv
    print(f"pyqemu-block benchmarks on {cpu_model()} ({platform.machine()},"
          f" {os.cpu_count()} CPUs), Python {platform.python_version()}"
          f"{', smoke run' if smoke else ''}")
    print(f"{'what':58s} {'port':>12s} {'reference':>12s}  ratio")
    for module_name, function_name, smoke_kwargs in BENCHMARKS:
        module = importlib.import_module(module_name)
        kwargs = smoke_kwargs if smoke else {}
        for what, port, ref in getattr(module, function_name)(**kwargs):
            ratio = f"x{port / ref:5.2f}" if ref else ""
            print(f"{what:58s} {port:9.0f} ns {ref:9.0f} ns  {ratio}")
    print()
    print_rows(bench_img(smoke))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
