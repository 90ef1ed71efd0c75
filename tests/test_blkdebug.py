"""Tests of blkdebug (drivers/blkdebug.py): reading rules from the config
file and the options, error injection (errno, once, immediately, sector,
iotype), state transitions, breakpoints that suspend and resume a request,
and align.  The comparison tests (tests/compare, bd_* and iotest077_*)
check the same against the installed qemu-io.
"""

import errno

import pytest

from block import core, io
from block.block_int import (BLKDBG_PWRITEV, BLKDBG_PWRITEV_RMW_HEAD,
                             BLKDBG_READ_AIO, BLKDBG_WRITE_AIO, BDRV_O_RDWR,
                             BDRV_O_UNMAP)
from drivers import bdrv_find_protocol, blkdebug
from util.aio import aio_poll, qemu_get_aio_context
from util.coroutine import qemu_coroutine_create, qemu_coroutine_enter
from util.iov import QEMUIOVector, qemu_iovec_init_external

KiB = 1 << 10
CTX = qemu_get_aio_context()


@pytest.fixture
def img(tmp_path):
    path = tmp_path / "t.raw"
    path.write_bytes(bytes(64 * KiB))
    return path


def write_conf(tmp_path, text):
    path = tmp_path / "bd.conf"
    path.write_text(text)
    return str(path)


def bd_open(filename, options=None):
    """Open filename; returns (node or None, error message or None)."""
    pbs, errp = [None], [None]
    ret = core.bdrv_open(pbs, filename, None, dict(options or {}),
                         BDRV_O_RDWR | BDRV_O_UNMAP, errp)
    if ret < 0:
        assert errp[0] is not None
        return None, errp[0].msg
    return pbs[0], None


def open_ok(filename, options=None):
    bs, msg = bd_open(filename, options)
    assert bs is not None, msg
    return bs


def open_error(tmp_path, img, conf_text):
    bs, msg = bd_open("blkdebug:%s:%s" % (write_conf(tmp_path, conf_text),
                                          img), {"driver": "raw"})
    assert bs is None
    return msg


@pytest.fixture
def nodes():
    """Every node opened in the test, closed at its end."""
    opened = []
    yield opened
    for bs in opened:
        core.bdrv_unref(bs)


def raw_over_blkdebug(nodes, tmp_path, img, conf_text=None, options=None):
    """raw over blkdebug over the image: the raw layer raises READ_AIO and
    WRITE_AIO on blkdebug, as in QEMU.  Returns (raw node, blkdebug node)."""
    conf = write_conf(tmp_path, conf_text) if conf_text is not None else ""
    bs = open_ok("blkdebug:%s:%s" % (conf, img),
                 dict(options or {}, driver="raw"))
    nodes.append(bs)
    return bs, bs.file.bs


def rule(section, **keys):
    return "[%s]\n" % section + "".join('%s = "%s"\n' % kv
                                        for kv in keys.items())


def pread(bs, offset, count):
    buf = bytearray(count)
    ret = io.bdrv_pread(bs, offset, buf, count)
    return ret if ret < 0 else bytes(buf)


def pwrite(bs, offset, data):
    return io.bdrv_pwrite(bs, offset, data, len(data))


# --- names and filenames ------------------------------------------------------

def test_event_names_both_spellings():
    get = blkdebug.get_event_by_name
    assert get("pwritev_rmw_head") == BLKDBG_PWRITEV_RMW_HEAD
    assert get("pwritev_rmw.head") == BLKDBG_PWRITEV_RMW_HEAD
    assert get("l1_grow.alloc_table") == get("l1_grow_alloc_table")
    assert get("refblock_alloc") != get("refblock_alloc_hookup")
    assert get("refblock_alloc.hookup") == get("refblock_alloc_hookup")
    assert get("read_aio") == BLKDBG_READ_AIO
    assert get("none") == blkdebug.BLKDBG_NONE
    assert get("cor_write") is not None
    assert get("pwritev.rmw_head") is None
    assert get("bogus") is None


