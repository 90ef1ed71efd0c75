"""Run one qemu-img case through the real qemu-img and through pyqemu-img.

Each side gets a fresh temporary directory in which the case's set-up is
made with the real qemu-img/qemu-io (tests/compare/harness.py's run_setup,
plus Python steps for images the tools cannot make, such as one with
leaked clusters).  Then the same qemu-img arguments run on both sides at
the same time.  A case passes when the two sides agree on

- standard output and error, after tests/compare's filter (temporary
  directory, timings), bench's "Run completed in" time and the number of
  qemu-img info's disk size;
- the exit status;
- the files left in the directory: byte for byte, except qcow2 images,
  which may differ in layout; for those (where the bytes differ) the real
  `qemu-img compare` must find the two images identical, the real
  `qemu-img check` must find the pyqemu side clean and pyqemu-img check
  the real side clean, and a `qemu-io read -v` of the start of the image
  must give the same dump from the real qemu-io on either image and
  from pyqemu-io on the real side's image.

Also a small command line tool:

    python3 tests/compare_img/img_harness.py [-k SUBSTRING] [-v]

prints the differences of every (selected) case.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "compare"))

from harness import (child_env, filter_output, missing_tools,  # noqa: E402
                     run_setup)

TIMEOUT = 120           # seconds for one process; a hang is a failure
QCOW2_MAGIC = b"QFI\xfb"
READ_LEN = 256 * 1024   # how much of an image the qemu-io dumps read

_BENCH_RE = re.compile(r"^Run completed in [0-9.]+ seconds\.$", re.M)
# What a file takes on the disk depends on the file system's mood (delayed
# allocation, a nearly full disk), not only on what was written: the
# iotests filter it too (_filter_img_info).  Whether it is known stays.
_DISK_SIZE_RE = re.compile(r"^(disk size: )[0-9.]+ [KMGTPE]?i?B$", re.M)
_ACTUAL_SIZE_RE = re.compile(r'("actual-size": )[0-9]+')


@dataclass(frozen=True)
class ImgCase:
    """One comparison: `qemu-img ARGS` after the set-up steps.

    A set-up step is a command line for the real qemu-img or qemu-io, or
    ("file", name, text), or a callable taking the directory (for images
    the tools cannot make).  diverges names an entry of DIVERGENCES.rst: a
    difference kept on purpose (or owed to another part of the port), and
    the case must show it.
    """
    name: str
    setup: tuple
    args: str
    diverges: str | None = None


@dataclass
class ImgSide:
    stdout: str
    stderr: str
    status: int | str
    files: dict = field(default_factory=dict)      # name -> bytes


def qemu_img_prog() -> str:
    return shutil.which("qemu-img") or "qemu-img"


def qemu_io_prog() -> str:
    return shutil.which("qemu-io") or "qemu-io"


def port_command(prog: str = "block.qemu_img") -> list[str]:
    return [sys.executable, "-m", prog]


def _run(argv: list[str], cwd: str) -> tuple[str, str, int | str]:
    try:
        proc = subprocess.run(argv, cwd=cwd, env=child_env(),
                              stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=TIMEOUT)
    except subprocess.TimeoutExpired as e:
        return (e.stdout or b"").decode(errors="backslashreplace"), \
            (e.stderr or b"").decode(errors="backslashreplace"), "timeout"
    return (proc.stdout.decode(errors="backslashreplace"),
            proc.stderr.decode(errors="backslashreplace"), proc.returncode)


def _filter(text: str, test_dir: str) -> str:
    text = _BENCH_RE.sub("Run completed in X seconds.",
                         filter_output(text, test_dir))
    text = _DISK_SIZE_RE.sub(r"\1SIZE", text)
    return _ACTUAL_SIZE_RE.sub(r"\1SIZE", text)


def _setup(case: ImgCase, cwd: str) -> None:
    for step in case.setup:
        if callable(step):
            step(cwd)
        else:
            run_setup(SimpleNamespace(setup=(step,)), cwd)


def run_case(case: ImgCase) -> tuple[ImgSide, ImgSide, list[str]]:
    """Run case on both sides at once; returns (real, port, differences
    of the resulting images)."""
    dirs = [tempfile.mkdtemp(prefix="pyqemu-img-cmp-") for _ in range(2)]
    try:
        for d in dirs:
            _setup(case, d)
        args = shlex.split(case.args)
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(_run, [qemu_img_prog()] + args, dirs[0]),
                       pool.submit(_run, port_command() + args, dirs[1])]
            results = [f.result() for f in futures]
        sides = []
        for (out, err, status), d in zip(results, dirs):
            side = ImgSide(_filter(out, d), _filter(err, d), status)
            for path in sorted(Path(d).iterdir()):
                if path.is_file():
                    side.files[path.name] = path.read_bytes()
            sides.append(side)
        image_diffs = compare_images(sides[0], sides[1], dirs[0], dirs[1])
        return sides[0], sides[1], image_diffs
    finally:
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


# a warning the real tools give for "backing": "" (see _spec)
_BACKING_WARNING_RE = re.compile(r'^.*warning: Use of "backing": "" is '
                                 r'deprecated.*\n', re.M)


def _info(path: str) -> dict:
    """`qemu-img info --output=json` of a qcow2 image (without its backing
    file), or {} if it cannot be read."""
    out, _, status = _run([qemu_img_prog(), "info", "-f", "qcow2",
                           "--output=json", path], os.path.dirname(path))
    return json.loads(out) if status == 0 else {}


def _spec(path: str, no_backing: bool) -> list[str]:
    """How to name a qcow2 image to the tools: opened without its backing
    file when that is missing (an image created with -u)."""
    if no_backing:
        return ["--image-opts", f"driver=qcow2,backing=,file.filename={path}"]
    return ["-f", "qcow2", path]


def _specs(a: str, b: str, no_backing: bool) -> list[str]:
    """Two images for compare: -f and -F, or --image-opts for both."""
    if no_backing:
        return ["--image-opts"] + _spec(a, True)[1:] + _spec(b, True)[1:]
    return ["-f", "qcow2", "-F", "qcow2", a, b]


def _dump(prog: list[str], spec: list[str], path: str, length: int) -> str:
    """`qemu-io -r -c 'read -v 0 LEN'` of an image, filtered."""
    out, err, status = _run(prog + ["-r", "-c", f"read -v 0 {length}"]
                            + spec, os.path.dirname(path))
    text = _filter(out + err, os.path.dirname(path))
    text = _BACKING_WARNING_RE.sub("", text)
    return text + f"(status {status})"


def compare_qcow2(name: str, real_path: str, port_path: str) -> list[str]:
    """The checks of two qcow2 images that should hold the same data."""
    found = []
    real_dir, port_dir = os.path.dirname(real_path), os.path.dirname(port_path)
    info = _info(real_path)
    backing = info.get("full-backing-filename")
    no_backing = bool(backing) and not os.path.exists(
        os.path.join(real_dir, backing))

    out, err, status = _run([qemu_img_prog(), "compare"]
                            + _specs(real_path, port_path, no_backing),
                            real_dir)
    if status != 0:
        found.append(f"{name}: qemu-img compare (status {status}): "
                     f"{out}{err}")
    out, err, status = _run(port_command() + ["compare"]
                            + _specs(port_path, real_path, no_backing),
                            port_dir)
    if status != 0:
        found.append(f"{name}: pyqemu-img compare (status {status}): "
                     f"{out}{err}")

    out, err, status = _run([qemu_img_prog(), "check"]
                            + _spec(port_path, no_backing), port_dir)
    if status != 0:
        found.append(f"{name}: qemu-img check of pyqemu-img's image "
                     f"(status {status}): {out}{err}")
    out, err, status = _run(port_command() + ["check"]
                            + _spec(real_path, no_backing), real_dir)
    if status != 0:
        found.append(f"{name}: pyqemu-img check of qemu-img's image "
                     f"(status {status}): {out}{err}")

    length = min(READ_LEN, info.get("virtual-size", 0))
    if length:
        reference = _dump([qemu_io_prog()], _spec(real_path, no_backing),
                          real_path, length)
        for who, prog, path in (
                ("qemu-io", [qemu_io_prog()], port_path),
                ("pyqemu-io", port_command("block.qemu_io"), real_path)):
            dump = _dump(prog, _spec(path, no_backing), path, length)
            if dump.replace(os.path.dirname(path), "DIR") != \
                    reference.replace(real_dir, "DIR"):
                side = "pyqemu-img's" if path == port_path else "qemu-img's"
                found.append(f"{name}: {who} reads {side} image "
                             f"differently\n")
    return found


def compare_images(real: ImgSide, port: ImgSide, real_dir: str,
                   port_dir: str) -> list[str]:
    found = []
    if real.files.keys() != port.files.keys():
        found.append(f"files: qemu-img {sorted(real.files)},"
                     f" pyqemu-img {sorted(port.files)}\n")
    for name in sorted(real.files.keys() & port.files.keys()):
        a, b = real.files[name], port.files[name]
        if a == b:
            continue
        if a[:4] == QCOW2_MAGIC and b[:4] == QCOW2_MAGIC:
            found += compare_qcow2(name, os.path.join(real_dir, name),
                                   os.path.join(port_dir, name))
        else:
            first = next((i for i in range(min(len(a), len(b)))
                          if a[i] != b[i]), min(len(a), len(b)))
            found.append(f"{name}: contents differ: sizes {len(a)} and "
                         f"{len(b)}, first difference at byte {first}\n")
    return found


def _diff(what: str, real: str, port: str) -> str:
    import difflib
    lines = difflib.unified_diff(real.splitlines(keepends=True),
                                 port.splitlines(keepends=True),
                                 f"qemu-img {what}", f"pyqemu-img {what}")
    return "".join(line if line.endswith("\n") else line + "\n"
                   for line in lines)


def differences(real: ImgSide, port: ImgSide,
                image_diffs: list[str]) -> list[str]:
    found = []
    if real.stdout != port.stdout:
        found.append(_diff("stdout", real.stdout, port.stdout))
    if real.stderr != port.stderr:
        found.append(_diff("stderr", real.stderr, port.stderr))
    if real.status != port.status:
        found.append(f"exit status: qemu-img {real.status},"
                     f" pyqemu-img {port.status}\n")
    return found + image_diffs


def main(args: list[str]) -> int:
    import argparse
    from img_cases import CASES
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", default="", help="run cases whose name has this")
    parser.add_argument("-v", action="store_true", help="show passing cases")
    opts = parser.parse_args(args)
    if missing_tools():
        print("missing:", ", ".join(missing_tools()))
        return 2
    selected = [c for c in CASES if opts.k in c.name]
    failed = 0
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        for case, (real, port, image_diffs) in zip(
                selected, pool.map(run_case, selected)):
            found = differences(real, port, image_diffs)
            bad = bool(found) == (case.diverges is None)
            failed += bad
            if bad or opts.v:
                print(f"{'FAIL' if bad else 'ok'} {case.name}"
                      + (f" (diverges: {case.diverges})"
                         if case.diverges else ""))
                for text in found:
                    print(text, end="")
    print(f"{len(selected) - failed} of {len(selected)} cases agree")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main(sys.argv[1:]))
