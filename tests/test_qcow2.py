"""Tests of the qcow2 driver (drivers/qcow2, QEMU's block/qcow2*.c), checked
against the installed QEMU tools: images made and written by the real
qemu-img and qemu-io are read back through the port, and what the port
writes or creates must pass the real `qemu-img check` and compare equal
(`qemu-img compare`) with the same writes done by the real qemu-io.

Without qemu-img and qemu-io the tests are skipped, or fail when CI=true.
"""

import errno
import hashlib
import json
import os
import random
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from block import block_backend, core, io
from block.block_int import (BDRV_FIX_ERRORS, BDRV_FIX_LEAKS, BDRV_O_CHECK,
                             BDRV_O_RDWR, BdrvCheckResult, BlockDriverInfo)
from block.front import open_image
from drivers.qcow2 import cache, refcount
from util.aio import aio_poll, qemu_get_aio_context
from util.iov import QEMUIOVector, qemu_iovec_init_external

KiB = 1 << 10
MiB = 1 << 20

QEMU_IMG = shutil.which("qemu-img")
QEMU_IO = shutil.which("qemu-io")


@pytest.fixture(autouse=True)
def qemu_tools():
    """The real tools are the reference: skip without them, except in CI."""
    if QEMU_IMG and QEMU_IO:
        return
    if os.environ.get("CI") == "true":
        pytest.fail("qemu-img and qemu-io are needed (Debian: qemu-utils)")
    pytest.skip("qemu-img and qemu-io are not installed")


# --- the real tools --------------------------------------------------------

def run(*cmd, check=True):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError("%s failed (%d): %s%s" % (
            " ".join(cmd), p.returncode, p.stdout, p.stderr))
    return p


def qemu_img(*args, check=True):
    return run(QEMU_IMG, *args, check=check)


def qemu_img_create(path, size, fmt="qcow2", **opts):
    """qemu-img create; opts are -o options ('_' stands for '_')."""
    args = ["create", "-q", "-f", fmt]
    if opts:
        args += ["-o", ",".join("%s=%s" % kv for kv in opts.items())]
    qemu_img(*args, str(path), str(size))


def qemu_io(path, *cmds, fmt="qcow2", check=True):
    args = [QEMU_IO, "-f", fmt]
    for c in cmds:
        args += ["-c", c]
    return run(*args, str(path), check=check)


def image_check(path):
    """`qemu-img check --output=json` as a dict (missing counts are 0)."""
    p = qemu_img("check", "--output=json", str(path), check=False)
    assert p.returncode in (0, 2, 3), p.stderr
    res = json.loads(p.stdout)
    for key in ("corruptions", "leaks", "check-errors"):
        res.setdefault(key, 0)
    return res


def assert_clean(path):
    res = image_check(path)
    assert (res["corruptions"], res["leaks"], res["check-errors"]) == \
        (0, 0, 0), res


def image_map(path):
    """`qemu-img map --output=json` of the image alone (depth 0)."""
    return [e for e in json.loads(qemu_img("map", "--output=json",
                                           str(path)).stdout)
            if e["depth"] == 0]


def raw_contents(path, tmp_path, fmt="qcow2"):
    """The guest-visible contents, as the real qemu-img reads them."""
    out = tmp_path / ("contents-%s.raw" % os.path.basename(str(path)))
    qemu_img("convert", "-f", fmt, "-O", "raw", str(path), str(out))
    data = out.read_bytes()
    out.unlink()
    return data


def assert_same_as_qemu(img_path, tmp_path, fmt="qcow2"):
    """The port reads exactly what the real qemu-img reads."""
    expected = raw_contents(img_path, tmp_path, fmt)
    with open_image(str(img_path), fmt=fmt, read_only=True) as img:
        assert img.length() == len(expected)
        got = img.read(0, len(expected))
    assert got == expected


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


# --- operations, done by the port or the real qemu-io ------------------------

def pattern(seed, length):
    """Recognisable data: every 512-byte sector differs."""
    rnd = random.Random(seed)
    sector = bytes(rnd.getrandbits(8) for _ in range(512))
    out = bytearray()
    n = 0
    while len(out) < length:
        out += bytes((b + n) & 0xff for b in sector)
        n += 1
    return bytes(out[:length])


def qemu_io_cmd(op):
    kind = op[0]
    if kind == "write":
        _, off, length, byte = op
        return "write -P %d %d %d" % (byte, off, length)
    if kind == "zero":
        _, off, length, unmap = op
        return "write -z %s%d %d" % ("-u " if unmap else "", off, length)
    if kind == "discard":
        _, off, length = op
        return "discard %d %d" % (off, length)
    assert kind == "flush"
    return "flush"


def port_op(img, op):
    kind = op[0]
    if kind == "write":
        _, off, length, byte = op
        img.write(off, bytes([byte]) * length)
    elif kind == "zero":
        _, off, length, unmap = op
        img.write_zeroes(off, length, unmap=unmap)
    elif kind == "discard":
        _, off, length = op
        img.discard(off, length)
    else:
        img.flush()


OPS = [
    ("write", 0, 4 * KiB, 0x11),
    ("write", 1000, 3000, 0x22),            # unaligned, inside a cluster
    ("write", 60 * KiB, 10 * KiB, 0x33),    # crosses a 64k cluster
    ("write", 200 * KiB, 300 * KiB, 0x44),  # many clusters
    ("flush",),
    ("zero", 256 * KiB, 64 * KiB, False),
    ("zero", 320 * KiB, 64 * KiB, True),
    ("zero", 700 * KiB, 5 * KiB, False),    # misaligned: explicit zeroes
    ("discard", 128 * KiB, 256 * KiB),
    ("write", 130 * KiB, 2 * KiB, 0x55),
    ("write", 1 * MiB - 512, 512, 0x66),    # last sector
    ("flush",),
]


