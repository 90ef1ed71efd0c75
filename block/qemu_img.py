"""qemu-img, the disk image utility: the Python twin of QEMU's qemu-img.c.

The commands create, info, check, map, compare, convert, bench, resize,
dd and measure.  Each command keeps the structure and the function names of
qemu-img.c; options, messages, output and exit status are those of the
installed QEMU (7.2), whose qemu-img differs from 2.5's in what a user
sees (the -o help lists, the JSON key order, map's "present" field,
convert's parallel coroutines and its -W/-m/-C/-r/--salvage options,
bench, which 2.5 does not have, resize's --shrink and --preallocation).
Where 7.2's code does a thing the block layer of this port (the seed's era)
cannot express, the 2.5 API is used: block status and compressed writes in
sectors, BlockBackends with a name.  The program calls itself qemu-img in
its messages, as the real one does, so that the two compare byte for byte.

The other commands of 7.2 (amend, bitmap, commit, rebase, snapshot)
are listed in the help but not ported: they report so and exit
with status 1.

Run as ``pyqemu-img`` or ``python -m block.qemu_img``.
"""

from __future__ import annotations

import errno
import gc
import os
import signal
import sys
import time
from typing import Optional

from block import block_backend as bb
from block import core, io
from block.block_int import (
    BDRV_BLOCK_ALLOCATED, BDRV_BLOCK_DATA, BDRV_BLOCK_OFFSET_MASK,
    BDRV_BLOCK_OFFSET_VALID, BDRV_BLOCK_ZERO, BDRV_FIX_ERRORS, BDRV_FIX_LEAKS,
    BDRV_O_CHECK, BDRV_O_NATIVE_AIO, BDRV_O_NO_BACKING, BDRV_O_NO_IO,
    BDRV_O_RDWR, BDRV_O_UNMAP, BDRV_REQ_MAY_UNMAP, BDRV_REQUEST_MAX_SECTORS,
    BDRV_SECTOR_BITS, BDRV_SECTOR_SIZE, BLOCK_OPT_BACKING_FILE,
    BLOCK_OPT_BACKING_FMT, BLOCK_OPT_ENCRYPT, BLOCK_OPT_ENCRYPT_FORMAT,
    BLOCK_OPT_PREALLOC, BLOCK_OPT_SIZE, INT_MAX, BdrvCheckResult,
    BlockDriverInfo, backing_bs)
from block.qapi import (bdrv_image_info_dump, bdrv_query_image_info,
                        qapi_struct, qobject_to_json_pretty)
from block.qemu_img_progress import (f32, qemu_progress_end,
                                     qemu_progress_init, qemu_progress_print)
from block.qemu_io import (PYQEMU_VERSION, QEMU_COPYRIGHT, QEMU_HELP_BOTTOM,
                           QEMU_VERSION, bdrv_parse_aio, trace_init_file,
                           trace_opt_parse, user_creatable_process_cmdline)
from block.qemu_io_cmds import qemu_opts_parse_merged, qemu_opts_take_merged
from drivers import bdrv_find_format, bdrv_find_protocol, bdrv_iterate_format
from util import throttle
from util.coroutine import (qemu_coroutine_create, qemu_coroutine_enter,
                            qemu_coroutine_self, qemu_coroutine_yield)
from util.coroutine_lock import (CoMutex, qemu_co_mutex_init,
                                 qemu_co_mutex_lock, qemu_co_mutex_unlock)
from util.cutils import (Getopt, c_stdout, fflush_stdout, no_argument,
                         option, printf, qemu_strtoi64, qemu_strtosz,
                         qemu_strtou64, required_argument)
from util.iov import QEMUIOVector, buffer_is_zero, qemu_iovec_add, \
    qemu_iovec_init, qemu_iovec_init_external
from util.main_loop import main_loop_wait
from util.qemu_error import (error_init, error_printf, error_report,
                             error_report_err, error_reportf_err, warn_report)
from util.qemu_option import (QEMU_OPT_SIZE, QEMU_OPT_STRING, QemuOptDesc,
                              QemuOptsList, qemu_opt_get, qemu_opt_get_bool,
                              qemu_opt_get_size, qemu_opt_set,
                              qemu_opt_set_number, qemu_opts_append,
                              qemu_opts_create, qemu_opts_del,
                              qemu_opts_do_parse, qemu_opts_print_help)

PROGNAME = 'qemu-img'

QEMU_IMG_VERSION = ("qemu-img version %s (pyqemu-block %s)\n%s\n"
                    % (QEMU_VERSION, PYQEMU_VERSION, QEMU_COPYRIGHT))

OPTION_OUTPUT = 256
OPTION_BACKING_CHAIN = 257
OPTION_OBJECT = 258
OPTION_IMAGE_OPTS = 259
OPTION_PATTERN = 260
OPTION_FLUSH_INTERVAL = 261
OPTION_NO_DRAIN = 262
OPTION_TARGET_IMAGE_OPTS = 263
OPTION_SIZE = 264
OPTION_PREALLOCATION = 265
OPTION_SHRINK = 266
OPTION_SALVAGE = 267
OPTION_TARGET_IS_ZERO = 268
OPTION_BITMAPS = 275

OFORMAT_JSON = 0
OFORMAT_HUMAN = 1

# cache=writeback: data integrity matters less to qemu-img than speed
BDRV_DEFAULT_CACHE = "writeback"

BDRV_OPT_FORCE_SHARE = 'force-share'

INT64_MAX = (1 << 63) - 1
EXIT_SUCCESS = 0
EXIT_FAILURE = 1


class ImgGetopt(Getopt):
    """getopt_long() with an optstring that starts with ':': glibc prints
    nothing then, and qemu-img names the offending word itself as
    argv[optind - 1].  bad_option holds that word after '?' or ':'.

    glibc steps optind past a cluster of short options ("-Ux") only at its
    last letter: for an unknown letter inside the cluster, argv[optind - 1]
    is still the word before the cluster ("qemu-img info -xU" names
    'info')."""

    def __init__(self, argv, optstring: str, longopts=None):
        super().__init__(argv, optstring, longopts)
        self.bad_option: Optional[str] = None

    def _err(self, msg: str) -> None:
        pass

    def __iter__(self):
        prev = (self.argv, self.optind)
        word_prev = prev
        word_optind = None
        count = 0
        for c, optarg in super().__iter__():
            if self.optind != word_optind:
                word_prev = prev
                word_optind = self.optind
                count = 0
            count += 1
            if c in ('?', ':'):
                word = self.argv[self.optind - 1]
                if (c == '?' and not word.startswith('--')
                        and count < len(word) - 1):
                    self.bad_option = word_prev[0][word_prev[1] - 1]
                else:
                    self.bad_option = word
            yield c, optarg
            prev = (self.argv, self.optind)


def qemu_img_exit(status: int):
    """exit(): raised up to main(), which flushes stdout."""
    raise SystemExit(status)


def error_exit(fmt: str, *args) -> None:
    error_report(fmt, *args)
    error_printf("Try 'qemu-img --help' for more information\n")
    qemu_img_exit(EXIT_FAILURE)


def missing_argument(opt: str) -> None:
    error_exit("missing argument for option '%s'", opt)


def unrecognized_option(opt: str) -> None:
    error_exit("unrecognized option '%s'", opt)


HELP_MSG = (
    "usage: qemu-img [standard options] command [command options]\n"
    "QEMU disk image utility\n"
    "\n"
    "    '-h', '--help'       display this help and exit\n"
    "    '-V', '--version'    output version information and exit\n"
    "    '-T', '--trace'      "
    "[[enable=]<pattern>][,events=<file>][,file=<file>]\n"
    "                         specify tracing options\n"
    "\n"
    "Command syntax:\n"
    "  amend [--object objectdef] [--image-opts] [-p] [-q] [-f fmt] "
    "[-t cache] [--force] -o options filename\n"
    "  bench [-c count] [-d depth] [-f fmt] "
    "[--flush-interval=flush_interval] [-i aio] [-n] [--no-drain] [-o "
    "offset] [--pattern=pattern] [-q] [-s buffer_size] [-S step_size] "
    "[-t cache] [-w] [-U] filename\n"
    "  bitmap (--merge SOURCE | --add | --remove | --clear | --enable "
    "| --disable)... [-b source_file [-F source_fmt]] [-g granularity] "
    "[--object objectdef] [--image-opts | -f fmt] filename bitmap\n"
    "  check [--object objectdef] [--image-opts] [-q] [-f fmt] "
    "[--output=ofmt] [-r [leaks | all]] [-T src_cache] [-U] filename\n"
    "  commit [--object objectdef] [--image-opts] [-q] [-f fmt] [-t "
    "cache] [-b base] [-r rate_limit] [-d] [-p] filename\n"
    "  compare [--object objectdef] [--image-opts] [-f fmt] [-F fmt] "
    "[-T src_cache] [-p] [-q] [-s] [-U] filename1 filename2\n"
    "  convert [--object objectdef] [--image-opts] "
    "[--target-image-opts] [--target-is-zero] [--bitmaps] [-U] [-C] "
    "[-c] [-p] [-q] [-n] [-f fmt] [-t cache] [-T src_cache] [-O "
    "output_fmt] [-B backing_file [-F backing_fmt]] [-o options] [-l "
    "snapshot_param] [-S sparse_size] [-r rate_limit] [-m "
    "num_coroutines] [-W] [--salvage] filename [filename2 [...]] "
    "output_filename\n"
    "  create [--object objectdef] [-q] [-f fmt] [-b backing_file [-F "
    "backing_fmt]] [-u] [-o options] filename [size]\n"
    "  dd [--image-opts] [-U] [-f fmt] [-O output_fmt] [bs=block_size] "
    "[count=blocks] [skip=blocks] if=input of=output\n"
    "  info [--object objectdef] [--image-opts] [-f fmt] "
    "[--output=ofmt] [--backing-chain] [-U] filename\n"
    "  map [--object objectdef] [--image-opts] [-f fmt] "
    "[--start-offset=offset] [--max-length=len] [--output=ofmt] [-U] "
    "filename\n"
    "  measure [--output=ofmt] [-O output_fmt] [-o options] [--size N "
    "| [--object objectdef] [--image-opts] [-f fmt] [-l "
    "snapshot_param] filename]\n"
    "  snapshot [--object objectdef] [--image-opts] [-U] [-q] [-l | -a "
    "snapshot | -c snapshot | -d snapshot] filename\n"
    "  rebase [--object objectdef] [--image-opts] [-U] [-q] [-f fmt] "
    "[-t cache] [-T src_cache] [-p] [-u] -b backing_file [-F "
    "backing_fmt] filename\n"
    "  resize [--object objectdef] [--image-opts] [-f fmt] "
    "[--preallocation=prealloc] [-q] [--shrink] filename [+ | -]size\n"
    "\n"
    "Command parameters:\n"
    "  'filename' is a disk image filename\n"
    "  'objectdef' is a QEMU user creatable object definition. See the "
    "qemu(1)\n"
    "    manual page for a description of the object properties. The "
    "most common\n"
    "    object type is a 'secret', which is used to supply passwords "
    "and/or\n"
    "    encryption keys.\n"
    "  'fmt' is the disk image format. It is guessed automatically in "
    "most cases\n"
    "  'cache' is the cache mode used to write the output disk image, "
    "the valid\n"
    "    options are: 'none', 'writeback' (default, except for "
    "convert), 'writethrough',\n"
    "    'directsync' and 'unsafe' (default for convert)\n"
    "  'src_cache' is the cache mode used to read input disk images, "
    "the valid\n"
    "    options are the same as for the 'cache' option\n"
    "  'size' is the disk image size in bytes. Optional suffixes\n"
    "    'k' or 'K' (kilobyte, 1024), 'M' (megabyte, 1024k), 'G' "
    "(gigabyte, 1024M),\n"
    "    'T' (terabyte, 1024G), 'P' (petabyte, 1024T) and 'E' "
    "(exabyte, 1024P)  are\n"
    "    supported. 'b' is ignored.\n"
    "  'output_filename' is the destination disk image filename\n"
    "  'output_fmt' is the destination format\n"
    "  'options' is a comma separated list of format specific options "
    "in a\n"
    "    name=value format. Use -o help for an overview of the options "
    "supported by\n"
    "    the used format\n"
    "  'snapshot_param' is param used for internal snapshot, format\n"
    "    is 'snapshot.id=[ID],snapshot.name=[NAME]', or\n"
    "    '[ID_OR_NAME]'\n"
    "  '-c' indicates that target image must be compressed (qcow "
    "format only)\n"
    "  '-u' allows unsafe backing chains. For rebasing, it is assumed "
    "that old and\n"
    "       new backing file match exactly. The image doesn't need a "
    "working\n"
    "       backing file before rebasing in this case (useful for "
    "renaming the\n"
    "       backing file). For image creation, allow creating without "
    "attempting\n"
    "       to open the backing file.\n"
    "  '-h' with or without a command shows this help and lists the "
    "supported formats\n"
    "  '-p' show progress of command (only certain commands)\n"
    "  '-q' use Quiet mode - do not print any output (except errors)\n"
    "  '-S' indicates the consecutive number of bytes (defaults to 4k) "
    "that must\n"
    "       contain only zeros for qemu-img to create a sparse image "
    "during\n"
    "       conversion. If the number of bytes is 0, the source will "
    "not be scanned for\n"
    "       unallocated or zero sectors, and the destination image "
    "will always be\n"
    "       fully allocated\n"
    "  '--output' takes the format in which the output must be done "
    "(human or json)\n"
    "  '-n' skips the target volume creation (useful if the volume is "
    "created\n"
    "       prior to running qemu-img)\n"
    "\n"
    "Parameters to bitmap subcommand:\n"
    "  'bitmap' is the name of the bitmap to manipulate, through one "
    "or more\n"
    "       actions from '--add', '--remove', '--clear', '--enable', "
    "'--disable',\n"
    "       or '--merge source'\n"
    "  '-g granularity' sets the granularity for '--add' actions\n"
    "  '-b source' and '-F src_fmt' tell '--merge' actions to find the "
    "source\n"
    "       bitmaps from an alternative file\n"
    "\n"
    "Parameters to check subcommand:\n"
    "  '-r' tries to repair any inconsistencies that are found during "
    "the check.\n"
    "       '-r leaks' repairs only cluster leaks, whereas '-r all' "
    "fixes all\n"
    "       kinds of errors, with a higher risk of choosing the wrong "
    "fix or\n"
    "       hiding corruption that has already occurred.\n"
    "\n"
    "Parameters to convert subcommand:\n"
    "  '--bitmaps' copies all top-level persistent bitmaps to destination\n"
    "  '-m' specifies how many coroutines work in parallel during the "
    "convert\n"
    "       process (defaults to 8)\n"
    "  '-W' allow to write to the target out of order rather than "
    "sequential\n"
    "\n"
    "Parameters to snapshot subcommand:\n"
    "  'snapshot' is the name of the snapshot to create, apply or delete\n"
    "  '-a' applies a snapshot (revert disk to saved state)\n"
    "  '-c' creates a snapshot\n"
    "  '-d' deletes a snapshot\n"
    "  '-l' lists all snapshots in the given image\n"
    "\n"
    "Parameters to compare subcommand:\n"
    "  '-f' first image format\n"
    "  '-F' second image format\n"
    "  '-s' run in Strict mode - fail on different image size or "
    "sector allocation\n"
    "\n"
    "Parameters to dd subcommand:\n"
    "  'bs=BYTES' read and write up to BYTES bytes at a time (default: "
    "512)\n"
    "  'count=N' copy only N input blocks\n"
    "  'if=FILE' read from FILE\n"
    "  'of=FILE' write to FILE\n"
    "  'skip=N' skip N bs-sized blocks at the start of input\n")


