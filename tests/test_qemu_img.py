"""Tests of pyqemu-img (block/qemu_img.py, block/qapi.py,
block/qemu_img_progress.py): option parsing, sizes, the messages and exit
status for bad input, the output formats, and small runs of every command.

The expected texts are what the installed qemu-img 7.2 prints; where the
real tool is installed, some are also checked against it directly.  The
side-by-side comparison of whole commands on real images is
tests/compare_img/'s job.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import subprocess

import pytest

from block import qemu_img
from block import qemu_img_progress as progress
from block.qapi import (qdict_entries, qobject_to_json_pretty, quoted_str,
                        size_to_str, tdb_hash)
from block.qemu_img import ImgGetopt
from drivers import raw_posix
from util.cutils import (fflush_stdout, no_argument, option,
                         required_argument)

REAL_QEMU_IMG = shutil.which('qemu-img')


@pytest.fixture
def real_qemu_img():
    """The installed qemu-img; without it the test is skipped, but under
    CI (CI=true) it fails."""
    if REAL_QEMU_IMG is None:
        msg = 'qemu-img not installed (Debian package qemu-utils)'
        if os.environ.get('CI') == 'true':
            pytest.fail(msg + ': required under CI')
        pytest.skip(msg)
    return REAL_QEMU_IMG

TRY = "Try 'qemu-img --help' for more information\n"


def run(capfd, *args, cwd=None):
    """pyqemu-img in this process: (status, stdout, stderr)."""
    # what earlier tests left in the C-like stdout buffer is not ours
    fflush_stdout()
    capfd.readouterr()
    old = os.getcwd()
    if cwd:
        os.chdir(cwd)
    try:
        status = qemu_img.main(['qemu-img'] + [str(a) for a in args])
    finally:
        os.chdir(old)
    out, err = capfd.readouterr()
    return status, out, err


@pytest.fixture
def raw_image(tmp_path):
    """A 1 MiB raw image: 64k of 0x01 at 64k, a hole elsewhere."""
    path = tmp_path / 'a.raw'
    with open(path, 'wb') as f:
        f.truncate(1 << 20)
        f.seek(65536)
        f.write(b'\x01' * 65536)
    return path


# --- sizes -------------------------------------------------------------------

SIZES = [
    ('0', 0), ('512', 512), ('1k', 1024), ('1K', 1024), ('1.5k', 1536),
    ('1M', 1 << 20), ('2G', 2 << 30), ('1T', 1 << 40), ('1P', 1 << 50),
    ('1E', 1 << 60), ('5b', 5), ('0x10', 16), ('1.5M', 3 << 19),
    ('9223372036854775807', (1 << 63) - 1),
]


@pytest.mark.parametrize('text,value', SIZES)
def test_cvtnum(text, value, capfd):
    assert qemu_img.cvtnum('image size', text) == value
    assert capfd.readouterr().err == ''


@pytest.mark.parametrize('text', ['1Q', '1.5', 'abc', '', '-1', '1k5',
                                  '0x', '1e3'])
def test_cvtnum_invalid(text, capfd):
    from util.qemu_error import error_init
    error_init('qemu-img')
    assert qemu_img.cvtnum('image size', text) == -errno.EINVAL
    assert capfd.readouterr().err == (
        "qemu-img: Invalid image size specified. You may use k, M, G, T, P "
        "or E suffixes for\n"
        "qemu-img: kilobytes, megabytes, gigabytes, terabytes, petabytes "
        "and exabytes.\n")


@pytest.mark.parametrize('text', ['8E', '20E', '9223372036854775808',
                                  '18446744073709551616'])
def test_cvtnum_range(text, capfd):
    from util.qemu_error import error_init
    error_init('qemu-img')
    assert qemu_img.cvtnum('image size', text) == -errno.ERANGE
    assert capfd.readouterr().err == (
        "qemu-img: Invalid image size specified. Must be between 0 and "
        "9223372036854775807.\n")


def test_cvtnum_full_limits(capfd):
    from util.qemu_error import error_init
    error_init('qemu-img')
    assert qemu_img.cvtnum_full('buffer size', '2G', 0, 0x7fffffff) == \
        -errno.ERANGE
    assert capfd.readouterr().err == (
        "qemu-img: Invalid buffer size specified. Must be between 0 and "
        "2147483647.\n")
    assert qemu_img.cvtnum_full('buffer size', '1G', 0, 0x7fffffff) == 1 << 30


# --- option parsing ----------------------------------------------------------

def getopt_run(argv, optstring, longopts=None):
    g = ImgGetopt(argv, optstring, longopts)
    seen = []
    for c, optarg in g:
        seen.append((c, optarg, g.bad_option if c in ('?', ':') else None))
    return seen, g


def test_getopt_silent_with_colon(capfd):
    seen, g = getopt_run(['info', '-x', 'a'], ':f:hU')
    assert seen == [('?', None, '-x')]
    assert capfd.readouterr().err == ''


def test_getopt_bad_option_in_cluster():
    # glibc leaves optind on the word before a cluster it is inside of
    assert getopt_run(['info', '-xU', 'a'], ':f:hU')[0][0] == \
        ('?', None, 'info')
    assert getopt_run(['info', '-Ux', 'a'], ':f:hU')[0][1] == \
        ('?', None, '-Ux')
    longopts = [option('output', required_argument, 256)]
    seen, _ = getopt_run(['info', '--output=json', '-xU', 'a'], ':f:hU',
                         longopts)
    assert seen[1] == ('?', None, '--output=json')


def test_getopt_missing_argument():
    assert getopt_run(['info', '-Uf'], ':f:hU')[0] == \
        [('U', None, None), (':', None, '-Uf')]
    longopts = [option('output', required_argument, 256),
                option('backing-chain', no_argument, 257)]
    assert getopt_run(['info', '--output'], ':f:hU', longopts)[0] == \
        [(':', None, '--output')]
    assert getopt_run(['info', '--backing-chain=1', 'a'], ':f:hU',
                      longopts)[0] == [('?', None, '--backing-chain=1')]


def test_getopt_permutes_and_abbreviates():
    longopts = [option('backing-chain', no_argument, 257)]
    seen, g = getopt_run(['info', 'a.raw', '--back', '-fraw'], ':f:hU',
                         longopts)
    assert seen == [(257, None, None), ('f', 'raw', None)]
    assert g.argv[g.optind:] == ['a.raw']


def test_option_lists():
    assert qemu_img.is_valid_option_list('a=b,c=d')
    assert qemu_img.is_valid_option_list('a=b,,')
    assert not qemu_img.is_valid_option_list('')
    assert not qemu_img.is_valid_option_list(',a')
    assert not qemu_img.is_valid_option_list('a=b,')
    options = [None]
    assert qemu_img.accumulate_options(options, 'size=1M') == 0
    assert qemu_img.accumulate_options(options, 'compat=0.10') == 0
    assert options[0] == 'size=1M,compat=0.10'


@pytest.mark.parametrize('param,result', [
    ('help', True), ('?', True), ('size=1M,help', True), ('a=help', False),
    ('size=1M', False), ('x=a,,help', False), ('help,,x', False)])
def test_has_help_option(param, result):
    assert qemu_img.has_help_option(param) is result


# --- error messages and exit status ------------------------------------------

USAGE_ERRORS = [
    ([], 1, "qemu-img: Not enough arguments\n" + TRY),
    (['foo'], 1, "qemu-img: Command not found: foo\n" + TRY),
    (['-x'], 1, "qemu-img: unrecognized option '-x'\n" + TRY),
    (['--foo'], 1, "qemu-img: unrecognized option '--foo'\n" + TRY),
    (['-T'], 1, "qemu-img: missing argument for option '-T'\n" + TRY),
    (['info'], 1, "qemu-img: Expecting one image file name\n" + TRY),
    (['info', '-x', 'a'], 1, "qemu-img: unrecognized option '-x'\n" + TRY),
    (['info', '-xU', 'a'], 1,
     "qemu-img: unrecognized option 'info'\n" + TRY),
    (['info', '--foo=bar', 'a'], 1,
     "qemu-img: unrecognized option '--foo=bar'\n" + TRY),
    (['info', '-Uf'], 1,
     "qemu-img: missing argument for option '-Uf'\n" + TRY),
    (['create'], 1, "qemu-img: Expecting image file name\n" + TRY),
    (['create', 'x.raw', '1M', 'extra'], 1,
     "qemu-img: Unexpected argument: extra\n" + TRY),
    (['create', 'x.raw', '-5'], 1,
     "qemu-img: unrecognized option '-5'\n" + TRY),
    (['create', '-o', ',x', 'x.raw', '1M'], 1,
     "qemu-img: Invalid option list: ,x\n"),
    (['check', '-r', 'foo', 'c.qcow2'], 1,
     "qemu-img: Unknown option value for -r (expecting 'leaks' or 'all'): "
     "foo\n" + TRY),
    (['compare', 'a.raw'], 1,
     "qemu-img: Expecting two image file names\n" + TRY),
    (['convert'], 1, "qemu-img: Must specify image file name\n"),
    (['convert', '-m', '0', 'a', 'b'], 1,
     "qemu-img: Invalid number of coroutines. Allowed number of coroutines "
     "is between 1 and 16\n"),
    (['convert', '-S', '100', 'a', 'b'], 1,
     "qemu-img: Invalid buffer size for sparse output specified. Valid "
     "sizes are multiples of 512 up to 16777216. Select 0 to disable sparse "
     "detection (fully allocates output).\n"),
    (['convert', '-n', '-o', 'size=1M', 'a', 'b'], 1,
     "qemu-img: -o has no effect when skipping image creation\n"),
    (['convert', '--target-is-zero', 'a', 'b'], 1,
     "qemu-img: --target-is-zero requires use of -n flag\n"),
    (['bench', '-c', 'abc', 'a'], 1,
     "qemu-img: Invalid request count specified\n"),
    (['bench', '-d', '-1', 'a'], 1,
     "qemu-img: Invalid queue depth specified\n"),
    (['bench', '-s', '1x', 'a'], 1,
     "qemu-img: Invalid buffer size specified. You may use k, M, G, T, P or "
     "E suffixes for\nqemu-img: kilobytes, megabytes, gigabytes, terabytes, "
     "petabytes and exabytes.\n"),
    (['bench', '-S', '3G', 'a'], 1,
     "qemu-img: Invalid step_size specified. Must be between 0 and "
     "2147483647.\n"),
    (['bench', '--pattern=256', 'a'], 1,
     "qemu-img: Invalid pattern byte specified\n"),
    (['bench', '-t', 'foo', 'a'], 1, "qemu-img: Invalid cache mode\n"),
    (['bench', '--flush-interval=10', 'a'], 1,
     "qemu-img: --flush-interval is only available in write tests\n"),
    (['bench', '-w', '--flush-interval=10', 'a'], 1,
     "qemu-img: Flush interval can't be smaller than depth\n"),
    (['bench'], 1, "qemu-img: Expecting one image file name\n" + TRY),
]


@pytest.mark.parametrize('args,status,err', USAGE_ERRORS)
def test_usage_errors(capfd, tmp_path, args, status, err):
    assert run(capfd, *args, cwd=tmp_path) == (status, '', err)


@pytest.mark.parametrize('args,status,err', USAGE_ERRORS)
def test_usage_errors_are_real(tmp_path, real_qemu_img, args, status, err):
    """The expected messages above are what the installed qemu-img says."""
    real = subprocess.run([real_qemu_img] + args, cwd=tmp_path,
                          capture_output=True, text=True)
    assert (real.returncode, real.stdout, real.stderr) == (status, '', err)


def test_create_bad_size(capfd, tmp_path):
    assert run(capfd, 'create', 'x.raw', '1Q', cwd=tmp_path) == (1, '', (
        "qemu-img: Invalid image size specified. You may use k, M, G, T, P "
        "or E suffixes for\n"
        "qemu-img: kilobytes, megabytes, gigabytes, terabytes, petabytes "
        "and exabytes.\n"))
    assert run(capfd, 'create', 'x.raw', '20E', cwd=tmp_path) == (1, '', (
        "qemu-img: Invalid image size specified. Must be between 0 and "
        "9223372036854775807.\n"))
    assert run(capfd, 'create', 'x.raw', cwd=tmp_path) == (
        1, '', "qemu-img: x.raw: Image creation needs a size parameter\n")
    assert not (tmp_path / 'x.raw').exists()


def test_create_unknown_format(capfd, tmp_path):
    assert run(capfd, 'create', '-f', 'foo', 'x.raw', '1M',
               cwd=tmp_path) == (
        1, '', "qemu-img: x.raw: Unknown file format 'foo'\n")


def test_create_bad_option(capfd, tmp_path):
    assert run(capfd, 'create', '-o', 'foo=bar', 'x.raw', '1M',
               cwd=tmp_path) == (
        1, '', "qemu-img: x.raw: Invalid parameter 'foo'\n")
    assert run(capfd, 'create', '-o', 'size=abc', 'x.raw',
               cwd=tmp_path) == (
        1, '', "qemu-img: x.raw: Parameter 'size' expects a non-negative "
        "number below 2^64\nOptional suffix k, M, G, T, P or E means kilo-, "
        "mega-, giga-, tera-, peta-\nand exabytes, respectively.\n")


def test_open_errors(capfd, tmp_path, raw_image):
    assert run(capfd, 'info', 'nonexist', cwd=tmp_path) == (
        1, '', "qemu-img: Could not open 'nonexist': Could not open "
        "'nonexist': No such file or directory\n")
    assert run(capfd, 'info', '-f', 'foo', 'a.raw', cwd=tmp_path) == (
        1, '', "qemu-img: Could not open 'a.raw': Unknown driver 'foo'\n")
    assert run(capfd, 'map', '--output=xx', 'a.raw', cwd=tmp_path) == (
        1, '', "qemu-img: --output must be used with human or json as "
        "argument.\n")
    assert run(capfd, 'compare', 'a.raw', 'nonexist', cwd=tmp_path) == (
        2, '', "qemu-img: Could not open 'nonexist': Could not open "
        "'nonexist': No such file or directory\n")


def test_force_share_needs_read_only(capfd, tmp_path, raw_image):
    assert run(capfd, 'check', '-U', '-r', 'all', 'a.raw',
               cwd=tmp_path) == (
        1, '', "qemu-img: Could not open 'a.raw': force-share=on can only "
        "be used with read-only images\n")


def test_dd_count_and_skip(capfd, tmp_path, raw_image):
    """7.2 measures count from the start of the input, skip included: two
    64k blocks from 64k copy one block."""
    assert run(capfd, 'dd', 'bs=64k', 'count=2', 'skip=1', 'if=a.raw',
               'of=o.raw', cwd=tmp_path) == (0, '', '')
    assert (tmp_path / 'o.raw').read_bytes() == b'\x01' * 65536


def test_dd_operands(capfd, tmp_path, raw_image):
    assert run(capfd, 'dd', 'if=a.raw', 'of', cwd=tmp_path) == (
        1, '', "qemu-img: unrecognized operand of\n")
    assert run(capfd, 'dd', 'bs=0', 'if=a.raw', 'of=o.raw',
               cwd=tmp_path) == (
        1, '', "qemu-img: Invalid bs specified. Must be between 1 and "
        "2147483647.\n")
    assert run(capfd, 'dd', 'if=a.raw', cwd=tmp_path) == (
        1, '', "qemu-img: Must specify both input and output files\n")
    assert not (tmp_path / 'o.raw').exists()


def test_measure_size(capfd):
    assert run(capfd, 'measure', '-O', 'qcow2', '--size', '1G') == (
        0, 'required size: 393216\nfully allocated size: 1074135040\n', '')
    assert run(capfd, 'measure', '--output=json', '--size', '1000') == (
        0, '{\n    "required": 1024,\n    "fully-allocated": 1024\n}\n', '')


def test_measure_bad_short_option(capfd):
    """7.2's measure takes no -s: glibc names the option, help() follows
    and the exit status is 0."""
    status, out, err = run(capfd, 'measure', '-s', '1G')
    assert status == 0
    assert err == "measure: invalid option -- 's'\n"
    assert out.startswith('qemu-img version ')


def test_measure_raw_input(capfd, tmp_path, raw_image):
    """One 64k cluster of data in 1 MiB: the metadata of a full image plus
    that cluster."""
    assert run(capfd, 'measure', '-O', 'qcow2', 'a.raw', cwd=tmp_path) == (
        0, 'required size: 393216\nfully allocated size: 1376256\n', '')


def test_not_ported(capfd):
    assert run(capfd, 'amend', '-o', 'compat=1.1', 'a.qcow2') == (
        1, '', "qemu-img: 'amend' is not ported to pyqemu-img\n")


def test_version(capfd):
    status, out, err = run(capfd, '-V')
    assert status == 0 and err == ''
    assert out.startswith('qemu-img version 7.2.0 (pyqemu-block ')


def test_help_matches_real(capfd, real_qemu_img):
    """The help text, but for the version line and the format list."""
    status, out, err = run(capfd, '--help')
    real = subprocess.run([real_qemu_img, '--help'], capture_output=True,
                          text=True).stdout

    def strip(text):
        return [line for line in text.splitlines()
                if not line.startswith(('qemu-img version',
                                        'Supported formats:'))]
    assert (status, err) == (0, '')
    assert strip(out) == strip(real)
    assert run(capfd, 'info', '-h')[1] == out


def test_option_help(capfd):
    status, out, err = run(capfd, 'create', '-o', 'help')
    assert (status, err) == (0, '')
    assert out == ("Supported raw options:\n"
                   "  size=<size>            - Virtual disk size\n"
                   "\n"
                   "The protocol level may support further options.\n"
                   "Specify the target filename to include those options.\n")
    status, out, err = run(capfd, 'convert', '-o', 'help', 'a', 'b.raw')
    assert (status, err) == (0, '')
    assert out.startswith("Supported options:\n")
    assert "  size=<size>            - Virtual disk size\n" in out


# --- output formats ----------------------------------------------------------

def test_qdict_order():
    # 7.2's `qemu-img info --output=json` order for a qcow2 with a backing
    # file: the buckets of QDict, not the schema order
    keys = ['filename', 'format', 'dirty-flag', 'actual-size',
            'virtual-size', 'cluster-size', 'backing-filename',
            'full-backing-filename', 'backing-filename-format',
            'format-specific']
    assert [k for k, _ in qdict_entries(dict.fromkeys(keys))] == [
        'backing-filename-format', 'virtual-size', 'filename',
        'cluster-size', 'format', 'actual-size', 'format-specific',
        'full-backing-filename', 'backing-filename', 'dirty-flag']
    assert tdb_hash('') == 12345


def test_json_pretty():
    assert qobject_to_json_pretty({'a': [1, True, 'x'], 'b': {}}) == (
        '{\n    "a": [\n        1,\n        true,\n        "x"\n    ],\n'
        '    "b": {\n    }\n}')
    assert qobject_to_json_pretty([]) == '[\n]'
    assert quoted_str('a"\\\n\x01\xe9\U0001f600/') == \
        '"a\\"\\\\\\n\\u0001\\u00E9\\uD83D\\uDE00/"'


@pytest.mark.parametrize('value,text', [
    (0, '0 B'), (1, '1 B'), (999, '999 B'), (1000, '0.977 KiB'),
    (1023, '0.999 KiB'), (1024, '1 KiB'), (1536, '1.5 KiB'),
    (200704, '196 KiB'),
    (1022976, '999 KiB'), (1023 * 1024, '0.999 MiB'), (1 << 20, '1 MiB'),
    (64 << 20, '64 MiB'), (1 << 30, '1 GiB'), (1 << 40, '1 TiB'),
    (1 << 60, '1 EiB')])
def test_size_to_str(value, text):
    assert size_to_str(value) == text


def test_map_hex_columns():
    assert qemu_img._hex_col(0) == '0' + ' ' * 15
    assert qemu_img._hex_col(0x10000) == '0x10000' + ' ' * 9


def test_progress_float(capfd):
    """C floats: 64k of 2M is 3.125%, printed as 3.12 at a 2% step."""
    fflush_stdout()
    capfd.readouterr()
    progress.qemu_progress_init(True, 2.0)
    progress.qemu_progress_print(0, 100)
    for _ in range(32):
        qemu_img._progress_chunk(65536, 2 << 20)
    progress.qemu_progress_end()
    fflush_stdout()
    out = capfd.readouterr().out
    assert out.startswith('    (0.00/100%)\r    (3.12/100%)\r'
                          '    (6.25/100%)\r')
    assert out.endswith('    (100.00/100%)\r\n')
    assert progress.f32(0.1) != 0.1


# --- the helpers of compare and convert --------------------------------------

def test_find_nonzero():
    buf = memoryview(bytearray(2048))
    assert qemu_img.find_nonzero(buf, 2048) == -1
    buf[1500] = 1
    assert qemu_img.find_nonzero(buf, 2048) == 1024
    assert qemu_img.find_nonzero(buf, 1500) == -1
    assert qemu_img.find_nonzero(buf, 1501) == 1024


def test_compare_buffers():
    a = memoryview(bytearray(4096))
    b = memoryview(bytearray(4096))
    pnum = [0]
    assert qemu_img.compare_buffers(a, b, 4096, pnum) == 0
    assert pnum[0] == 4096
    b[2000] = 1
    assert qemu_img.compare_buffers(a, b, 4096, pnum) == 0
    assert pnum[0] == 1536
    assert qemu_img.compare_buffers(a[1536:], b[1536:], 2560, pnum) == 1
    assert pnum[0] == 512


def test_is_allocated_sectors():
    buf = memoryview(bytearray(16 * 512))
    buf[4 * 512] = 1
    pnum = [0]
    # zeroes shorter than the alignment count as data, aligned up
    assert qemu_img.is_allocated_sectors(buf, 16, pnum, 0, 8) == 1
    assert pnum[0] == 8
    assert qemu_img.is_allocated_sectors(buf, 16, pnum, 0, 1) == 0
    assert pnum[0] == 4
    # data, aligned up to 8 sectors
    assert qemu_img.is_allocated_sectors(buf[4 * 512:], 12, pnum, 4, 8) == 1
    assert pnum[0] == 4
    # a short zero run after data counts as data with min 8
    buf[10 * 512] = 1
    assert qemu_img.is_allocated_sectors_min(buf[4 * 512:], 12, pnum, 8, 4,
                                             1) == 1
    assert pnum[0] == 7


# --- whole commands on small images ------------------------------------------

def test_create_info_raw(capfd, tmp_path):
    assert run(capfd, 'create', 'x.raw', '1.5k', cwd=tmp_path) == (
        0, "Formatting 'x.raw', fmt=raw size=1536\n", '')
    assert (tmp_path / 'x.raw').stat().st_size == 1536
    assert run(capfd, 'create', '-q', 'y.raw', '1M', cwd=tmp_path) == \
        (0, '', '')
    status, out, err = run(capfd, 'info', '--output=json', '-f', 'raw',
                           'y.raw', cwd=tmp_path)
    assert (status, err) == (0, '')
    info = json.loads(out)
    assert info['virtual-size'] == 1 << 20
    assert info['format'] == 'raw' and info['filename'] == 'y.raw'
    assert list(info) == ['virtual-size', 'filename', 'format',
                          'actual-size', 'dirty-flag']
    status, out, err = run(capfd, 'info', 'y.raw', cwd=tmp_path)
    assert out.startswith("image: y.raw\nfile format: raw\n"
                          "virtual size: 1 MiB (1048576 bytes)\n")


def test_map_raw(capfd, tmp_path, raw_image):
    status, out, err = run(capfd, 'map', '-f', 'raw', 'a.raw', cwd=tmp_path)
    assert (status, err) == (0, '')
    assert out == ("Offset          Length          Mapped to       File\n"
                   "0x10000         0x10000         0x10000         a.raw\n")
    status, out, err = run(capfd, 'map', '-f', 'raw', '--output=json',
                           'a.raw', cwd=tmp_path)
    assert json.loads(out) == [
        {"start": 0, "length": 65536, "depth": 0, "present": True,
         "zero": True, "data": False, "offset": 0},
        {"start": 65536, "length": 65536, "depth": 0, "present": True,
         "zero": False, "data": True, "offset": 65536},
        {"start": 131072, "length": 917504, "depth": 0, "present": True,
         "zero": True, "data": False, "offset": 131072}]


def test_check_raw(capfd, tmp_path, raw_image):
    assert run(capfd, 'check', 'a.raw', cwd=tmp_path) == (
        63, '', "qemu-img: This image format does not support checks\n")


def test_compare_and_convert(capfd, tmp_path, raw_image):
    assert run(capfd, 'convert', '-f', 'raw', '-O', 'raw', 'a.raw', 'b.raw',
               cwd=tmp_path) == (0, '', '')
    assert (tmp_path / 'b.raw').read_bytes() == raw_image.read_bytes()
    assert run(capfd, 'compare', '-f', 'raw', '-F', 'raw', 'a.raw', 'b.raw',
               cwd=tmp_path) == (0, 'Images are identical.\n', '')
    with open(tmp_path / 'b.raw', 'r+b') as f:
        f.seek(70000)
        f.write(b'\x02')
    assert run(capfd, 'compare', '-f', 'raw', '-F', 'raw', 'a.raw', 'b.raw',
               cwd=tmp_path) == (1, 'Content mismatch at offset 69632!\n',
                                 '')
    status, out, err = run(capfd, 'compare', '-p', '-q', 'a.raw', 'b.raw',
                           cwd=tmp_path)
    assert (status, out) == (1, '')


def test_convert_qcow2_compressed(capfd, tmp_path, raw_image):
    assert run(capfd, 'convert', '-c', '-O', 'qcow2', '-f', 'raw', 'a.raw',
               'c.qcow2', cwd=tmp_path) == (0, '', '')
    status, out, err = run(capfd, 'check', '--output=json', 'c.qcow2',
                           cwd=tmp_path)
    check = json.loads(out)
    assert status == 0 and check['compressed-clusters'] == 1
    assert run(capfd, 'compare', '-f', 'raw', 'a.raw', 'c.qcow2',
               cwd=tmp_path)[:2] == (0, 'Images are identical.\n')
    assert run(capfd, 'convert', '-c', '-O', 'raw', '-f', 'raw', 'a.raw',
               'd.raw', cwd=tmp_path) == (
        1, '', 'qemu-img: Compression not supported for this file format\n')
    assert not (tmp_path / 'd.raw').exists()


def test_bench_null(capfd, monkeypatch):
    """bench keeps depth requests in flight, each completion submitting
    the next, through blk_aio_preadv."""
    calls = []
    real = qemu_img.bb.blk_aio_preadv

    def counting(blk, offset, qiov, flags, cb, opaque):
        calls.append((offset, opaque.in_flight))
        return real(blk, offset, qiov, flags, cb, opaque)
    monkeypatch.setattr(qemu_img.bb, 'blk_aio_preadv', counting)
    status, out, err = run(capfd, 'bench', '-f', 'null-co', '-c', '1030',
                           '-d', '16', '-S', '1M', 'null-co://')
    assert (status, err) == (0, '')
    lines = out.splitlines()
    assert lines[0] == ("Sending 1030 read requests, 4096 bytes each, 16 in "
                        "parallel (starting at offset 0, step size 1048576)")
    assert lines[1].startswith('Run completed in ')
    assert len(calls) == 1030
    # counted before submission: 1 to 16 in flight, never more
    assert max(depth for _, depth in calls) == 16
    # the offset wraps at the end of the 1 GiB image
    assert calls[1023][0] == 1023 << 20 and calls[1024][0] == 0


def test_bench_write_flush(capfd, tmp_path, raw_image):
    status, out, err = run(capfd, 'bench', '-w', '-f', 'raw', '-c', '200',
                           '-d', '8', '--flush-interval=50', '--pattern=7',
                           '-s', '512', 'a.raw', cwd=tmp_path)
    assert (status, err) == (0, '')
    assert out.splitlines()[1] == 'Sending flush every 50 requests'
    data = raw_image.read_bytes()
    assert data[:512] == b'\x07' * 512
    assert data[199 * 512:200 * 512] == b'\x07' * 512
    assert data[200 * 512:201 * 512] == b'\x01' * 512


SHRINK_REFUSED = (
    "qemu-img: Use the --shrink option to perform a shrink operation.\n"
    "qemu-img: warning: Shrinking an image will delete all data beyond the "
    "shrunken image's end. Before performing such an operation, make sure "
    "there is no important data there.\n")


def test_resize_raw(capfd, tmp_path, raw_image):
    assert run(capfd, 'resize', '-f', 'raw', 'a.raw', '+1M',
               cwd=tmp_path) == (0, 'Image resized.\n', '')
    assert raw_image.stat().st_size == 2 << 20
    # the size is taken off the end first: "-64k" is no option
    assert run(capfd, 'resize', '-f', 'raw', 'a.raw', '-64k',
               cwd=tmp_path) == (1, '', SHRINK_REFUSED)
    assert run(capfd, 'resize', '-q', '--shrink', '-f', 'raw', 'a.raw',
               '-1000', cwd=tmp_path) == (0, '', '')
    assert raw_image.stat().st_size == (2 << 20) - 1000
    assert raw_image.read_bytes()[65536:131072] == b'\x01' * 65536


@pytest.mark.parametrize('args, message', [
    (('a.raw',), "qemu-img: Not enough arguments\n" + TRY),
    (('a.raw', '1M', '2M'),
     "qemu-img: Expecting image file name and size\n" + TRY),
    (('-f', 'raw', 'a.raw', '--', '-2M'),
     "qemu-img: New image size must be positive\n"),
    (('-f', 'raw', 'a.raw', '8E'),
     "qemu-img: New image size must be positive\n"),
    (('-f', 'raw', 'a.raw', '1Q'),
     "qemu-img: Parameter 'size' expects a non-negative number below 2^64\n"
     "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, "
     "peta-\nand exabytes, respectively.\n"),
    (('--preallocation=full', '--shrink', '-f', 'raw', 'a.raw', '512k'),
     "qemu-img: Preallocation can only be used for growing images\n"),
    (('--preallocation=fast', 'a.raw', '2M'),
     "qemu-img: Invalid preallocation mode 'fast'\n"),
    (('--preallocation=metadata', '-f', 'raw', 'a.raw', '2M'),
     "qemu-img: Unsupported preallocation mode: metadata\n"),
    (('-f', 'null-co', 'null-co://', '2G'),
     "qemu-img: Image format driver does not support resize\n"),
])
def test_resize_errors(capfd, tmp_path, raw_image, args, message):
    assert run(capfd, 'resize', *args, cwd=tmp_path) == (1, '', message)
    assert raw_image.stat().st_size == 1 << 20


def test_resize_probed_raw_warns(capfd, tmp_path, raw_image):
    status, out, err = run(capfd, 'resize', 'a.raw', '2M', cwd=tmp_path)
    assert (status, out) == (0, 'Image resized.\n')
    assert err.startswith("WARNING: Image format was not specified for "
                          "'a.raw' and probing guessed raw.\n")


def test_resize_qcow2(capfd, tmp_path):
    assert run(capfd, 'create', '-q', '-f', 'qcow2', 'b.qcow2', '1M',
               cwd=tmp_path) == (0, '', '')
    assert run(capfd, 'resize', 'b.qcow2', '+1000', cwd=tmp_path) == (
        1, '', "qemu-img: The new size must be a multiple of 512\n")
    assert run(capfd, 'resize', 'b.qcow2', '3M', cwd=tmp_path) == (
        0, 'Image resized.\n', '')
    status, out, err = run(capfd, 'info', '--output=json', 'b.qcow2',
                           cwd=tmp_path)
    assert json.loads(out)['virtual-size'] == 3 << 20


REAL_IOCTL = fcntl.ioctl


def _no_fsxattr(fd, request, arg=0, *rest):
    """fcntl.ioctl on a file system without extent size hints (tmpfs)."""
    if request == raw_posix.FS_IOC_FSSETXATTR:
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))
    return REAL_IOCTL(fd, request, arg, *rest)


@pytest.mark.parametrize('opts, warning', [
    ('extent_size_hint=2M',
     "qemu-img: warning: Failed to set extent size hint: Operation not "
     "supported\n"),
    # the default hint and a hint of 0 fail silently
    ('extent_size_hint=0', ''),
    ('nocow=off', ''),
])
def test_create_extent_size_hint_unsupported(capfd, tmp_path, monkeypatch,
                                             opts, warning):
    monkeypatch.setattr(raw_posix.fcntl, 'ioctl', _no_fsxattr)
    status, out, err = run(capfd, 'create', '-o', opts, 'x.raw', '64k',
                           cwd=tmp_path)
    assert (status, err) == (0, warning)
    assert (tmp_path / 'x.raw').stat().st_size == 65536


def test_create_extent_size_hint_too_large(capfd, tmp_path):
    assert run(capfd, 'create', '-o', 'extent_size_hint=4G', 'x.raw', '64k',
               cwd=tmp_path) == (
        1, "Formatting 'x.raw', fmt=raw size=65536 "
        "extent_size_hint=4294967296\n",
        "qemu-img: x.raw: Extent size hint is too large\n")
    assert not (tmp_path / 'x.raw').exists()