# --- reading images made by the real qemu-img --------------------------------

@pytest.mark.parametrize("compat", ["0.10", "1.1"])
@pytest.mark.parametrize("cluster_size", [512, 4096, 65536, 2 * MiB])
def test_read_images_written_by_qemu_io(tmp_path, cluster_size, compat):
    path = tmp_path / "t.qcow2"
    qemu_img_create(path, 1 * MiB, cluster_size=cluster_size, compat=compat)
    qemu_io(path, *[qemu_io_cmd(op) for op in OPS])
    assert_same_as_qemu(path, tmp_path)


def test_probe(tmp_path):
    path = tmp_path / "t.qcow2"
    qemu_img_create(path, 1 * MiB)
    with open_image(str(path)) as img:
        assert img.format == "qcow2"


def test_backing_chain_of_three(tmp_path):
    base = tmp_path / "base.qcow2"
    mid = tmp_path / "mid.qcow2"
    top = tmp_path / "top.qcow2"
    # a backing file shorter than its overlay reads as zeroes past its end
    qemu_img_create(base, 512 * KiB, compat="0.10", cluster_size=4096)
    qemu_io(base, "write -P 1 0 512k")
    qemu_img_create(mid, 1 * MiB, backing_file=base, backing_fmt="qcow2",
                    cluster_size=512)
    qemu_io(mid, "write -P 2 100k 50k", "write -z 300k 64k",
            "write -P 3 900k 20k")
    qemu_img_create(top, 1 * MiB, backing_file=mid, backing_fmt="qcow2")
    qemu_io(top, "write -P 4 120k 10k", "write -P 5 500k 64k")
    assert_same_as_qemu(top, tmp_path)

    with open_image(str(top), read_only=True) as img:
        assert img.bs.backing_file == str(mid)
        assert img.bs.backing_format == "qcow2"


def test_raw_backing_file(tmp_path):
    base = tmp_path / "base.raw"
    base.write_bytes(pattern(1, 256 * KiB))
    top = tmp_path / "top.qcow2"
    qemu_img_create(top, 1 * MiB, backing_file=base, backing_fmt="raw")
    qemu_io(top, "write -P 9 64k 4k")
    assert_same_as_qemu(top, tmp_path)


@pytest.mark.parametrize("cluster_size", [512, 65536])
def test_compressed_clusters(tmp_path, cluster_size):
    raw = tmp_path / "src.raw"
    data = bytearray(1 * MiB)
    data[0:128 * KiB] = bytes(range(256)) * 512           # compressible
    data[200 * KiB:300 * KiB] = os.urandom(100 * KiB)     # not compressible
    data[700 * KiB:701 * KiB + 17] = b"x" * (KiB + 17)
    raw.write_bytes(data)
    img = tmp_path / "c.qcow2"
    qemu_img("convert", "-c", "-f", "raw", "-O", "qcow2", "-o",
             "cluster_size=%d" % cluster_size, str(raw), str(img))
    assert_same_as_qemu(img, tmp_path)

    # overwriting parts of compressed clusters copies the rest (COW)
    with open_image(str(img), fmt="qcow2") as im:
        im.write(1000, b"\xaa" * 3000)
        im.write(64 * KiB - 512, b"\xbb" * 1024)
        im.write_zeroes(0, 4 * cluster_size)
        im.discard(8 * cluster_size, 4 * cluster_size)
    data[1000:4000] = b"\xaa" * 3000
    data[64 * KiB - 512:64 * KiB + 512] = b"\xbb" * 1024
    data[0:4 * cluster_size] = bytes(4 * cluster_size)
    data[8 * cluster_size:12 * cluster_size] = bytes(4 * cluster_size)
    assert raw_contents(img, tmp_path) == bytes(data)
    assert_clean(img)


# --- writing: same result as the real qemu-io --------------------------------

@pytest.mark.parametrize("backing", [False, True])
@pytest.mark.parametrize("compat", ["0.10", "1.1"])
@pytest.mark.parametrize("cluster_size", [512, 4096, 65536])
def test_writes_match_qemu_io(tmp_path, cluster_size, compat, backing):
    opts = dict(cluster_size=cluster_size, compat=compat)
    if backing:
        base = tmp_path / "base.qcow2"
        qemu_img_create(base, 1 * MiB)
        qemu_io(base, "write -P 0x77 0 1M")
        opts.update(backing_file=base, backing_fmt="qcow2")
    ours = tmp_path / "ours.qcow2"
    theirs = tmp_path / "theirs.qcow2"
    qemu_img_create(ours, 1 * MiB, **opts)
    shutil.copy(ours, theirs)

    with open_image(str(ours), fmt="qcow2") as img:
        for op in OPS:
            port_op(img, op)
    qemu_io(theirs, *[qemu_io_cmd(op) for op in OPS])

    assert_clean(ours)
    qemu_img("compare", "-f", "qcow2", "-F", "qcow2", str(ours), str(theirs))
    if not backing:
        # With a backing file, a zero write that covers parts of two
        # clusters is written as data: 7.2's block layer sends the two
        # parts apart (two allocations), the seed's as one (one allocation
        # of two clusters), so the host offsets differ.
        assert image_map(ours) == image_map(theirs)