def help() -> None:
    printf("%s", QEMU_IMG_VERSION + HELP_MSG)
    printf("\nSupported formats:")
    for name in bdrv_iterate_format():
        printf(" %s", name)
    printf("\n\n%s\n", QEMU_HELP_BOTTOM)
    qemu_img_exit(EXIT_SUCCESS)


def qprintf(quiet: bool, fmt: str, *args) -> None:
    if not quiet:
        printf(fmt, *args)


def is_valid_option_list(optarg: str) -> bool:
    """Can optarg be joined to others with ','?  Not if it is empty, starts
    with ',' (the joining comma would be escaped) or ends in an odd number
    of commas (likewise)."""
    if not optarg or optarg[0] == ',':
        return False
    trailing = len(optarg) - len(optarg.rstrip(','))
    return trailing % 2 == 0


def accumulate_options(options: list, optarg: str) -> int:
    """Add optarg to the -o options in options[0]; -1 after a message."""
    if not is_valid_option_list(optarg):
        error_report("Invalid option list: %s", optarg)
        return -1
    if options[0] is None:
        options[0] = optarg
    else:
        options[0] = '%s,%s' % (options[0], optarg)
    return 0


def is_help_option(s: str) -> bool:
    return s in ('?', 'help')


def has_help_option(param: str) -> bool:
    """Is one of the comma-separated items of param "help" or "?"
    (util/qemu-option.c)?"""
    p = 0
    while p < len(param):
        value = []
        while p < len(param):
            if param[p] == ',':
                if param[p + 1:p + 2] != ',':
                    break
                p += 1
            value.append(param[p])
            p += 1
        p += 1
        if is_help_option(''.join(value)):
            return True
    return False


def print_block_option_help(filename: Optional[str], fmt: str) -> int:
    local_err = [None]

    drv = bdrv_find_format(fmt)
    if not drv:
        error_report("Unknown file format '%s'", fmt)
        return 1

    if not drv.create_opts:
        error_report("Format driver '%s' does not support image creation",
                     fmt)
        return 1

    create_opts = qemu_opts_append(None, drv.create_opts)
    if filename:
        proto_drv = bdrv_find_protocol(filename, True, local_err)
        if not proto_drv:
            error_report_err(local_err[0])
            return 1
        if not proto_drv.create_opts:
            error_report("Protocol driver '%s' does not support image "
                         "creation", proto_drv.format_name)
            return 1
        create_opts = qemu_opts_append(create_opts, proto_drv.create_opts)

    if filename:
        printf("Supported options:\n")
    else:
        printf("Supported %s options:\n", fmt)
    qemu_opts_print_help(create_opts, False)

    if not filename:
        printf("\n"
               "The protocol level may support further options.\n"
               "Specify the target filename to include those options.\n")
    return 0


# --image-opts: the image is described by options, the first of which may
# be the file name (QEMU's qemu_source_opts)
qemu_source_opts = QemuOptsList("source", [], implied_opt_name="file")


def _force_share_check(name: str, flags: int) -> bool:
    """What 7.2's bdrv_open_common says of force-share=on on a writable
    image.  This port takes no image locks, so sharing is always what
    happens and the option itself is not passed down."""
    if flags & BDRV_O_RDWR:
        error_report("Could not open '%s': force-share=on can only be used "
                     "with read-only images", name)
        return False
    return True


def img_open_opts(id: str, optstr: str, options: dict, flags: int,
                  writethrough: bool, quiet: bool,
                  force_share: bool) -> Optional[bb.BlockBackend]:
    local_err = [None]
    if force_share:
        if (BDRV_OPT_FORCE_SHARE in options
                and options[BDRV_OPT_FORCE_SHARE] != 'on'):
            error_report("--force-share/-U conflicts with image options")
            return None
        options.pop(BDRV_OPT_FORCE_SHARE, None)
        if not _force_share_check(optstr, flags):
            return None
    blk = bb.blk_new_open(id, None, None, options, flags, local_err)
    if not blk:
        error_reportf_err(local_err[0], "Could not open '%s': ", optstr)
        return None
    bb.blk_set_enable_write_cache(blk, not writethrough)
    return blk


def img_open_file(id: str, filename: str, options: Optional[dict],
                  fmt: Optional[str], flags: int, writethrough: bool,
                  quiet: bool, force_share: bool
                  ) -> Optional[bb.BlockBackend]:
    local_err = [None]
    if options is None:
        options = {}
    if fmt:
        options['driver'] = fmt
    if force_share and not _force_share_check(filename, flags):
        return None
    blk = bb.blk_new_open(id, filename, None, options, flags, local_err)
    if not blk:
        error_reportf_err(local_err[0], "Could not open '%s': ", filename)
        return None
    bb.blk_set_enable_write_cache(blk, not writethrough)
    return blk


def img_open(id: str, image_opts: bool, filename: str, fmt: Optional[str],
             flags: int, writethrough: bool, quiet: bool,
             force_share: bool) -> Optional[bb.BlockBackend]:
    """Open an image as BlockBackend id (7.2's are anonymous; this port's
    need a unique name, the ones of 2.5's qemu-img are used)."""
    if image_opts:
        if fmt:
            error_report("--image-opts and --format are mutually exclusive")
            return None
        if not qemu_opts_parse_merged(qemu_source_opts, filename, True):
            return None
        options = qemu_opts_take_merged(qemu_source_opts)
        return img_open_opts(id, filename, options, flags, writethrough,
                             quiet, force_share)
    return img_open_file(id, filename, None, fmt, flags, writethrough, quiet,
                         force_share)


def add_old_style_options(fmt: str, opts, base_filename: Optional[str],
                          base_fmt: Optional[str]) -> int:
    local_err = [None]
    if base_filename:
        qemu_opt_set(opts, BLOCK_OPT_BACKING_FILE, base_filename, local_err)
        if local_err[0]:
            error_report("Backing file not supported for file format '%s'",
                         fmt)
            return -1
    if base_fmt:
        qemu_opt_set(opts, BLOCK_OPT_BACKING_FMT, base_fmt, local_err)
        if local_err[0]:
            error_report("Backing file format not supported for file "
                         "format '%s'", fmt)
            return -1
    return 0


def cvtnum_full(name: str, value: str, min: int, max: int) -> int:
    """A size with an optional suffix, within [min, max]; negative errno
    after a message."""
    err, res = qemu_strtosz(value, None)
    if err < 0 and err != -errno.ERANGE:
        error_report("Invalid %s specified. You may use "
                     "k, M, G, T, P or E suffixes for", name)
        error_report("kilobytes, megabytes, gigabytes, terabytes, "
                     "petabytes and exabytes.")
        return err
    if err == -errno.ERANGE or res > max or res < min:
        error_report("Invalid %s specified. Must be between %d and %d.",
                     name, min, max)
        return -errno.ERANGE
    return res


def cvtnum(name: str, value: str) -> int:
    return cvtnum_full(name, value, 0, INT64_MAX)


def img_create(argv: list) -> int:
    img_size = -1
    fmt = "raw"
    base_fmt = None
    base_filename = None
    options = [None]
    local_err = [None]
    quiet = False
    flags = 0

    long_options = [
        option("help", no_argument, 'h'),
        option("object", required_argument, OPTION_OBJECT),
    ]
    getopt = ImgGetopt(argv, ":F:b:f:ho:qu", long_options)
    for c, optarg in getopt:
        if c == ':':
            missing_argument(getopt.bad_option)
        elif c == '?':
            unrecognized_option(getopt.bad_option)
        elif c == 'h':
            help()
        elif c == 'F':
            base_fmt = optarg
        elif c == 'b':
            base_filename = optarg
        elif c == 'f':
            fmt = optarg
        elif c == 'o':
            if accumulate_options(options, optarg) < 0:
                return 1
        elif c == 'q':
            quiet = True
        elif c == 'u':
            flags |= BDRV_O_NO_BACKING
        elif c == OPTION_OBJECT:
            user_creatable_process_cmdline(optarg)
    argv, optind = getopt.argv, getopt.optind
    argc = len(argv)

    # Get the filename
    filename = argv[optind] if optind < argc else None
    if options[0] and has_help_option(options[0]):
        return print_block_option_help(filename, fmt)

    if optind >= argc:
        error_exit("Expecting image file name")
    optind += 1

    # Get image size, if specified
    if optind < argc:
        sval = cvtnum("image size", argv[optind])
        optind += 1
        if sval < 0:
            return 1
        img_size = sval
    if optind != argc:
        error_exit("Unexpected argument: %s", argv[optind])

    core.bdrv_img_create(filename, fmt, base_filename, base_fmt, options[0],
                         img_size, flags, local_err, quiet)
    if local_err[0]:
        error_reportf_err(local_err[0], "%s: ", filename)
        return 1
    return 0


# qapi/block-core.json: the members of ImageCheck, in schema order
IMAGE_CHECK_MEMBERS = (
    'filename', 'format', 'check-errors', 'image-end-offset', 'corruptions',
    'leaks', 'corruptions-fixed', 'leaks-fixed', 'total-clusters',
    'allocated-clusters', 'fragmented-clusters', 'compressed-clusters')


def dump_json_image_check(check: dict, quiet: bool) -> None:
    qprintf(quiet, "%s\n",
            qobject_to_json_pretty(qapi_struct(IMAGE_CHECK_MEMBERS, check)))


def dump_human_image_check(check: dict, quiet: bool) -> None:
    corruptions = check.get('corruptions', 0)
    leaks = check.get('leaks', 0)
    if not (corruptions or leaks or check['check-errors']):
        qprintf(quiet, "No errors were found on the image.\n")
    else:
        if corruptions:
            qprintf(quiet, "\n%d errors were found on the image.\n"
                    "Data may be corrupted, or further writes to the image "
                    "may corrupt it.\n", corruptions)
        if leaks:
            qprintf(quiet, "\n%d leaked clusters were found on the image.\n"
                    "This means waste of disk space, but no harm to data.\n",
                    leaks)
        if check['check-errors']:
            qprintf(quiet, "\n%d internal errors have occurred during the "
                    "check.\n", check['check-errors'])

    total = check.get('total-clusters', 0)
    allocated = check.get('allocated-clusters', 0)
    if total != 0 and allocated != 0:
        qprintf(quiet, "%d/%d = %0.2f%% allocated, %0.2f%% fragmented, "
                "%0.2f%% compressed clusters\n",
                allocated, total, allocated * 100.0 / total,
                check.get('fragmented-clusters', 0) * 100.0 / allocated,
                check.get('compressed-clusters', 0) * 100.0 / allocated)

    if check.get('image-end-offset'):
        qprintf(quiet, "Image end offset: %d\n", check['image-end-offset'])


def collect_image_check(bs, check: dict, filename: str, fmt: Optional[str],
                        fix: int) -> int:
    """Run bdrv_check and fill check (an ImageCheck; the optional members
    only when not zero)."""
    result = BdrvCheckResult()
    ret = core.bdrv_check(bs, result, fix)
    if ret < 0:
        return ret

    check['filename'] = filename
    check['format'] = core.bdrv_get_format_name(bs)
    check['check-errors'] = result.check_errors
    optional = (('corruptions', result.corruptions),
                ('leaks', result.leaks),
                ('corruptions-fixed', result.corruptions_fixed),
                ('leaks-fixed', result.leaks_fixed),
                ('image-end-offset', result.image_end_offset),
                ('total-clusters', result.bfi.total_clusters),
                ('allocated-clusters', result.bfi.allocated_clusters),
                ('fragmented-clusters', result.bfi.fragmented_clusters),
                ('compressed-clusters', result.bfi.compressed_clusters))
    for name, value in optional:
        if value != 0:
            check[name] = value
    return 0


