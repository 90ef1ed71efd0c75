"""tests/test-iov.c (the /basic/iov cases), run with both backends of
util/iov.py, plus QEMUIOVector, qemu_memalign, buffer_is_zero, and
hypothesis tests that the C helper and the Python fallback agree."""

from __future__ import annotations

import errno
import os
import random
import select
import socket
import subprocess
import sys
import threading

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from util import iov as iov_mod
from util.iov import (IOVList, QEMUIOVector, buffer_is_zero, iov_base_address,
                      iov_copy, iov_discard_back, iov_discard_front,
                      iov_from_buf, iov_memset, iov_recv, iov_send,
                      iov_size, iov_to_buf, qemu_iovec_add, qemu_iovec_clone,
                      qemu_iovec_compare, qemu_iovec_concat,
                      qemu_iovec_concat_iov, qemu_iovec_destroy,
                      qemu_iovec_discard_back, qemu_iovec_from_buf,
                      qemu_iovec_init, qemu_iovec_init_external,
                      qemu_iovec_is_zero, qemu_iovec_memset,
                      qemu_iovec_reset, qemu_iovec_to_buf, qemu_memalign,
                      qemu_try_memalign, set_iov_backend)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def use_backend(name: str) -> None:
    """Switch util.iov to @name; the C helper missing is a failure under CI
    (CI=true), a skip elsewhere."""
    try:
        set_iov_backend(name)
    except ImportError as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the C helper must be built under CI: {e}")
        pytest.skip(f"C helper not built ({e})")


@pytest.fixture(params=["python", "c"])
def backend(request):
    saved = iov_mod.IOV_BACKEND
    use_backend(request.param)
    yield request.param
    set_iov_backend(saved)


@pytest.fixture
def c_backend():
    saved = iov_mod.IOV_BACKEND
    use_backend("c")
    yield
    set_iov_backend(saved)


# test-iov.c

def iov_random(rng: random.Random) -> IOVList:
    """A randomly-sized vector of random-length buffers (an IOVList, so that
    the C backend does the work in C from the second operation on)."""
    niov = rng.randrange(3, 8)
    return IOVList(memoryview(bytearray(rng.randrange(5, 20)))
                   for _ in range(niov))


def check_iov_bytes(iov: list, niov: int, offset: int, bytes: int) -> None:
    """test_iov_bytes(): the bytes at [offset, offset+bytes) hold their
    position (mod 256), all others 0xff."""
    data = b"".join(iov[:niov])
    pattern = bytes_pattern(len(data))
    end = offset + bytes
    expected = (b"\xff" * offset + pattern[offset:end]
                + b"\xff" * (len(data) - end))
    assert data == expected


def bytes_pattern(sz: int) -> bytes:
    return bytes(i & 255 for i in range(sz))


def to_from_buf_1(rng: random.Random) -> None:
    iov = iov_random(rng)
    niov = len(iov)
    sz = iov_size(iov, niov)

    # Flat buffers with guard bytes on both sides.
    ibuf_mem = bytearray(b"aaaa" + bytes_pattern(sz) + b"bbbb")
    ibuf = memoryview(ibuf_mem)[4:4 + sz]
    obuf_mem = bytearray(b"xxxx" + bytes(sz) + b"yyyy")
    obuf = memoryview(obuf_mem)[4:4 + sz]

    for i in range(sz + 1):
        # offset i in [0..sz] up to the end; for i == sz nothing is done
        n = iov_memset(iov, niov, 0, 0xff, -1)
        assert n == sz

        n = iov_from_buf(iov, niov, i, ibuf[i:], -1)
        assert n == sz - i

        obuf[i:] = bytes(sz - i)
        n = iov_to_buf(iov, niov, i, obuf[i:], -1)
        assert n == sz - i

        assert ibuf == obuf

        # just one byte
        n = iov_to_buf(iov, niov, i, obuf[i:], 1)
        assert n == (i < sz)
        if n:
            assert obuf[i] == (i & 255)

        for j in range(i, sz + 1):
            # bytes [i..j), for j in [i..sz]
            n = iov_memset(iov, niov, 0, 0xff, -1)
            assert n == sz

            n = iov_from_buf(iov, niov, i, ibuf[i:], j - i)
            assert n == j - i

            obuf[i:j] = bytes(j - i)

            n = iov_to_buf(iov, niov, i, obuf[i:], j - i)
            assert n == j - i

            assert ibuf == obuf

            check_iov_bytes(iov, niov, i, j - i)

    assert ibuf_mem[:4] == b"aaaa" and ibuf_mem[4 + sz:] == b"bbbb"
    assert obuf_mem[:4] == b"xxxx" and obuf_mem[4 + sz:] == b"yyyy"


