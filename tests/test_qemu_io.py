"""Tests of the pieces of pyqemu-io (block/qemu_io.py, block/qemu_io_cmds.py)
and of the C-library behaviour they rest on (util/cutils.py).

The expected values come from the installed qemu-io 7.2; where the real tool
is installed, the help texts are also compared with its output directly.
The side-by-side comparison of whole sessions is tests/compare/'s job.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys

import pytest

from block import block_backend as bb
from block import qemu_io, qemu_io_cmds as cmds
from block.block_int import BDRV_O_RDWR
from util import cutils
from util.cutils import (CFile, Getopt, no_argument, option, qemu_strtosz,
                         required_argument, strtod, strtol, strtoull)
from util.qemu_option import QemuOptsList

REAL_QEMU_IO = shutil.which('qemu-io')
needs_real = pytest.mark.skipif(REAL_QEMU_IO is None,
                                reason='qemu-io (qemu-utils) not installed')

# what the installed 7.2 reads for these strings ("read -v X 0" prints the
# offset): None means it is rejected as non-numeric, 'ERANGE' as too large
SIZES = [
    ('0', 0), ('1.5k', 1536), ('0x10', 16), ('0X10', 16), (' 5', 5),
    ('5k', 5120), ('5K', 5120), ('5b', 5), ('5B', 5), ('1g', 1 << 30),
    ('1M', 1 << 20), ('1T', 1 << 40), ('1P', 1 << 50), ('1E', 1 << 60),
    ('1e', 1 << 60), ('1.5E', 1729382256910270464),
    ('1.5e', 1729382256910270464), ('1.5t', 1649267441664),
    ('07', 7), ('08', 8), ('+5', 5), ('5.k', 5120),
    ('1.234567k', 1264), ('1.0000000001k', 1024),
    ('1.999999999999999999k', 1024), ('0.000000000000000000001k', 0),
    ('7.99999999999999999999E', 7 << 60),
    ('9223372036854775807', (1 << 63) - 1),
    ('1.' + '0' * 400 + '1k', 1),
    ('1e3', None), ('1.5', None), ('0.5', None), ('.5k', None),
    ('5kb', None), ('k', None), ('', None), ('1.1b', None), ('0x', None),
    ('0xk', None), ('inf', None), ('nan', None), ('5,5k', None),
    ('00x10', None), ('0x1.8k', None), ('0x1.k', None), ('1.5ek', None),
    ('1.0e0k', None), ('.k', None), ('1..k', None), ('-1', None),
    ('1.' + '0' * 400 + '1', None),
    ('8E', 'ERANGE'), ('16E', 'ERANGE'), ('9223372036854775808', 'ERANGE'),
    ('18446744073709551615', 'ERANGE'), ('18446744073709551616', 'ERANGE'),
]


@pytest.mark.parametrize('text,expected', SIZES)
def test_cvtnum(text, expected):
    ret = cmds.cvtnum(text)
    if expected is None:
        assert ret == -errno.EINVAL
    elif expected == 'ERANGE':
        assert ret == -errno.ERANGE
    else:
        assert ret == expected


def test_qemu_strtosz_end():
    end = [0]
    assert qemu_strtosz('12k,rest', end) == (0, 12288)
    assert end[0] == 3
    assert qemu_strtosz('0x1k', None) == (0, 1024)    # and a warning


def test_qemu_strtosz_hex_suffix_warning(capsys):
    from util.qemu_error import error_init
    error_init('/usr/bin/qemu-io')
    cmds.cvtnum('0x1k')
    assert capsys.readouterr().err == ('qemu-io: warning: Using a multiplier '
                                       'suffix on hex numbers is deprecated: '
                                       '0x1k\n')


def test_libc_strto():
    assert strtoull(' -5', 10) == ((1 << 64) - 5, 3, 0)
    assert strtoull('99999999999999999999', 10) == \
        ((1 << 64) - 1, 20, errno.ERANGE)
    assert strtoull('0xg', 0) == (0, 1, 0)
    assert strtoull('x', 0) == (0, 0, 0)
    assert strtol('077', 0) == (63, 3, 0)
    assert strtol('08', 0) == (0, 1, 0)
    assert strtol('-0x10', 0) == (-16, 5, 0)
    assert strtol('9223372036854775808', 0) == \
        ((1 << 63) - 1, 19, errno.ERANGE)
    assert strtod('.5e') == (0.5, 2, 0)
    assert strtod('1e5x') == (100000.0, 3, 0)
    assert strtod('.') == (0.0, 0, 0)
    assert strtod('0x1.8p1') == (3.0, 7, 0)
    assert strtod('1e999')[2] == errno.ERANGE


@pytest.mark.parametrize('arg,expected', [
    ('0xab', 0xab), ('255', 255), ('077', 63), ('0', 0),
    ('256', -1), ('-1', -1), ('abc', -1), ('0x1g', -1), ('08', -1), ('"', -1),
])
def test_parse_pattern(capfd, arg, expected):
    assert cmds.parse_pattern(arg) == expected
    cutils.fflush_stdout()
    out = capfd.readouterr().out
    assert out == ('' if expected >= 0 else
                   '%s is not a valid pattern byte\n' % arg)


@pytest.mark.parametrize('value,expected', [
    (0, '0 bytes'), (512, '512 bytes'), (1023, '1023 bytes'),
    (1024, '1 KiB'), (1536, '1.500 KiB'), (4096, '4 KiB'),
    (1048576, '1 MiB'), (1 << 30, '1 GiB'), (3 << 30, '3 GiB'),
    (1 << 40, '1 TiB'), (1 << 50, '1 PiB'), (1 << 60, '1 EiB'),
    (1264, '1.234 KiB'), (100.5, '100.500000 bytes'),
    (100.000123, '100 bytes'), (1024 * 1000.0005, '1000 KiB'),
    (float('inf'), 'inf EiB'),
])
def test_cvtstr(value, expected):
    assert cmds.cvtstr(value) == expected


def test_timestr():
    ns = 1000000000
    assert cmds.timestr(12345678, 0) == '00.01 sec'
    assert cmds.timestr(999 * 1000000, 0) == '01.00 sec'
    assert cmds.timestr(12345678, cmds.VERBOSE_FIXED_TIME) == '0:00:00.01'
    assert cmds.timestr(3723 * ns + 500000000, 0) == '1:02:03.50'
    assert cmds.timestr(83 * ns, cmds.TERSE_FIXED_TIME) == '1:23.00'


def test_print_report(capfd):
    cmds.print_report('read', 500000000, 0, 512, 512, 1, False)
    cmds.print_report('wrote', 2000000000, 4096, 4096, 4096, 1, True)
    cutils.fflush_stdout()
    assert capfd.readouterr().out == (
        'read 512/512 bytes at offset 0\n'
        '512 bytes, 1 ops; 00.50 sec (1 KiB/sec and 2.0000 ops/sec)\n'
        '4096,1,0:00:02.00,2048.000,0.500\n')


def test_dump_buffer(capfd):
    buf = memoryview(bytes(range(0x30, 0x30 + 20)) + b'\x00 .\xff')
    cmds.dump_buffer(buf, 0x1000, len(buf))
    cutils.fflush_stdout()
    assert capfd.readouterr().out == (
        '00001000:  30 31 32 33 34 35 36 37 38 39 3a 3b 3c 3d 3e 3f'
        '  0123456789......\n'
        '00001010:  40 41 42 43 00 20 2e ff  .ABC....\n')


def test_breakline():
    assert cmds.breakline('  read  -v 0\t1  ') == ['read', '-v', '0\t1']
    assert cmds.breakline('') == []


def run_getopt(argv, optstring, longopts=None):
    g = Getopt(argv, optstring, longopts)
    return list(g), g.argv, g.optind


def test_getopt_permutes(capfd):
    opts, argv, optind = run_getopt(
        ['read', '0', '512', '-v', '-P', '5', '-qC'], 'bCl:pP:qs:v')
    assert opts == [('v', None), ('P', '5'), ('q', None), ('C', None)]
    assert argv[optind:] == ['0', '512']
    assert capfd.readouterr().err == ''


def test_getopt_double_dash():
    opts, argv, optind = run_getopt(['truncate', '--', '-1'], 'm:')
    assert opts == [] and argv[1] == '--' and argv[optind:] == ['-1']
    opts, argv, optind = run_getopt(['read', '0', '--', '-v', '1'], 'v')
    assert opts == [] and argv[optind:] == ['0', '-v', '1']


def test_getopt_errors(capfd):
    opts, argv, optind = run_getopt(['read', '--x', '-aP'], 'P:v')
    assert opts == [('?', None), ('?', None), ('?', None), ('?', None)]
    assert capfd.readouterr().err == (
        "read: invalid option -- '-'\n"
        "read: invalid option -- 'x'\n"
        "read: invalid option -- 'a'\n"
        "read: option requires an argument -- 'P'\n")


def test_getopt_long(capfd):
    lopt = [option('cmd', required_argument, 'c'),
            option('copy-on-read', no_argument, 'C'),
            option('cache', required_argument, 't'),
            option('help', no_argument, 'h')]
    opts, argv, optind = run_getopt(
        ['qemu-io', 'img', '--ca=none', '--cmd', 'read 0 1', '--he'],
        'c:Ct:h', lopt)
    assert opts == [('t', 'none'), ('c', 'read 0 1'), ('h', None)]
    assert argv[optind:] == ['img']
    assert capfd.readouterr().err == ''
    opts, _, _ = run_getopt(['qemu-io', '--c', '--help=1', '--bogus=2',
                             '--cmd'], 'c:Ct:h', lopt)
    assert opts == [('?', None)] * 4
    assert capfd.readouterr().err == (
        "qemu-io: option '--c' is ambiguous; possibilities: '--cmd' "
        "'--copy-on-read' '--cache'\n"
        "qemu-io: option '--help' doesn't allow an argument\n"
        "qemu-io: unrecognized option '--bogus=2'\n"
        "qemu-io: option '--cmd' requires an argument\n")


def test_cfile_full_buffering(tmp_path):
    """Full buffering writes whole buffers, at multiples of the buffer size
    since the last flush, whatever the sizes of the writes."""
    r, w = os.pipe()
    try:
        f = CFile(w)
        f.write('x' * 10)
        assert f.size == 4096 and not f.line_buffered    # a pipe's blksize
        f.write('y' * 5000)
        assert os.read(r, 100000) == b'x' * 10 + b'y' * 4086
        f.write('z' * 9000)
        assert os.read(r, 100000) == b'y' * 914 + b'z' * 7278
        f.flush()
        assert os.read(r, 100000) == b'z' * 1722
        f.write('a' * 4096)
        f.discard()
        f.write('b')
        f.flush()
        assert os.read(r, 100000) == b'b'
    finally:
        os.close(r)
        os.close(w)


def help_text(capfd, *cmd) -> str:
    cmds.help_f(None, ['help', *cmd])
    cutils.fflush_stdout()
    return capfd.readouterr().out


COMMANDS = ['abort', 'aio_flush', 'aio_read', 'aio_write', 'alloc', 'break',
            'close', 'discard', 'flush', 'help', 'info', 'length', 'map',
            'open', 'quit', 'read', 'readv', 'remove_break', 'reopen',
            'resume', 'sigraise', 'sleep', 'truncate', 'wait_break', 'write',
            'writev']


@pytest.fixture(scope='module', autouse=True)
def qemu_io_commands():
    """main() adds open, close and quit to the table."""
    assert qemu_io.main(['qemu-io', '-c', 'quit']) == 0


def test_command_table():
    assert [ct.name for ct in cmds.cmdtab] == COMMANDS
    for alt, name in [('r', 'read'), ('w', 'write'), ('?', 'help'),
                      ('o', 'open'), ('c', 'close'), ('q', 'quit'),
                      ('t', 'truncate'), ('l', 'length'), ('i', 'info'),
                      ('d', 'discard'), ('a', 'alloc'), ('f', 'flush')]:
        assert cmds.find_command(alt).name == name


def test_help_all(capfd):
    out = help_text(capfd)
    assert out.startswith('abort -- simulate a program crash using abort(3)\n')
    assert 'map  -- prints the allocated areas of a file\n' in out
    assert out.endswith("\nUse 'help commandname' for extended help.\n")


def test_help_alias(capfd):
    assert help_text(capfd, '?') == \
        '? [command] -- help for one or all commands\n'
    assert help_text(capfd, 'nosuch') == 'command nosuch not found\n'


@needs_real
@pytest.mark.parametrize('cmd', [None] + COMMANDS)
def test_help_matches_real(capfd, cmd):
    args = ['help'] + ([cmd] if cmd else [])
    real = subprocess.run([REAL_QEMU_IO, '-c', ' '.join(args)],
                          capture_output=True, check=True).stdout
    assert help_text(capfd, *args[1:]).encode() == real


@needs_real
@pytest.mark.parametrize('argv', [['-h'], ['--help'], ['a', 'b']])
def test_usage_matches_real(capfd, argv):
    real = subprocess.run([REAL_QEMU_IO] + argv, capture_output=True)
    status = qemu_io.main(['qemu-io'] + argv)
    out = capfd.readouterr().out
    assert (status, out.encode()) == (real.returncode, real.stdout)


def test_command_errors(capfd):
    assert cmds.qemuio_command(None, 'read 0 1') == -errno.EINVAL
    assert cmds.qemuio_command(None, 'bogus') == -errno.EINVAL
    assert cmds.qemuio_command(None, 'help a b') == -errno.EINVAL
    assert cmds.qemuio_command(None, '   ') == 0
    assert cmds.qemuio_command(None, 'sleep x') == -errno.EINVAL
    assert cmds.qemuio_command(None, 'sigraise 100') == -errno.EINVAL
    cutils.fflush_stdout()
    out, err = capfd.readouterr()
    assert err == ("no file open, try 'help open'\n"
                   'command "bogus" not found\n'
                   'bad argument count 2 to help, expected between 0 and 1 '
                   'arguments\n')
    assert out == ("x is not a valid number\n"
                   "signal argument '100' is too large to be a valid signal\n")


def test_sleep_runs_the_main_loop():
    assert cmds.qemuio_command(None, 'sleep 1') == 0
    assert cmds.qemuio_command(None, 'sleep 0x0') == 0


def test_keyval_parse():
    errp = [None]
    assert qemu_io.keyval_parse('throttle-group,id=t,x=a,,b', 'qom-type',
                                errp) == {'qom-type': 'throttle-group',
                                          'id': 't', 'x': 'a,b'}
    assert qemu_io.keyval_parse('t,x', 'qom-type', errp) is None
    assert errp[0].msg == "Expected '=' after parameter 'x'"


# --- whole runs (in-process), on a raw file --------------------------------

needs_byte_api = pytest.mark.skipif(
    not all(hasattr(bb, f) for f in ('blk_aio_preadv', 'blk_aio_pwritev',
                                     'blk_pdiscard', 'blk_co_pwrite_zeroes')),
    reason='block_backend.py lacks the 2.7 byte-based blk_* functions')


def run_qemu_io(capfd, *argv: str) -> tuple[int, str, str]:
    qemu_io.qemuio_blk = None
    qemu_io.quit_qemu_io = False
    qemu_io.cmdline.clear()
    qemu_io.imageOpts = False
    status = qemu_io.main(['qemu-io'] + list(argv))
    out, err = capfd.readouterr()
    return status, out, err


def timing_filtered(out: str) -> str:
    import re
    return re.sub(r'[0-9]* ops; [0-9/:. sec]* \([0-9/.inf]* '
                  r'[EPTGMKiBbytes]*/sec and [0-9/.inf]* ops/sec\)',
                  'X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)', out)


def test_run_read_write(capfd, tmp_path):
    img = tmp_path / 'img'
    img.write_bytes(b'\0' * 65536)
    status, out, err = run_qemu_io(
        capfd, '-f', 'raw', str(img), '-c', 'read -v 0 16',
        '-c', 'read -P 1 0 512', '-c', 'length', '-c', 'read 64k 1')
    assert (status, err) == (1, '')
    assert timing_filtered(out) == (
        '00000000:  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00'
        '  ................\n'
        'read 16/16 bytes at offset 0\n'
        '16 bytes, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)\n'
        'Pattern verification failed at offset 0, 512 bytes\n'
        'read 512/512 bytes at offset 0\n'
        '512 bytes, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)\n'
        '64 KiB\n'
        'read failed: Input/output error\n')


def test_run_open_errors(capfd, tmp_path):
    status, out, err = run_qemu_io(capfd, str(tmp_path / 'nonexist'))
    assert (status, out) == (1, '')
    assert err == ("qemu-io: can't open device %s: Could not open '%s': "
                   "No such file or directory\n"
                   % (tmp_path / 'nonexist', tmp_path / 'nonexist'))
    img = tmp_path / 'img'
    img.write_bytes(b'')
    status, out, err = run_qemu_io(capfd, '-r', '-f', 'raw', str(img),
                                   '-c', 'write 0 0', '-c', 'info')
    assert (status, err) == (1, 'qemu-io: Block node is read-only\n')
    assert out == ('format name: raw\ncluster size: 0 bytes\n'
                   'vm state offset: 0 bytes\n')


@needs_byte_api
def test_run_aio(capfd, tmp_path):
    img = tmp_path / 'img'
    img.write_bytes(b'\0' * 65536)
    status, out, err = run_qemu_io(
        capfd, '-f', 'raw', str(img), '-c', 'aio_write -P 7 1 511',
        '-c', 'aio_flush', '-c', 'readv -P 7 1 10 501', '-c', 'discard 0 1')
    assert (status, err) == (0, '')
    assert timing_filtered(out) == (
        'wrote 511/511 bytes at offset 1\n'
        '511 bytes, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)\n'
        'read 511/511 bytes at offset 1\n'
        '511 bytes, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)\n'
        'discard 1/1 bytes at offset 0\n'
        '1 bytes, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)\n')


def test_stdin_prompt():
    """Without -c, commands come from stdin after a prompt, and at the end
    of the input the last prompt stays without a newline."""
    proc = subprocess.run(
        [sys.executable, '-m', 'block.qemu_io'],
        input=b'help sleep\nbogus\n', capture_output=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert proc.returncode == 1
    assert proc.stdout == (b'qemu-io> sleep -- waits for the given value in '
                           b'milliseconds\nqemu-io> qemu-io> ')
    assert proc.stderr == b'command "bogus" not found\n'


def test_option_string_short_form_booleans(capfd):
    """qemu_opts_parse_noisily warns about flags (7.2's wording, 'delay'
    pointing at nodelay), but not about a bare help."""
    qemu_io.error_init('qemu-io')
    lst = QemuOptsList("drive", [])
    lst.merge_lists = True
    assert cmds.qemu_opts_parse_merged(
        lst, "driver=raw,read-only,nodelay,delay,help", False)
    assert cmds.qemu_opts_take_merged(lst) == {
        'driver': 'raw', 'read-only': 'on', 'delay': 'on', 'help': 'on'}
    out, err = capfd.readouterr()
    assert out == ''
    assert err == (
        "qemu-io: warning: short-form boolean option 'read-only' deprecated\n"
        "Please use read-only=on instead\n"
        "qemu-io: warning: short-form boolean option 'nodelay' deprecated\n"
        "Please use nodelay=on instead\n"
        "qemu-io: warning: short-form boolean option 'delay' deprecated\n"
        "Please use nodelay=off instead\n")


def test_option_string_ids(capfd):
    """A merged list refuses an id; another takes a well-formed one."""
    qemu_io.error_init('qemu-io')
    merged = QemuOptsList("drive", [])
    merged.merge_lists = True
    assert not cmds.qemu_opts_parse_merged(merged, "driver=raw,id=x", False)
    assert cmds.qemu_opts_take_merged(merged) is None
    files = QemuOptsList("file", [], implied_opt_name="file")
    assert not cmds.qemu_opts_parse_merged(files, "id=1x", False)
    assert cmds.qemu_opts_parse_merged(files, "id=x,driver=raw", False)
    assert cmds.qemu_opts_take_merged(files) == {'id': 'x', 'driver': 'raw'}
    assert capfd.readouterr().err == (
        "qemu-io: Invalid parameter 'id'\n"
        "qemu-io: Parameter 'id' expects an identifier\n"
        "Identifiers consist of letters, digits, '-', '.', '_', starting "
        "with a letter.\n")


def test_trace_option_help(capfd):
    """A bare help in -T's options lists them (7.2's caption), an unknown
    one is refused, and both end the program with status 1."""
    assert run_qemu_io(capfd, '-T', 'file=x,help') == (
        1, 'trace options:\n  enable=<str>\n  events=<str>\n  file=<str>\n',
        '')
    assert run_qemu_io(capfd, '-T', 'bogus=1') == (
        1, '', "qemu-io: Invalid parameter 'bogus'\n")


def test_trace_help_lists_every_event(capfd):
    """-T help lists the events of the lazily imported drivers too."""
    status, out, err = run_qemu_io(capfd, '-T', 'help', '-c', 'quit')
    assert (status, err) == (0, '')
    names = out.splitlines()
    assert 'bdrv_co_readv' in names and 'qcow2_cache_get' in names
    assert len(names) == len(set(names))


def test_force_share_checks():
    """force-share leaves the options; on needs a read-only node, unless it
    is a backing file's; a bad value is refused."""
    errp = [None]
    opts = {'driver': 'raw', 'force-share': 'on', 'backing.force-share': 'on'}
    taken: dict = {}
    assert qemu_io.take_force_share(opts, 0, taken, errp)
    assert opts == {'driver': 'raw'}
    assert taken == {'force-share': 'on', 'backing.force-share': 'on'}
    opts = {'backing.force-share': 'on', 'file.force-share': 'off'}
    assert qemu_io.take_force_share(opts, BDRV_O_RDWR, {}, errp) and not opts
    opts = {'force-share': 'on', 'read-only': 'on'}
    assert qemu_io.take_force_share(opts, BDRV_O_RDWR, {}, errp)
    for opts, msg in (
            ({'file.force-share': 'yes'},
             "force-share=on can only be used with read-only images"),
            ({'backing.force-share': 'x'}, "Could not open backing file: "
             "Parameter 'force-share' expects 'on' or 'off'")):
        errp = [None]
        assert not qemu_io.take_force_share(opts, BDRV_O_RDWR, {}, errp)
        assert errp[0].msg == msg