def img_check(argv: list) -> int:
    """Check an image for consistency.  Exit status: 0 the image is good,
    1 the check could not complete, 2 the image is corrupted, 3 it leaks
    clusters but is good otherwise, 63 the format has no checks."""
    output_format = OFORMAT_HUMAN
    fmt = None
    output = None
    cache = BDRV_DEFAULT_CACHE
    fix = 0
    flags = [BDRV_O_CHECK]
    writethrough = [False]
    quiet = False
    image_opts = False
    force_share = False

    long_options = [
        option("help", no_argument, 'h'),
        option("format", required_argument, 'f'),
        option("repair", required_argument, 'r'),
        option("output", required_argument, OPTION_OUTPUT),
        option("object", required_argument, OPTION_OBJECT),
        option("image-opts", no_argument, OPTION_IMAGE_OPTS),
        option("force-share", no_argument, 'U'),
    ]
    getopt = ImgGetopt(argv, ":hf:r:T:qU", long_options)
    for c, optarg in getopt:
        if c == ':':
            missing_argument(getopt.bad_option)
        elif c == '?':
            unrecognized_option(getopt.bad_option)
        elif c == 'h':
            help()
        elif c == 'f':
            fmt = optarg
        elif c == 'r':
            flags[0] |= BDRV_O_RDWR
            if optarg == "leaks":
                fix = BDRV_FIX_LEAKS
            elif optarg == "all":
                fix = BDRV_FIX_LEAKS | BDRV_FIX_ERRORS
            else:
                error_exit("Unknown option value for -r "
                           "(expecting 'leaks' or 'all'): %s", optarg)
        elif c == OPTION_OUTPUT:
            output = optarg
        elif c == 'T':
            cache = optarg
        elif c == 'q':
            quiet = True
        elif c == 'U':
            force_share = True
        elif c == OPTION_OBJECT:
            user_creatable_process_cmdline(optarg)
        elif c == OPTION_IMAGE_OPTS:
            image_opts = True
    argv, optind = getopt.argv, getopt.optind
    if optind != len(argv) - 1:
        error_exit("Expecting one image file name")
    filename = argv[optind]

    if output == "json":
        output_format = OFORMAT_JSON
    elif output == "human":
        output_format = OFORMAT_HUMAN
    elif output is not None:
        error_report("--output must be used with human or json as argument.")
        return 1

    if core.bdrv_parse_cache_mode(cache, flags, writethrough) < 0:
        error_report("Invalid source cache option: %s", cache)
        return 1

    blk = img_open("image", image_opts, filename, fmt, flags[0],
                   writethrough[0], quiet, force_share)
    if not blk:
        return 1
    bs = bb.blk_bs(blk)

    check: dict = {}
    ret = collect_image_check(bs, check, filename, fmt, fix)

    if ret == -errno.ENOTSUP:
        error_report("This image format does not support checks")
        bb.blk_unref(blk)
        return 63

    if check.get('corruptions-fixed') or check.get('leaks-fixed'):
        fixed = {name: check[name]
                 for name in ('leaks-fixed', 'corruptions-fixed')
                 if name in check}

        if output_format == OFORMAT_HUMAN:
            qprintf(quiet,
                    "The following inconsistencies were found and "
                    "repaired:\n\n"
                    "    %d leaked clusters\n"
                    "    %d corruptions\n\n"
                    "Double checking the fixed image now...\n",
                    check.get('leaks-fixed', 0),
                    check.get('corruptions-fixed', 0))

        check = {}
        ret = collect_image_check(bs, check, filename, fmt, 0)
        check.pop('leaks-fixed', None)
        check.pop('corruptions-fixed', None)
        check.update(fixed)

    if not ret:
        if output_format == OFORMAT_HUMAN:
            dump_human_image_check(check, quiet)
        else:
            dump_json_image_check(check, quiet)

    if ret or check['check-errors']:
        if ret:
            error_report("Check failed: %s", os.strerror(-ret))
        else:
            error_report("Check failed")
        ret = 1
    elif check.get('corruptions'):
        ret = 2
    elif check.get('leaks'):
        ret = 3
    else:
        ret = 0

    bb.blk_unref(blk)
    return ret


def find_nonzero(buf: memoryview, n: int) -> int:
    """The offset of the first sector of buf[:n] with a non-zero byte, or
    -1; a partial sector at the end counts."""
    end = n - n % BDRV_SECTOR_SIZE
    i = 0
    while i < end:
        if not buffer_is_zero(buf[i:i + BDRV_SECTOR_SIZE], BDRV_SECTOR_SIZE):
            return i
        i += BDRV_SECTOR_SIZE
    if i < n and not buffer_is_zero(buf[i:n], n - end):
        return i
    return -1


def is_allocated_sectors(buf: memoryview, n: int, pnum: list,
                         sector_num: int, alignment: int) -> int:
    """Does the first sector of buf hold a non-zero byte?  pnum[0] gets the
    number of sectors from it on in the same state, with the end moved to
    an alignment boundary (up for data, down for zeroes) so that the next
    request starts aligned."""
    if n <= 0:
        pnum[0] = 0
        return 0
    is_zero = buffer_is_zero(buf[:512], 512)
    i = 1
    while i < n:
        if is_zero != buffer_is_zero(buf[i * 512:(i + 1) * 512], 512):
            break
        i += 1

    tail = (sector_num + i) & (alignment - 1)
    if tail:
        if is_zero and i <= tail:
            # a zero area that is only a short tail counts as data
            is_zero = False
        if not is_zero:
            # align up the end of data
            i += alignment - tail
            i = min(i, n)
        else:
            # align down the end of zeroes
            i -= tail
    pnum[0] = i
    return int(not is_zero)


def is_allocated_sectors_min(buf: memoryview, n: int, pnum: list, min: int,
                             sector_num: int, alignment: int) -> int:
    """Like is_allocated_sectors, but after data, runs of fewer than min
    zero sectors count as data: small holes are not worth splitting a
    write for."""
    if n < min:
        min = n

    ret = is_allocated_sectors(buf, n, pnum, sector_num, alignment)
    if not ret:
        return ret

    num_used = pnum[0]
    pos = BDRV_SECTOR_SIZE * pnum[0]
    n -= pnum[0]
    sector_num += pnum[0]
    num_checked = num_used

    while n > 0:
        ret = is_allocated_sectors(buf[pos:], n, pnum, sector_num, alignment)
        pos += BDRV_SECTOR_SIZE * pnum[0]
        n -= pnum[0]
        sector_num += pnum[0]
        num_checked += pnum[0]
        if ret:
            num_used = num_checked
        elif pnum[0] >= min:
            break

    pnum[0] = num_used
    return 1


def compare_buffers(buf1: memoryview, buf2: memoryview, nbytes: int,
                    pnum: list) -> int:
    """0 if the first sectors of buf1 and buf2 match, 1 if not; pnum[0]
    gets the length of the prefix (whole sectors) with the same answer."""
    assert nbytes > 0
    if buf1[:nbytes] == buf2[:nbytes]:
        pnum[0] = nbytes
        return 0
    i = min(nbytes, BDRV_SECTOR_SIZE)
    res = buf1[:i] != buf2[:i]
    while i < nbytes:
        length = min(nbytes - i, BDRV_SECTOR_SIZE)
        if (buf1[i:i + length] != buf2[i:i + length]) != res:
            break
        i += length
    pnum[0] = i
    return int(res)


IO_BUF_SIZE = 2 * 1024 * 1024


def check_empty_sectors(blk, offset: int, nbytes: int, filename: str,
                        buffer: memoryview, quiet: bool) -> int:
    """For compare: 0 if the range reads as zeroes, 1 (a mismatch) if not,
    4 after a read error."""
    ret = bb.blk_pread(blk, offset, buffer, nbytes)
    if ret < 0:
        error_report("Error while reading offset %d of %s: %s",
                     offset, filename, os.strerror(-ret))
        return 4
    idx = find_nonzero(buffer, nbytes)
    if idx >= 0:
        qprintf(quiet, "Content mismatch at offset %d!\n", offset + idx)
        return 1
    return 0


# 7.2's flag for a range that ends at the end of the image; the seed's block
# layer does not set it, but compare -s compares the flags
BDRV_BLOCK_EOF = 0x20


def bdrv_block_status_above(bs, base, offset: int, nbytes: int,
                            pnum: list) -> int:
    """7.2's byte interface on the seed's sector one: the status of the
    sectors at offset (a multiple of the sector size), pnum[0] in bytes.
    As in 7.2, the flags come without the offset (the seed keeps it in the
    high bits) and with BDRV_BLOCK_EOF."""
    spnum = [0]
    ret = io.bdrv_get_block_status_above(
        bs, base, offset >> BDRV_SECTOR_BITS,
        min(nbytes >> BDRV_SECTOR_BITS, INT_MAX), spnum, [None])
    pnum[0] = spnum[0] << BDRV_SECTOR_BITS
    if ret < 0:
        return ret
    ret &= ~BDRV_BLOCK_OFFSET_MASK
    if offset + pnum[0] == core.bdrv_getlength(bs):
        ret |= BDRV_BLOCK_EOF
    return ret


def _progress_chunk(chunk: int, progress_base: int) -> None:
    """qemu_progress_print(((float) chunk / progress_base) * 100, 100) with
    C's float arithmetic."""
    qemu_progress_print(f32(f32(f32(chunk) / f32(progress_base)) * 100), 100)


def img_compare(argv: list) -> int:
    """Compare two images.  Exit status: 0 identical, 1 different, 2 and
    above an error."""
    fmt1 = fmt2 = None
    cache = BDRV_DEFAULT_CACHE
    progress = quiet = strict = False
    image_opts = False
    force_share = False

    long_options = [
        option("help", no_argument, 'h'),
        option("object", required_argument, OPTION_OBJECT),
        option("image-opts", no_argument, OPTION_IMAGE_OPTS),
        option("force-share", no_argument, 'U'),
    ]
    getopt = ImgGetopt(argv, ":hf:F:T:pqsU", long_options)
    for c, optarg in getopt:
        if c == ':':
            missing_argument(getopt.bad_option)
        elif c == '?':
            unrecognized_option(getopt.bad_option)
        elif c == 'h':
            help()
        elif c == 'f':
            fmt1 = optarg
        elif c == 'F':
            fmt2 = optarg
        elif c == 'T':
            cache = optarg
        elif c == 'p':
            progress = True
        elif c == 'q':
            quiet = True
        elif c == 's':
            strict = True
        elif c == 'U':
            force_share = True
        elif c == OPTION_OBJECT:
            user_creatable_process_cmdline(optarg)
        elif c == OPTION_IMAGE_OPTS:
            image_opts = True
    argv, optind = getopt.argv, getopt.optind

    # progress is not shown in quiet mode
    if quiet:
        progress = False

    if optind != len(argv) - 2:
        error_exit("Expecting two image file names")
    filename1 = argv[optind]
    filename2 = argv[optind + 1]

    # initialize before the error paths end it
    qemu_progress_init(progress, 2.0)

    flags = [0]
    writethrough = [False]
    if core.bdrv_parse_cache_mode(cache, flags, writethrough) < 0:
        error_report("Invalid source cache option: %s", cache)
        qemu_progress_end()
        return 2

    blk1 = img_open("image_1", image_opts, filename1, fmt1, flags[0],
                    writethrough[0], quiet, force_share)
    if not blk1:
        qemu_progress_end()
        return 2
    blk2 = img_open("image_2", image_opts, filename2, fmt2, flags[0],
                    writethrough[0], quiet, force_share)
    if not blk2:
        bb.blk_unref(blk1)
        qemu_progress_end()
        return 2

    ret = compare_images(blk1, blk2, filename1, filename2, quiet, strict)

    bb.blk_unref(blk2)
    bb.blk_unref(blk1)
    qemu_progress_end()
    return ret