def test_parse_filename():
    def parse(filename):
        options, errp = {}, [None]
        blkdebug.blkdebug_parse_filename(filename, options, errp)
        return options, errp[0] and errp[0].msg

    assert parse("blkdebug::img") == ({"x-image": "img"}, None)
    assert parse("blkdebug:c.conf:img") == (
        {"config": "c.conf", "x-image": "img"}, None)
    # the image may have a protocol prefix of its own
    assert parse("blkdebug::blkdebug::img") == (
        {"x-image": "blkdebug::img"}, None)
    assert parse("img") == ({"x-image": "img"}, None)
    assert parse("blkdebug:img") == (
        {}, "blkdebug requires both config file and image path")
    assert bdrv_find_protocol("blkdebug::img", True, None) is \
        blkdebug.bdrv_blkdebug


# --- the config file ------------------------------------------------------------

def test_config_rules(tmp_path, img, nodes):
    _, bd = raw_over_blkdebug(nodes, tmp_path, img,
                              "# rules\n\n"
                              + rule("inject-error", event="read_aio",
                                     errno="28", once="on", sector="8")
                              + rule("inject-error", event="read_aio",
                                     state="2", immediately="on",
                                     iotype="write")
                              + rule("set-state", event="read_aio",
                                     state="1", new_state="2"))
    s = bd.opaque
    rules = s.rules[BLKDBG_READ_AIO]
    # each rule goes to the head of its event's list, set-state ones last
    assert [r.action for r in rules] == [blkdebug.ACTION_SET_STATE,
                                         blkdebug.ACTION_INJECT_ERROR,
                                         blkdebug.ACTION_INJECT_ERROR]
    st, second, first = rules
    assert (st.state, st.new_state) == (1, 2)
    assert (first.error, first.once, first.immediately, first.offset,
            first.state) == (28, True, False, 8 * 512, 0)
    assert first.iotype_mask == blkdebug._IO_TYPES_DEFAULT
    assert (second.error, second.once, second.immediately, second.offset,
            second.state) == (errno.EIO, False, True, -1, 2)
    assert second.iotype_mask == 1 << blkdebug.BLKDEBUG_IO_TYPE_WRITE
    assert s.state == 1
    assert s.config_file.endswith("bd.conf")
    assert bd.filename == "blkdebug:%s:%s" % (s.config_file, img)


def test_config_syntax_of_qemu(tmp_path, img, nodes):
    """Groups with an id, spaces, and the last of a repeated key."""
    _, bd = raw_over_blkdebug(
        nodes, tmp_path, img,
        '[inject-error "a"]\n   event   =   "read_aio"  \n'
        'event = "write_aio"\n[inject-error]\nevent = "read_aio"\n')
    assert len(bd.opaque.rules[BLKDBG_WRITE_AIO]) == 1
    assert len(bd.opaque.rules[BLKDBG_READ_AIO]) == 1


@pytest.mark.parametrize("text, msg", [
    ("garbage\n", "no group defined"),
    ('event = "read_aio"\n', "no group defined"),
    ("[inject-error]\n   \n", "parse error"),
    ('[bogus]\nevent = "read_aio"\n', "There is no option group 'bogus'"),
    ('[inject-error]\nevent = "read_aio"\nfoo = "1"\n[bogus]\n',
     "Invalid parameter 'foo'"),
    ('[inject-error]\nevent="read_aio"\n',
     "Invalid parameter 'event=\"read_aio\"'"),
    ("[inject-error]\nevent = read_aio\n", "invalid parameter value: "),
    ('[inject-error]\nerrno = "5"\n', "Missing event name for rule"),
    ('[inject-error]\nevent = "bogus"\n', "invalid parameter value: bogus"),
    ('[set-state]\nevent = "bogus2"\n[inject-error]\nevent = "bogus"\n',
     "invalid parameter value: bogus"),
    ('[inject-error]\nevent = "read_aio"\nerrno = "x"\n',
     "Parameter 'errno' expects a number"),
    ('[inject-error]\nevent = "read_aio"\nonce = "maybe"\n',
     "Parameter 'once' expects 'on' or 'off'"),
    ('[inject-error]\nevent = "read_aio"\niotype = "x"\n',
     "invalid parameter value: x"),
    ('[set-state]\nevent = "read_aio"\nerrno = "2"\n',
     "Invalid parameter 'errno'"),
    ('[inject-error "a"]\nevent = "read_aio"\n[inject-error "a"]\n',
     "Duplicate ID 'a' for inject-error"),
    ('[inject-error "1a"]\n', "Parameter 'id' expects an identifier"),
])
def test_config_errors(tmp_path, img, text, msg):
    assert open_error(tmp_path, img, text).endswith(msg)