def test_write_across_l2_tables_and_refcount_table_growth(tmp_path):
    """512-byte clusters and 64-bit refcounts: an L2 table covers 32 KiB,
    a refcount block 32 KiB and the first refcount table 2 MiB of the
    file, so 3 MiB of data needs new L2 tables, refcount blocks and a
    bigger refcount table."""
    path = tmp_path / "t.qcow2"
    qemu_img_create(path, 8 * MiB, cluster_size=512, refcount_bits=64)
    data = pattern(7, 3 * MiB)
    with open_image(str(path), fmt="qcow2") as img:
        assert img.bs.opaque.refcount_table_size == 64
        img.write(3 * MiB + 512, data)
        assert img.read(3 * MiB + 512, len(data)) == data
        assert img.bs.opaque.refcount_table_size > 64
    assert_clean(path)
    with open_image(str(path), read_only=True) as img:
        assert img.read(3 * MiB + 512, len(data)) == data
    out = qemu_io(path, "read -P 0 0 3M", "read -P 0 7M 1M").stdout
    assert "failed" not in out and "Pattern verification" not in out


@pytest.mark.parametrize("refcount_bits", [1, 2, 4, 8, 16, 32, 64])
def test_refcount_widths(tmp_path, refcount_bits):
    path = tmp_path / "t.qcow2"
    qemu_img_create(path, 4 * MiB, cluster_size=512,
                    refcount_bits=refcount_bits)
    data = pattern(refcount_bits, 2 * MiB)
    with open_image(str(path), fmt="qcow2") as img:
        img.write(KiB, data)
        img.write_zeroes(64 * KiB, 64 * KiB, unmap=True)
        img.discard(128 * KiB, 64 * KiB)
        img.write(100 * KiB, data[:200 * KiB])
    assert_clean(path)
    expected = bytearray(4 * MiB)
    expected[KiB:KiB + len(data)] = data
    expected[64 * KiB:192 * KiB] = bytes(128 * KiB)
    expected[100 * KiB:300 * KiB] = data[:200 * KiB]
    assert raw_contents(path, tmp_path) == bytes(expected)


def test_concurrent_allocating_writes(tmp_path):
    """Requests in flight together that allocate the same clusters wait for
    each other (handle_dependencies): disjoint ones leave every byte they
    wrote, and where an allocating request overlaps one in flight, the
    later one waits and wins."""
    path = tmp_path / "t.qcow2"
    qemu_img_create(path, 4 * MiB, cluster_size=65536)
    expected = bytearray(4 * MiB)
    done = []
    requests = [
        # disjoint, several in the same clusters
        (4 * KiB, 4 * KiB), (0, 4 * KiB), (60 * KiB, 8 * KiB),
        (68 * KiB, 100 * KiB), (512 * KiB, 1 * MiB), (2 * MiB + 512, 512),
        (2 * MiB + 4 * KiB, 60 * KiB),
        # overlapping, all allocating
        (3 * MiB, 128 * KiB), (3 * MiB + 60 * KiB, 8 * KiB),
        (3 * MiB + 100 * KiB, 64 * KiB)]
    with open_image(str(path), fmt="qcow2") as img:
        qiovs = []
        for n, (off, length) in enumerate(requests):
            data = bytes([n + 1]) * length
            expected[off:off + length] = data
            qiov = QEMUIOVector()
            qemu_iovec_init_external(qiov, [memoryview(bytearray(data))], 1)
            qiovs.append(qiov)
            block_backend.blk_aio_pwritev(
                img.blk, off, qiov, 0,
                lambda opaque, ret: done.append(ret), None)
        ctx = qemu_get_aio_context()
        while len(done) < len(requests):
            aio_poll(ctx, True)
        assert done == [0] * len(requests)
    assert_clean(path)
    assert raw_contents(path, tmp_path) == bytes(expected)


# --- model-based: random operations against a bytearray ----------------------

SIZE = 256 * KiB