def compare_images(blk1, blk2, filename1: str, filename2: str, quiet: bool,
                   strict: bool) -> int:
    """The comparison of img_compare (its 'out' label is the return)."""
    bs1 = bb.blk_bs(blk1)
    bs2 = bb.blk_bs(blk2)

    buf1 = bb.blk_blockalign(blk1, IO_BUF_SIZE)
    buf2 = bb.blk_blockalign(blk2, IO_BUF_SIZE)
    total_size1 = bb.blk_getlength(blk1)
    if total_size1 < 0:
        error_report("Can't get size of %s: %s",
                     filename1, os.strerror(-total_size1))
        return 4
    total_size2 = bb.blk_getlength(blk2)
    if total_size2 < 0:
        error_report("Can't get size of %s: %s",
                     filename2, os.strerror(-total_size2))
        return 4
    total_size = min(total_size1, total_size2)
    progress_base = max(total_size1, total_size2)

    qemu_progress_print(0, 100)

    if strict and total_size1 != total_size2:
        qprintf(quiet, "Strict mode: Image size mismatch!\n")
        return 1

    offset = 0
    pnum1, pnum2 = [0], [0]
    while offset < total_size:
        status1 = bdrv_block_status_above(bs1, None, offset,
                                          total_size1 - offset, pnum1)
        if status1 < 0:
            error_report("Sector allocation test failed for %s", filename1)
            return 3
        allocated1 = status1 & BDRV_BLOCK_ALLOCATED

        status2 = bdrv_block_status_above(bs2, None, offset,
                                          total_size2 - offset, pnum2)
        if status2 < 0:
            error_report("Sector allocation test failed for %s", filename2)
            return 3
        allocated2 = status2 & BDRV_BLOCK_ALLOCATED

        assert pnum1[0] and pnum2[0]
        chunk = min(pnum1[0], pnum2[0])

        if strict and status1 != status2:
            qprintf(quiet, "Strict mode: Offset %d block status mismatch!\n",
                    offset)
            return 1

        if (status1 & BDRV_BLOCK_ZERO) and (status2 & BDRV_BLOCK_ZERO):
            pass    # both read as zeroes
        elif allocated1 == allocated2:
            if allocated1:
                chunk = min(chunk, IO_BUF_SIZE)
                ret = bb.blk_pread(blk1, offset, buf1, chunk)
                if ret < 0:
                    error_report("Error while reading offset %d of %s: %s",
                                 offset, filename1, os.strerror(-ret))
                    return 4
                ret = bb.blk_pread(blk2, offset, buf2, chunk)
                if ret < 0:
                    error_report("Error while reading offset %d of %s: %s",
                                 offset, filename2, os.strerror(-ret))
                    return 4
                pnum = [0]
                ret = compare_buffers(buf1, buf2, chunk, pnum)
                if ret or pnum[0] != chunk:
                    qprintf(quiet, "Content mismatch at offset %d!\n",
                            offset + (0 if ret else pnum[0]))
                    return 1
        else:
            chunk = min(chunk, IO_BUF_SIZE)
            if allocated1:
                ret = check_empty_sectors(blk1, offset, chunk, filename1,
                                          buf1, quiet)
            else:
                ret = check_empty_sectors(blk2, offset, chunk, filename2,
                                          buf1, quiet)
            if ret:
                return ret
        offset += chunk
        _progress_chunk(chunk, progress_base)

    if total_size1 != total_size2:
        qprintf(quiet, "Warning: Image size mismatch!\n")
        if total_size1 > total_size2:
            blk_over, filename_over = blk1, filename1
        else:
            blk_over, filename_over = blk2, filename2

        pchunk = [0]
        while offset < progress_base:
            ret = bdrv_block_status_above(bb.blk_bs(blk_over), None, offset,
                                          progress_base - offset, pchunk)
            if ret < 0:
                error_report("Sector allocation test failed for %s",
                             filename_over)
                return 3
            chunk = pchunk[0]
            if ret & BDRV_BLOCK_ALLOCATED and not ret & BDRV_BLOCK_ZERO:
                chunk = min(chunk, IO_BUF_SIZE)
                ret = check_empty_sectors(blk_over, offset, chunk,
                                          filename_over, buf1, quiet)
                if ret:
                    return ret
            offset += chunk
            _progress_chunk(chunk, progress_base)

    qprintf(quiet, "Images are identical.\n")
    return 0


# enum ImgConvertBlockStatus
BLK_DATA = 0
BLK_ZERO = 1
BLK_BACKING_FILE = 2

MAX_COROUTINES = 16
MAX_BUF_SECTORS = 32768

# the throttle group convert -r puts the target in
CONVERT_THROTTLE_GROUP = 'img_convert'


class ImgConvertState:
    __slots__ = (
        'src', 'src_sectors', 'src_num', 'total_sectors',
        'allocated_sectors', 'allocated_done', 'sector_num', 'wr_offs',
        'status', 'sector_next_status', 'target', 'has_zero_init',
        'compressed', 'target_is_new', 'target_has_backing',
        'target_backing_sectors', 'wr_in_order', 'copy_range', 'salvage',
        'quiet', 'min_sparse', 'alignment', 'cluster_sectors', 'buf_sectors',
        'num_coroutines', 'running_coroutines', 'co', 'wait_sector_num',
        'lock', 'ret')

    def __init__(self) -> None:
        self.src: list = []
        self.src_sectors: list = []
        self.src_num = 0
        self.total_sectors = 0
        self.allocated_sectors = 0
        self.allocated_done = 0
        self.sector_num = 0
        self.wr_offs = 0
        self.status = BLK_DATA
        self.sector_next_status = 0
        self.target = None
        self.has_zero_init = False
        self.compressed = False
        self.target_is_new = False
        self.target_has_backing = False
        self.target_backing_sectors = -1   # negative if unknown
        self.wr_in_order = True
        self.copy_range = False
        self.salvage = False
        self.quiet = False
        self.min_sparse = 8                # at least 4k of zeroes
        self.alignment = 0
        self.cluster_sectors = 0
        self.buf_sectors = IO_BUF_SIZE // BDRV_SECTOR_SIZE
        self.num_coroutines = 8
        self.running_coroutines = 0
        self.co: list = [None] * MAX_COROUTINES
        self.wait_sector_num: list = [-1] * MAX_COROUTINES
        self.lock = CoMutex()
        self.ret = 0


def convert_select_part(s: ImgConvertState, sector_num: int) -> tuple:
    """(index of the source holding sector_num, its first sector)."""
    src_cur = 0
    src_cur_offset = 0
    while sector_num - src_cur_offset >= s.src_sectors[src_cur]:
        src_cur_offset += s.src_sectors[src_cur]
        src_cur += 1
        assert src_cur < s.src_num
    return src_cur, src_cur_offset


def convert_iteration_sectors(s: ImgConvertState, sector_num: int) -> int:
    """How many sectors from sector_num on to handle in one step, with
    their status in s.status; negative errno on error."""
    src_cur, src_cur_offset = convert_select_part(s, sector_num)
    post_backing_zero = False

    assert s.total_sectors > sector_num
    n = min(s.total_sectors - sector_num, BDRV_REQUEST_MAX_SECTORS)

    if s.target_backing_sectors >= 0:
        if sector_num >= s.target_backing_sectors:
            post_backing_zero = True
        elif sector_num + n > s.target_backing_sectors:
            # from there on zeroes are handled differently
            n = s.target_backing_sectors - sector_num

    if s.sector_next_status <= sector_num:
        src_bs = bb.blk_bs(s.src[src_cur])
        src_sector = sector_num - src_cur_offset
        while True:
            pnum = [0]
            if s.target_has_backing:
                ret = io.bdrv_get_block_status(src_bs, src_sector, n, pnum,
                                               [None])
            else:
                ret = io.bdrv_get_block_status_above(src_bs, None,
                                                     src_sector, n, pnum,
                                                     [None])
            if ret >= 0:
                break
            if not s.salvage:
                error_report("error while reading block status at offset "
                             "%d: %s", src_sector << BDRV_SECTOR_BITS,
                             os.strerror(-ret))
                return ret
            if n == 1:
                if not s.quiet:
                    warn_report("error while reading block status at "
                                "offset %d: %s",
                                src_sector << BDRV_SECTOR_BITS,
                                os.strerror(-ret))
                # just try to read the data, then
                ret = BDRV_BLOCK_DATA
                pnum[0] = 1
                break
            # retry on a shorter range
            n = (n + 3) // 4

        n = pnum[0]

        if ret & BDRV_BLOCK_ZERO:
            s.status = BLK_BACKING_FILE if post_backing_zero else BLK_ZERO
        elif ret & BDRV_BLOCK_DATA:
            s.status = BLK_DATA
        else:
            s.status = BLK_BACKING_FILE if s.target_has_backing else BLK_DATA

        s.sector_next_status = sector_num + n

    n = min(n, s.sector_next_status - sector_num)
    if s.status == BLK_DATA:
        n = min(n, s.buf_sectors)

    # compressed images are written in whole clusters: an unallocated area
    # shorter than a cluster counts as data
    if s.compressed:
        if n < s.cluster_sectors:
            n = min(s.cluster_sectors, s.total_sectors - sector_num)
            s.status = BLK_DATA
        else:
            n -= n % s.cluster_sectors

    return n


def blk_co_pread(blk, offset: int, nbytes: int, buf: memoryview,
                 flags: int) -> int:
    """block-backend.c's (QEMU 2.7) wrapper: read into a flat buffer."""
    qiov = QEMUIOVector()
    qemu_iovec_init_external(qiov, [buf[:nbytes]], 1)
    return bb.blk_co_preadv(blk, offset, nbytes, qiov, flags)


def blk_co_pwrite(blk, offset: int, nbytes: int, buf: memoryview,
                  flags: int) -> int:
    """block-backend.c's (QEMU 2.7) wrapper: write a flat buffer."""
    qiov = QEMUIOVector()
    qemu_iovec_init_external(qiov, [buf[:nbytes]], 1)
    return bb.blk_co_pwritev(blk, offset, nbytes, qiov, flags)


def convert_co_read(s: ImgConvertState, sector_num: int, nb_sectors: int,
                    buf: memoryview) -> int:
    single_read_until = 0
    pos = 0

    assert nb_sectors <= s.buf_sectors
    while nb_sectors > 0:
        # with compression and several sources, one read can cross into
        # the next source
        src_cur, src_cur_offset = convert_select_part(s, sector_num)
        blk = s.src[src_cur]
        bs_sectors = s.src_sectors[src_cur]

        offset = (sector_num - src_cur_offset) << BDRV_SECTOR_BITS

        n = min(nb_sectors, bs_sectors - (sector_num - src_cur_offset))
        if single_read_until > offset:
            n = 1

        ret = blk_co_pread(blk, offset, n << BDRV_SECTOR_BITS, buf[pos:], 0)
        if ret < 0:
            if not s.salvage:
                return ret
            if n > 1:
                single_read_until = offset + (n << BDRV_SECTOR_BITS)
                continue
            if not s.quiet:
                warn_report("error while reading offset %d: %s", offset,
                            os.strerror(-ret))
            buf[pos:pos + BDRV_SECTOR_SIZE] = bytes(BDRV_SECTOR_SIZE)

        sector_num += n
        nb_sectors -= n
        pos += n * BDRV_SECTOR_SIZE

    return 0


def convert_co_write(s: ImgConvertState, sector_num: int, nb_sectors: int,
                     buf: memoryview, status: int) -> int:
    pos = 0
    while nb_sectors > 0:
        n = nb_sectors

        if status == BLK_BACKING_FILE:
            # leave it unallocated, so that the backing file shows through
            assert s.target_has_backing
        else:
            # BLK_DATA is written when the output must stay fully allocated
            # (-S 0) or the data is not zero; compressed clusters are
            # written whole unless they are all zero.  Otherwise, and for
            # BLK_ZERO, zeroes are written.
            data = status == BLK_DATA
            if data and s.min_sparse:
                if not s.compressed:
                    pnum = [0]
                    data = bool(is_allocated_sectors_min(
                        buf[pos:], n, pnum, s.min_sparse, sector_num,
                        s.alignment))
                    n = pnum[0]
                else:
                    data = not buffer_is_zero(buf[pos:],
                                              n * BDRV_SECTOR_SIZE)
            if data:
                if s.compressed:
                    ret = bb.blk_write_compressed(s.target, sector_num,
                                                  buf[pos:], n)
                else:
                    ret = blk_co_pwrite(s.target,
                                        sector_num << BDRV_SECTOR_BITS,
                                        n << BDRV_SECTOR_BITS, buf[pos:], 0)
                if ret < 0:
                    return ret
            elif s.has_zero_init:
                assert not s.target_has_backing
            else:
                ret = bb.blk_co_pwrite_zeroes(
                    s.target, sector_num << BDRV_SECTOR_BITS,
                    n << BDRV_SECTOR_BITS, BDRV_REQ_MAY_UNMAP)
                if ret < 0:
                    return ret

        sector_num += n
        nb_sectors -= n
        pos += n * BDRV_SECTOR_SIZE

    return 0


def convert_co_do_copy(s: ImgConvertState) -> None:
    """One of the copying coroutines: take the next piece under the lock,
    read it, and write it when its turn comes (in order unless -W)."""
    index = -1
    for i in range(s.num_coroutines):
        if s.co[i] is qemu_coroutine_self():
            index = i
            break
    assert index >= 0

    s.running_coroutines += 1
    buf = bb.blk_blockalign(s.target, s.buf_sectors * BDRV_SECTOR_SIZE)

    while True:
        qemu_co_mutex_lock(s.lock)
        if s.ret != -errno.EINPROGRESS or s.sector_num >= s.total_sectors:
            qemu_co_mutex_unlock(s.lock)
            break
        n = convert_iteration_sectors(s, s.sector_num)
        if n < 0:
            qemu_co_mutex_unlock(s.lock)
            s.ret = n
            break
        # this piece and its status, for this coroutine
        sector_num = s.sector_num
        status = s.status
        if not s.min_sparse and s.status == BLK_ZERO:
            n = min(n, s.buf_sectors)
        # the other coroutines may go on reading past this piece now
        s.sector_num += n
        qemu_co_mutex_unlock(s.lock)

        if status == BLK_DATA or (not s.min_sparse and status == BLK_ZERO):
            s.allocated_done += n
            qemu_progress_print(100.0 * s.allocated_done /
                                s.allocated_sectors, 0)

        if status == BLK_DATA:
            ret = convert_co_read(s, sector_num, n, buf)
            if ret < 0:
                error_report("error while reading at byte %d: %s",
                             sector_num * BDRV_SECTOR_SIZE, os.strerror(-ret))
                s.ret = ret
        elif not s.min_sparse and status == BLK_ZERO:
            status = BLK_DATA
            buf[:n * BDRV_SECTOR_SIZE] = bytes(n * BDRV_SECTOR_SIZE)

        if s.wr_in_order:
            # keep writes in order
            while s.wr_offs != sector_num and s.ret == -errno.EINPROGRESS:
                s.wait_sector_num[index] = sector_num
                qemu_coroutine_yield()
            s.wait_sector_num[index] = -1

        if s.ret == -errno.EINPROGRESS:
            ret = convert_co_write(s, sector_num, n, buf, status)
            if ret < 0:
                error_report("error while writing at byte %d: %s",
                             sector_num * BDRV_SECTOR_SIZE, os.strerror(-ret))
                s.ret = ret

        if s.wr_in_order:
            # wake the coroutine waiting to write what follows (it cannot
            # be this one's waker: that one has wait_sector_num -1 now)
            s.wr_offs = sector_num + n
            for i in range(s.num_coroutines):
                if s.co[i] and s.wait_sector_num[i] == s.wr_offs:
                    qemu_coroutine_enter(s.co[i])
                    break

    s.co[index] = None
    s.running_coroutines -= 1
    if not s.running_coroutines and s.ret == -errno.EINPROGRESS:
        # the conversion finished successfully
        s.ret = 0