def test_config_file_missing(tmp_path, img):
    bs, msg = bd_open("blkdebug:%s:%s" % (tmp_path / "nosuch", img),
                      {"driver": "raw"})
    assert msg.endswith("Could not read blkdebug config file: "
                        "No such file or directory")


# --- rules as options ---------------------------------------------------------------

def test_options_rules(tmp_path, img, nodes):
    raw, bd = raw_over_blkdebug(nodes, tmp_path, img, None, {
        "file.inject-error.0.event": "read_aio",
        "file.inject-error.0.errno": "28",
        "file.inject-error.1.event": "write_aio",
        "file.set-state.event": "write_aio",
        "file.set-state.new_state": "3"})
    assert len(bd.opaque.rules[BLKDBG_READ_AIO]) == 1
    assert len(bd.opaque.rules[BLKDBG_WRITE_AIO]) == 2
    assert pread(raw, 0, 512) == -errno.ENOSPC
    assert pwrite(raw, 0, b"x" * 512) == -errno.EIO
    assert bd.opaque.state == 3
    # rules given as options cannot be written as a plain filename
    assert bd.filename.startswith("json:")


@pytest.mark.parametrize("options, msg", [
    ({"inject-error.0.event": "read_aio", "inject-error.event": "read_aio"},
     "Unknown option '0.event' for [inject-error]"),
    ({"inject-error.0.event": "read_aio", "inject-error.0.foo": "1"},
     "[inject-error] section doesn't support the option 'foo'"),
    ({"inject-error.0.event": "read_aio", "inject-error.2.event": "x"},
     "Unused option '2.event' for [inject-error]"),
    ({"set-state.0.event": "bogus"}, "invalid parameter value: bogus"),
])
def test_options_errors(img, options, msg):
    options = {"file." + k: v for k, v in options.items()}
    bs, got = bd_open("blkdebug::%s" % img, dict(options, driver="raw"))
    assert got == msg


# --- error injection ------------------------------------------------------------------

def test_inject_error(tmp_path, img, nodes):
    raw, bd = raw_over_blkdebug(nodes, tmp_path, img,
                                rule("inject-error", event="read_aio"))
    assert pwrite(raw, 0, b"\1" * 512) == 512     # no event yet
    assert pread(raw, 0, 512) == -errno.EIO
    # the event's rules stay active until an event activates others
    assert pwrite(raw, 0, b"\2" * 512) == -errno.EIO
    assert pread(raw, 0, 512) == -errno.EIO
    assert img.read_bytes()[:512] == b"\1" * 512


def test_inject_errno_once(tmp_path, img, nodes):
    raw, bd = raw_over_blkdebug(
        nodes, tmp_path, img,
        rule("inject-error", event="read_aio", once="on")
        + rule("inject-error", event="read_aio", once="on", errno="28"))
    # in the order of the file, each rule once
    assert pread(raw, 0, 512) == -errno.EIO
    assert pwrite(raw, 0, b"\3" * 512) == -errno.ENOSPC
    assert pread(raw, 0, 512) == b"\0" * 512
    assert bd.opaque.rules[BLKDBG_READ_AIO] == []


def test_inject_sector(tmp_path, img, nodes):
    raw, bd = raw_over_blkdebug(nodes, tmp_path, img,
                                rule("inject-error", event="read_aio",
                                     sector="8"))
    assert pread(raw, 0, 512) == b"\0" * 512
    assert pread(raw, 4 * KiB - 512, 512) == b"\0" * 512
    assert pread(raw, 4 * KiB, 512) == -errno.EIO
    assert pread(raw, 0, 8 * KiB) == -errno.EIO
    assert pread(raw, 4 * KiB + 512, 512) == b"\0" * 512


def test_inject_iotype(tmp_path, img, nodes):
    raw, bd = raw_over_blkdebug(nodes, tmp_path, img,
                                rule("inject-error", event="read_aio",
                                     iotype="write"))
    assert pread(raw, 0, 512) == b"\0" * 512
    assert pwrite(raw, 0, b"\4" * 512) == -errno.EIO


def test_inject_event_none(tmp_path, img, nodes):
    """Rules on the event "none" are active from the start."""
    raw, bd = raw_over_blkdebug(nodes, tmp_path, img,
                                rule("inject-error", event="none",
                                     once="on"))
    assert pwrite(raw, 0, b"\5" * 512) == -errno.EIO
    assert pwrite(raw, 0, b"\5" * 512) == 512


