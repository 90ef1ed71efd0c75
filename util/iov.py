"""I/O vectors: QEMU's util/iov.c, with buffer_is_zero (util/cutils.c) and
qemu_memalign (util/oslib-posix.c).

C's ``struct iovec *iov, unsigned int iov_cnt`` becomes a list of
memoryviews (format "B", one dimension, contiguous) and a count; every other
argument and return value is as in C (offset and byte counts, the number of
bytes copied).  A byte count of -1 means "up to the end", as size_t -1 does.
What QEMU asserts raises AssertionError here.

The byte work (copies between a vector and a flat buffer, memset, zero
detection, comparison) runs in the cffi helper util._iov_c (util/iov_helper.c)
or in the pure-Python code of this module, which gives the same results.  The
helper is used unless it is not built or PYQEMU_IOV=python (read at import);
IOV_BACKEND says which one is active, set_iov_backend() switches (tests).

The helper needs the address of every entry, and asking cffi for one costs
more than the Python slice copy of a 512-byte entry.  So the array of a
QEMUIOVector is an IOVList, a list that also keeps the C arrays (base
pointers, lengths) of its entries, built on the vector's second byte
operation (or its first, for large entries; see _c_ready) and extended as
entries are appended; any other change of the list drops them.  Until then,
and for plain lists and one-entry vectors (most requests), the work is done
by the Python code, which for one entry is one slice assignment.

iov_hexdump is left out: the block layer does not use it.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Any, Callable, Optional

# size_t -1: "up to the end" for byte counts.
SIZE_MAX = sys.maxsize * 2 + 1

# Pure-Python zero detection and memset work on chunks of this size.
_CHUNK = 64 * 1024
_ZERO = bytes(_CHUNK)
_FILL: list[Optional[memoryview]] = [memoryview(_ZERO)] + [None] * 255

try:
    from util import _iov_c
except ImportError:
    _iov_c = None

if _iov_c is not None:
    _ffi = _iov_c.ffi
    _lib = _iov_c.lib
else:
    import cffi
    _ffi = cffi.FFI()       # ABI mode, only for iov_base_address()
    _lib = None
_from_buffer = _ffi.from_buffer


def _bytes_view(buf: Any) -> memoryview:
    """A flat unsigned-byte memoryview of @buf, as a void * sees it."""
    if type(buf) is bytearray:
        return memoryview(buf)
    m = buf if type(buf) is memoryview else memoryview(buf)
    if m.format != "B" or m.ndim != 1 or not m.c_contiguous:
        m = m.cast("B")
    return m


class IOVList(list):
    """The iov array of a QEMUIOVector: a list of memoryviews that also holds
    what the C helper needs for its first _nsync entries.

    _pins keeps the cffi pointers (which pin the buffers) of those entries,
    _base and _len are the C arrays, _rdonly the index of the first read-only
    synced entry (writes into the vector then take the Python path, which
    raises TypeError as a write into read-only memory does), _used whether a
    byte operation ran on the vector since it was emptied (see _c_ready).
    Appending keeps them; any other change drops them from the first entry
    changed on.  The attributes are class defaults until the first use, so
    that creating a vector costs no more than creating a list.
    """

    _nsync = 0
    _pins: Any = ()
    _base: Any = None
    _len: Any = None
    _rdonly = sys.maxsize
    _used = False

    def _changed(self, start: int = 0) -> None:
        if self._nsync > start:
            self._nsync = start
            del self._pins[start:]
            if self._rdonly >= start:
                self._rdonly = sys.maxsize
        if start == 0 and self._used:
            self._used = False

    def __reduce_ex__(self, protocol):
        # A copy starts without C arrays (it must not share the pins).
        return (IOVList, (list(self),))

    def __setitem__(self, index, value):
        list.__setitem__(self, index, value)
        self._changed(index if type(index) is int and index >= 0 else 0)

    def __delitem__(self, index):
        list.__delitem__(self, index)
        if type(index) is slice and index.step is None and index.stop is None:
            start = index.start or 0
            self._changed(start if start >= 0 else 0)
        else:
            self._changed()

    def __imul__(self, n):
        result = list.__imul__(self, n)
        self._changed()
        return result

    def insert(self, index, value):
        list.insert(self, index, value)
        self._changed()

    def pop(self, index=-1):
        value = list.pop(self, index)
        self._changed(len(self) if index == -1 else 0)
        return value

    def remove(self, value):
        list.remove(self, value)
        self._changed()

    def clear(self):
        list.clear(self)
        self._changed()

    def reverse(self):
        list.reverse(self)
        self._changed()

    def sort(self, *args, **kwargs):
        list.sort(self, *args, **kwargs)
        self._changed()


# Building the C arrays costs about 250 ns per entry (cffi's from_buffer),
# more than Python takes to copy a 512-byte entry.  Requests mostly do one
# byte operation on a vector, so a vector of small entries gets its arrays on
# its second operation (the first runs in Python), one of large entries (as
# judged by the first entry still to add, cheaper than summing them) on
# its first; single buffers below that size stay in Python too.
_C_MIN_ENTRY = 16 * 1024


def _c_ready(iov: list, cnt: int) -> bool:
    """Whether the C helper should do the work on @iov[:cnt]; builds the
    missing part of its C arrays when so."""
    if type(iov) is not IOVList:
        return False
    n = iov._nsync
    if n >= cnt:
        return cnt != 0     # an empty vector may have no arrays at all
    if not iov._used:
        iov._used = True
        if len(iov[n]) < _C_MIN_ENTRY:
            return False
    _c_sync(iov, cnt)
    return True


def _c_sync(iov: IOVList, cnt: int) -> None:
    """Fill the C arrays of @iov up to entry @cnt."""
    n = iov._nsync
    base = iov._base
    if base is None or len(base) < cnt:
        size = max(cnt, 2 * len(base) if base is not None else 4)
        new_base = _ffi.new("char *[]", size)
        new_len = _ffi.new("size_t[]", size)
        if n:
            _ffi.memmove(new_base, base, n * _ffi.sizeof("char *"))
            _ffi.memmove(new_len, iov._len, n * _ffi.sizeof("size_t"))
        iov._base = base = new_base
        iov._len = new_len
    if n == 0:
        iov._pins = []
    entries = iov[n:cnt]
    pins = list(map(_from_buffer, entries))
    iov._pins[n:] = pins
    base[n:cnt] = pins
    iov._len[n:cnt] = list(map(len, entries))
    if iov._rdonly == sys.maxsize:
        for i, m in enumerate(entries, n):
            if m.readonly:
                iov._rdonly = i
                break
    iov._nsync = cnt


def _c_error(ret: int, what: str) -> int:
    if ret == SIZE_MAX:
        raise AssertionError(f"{what}: offset beyond the end of the vector")
    if ret == SIZE_MAX - 1:
        raise AssertionError(f"{what}: buffer smaller than the bytes to copy")
    return ret


# Pure-Python byte work (the fallback, also used for plain lists).  The
# loops are those of iov.c, arranged so that a whole entry costs one slice
# assignment; the checks of the C helper are made at the same points, so
# that an error leaves the same bytes copied.

def _py_to_buf(iov: list, iov_cnt: int, offset: int, buf: memoryview,
               bytes: int) -> int:
    done = 0
    buflen = len(buf)
    for m in (iov if iov_cnt == len(iov) else iov[:iov_cnt]):
        n = len(m)
        if offset:
            if offset >= n:
                offset -= n
                continue
            m = m[offset:]
            n -= offset
            offset = 0
        end = done + n
        if end >= bytes:            # the last entry to copy
            if bytes > buflen:
                raise AssertionError(
                    "iov_to_buf: buffer smaller than the bytes to copy")
            buf[done:bytes] = m[:bytes - done]
            return bytes
        if end > buflen:
            raise AssertionError(
                "iov_to_buf: buffer smaller than the bytes to copy")
        buf[done:end] = m
        done = end
    if offset:
        raise AssertionError("iov_to_buf: offset beyond the end of the vector")
    return done


def _py_from_buf(iov: list, iov_cnt: int, offset: int, buf: memoryview,
                 bytes: int) -> int:
    done = 0
    buflen = len(buf)
    for m in (iov if iov_cnt == len(iov) else iov[:iov_cnt]):
        n = len(m)
        if offset:
            if offset >= n:
                offset -= n
                continue
            m = m[offset:]
            n -= offset
            offset = 0
        end = done + n
        if end >= bytes:
            if bytes > buflen:
                raise AssertionError(
                    "iov_from_buf: buffer smaller than the bytes to copy")
            m[:bytes - done] = buf[done:bytes]
            return bytes
        if end > buflen:
            raise AssertionError(
                "iov_from_buf: buffer smaller than the bytes to copy")
        m[:] = buf[done:end]
        done = end
    if offset:
        raise AssertionError(
            "iov_from_buf: offset beyond the end of the vector")
    return done


def _fill_chunk(fillc: int) -> memoryview:
    fill = _FILL[fillc]
    if fill is None:
        fill = _FILL[fillc] = memoryview(bytes((fillc,)) * _CHUNK)
    return fill


def _py_fill(m: memoryview, fill: memoryview) -> None:
    """Set all of @m from the pattern chunk @fill."""
    n = len(m)
    if n <= _CHUNK:
        m[:] = fill[:n]
        return
    for start in range(0, n, _CHUNK):
        chunk = m[start:start + _CHUNK]
        chunk[:] = fill[:len(chunk)]


def _py_memset(iov: list, iov_cnt: int, offset: int, fillc: int,
               bytes: int) -> int:
    fill = _fill_chunk(fillc & 0xff)
    whole = fill[:0]            # fill[:n] for the last n seen
    done = 0
    for m in (iov if iov_cnt == len(iov) else iov[:iov_cnt]):
        n = len(m)
        if offset:
            if offset >= n:
                offset -= n
                continue
            m = m[offset:]
            n -= offset
            offset = 0
        end = done + n
        if end >= bytes:
            _py_fill(m[:bytes - done], fill)
            return bytes
        if n == len(whole):
            m[:] = whole
        elif n <= _CHUNK:
            whole = fill[:n]
            m[:] = whole
        else:
            _py_fill(m, fill)
        done = end
    if offset:
        raise AssertionError("iov_memset: offset beyond the end of the vector")
    return done


def _py_buffer_is_zero(m: memoryview) -> bool:
    # bytes.startswith takes any buffer and ends in memcmp: no copy.
    if len(m) <= _CHUNK:
        return _ZERO.startswith(m)
    for start in range(0, len(m), _CHUNK):
        if not _ZERO.startswith(m[start:start + _CHUNK]):
            return False
    return True


def _py_is_zero(iov: list, iov_cnt: int) -> bool:
    for i in range(iov_cnt):
        if not _py_buffer_is_zero(iov[i]):
            return False
    return True


def _py_compare(a: list, b: list, cnt: int) -> int:
    offset = 0
    for i in range(cnt):
        p = a[i]
        q = b[i]
        n = len(p)
        if n != len(q):
            raise AssertionError("qemu_iovec_compare: entry lengths differ")
        pb = p.tobytes()
        if not pb.startswith(q):
            # pb[:lo] equals q[:lo]; pb[:hi] does not equal q[:hi].
            lo, hi = 0, n
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if pb.startswith(q[lo:mid], lo):
                    lo = mid
                else:
                    hi = mid
            return offset + lo
        offset += n
    return -1


def _py_try_memalign(alignment: int, size: int) -> Optional[memoryview]:
    try:
        raw = bytearray(size + alignment)
    except (MemoryError, OverflowError):
        return None
    start = -iov_base_address(raw) % alignment
    return memoryview(raw)[start:start + size]


# The same operations in the C helper, where _c_ready says so.  Plain lists
# always take the Python path: asking cffi for the address of every entry on
# every call costs more than the Python copy (see tests/bench_iov.py).

def _c_to_buf(iov: list, iov_cnt: int, offset: int, buf: memoryview,
              bytes: int) -> int:
    # (Into read-only memory, Python raises the TypeError at the right point.)
    if not _c_ready(iov, iov_cnt) or buf.readonly:
        return _py_to_buf(iov, iov_cnt, offset, buf, bytes)
    return _c_error(_lib.iov_to_buf(iov._base, iov._len, iov_cnt, offset,
                                    _from_buffer(buf), len(buf), bytes),
                    "iov_to_buf")


def _c_from_buf(iov: list, iov_cnt: int, offset: int, buf: memoryview,
                bytes: int) -> int:
    if not _c_ready(iov, iov_cnt) or iov._rdonly < iov_cnt:
        return _py_from_buf(iov, iov_cnt, offset, buf, bytes)
    return _c_error(_lib.iov_from_buf(iov._base, iov._len, iov_cnt, offset,
                                      _from_buffer(buf), len(buf), bytes),
                    "iov_from_buf")


def _c_memset(iov: list, iov_cnt: int, offset: int, fillc: int,
              bytes: int) -> int:
    if not _c_ready(iov, iov_cnt) or iov._rdonly < iov_cnt:
        return _py_memset(iov, iov_cnt, offset, fillc, bytes)
    return _c_error(_lib.iov_memset(iov._base, iov._len, iov_cnt, offset,
                                    fillc & 0xff, bytes), "iov_memset")


def _c_buffer_is_zero(m: memoryview) -> bool:
    if len(m) < _C_MIN_ENTRY:
        return _ZERO.startswith(m)
    return bool(_lib.buffer_is_zero(_from_buffer(m), len(m)))


def _c_is_zero(iov: list, iov_cnt: int) -> bool:
    if not _c_ready(iov, iov_cnt):
        return _py_is_zero(iov, iov_cnt)
    return bool(_lib.iov_is_zero(iov._base, iov._len, iov_cnt))


def _c_compare(a: list, b: list, cnt: int) -> int:
    # "and" would skip readying b when a is not ready; both count a use.
    if not (_c_ready(a, cnt) & _c_ready(b, cnt)):
        return _py_compare(a, b, cnt)
    ret = _lib.iov_compare(a._base, a._len, b._base, b._len, cnt)
    if ret == -2:
        raise AssertionError("qemu_iovec_compare: entry lengths differ")
    return ret


def _c_try_memalign(alignment: int, size: int) -> Optional[memoryview]:
    try:
        ptr = _lib.qemu_try_memalign(alignment, size)
    except OverflowError:
        return None
    if ptr == _ffi.NULL:
        return None
    # The buffer object keeps the pointer, and so the memory, alive.
    return memoryview(_ffi.buffer(_ffi.gc(ptr, _lib.qemu_vfree, size), size))


_BACKENDS: dict[str, dict[str, Callable]] = {
    "python": dict(_to_buf=_py_to_buf, _from_buf=_py_from_buf,
                   _memset=_py_memset, _buffer_is_zero=_py_buffer_is_zero,
                   _is_zero=_py_is_zero, _compare=_py_compare,
                   _try_memalign=_py_try_memalign),
    "c": dict(_to_buf=_c_to_buf, _from_buf=_c_from_buf, _memset=_c_memset,
              _buffer_is_zero=_c_buffer_is_zero, _is_zero=_c_is_zero,
              _compare=_c_compare, _try_memalign=_c_try_memalign),
}

IOV_BACKEND = "python"
_to_buf = _py_to_buf
_from_buf = _py_from_buf
_memset = _py_memset
_buffer_is_zero = _py_buffer_is_zero
_is_zero = _py_is_zero
_compare = _py_compare
_try_memalign = _py_try_memalign


def set_iov_backend(name: str) -> None:
    """Use the C helper ("c") or the pure-Python code ("python") from now on;
    raises ImportError for "c" when the helper is not built."""
    global IOV_BACKEND
    if name == "c" and _lib is None:
        raise ImportError("util._iov_c is not built (pip install the "
                          "package, or python3 util/iov_build.py)")
    globals().update(_BACKENDS[name])
    IOV_BACKEND = name


set_iov_backend("python" if _lib is None
                or os.environ.get("PYQEMU_IOV", "") == "python" else "c")


# util/iov.c

def iov_from_buf(iov: list[memoryview], iov_cnt: int, offset: int,
                 buf: Any, bytes: int) -> int:
    """Copy @bytes of @buf into the vector from @offset on; returns the
    bytes copied, min(bytes, iov_size - offset)."""
    buf = _bytes_view(buf)
    if not 0 <= bytes <= SIZE_MAX:
        bytes = SIZE_MAX
    if iov_cnt == 1:
        # One entry: a single slice assignment, whatever the backend.
        m = iov[0]
        n = len(m) - offset
        if n < 0:
            raise AssertionError(
                "iov_from_buf: offset beyond the end of the vector")
        if bytes < n:
            n = bytes
        if n > len(buf):
            raise AssertionError(
                "iov_from_buf: buffer smaller than the bytes to copy")
        m[offset:offset + n] = buf[:n]
        return n
    return _from_buf(iov, iov_cnt, offset, buf, bytes)


def iov_to_buf(iov: list[memoryview], iov_cnt: int, offset: int,
               buf: Any, bytes: int) -> int:
    """Copy @bytes of the vector from @offset on into @buf; returns the
    bytes copied, min(bytes, iov_size - offset)."""
    buf = _bytes_view(buf)
    if not 0 <= bytes <= SIZE_MAX:
        bytes = SIZE_MAX
    if iov_cnt == 1:
        m = iov[0]
        n = len(m) - offset
        if n < 0:
            raise AssertionError(
                "iov_to_buf: offset beyond the end of the vector")
        if bytes < n:
            n = bytes
        if n > len(buf):
            raise AssertionError(
                "iov_to_buf: buffer smaller than the bytes to copy")
        buf[:n] = m[offset:offset + n]
        return n
    return _to_buf(iov, iov_cnt, offset, buf, bytes)


def iov_memset(iov: list[memoryview], iov_cnt: int, offset: int,
               fillc: int, bytes: int) -> int:
    """Set @bytes of the vector from @offset on to @fillc; returns the bytes
    set, min(bytes, iov_size - offset)."""
    if not 0 <= bytes <= SIZE_MAX:
        bytes = SIZE_MAX
    if iov_cnt == 1:
        m = iov[0]
        n = len(m) - offset
        if 0 <= n <= _CHUNK:
            if bytes < n:
                n = bytes
            m[offset:offset + n] = _fill_chunk(fillc & 0xff)[:n]
            return n
    return _memset(iov, iov_cnt, offset, fillc, bytes)


def iov_size(iov: list[memoryview], iov_cnt: int) -> int:
    if iov_cnt == len(iov):
        return sum(map(len, iov))
    return sum(map(len, iov[:iov_cnt]))


def _do_send_recv(sockfd: int, iov: list[memoryview], do_send: bool) -> int:
    """do_send_recv(): one writev or readv (as sendmsg and recvmsg without
    flags are on a socket); Python already retries on EINTR."""
    try:
        return os.writev(sockfd, iov) if do_send else os.readv(sockfd, iov)
    except OSError as e:
        return -e.errno


def iov_send_recv(sockfd: int, iov: list[memoryview], iov_cnt: int,
                  offset: int, bytes: int, do_send: bool) -> int:
    """Send or receive @bytes of the vector from @offset on; returns the
    bytes done, or a negative errno where QEMU returns -1 and sets errno
    (EAGAIN after some bytes returns those bytes, as in QEMU).  The vector
    itself is not changed."""
    total = 0
    if bytes <= 0:
        return 0
    local_iov: list[memoryview] = []
    iov_cnt = iov_copy(local_iov, iov_cnt, iov, iov_cnt, offset, bytes)
    offset = 0
    first = 0           # C moves its iov pointer; this is its index.
    while bytes > 0:
        # Skip the entries that offset covers entirely.
        while first < iov_cnt and offset >= len(local_iov[first]):
            offset -= len(local_iov[first])
            first += 1
        assert first < iov_cnt
        # The entries that hold [offset, offset + bytes), the first one cut
        # at offset and the last one at the end (QEMU patches them in
        # place and undoes it; slices leave the vector alone).
        part = []
        tail = bytes
        i = first
        m = local_iov[i][offset:]
        while tail:
            if len(m) > tail:
                m = m[:tail]
            part.append(m)
            tail -= len(m)
            i += 1
            if tail:
                assert i < iov_cnt, "iov_send_recv: bytes beyond the vector"
                m = local_iov[i]
        ret = _do_send_recv(sockfd, part, do_send)
        if ret < 0:
            if ret == -errno.EAGAIN and total > 0:
                return total
            return ret
        if ret == 0 and not do_send:
            # recv returns 0 when the peer shut down in order.
            break
        offset += ret
        total += ret
        bytes -= ret
    return total


def iov_recv(sockfd: int, iov: list[memoryview], iov_cnt: int,
             offset: int, bytes: int) -> int:
    return iov_send_recv(sockfd, iov, iov_cnt, offset, bytes, False)


def iov_send(sockfd: int, iov: list[memoryview], iov_cnt: int,
             offset: int, bytes: int) -> int:
    return iov_send_recv(sockfd, iov, iov_cnt, offset, bytes, True)


def iov_copy(dst_iov: list[memoryview], dst_iov_cnt: int,
             iov: list[memoryview], iov_cnt: int, offset: int,
             bytes: int) -> int:
    """Make dst_iov[0:j] views of @bytes of the vector from @offset on (no
    data is copied), extending @dst_iov when it is shorter; returns j."""
    if not 0 <= bytes <= SIZE_MAX:
        bytes = SIZE_MAX
    j = 0
    i = 0
    while i < iov_cnt and j < dst_iov_cnt and bytes:
        m = iov[i]
        i += 1
        if offset >= len(m):
            offset -= len(m)
            continue
        n = min(bytes, len(m) - offset)
        if offset or n != len(m):
            m = m[offset:offset + n]
        if j < len(dst_iov):
            dst_iov[j] = m
        else:
            dst_iov.append(m)
        j += 1
        bytes -= n
        offset = 0
    assert offset == 0, "iov_copy: offset beyond the end of the vector"
    return j


# io vectors

class QEMUIOVector:
    """iov is an IOVList of exactly niov entries (or None, like a NULL
    array); nalloc is -1 for an external vector; size is the byte total."""

    __slots__ = ("iov", "niov", "nalloc", "size")

    def __init__(self) -> None:
        self.iov: Optional[IOVList] = None
        self.niov = 0
        self.nalloc = 0
        self.size = 0

    def __repr__(self) -> str:
        return (f"<QEMUIOVector niov={self.niov} size={self.size} "
                f"nalloc={self.nalloc}>")


def qemu_iovec_init(qiov: QEMUIOVector, alloc_hint: int) -> None:
    qiov.iov = IOVList()
    qiov.niov = 0
    qiov.nalloc = alloc_hint
    qiov.size = 0


def qemu_iovec_init_external(qiov: QEMUIOVector, iov: list,
                             niov: int) -> None:
    """@iov holds buffers (memoryviews or anything with the buffer
    protocol); the vector takes flat byte views of the first @niov.  An
    IOVList of memoryviews is used as it is, as C shares the array;
    otherwise later changes of @iov are not seen by the vector."""
    if type(iov) is not IOVList or len(iov) != niov:
        iov = IOVList([_bytes_view(b) for b in iov[:niov]])
    qiov.iov = iov
    qiov.niov = niov
    qiov.nalloc = -1
    qiov.size = sum(map(len, iov))


def qemu_iovec_add(qiov: QEMUIOVector, base: Any, length: int) -> None:
    """Append the first @length bytes of buffer @base (C's base, len)."""
    assert qiov.nalloc != -1
    if qiov.niov == qiov.nalloc:
        qiov.nalloc = 2 * qiov.nalloc + 1
        if qiov.iov is None:
            qiov.iov = IOVList()    # g_renew() of NULL allocates
    m = _bytes_view(base)
    if len(m) != length:
        assert 0 <= length <= len(m), "qemu_iovec_add: length beyond buffer"
        m = m[:length]
    qiov.iov.append(m)
    qiov.size += length
    qiov.niov += 1


def qemu_iovec_concat_iov(dst: QEMUIOVector, src_iov: list[memoryview],
                          src_cnt: int, soffset: int, sbytes: int) -> int:
    """Append views of @sbytes of @src_iov from @soffset on to @dst (only
    the views, not the data); a huge or -1 @sbytes means up to the end."""
    if not sbytes:
        return 0
    if not 0 <= sbytes <= SIZE_MAX:
        sbytes = SIZE_MAX
    assert dst.nalloc != -1
    done = 0
    i = 0
    while done < sbytes and i < src_cnt:
        m = src_iov[i]
        i += 1
        if soffset < len(m):
            n = min(len(m) - soffset, sbytes - done)
            if soffset or n != len(m):
                m = m[soffset:soffset + n]
            qemu_iovec_add(dst, m, n)
            done += n
            soffset = 0
        else:
            soffset -= len(m)
    assert soffset == 0, "qemu_iovec_concat_iov: offset beyond end of src"
    return done


def qemu_iovec_concat(dst: QEMUIOVector, src: QEMUIOVector, soffset: int,
                      sbytes: int) -> None:
    qemu_iovec_concat_iov(dst, src.iov, src.niov, soffset, sbytes)


def qemu_iovec_is_zero(qiov: QEMUIOVector) -> bool:
    if qiov.niov == 1:
        return _buffer_is_zero(qiov.iov[0])
    return _is_zero(qiov.iov, qiov.niov)


def qemu_iovec_destroy(qiov: QEMUIOVector) -> None:
    assert qiov.nalloc != -1
    qemu_iovec_reset(qiov)
    qiov.nalloc = 0
    qiov.iov = None


def qemu_iovec_reset(qiov: QEMUIOVector) -> None:
    assert qiov.nalloc != -1
    qiov.niov = 0
    qiov.size = 0
    if qiov.iov:
        qiov.iov.clear()    # lets go of the buffers


def qemu_iovec_to_buf(qiov: QEMUIOVector, offset: int, buf: Any,
                      bytes: int) -> int:
    return iov_to_buf(qiov.iov, qiov.niov, offset, buf, bytes)


def qemu_iovec_from_buf(qiov: QEMUIOVector, offset: int, buf: Any,
                        bytes: int) -> int:
    return iov_from_buf(qiov.iov, qiov.niov, offset, buf, bytes)


def qemu_iovec_memset(qiov: QEMUIOVector, offset: int, fillc: int,
                      bytes: int) -> int:
    return iov_memset(qiov.iov, qiov.niov, offset, fillc, bytes)


def qemu_iovec_compare(a: QEMUIOVector, b: QEMUIOVector) -> int:
    """Offset of the first differing byte, or -1 when the contents match;
    the vectors must have the same structure (as from qemu_iovec_clone)."""
    assert a.niov == b.niov
    return _compare(a.iov, b.iov, a.niov)


def qemu_iovec_clone(dest: QEMUIOVector, src: QEMUIOVector, buf: Any) -> None:
    """Append to @dest views into @buf shaped like @src; entries of @src
    that overlap in memory overlap in the same way in @buf."""
    buf = _bytes_view(buf)
    addr = [iov_base_address(m) for m in src.iov]
    # Walk the source entries by address (as QEMU's first qsort does) and
    # give each its place in buf, sharing the bytes where they overlap.
    dest_base = [0] * src.niov
    pos = 0
    last_end = None
    for i in sorted(range(src.niov), key=addr.__getitem__):
        length = len(src.iov[i])
        rewind = 0
        if last_end is not None and last_end > addr[i]:
            rewind = last_end - addr[i]
        dest_base[i] = pos - rewind
        pos += length - min(rewind, length)
        end = addr[i] + length
        last_end = end if last_end is None else max(end, last_end)
    for i in range(src.niov):
        length = len(src.iov[i])
        qemu_iovec_add(dest, buf[dest_base[i]:dest_base[i] + length], length)


def iov_discard_front(iov: list[memoryview], iov_cnt: int,
                      bytes: int) -> tuple[int, list[memoryview], int]:
    """Drop @bytes from the front of the vector.  C updates *iov and
    *iov_cnt; this returns (bytes discarded, iov, iov_cnt), where iov is
    the same list when no entry is dropped and the rest of it otherwise.
    The entry cut in the middle is replaced in @iov, as C changes it."""
    total = 0
    first = 0
    while iov_cnt > 0:
        m = iov[first]
        if len(m) > bytes:
            if bytes:
                iov[first] = m[bytes:]
            total += bytes
            break
        bytes -= len(m)
        total += len(m)
        iov_cnt -= 1
        first += 1
    return total, (iov if first == 0 else iov[first:]), iov_cnt


def iov_discard_back(iov: list[memoryview], iov_cnt: int,
                     bytes: int) -> tuple[int, int]:
    """Drop @bytes from the back of the vector; returns (bytes discarded,
    the new iov_cnt).  The entry cut in the middle is replaced in @iov."""
    total = 0
    if iov_cnt == 0:
        return 0, 0
    last = iov_cnt - 1
    while iov_cnt > 0:
        m = iov[last]
        if len(m) > bytes:
            if bytes:
                iov[last] = m[:len(m) - bytes]
            total += bytes
            break
        bytes -= len(m)
        total += len(m)
        last -= 1
        iov_cnt -= 1
    return total, iov_cnt


def qemu_iovec_discard_back(qiov: QEMUIOVector, bytes: int) -> None:
    assert qiov.size >= bytes
    total, niov = iov_discard_back(qiov.iov, qiov.niov, bytes)
    assert total == bytes
    # Keep len(iov) == niov; C just stops looking past niov.
    if qiov.iov:
        del qiov.iov[niov:]
    qiov.niov = niov
    qiov.size -= bytes


# util/cutils.c

def buffer_is_zero(buf: Any, length: int) -> bool:
    """Whether the first @length bytes of @buf are zero (any length; QEMU
    2.5 wants a multiple of 32)."""
    m = _bytes_view(buf)
    if length != len(m):
        assert 0 <= length <= len(m), "buffer_is_zero: length beyond buffer"
        m = m[:length]
    return _buffer_is_zero(m)


# util/oslib-posix.c

def qemu_try_memalign(alignment: int, size: int) -> Optional[memoryview]:
    """A writable memoryview of @size bytes at an address that is a multiple
    of @alignment (a power of two), or None when there is no memory.  As in
    C the contents are undefined (the Python fallback gives zeroes); the
    memory is freed when the last view of it goes."""
    assert alignment > 0 and alignment & (alignment - 1) == 0, \
        "qemu_memalign: alignment must be a power of two"
    assert size >= 0
    alignment = max(alignment, _ffi.sizeof("void *"))
    return _try_memalign(alignment, size)


def qemu_memalign(alignment: int, size: int) -> memoryview:
    """qemu_try_memalign() that raises MemoryError where QEMU aborts."""
    mem = qemu_try_memalign(alignment, size)
    if mem is None:
        raise MemoryError(f"qemu_memalign: failed to allocate {size} bytes "
                          f"aligned to {alignment}")
    return mem


def iov_base_address(buf: Any) -> int:
    """The address of the first byte of @buf (C's iov_base), e.g. for the
    alignment checks of bdrv_qiov_is_aligned."""
    return int(_ffi.cast("uintptr_t", _from_buffer(buf)))
