"""A small Pythonic front over the block layer, for simulator and test
authors:

    from block.front import open_image

    with open_image('disk.img', fmt='raw', cache='none') as img:
        img.write(0, b'hello')
        data = img.read(0, 512)

open_image() opens the image through a BlockBackend (blk_new_open) and
returns an Image.  Every failure is an OSError whose errno and text are
QEMU's: a request past the end is EIO ("read failed: Input/output error",
qemu-io's words), a write to a read-only image EPERM, a missing file ENOENT
with "Could not open 'x': No such file or directory".  Arguments of the wrong
Python type raise TypeError, use after close() raises ValueError, as Python's
files do.

The calls are synchronous: each runs the block layer's coroutine and polls
the main AioContext until it is done, as qemu-io does.
"""

from __future__ import annotations

import errno
import os
from typing import Any, NamedTuple, Optional, Union

from block import block_backend, core, io
from block.block_int import (BDRV_BLOCK_ALLOCATED, BDRV_BLOCK_DATA,
                             BDRV_BLOCK_OFFSET_MASK, BDRV_BLOCK_OFFSET_VALID,
                             BDRV_BLOCK_ZERO, BDRV_O_COPY_ON_READ,
                             BDRV_O_RDWR, BDRV_O_UNMAP, BDRV_REQ_MAY_UNMAP,
                             BDRV_SECTOR_BITS, BDRV_SECTOR_SIZE, INT_MAX)

__all__ = ['open_image', 'Image', 'BlockStatus']


class BlockStatus(NamedTuple):
    """The state of the bytes [offset, offset + length) of an image."""
    offset: int
    length: int
    data: bool          # reads come from the image (BDRV_BLOCK_DATA)
    zero: bool          # reads return zeroes (BDRV_BLOCK_ZERO)
    allocated: bool     # this image (not its backing file) decides
    host_offset: Optional[int]   # where the data is in the file, if known


def _check_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError('%s must be an int, not %s' %
                        (name, type(value).__name__))
    return value


def _raise(ret: int, what: str):
    """qemu-io's "<what> failed: <strerror>" as an OSError."""
    raise OSError(-ret, '%s failed: %s' % (what, os.strerror(-ret)))


class Image:
    """An open image; see open_image()."""

    def __init__(self, blk: block_backend.BlockBackend):
        self._blk: Optional[block_backend.BlockBackend] = blk

    @property
    def blk(self) -> block_backend.BlockBackend:
        """The BlockBackend, for the C-shaped API."""
        if self._blk is None:
            raise ValueError('I/O operation on closed image')
        return self._blk

    @property
    def bs(self):
        """The root BlockDriverState."""
        return block_backend.blk_bs(self.blk)

    @property
    def format(self) -> Optional[str]:
        return core.bdrv_get_format_name(self.bs)

    @property
    def filename(self) -> str:
        return self.bs.filename

    @property
    def read_only(self) -> bool:
        return bool(block_backend.blk_is_read_only(self.blk))

    def _check(self, offset: Any, length: Any, what: str) -> None:
        blk = self.blk
        ret = block_backend.blk_check_byte_request(
            blk, _check_int('offset', offset), _check_int('length', length))
        if ret < 0:
            _raise(ret, what)

    def length(self) -> int:
        ret = block_backend.blk_getlength(self.blk)
        if ret < 0:
            _raise(ret, 'getlength')
        return ret

    def read(self, offset: int, length: int) -> bytes:
        """length bytes at offset."""
        self._check(offset, length, 'read')
        buf = bytearray(length)
        ret = block_backend.blk_pread(self.blk, offset, buf, length)
        if ret < 0:
            _raise(ret, 'read')
        return bytes(buf)

    def readinto(self, offset: int, buf: Any) -> int:
        """Fill the writable buffer buf from offset; returns its length."""
        view = memoryview(buf).cast('B')
        if view.readonly:
            raise TypeError('readinto() needs a writable buffer')
        self._check(offset, len(view), 'read')
        ret = block_backend.blk_pread(self.blk, offset, view, len(view))
        if ret < 0:
            _raise(ret, 'read')
        return len(view)

    def write(self, offset: int, data: Any) -> int:
        """Write data (any bytes-like object) at offset; returns its
        length."""
        view = memoryview(data).cast('B')
        self._check(offset, len(view), 'write')
        ret = block_backend.blk_pwrite(self.blk, offset, view, len(view))
        if ret < 0:
            _raise(ret, 'write')
        return len(view)

    def write_zeroes(self, offset: int, length: int,
                     unmap: bool = False) -> None:
        """Zero length bytes at offset; with unmap, the image may free the
        space (if it was opened with discard='unmap', the default)."""
        self._check(offset, length, 'write')
        ret = block_backend.blk_pwrite_zeroes(
            self.blk, offset, length, BDRV_REQ_MAY_UNMAP if unmap else 0)
        if ret < 0:
            _raise(ret, 'write')

    def discard(self, offset: int, length: int) -> None:
        """Tell the image that [offset, offset + length) is unused.  Only
        whole sectors inside the range are discarded; afterwards the range
        reads as zeroes or as its old data, as the format decides."""
        self._check(offset, length, 'discard')
        ret = block_backend.blk_pdiscard(self.blk, offset, length)
        if ret < 0:
            _raise(ret, 'discard')

    def flush(self) -> None:
        ret = block_backend.blk_flush(self.blk)
        if ret < 0:
            _raise(ret, 'flush')

    def block_status(self, offset: int, length: int) -> BlockStatus:
        """The state of the run of sectors that starts with the sector
        holding offset, at most up to offset + length (whole sectors, and
        not past the end of the image)."""
        self._check(offset, 0, 'block status')
        if _check_int('length', length) <= 0 or offset >= self.length():
            raise OSError(errno.EINVAL, 'block status failed: %s' %
                          os.strerror(errno.EINVAL))
        bs = self.bs
        sector_num = offset >> BDRV_SECTOR_BITS
        end = (offset + length + BDRV_SECTOR_SIZE - 1) >> BDRV_SECTOR_BITS
        nb_sectors = min(end - sector_num, INT_MAX >> BDRV_SECTOR_BITS)
        pnum, file = [0], [None]
        ret = io.bdrv_get_block_status(bs, sector_num, nb_sectors, pnum, file)
        if ret < 0:
            _raise(ret, 'block status')
        host = None
        if ret & BDRV_BLOCK_OFFSET_VALID:
            host = ret & BDRV_BLOCK_OFFSET_MASK
        return BlockStatus(sector_num << BDRV_SECTOR_BITS,
                           pnum[0] << BDRV_SECTOR_BITS,
                           bool(ret & BDRV_BLOCK_DATA),
                           bool(ret & BDRV_BLOCK_ZERO),
                           bool(ret & BDRV_BLOCK_ALLOCATED), host)

    def close(self) -> None:
        """Flush and close; closing twice is allowed."""
        if self._blk is not None:
            blk, self._blk = self._blk, None
            block_backend.blk_unref(blk)

    def __enter__(self) -> 'Image':
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._blk is None:
            return '<Image closed>'
        return '<Image %r format=%s>' % (self.filename, self.format)


