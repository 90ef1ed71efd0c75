"""`make bench`: every benchmark figure of the project, measured in one run.

Each row is (what, the port's figure, the reference figure); the ratio is
port / reference, so for costs lower is better.
"""

import importlib
import platform
import sys

# (module, function) pairs; each function returns rows of
# (what, port ns/op, reference ns/op).
BENCHMARKS = [
    ("tests.bench_coroutine", "bench_coroutine"),
    ("tests.bench_aio", "bench_aio"),
    ("tests.bench_iov", "bench_iov"),
]


def main() -> int:
    print(f"pyqemu-block benchmarks on {platform.machine()}, "
          f"Python {platform.python_version()}")
    print(f"{'what':58s} {'port':>12s} {'reference':>12s}  ratio")
    for module_name, function_name in BENCHMARKS:
        module = importlib.import_module(module_name)
        for what, port, ref in getattr(module, function_name)():
            ratio = f"x{port / ref:5.2f}" if ref else ""
            print(f"{what:58s} {port:9.0f} ns {ref:9.0f} ns  {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
