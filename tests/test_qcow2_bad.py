"""Damaged qcow2 images: the port must give QEMU's error where QEMU (the
installed qemu-io 7.2) has one, or a clear one, and never a traceback, a
hang, or a write to an image it refuses to open.

Every case of the corpus is a mutation of a small image made by the real
qemu-img; the same commands run through the real qemu-io and through the
port.  A hypothesis fuzz run of header and metadata parsing closes the file.
"""

import errno
import hashlib
import signal
import struct
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from block.front import open_image
from test_qcow2 import KiB, MiB, qemu_img_create, qemu_io  # noqa: F401
from test_qcow2 import qemu_tools  # noqa: F401 (autouse fixture)

# Where the base image keeps its tables (checked in base_image)
L1_OFFSET = 0x30000
L2_OFFSET = 0x40000
REFTABLE_OFFSET = 0x10000
REFBLOCK_OFFSET = 0x20000

COMMANDS = [("read", 0, 64 * KiB), ("write", 0, 512),
            ("write", 512 * KiB, 4 * KiB)]


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@contextmanager
def time_limit(seconds):
    """Turn a hang into a failure."""
    def on_alarm(signum, frame):
        raise TimeoutError("hung for %d s" % seconds)
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def base_image(tmp_path_factory):
    path = tmp_path_factory.mktemp("bad") / "base.qcow2"
    qemu_img_create(path, MiB)
    qemu_io(path, "write -P 0x11 0 64k")
    data = open(path, "rb").read()
    assert struct.unpack_from(">Q", data, 40)[0] == L1_OFFSET
    assert struct.unpack_from(">Q", data, 48)[0] == REFTABLE_OFFSET
    assert struct.unpack_from(">Q", data, L1_OFFSET)[0] & ~(1 << 63) == \
        L2_OFFSET
    return data


def put(fmt, offset, value):
    def mutate(d):
        struct.pack_into(fmt, d, offset, value)
    return mutate


def both(*mutations):
    def mutate(d):
        for m in mutations:
            m(d)
    return mutate


def truncate(length):
    def mutate(d):
        del d[length:]
    return mutate


COPIED = 1 << 63

# name: (mutation, what the port does where it differs from qemu-io: its
# open error, or which commands succeed)
CORPUS = {
    "truncated_20": (truncate(20), None),
    "truncated_80": (truncate(80), None),
    "empty": (truncate(0), None),
    "bad_magic": (put(">I", 0, 0x12345678), None),
    "version_1": (put(">I", 4, 1), None),
    "version_4": (put(">I", 4, 4), None),
    "cluster_bits_0": (put(">I", 20, 0), None),
    "cluster_bits_8": (put(">I", 20, 8), None),
    "cluster_bits_22": (put(">I", 20, 22), None),
    "cluster_bits_huge": (put(">I", 20, 0xffffffff), None),
    "header_length_short": (put(">I", 100, 80), None),
    "header_length_huge": (put(">I", 100, 0x20000), None),
    "backing_file_offset_huge": (put(">Q", 8, 0x20000), None),
    "refcount_order_7": (put(">I", 96, 7), None),
    "l1_past_eof": (put(">Q", 40, 1 << 40), None),
    "l1_overlaps_header": (put(">Q", 40, 0), None),
    "l1_unaligned": (put(">Q", 40, L1_OFFSET + 0x200), None),
    "l1_too_large": (put(">I", 36, 0x1000000), None),
    "l1_too_small": (both(put(">I", 36, 0), put(">Q", 24, 1 << 40)), None),
    "l1_entry_past_eof": (put(">Q", L1_OFFSET, (1 << 40) | COPIED), None),
    "l1_entry_unaligned": (put(">Q", L1_OFFSET, 0x40200 | COPIED), None),
    "l2_entry_past_eof": (put(">Q", L2_OFFSET, (1 << 40) | COPIED), None),
    "l2_entry_unaligned": (put(">Q", L2_OFFSET, 0x50200 | COPIED), None),
    "l2_entry_into_header": (put(">Q", L2_OFFSET, COPIED), None),
    "l2_entry_into_l1": (put(">Q", L2_OFFSET, L1_OFFSET | COPIED), None),
    # allocating with a lost refcount table: after the new refblock the
    # search for free clusters retries the same ones, and the write fails
    # as in 7.2
    "refcount_table_past_eof": (put(">Q", 48, 1 << 40), None),
    "refcount_table_overlaps_header": (put(">Q", 48, 0), None),
    "refcount_table_overlaps_l1": (put(">Q", 48, L1_OFFSET), None),
    "refcount_table_too_large": (put(">I", 56, 0x1000000), None),
    "refcount_table_empty": (put(">I", 56, 0), None),
    "refblock_unaligned": (put(">Q", REFTABLE_OFFSET, REFBLOCK_OFFSET + 8),
                           None),
    "refblock_zeroed": (lambda d: d.__setitem__(
        slice(REFBLOCK_OFFSET, REFBLOCK_OFFSET + 64), bytes(64)), None),
    "snapshot_table_past_eof": (both(put(">I", 60, 1),
                                     put(">Q", 64, 1 << 40)), None),
    "too_many_snapshots": (put(">I", 60, 70000), None),
    "unknown_incompatible_feature": (put(">Q", 72, 1 << 20), None),
    # features of later QEMU versions are refused (7.2 reads them)
    "extended_l2": (put(">Q", 72, 1 << 4),
                    "Unsupported qcow2 feature(s): extended L2 entries"),
    "external_data_file": (put(">Q", 72, 1 << 2),
                           "Unsupported qcow2 feature(s): external data "
                           "file"),
    "compression_type_zstd": (both(put(">Q", 72, 1 << 3), put(">B", 104, 1)),
                              "Unsupported qcow2 feature(s): compression "
                              "type"),
    "compression_type_without_bit": (put(">B", 104, 1), None),
    "unknown_autoclear_feature": (put(">Q", 88, 1 << 5), None),
    # 7.2 asks for the key; this port has no cipher
    "encrypted_aes": (put(">I", 32, 1), "Unsupported encryption method: 1"),
    "encrypted_luks": (put(">I", 32, 2), "Unsupported encryption method: 2"),
    # the first header extension follows the 112-byte header
    "extension_too_large": (both(put(">I", 112, 0x1234),
                                 put(">I", 116, 0x10000)), None),
    "backing_format_too_long": (both(put(">I", 112, 0xE2792ACA),
                                     put(">I", 116, 40)), None),
}