def convert_do_copy(s: ImgConvertState) -> int:
    # zero initialisation, or can it be had cheaply?
    if (not s.has_zero_init and s.target_is_new and s.min_sparse and
            not s.target_has_backing):
        s.has_zero_init = bool(core.bdrv_has_zero_init(bb.blk_bs(s.target)))

    # one cluster at a time for compressed images
    if s.compressed:
        if s.cluster_sectors <= 0 or s.cluster_sectors > s.buf_sectors:
            error_report("invalid cluster size")
            return -errno.EINVAL
        s.buf_sectors = s.cluster_sectors

    sector_num = 0
    while sector_num < s.total_sectors:
        n = convert_iteration_sectors(s, sector_num)
        if n < 0:
            return n
        if s.status == BLK_DATA or (not s.min_sparse and
                                    s.status == BLK_ZERO):
            s.allocated_sectors += n
        sector_num += n

    # do the copy
    s.sector_next_status = 0
    s.ret = -errno.EINPROGRESS

    qemu_co_mutex_init(s.lock)
    for i in range(s.num_coroutines):
        s.co[i] = qemu_coroutine_create(convert_co_do_copy)
        s.wait_sector_num[i] = -1
        qemu_coroutine_enter(s.co[i], s)

    while s.running_coroutines:
        main_loop_wait(False)

    if s.compressed and not s.ret:
        # signal EOF to align
        ret = bb.blk_write_compressed(s.target, 0, None, 0)
        if ret < 0:
            return ret

    return s.ret


def set_rate_limit(blk, rate_limit: int) -> None:
    cfg = throttle.ThrottleConfig()
    throttle.throttle_config_init(cfg)
    cfg.buckets[throttle.THROTTLE_BPS_WRITE].avg = rate_limit
    io.bdrv_io_limits_enable(bb.blk_bs(blk), CONVERT_THROTTLE_GROUP)
    io.bdrv_set_io_limits(bb.blk_bs(blk), cfg)


def block_driver_can_compress(drv) -> bool:
    return drv.bdrv_write_compressed is not None


SNAPSHOT_OPT_BASE = 'snapshot.'
internal_snapshot_opts = QemuOptsList('snapshot', [
    QemuOptDesc('snapshot.id', QEMU_OPT_STRING, 'snapshot id'),
    QemuOptDesc('snapshot.name', QEMU_OPT_STRING, 'snapshot name'),
])


def _snapshot_exists(bs, snapshot_id: Optional[str],
                     name: Optional[str]) -> bool:
    """7.2's qcow2 find_snapshot_by_id_and_name: both must match if both
    are given."""
    sn_tab = [None]
    bs.drv.bdrv_snapshot_list(bs, sn_tab)
    return any((snapshot_id is None or sn.id_str == snapshot_id)
               and (name is None or sn.name == name)
               for sn in sn_tab[0] or ())


def bdrv_snapshot_load_tmp_error(bs, snapshot_param: str) -> str:
    """Why block/snapshot.c's bdrv_snapshot_load_tmp (for snapshot.id= and
    snapshot.name= options) or bdrv_snapshot_load_tmp_by_id_or_name (an id,
    else a name) refuses snapshot_param.  No driver of this port loads an
    internal snapshot: a format whose 7.2 driver can (one with a snapshot
    list, qcow2) refuses a missing snapshot as 7.2 does, and an existing
    one as the others do.  7.2's BlockBackends are anonymous, hence ''."""
    if not bs.read_only:
        return "Device '' is not read-only"
    if bs.drv.bdrv_snapshot_list:
        if snapshot_param.startswith(SNAPSHOT_OPT_BASE):
            sn_opts = qemu_opts_create(internal_snapshot_opts)
            qemu_opts_do_parse(sn_opts, snapshot_param, None, None)
            found = _snapshot_exists(bs, qemu_opt_get(sn_opts, 'snapshot.id'),
                                     qemu_opt_get(sn_opts, 'snapshot.name'))
            qemu_opts_del(sn_opts)
        else:
            found = (_snapshot_exists(bs, snapshot_param, None)
                     or _snapshot_exists(bs, None, snapshot_param))
        if not found:
            return "Can't find snapshot"
    return ("Block format '%s' used by device '' does not support "
            "temporarily loading internal snapshots" % bs.drv.format_name)


