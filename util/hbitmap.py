"""Granular bitmaps for dirty tracking: the API of QEMU's util/hbitmap.c.

QEMU keeps a tree of unsigned longs so that iteration skips empty regions in
O(log n).  Here a single flat bytearray holds the bottom level (one bit per
group of 2**granularity items) and the skipping is done by bytes.lstrip(),
which runs at C speed; the observable behaviour (granularity rounding, count,
get, truncate, iteration order) is the one of the C code.
"""

from __future__ import annotations

HBITMAP_LOG_MAX_SIZE = 41


class HBitmap:
    __slots__ = ('size', 'count', 'granularity', 'bits')

    def __init__(self, size: int, granularity: int):
        self.size = size                # bits in the bottom level
        self.count = 0                  # set bits in the bottom level
        self.granularity = granularity
        self.bits = bytearray((size + 7) >> 3)


class HBitmapIter:
    __slots__ = ('hb', 'granularity', 'pos')

    def __init__(self) -> None:
        self.hb: HBitmap | None = None
        self.granularity = 0
        self.pos = 0                    # next bottom-level bit to look at


def _count_between(hb: HBitmap, start: int, last: int) -> int:
    """hb_count_between: set bits in [start, last] of the bottom level."""
    first_byte, last_byte = start >> 3, last >> 3
    word = int.from_bytes(hb.bits[first_byte:last_byte + 1], 'little')
    word >>= start & 7
    word &= (1 << (last - start + 1)) - 1
    return word.bit_count()


def _fill(hb: HBitmap, start: int, last: int, value: bool) -> None:
    """Set or clear bits [start, last] of the bottom level."""
    bits = hb.bits
    first_byte, last_byte = start >> 3, last >> 3
    if first_byte == last_byte:
        mask = ((2 << (last & 7)) - 1) & ~((1 << (start & 7)) - 1)
        if value:
            bits[first_byte] |= mask
        else:
            bits[first_byte] &= ~mask & 0xff
        return
    head = 0xff & ~((1 << (start & 7)) - 1)
    tail = (2 << (last & 7)) - 1
    if value:
        bits[first_byte] |= head
        bits[last_byte] |= tail
    else:
        bits[first_byte] &= ~head & 0xff
        bits[last_byte] &= ~tail & 0xff
    n = last_byte - first_byte - 1
    if n > 0:
        bits[first_byte + 1:last_byte] = (b'\xff' if value else b'\0') * n


def hbitmap_alloc(size: int, granularity: int) -> HBitmap:
    assert 0 <= granularity < 64
    size = (size + (1 << granularity) - 1) >> granularity
    assert size <= (1 << HBITMAP_LOG_MAX_SIZE)
    return HBitmap(size, granularity)


def hbitmap_granularity(hb: HBitmap) -> int:
    return hb.granularity


def hbitmap_count(hb: HBitmap) -> int:
    """Number of items (not groups) covered by set bits."""
    return hb.count << hb.granularity


def hbitmap_set(hb: HBitmap, start: int, count: int) -> None:
    last = (start + count - 1) >> hb.granularity
    start >>= hb.granularity
    hb.count += (last - start + 1) - _count_between(hb, start, last)
    _fill(hb, start, last, True)


def hbitmap_reset(hb: HBitmap, start: int, count: int) -> None:
    last = (start + count - 1) >> hb.granularity
    start >>= hb.granularity
    hb.count -= _count_between(hb, start, last)
    _fill(hb, start, last, False)


def hbitmap_reset_all(hb: HBitmap) -> None:
    hb.bits = bytearray(len(hb.bits))
    hb.count = 0


def hbitmap_get(hb: HBitmap, item: int) -> bool:
    pos = item >> hb.granularity
    return bool(hb.bits[pos >> 3] & (1 << (pos & 7)))


def hbitmap_truncate(hb: HBitmap, size: int) -> None:
    num_elements = size
    size = (size + (1 << hb.granularity) - 1) >> hb.granularity
    assert size <= (1 << HBITMAP_LOG_MAX_SIZE)
    if size == hb.size:
        return
    if size < hb.size:
        # clear the bits we lose so that count stays right; a partial
        # granularity group at the new end is kept, as in C
        g = 1 << hb.granularity
        start = (num_elements + g - 1) // g * g
        fix_count = (hb.size << hb.granularity) - start
        assert fix_count
        hbitmap_reset(hb, start, fix_count)
    hb.size = size
    nbytes = (size + 7) >> 3
    if nbytes < len(hb.bits):
        del hb.bits[nbytes:]
    else:
        hb.bits.extend(bytes(nbytes - len(hb.bits)))


def hbitmap_iter_init(hbi: HBitmapIter, hb: HBitmap, first: int) -> None:
    pos = first >> hb.granularity
    assert pos < hb.size
    hbi.hb = hb
    hbi.granularity = hb.granularity
    hbi.pos = pos


def hbitmap_iter_next(hbi: HBitmapIter) -> int:
    """Return the first item of the next dirty group, or -1 at the end."""
    hb = hbi.hb
    pos = hbi.pos
    bits = hb.bits
    byte = pos >> 3
    if byte >= len(bits):
        return -1
    cur = bits[byte] >> (pos & 7)
    if cur:
        pos += (cur & -cur).bit_length() - 1
    else:
        rest = bits[byte + 1:]
        stripped = rest.lstrip(b'\0')
        if not stripped:
            hbi.pos = hb.size
            return -1
        byte += 1 + len(rest) - len(stripped)
        cur = bits[byte]
        pos = (byte << 3) + (cur & -cur).bit_length() - 1
    hbi.pos = pos + 1
    return pos << hbi.granularity
