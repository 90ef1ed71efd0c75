"""Run one qemu-io case through the real qemu-io and through pyqemu-io.

Each side gets a fresh temporary directory in which the case's set-up is
made with the real qemu-img/qemu-io; then the case's qemu-io options and
commands run on both sides at the same time.  A case passes when the two
sides agree on the filtered standard output and error, the exit status,
the files left in the directory and `qemu-img map --output=json` of every
image.  Raw files must be equal byte for byte; a qcow2 image (a name
ending in .qcow2) may place its clusters differently, so instead the real
`qemu-img compare` must find the two images (with their backing files)
identical, the real `qemu-img check` must find the port's image clean (no
corruption, no leak) and the maps must agree on what the guest sees.

Also a small command line tool for debugging:

    python3 tests/compare/harness.py [-k SUBSTRING] [--port 'qemu-io']

prints the differences of every (selected) case.  The environment variable
PYQEMU_COMPARE_PORT (a command line, e.g. `qemu-io`) replaces pyqemu-io on
the port's side; running the real qemu-io on both sides checks that the
cases themselves are deterministic.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 60            # seconds for one process; a hang is a failure

@dataclass(frozen=True)
class Case:
    """One comparison: qemu-io options (image last) and its -c commands.

    setup is a sequence of steps run in both directories: a command line
    whose first word is `qemu-img` or `qemu-io` (the real tools), or
    ("file", name, text) to write a small file such as a blkdebug config.

    stdin=True feeds the commands on standard input instead, as the
    iotests do.  drop is a regular expression: output lines matching it
    are removed on both sides (for lines whose place depends on thread
    timing in QEMU itself, as iotest 077 removes blkdebug's "Suspended"
    lines).  diverges names an entry of DIVERGENCES.rst: such a case shows
    a difference kept on purpose, and it must differ.
    """
    name: str
    setup: tuple
    options: str
    commands: tuple = ()
    stdin: bool = False
    drop: str | None = None
    diverges: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "commands", tuple(self.commands))
        object.__setattr__(self, "setup", tuple(self.setup))


@dataclass
class Side:
    """What one program did in one directory."""
    stdout: str
    stderr: str
    status: int | str
    files: dict = field(default_factory=dict)   # name -> bytes
    maps: dict = field(default_factory=dict)    # name -> map json text
    # qcow2 images only, filled on the port's side: name -> report of
    # `qemu-img check` on it, or of `qemu-img compare` with the real
    # side's image; None when the tool was happy.
    checks: dict = field(default_factory=dict)
    compares: dict = field(default_factory=dict)


def missing_tools() -> list[str]:
    return [name for name in ("qemu-io", "qemu-img")
            if shutil.which(name) is None]


def port_command() -> list[str]:
    """pyqemu-io as a module run by this interpreter, or the override."""
    override = os.environ.get("PYQEMU_COMPARE_PORT")
    if override:
        return shlex.split(override)
    return [sys.executable, "-m", "block.qemu_io"]


def child_env() -> dict:
    env = dict(os.environ)
    env["LC_ALL"] = "C"
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(PROJECT_ROOT) + (os.pathsep + old if old else "")
    return env


# The timing filter of the iotests (common.filter, _filter_qemu_io), in
# Python syntax, plus the interactive prompt it also removes.
_TIMING_RE = re.compile(
    r"[0-9]* ops; [0-9/:. sec]* \([0-9/.inf]* [EPTGMKiBbytes]*/sec"
    r" and [0-9/.inf]* ops/sec\)")
_TIMING_SUB = "X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)"
# The same for the machine-readable report of -C
# (bytes,ops,time,bytes/sec,ops/sec), which the iotests never filter.
_CFLAG_RE = re.compile(r"^([0-9]+),([0-9]+),[0-9:.]+,[0-9.inf]+,[0-9.inf]+$",
                       re.M)
_CFLAG_SUB = r"\1,\2,XX:XX:XX.X,XXX,XXX"
# error_report() prefixes the program name; normalise it like the
# iotests' QEMU_PROG filter, for both programs.
_PROG_RE = re.compile(r"^(?:py)?qemu-io: ", re.M)


def filter_output(text: str, test_dir: str, drop: str | None = None) -> str:
    text = text.replace("\r", "")
    text = _TIMING_RE.sub(_TIMING_SUB, text)
    text = _CFLAG_RE.sub(_CFLAG_SUB, text)
    text = text.replace("qemu-io> ", "")
    text = _PROG_RE.sub("QEMU_IO_PROG: ", text)
    text = text.replace(test_dir, "TEST_DIR")
    if drop is not None:
        text = "".join(line for line in text.splitlines(keepends=True)
                       if not re.search(drop, line))
    return text


def _start(argv: Sequence[str], cwd: str,
           stdin: str | None = None) -> subprocess.Popen:
    # The real tools run by their plain name, found on PATH: their
    # messages show argv[0].
    return subprocess.Popen(
        argv, cwd=cwd, env=child_env(),
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True)


def _wait(proc: subprocess.Popen, stdin: str | None = None,
          deadline: float | None = None) -> tuple[str, str, int | str]:
    """Returns (stdout, stderr, status).  A status < 0 is death by a
    signal, as subprocess reports it; "timeout" means killed by us."""
    if deadline is None:
        deadline = time.monotonic() + TIMEOUT
    try:
        out, err = proc.communicate(
            None if stdin is None else stdin.encode(),
            timeout=max(0.1, deadline - time.monotonic()))
        status: int | str = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        status = "timeout"
    return (out.decode(errors="backslashreplace"),
            err.decode(errors="backslashreplace"), status)


def _run(argv: Sequence[str], cwd: str) -> tuple[str, str, int | str]:
    return _wait(_start(argv, cwd))


def run_setup(case: Case, cwd: str) -> None:
    for step in case.setup:
        if isinstance(step, tuple):
            kind, name, text = step
            assert kind == "file", step
            Path(cwd, name).write_text(text)
            continue
        argv = shlex.split(step)
        assert argv[0] in ("qemu-img", "qemu-io"), step
        out, err, status = _run(argv, cwd)
        if status != 0:
            raise RuntimeError(f"set-up step {step!r} failed ({status}):"
                               f" {out}{err}")


IMAGE_FORMATS = {".raw": "raw", ".qcow2": "qcow2"}


def _snapshot(side: Side, cwd: str) -> None:
    """Record every file left in cwd, and the map of each image."""
    for path in sorted(Path(cwd).iterdir()):
        if not path.is_file():
            continue
        side.files[path.name] = path.read_bytes()
        fmt = IMAGE_FORMATS.get(path.suffix)
        if fmt is not None:
            out, err, status = _run(["qemu-img", "map", "--output=json",
                                     "-f", fmt, path.name], cwd)
            if fmt == "qcow2":
                out = _guest_map(out)
            side.maps[path.name] = f"{out}{err}(status {status})\n"


# What the map of a qcow2 image must agree on.  "offset" is where the
# data lies in the host file: cluster allocation may legitimately place it
# elsewhere (another allocation order, a leaked cluster reused), and
# `qemu-img compare` already checks the data itself; only whether there
# is an offset at all is kept, because that is the block status flag
# BDRV_BLOCK_OFFSET_VALID which callers (mirror, convert) act on.  All
# other fields (start, length, depth, present, zero, data) are what the
# guest and the backing chain see.  Extents that differed only in their
# offsets are merged again, as qemu-img merges contiguous ones.
def _guest_map(text: str) -> str:
    try:
        extents = json.loads(text)
    except ValueError:
        return text
    merged: list[dict] = []
    for e in extents:
        e = dict(e)
        e["offset"] = "offset" in e
        last = merged[-1] if merged else None
        if last is not None and last["start"] + last["length"] == e["start"] \
                and {k: v for k, v in last.items() if k not in ("start", "length")} \
                == {k: v for k, v in e.items() if k not in ("start", "length")}:
            last["length"] += e["length"]
        else:
            merged.append(e)
    return json.dumps(merged)


def _check_qcow2(real: Side, port: Side, dirs: list[str]) -> None:
    """qemu-img check on the port's qcow2 images, compare with the real's."""
    for name in sorted(real.files.keys() & port.files.keys()):
        if IMAGE_FORMATS.get(Path(name).suffix) != "qcow2":
            continue
        out, err, status = _run(["qemu-img", "check", "-f", "qcow2", name],
                                dirs[1])
        if status != 0:
            # An image that 7.2 leaves leaking as well (abort, sigraise)
            # is no fault of the port.
            rout, rerr, rstatus = _run(["qemu-img", "check", "-f", "qcow2",
                                        name], dirs[0])
            if rstatus != status or rout != out:
                port.checks[name] = (f"status {status}, qemu-io's image"
                                     f" {rstatus}\n{out}{err}")
        # Each image's relative backing file name resolves in its own
        # directory, so both chains are compared.
        out, err, status = _run(["qemu-img", "compare", "-f", "qcow2",
                                 "-F", "qcow2", str(Path(dirs[0], name)),
                                 str(Path(dirs[1], name))], dirs[1])
        if status != 0:
            port.compares[name] = f"status {status}\n{out}{err}"


def case_argv(case: Case) -> tuple[list[str], str | None]:
    """The qemu-io arguments (without the program) and the stdin text."""
    argv = shlex.split(case.options)
    if case.stdin:
        return argv, "".join(c + "\n" for c in case.commands)
    for command in case.commands:
        argv += ["-c", command]
    return argv, None


def run_case(case: Case) -> tuple[Side, Side]:
    """Run case on both sides, concurrently; returns (real, port)."""
    # abort and sigraise kill the program: no core files in the directory.
    resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(
        resource.RLIMIT_CORE)[1]))
    dirs = [tempfile.mkdtemp(prefix="pyqemu-cmp-") for _ in range(2)]
    try:
        for d in dirs:
            run_setup(case, d)
        argv, stdin = case_argv(case)
        procs = [_start(["qemu-io"] + argv, dirs[0], stdin),
                 _start(port_command() + argv, dirs[1], stdin)]
        deadline = time.monotonic() + TIMEOUT
        sides = []
        for proc, d in zip(procs, dirs):
            out, err, status = _wait(proc, stdin, deadline)
            sides.append(Side(filter_output(out, d, case.drop),
                              filter_output(err, d, case.drop), status))
        for side, d in zip(sides, dirs):
            _snapshot(side, d)
        _check_qcow2(sides[0], sides[1], dirs)
        return sides[0], sides[1]
    finally:
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


def _diff(what: str, real: str, port: str) -> str:
    lines = difflib.unified_diff(real.splitlines(keepends=True),
                                 port.splitlines(keepends=True),
                                 f"qemu-io {what}", f"pyqemu-io {what}")
    return "".join(line if line.endswith("\n") else line + "\n"
                   for line in lines)


def _first_difference(a: bytes, b: bytes) -> int:
    n = min(len(a), len(b))
    for start in range(0, n, 4096):
        if a[start:start + 4096] != b[start:start + 4096]:
            return next(i for i in range(start, min(start + 4096, n))
                        if a[i] != b[i])
    return n


def differences(real: Side, port: Side) -> list[str]:
    """Human-readable differences between the two sides; empty if none."""
    found = []
    if real.stdout != port.stdout:
        found.append(_diff("stdout", real.stdout, port.stdout))
    if real.stderr != port.stderr:
        found.append(_diff("stderr", real.stderr, port.stderr))
    if real.status != port.status:
        found.append(f"exit status: qemu-io {real.status},"
                     f" pyqemu-io {port.status}\n")
    if real.files.keys() != port.files.keys():
        found.append(f"files: qemu-io {sorted(real.files)},"
                     f" pyqemu-io {sorted(port.files)}\n")
    for name in sorted(real.files.keys() & port.files.keys()):
        a, b = real.files[name], port.files[name]
        if IMAGE_FORMATS.get(Path(name).suffix) == "qcow2":
            if name in port.checks:
                found.append(f"{name}: qemu-img check on pyqemu-io's"
                             f" image: {port.checks[name]}")
            if name in port.compares:
                found.append(f"{name}: qemu-img compare: "
                             f"{port.compares[name]}")
        elif a != b:
            found.append(f"{name}: contents differ: sizes {len(a)} and"
                         f" {len(b)}, first difference at byte"
                         f" {_first_difference(a, b)}\n")
    for name in sorted(real.maps.keys() & port.maps.keys()):
        if real.maps[name] != port.maps[name]:
            found.append(_diff(f"map {name}", _pretty(real.maps[name]),
                               _pretty(port.maps[name])))
    return found


def _pretty(map_text: str) -> str:
    """One extent a line, without the noise of qemu-img's spacing."""
    body, _, status = map_text.rpartition("(status")
    try:
        extents = json.loads(body)
    except ValueError:
        return map_text
    return "".join(json.dumps(e, sort_keys=True) + "\n" for e in extents) + \
        "(status" + status


def main(args: list[str]) -> int:
    import argparse
    sys.path.insert(0, str(Path(__file__).parent))
    from cases import CASES
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", default="", help="run cases whose name has this")
    parser.add_argument("--port", help="command to use instead of pyqemu-io")
    parser.add_argument("-v", action="store_true", help="show passing cases")
    opts = parser.parse_args(args)
    if opts.port:
        os.environ["PYQEMU_COMPARE_PORT"] = opts.port
    if missing_tools():
        print("missing:", ", ".join(missing_tools()))
        return 2
    selected = [c for c in CASES if opts.k in c.name]
    failed = 0
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        for case, (real, port) in zip(selected, pool.map(run_case, selected)):
            found = differences(real, port)
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
    sys.exit(main(sys.argv[1:]))