def run_until_done(bd, fn, *args):
    """Run fn in a coroutine; returns (result, number of aio_poll rounds
    it needed to finish)."""
    result = []
    co = qemu_coroutine_create(lambda _: result.append(fn(*args)))
    qemu_coroutine_enter(co, None)
    rounds = 0
    while not result:
        aio_poll(CTX, True)
        rounds += 1
    return result[0], rounds


@pytest.mark.parametrize("immediately, rounds", [("on", 0), ("off", 1)])
def test_inject_immediately(tmp_path, img, nodes, immediately, rounds):
    """immediately fails in the request; otherwise the error comes from
    the event loop.  Either way with the rule's errno (7.2)."""
    raw, bd = raw_over_blkdebug(nodes, tmp_path, img,
                                rule("inject-error", event="none",
                                     errno="28", immediately=immediately))
    buf = bytearray(512)
    qiov = QEMUIOVector()
    qemu_iovec_init_external(qiov, [memoryview(buf)], 1)
    assert run_until_done(bd, blkdebug.blkdebug_co_readv, bd, 0, 1,
                          qiov) == (-errno.ENOSPC, rounds)


# --- states -----------------------------------------------------------------------------

def test_set_state(tmp_path, img, nodes):
    raw, bd = raw_over_blkdebug(
        nodes, tmp_path, img,
        rule("set-state", event="write_aio", state="1", new_state="2")
        + rule("set-state", event="write_aio", state="2", new_state="3")
        + rule("set-state", event="write_aio", state="3", new_state="1")
        + rule("inject-error", event="read_aio", state="3", once="on"))
    s = bd.opaque
    states = []
    for _ in range(4):
        assert pwrite(raw, 0, b"\6" * 512) == 512
        states.append(s.state)
    # one transition per event: the rules see the state before it
    assert states == [2, 3, 1, 2]
    assert pread(raw, 0, 512) == b"\6" * 512
    assert pwrite(raw, 0, b"\6" * 512) == 512
    assert s.state == 3
    assert pread(raw, 0, 512) == -errno.EIO
    assert pread(raw, 0, 512) == b"\6" * 512


def test_set_state_any_and_events_by_hand(tmp_path, img, nodes):
    raw, bd = raw_over_blkdebug(
        nodes, tmp_path, img,
        rule("set-state", event="pwritev", new_state="7")
        + rule("inject-error", event="read_aio", state="7"))
    assert bd.opaque.state == 1
    core.bdrv_debug_event(bd, BLKDBG_READ_AIO)
    assert bd.opaque.active_rules == []
    core.bdrv_debug_event(bd, BLKDBG_PWRITEV)
    assert bd.opaque.state == 7
    core.bdrv_debug_event(bd, BLKDBG_READ_AIO)
    assert len(bd.opaque.active_rules) == 1


# --- breakpoints ----------------------------------------------------------------------------

@pytest.fixture
def printed(monkeypatch):
    out = []
    monkeypatch.setattr(blkdebug, "printf",
                        lambda fmt, *args: out.append(fmt % args))
    return out


def aio_write(raw, offset, data):
    """Start a write; returns the list its return value will be put in."""
    done = []
    qiov = QEMUIOVector()
    qemu_iovec_init_external(qiov, [memoryview(bytearray(data))], 1)
    io.bdrv_aio_writev(raw, offset // 512, qiov, len(data) // 512,
                       lambda opaque, ret: done.append(ret), None)
    return done


def poll_until(cond):
    for _ in range(1000):
        if cond():
            return
        aio_poll(CTX, True)
    raise AssertionError("condition never met")


def test_breakpoint_suspends_and_resumes(tmp_path, img, nodes, printed):
    raw, bd = raw_over_blkdebug(nodes, tmp_path, img)
    assert core.bdrv_debug_breakpoint(raw, "pwritev", "A") == 0
    done = aio_write(raw, 0, b"\7" * 4096)
    poll_until(lambda: core.bdrv_debug_is_suspended(raw, "A"))
    for _ in range(3):
        aio_poll(CTX, False)
    assert done == []
    assert img.read_bytes()[:4096] == bytes(4096)
    assert printed == ["blkdebug: Suspended request 'A'\n"]

    assert core.bdrv_debug_resume(raw, "A") == 0
    assert printed[1:] == ["blkdebug: Resuming request 'A'\n"]
    assert not core.bdrv_debug_is_suspended(raw, "A")
    poll_until(lambda: done)
    assert done == [0]
    assert img.read_bytes()[:4096] == b"\7" * 4096
    # the breakpoint went with its hit
    assert core.bdrv_debug_resume(raw, "A") == -errno.ENOENT