def qemu_io_outcome(path):
    """What the real qemu-io does: the open error, or the list of
    commands that succeeded."""
    p = qemu_io(path, *["%s 0x%x 0x%x" % c for c in COMMANDS], check=False)
    prefix = "qemu-io: can't open device %s: " % path
    for line in p.stderr.splitlines():
        if line.startswith(prefix):
            return line[len(prefix):], None
    results = []
    for line in p.stdout.splitlines():
        if "failed: " in line:
            results.append(False)
        elif line.startswith(("read ", "wrote ")):
            results.append(True)
    return None, results


def port_outcome(path):
    try:
        img = open_image(str(path), fmt="qcow2")
    except OSError as e:
        return e.strerror, None
    results = []
    with img:
        for kind, offset, length in COMMANDS:
            try:
                if kind == "read":
                    img.read(offset, length)
                else:
                    img.write(offset, b"\x22" * length)
                results.append(True)
            except OSError:
                results.append(False)
    return None, results


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_damaged_image(base_image, tmp_path, name):
    mutate, port_differs = CORPUS[name]
    data = bytearray(base_image)
    mutate(data)
    theirs = tmp_path / "theirs.qcow2"
    ours = tmp_path / "ours.qcow2"
    theirs.write_bytes(data)
    ours.write_bytes(data)

    their_error, their_results = qemu_io_outcome(theirs)
    before = sha256(ours)
    with time_limit(20):
        our_error, our_results = port_outcome(ours)

    if isinstance(port_differs, str):
        assert our_error == port_differs
    elif port_differs is not None:
        assert our_error is None and our_results == port_differs
    else:
        assert our_error == their_error
        assert our_results == their_results
    if our_error is not None:
        assert sha256(ours) == before

    # a read-only open never writes
    ours.write_bytes(data)
    with time_limit(20):
        try:
            with open_image(str(ours), fmt="qcow2", read_only=True) as img:
                try:
                    img.read(0, MiB)
                except OSError as e:
                    assert e.errno == errno.EIO
        except OSError:
            pass
    assert sha256(ours) == before


def test_backing_file_loop(tmp_path):
    a = tmp_path / "a.qcow2"
    b = tmp_path / "b.qcow2"
    qemu_img_create(a, MiB)
    qemu_img_create(b, MiB, backing_file=a, backing_fmt="qcow2")
    with open(a, "r+b") as f:
        # make a's backing file b: the name goes after the header
        name = str(b).encode()
        f.seek(8)
        f.write(struct.pack(">QI", 0x200, len(name)))
        f.seek(0x200)
        f.write(name)
    before = sha256(a)
    with time_limit(20):
        with pytest.raises(OSError, match="creates an infinite loop"):
            open_image(str(a), fmt="qcow2")
    assert sha256(a) == before


# --- fuzzing ----------------------------------------------------------------

@pytest.fixture(scope="module")
def fuzz_base(tmp_path_factory):
    """A small image with every kind of metadata: 512-byte clusters so
    that the tables are small, two L2 tables, a backing file name."""
    d = tmp_path_factory.mktemp("fuzz")
    path = d / "fuzz.qcow2"
    qemu_img_create(path, 256 * KiB, cluster_size=512)
    qemu_io(path, "write -P 1 0 4k", "write -P 2 40k 2k",
            "write -z 100k 1k", "write -P 3 200k 512")
    return open(path, "rb").read()


# header, and the first clusters where the tables sit
FUZZ_REGION = 8 * 512


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, FUZZ_REGION - 1),
                                st.binary(min_size=1, max_size=8)),
                      min_size=1, max_size=6),
       write=st.booleans())
def test_fuzz_metadata(fuzz_base, tmp_path_factory, edits, write):
    data = bytearray(fuzz_base)
    for offset, chunk in edits:
        data[offset:offset + len(chunk)] = chunk
    path = tmp_path_factory.mktemp("f") / "f.qcow2"
    path.write_bytes(data)
    before = sha256(path)

    opened = False
    with time_limit(20):
        try:
            img = open_image(str(path), fmt="qcow2", read_only=not write)
            opened = True
        except OSError:
            pass
        if opened:
            with img:
                for offset in range(0, 256 * KiB, 64 * KiB):
                    try:
                        img.read(offset, 64 * KiB)
                    except OSError as e:
                        assert e.errno in (errno.EIO, errno.ENOMEDIUM)
                if write:
                    for offset in (0, 41 * KiB, 255 * KiB):
                        try:
                            img.write(offset, b"\x44" * 1024)
                        except OSError as e:
                            assert e.errno in (errno.EIO, errno.ENOMEDIUM,
                                               errno.EFBIG, errno.ENOSPC,
                                               errno.EINVAL)
    if not opened or not write:
        assert sha256(path) == before