def test_force_share_reopen(capfd, tmp_path):
    """reopen -o may repeat the force-share value a node was opened with
    (its children inherit it), but not change it."""
    img = tmp_path / 'img'
    img.write_bytes(b'\0' * 4096)
    status, out, err = run_qemu_io(
        capfd, '-U', '-r', '-f', 'raw', str(img), '-c',
        'reopen -o force-share=on,file.force-share=on', '-c',
        'reopen -o force-share=off', '-c', 'reopen -o force-share=yes')
    assert (status, out) == (1, '')
    assert err == ("qemu-io: Cannot change the option 'force-share'\n" * 2)
    assert not qemu_io.qemu_io_cmds.force_share_values


def test_reopen_child_options(tmp_path):
    """reopen -o hands "<child>." options to the child, without the
    prefix, and leaves the others to the node itself."""
    img = tmp_path / 'img'
    img.write_bytes(b'\0' * 4096)
    blk = bb.blk_new_open('test-reopen', str(img), None, {'driver': 'raw'},
                          BDRV_O_RDWR, [None])
    try:
        bs = bb.blk_bs(blk)
        options = {'file.filename': 'x', 'file.x.y': '1', 'backing.z': '2',
                   'a': '3'}
        split = cmds.reopen_child_options(bs, options)
        assert options == {'backing.z': '2', 'a': '3'}
        assert split == {bs.file.bs: {'filename': 'x', 'x.y': '1'}}
    finally:
        bb.blk_unref(blk)