def test_breakpoint_old_spelling_and_errors(tmp_path, img, nodes, printed):
    raw, bd = raw_over_blkdebug(nodes, tmp_path, img)
    assert core.bdrv_debug_breakpoint(raw, "bogus", "A") == -errno.ENOENT
    assert core.bdrv_debug_remove_breakpoint(raw, "A") == -errno.ENOENT
    assert core.bdrv_debug_breakpoint(raw, "pwritev_rmw.head", "A") == 0
    assert core.bdrv_debug_remove_breakpoint(raw, "A") == 0
    assert core.bdrv_debug_remove_breakpoint(raw, "A") == -errno.ENOENT
    # an unused breakpoint goes, and writes pass
    assert core.bdrv_debug_breakpoint(raw, "pwritev", "B") == 0
    assert core.bdrv_debug_remove_breakpoint(raw, "B") == 0
    assert pwrite(raw, 0, b"\1" * 512) == 512
    assert printed == []


def test_remove_breakpoint_resumes(tmp_path, img, nodes, printed):
    raw, bd = raw_over_blkdebug(nodes, tmp_path, img)
    core.bdrv_debug_breakpoint(raw, "pwritev", "A")
    done = aio_write(raw, 0, b"\2" * 512)
    poll_until(lambda: core.bdrv_debug_is_suspended(raw, "A"))
    # resumed, though reported as not found (as 7.2 does)
    assert core.bdrv_debug_remove_breakpoint(raw, "A") == -errno.ENOENT
    poll_until(lambda: done)
    assert done == [0]
    assert printed == ["blkdebug: Suspended request 'A'\n",
                       "blkdebug: Resuming request 'A'\n"]


def test_breakpoint_on_node_without_blkdebug(img, nodes):
    raw = open_ok(str(img), {"driver": "raw"})
    nodes.append(raw)
    assert core.bdrv_debug_breakpoint(raw, "pwritev", "A") == -errno.ENOTSUP


# --- align -----------------------------------------------------------------------------------

def test_align_read_modify_write(tmp_path, img, nodes, printed):
    raw, bd = raw_over_blkdebug(nodes, tmp_path, img, None,
                                {"file.align": "4k"})
    assert bd.request_alignment == 4096
    core.bdrv_debug_breakpoint(raw, "pwritev_rmw_head", "A")
    done = aio_write(raw, 512, b"\x0a" * 512)
    poll_until(lambda: core.bdrv_debug_is_suspended(raw, "A"))
    core.bdrv_debug_resume(raw, "A")
    poll_until(lambda: done)
    assert done == [0]
    data = img.read_bytes()
    assert data[:512] == bytes(512)
    assert data[512:1024] == b"\x0a" * 512
    assert data[1024:4096] == bytes(3072)


@pytest.mark.parametrize("align, msg", [
    ("3", "Cannot meet constraints with align 3"),
    ("2G", "Cannot meet constraints with align 2147483648"),
    ("x", "Parameter 'align' expects a non-negative number below 2^64"),
])
def test_align_errors(img, align, msg):
    bs, got = bd_open("blkdebug::%s" % img,
                      {"driver": "raw", "file.align": align})
    assert got == msg


def test_limits(img, nodes):
    raw = open_ok("blkdebug::%s" % img, {
        "driver": "raw", "file.align": "4k", "file.max-transfer": "64k",
        "file.opt-discard": "8k", "file.max-discard": "16k"})
    nodes.append(raw)
    bd = raw.file.bs
    assert bd.bl.max_transfer_length == 128
    assert (bd.bl.discard_alignment, bd.bl.max_discard) == (16, 32)
    bs, msg = bd_open("blkdebug::%s" % img, {
        "driver": "raw", "file.align": "4k", "file.max-transfer": "6k"})
    assert msg == "Cannot meet constraints with max-transfer 6144"