# /basic/iov/from-to-buf
def test_from_to_buf(backend):
    rng = random.Random(0x10F)
    for _ in range(4):
        to_from_buf_1(rng)


def _io_writer(sock: socket.socket, iov: list, niov: int, sz: int,
               rng: random.Random, errors: list) -> None:
    try:
        fd = sock.fileno()
        siov = list(iov)
        for i in range(sz + 1):
            for j in range(i, sz + 1):
                k = i
                while True:
                    s = rng.randrange(0, j - k + 1)
                    r = iov_send(fd, iov, niov, k, s)
                    assert all(a is b for a, b in zip(iov, siov))
                    if r >= 0:
                        k += r
                    elif r == -errno.EAGAIN:
                        select.select([], [fd], [], 10)
                        continue
                    else:
                        raise OSError(-r, "send")
                    if k >= j:
                        break
    except BaseException as e:      # reported by the reader's thread
        errors.append(e)
    finally:
        sock.close()


# /basic/iov/io
def test_io(backend):
    """The writer is a thread rather than a forked child; it sends from its
    own copy of the vector, as the child of fork() does.  The random sleeps
    of the C test only spread the timing and are left out."""
    rng = random.Random(0x10)
    iov = iov_random(rng)
    niov = len(iov)
    sz = iov_size(iov, niov)
    iov_from_buf(iov, niov, 0, bytes_pattern(sz), sz)
    siov = list(iov)
    writer_iov = IOVList(memoryview(bytearray(m)) for m in iov)

    reader, writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    writer.setblocking(False)
    writer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF,
                      rng.randrange(sz // 2, sz))
    reader.setblocking(False)
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF,
                      rng.randrange(sz // 2, sz))
    errors: list = []
    thread = threading.Thread(
        target=_io_writer,
        args=(writer, writer_iov, niov, sz, random.Random(0x11), errors))
    thread.start()
    try:
        fd = reader.fileno()
        for i in range(sz + 1):
            for j in range(i, sz + 1):
                k = i
                iov_memset(iov, niov, 0, 0xff, -1)
                while True:
                    s = rng.randrange(0, j - k + 1)
                    r = iov_recv(fd, iov, niov, k, s)
                    assert all(a is b for a, b in zip(iov, siov))
                    if r > 0:
                        k += r
                    elif r == 0:
                        if s:
                            break
                    elif r == -errno.EAGAIN:
                        # The timeout only turns a dead writer into a failure.
                        ready, _, _ = select.select([fd], [], [], 10)
                        assert ready or not errors, errors
                        assert ready, "writer stalled"
                        continue
                    else:
                        raise OSError(-r, "recv")
                    if k >= j:
                        break
                check_iov_bytes(iov, niov, i, j - i)
    finally:
        thread.join()
        reader.close()
    assert not errors, errors


# /basic/iov/discard-front
def test_discard_front(backend):
    rng = random.Random(0xF0)

    # Discard zero bytes
    iov = iov_random(rng)
    iov_cnt = len(iov)
    ret, iov_tmp, iov_cnt_tmp = iov_discard_front(iov, iov_cnt, 0)
    assert ret == 0
    assert iov_tmp is iov
    assert iov_cnt_tmp == iov_cnt

    # Discard more bytes than vector size
    iov = iov_random(rng)
    iov_cnt = len(iov)
    size = iov_size(iov, iov_cnt)
    ret, iov_tmp, iov_cnt_tmp = iov_discard_front(iov, iov_cnt, size + 1)
    assert ret == size
    assert iov_cnt_tmp == 0

    # Discard entire vector
    iov = iov_random(rng)
    iov_cnt = len(iov)
    size = iov_size(iov, iov_cnt)
    ret, iov_tmp, iov_cnt_tmp = iov_discard_front(iov, iov_cnt, size)
    assert ret == size
    assert iov_cnt_tmp == 0

    # Discard within first element
    iov = iov_random(rng)
    iov_cnt = len(iov)
    old_base = iov_base_address(iov[0])
    size = rng.randrange(1, len(iov[0]))
    ret, iov_tmp, iov_cnt_tmp = iov_discard_front(iov, iov_cnt, size)
    assert ret == size
    assert iov_tmp is iov
    assert iov_cnt_tmp == iov_cnt
    assert iov_base_address(iov_tmp[0]) == old_base + size

    # Discard entire first element
    iov = iov_random(rng)
    iov_cnt = len(iov)
    second = iov[1]
    ret, iov_tmp, iov_cnt_tmp = iov_discard_front(iov, iov_cnt, len(iov[0]))
    assert ret == len(iov[0])
    assert iov_tmp[0] is second and len(iov_tmp) == iov_cnt - 1  # iov + 1
    assert iov_cnt_tmp == iov_cnt - 1

    # Discard within second element
    iov = iov_random(rng)
    iov_cnt = len(iov)
    old_base = iov_base_address(iov[1])
    size = len(iov[0]) + rng.randrange(1, len(iov[1]))
    ret, iov_tmp, iov_cnt_tmp = iov_discard_front(iov, iov_cnt, size)
    assert ret == size
    assert iov_tmp[0] is iov[1] and len(iov_tmp) == iov_cnt - 1  # iov + 1
    assert iov_cnt_tmp == iov_cnt - 1
    assert iov_base_address(iov_tmp[0]) == old_base + (size - len(iov[0]))


# /basic/iov/discard-back
def test_discard_back(backend):
    rng = random.Random(0xBA)

    # Discard zero bytes
    iov = iov_random(rng)
    iov_cnt = len(iov)
    ret, iov_cnt_tmp = iov_discard_back(iov, iov_cnt, 0)
    assert ret == 0
    assert iov_cnt_tmp == iov_cnt

    # Discard more bytes than vector size
    iov = iov_random(rng)
    iov_cnt = len(iov)
    size = iov_size(iov, iov_cnt)
    ret, iov_cnt_tmp = iov_discard_back(iov, iov_cnt, size + 1)
    assert ret == size
    assert iov_cnt_tmp == 0

    # Discard entire vector
    iov = iov_random(rng)
    iov_cnt = len(iov)
    size = iov_size(iov, iov_cnt)
    ret, iov_cnt_tmp = iov_discard_back(iov, iov_cnt, size)
    assert ret == size
    assert iov_cnt_tmp == 0

    # Discard within last element
    iov = iov_random(rng)
    iov_cnt = len(iov)
    old_base = iov_base_address(iov[iov_cnt - 1])
    size = rng.randrange(1, len(iov[iov_cnt - 1]))
    ret, iov_cnt_tmp = iov_discard_back(iov, iov_cnt, size)
    assert ret == size
    assert iov_cnt_tmp == iov_cnt
    assert iov_base_address(iov[iov_cnt - 1]) == old_base

    # Discard entire last element
    iov = iov_random(rng)
    iov_cnt = len(iov)
    size = len(iov[iov_cnt - 1])
    ret, iov_cnt_tmp = iov_discard_back(iov, iov_cnt, size)
    assert ret == size
    assert iov_cnt_tmp == iov_cnt - 1

    # Discard within second-to-last element
    iov = iov_random(rng)
    iov_cnt = len(iov)
    old_base = iov_base_address(iov[iov_cnt - 2])
    size = len(iov[iov_cnt - 1]) + rng.randrange(1, len(iov[iov_cnt - 2]))
    ret, iov_cnt_tmp = iov_discard_back(iov, iov_cnt, size)
    assert ret == size
    assert iov_cnt_tmp == iov_cnt - 1
    assert iov_base_address(iov[iov_cnt - 2]) == old_base


# QEMUIOVector

def make_qiov(*bufs) -> QEMUIOVector:
    qiov = QEMUIOVector()
    qemu_iovec_init(qiov, 1)
    for b in bufs:
        qemu_iovec_add(qiov, b, len(b))
    return qiov


def qiov_bytes(qiov: QEMUIOVector) -> bytes:
    return b"".join(qiov.iov)


def test_qiov_init_add(backend):
    qiov = QEMUIOVector()
    qemu_iovec_init(qiov, 2)
    assert (qiov.niov, qiov.nalloc, qiov.size) == (0, 2, 0)
    a, b, c = bytearray(b"abc"), bytearray(b"defgh"), bytearray(b"ij")
    qemu_iovec_add(qiov, a, 3)
    qemu_iovec_add(qiov, b, 4)          # only the first 4 bytes
    qemu_iovec_add(qiov, memoryview(c), 2)
    assert (qiov.niov, qiov.nalloc, qiov.size) == (3, 5, 9)
    assert len(qiov.iov) == 3 and all(type(m) is memoryview for m in qiov.iov)
    assert qiov_bytes(qiov) == b"abcdefgij"
    # the entries are views: writes reach the buffers
    assert qemu_iovec_memset(qiov, 2, ord("z"), 3) == 3
    assert a == b"abz" and b == b"zzfgh"
    with pytest.raises(AssertionError):
        qemu_iovec_add(qiov, a, 4)      # longer than the buffer


def test_qiov_init_external(backend):
    buf = bytearray(b"0123456789")
    qiov = QEMUIOVector()
    qemu_iovec_init_external(qiov, [memoryview(buf)[:4], buf], 2)
    assert (qiov.niov, qiov.nalloc, qiov.size) == (2, -1, 14)
    with pytest.raises(AssertionError):
        qemu_iovec_add(qiov, buf, 1)
    with pytest.raises(AssertionError):
        qemu_iovec_reset(qiov)
    out = bytearray(14)
    assert qemu_iovec_to_buf(qiov, 0, out, -1) == 14
    assert out == b"01230123456789"
    # an IOVList of the right length is shared, as C shares the array
    shared = IOVList([memoryview(buf)])
    qemu_iovec_init_external(qiov, shared, 1)
    assert qiov.iov is shared
    # other array types are flattened to bytes
    import array
    words = array.array("I", [1, 2])
    qemu_iovec_init_external(qiov, [words], 1)
    assert qiov.size == 8 and len(qiov.iov[0]) == 8


def test_qiov_concat(backend):
    src = make_qiov(bytearray(b"abcd"), bytearray(b"efgh"), bytearray(b"ij"))
    dst = make_qiov(bytearray(b"XY"))
    qemu_iovec_concat(dst, src, 3, 5)
    assert qiov_bytes(dst) == b"XYdefgh"
    assert dst.niov == 3 and dst.size == 7
    # views, not copies
    qemu_iovec_memset(dst, 2, 0, 1)
    assert qiov_bytes(src) == b"abc\0efghij"
    # huge or -1 sbytes: up to the end
    qemu_iovec_concat(dst, src, 8, -1)
    assert qiov_bytes(dst) == b"XY\0efghij"
    assert qemu_iovec_concat_iov(dst, src.iov, src.niov, 2, 0) == 0
    assert qemu_iovec_concat_iov(dst, src.iov, src.niov, 9, 100) == 1
    with pytest.raises(AssertionError):
        qemu_iovec_concat(dst, src, 11, 1)      # offset beyond end of src


def test_qiov_reset_destroy(backend):
    buf = bytearray(8)
    qiov = make_qiov(buf, bytearray(2))
    qemu_iovec_is_zero(qiov)
    qemu_iovec_is_zero(qiov)    # the C backend builds its arrays now
    qemu_iovec_reset(qiov)
    assert (qiov.niov, qiov.size, len(qiov.iov)) == (0, 0, 0)
    qemu_iovec_add(qiov, bytearray(b"\1"), 1)
    assert not qemu_iovec_is_zero(qiov)
    qemu_iovec_destroy(qiov)
    assert (qiov.iov, qiov.niov, qiov.nalloc, qiov.size) == (None, 0, 0, 0)
    # the vector let go of the buffer: it can be resized again
    buf.extend(b"more")
    # as g_renew(NULL) in C, adding after destroy works
    qemu_iovec_add(qiov, buf, 3)
    assert qiov.niov == 1 and qiov.nalloc == 1 and qiov.size == 3


def test_qiov_to_from_buf(backend):
    bufs = [bytearray(n) for n in (3, 1, 0, 5, 4)]
    qiov = make_qiov(*bufs)
    data = bytes(range(1, 14))
    for _ in range(2):          # second round: C arrays (C backend)
        assert qemu_iovec_from_buf(qiov, 2, data, 100) == 11
        assert qiov_bytes(qiov) == b"\0\0" + data[:11]
        out = bytearray(20)
        assert qemu_iovec_to_buf(qiov, 1, out, 5) == 5
        assert out[:6] == b"\0\1\2\3\4\0"
        assert qemu_iovec_to_buf(qiov, 13, out, 5) == 0
        with pytest.raises(AssertionError):
            qemu_iovec_to_buf(qiov, 14, out, 1)
        with pytest.raises(AssertionError):
            qemu_iovec_from_buf(qiov, 14, data, 1)
        with pytest.raises(AssertionError):
            qemu_iovec_memset(qiov, 14, 0, 1)
        # the flat buffer too small: what fits in the entries before the one
        # that does not fit is copied, then AssertionError
        small = bytearray(5)
        with pytest.raises(AssertionError):
            qemu_iovec_to_buf(qiov, 0, small, -1)
        assert small == b"\0\0\1\2\0"
        with pytest.raises(AssertionError):
            qemu_iovec_from_buf(qiov, 0, b"\x55" * 5, -1)
        assert qiov_bytes(qiov)[:5] == b"\x55" * 4 + b"\3"
        # into read-only memory
        with pytest.raises(TypeError):
            qemu_iovec_to_buf(qiov, 0, bytes(13), 13)
        assert qemu_iovec_memset(qiov, 0, 0x1ff, -1) == 13
        assert qiov_bytes(qiov) == b"\xff" * 13
        qemu_iovec_memset(qiov, 0, 0, -1)


def test_qiov_readonly_entries(backend):
    ro = make_qiov(b"abc", b"de")
    out = bytearray(5)
    for _ in range(2):
        assert qemu_iovec_to_buf(ro, 0, out, 5) == 5 and out == b"abcde"
        with pytest.raises(TypeError):
            qemu_iovec_from_buf(ro, 0, b"xxxxx", 5)
        with pytest.raises(TypeError):
            qemu_iovec_memset(ro, 1, 0, 3)
    assert qiov_bytes(ro) == b"abcde"


def test_qiov_is_zero(backend):
    for sizes in ([1], [4096], [1 << 20], [7, 300, 65], [64 << 10, 100 << 10],
                  [0, 0]):
        qiov = make_qiov(*(bytearray(n) for n in sizes))
        for _ in range(2):
            assert qemu_iovec_is_zero(qiov)
        for i in sorted({0, 1, qiov.size // 2, qiov.size - 1}):
            if not 0 <= i < qiov.size:
                continue
            qemu_iovec_memset(qiov, i, 1, 1)
            for _ in range(2):
                assert not qemu_iovec_is_zero(qiov)
            qemu_iovec_memset(qiov, i, 0, 1)
            assert qemu_iovec_is_zero(qiov)
    assert qemu_iovec_is_zero(make_qiov())


def test_buffer_is_zero(backend):
    for length in (0, 1, 31, 32, 255, 256, 257, 4096, 16 << 10, 1 << 20):
        mem = bytearray(length + 40)
        for start in (0, 1, 7, 8, 15, 16):
            buf = memoryview(mem)[start:start + length]
            assert buffer_is_zero(buf, length)
            for pos in {0, length // 3, length - 1}:
                if length == 0:
                    continue
                buf[pos] = 0x80
                assert not buffer_is_zero(buf, length)
                assert buffer_is_zero(buf, pos)
                buf[pos] = 0
    # bytes past length do not count
    assert buffer_is_zero(b"\0\0\1", 2)
    with pytest.raises(AssertionError):
        buffer_is_zero(b"\0", 2)


def test_qiov_compare(backend):
    a = make_qiov(bytearray(b"abcd"), bytearray(b"efg"), bytearray(b""),
                  bytearray(b"hi"))
    buf = bytearray(9)
    b = QEMUIOVector()
    qemu_iovec_init(b, a.niov)
    qemu_iovec_clone(b, a, buf)
    assert [len(m) for m in b.iov] == [len(m) for m in a.iov]
    assert qemu_iovec_compare(a, b) == 0
    qemu_iovec_from_buf(b, 0, b"abcdefghi", 9)
    for _ in range(2):
        assert qemu_iovec_compare(a, b) == -1
    for pos in range(9):
        qemu_iovec_memset(b, pos, ord("z"), 1)
        assert qemu_iovec_compare(a, b) == pos
        assert qemu_iovec_compare(b, a) == pos
        qemu_iovec_from_buf(b, pos, b"abcdefghi"[pos:pos + 1], 1)
    # same number of entries, different lengths: QEMU asserts
    c = make_qiov(bytearray(b"abcd"), bytearray(b"efgh"), bytearray(b""),
                  bytearray(b"i"))
    with pytest.raises(AssertionError):
        qemu_iovec_compare(a, c)
    # ... but only once it gets there
    c.iov[0][0] = 0
    assert qemu_iovec_compare(a, c) == 0
    with pytest.raises(AssertionError):
        qemu_iovec_compare(a, make_qiov(bytearray(9)))


def test_qiov_clone_overlap(backend):
    mem = bytearray(range(32))
    m = memoryview(mem)
    # entries overlapping in memory, in no address order
    src = make_qiov(m[10:20], m[0:8], m[15:25], m[30:32], m[12:14])
    buf = bytearray(40)
    dest = QEMUIOVector()
    qemu_iovec_init(dest, 1)
    qemu_iovec_clone(dest, src, buf)
    assert [len(e) for e in dest.iov] == [10, 8, 10, 2, 2]
    base = iov_base_address(buf)
    offsets = [iov_base_address(e) - base for e in dest.iov]
    # sorted by address: [0,8) at 0, [10,20) at 8, [12,14) inside it at 10,
    # [15,25) overlaps by 5 at 13, [30,32) at 23
    assert offsets == [8, 0, 13, 23, 10]
    # so the copy has the same bytes where the source shares them
    qemu_iovec_to_buf(src, 0, bytearray(32), -1)
    flat = bytearray(src.size)
    qemu_iovec_to_buf(src, 0, flat, -1)
    qemu_iovec_from_buf(dest, 0, flat, -1)
    assert qemu_iovec_compare(src, dest) == -1


def test_qiov_discard_back(backend):
    qiov = make_qiov(bytearray(b"abc"), bytearray(b"defg"), bytearray(b"hi"))
    for _ in range(2):
        qemu_iovec_is_zero(qiov)
    qemu_iovec_discard_back(qiov, 3)
    assert (qiov.niov, qiov.size, len(qiov.iov)) == (2, 6, 2)
    assert qiov_bytes(qiov) == b"abcdef"
    out = bytearray(6)
    assert qemu_iovec_to_buf(qiov, 0, out, -1) == 6 and out == b"abcdef"
    qemu_iovec_discard_back(qiov, 6)
    assert (qiov.niov, qiov.size) == (0, 0)
    with pytest.raises(AssertionError):
        qemu_iovec_discard_back(qiov, 1)


def test_iovlist_changes(backend):
    """Changes made to qiov.iov other than appending are seen by the C
    arrays: they are rebuilt from the first entry changed on."""
    a, b, c = bytearray(4), bytearray(4), bytearray(4)
    qiov = make_qiov(a, b)
    for _ in range(2):
        qemu_iovec_memset(qiov, 0, 1, -1)
    qiov.iov[1] = memoryview(c)
    qemu_iovec_memset(qiov, 0, 2, -1)
    assert (a, b, c) == (b"\2" * 4, b"\1" * 4, b"\2" * 4)
    qiov.iov.reverse()
    qemu_iovec_from_buf(qiov, 0, b"12345678", -1)
    assert (a, c) == (b"5678", b"1234")
    del qiov.iov[0]
    qiov.iov.append(memoryview(b))
    qemu_iovec_memset(qiov, 0, 3, -1)
    assert (a, b, c) == (b"\3" * 4, b"\3" * 4, b"1234")
    qiov.iov.insert(0, memoryview(c))
    qiov.iov.pop()
    qemu_iovec_memset(qiov, 0, 4, -1)
    assert (a, b, c) == (b"\4" * 4, b"\3" * 4, b"\4" * 4)
    import copy
    dup = copy.copy(qiov.iov)
    assert type(dup) is IOVList and list(dup) == list(qiov.iov)
    qiov.iov.clear()
    assert iov_memset(dup, 2, 0, 5, -1) == 8
    assert (a, c) == (b"\5" * 4, b"\5" * 4)


def test_iov_copy(backend):
    iov = [memoryview(bytearray(b"abc")), memoryview(bytearray(b"defg"))]
    dst: list = []
    assert iov_copy(dst, 4, iov, 2, 2, 3) == 2
    assert [bytes(m) for m in dst] == [b"c", b"de"]
    dst = [None]
    assert iov_copy(dst, 1, iov, 2, 1, -1) == 1
    assert bytes(dst[0]) == b"bc"
    with pytest.raises(AssertionError):
        iov_copy([], 4, iov, 2, 8, 1)


def test_send_recv_errors(backend):
    iov = [memoryview(bytearray(4))]
    r, w = socket.socketpair()
    try:
        r.setblocking(False)
        assert iov_recv(r.fileno(), iov, 1, 0, 4) == -errno.EAGAIN
        assert iov_send(w.fileno(), iov, 1, 0, 0) == 0
        w.sendall(b"ab")
        assert iov_recv(r.fileno(), iov, 1, 0, 4) == 2      # EAGAIN after 2
        w.close()
        assert iov_recv(r.fileno(), iov, 1, 0, 4) == 0      # peer shut down
    finally:
        r.close()
    assert iov_send(w.fileno(), iov, 1, 0, 4) == -errno.EBADF


# qemu_memalign

@pytest.mark.parametrize("alignment", [1, 8, 512, 4096, 1 << 16])
@pytest.mark.parametrize("size", [0, 1, 512, 4097, 1 << 20])
def test_qemu_memalign(backend, alignment, size):
    mem = qemu_memalign(alignment, size)
    assert type(mem) is memoryview and len(mem) == size
    assert not mem.readonly and mem.format == "B"
    assert iov_base_address(mem) % alignment == 0
    if size:
        mem[0] = 1
        mem[-1] = 2
        qiov = make_qiov(mem)
        assert qemu_iovec_to_buf(qiov, size - 1, bytearray(1), 1) == 1
    mem2 = qemu_try_memalign(alignment, size)
    assert mem2 is not None and len(mem2) == size


def test_qemu_memalign_failure(backend):
    assert qemu_try_memalign(4096, 1 << 62) is None
    assert qemu_try_memalign(4096, 1 << 70) is None
    with pytest.raises(MemoryError):
        qemu_memalign(4096, 1 << 62)
    with pytest.raises(AssertionError):
        qemu_memalign(3, 16)


def test_env_selects_backend():
    code = "import util.iov as m; print(m.IOV_BACKEND)"
    env = dict(os.environ, PYQEMU_IOV="python")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "python"
    env.pop("PYQEMU_IOV")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == ("c" if iov_mod._lib is not None else "python")


def test_c_helper_built_under_ci():
    if os.environ.get("CI") == "true":
        assert iov_mod._lib is not None, "util._iov_c must be built under CI"
        assert iov_mod.IOV_BACKEND == "c" or \
            os.environ.get("PYQEMU_IOV") == "python"


# The C helper against the Python fallback, called directly

@st.composite
def vectors(draw, max_entries=9, max_len=70):
    lens = draw(st.lists(st.integers(0, max_len), max_size=max_entries))
    data = [draw(st.binary(min_size=n, max_size=n)) for n in lens]
    return data


def build(data: list, c: bool) -> IOVList:
    """A vector holding copies of @data; for C with its arrays built, so
    that the _c_* functions do the work in C."""
    iov = IOVList(memoryview(bytearray(d)) for d in data)
    if c:
        iov_mod._c_sync(iov, len(iov))
    return iov


def outcome(fn, *args):
    try:
        return fn(*args)
    except (AssertionError, TypeError) as e:
        return type(e)


def offsets_counts(draw, size: int):
    offset = draw(st.integers(0, size + 3))
    count = draw(st.one_of(st.just(-1), st.integers(0, size + 3),
                           st.just(iov_mod.SIZE_MAX)))
    return offset, (iov_mod.SIZE_MAX if count < 0 else count)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_c_matches_python_copies(c_backend, data):
    vec = data.draw(vectors())
    size = sum(map(len, vec))
    offset, count = offsets_counts(data.draw, size)
    buflen = data.draw(st.integers(0, size + 3))
    src = bytes(data.draw(st.binary(min_size=buflen, max_size=buflen)))
    fillc = data.draw(st.integers(-300, 300))
    cnt = data.draw(st.integers(0, len(vec)))
    results = []
    for c in (False, True):
        to_buf = iov_mod._c_to_buf if c else iov_mod._py_to_buf
        from_buf = iov_mod._c_from_buf if c else iov_mod._py_from_buf
        memset = iov_mod._c_memset if c else iov_mod._py_memset
        iov = build(vec, c)
        out = memoryview(bytearray(b"\xaa" * buflen))
        r1 = outcome(to_buf, iov, cnt, offset, out, count)
        r2 = outcome(from_buf, iov, cnt, offset, memoryview(src), count)
        after_from = b"".join(iov)
        r3 = outcome(memset, iov, cnt, offset, fillc, count)
        results.append((r1, bytes(out), r2, after_from, r3, b"".join(iov)))
    assert results[0] == results[1]


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_c_matches_python_zero_compare(c_backend, data):
    vec = data.draw(vectors(max_len=600))
    # mostly zero entries, with a few bytes set
    zeroed = [bytearray(len(d)) for d in vec]
    for d, z in zip(vec, zeroed):
        if d and data.draw(st.booleans()):
            pos = data.draw(st.integers(0, len(d) - 1))
            z[pos] = d[pos] or 1
    vec = [bytes(z) for z in zeroed]
    other = list(vec)
    if other and data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(other) - 1))
        if other[i] and data.draw(st.booleans()):
            pos = data.draw(st.integers(0, len(other[i]) - 1))
            e = bytearray(other[i])
            e[pos] ^= data.draw(st.integers(1, 255))
            other[i] = bytes(e)
        else:
            other[i] = other[i] + b"\0"         # lengths differ
    cnt = len(vec)
    res = []
    for c in (False, True):
        is_zero = iov_mod._c_is_zero if c else iov_mod._py_is_zero
        compare = iov_mod._c_compare if c else iov_mod._py_compare
        bz = iov_mod._c_buffer_is_zero if c else iov_mod._py_buffer_is_zero
        a, b = build(vec, c), build(other, c)
        res.append((is_zero(a, cnt), outcome(compare, a, b, cnt),
                    [bz(m) for m in a]))
    assert res[0] == res[1]
    # and against plain Python
    flat_a, flat_b = b"".join(vec), b"".join(other)
    assert res[0][0] == (flat_a.count(0) == len(flat_a))
    if not isinstance(res[0][1], type):
        expect = next((i for i, (x, y) in enumerate(zip(flat_a, flat_b))
                       if x != y), -1)
        assert res[0][1] == expect


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_backends_agree_on_qiov(c_backend, data):
    """The public functions give the same results with either backend."""
    vec = data.draw(vectors(max_entries=6, max_len=40))
    size = sum(map(len, vec))
    offset, count = offsets_counts(data.draw, size)
    src = data.draw(st.binary(min_size=size, max_size=size + 2))
    res = []
    for name in ("python", "c"):
        set_iov_backend(name)
        qiov = make_qiov(*(bytearray(d) for d in vec))
        out = bytearray(size + 2)
        steps = []
        for _ in range(2):      # the second round runs in C
            steps.append(outcome(qemu_iovec_from_buf, qiov, offset, src,
                                 count))
            steps.append(outcome(qemu_iovec_to_buf, qiov, 0, out, -1))
            steps.append(outcome(qemu_iovec_memset, qiov, offset, 0, count))
            steps.append(qemu_iovec_is_zero(qiov))
            steps.append(bytes(out))
        res.append(steps)
    set_iov_backend("c")
    assert res[0] == res[1]
