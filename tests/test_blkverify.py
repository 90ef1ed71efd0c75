"""blkverify: writes reach both images, reads are compared, a difference
stops the program with QEMU's message.

A planted difference ends the process (exit(1), as in QEMU), so that case
runs in a child process.  The random workload runs here, with the exit
turned into an exception for the duration of the test.
"""

import os
import subprocess
import sys
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from block import core, io
from block.block_int import BDRV_O_RDWR
from util.error import error_abort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 1 << 20


def make_images(tmp_path):
    raw = tmp_path / "ref.raw"
    test = tmp_path / "test.raw"
    raw.write_bytes(bytes(SIZE))
    test.write_bytes(bytes(SIZE))
    return str(raw), str(test)


def open_blkverify(raw: str, test: str, options_form: bool = False):
    pbs = [None]
    if options_form:
        options = {"driver": "blkverify", "raw.filename": raw,
                   "test.driver": "raw", "test.file.filename": test}
        ret = core.bdrv_open(pbs, None, None, options, BDRV_O_RDWR,
                             error_abort)
    else:
        ret = core.bdrv_open(pbs, "blkverify:%s:%s" % (raw, test), None,
                             {"driver": "raw"}, BDRV_O_RDWR, error_abort)
    assert ret == 0
    return pbs[0]


def test_writes_reach_both(tmp_path):
    raw, test = make_images(tmp_path)
    bs = open_blkverify(raw, test)
    data = bytes(range(256)) * 16
    assert io.bdrv_pwrite(bs, 8192, data, len(data)) == len(data)
    buf = bytearray(len(data))
    assert io.bdrv_pread(bs, 8192, buf, len(buf)) == len(buf)
    assert buf == data
    core.bdrv_unref(bs)
    with open(raw, "rb") as f1, open(test, "rb") as f2:
        assert f1.read() == f2.read()


def test_options_form(tmp_path):
    raw, test = make_images(tmp_path)
    bs = open_blkverify(raw, test, options_form=True)
    assert bs.drv.format_name == "blkverify"
    assert io.bdrv_pwrite(bs, 0, b"x" * 512, 512) == 512
    buf = bytearray(512)
    assert io.bdrv_pread(bs, 0, buf, 512) == 512
    assert buf == b"x" * 512
    core.bdrv_unref(bs)


def test_filename(tmp_path):
    raw, test = make_images(tmp_path)
    bs = open_blkverify(raw, test)
    # the raw format node sits on the blkverify protocol node
    assert bs.file.bs.drv.format_name == "blkverify"
    assert bs.file.bs.filename == "blkverify:%s:%s" % (raw, test)
    assert core.bdrv_getlength(bs) == SIZE
    core.bdrv_unref(bs)


def test_missing_test_image():
    pbs = [None]
    errp = [None]
    ret = core.bdrv_open(pbs, "blkverify:only.raw", None, {"driver": "raw"},
                         0, errp)
    assert ret < 0
    assert errp[0].msg == "blkverify requires raw copy and original image path"


PLANTED = textwrap.dedent("""
    import os, sys
    from block import core, io
    from block.block_int import BDRV_O_RDWR
    from util.error import error_abort

    raw, test = sys.argv[1], sys.argv[2]
    pbs = [None]
    core.bdrv_open(pbs, "blkverify:%s:%s" % (raw, test), None,
                   {"driver": "raw"}, BDRV_O_RDWR, error_abort)
    bs = pbs[0]
    io.bdrv_pwrite(bs, 0, b"\\x11" * 16384, 16384)
    print("written", flush=False)
    # behind blkverify's back: one byte of the image under test
    fd = os.open(test, os.O_WRONLY)
    os.pwrite(fd, b"\\x22", 4096 + 700)
    os.close(fd)
    buf = bytearray(8192)
    io.bdrv_pread(bs, 0, buf, 8192)
    print("not reached")
""")


def test_planted_mismatch(tmp_path):
    raw, test = make_images(tmp_path)
    proc = subprocess.run([sys.executable, "-c", PLANTED, raw, test],
                          cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1, proc.stderr
    # the output before the failure is flushed, nothing after it runs
    assert proc.stdout == "written\n"
    # (before it, the warning that TEST's format was probed)
    assert proc.stderr.endswith("\nblkverify: read offset=0 bytes=8192 "
                                "contents mismatch at offset 4796\n")


class Mismatch(Exception):
    pass


@pytest.fixture
def no_exit(monkeypatch):
    """Turn blkverify's exit(1) into an exception, so that a difference
    fails the test instead of ending pytest."""
    def fail(status):
        raise Mismatch("blkverify found a difference (exit %d)" % status)
    monkeypatch.setattr(os, "_exit", fail)


def test_no_exit_catches_mismatch(tmp_path, no_exit):
    """The random workload below would see a difference: one planted here
    comes out as Mismatch, whether the request is aligned or not."""
    raw, test = make_images(tmp_path)
    bs = open_blkverify(raw, test)
    with open(test, "r+b") as f:
        f.seek(1000)
        f.write(b"\x01")
    buf = bytearray(100)
    assert io.bdrv_pread(bs, 0, buf, 100) == 100      # not the sector
    with pytest.raises(Mismatch):
        io.bdrv_pread(bs, 990, buf, 20)
    with pytest.raises(Mismatch):
        io.bdrv_pread(bs, 512, buf, 100)              # same sector


requests = st.lists(
    st.tuples(st.sampled_from(["read", "write", "flush"]),
              st.integers(0, SIZE - 1), st.integers(1, 70000),
              st.integers(0, 255)),
    min_size=1, max_size=25)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reqs=requests)
def test_random_workload(tmp_path_factory, no_exit, reqs):
    """Random reads and writes, aligned or not, through blkverify over a
    raw reference: never a difference, and the images end up equal."""
    tmp_path = tmp_path_factory.mktemp("blkverify")
    raw, test = make_images(tmp_path)
    bs = open_blkverify(raw, test)
    model = bytearray(SIZE)
    for op, offset, length, pattern in reqs:
        length = min(length, SIZE - offset)
        if op == "write":
            data = bytes([pattern]) * length
            assert io.bdrv_pwrite(bs, offset, data, length) == length
            model[offset:offset + length] = data
        elif op == "read":
            buf = bytearray(length)
            assert io.bdrv_pread(bs, offset, buf, length) == length
            assert buf == model[offset:offset + length]
        else:
            assert io.bdrv_flush(bs) == 0
    core.bdrv_unref(bs)
    with open(raw, "rb") as f1, open(test, "rb") as f2:
        assert f1.read() == f2.read() == model