def _flatten_options(options: dict) -> dict:
    flat: dict = {}
    core.qdict_flatten(options, '', flat)
    return flat


def _dashed(options: dict) -> dict:
    """Keyword names to option names: '_' stands for '-', in nested dicts
    too."""
    return {key.replace('_', '-'):
            _dashed(value) if isinstance(value, dict) else value
            for key, value in options.items()}


_counter = [0]


def _new_name() -> str:
    while True:
        _counter[0] += 1
        name = 'image%d' % _counter[0]
        if not block_backend.blk_by_name(name) and \
                not core.bdrv_find_node(name):
            return name


def open_image(path_or_options: Union[str, os.PathLike, dict],
               fmt: Optional[str] = None, read_only: bool = False,
               cache: Optional[str] = None, copy_on_read: bool = False,
               **options: Any) -> Image:
    """Open an image.

    path_or_options: a file name, a "json:{...}" string, a protocol name
    ("null-co://"), or a dict of block layer options (nested dicts or dotted
    keys: {'driver': 'raw', 'file': {'driver': 'file', 'filename': 'x'}}).
    fmt: the format driver ('raw'); without it the format is probed.
    cache: writeback (the default), writethrough, none, directsync, unsafe.
    copy_on_read: copy what is read from a backing file into the image.
    options: more block layer options; '_' in a name stands for '-'
    (detect_zeroes='unmap', discard='ignore', latency_ns=1000), a dict
    value is a child's options (file={'locking': 'off'}).
    """
    flags = BDRV_O_UNMAP
    if not read_only:
        flags |= BDRV_O_RDWR
    if copy_on_read:
        flags |= BDRV_O_COPY_ON_READ

    pflags, pwritethrough = [flags], [False]
    if cache is not None and \
            core.bdrv_parse_cache_mode(cache, pflags, pwritethrough) != 0:
        raise OSError(errno.EINVAL, 'Invalid cache option: %s' % cache)
    flags = pflags[0]

    opts: dict = {}
    filename: Optional[str] = None
    if isinstance(path_or_options, dict):
        opts.update(_flatten_options(path_or_options))
    elif isinstance(path_or_options, (str, os.PathLike)):
        filename = os.fspath(path_or_options)
        if not isinstance(filename, str):
            raise TypeError('the file name must be a str')
    else:
        raise TypeError('open_image() takes a file name or an options dict, '
                        'not %s' % type(path_or_options).__name__)
    opts.update(_flatten_options(_dashed(options)))
    if fmt is not None:
        opts['driver'] = fmt

    errp, pret = [None], [0]
    blk = block_backend.blk_new_open(_new_name(), filename, None, opts,
                                     flags, errp, pret)
    if blk is None:
        err = errp[0]
        # the errno the message was made from; a layer above may return
        # another one (-EINVAL when the file child cannot be opened)
        raise OSError(err.errno or -pret[0], err.msg)
    block_backend.blk_set_enable_write_cache(blk, not pwritethrough[0])
    return Image(blk)