def img_convert(argv: list) -> int:
    fmt = None
    out_fmt = None
    cache = "unsafe"
    src_cache = BDRV_DEFAULT_CACHE
    out_baseimg = None
    backing_fmt = None
    snapshot_param = None
    options = [None]
    local_err = [None]
    image_opts = skip_create = progress = tgt_image_opts = False
    force_share = False
    explict_min_sparse = False
    bitmaps = False
    rate_limit = 0
    s = ImgConvertState()

    long_options = [
        option("help", no_argument, 'h'),
        option("object", required_argument, OPTION_OBJECT),
        option("image-opts", no_argument, OPTION_IMAGE_OPTS),
        option("force-share", no_argument, 'U'),
        option("target-image-opts", no_argument, OPTION_TARGET_IMAGE_OPTS),
        option("salvage", no_argument, OPTION_SALVAGE),
        option("target-is-zero", no_argument, OPTION_TARGET_IS_ZERO),
        option("bitmaps", no_argument, OPTION_BITMAPS),
    ]
    getopt = ImgGetopt(argv, ":hf:O:B:CcF:o:l:S:pt:T:qnm:WUr:",
                       long_options)
    for c, optarg in getopt:
        if c == ':':
            missing_argument(getopt.bad_option)
        elif c == '?':
            unrecognized_option(getopt.bad_option)
        elif c == 'h':
            help()
        elif c == 'f':
            fmt = optarg
        elif c == 'O':
            out_fmt = optarg
        elif c == 'B':
            out_baseimg = optarg
        elif c == 'C':
            s.copy_range = True
        elif c == 'c':
            s.compressed = True
        elif c == 'F':
            backing_fmt = optarg
        elif c == 'o':
            if accumulate_options(options, optarg) < 0:
                return 1
        elif c == 'l':
            if optarg.startswith(SNAPSHOT_OPT_BASE):
                sn_opts = qemu_opts_create(internal_snapshot_opts)
                qemu_opts_do_parse(sn_opts, optarg, None, local_err)
                if local_err[0]:
                    error_report_err(local_err[0])
                    error_report("Failed in parsing snapshot param '%s'",
                                 optarg)
                    return 1
            snapshot_param = optarg
        elif c == 'S':
            sval = cvtnum("buffer size for sparse output", optarg)
            if sval < 0:
                return 1
            if (sval % BDRV_SECTOR_SIZE or
                    sval // BDRV_SECTOR_SIZE > MAX_BUF_SECTORS):
                error_report("Invalid buffer size for sparse output "
                             "specified. Valid sizes are multiples of %d up "
                             "to %d. Select 0 to disable sparse detection "
                             "(fully allocates output).", BDRV_SECTOR_SIZE,
                             MAX_BUF_SECTORS * BDRV_SECTOR_SIZE)
                return 1
            s.min_sparse = sval // BDRV_SECTOR_SIZE
            explict_min_sparse = True
        elif c == 'p':
            progress = True
        elif c == 't':
            cache = optarg
        elif c == 'T':
            src_cache = optarg
        elif c == 'q':
            s.quiet = True
        elif c == 'n':
            skip_create = True
        elif c == 'm':
            err, s.num_coroutines = qemu_strtoi64(optarg, None, 0)
            if err or not 1 <= s.num_coroutines <= MAX_COROUTINES:
                error_report("Invalid number of coroutines. Allowed number "
                             "of coroutines is between 1 and %d",
                             MAX_COROUTINES)
                return 1
        elif c == 'W':
            s.wr_in_order = False
        elif c == 'U':
            force_share = True
        elif c == 'r':
            rate_limit = cvtnum("rate limit", optarg)
            if rate_limit < 0:
                return 1
        elif c == OPTION_OBJECT:
            user_creatable_process_cmdline(optarg)
        elif c == OPTION_IMAGE_OPTS:
            image_opts = True
        elif c == OPTION_SALVAGE:
            s.salvage = True
        elif c == OPTION_TARGET_IMAGE_OPTS:
            tgt_image_opts = True
        elif c == OPTION_TARGET_IS_ZERO:
            # a target the user says is blank is as good as one the
            # driver zero-initialises
            s.has_zero_init = True
        elif c == OPTION_BITMAPS:
            bitmaps = True
    argv, optind = getopt.argv, getopt.optind
    argc = len(argv)

    if not out_fmt and not tgt_image_opts:
        out_fmt = "raw"

    if s.compressed and s.copy_range:
        error_report("Cannot enable copy offloading when -c is used")
        return 1
    if explict_min_sparse and s.copy_range:
        error_report("Cannot enable copy offloading when -S is used")
        return 1
    if s.copy_range and s.salvage:
        error_report("Cannot use copy offloading in salvaging mode")
        return 1
    if tgt_image_opts and not skip_create:
        error_report("--target-image-opts requires use of -n flag")
        return 1
    if skip_create and options[0]:
        error_report("-o has no effect when skipping image creation")
        return 1
    if s.has_zero_init and not skip_create:
        error_report("--target-is-zero requires use of -n flag")
        return 1

    s.src_num = argc - optind - 1
    out_filename = argv[argc - 1] if s.src_num >= 1 else None

    if options[0] and has_help_option(options[0]):
        if out_fmt:
            return print_block_option_help(out_filename, out_fmt)
        error_report("Option help requires a format be specified")
        return 1

    if s.src_num < 1:
        error_report("Must specify image file name")
        return 1

    src_flags = [0]
    src_writethrough = [False]
    if core.bdrv_parse_cache_mode(src_cache, src_flags,
                                  src_writethrough) < 0:
        error_report("Invalid source cache option: %s", src_cache)
        return 1

    # initialize before the error paths end it
    if s.quiet:
        progress = False
    qemu_progress_init(progress, 1.0)
    qemu_progress_print(0, 100)

    ret = convert_open_and_copy(
        s, argv[optind:argc - 1], out_filename, fmt, out_fmt, cache,
        src_flags[0], src_writethrough[0], options[0], out_baseimg,
        backing_fmt, snapshot_param, image_opts, tgt_image_opts,
        skip_create, force_share, bitmaps, rate_limit)

    if not ret:
        qemu_progress_print(100, 0)
    qemu_progress_end()
    bb.blk_unref(s.target)
    for blk in s.src:
        bb.blk_unref(blk)
    return 1 if ret else 0


def convert_open_and_copy(s: ImgConvertState, src_names: list,
                          out_filename: str, fmt: Optional[str],
                          out_fmt: Optional[str], cache: str, src_flags: int,
                          src_writethrough: bool, options: Optional[str],
                          out_baseimg: Optional[str],
                          backing_fmt: Optional[str],
                          snapshot_param: Optional[str], image_opts: bool,
                          tgt_image_opts: bool, skip_create: bool,
                          force_share: bool, bitmaps: bool,
                          rate_limit: int) -> int:
    """The part of img_convert between its option checks and its 'out'
    label: open the sources, create and open the target, copy.  0, or
    non-zero after a message; the BlockBackends opened are left in s."""
    local_err = [None]
    opts = None
    drv = None

    for bs_i, name in enumerate(src_names):
        blk = img_open("source_%d" % bs_i, image_opts, name, fmt, src_flags,
                       src_writethrough, s.quiet, force_share)
        if not blk:
            return -1
        s.src.append(blk)
        nb_sectors = bb.blk_nb_sectors(blk)
        if nb_sectors < 0:
            error_report("Could not get size of %s: %s", name,
                         os.strerror(-nb_sectors))
            return -1
        s.src_sectors.append(nb_sectors)
        s.total_sectors += nb_sectors

    if snapshot_param is not None:
        if s.src_num > 1 and not snapshot_param.startswith(
                SNAPSHOT_OPT_BASE):
            error_report("No support for concatenating multiple snapshot")
            return -1
        error_report("Failed to load snapshot: %s",
                     bdrv_snapshot_load_tmp_error(bb.blk_bs(s.src[0]),
                                                  snapshot_param))
        return -1

    if not skip_create:
        # find the driver and parse its options
        drv = bdrv_find_format(out_fmt)
        if not drv:
            error_report("Unknown file format '%s'", out_fmt)
            return -1

        proto_drv = bdrv_find_protocol(out_filename, True, local_err)
        if not proto_drv:
            error_report_err(local_err[0])
            return -1

        if not drv.create_opts:
            error_report("Format driver '%s' does not support image "
                         "creation", drv.format_name)
            return -1

        if not proto_drv.create_opts:
            error_report("Protocol driver '%s' does not support image "
                         "creation", proto_drv.format_name)
            return -1

        create_opts = qemu_opts_append(None, drv.create_opts)
        create_opts = qemu_opts_append(create_opts, proto_drv.create_opts)

        opts = qemu_opts_create(create_opts)
        if options:
            qemu_opts_do_parse(opts, options, None, local_err)
            if local_err[0]:
                error_report_err(local_err[0])
                return -1

        qemu_opt_set_number(opts, BLOCK_OPT_SIZE,
                            s.total_sectors * BDRV_SECTOR_SIZE, None)
        if add_old_style_options(out_fmt, opts, out_baseimg,
                                 backing_fmt) < 0:
            return -1

    # the backing file may also come from -o backing_file
    out_baseimg_param = qemu_opt_get(opts, BLOCK_OPT_BACKING_FILE)
    if out_baseimg_param:
        out_baseimg = out_baseimg_param
    s.target_has_backing = bool(out_baseimg)

    if s.has_zero_init and s.target_has_backing:
        error_report("Cannot use --target-is-zero when the destination "
                     "image has a backing file")
        return -1

    if s.src_num > 1 and out_baseimg:
        error_report("Having a backing file for the target makes no sense "
                     "when concatenating multiple input images")
        return -1

    if out_baseimg_param and not qemu_opt_get(opts, BLOCK_OPT_BACKING_FMT):
        error_report("Use of backing file requires explicit backing format")
        return -1

    # is compression supported?
    if s.compressed:
        encryption = qemu_opt_get_bool(opts, BLOCK_OPT_ENCRYPT, False)
        encryptfmt = qemu_opt_get(opts, BLOCK_OPT_ENCRYPT_FORMAT)
        preallocation = qemu_opt_get(opts, BLOCK_OPT_PREALLOC)

        if drv and not block_driver_can_compress(drv):
            error_report("Compression not supported for this file format")
            return -1

        if encryption or encryptfmt:
            error_report("Compression and encryption not supported at "
                         "the same time")
            return -1

        if preallocation and preallocation != "off":
            error_report("Compression and preallocation not supported at "
                         "the same time")
            return -1

    # no driver of this port has persistent dirty bitmaps
    if bitmaps:
        if s.src_num > 1:
            error_report("Copying bitmaps only possible with single source")
            return -1
        error_report("Source lacks bitmap support")
        return -1

    if not skip_create:
        # create the new image
        ret = core.bdrv_create(drv, out_filename, opts, local_err)
        if ret < 0:
            error_reportf_err(local_err[0], "%s: error while converting %s: ",
                              out_filename, out_fmt)
            return ret

    s.target_is_new = not skip_create

    flags = [BDRV_O_RDWR | BDRV_O_UNMAP if s.min_sparse else BDRV_O_RDWR]
    writethrough = [False]
    if core.bdrv_parse_cache_mode(cache, flags, writethrough) < 0:
        error_report("Invalid cache option: %s", cache)
        return -1

    if skip_create:
        s.target = img_open("target", tgt_image_opts, out_filename, out_fmt,
                            flags[0], writethrough[0], s.quiet, False)
    else:
        s.target = img_open_file("target", out_filename, None, out_fmt,
                                 flags[0], writethrough[0], s.quiet, False)
    if not s.target:
        return -1
    out_bs = bb.blk_bs(s.target)

    if s.compressed and not block_driver_can_compress(out_bs.drv):
        error_report("Compression not supported for this file format")
        return -1

    # a bigger buffer than the default 2M if the target's optimal transfer
    # length or discard alignment is bigger, up to MAX_BUF_SECTORS
    s.buf_sectors = min(MAX_BUF_SECTORS,
                        max(s.buf_sectors, out_bs.bl.opt_transfer_length,
                            out_bs.bl.discard_alignment))

    # align the writes to the target, to spare it read-modify-write
    s.alignment = max(pow2floor(s.min_sparse),
                      -(-out_bs.request_alignment // BDRV_SECTOR_SIZE))
    assert s.alignment & (s.alignment - 1) == 0

    if skip_create:
        output_sectors = bb.blk_nb_sectors(s.target)
        if output_sectors < 0:
            error_report("unable to get output image length: %s",
                         os.strerror(-output_sectors))
            return -1
        if output_sectors < s.total_sectors:
            error_report("output file is smaller than input file")
            return -1

    if s.target_has_backing and s.target_is_new:
        # an error means "unknown", which only costs an optimisation
        s.target_backing_sectors = core.bdrv_nb_sectors(backing_bs(out_bs)) \
            if out_bs.backing else -1
    else:
        s.target_backing_sectors = -1

    bdi = BlockDriverInfo()
    ret = core.bdrv_get_info(out_bs, bdi)
    if ret < 0:
        if s.compressed:
            error_report("could not get block driver info")
            return ret
    else:
        s.compressed = s.compressed or bdi.needs_compressed_writes
        s.cluster_sectors = bdi.cluster_size // BDRV_SECTOR_SIZE

    if rate_limit:
        set_rate_limit(s.target, rate_limit)

    # no copy offloading (-C) in this port: QEMU falls back to reading and
    # writing when blk_co_copy_range fails, which it always would here
    s.copy_range = False

    return convert_do_copy(s)


def pow2floor(value: int) -> int:
    """The largest power of two not above value (0 for 0)."""
    return 1 << (value.bit_length() - 1) if value else 0


def dump_json_image_info_list(lst: list) -> None:
    printf("%s\n", qobject_to_json_pretty(lst))


def dump_json_image_info(info: dict) -> None:
    printf("%s\n", qobject_to_json_pretty(info))


def dump_human_image_info_list(lst: list) -> None:
    delim = False
    for info in lst:
        if delim:
            printf("\n")
        delim = True
        bdrv_image_info_dump(info)


def collect_image_info_list(image_opts: bool, filename: Optional[str],
                            fmt: Optional[str], chain: bool,
                            force_share: bool) -> Optional[list]:
    """The ImageInfo of filename, and with chain of its whole backing
    chain; None after a message."""
    head = []
    filenames = set()

    while filename:
        if filename in filenames:
            error_report("Backing file '%s' creates an infinite loop.",
                         filename)
            return None
        filenames.add(filename)

        blk = img_open("image", image_opts, filename, fmt,
                       BDRV_O_NO_BACKING | BDRV_O_NO_IO, False, False,
                       force_share)
        if not blk:
            return None
        bs = bb.blk_bs(blk)

        err = [None]
        info = [None]
        bdrv_query_image_info(bs, info, err)
        if err[0]:
            error_report_err(err[0])
            bb.blk_unref(blk)
            return None
        info = info[0]
        head.append(info)
        bb.blk_unref(blk)

        # what only applies to the topmost image
        filename = fmt = None
        image_opts = False

        if chain:
            if 'full-backing-filename' in info:
                filename = info['full-backing-filename']
            elif 'backing-filename' in info:
                error_report("Could not determine absolute backing filename,"
                             " but backing filename '%s' present",
                             info['backing-filename'])
                return None
            if 'backing-filename-format' in info:
                fmt = info['backing-filename-format']
    return head


def img_info(argv: list) -> int:
    output_format = OFORMAT_HUMAN
    chain = False
    fmt = None
    output = None
    image_opts = False
    force_share = False

    long_options = [
        option("help", no_argument, 'h'),
        option("format", required_argument, 'f'),
        option("output", required_argument, OPTION_OUTPUT),
        option("backing-chain", no_argument, OPTION_BACKING_CHAIN),
        option("object", required_argument, OPTION_OBJECT),
        option("image-opts", no_argument, OPTION_IMAGE_OPTS),
        option("force-share", no_argument, 'U'),
    ]
    getopt = ImgGetopt(argv, ":f:hU", long_options)
    for c, optarg in getopt:
        if c == ':':
            missing_argument(getopt.bad_option)
        elif c == '?':
            unrecognized_option(getopt.bad_option)
        elif c == 'h':
            help()
        elif c == 'f':
            fmt = optarg
        elif c == 'U':
            force_share = True
        elif c == OPTION_OUTPUT:
            output = optarg
        elif c == OPTION_BACKING_CHAIN:
            chain = True
        elif c == OPTION_OBJECT:
            user_creatable_process_cmdline(optarg)
        elif c == OPTION_IMAGE_OPTS:
            image_opts = True
    argv, optind = getopt.argv, getopt.optind
    if optind != len(argv) - 1:
        error_exit("Expecting one image file name")
    filename = argv[optind]

    if output == "json":
        output_format = OFORMAT_JSON
    elif output == "human":
        output_format = OFORMAT_HUMAN
    elif output is not None:
        error_report("--output must be used with human or json as argument.")
        return 1

    lst = collect_image_info_list(image_opts, filename, fmt, chain,
                                  force_share)
    if not lst:
        return 1

    if output_format == OFORMAT_HUMAN:
        dump_human_image_info_list(lst)
    elif chain:
        dump_json_image_info_list(lst)
    else:
        dump_json_image_info(lst[0])
    return 0


class MapEntry:
    """qapi MapEntry, as img_map keeps it (with its has_ flags)."""
    __slots__ = ('start', 'length', 'data', 'zero', 'present', 'depth',
                 'offset', 'has_offset', 'filename')

    def __init__(self, start: int = 0, length: int = 0, data: bool = False,
                 zero: bool = False, present: bool = False, depth: int = 0,
                 offset: int = 0, has_offset: bool = False,
                 filename: Optional[str] = None) -> None:
        self.start = start
        self.length = length
        self.data = data
        self.zero = zero
        self.present = present
        self.depth = depth
        self.offset = offset
        self.has_offset = has_offset
        self.filename = filename


def _hex_col(value: int) -> str:
    """printf's "%#-16" PRIx64: no 0x prefix on a zero."""
    return ('%#x' % value if value else '0').ljust(16)


def _json_bool(value: bool) -> str:
    return 'true' if value else 'false'


def dump_map_entry(output_format: int, e: MapEntry,
                   next: Optional[MapEntry]) -> int:
    if output_format == OFORMAT_HUMAN:
        if e.data and not e.has_offset:
            error_report("File contains external, encrypted or compressed "
                         "clusters.")
            return -1
        if e.data and not e.zero:
            printf("%s%s%s%s\n", _hex_col(e.start), _hex_col(e.length),
                   _hex_col(e.offset if e.has_offset else 0),
                   e.filename or "")
        # this format does not tell 0, ZERO and ZERO|DATA apart: make them
        # the same so that they merge
        if next and (not next.data or next.zero):
            next.data = False
            next.zero = True
    else:
        printf('{ "start": %d, "length": %d, "depth": %d, "present": %s, '
               '"zero": %s, "data": %s', e.start, e.length, e.depth,
               _json_bool(e.present), _json_bool(e.zero), _json_bool(e.data))
        if e.has_offset:
            printf(', "offset": %d', e.offset)
        printf('}')
        if next:
            printf(",\n")
    return 0


def get_block_status(bs, offset: int, nbytes: int, e: MapEntry) -> int:
    """The status of [offset, offset + nbytes) in bs or, where bs leaves it
    unallocated, in its backing chain (depth counts the steps down)."""
    depth = 0
    sector_in = offset & (BDRV_SECTOR_SIZE - 1)
    while True:
        pnum = [0]
        file = [None]
        sector_num = offset >> BDRV_SECTOR_BITS
        nb_sectors = min(-(-(sector_in + nbytes) // BDRV_SECTOR_SIZE),
                         INT_MAX)
        ret = io.bdrv_get_block_status(bs, sector_num, nb_sectors, pnum,
                                       file)
        if ret < 0:
            return ret
        nbytes = min(nbytes, (pnum[0] << BDRV_SECTOR_BITS) - sector_in)
        assert nbytes > 0
        if ret & (BDRV_BLOCK_ZERO | BDRV_BLOCK_DATA):
            break
        bs = backing_bs(bs)
        if bs is None:
            ret = 0
            break
        depth += 1

    has_offset = bool(ret & BDRV_BLOCK_OFFSET_VALID)
    filename = None
    if file[0] and has_offset:
        core.bdrv_refresh_filename(file[0])
        filename = file[0].filename

    e.start = offset
    e.length = nbytes
    e.data = bool(ret & BDRV_BLOCK_DATA)
    e.zero = bool(ret & BDRV_BLOCK_ZERO)
    e.present = bool(ret & BDRV_BLOCK_ALLOCATED)
    e.offset = (ret & BDRV_BLOCK_OFFSET_MASK) + sector_in if has_offset else 0
    e.has_offset = has_offset
    e.depth = depth
    e.filename = filename
    return 0


def entry_mergeable(curr: MapEntry, next: MapEntry) -> bool:
    if curr.length == 0:
        return False
    if (curr.zero != next.zero or
            curr.data != next.data or
            curr.present != next.present or
            curr.depth != next.depth or
            curr.has_offset != next.has_offset or
            (curr.filename is None) != (next.filename is None)):
        return False
    if curr.filename is not None and curr.filename != next.filename:
        return False
    if curr.has_offset and curr.offset + curr.length != next.offset:
        return False
    return True


def img_map(argv: list) -> int:
    output_format = OFORMAT_HUMAN
    fmt = None
    output = None
    image_opts = False
    force_share = False
    start_offset = 0
    max_length = -1

    long_options = [
        option("help", no_argument, 'h'),
        option("format", required_argument, 'f'),
        option("output", required_argument, OPTION_OUTPUT),
        option("object", required_argument, OPTION_OBJECT),
        option("image-opts", no_argument, OPTION_IMAGE_OPTS),
        option("force-share", no_argument, 'U'),
        option("start-offset", required_argument, 's'),
        option("max-length", required_argument, 'l'),
    ]
    getopt = ImgGetopt(argv, ":f:s:l:hU", long_options)
    for c, optarg in getopt:
        if c == ':':
            missing_argument(getopt.bad_option)
        elif c == '?':
            unrecognized_option(getopt.bad_option)
        elif c == 'h':
            help()
        elif c == 'f':
            fmt = optarg
        elif c == 'U':
            force_share = True
        elif c == OPTION_OUTPUT:
            output = optarg
        elif c == 's':
            start_offset = cvtnum("start offset", optarg)
            if start_offset < 0:
                return 1
        elif c == 'l':
            max_length = cvtnum("max length", optarg)
            if max_length < 0:
                return 1
        elif c == OPTION_OBJECT:
            user_creatable_process_cmdline(optarg)
        elif c == OPTION_IMAGE_OPTS:
            image_opts = True
    argv, optind = getopt.argv, getopt.optind
    if optind != len(argv) - 1:
        error_exit("Expecting one image file name")
    filename = argv[optind]

    if output == "json":
        output_format = OFORMAT_JSON
    elif output == "human":
        output_format = OFORMAT_HUMAN
    elif output is not None:
        error_report("--output must be used with human or json as argument.")
        return 1

    blk = img_open("image", image_opts, filename, fmt, 0, False, False,
                   force_share)
    if not blk:
        return 1
    bs = bb.blk_bs(blk)

    if output_format == OFORMAT_HUMAN:
        printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to",
               "File")
    else:
        printf("[")

    length = bb.blk_getlength(blk)
    if length < 0:
        error_report("Failed to get size for '%s'", filename)
        bb.blk_unref(blk)
        return 1
    if max_length != -1:
        length = min(start_offset + max_length, length)

    curr = MapEntry(start=start_offset)
    ret = 0
    while curr.start + curr.length < length:
        offset = curr.start + curr.length
        n = length - offset

        next = MapEntry()
        ret = get_block_status(bs, offset, n, next)
        if ret < 0:
            error_report("Could not read file metadata: %s",
                         os.strerror(-ret))
            bb.blk_unref(blk)
            return 1

        if entry_mergeable(curr, next):
            curr.length += next.length
            continue

        if curr.length > 0:
            ret = dump_map_entry(output_format, curr, next)
            if ret < 0:
                bb.blk_unref(blk)
                return 1
        curr = next

    ret = dump_map_entry(output_format, curr, None)
    if output_format == OFORMAT_JSON:
        printf("]\n")

    bb.blk_unref(blk)
    return 1 if ret < 0 else 0


class BenchData:
    __slots__ = ('blk', 'image_size', 'write', 'bufsize', 'step', 'nrreq',
                 'n', 'flush_interval', 'drain_on_flush', 'buf', 'qiov',
                 'in_flight', 'in_flush', 'offset')

    def __init__(self, blk, image_size: int, bufsize: int, step: int,
                 nrreq: int, n: int, offset: int, write: bool,
                 flush_interval: int, drain_on_flush: bool) -> None:
        self.blk = blk
        self.image_size = image_size
        self.write = write
        self.bufsize = bufsize
        self.step = step
        self.nrreq = nrreq
        self.n = n
        self.flush_interval = flush_interval
        self.drain_on_flush = drain_on_flush
        self.buf = None
        self.qiov: list = []
        self.in_flight = 0
        self.in_flush = False
        self.offset = offset


def bench_exit_failure() -> None:
    """exit(EXIT_FAILURE) from a completion callback, which may run in a
    coroutine: stdout is flushed as exit() would, then the process ends."""
    fflush_stdout()
    os._exit(EXIT_FAILURE)


def bench_undrained_flush_cb(opaque: BenchData, ret: int) -> None:
    if ret < 0:
        error_report("Failed flush request: %s", os.strerror(-ret))
        bench_exit_failure()


def bench_cb(b: BenchData, ret: int) -> None:
    """Account a completed request and keep the queue full: at most nrreq
    requests in flight, a new one submitted as each completes."""
    if ret < 0:
        error_report("Failed request: %s", os.strerror(-ret))
        bench_exit_failure()

    if b.in_flush:
        # a flush with a drained queue is done: go on with the requests
        assert b.in_flight == 0
        b.in_flush = False
    elif b.in_flight > 0:
        remaining = b.n - b.in_flight

        b.n -= 1
        b.in_flight -= 1

        # time for a flush?  Drain the queue first if asked to
        if b.flush_interval and remaining % b.flush_interval == 0:
            if not b.in_flight or not b.drain_on_flush:
                if b.drain_on_flush:
                    b.in_flush = True
                    cb = bench_cb
                else:
                    cb = bench_undrained_flush_cb
                bb.blk_aio_flush(b.blk, cb, b)
            if b.drain_on_flush:
                return

    while b.n > b.in_flight and b.in_flight < b.nrreq:
        offset = b.offset
        # count the request and move on before submitting it: blk_aio_*
        # may complete requests and call us again
        b.in_flight += 1
        b.offset += b.step
        b.offset %= b.image_size
        # (QEMU hands the first of the nrreq vectors to every request)
        if b.write:
            bb.blk_aio_pwritev(b.blk, offset, b.qiov[0], 0, bench_cb, b)
        else:
            bb.blk_aio_preadv(b.blk, offset, b.qiov[0], 0, bench_cb, b)


def _strtoul_arg(optarg: str, limit: int) -> Optional[int]:
    """qemu_strtoul(optarg, NULL, 0, &res) with res <= limit, or None."""
    err, res = qemu_strtou64(optarg, None, 0)
    if err < 0 or res > limit:
        return None
    return res


def img_bench(argv: list) -> int:
    fmt = None
    quiet = False
    image_opts = False
    is_write = False
    count = 75000
    depth = 64
    offset = 0
    bufsize = 4096
    pattern = 0
    step = 0
    flush_interval = 0
    drain_on_flush = True
    flags = [0]
    writethrough = [False]
    force_share = False

    long_options = [
        option("help", no_argument, 'h'),
        option("flush-interval", required_argument, OPTION_FLUSH_INTERVAL),
        option("image-opts", no_argument, OPTION_IMAGE_OPTS),
        option("pattern", required_argument, OPTION_PATTERN),
        option("no-drain", no_argument, OPTION_NO_DRAIN),
        option("force-share", no_argument, 'U'),
    ]
    getopt = ImgGetopt(argv, ":hc:d:f:ni:o:qs:S:t:wU", long_options)
    for c, optarg in getopt:
        if c == ':':
            missing_argument(getopt.bad_option)
        elif c == '?':
            unrecognized_option(getopt.bad_option)
        elif c == 'h':
            help()
        elif c == 'c':
            res = _strtoul_arg(optarg, INT_MAX)
            if res is None:
                error_report("Invalid request count specified")
                return 1
            count = res
        elif c == 'd':
            res = _strtoul_arg(optarg, INT_MAX)
            if res is None:
                error_report("Invalid queue depth specified")
                return 1
            depth = res
        elif c == 'f':
            fmt = optarg
        elif c == 'n':
            flags[0] |= BDRV_O_NATIVE_AIO
        elif c == 'i':
            if bdrv_parse_aio(optarg, flags) < 0:
                error_report("Invalid aio option: %s", optarg)
                return 1
        elif c == 'o':
            offset = cvtnum("offset", optarg)
            if offset < 0:
                return 1
        elif c == 'q':
            quiet = True
        elif c == 's':
            sval = cvtnum_full("buffer size", optarg, 0, INT_MAX)
            if sval < 0:
                return 1
            bufsize = sval
        elif c == 'S':
            sval = cvtnum_full("step_size", optarg, 0, INT_MAX)
            if sval < 0:
                return 1
            step = sval
        elif c == 't':
            if core.bdrv_parse_cache_mode(optarg, flags, writethrough) < 0:
                error_report("Invalid cache mode")
                return 1
        elif c == 'w':
            flags[0] |= BDRV_O_RDWR
            is_write = True
        elif c == 'U':
            force_share = True
        elif c == OPTION_PATTERN:
            res = _strtoul_arg(optarg, 0xff)
            if res is None:
                error_report("Invalid pattern byte specified")
                return 1
            pattern = res
        elif c == OPTION_FLUSH_INTERVAL:
            res = _strtoul_arg(optarg, INT_MAX)
            if res is None:
                error_report("Invalid flush interval specified")
                return 1
            flush_interval = res
        elif c == OPTION_NO_DRAIN:
            drain_on_flush = False
        elif c == OPTION_IMAGE_OPTS:
            image_opts = True
    argv, optind = getopt.argv, getopt.optind

    if optind != len(argv) - 1:
        error_exit("Expecting one image file name")
    filename = argv[-1]

    if not is_write and flush_interval:
        error_report("--flush-interval is only available in write tests")
        return 1
    if flush_interval and flush_interval < depth:
        error_report("Flush interval can't be smaller than depth")
        return 1

    blk = img_open("image", image_opts, filename, fmt, flags[0],
                   writethrough[0], quiet, force_share)
    if not blk:
        return 1

    image_size = bb.blk_getlength(blk)
    if image_size < 0:
        bb.blk_unref(blk)
        return 1

    data = BenchData(blk, image_size, bufsize, step or bufsize, depth, count,
                     offset, is_write, flush_interval, drain_on_flush)
    printf("Sending %d %s requests, %d bytes each, %d in parallel "
           "(starting at offset %d, step size %d)\n",
           data.n, "write" if data.write else "read", data.bufsize,
           data.nrreq, data.offset, data.step)
    if flush_interval:
        printf("Sending flush every %d requests\n", flush_interval)

    buf_size = data.nrreq * data.bufsize
    data.buf = bb.blk_blockalign(blk, buf_size)
    data.buf[:buf_size] = bytes([pattern]) * buf_size

    for i in range(data.nrreq):
        qiov = QEMUIOVector()
        qemu_iovec_init(qiov, 1)
        qemu_iovec_add(qiov, data.buf[i * data.bufsize:], data.bufsize)
        data.qiov.append(qiov)

    # Python only: the loop makes short-lived objects by the million, and
    # each full collection of the cyclic GC would walk every object made
    # so far (modules, drivers, the image) again: take those out of its way.
    gc.freeze()

    t1 = time.time()
    bench_cb(data, 0)

    while data.n > 0:
        main_loop_wait(False)
    t2 = time.time()

    printf("Run completed in %3.3f seconds.\n", t2 - t1)

    bb.blk_unref(blk)
    return 0


# the one option img_resize parses its size with, so that a bad size gets
# the messages of QEMU_OPT_SIZE
resize_options = QemuOptsList("resize_options", [
    QemuOptDesc(BLOCK_OPT_SIZE, QEMU_OPT_SIZE, "Virtual disk size"),
])


def _int64(value: int) -> int:
    """value as C's int64_t holds it (two's complement wrap)."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >> 63 else value


def img_resize(argv: list) -> int:
    local_err = [None]
    fmt = None
    quiet = False
    image_opts = False
    shrink = False
    prealloc = "off"

    # the size is taken off the end before getopt, so that "-1G" is not
    # read as options
    if len(argv) < 3:
        error_exit("Not enough arguments")
    size = argv[-1]
    argv = argv[:-1]

    long_options = [
        option("help", no_argument, 'h'),
        option("object", required_argument, OPTION_OBJECT),
        option("image-opts", no_argument, OPTION_IMAGE_OPTS),
        option("preallocation", required_argument, OPTION_PREALLOCATION),
        option("shrink", no_argument, OPTION_SHRINK),
    ]
    getopt = ImgGetopt(argv, ":f:hq", long_options)
    for c, optarg in getopt:
        if c == ':':
            missing_argument(getopt.bad_option)
        elif c == '?':
            unrecognized_option(getopt.bad_option)
        elif c == 'h':
            help()
        elif c == 'f':
            fmt = optarg
        elif c == 'q':
            quiet = True
        elif c == OPTION_OBJECT:
            user_creatable_process_cmdline(optarg)
        elif c == OPTION_IMAGE_OPTS:
            image_opts = True
        elif c == OPTION_PREALLOCATION:
            if optarg not in core.PREALLOC_MODES:
                error_report("Invalid preallocation mode '%s'", optarg)
                return 1
            prealloc = optarg
        elif c == OPTION_SHRINK:
            shrink = True
    argv, optind = getopt.argv, getopt.optind
    if optind != len(argv) - 1:
        error_exit("Expecting image file name and size")
    filename = argv[optind]

    # grow (+), shrink (-) or set
    relative = {'+': 1, '-': -1}.get(size[:1], 0)
    if relative:
        size = size[1:]

    param = qemu_opts_create(resize_options)
    qemu_opt_set(param, BLOCK_OPT_SIZE, size, local_err)
    if local_err[0]:
        error_report_err(local_err[0])
        return 1
    n = qemu_opt_get_size(param, BLOCK_OPT_SIZE, 0)

    blk = img_open("image", image_opts, filename, fmt, BDRV_O_RDWR, False,
                   quiet, False)
    if not blk:
        return 1

    ret = -1
    current_size = bb.blk_getlength(blk)
    if current_size < 0:
        error_report("Failed to inquire current image length: %s",
                     os.strerror(-current_size))
    else:
        if relative:
            total_size = _int64(current_size + n * relative)
        else:
            total_size = _int64(n)
        if total_size <= 0:
            error_report("New image size must be positive")
        elif total_size <= current_size and prealloc != "off":
            error_report("Preallocation can only be used for growing "
                         "images")
        elif total_size < current_size and not shrink:
            error_report("Use the --shrink option to perform a shrink "
                         "operation.")
            warn_report("Shrinking an image will delete all data beyond "
                        "the shrunken image's end. Before performing such "
                        "an operation, make sure there is no important data "
                        "there.")
        else:
            ret = bb.blk_truncate(blk, total_size, prealloc, local_err)
            if ret == 0:
                qprintf(quiet, "Image resized.\n")
            else:
                error_report_err(local_err[0])
    bb.blk_unref(blk)
    return 0 if ret == 0 else 1


# img_dd's operands (7.2's C_* flags)
C_BS = 0o1
C_COUNT = 0o2
C_IF = 0o4
C_OF = 0o10
C_SKIP = 0o20


class DdInfo:
    def __init__(self):
        self.flags = 0
        self.count = 0


class DdIo:
    def __init__(self):
        self.bsz = 512      # dd's default block size
        self.filename: Optional[str] = None
        self.offset = 0


def img_dd_bs(arg: str, inp: DdIo, out: DdIo, dd: DdInfo) -> int:
    res = cvtnum_full("bs", arg, 1, INT_MAX)
    if res < 0:
        return 1
    inp.bsz = out.bsz = res
    return 0


def img_dd_count(arg: str, inp: DdIo, out: DdIo, dd: DdInfo) -> int:
    dd.count = cvtnum("count", arg)
    return 1 if dd.count < 0 else 0


def img_dd_if(arg: str, inp: DdIo, out: DdIo, dd: DdInfo) -> int:
    inp.filename = arg
    return 0


def img_dd_of(arg: str, inp: DdIo, out: DdIo, dd: DdInfo) -> int:
    out.filename = arg
    return 0


def img_dd_skip(arg: str, inp: DdIo, out: DdIo, dd: DdInfo) -> int:
    inp.offset = cvtnum("skip", arg)
    return 1 if inp.offset < 0 else 0


DD_OPTIONS = (
    ("bs", img_dd_bs, C_BS),
    ("count", img_dd_count, C_COUNT),
    ("if", img_dd_if, C_IF),
    ("of", img_dd_of, C_OF),
    ("skip", img_dd_skip, C_SKIP),
)


def img_dd(argv: list) -> int:
    local_err = [None]
    image_opts = False
    out_fmt = "raw"
    fmt = None
    force_share = False
    dd = DdInfo()
    inp = DdIo()
    out = DdIo()

    long_options = [
        option("help", no_argument, 'h'),
        option("object", required_argument, OPTION_OBJECT),
        option("image-opts", no_argument, OPTION_IMAGE_OPTS),
        option("force-share", no_argument, 'U'),
    ]
    getopt = ImgGetopt(argv, ":hf:O:U", long_options)
    for c, optarg in getopt:
        if c == 'O':
            out_fmt = optarg
        elif c == 'f':
            fmt = optarg
        elif c == ':':
            missing_argument(getopt.bad_option)
        elif c == '?':
            unrecognized_option(getopt.bad_option)
        elif c == 'h':
            help()
        elif c == 'U':
            force_share = True
        elif c == OPTION_OBJECT:
            user_creatable_process_cmdline(optarg)
        elif c == OPTION_IMAGE_OPTS:
            image_opts = True
    argv, optind = getopt.argv, getopt.optind

    for arg in argv[optind:]:
        name, eq, value = arg.partition('=')
        handler = next((o for o in DD_OPTIONS if o[0] == name), None)
        if not eq or not handler:
            error_report("unrecognized operand %s", name)
            return 1
        if handler[1](value, inp, out, dd) != 0:
            return 1
        dd.flags |= handler[2]

    if not (dd.flags & C_IF and dd.flags & C_OF):
        error_report("Must specify both input and output files")
        return 1

    blk1 = img_open("image", image_opts, inp.filename, fmt, 0, False, False,
                    force_share)
    if not blk1:
        return 1
    blk2 = None
    try:
        drv = bdrv_find_format(out_fmt)
        if not drv:
            error_report("Unknown file format")
            return 1
        proto_drv = bdrv_find_protocol(out.filename, True, local_err)
        if not proto_drv:
            error_report_err(local_err[0])
            return 1
        if not drv.create_opts:
            error_report("Format driver '%s' does not support image "
                         "creation", drv.format_name)
            return 1
        if not proto_drv.create_opts:
            error_report("Protocol driver '%s' does not support image "
                         "creation", proto_drv.format_name)
            return 1
        create_opts = qemu_opts_append(None, drv.create_opts)
        create_opts = qemu_opts_append(create_opts, proto_drv.create_opts)
        opts = qemu_opts_create(create_opts)

        size = bb.blk_getlength(blk1)
        if size < 0:
            error_report("Failed to get size for '%s'", inp.filename)
            return 1

        if (dd.flags & C_COUNT and dd.count <= INT64_MAX // inp.bsz
                and dd.count * inp.bsz < size):
            size = dd.count * inp.bsz

        # a skip past the end (or one that overflows int64_t) gives an
        # empty output, as dd(1) does
        skip_past_end = bool(dd.flags & C_SKIP and (
            inp.offset > INT64_MAX // inp.bsz
            or size < inp.bsz * inp.offset))
        qemu_opt_set_number(opts, BLOCK_OPT_SIZE,
                            0 if skip_past_end else
                            size - inp.bsz * inp.offset, None)

        ret = core.bdrv_create(drv, out.filename, opts, local_err)
        if ret < 0:
            error_reportf_err(local_err[0],
                              "%s: error while creating output image: ",
                              out.filename)
            return 1

        # 7.2 opens the output by its file name even with --image-opts
        blk2 = img_open_file("target", out.filename, None, out_fmt,
                             BDRV_O_RDWR, False, False, False)
        if not blk2:
            return 1

        if skip_past_end:
            error_report("%s: cannot skip to specified offset", inp.filename)
            in_pos = size
        else:
            in_pos = inp.offset * inp.bsz

        buf = bytearray(inp.bsz)
        out_pos = 0
        while in_pos < size:
            nbytes = size - in_pos if in_pos + inp.bsz > size else inp.bsz
            ret = bb.blk_pread(blk1, in_pos, buf, nbytes)
            if ret < 0:
                error_report("error while reading from input image file: %s",
                             os.strerror(-ret))
                return 1
            in_pos += nbytes
            ret = bb.blk_pwrite(blk2, out_pos, buf, nbytes)
            if ret < 0:
                error_report("error while writing to output image file: %s",
                             os.strerror(-ret))
                return 1
            out_pos += nbytes
        return 0
    finally:
        bb.blk_unref(blk1)
        if blk2:
            bb.blk_unref(blk2)


# qapi/block-core.json: the members of BlockMeasureInfo, in schema order
BLOCK_MEASURE_INFO_MEMBERS = ('required', 'fully-allocated', 'bitmaps')


def dump_json_block_measure_info(info: dict) -> None:
    printf("%s\n", qobject_to_json_pretty(
        qapi_struct(BLOCK_MEASURE_INFO_MEMBERS, info)))


def img_measure(argv: list) -> int:
    local_err = [None]
    output_format = OFORMAT_HUMAN
    fmt = None
    out_fmt = "raw"
    options = [None]
    snapshot_param = None
    force_share = False
    image_opts = False
    img_size = -1

    long_options = [
        option("help", no_argument, 'h'),
        option("image-opts", no_argument, OPTION_IMAGE_OPTS),
        option("object", required_argument, OPTION_OBJECT),
        option("output", required_argument, OPTION_OUTPUT),
        option("size", required_argument, OPTION_SIZE),
        option("force-share", no_argument, 'U'),
    ]
    # no ':' in front: glibc names a bad option itself, then help() runs
    getopt = Getopt(argv, "hf:O:o:l:U", long_options)
    for c, optarg in getopt:
        if c in ('?', 'h'):
            help()
        elif c == 'f':
            fmt = optarg
        elif c == OPTION_OBJECT:
            user_creatable_process_cmdline(optarg)
        elif c == OPTION_IMAGE_OPTS:
            image_opts = True
        elif c == 'l':
            if optarg.startswith(SNAPSHOT_OPT_BASE):
                sn_opts = qemu_opts_create(internal_snapshot_opts)
                qemu_opts_do_parse(sn_opts, optarg, None, local_err)
                if local_err[0]:
                    error_report_err(local_err[0])
                    error_report("Failed in parsing snapshot param '%s'",
                                 optarg)
                    return 1
            snapshot_param = optarg
        elif c == 'O':
            out_fmt = optarg
        elif c == 'o':
            if accumulate_options(options, optarg) < 0:
                return 1
        elif c == 'U':
            force_share = True
        elif c == OPTION_OUTPUT:
            if optarg == "json":
                output_format = OFORMAT_JSON
            elif optarg == "human":
                output_format = OFORMAT_HUMAN
            else:
                error_report("--output must be used with human or json as "
                             "argument.")
                return 1
        elif c == OPTION_SIZE:
            img_size = cvtnum("image size", optarg)
            if img_size < 0:
                return 1
    argv, optind = getopt.argv, getopt.optind
    argc = len(argv)

    filename = None
    if argc - optind > 1:
        error_report("At most one filename argument is allowed.")
        return 1
    elif argc - optind == 1:
        filename = argv[optind]

    if not filename and (image_opts or fmt or snapshot_param):
        error_report("--image-opts, -f, and -l require a filename argument.")
        return 1
    if filename and img_size != -1:
        error_report("--size N cannot be used together with a filename.")
        return 1
    if not filename and img_size == -1:
        error_report("Either --size N or one filename must be specified.")
        return 1

    in_blk = None
    try:
        if filename:
            in_blk = img_open("image", image_opts, filename, fmt, 0, False,
                              False, force_share)
            if not in_blk:
                return 1
            if snapshot_param is not None:
                error_report("Failed to load snapshot: %s",
                             bdrv_snapshot_load_tmp_error(
                                 bb.blk_bs(in_blk), snapshot_param))
                return 1

        drv = bdrv_find_format(out_fmt)
        if not drv:
            error_report("Unknown file format '%s'", out_fmt)
            return 1
        if not drv.create_opts:
            error_report("Format driver '%s' does not support image "
                         "creation", drv.format_name)
            return 1

        create_opts = qemu_opts_append(None, drv.create_opts)
        create_opts = qemu_opts_append(create_opts,
                                       bdrv_find_format("file").create_opts)
        opts = qemu_opts_create(create_opts)
        if options[0]:
            qemu_opts_do_parse(opts, options[0], None, local_err)
            if local_err[0]:
                error_report_err(local_err[0])
                error_report("Invalid options for file format '%s'", out_fmt)
                return 1
        if img_size != -1:
            qemu_opt_set_number(opts, BLOCK_OPT_SIZE, img_size, None)

        info = core.bdrv_measure(drv, opts,
                                 bb.blk_bs(in_blk) if in_blk else None,
                                 local_err)
        if local_err[0]:
            error_report_err(local_err[0])
            return 1

        if output_format == OFORMAT_HUMAN:
            printf("required size: %d\n", info['required'])
            printf("fully allocated size: %d\n", info['fully-allocated'])
            if 'bitmaps' in info:
                printf("bitmaps size: %d\n", info['bitmaps'])
        else:
            dump_json_block_measure_info(info)
        return 0
    finally:
        if in_blk:
            bb.blk_unref(in_blk)


def img_not_ported(argv: list) -> int:
    error_report("'%s' is not ported to pyqemu-img", argv[0])
    return 1


img_cmds: list = [
    ("amend", img_not_ported),
    ("bench", img_bench),
    ("bitmap", img_not_ported),
    ("check", img_check),
    ("commit", img_not_ported),
    ("compare", img_compare),
    ("convert", img_convert),
    ("create", img_create),
    ("dd", img_dd),
    ("info", img_info),
    ("map", img_map),
    ("measure", img_measure),
    ("snapshot", img_not_ported),
    ("rebase", img_not_ported),
    ("resize", img_resize),
]


def qemu_img_main(argv: list) -> int:
    """QEMU's main(): the exit status."""
    long_options = [
        option("help", no_argument, 'h'),
        option("version", no_argument, 'V'),
        option("trace", required_argument, 'T'),
    ]

    # C's default for SIGINT; SIGPIPE stays ignored, as qemu-img ignores it
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    # output through C-like stdio, so that stray prints keep their place
    sys.stdout = c_stdout

    error_init(argv[0])
    if len(argv) < 2:
        error_exit("Not enough arguments")

    getopt = ImgGetopt(argv, "+:hVT:", long_options)
    for c, optarg in getopt:
        if c == ':':
            missing_argument(getopt.bad_option)
        elif c == '?':
            unrecognized_option(getopt.bad_option)
        elif c == 'h':
            help()
        elif c == 'V':
            printf("%s", QEMU_IMG_VERSION)
            return 0
        elif c == 'T':
            trace_opt_parse(optarg)
    argv, optind = getopt.argv, getopt.optind

    if len(argv) - optind < 1:
        return 0
    cmdname = argv[optind]
    argv = argv[optind:]

    trace_init_file()

    # find the command
    for name, handler in img_cmds:
        if cmdname == name:
            return handler(argv)

    error_exit("Command not found: %s", cmdname)
    return 1


def main(argv: Optional[list] = None) -> int:
    """The pyqemu-img entry point: qemu_img_main() ended as C's exit() ends
    a program, with stdout flushed."""
    if argv is None:
        argv = [PROGNAME] + sys.argv[1:]
    try:
        status = qemu_img_main(argv)
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else 1
    fflush_stdout()
    return status


if __name__ == '__main__':
    sys.exit(main())
