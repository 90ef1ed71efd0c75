"""util/qemu_option.py: the parsing of size options (7.2's
parse_option_size on top of qemu_strtosz)."""

import pytest

from util.qemu_option import parse_option_size

HINT = ("Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, "
        "tera-, peta-\nand exabytes, respectively.\n")


@pytest.mark.parametrize("value, size", [
    ("1k", 1024), (" 1k", 1024), ("1.5k", 1536), ("1b", 1), ("0x10", 16),
    ("15E", 15 << 60), ("1.0005k", 1025),   # the fraction rounds half up
])
def test_sizes(value, size):
    errp = [None]
    assert parse_option_size("size", value, errp) == size
    assert errp[0] is None


@pytest.mark.parametrize("value", ["20E", "16E", "99999999999999999999"])
def test_out_of_range(value):
    errp = [None]
    assert parse_option_size("size", value, errp) is None
    assert errp[0].msg == (f"Value '{value}' is out of range for parameter "
                           "'size'")
    assert not errp[0].hint


@pytest.mark.parametrize("value", ["", "abc", "-1", "1 k", "1Q", "1.5"])
def test_bad(value):
    errp = [None]
    assert parse_option_size("size", value, errp) is None
    assert errp[0].msg == ("Parameter 'size' expects a non-negative number "
                           "below 2^64")
    assert errp[0].hint == HINT