op_strategy = st.one_of(
    st.tuples(st.just("write"), st.integers(0, SIZE // 512 - 1),
              st.integers(1, 64), st.integers(1, 255)),
    st.tuples(st.just("zero"), st.integers(0, SIZE // 512 - 1),
              st.integers(1, 64), st.booleans()),
    st.tuples(st.just("discard"), st.integers(0, SIZE // 512 - 1),
              st.integers(1, 64)),
    st.tuples(st.just("flush")),
    st.tuples(st.just("read"), st.integers(0, SIZE // 512 - 1),
              st.integers(1, 64)),
)


def apply_model(model, op, cluster_size, backing_data, compat):
    kind = op[0]
    if kind == "write":
        _, off, length, byte = op
        model[off:off + length] = bytes([byte]) * length
    elif kind == "zero":
        _, off, length, _unmap = op
        model[off:off + length] = bytes(length)
    elif kind == "discard":
        # whole clusters inside the range are dropped and read as zeroes;
        # a v2 image with a backing file ignores discards
        _, off, length = op
        start = -(-off // cluster_size) * cluster_size
        end = (off + length) // cluster_size * cluster_size
        if start < end and (compat == "1.1" or backing_data is None):
            model[start:end] = bytes(end - start)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(op_strategy, min_size=1, max_size=25),
       cluster_size=st.sampled_from([512, 4096, 65536]),
       compat=st.sampled_from(["0.10", "1.1"]),
       with_backing=st.booleans())
def test_model(tmp_path_factory, ops, cluster_size, compat, with_backing):
    tmp = tmp_path_factory.mktemp("model")
    path = tmp / "t.qcow2"
    backing_data = None
    opts = dict(cluster_size=cluster_size, compat=compat)
    if with_backing:
        base = tmp / "base.raw"
        backing_data = pattern(cluster_size, SIZE)
        base.write_bytes(backing_data)
        opts.update(backing_file=base, backing_fmt="raw")
    qemu_img_create(path, SIZE, **opts)
    model = bytearray(backing_data if backing_data else bytes(SIZE))

    with open_image(str(path), fmt="qcow2") as img:
        for op in ops:
            if op[0] != "flush":
                op = (op[0], op[1] * 512 + (op[1] % 3) * 100,
                      op[2] * 512 - (op[2] % 2) * 300) + op[3:]
                op = (op[0], op[1], max(1, min(op[2], SIZE - op[1]))) + \
                    op[3:]
            if op[0] == "read":
                _, off, length = op
                assert img.read(off, length) == bytes(model[off:off + length])
                continue
            port_op(img, op)
            apply_model(model, op, cluster_size, backing_data, compat)
            assert img.read(0, SIZE) == bytes(model), op

    assert_clean(path)
    expected = tmp / "model.raw"
    expected.write_bytes(model)
    qemu_img("compare", "-f", "qcow2", "-F", "raw", str(path), str(expected))


# --- creation ---------------------------------------------------------------

def create(path, size, options=None, base=None, base_fmt=None):
    """bdrv_img_create through the port; the error message or None."""
    errp = [None]
    core.bdrv_img_create(str(path), "qcow2", base and str(base), base_fmt,
                         options, size, 0, errp, True)
    return errp[0].msg if errp[0] else None


@pytest.mark.parametrize("options", [
    None,
    "compat=0.10",
    "cluster_size=512",
    "cluster_size=2M",
    "cluster_size=4096,refcount_bits=1",
    "refcount_bits=64,lazy_refcounts=on",
    "compat=1.1,refcount_bits=8",
    "preallocation=metadata",
    "preallocation=metadata,cluster_size=512,compat=0.10",
])
def test_create(tmp_path, options):
    path = tmp_path / "new.qcow2"
    assert create(path, 3 * MiB + 512, options) is None
    assert_clean(path)
    info = json.loads(qemu_img("info", "--output=json", str(path)).stdout)
    assert info["virtual-size"] == 3 * MiB + 512
    opts = dict(kv.split("=") for kv in (options or "").split(",") if kv)
    assert info["cluster-size"] == {"512": 512, "4096": 4096,
                                    "2M": 2 * MiB}.get(
        opts.get("cluster_size"), 65536)
    specific = info["format-specific"]["data"]
    assert specific["compat"] == opts.get("compat", "1.1")
    assert specific["refcount-bits"] == int(opts.get("refcount_bits", 16))
    if specific["compat"] == "1.1":
        assert specific["lazy-refcounts"] == \
            (opts.get("lazy_refcounts") == "on")

    # written by the port, read back by the real qemu-io
    data = pattern(3, 300 * KiB)
    with open_image(str(path), fmt="qcow2") as img:
        img.write(100 * KiB, data)
        img.write(3 * MiB, b"\x5a" * 512)
    assert_clean(path)
    expected = bytearray(3 * MiB + 512)
    expected[100 * KiB:400 * KiB] = data
    expected[3 * MiB:] = b"\x5a" * 512
    assert raw_contents(path, tmp_path) == bytes(expected)
    out = qemu_io(path, "read -P 0x5a 3M 512", "read -P 0 0 100k").stdout
    assert "Pattern verification failed" not in out


def test_create_with_backing_file(tmp_path):
    base = tmp_path / "base.qcow2"
    qemu_img_create(base, 1 * MiB)
    qemu_io(base, "write -P 1 0 1M")
    top = tmp_path / "top.qcow2"
    assert create(top, -1, None, base, "qcow2") is None
    assert_clean(top)
    info = json.loads(qemu_img("info", "--output=json", str(top)).stdout)
    assert info["backing-filename"] == str(base)
    assert info["backing-filename-format"] == "qcow2"
    assert info["virtual-size"] == 1 * MiB
    with open_image(str(top), fmt="qcow2") as img:
        img.write(4 * KiB, b"\x02" * 512)
    expected = bytearray(b"\x01" * MiB)
    expected[4 * KiB:4 * KiB + 512] = b"\x02" * 512
    assert raw_contents(top, tmp_path) == bytes(expected)
    assert_clean(top)


@pytest.mark.parametrize("options,message", [
    ("cluster_size=1000",
     "Cluster size must be a power of two between 512 and 2048k"),
    ("cluster_size=4M",
     "Cluster size must be a power of two between 512 and 2048k"),
    ("compat=0.9", "Parameter 'version' does not accept value '0.9'"),
    ("compat=0.10,lazy_refcounts=on",
     "Lazy refcounts only supported with compatibility level 1.1 and above "
     "(use version=v3 or greater)"),
    ("refcount_bits=3",
     "Refcount width must be a power of two and may not exceed 64 bits"),
    ("refcount_bits=128",
     "Refcount width must be a power of two and may not exceed 64 bits"),
    ("compat=0.10,refcount_bits=8",
     "Different refcount widths than 16 bits require compatibility level "
     "1.1 or above (use version=v3 or greater)"),
    ("preallocation=foo",
     "Parameter 'preallocation' does not accept value 'foo'"),
])
def test_create_errors(tmp_path, options, message):
    path = tmp_path / "new.qcow2"
    assert create(path, MiB, options) == message
    p = qemu_img("create", "-f", "qcow2", "-o", options, str(path), "1M",
                 check=False)
    assert p.returncode == 1
    assert message in p.stderr


def test_create_backing_file_and_preallocation(tmp_path):
    """QEMU 7.2 allows the two together with extended L2 entries only,
    which this port does not have: 2.5's refusal."""
    base = tmp_path / "base.qcow2"
    qemu_img_create(base, MiB)
    assert create(tmp_path / "new.qcow2", MiB, "preallocation=metadata",
                  base, "qcow2") == \
        "Backing file and preallocation cannot be used at the same time"


# --- dirty and corrupt images -----------------------------------------------

def test_dirty_image_is_repaired_on_open(tmp_path):
    """qemu-io writes with lazy refcounts and dies: the image is left with
    the dirty bit and refcounts that are wrong; a read-write open repairs
    it as QEMU does, a read-only one leaves the file alone."""
    path = tmp_path / "t.qcow2"
    qemu_img_create(path, 4 * MiB, lazy_refcounts="on")
    p = qemu_io(path, "write -P 7 0 1M", "write -P 8 2M 64k", "abort",
                check=False)
    assert p.returncode != 0
    info = json.loads(qemu_img("info", "-U", "--output=json",
                               str(path)).stdout)
    assert info["dirty-flag"] is True

    before = sha256(path)
    with open_image(str(path), fmt="qcow2", read_only=True) as img:
        assert img.read(0, 4096) == b"\x07" * 4096
    assert sha256(path) == before

    with open_image(str(path), fmt="qcow2") as img:
        assert img.read(2 * MiB, 64 * KiB) == b"\x08" * 64 * KiB
    assert_clean(path)
    info = json.loads(qemu_img("info", "--output=json", str(path)).stdout)
    assert info["dirty-flag"] is False
    expected = bytearray(4 * MiB)
    expected[:MiB] = b"\x07" * MiB
    expected[2 * MiB:2 * MiB + 64 * KiB] = b"\x08" * 64 * KiB
    assert raw_contents(path, tmp_path) == bytes(expected)


def test_lazy_refcounts_crash_leaves_dirty_image(tmp_path):
    """With lazy refcounts the port sets the dirty bit before the first L2
    update; a copy taken after a flush (a crash) is repaired on open."""
    path = tmp_path / "t.qcow2"
    crashed = tmp_path / "crashed.qcow2"
    qemu_img_create(path, 4 * MiB, lazy_refcounts="on")
    with open_image(str(path), fmt="qcow2") as img:
        img.write(0, b"\x03" * 300 * KiB)
        img.flush()
        shutil.copy(path, crashed)
    assert_clean(path)
    info = json.loads(qemu_img("info", "--output=json",
                               str(crashed)).stdout)
    assert info["dirty-flag"] is True
    with open_image(str(crashed), fmt="qcow2") as img:
        assert img.read(0, 300 * KiB) == b"\x03" * 300 * KiB
    assert_clean(crashed)


def test_corrupt_image(tmp_path):
    path = tmp_path / "t.qcow2"
    qemu_img_create(path, MiB)
    qemu_io(path, "write -P 1 0 64k")
    # set the corrupt bit
    with open(path, "r+b") as f:
        f.seek(72)
        f.write((2).to_bytes(8, "big"))
    before = sha256(path)

    with pytest.raises(OSError) as e:
        open_image(str(path), fmt="qcow2")
    assert e.value.strerror == \
        "qcow2: Image is corrupt; cannot be opened read/write"
    p = qemu_io(path, "read 0 512", check=False)
    assert "qcow2: Image is corrupt; cannot be opened read/write" in p.stderr
    assert sha256(path) == before

    with open_image(str(path), fmt="qcow2", read_only=True) as img:
        assert img.read(0, 512) == b"\x01" * 512
    assert sha256(path) == before

    # a check with repair may open it read-write, and clears the bit
    pbs, errp = [None], [None]
    assert core.bdrv_open(pbs, str(path), None, {"driver": "qcow2"},
                          BDRV_O_RDWR | BDRV_O_CHECK, errp) == 0, errp
    res = BdrvCheckResult()
    assert core.bdrv_check(pbs[0], res, BDRV_FIX_ERRORS | BDRV_FIX_LEAKS) \
        == 0
    core.bdrv_unref(pbs[0])
    info = json.loads(qemu_img("info", "--output=json", str(path)).stdout)
    assert info["format-specific"]["data"]["corrupt"] is False
    assert_clean(path)


# --- check and repair -------------------------------------------------------

def port_check(path, fix=0):
    flags = BDRV_O_CHECK | (BDRV_O_RDWR if fix else 0)
    pbs, errp = [None], [None]
    assert core.bdrv_open(pbs, str(path), None, {"driver": "qcow2"}, flags,
                          errp) == 0, errp[0] and errp[0].msg
    res = BdrvCheckResult()
    ret = core.bdrv_check(pbs[0], res, fix)
    core.bdrv_unref(pbs[0])
    assert ret == 0
    return res


def leak_clusters(path, count):
    """Allocate clusters that nothing references (and write them, as the
    check only looks at clusters inside the image file)."""
    with open_image(str(path), fmt="qcow2") as img:
        s = img.bs.opaque
        size = count * s.cluster_size
        offset = refcount.qcow2_alloc_clusters(img.bs, size)
        assert offset > 0
        assert io.bdrv_pwrite(img.bs.file.bs, offset, bytes(size),
                              size) == size
        assert cache.qcow2_cache_flush(img.bs, s.refcount_block_cache) == 0


def test_check_and_repair_leaks(tmp_path):
    path = tmp_path / "t.qcow2"
    qemu_img_create(path, 4 * MiB, cluster_size=4096)
    qemu_io(path, "write -P 1 0 200k")
    leak_clusters(path, 5)
    theirs = image_check(path)
    assert theirs["leaks"] == 5 and theirs["corruptions"] == 0

    res = port_check(path)
    assert (res.leaks, res.corruptions, res.check_errors) == (5, 0, 0)
    assert res.image_end_offset == theirs["image-end-offset"]
    assert res.bfi.allocated_clusters == theirs["allocated-clusters"]
    assert res.bfi.total_clusters == theirs["total-clusters"]
    assert res.bfi.fragmented_clusters == \
        theirs.get("fragmented-clusters", 0)

    res = port_check(path, BDRV_FIX_LEAKS)
    assert (res.leaks_fixed, res.leaks, res.corruptions) == (5, 0, 0)
    assert_clean(path)
    out = qemu_io(path, "read -P 1 0 200k").stdout
    assert "Pattern verification failed" not in out


def test_check_and_repair_corruption(tmp_path):
    """A data cluster whose refcount is 0: a corruption, repaired by
    rebuilding the refcount structure (-r all)."""
    path = tmp_path / "t.qcow2"
    qemu_img_create(path, 4 * MiB)
    qemu_io(path, "write -P 1 0 128k")
    with open_image(str(path), fmt="qcow2", read_only=True) as img:
        s = img.bs.opaque
        refblock_offset = s.refcount_table[0]
        data_cluster = s.l1_table[0]  # the L2 table is referenced too
        l2 = data_cluster & 0x00fffffffffffe00
    # zero the refcount of the L2 table's cluster (16-bit entries)
    with open(path, "r+b") as f:
        f.seek(refblock_offset + 2 * (l2 >> 16))
        f.write(b"\0\0")
    theirs = image_check(path)
    assert theirs["corruptions"] > 0

    res = port_check(path)
    assert res.corruptions == theirs["corruptions"]
    assert res.leaks == theirs["leaks"]

    res = port_check(path, BDRV_FIX_ERRORS | BDRV_FIX_LEAKS)
    assert res.corruptions == 0 and res.corruptions_fixed > 0
    assert_clean(path)
    out = qemu_io(path, "read -P 1 0 128k").stdout
    assert "Pattern verification failed" not in out


# --- internal snapshots (made by the real qemu-img) --------------------------

def test_internal_snapshots(tmp_path):
    """Clusters and L2 tables shared with a snapshot have refcount 2: a
    write copies them (COW of data clusters and of L2 tables) and the
    snapshot keeps its data."""
    path = tmp_path / "t.qcow2"
    qemu_img_create(path, 2 * MiB, cluster_size=4096)
    qemu_io(path, "write -P 1 0 1M")
    qemu_img("snapshot", "-c", "snap1", str(path))
    qemu_io(path, "write -P 2 512k 4k")
    qemu_img("snapshot", "-c", "snap2", str(path))

    with open_image(str(path), fmt="qcow2") as img:
        sn_tab = [None]
        assert img.bs.drv.bdrv_snapshot_list(img.bs, sn_tab) == 2
        assert [(sn.id_str, sn.name) for sn in sn_tab[0]] == \
            [("1", "snap1"), ("2", "snap2")]
        img.write(0, b"\x03" * 8192)
        img.write(512 * KiB + 1000, b"\x04" * 100)
        img.write_zeroes(256 * KiB, 64 * KiB)
        img.discard(300 * KiB, 64 * KiB)
        img.write(1536 * KiB, b"\x05" * 4096)
    assert_clean(path)
    res = port_check(path)
    theirs = image_check(path)
    assert (res.corruptions, res.leaks, res.image_end_offset) == \
        (0, 0, theirs["image-end-offset"])

    expected = bytearray(2 * MiB)
    expected[:MiB] = b"\x01" * MiB
    snap1 = bytes(expected)
    expected[512 * KiB:516 * KiB] = b"\x02" * 4096
    snap2 = bytes(expected)
    expected[:8192] = b"\x03" * 8192
    expected[512 * KiB + 1000:512 * KiB + 1100] = b"\x04" * 100
    expected[256 * KiB:364 * KiB] = bytes(108 * KiB)
    expected[1536 * KiB:1540 * KiB] = b"\x05" * 4096
    assert raw_contents(path, tmp_path) == bytes(expected)
    for name, contents in (("snap1", snap1), ("snap2", snap2)):
        out = tmp_path / (name + ".raw")
        qemu_img("convert", "-l", "snapshot.name=" + name, "-O", "raw",
                 str(path), str(out))
        assert out.read_bytes() == contents


# --- the rest of the driver interface ----------------------------------------

def test_get_info_and_specific_info(tmp_path):
    path = tmp_path / "t.qcow2"
    qemu_img_create(path, 5 * MiB, cluster_size=4096, lazy_refcounts="on",
                    refcount_bits=8)
    with open_image(str(path), fmt="qcow2", read_only=True) as img:
        bdi = BlockDriverInfo()
        assert core.bdrv_get_info(img.bs, bdi) == 0
        assert bdi.cluster_size == 4096
        # the VM state follows the L1 entries of the disk: 2 MiB each
        assert bdi.vm_state_offset == 6 * MiB
        assert bdi.unallocated_blocks_are_zero
        assert bdi.can_write_zeroes_with_unmap
        info = img.bs.drv.bdrv_get_specific_info(img.bs)
    theirs = json.loads(qemu_img("info", "--output=json",
                                 str(path)).stdout)["format-specific"]
    assert info == theirs


def test_vmstate(tmp_path):
    path = tmp_path / "t.qcow2"
    qemu_img_create(path, 1 * MiB)
    state = pattern(5, 200 * KiB)
    with open_image(str(path), fmt="qcow2") as img:
        img.write(0, b"\x01" * 4096)
        assert block_backend.blk_save_vmstate(img.blk, state, 1000,
                                              len(state)) == len(state)
        assert img.length() == MiB
        buf = bytearray(len(state))
        assert block_backend.blk_load_vmstate(img.blk, buf, 1000,
                                              len(buf)) == len(buf)
        assert buf == state
    assert_clean(path)
    with open_image(str(path), fmt="qcow2", read_only=True) as img:
        buf = bytearray(1000)
        assert block_backend.blk_load_vmstate(img.blk, buf, 100000,
                                              1000) == 1000
        assert buf == state[99000:100000]
    expected = bytearray(MiB)
    expected[:4096] = b"\x01" * 4096
    assert raw_contents(path, tmp_path) == bytes(expected)


def test_write_compressed(tmp_path):
    path = tmp_path / "t.qcow2"
    qemu_img_create(path, 1 * MiB + 4 * KiB, cluster_size=65536)
    compressible = bytes(range(256)) * 256
    random_data = os.urandom(65536)
    with open_image(str(path), fmt="qcow2") as img:
        blk = img.blk
        assert block_backend.blk_write_compressed(blk, 0, compressible,
                                                  128) == 0
        assert block_backend.blk_write_compressed(blk, 128, random_data,
                                                  128) == 0
        # the last, partial cluster is padded with zeroes
        assert block_backend.blk_write_compressed(blk, 2048, b"\x09" * 4096,
                                                  8) == 0
        # a cluster allocated already cannot be compressed
        assert block_backend.blk_write_compressed(blk, 0, compressible,
                                                  128) == -errno.EIO
        assert block_backend.blk_write_compressed(blk, 0, b"", 0) == 0
        assert img.read(0, 65536) == compressible
    assert_clean(path)
    info = json.loads(qemu_img("check", "--output=json", str(path)).stdout)
    assert info["compressed-clusters"] == 2
    expected = bytearray(MiB + 4 * KiB)
    expected[:65536] = compressible
    expected[65536:131072] = random_data
    expected[MiB:] = b"\x09" * 4096
    assert raw_contents(path, tmp_path) == bytes(expected)


def test_truncate_grows(tmp_path):
    path = tmp_path / "t.qcow2"
    qemu_img_create(path, 1 * MiB, cluster_size=512)
    with open_image(str(path), fmt="qcow2") as img:
        img.write(MiB - 512, b"\x01" * 512)
        errp = [None]
        assert core.bdrv_truncate(img.bs, 64 * MiB, "off", errp) == 0
        assert img.length() == 64 * MiB
        img.write(63 * MiB, b"\x02" * 512)
    assert_clean(path)
    info = json.loads(qemu_img("info", "--output=json", str(path)).stdout)
    assert info["virtual-size"] == 64 * MiB
    out = qemu_io(path, "read -P 1 %d 512" % (MiB - 512),
                 "read -P 2 63M 512").stdout
    assert "Pattern verification failed" not in out


def test_block_status_matches_qemu_img_map(tmp_path):
    path = tmp_path / "t.qcow2"
    qemu_img_create(path, 1 * MiB)
    with open_image(str(path), fmt="qcow2") as img:
        for op in OPS:
            port_op(img, op)
    theirs = json.loads(qemu_img("map", "--output=json", str(path)).stdout)
    with open_image(str(path), fmt="qcow2", read_only=True) as img:
        for ext in theirs:
            st_ = img.block_status(ext["start"], ext["length"])
            assert st_.offset == ext["start"]
            assert st_.length <= ext["length"]
            assert st_.data == ext["data"], ext
            assert st_.zero == ext["zero"], ext
            if ext["data"]:
                assert st_.host_offset == ext["offset"]


def test_discard_passes_to_file(tmp_path):
    """pass-discard-request (on when opened with discard=unmap) punches
    freed clusters out of the image file."""
    path = tmp_path / "t.qcow2"
    qemu_img_create(path, 4 * MiB)
    qemu_io(path, "write -P 1 0 4M")
    blocks = os.stat(path).st_blocks
    with open_image(str(path), fmt="qcow2", pass_discard_request=False) as im:
        im.discard(0, MiB)
    # nothing punched: the file keeps (about: the filesystem may move its
    # own allocation a little) its blocks
    assert os.stat(path).st_blocks > blocks - MiB // 512 // 2
    with open_image(str(path), fmt="qcow2") as img:
        img.discard(MiB, 2 * MiB)
    # 2 MiB punched out, less what metadata updates may have allocated
    assert os.stat(path).st_blocks <= blocks - 2 * MiB // 512 + 64
    assert_clean(path)
    expected = bytearray(4 * MiB)
    expected[3 * MiB:] = b"\x01" * MiB
    assert raw_contents(path, tmp_path) == bytes(expected)


def test_options(tmp_path):
    path = tmp_path / "t.qcow2"
    qemu_img_create(path, 1 * MiB)
    with open_image(str(path), fmt="qcow2", overlap_check="all",
                    l2_cache_size=2 * 65536, cache_clean_interval=1) as img:
        s = img.bs.opaque
        assert s.l2_table_cache.size == 2
        assert s.refcount_block_cache.size == 4
        img.write(0, b"\x01" * 300 * KiB)
    for opts, message in [
        (dict(overlap_check="foo"),
         "Unsupported value 'foo' for qcow2 option 'overlap-check'. "
         "Allowed are any of the following: none, constant, cached, all"),
        (dict(cache_size=100, l2_cache_size=200),
         "l2-cache-size may not exceed cache-size"),
    ]:
        with pytest.raises(OSError) as e:
            open_image(str(path), fmt="qcow2", **opts)
        assert e.value.strerror == message
    assert_clean(path)


def test_overlap_check_stops_metadata_overwrite(tmp_path):
    """A data cluster pointing into the L1 table: the write is refused,
    the image marked corrupt (QEMU's "Preventing invalid write")."""
    path = tmp_path / "t.qcow2"
    qemu_img_create(path, 1 * MiB)
    qemu_io(path, "write -P 1 0 64k")
    with open_image(str(path), fmt="qcow2", read_only=True) as img:
        s = img.bs.opaque
        l2_offset = s.l1_table[0] & 0x00fffffffffffe00
        l1_offset = s.l1_table_offset
    with open(path, "r+b") as f:
        f.seek(l2_offset)
        f.write(((1 << 63) | l1_offset).to_bytes(8, "big"))
    with open_image(str(path), fmt="qcow2") as img:
        with pytest.raises(OSError) as e:
            img.write(0, b"\x02" * 512)
        assert e.value.errno == errno.EIO
    info = json.loads(qemu_img("info", "--output=json", str(path)).stdout)
    assert info["format-specific"]["data"]["corrupt"] is True


# --- I/O errors (iotest 026's events, through blkdebug) ----------------------

@pytest.mark.parametrize("once", ["on", "off"])
@pytest.mark.parametrize("event", [
    "l1_update", "l2_update", "l2_alloc_write", "write_aio", "cow_write",
    "refblock_update_part", "refblock_alloc", "refblock_alloc_hookup",
    "refblock_alloc_write", "cluster_alloc", "cluster_free",
    "l1_grow_alloc_table", "l1_grow_write_table", "l1_grow_activate_table"])
def test_error_injection(tmp_path, event, once):
    """An I/O error at any step of an allocating write or a resize fails
    the request and may leak clusters, but never corrupts the image."""
    path = tmp_path / "t.qcow2"
    # small clusters and refcount blocks, but COW needs writes smaller
    # than a cluster
    qemu_img_create(path, MiB, refcount_bits=64,
                    cluster_size=4096 if event == "cow_write" else 512)
    conf = tmp_path / "bd.conf"
    conf.write_text('[inject-error]\nevent = "%s"\nerrno = "5"\n'
                    'once = "%s"\n' % (event, once))
    results = []
    with open_image("blkdebug:%s:%s" % (conf, path), fmt="qcow2") as img:
        for op in [lambda: img.write(0, b"\x5a" * 128 * KiB),
                   lambda: img.write(200 * KiB, b"\xa5" * KiB),
                   img.flush,
                   lambda: block_backend.blk_truncate(img.blk, 64 * MiB),
                   lambda: img.write(63 * MiB, b"\x01" * 512),
                   img.flush]:
            try:
                ret = op()
                results.append(ret is None or ret >= 0)
            except OSError as e:
                assert e.errno == errno.EIO
                results.append(False)
    assert not all(results)
    res = image_check(path)
    assert (res["corruptions"], res["check-errors"]) == (0, 0), res
    # written and flushed: it must be there
    with open_image(str(path), fmt="qcow2") as img:
        if results[0] and results[2]:
            assert img.read(0, 128 * KiB) == b"\x5a" * 128 * KiB


def test_cache_lru(tmp_path):
    """A miss replaces the unreferenced table put back longest ago; the
    clean timer drops tables unused since its last run."""
    path = tmp_path / "t.qcow2"
    qemu_img_create(path, MiB, cluster_size=4096)
    with open_image(str(path), fmt="qcow2", l2_cache_size=3 * 4096) as img:
        bs = img.bs
        c = bs.opaque.l2_table_cache
        assert c.size == 3

        def get(offset):
            table = [None]
            assert cache.qcow2_cache_get(bs, c, offset, table) == 0
            return table

        a, b, d = get(0x1000), get(0x2000), get(0x3000)
        cache.qcow2_cache_put(bs, c, b)
        cache.qcow2_cache_put(bs, c, a)
        cache.qcow2_cache_put(bs, c, d)
        e = get(0x4000)                 # replaces 0x2000, put first
        assert set(c.lookup) == {0x1000, 0x3000, 0x4000}
        cache.qcow2_cache_put(bs, c, e)
        a = get(0x1000)                 # a hit
        get_e = get(0x5000)             # replaces 0x3000
        assert set(c.lookup) == {0x1000, 0x4000, 0x5000}
        cache.qcow2_cache_put(bs, c, a)
        cache.qcow2_cache_put(bs, c, get_e)

        # the timer's first run keeps everything: all was used since 0
        cache.qcow2_cache_clean_unused(bs, c)
        assert set(c.lookup) == {0x1000, 0x4000, 0x5000}
        a = get(0x1000)
        cache.qcow2_cache_put(bs, c, a)
        cache.qcow2_cache_clean_unused(bs, c)
        assert set(c.lookup) == {0x1000}
        b = get(0x2000)                 # takes a cleaned entry
        assert set(c.lookup) == {0x1000, 0x2000}
        cache.qcow2_cache_put(bs, c, b)
