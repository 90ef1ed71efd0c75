"""qemu-io, the disk exerciser: the Python twin of QEMU's qemu-io.c.

The program around the commands of block/qemu_io_cmds.py: the command line,
open/close/quit, and the command loop that runs the -c commands or reads
commands from standard input after a "qemu-io> " prompt.  The structure is
QEMU 2.5's; options, messages and exit status are the installed 7.2's.  The
program calls itself qemu-io in its messages, as the real one run under
that name does, so that the two can be compared byte for byte.

Run as ``pyqemu-io`` or ``python -m block.qemu_io``.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
from typing import Optional

from block import block_backend as bb
from block import core, io
from block import qemu_io_cmds
from block import trace
from block.block_int import (BDRV_O_ALLOW_RDWR, BDRV_O_COPY_ON_READ,
                             BDRV_O_NATIVE_AIO, BDRV_O_NOCACHE, BDRV_O_RDWR,
                             BDRV_O_SNAPSHOT, BDRV_O_UNMAP)
from block.core import (BDRV_OPT_READ_ONLY, bdrv_parse_cache_mode,
                        bdrv_parse_discard_flags)
from block.qemu_io_cmds import (CMD_FLAG_GLOBAL, CMD_NOFILE_OK, cmdinfo_t,
                                qemu_opts_parse_merged,
                                qemu_opts_take_merged, qemuio_add_command,
                                qemuio_command, qemuio_command_usage)
from drivers import bdrv_init
from util.aio import aio_set_fd_handler, qemu_get_aio_context
from util.cutils import (Getopt, c_stdout, fflush_stdout, no_argument,
                         option, printf, qemu_strtoi64, required_argument)
from util.main_loop import main_loop_wait
from util.error import (Errp, error_append_hint, error_get_pretty,
                        error_setg)
from util.qemu_error import (error_init, error_report, error_report_err,
                             error_reportf_err, g_get_prgname, warn_report)
from util.qemu_option import (QemuOptDesc, QemuOptsList, is_help_option,
                               parse_option_bool)

PROGNAME = 'qemu-io'
QEMU_VERSION = '7.2.0'
PYQEMU_VERSION = '0.1.0'
QEMU_COPYRIGHT = ('Copyright (c) 2003-2022 '
                  'Fabrice Bellard and the QEMU Project developers')
QEMU_HELP_BOTTOM = (
    "See <https://qemu.org/contribute/report-a-bug> for how to report bugs.\n"
    "More information on the QEMU project at <https://qemu.org>.")

STDIN_FILENO = 0

qemuio_blk = None
quit_qemu_io = False

# qemu-io commands passed using -c
cmdline: list[str] = []
imageOpts = False


def close_f(blk, argv: list[str]) -> int:
    global qemuio_blk
    qemu_io_cmds.write_perm_blks.discard(qemuio_blk)
    qemu_io_cmds.force_share_values.clear()
    bb.blk_unref(qemuio_blk)
    qemuio_blk = None
    return 0


close_cmd = cmdinfo_t(name="close", altname="c", cfunc=close_f,
                      oneline="close the current open file")

BDRV_OPT_FORCE_SHARE = 'force-share'


def take_force_share(opts: Optional[dict], flags: int, taken: dict,
                     errp: Errp) -> bool:
    """Check the force-share options of opts and move them to taken; False
    after setting errp.  force-share only relaxes image locking, which this
    block layer does not have, so what is left of 7.2's bdrv_open_common()
    is its check, made on every node that inherits the parent's read-write
    mode (backing files are opened read-only)."""
    if not opts:
        return True
    read_only = opts.get(BDRV_OPT_READ_ONLY)
    writable = bool(flags & BDRV_O_RDWR) and not (
        read_only is not None and parse_option_bool(BDRV_OPT_READ_ONLY,
                                                    read_only, None))
    for key in [k for k in opts if k == BDRV_OPT_FORCE_SHARE
                or k.endswith('.' + BDRV_OPT_FORCE_SHARE)]:
        backing = 'backing' in key.split('.')
        local_err = [None]
        taken[key] = opts.pop(key)
        on = parse_option_bool(BDRV_OPT_FORCE_SHARE, taken[key], local_err)
        if on is None:
            error_setg(errp, "%s%s",
                       "Could not open backing file: " if backing else "",
                       error_get_pretty(local_err[0]))
            return False
        if on and writable and not backing:
            error_setg(errp, "force-share=on can only be used with "
                       "read-only images")
            return False
    return True


def openfile(name: Optional[str], flags: int, writethrough: bool,
             force_share: bool, opts: Optional[dict]) -> int:
    """Open the image qemu-io works on; 0, or 1 after a message."""
    global qemuio_blk
    local_err = [None]
    force_share_opts: dict = {}

    if qemuio_blk:
        error_report("file open already, try 'help close'")
        return 1

    if force_share:
        if opts is None:
            opts = {}
        if BDRV_OPT_FORCE_SHARE in opts \
                and opts[BDRV_OPT_FORCE_SHARE] != 'on':
            error_report("-U conflicts with image options")
            return 1
        opts[BDRV_OPT_FORCE_SHARE] = 'on'

    if take_force_share(opts, flags, force_share_opts, local_err):
        # 7.2 lets 'reopen -w' make an image opened read-only writable
        qemuio_blk = bb.blk_new_open("hda", name, None, opts,
                                     flags | BDRV_O_ALLOW_RDWR, local_err)
    if not qemuio_blk:
        error_reportf_err(local_err[0], "can't open%s%s: ",
                          " device " if name else "", name or "")
        return 1

    bb.blk_set_enable_write_cache(qemuio_blk, not writethrough)
    if flags & BDRV_O_RDWR:
        qemu_io_cmds.write_perm_blks.add(qemuio_blk)
    qemu_io_cmds.force_share_record(bb.blk_bs(qemuio_blk), force_share_opts)
    return 0


def open_help() -> None:
    printf(
        "\n"
        " opens a new file in the requested mode\n"
        "\n"
        " Example:\n"
        " 'open -n -o driver=raw /tmp/data' - opens raw data file read-write, uncached\n"
        "\n"
        " Opens a file for subsequent use by all of the other qemu-io commands.\n"
        " -r, -- open file read-only\n"
        " -s, -- use snapshot file\n"
        " -C, -- use copy-on-read\n"
        " -n, -- disable host cache, short for -t none\n"
        " -U, -- force shared permissions\n"
        " -k, -- use kernel AIO implementation (Linux only, prefer use of -i)\n"
        " -i, -- use AIO mode (threads, native or io_uring)\n"
        " -t, -- use the given cache mode for the image\n"
        " -d, -- use the given discard mode for the image\n"
        " -o, -- options to be given to the block driver"
        "\n")


empty_opts = QemuOptsList("drive", [])
empty_opts.merge_lists = True


def bdrv_parse_aio(mode: str, pflags: list) -> int:
    """7.2's aio= modes as open flags; -1 if invalid.  io_uring is taken
    as threads: this port has no io_uring back end."""
    if mode in ('threads', 'io_uring'):
        pflags[0] &= ~BDRV_O_NATIVE_AIO
    elif mode == 'native':
        pflags[0] |= BDRV_O_NATIVE_AIO
    else:
        return -1
    return 0


def open_f(blk, argv: list[str]) -> int:
    flags = [BDRV_O_UNMAP]
    readonly = False
    writethrough = [True]
    force_share = False

    opts = Getopt(argv, "snCro:ki:t:d:U")
    for c, optarg in opts:
        if c == 's':
            flags[0] |= BDRV_O_SNAPSHOT
        elif c == 'n':
            flags[0] |= BDRV_O_NOCACHE
            writethrough[0] = False
        elif c == 'C':
            flags[0] |= BDRV_O_COPY_ON_READ
        elif c == 'r':
            readonly = True
        elif c == 'k':
            flags[0] |= BDRV_O_NATIVE_AIO
        elif c == 't':
            if bdrv_parse_cache_mode(optarg, flags, writethrough) < 0:
                error_report("Invalid cache option: %s", optarg)
                qemu_opts_take_merged(empty_opts)
                return -errno.EINVAL
        elif c == 'd':
            if bdrv_parse_discard_flags(optarg, flags) < 0:
                error_report("Invalid discard option: %s", optarg)
                qemu_opts_take_merged(empty_opts)
                return -errno.EINVAL
        elif c == 'i':
            if bdrv_parse_aio(optarg, flags) < 0:
                error_report("Invalid aio option: %s", optarg)
                qemu_opts_take_merged(empty_opts)
                return -errno.EINVAL
        elif c == 'o':
            if imageOpts:
                printf("--image-opts and 'open -o' are mutually exclusive\n")
                qemu_opts_take_merged(empty_opts)
                return -errno.EINVAL
            if not qemu_opts_parse_merged(empty_opts, optarg, False):
                qemu_opts_take_merged(empty_opts)
                return -errno.EINVAL
        elif c == 'U':
            force_share = True
        else:
            qemu_opts_take_merged(empty_opts)
            qemuio_command_usage(open_cmd)
            return -errno.EINVAL
    argv, optind = opts.argv, opts.optind

    if not readonly:
        flags[0] |= BDRV_O_RDWR

    if imageOpts and optind == len(argv) - 1:
        if not qemu_opts_parse_merged(empty_opts, argv[optind], False):
            qemu_opts_take_merged(empty_opts)
            return -errno.EINVAL
        optind += 1

    qdict = qemu_opts_take_merged(empty_opts)

    if optind == len(argv) - 1:
        ret = openfile(argv[optind], flags[0], writethrough[0], force_share,
                       qdict)
    elif optind == len(argv):
        ret = openfile(None, flags[0], writethrough[0], force_share, qdict)
    else:
        qemuio_command_usage(open_cmd)
        return -errno.EINVAL

    if ret:
        return -errno.EINVAL
    return 0


open_cmd = cmdinfo_t(
    name="open", altname="o", cfunc=open_f, argmin=1, argmax=-1,
    flags=CMD_NOFILE_OK,
    args="[-rsCnkU] [-t cache] [-d discard] [-o options] [path]",
    oneline="open the file specified by path", help=open_help)


def quit_f(blk, argv: list[str]) -> int:
    global quit_qemu_io
    quit_qemu_io = True
    return 0


quit_cmd = cmdinfo_t(name="quit", altname="q", cfunc=quit_f, argmin=-1,
                     argmax=-1, flags=CMD_FLAG_GLOBAL,
                     oneline="exit the program")


def usage(name: str) -> None:
    printf(
        "Usage: %s [OPTIONS]... [-c STRING]... [file]\n"
        "QEMU Disk exerciser\n"
        "\n"
        "  --object OBJECTDEF   define an object such as 'secret' for\n"
        "                       passwords and/or encryption keys\n"
        "  --image-opts         treat file as option string\n"
        "  -c, --cmd STRING     execute command with its arguments\n"
        "                       from the given string\n"
        "  -f, --format FMT     specifies the block driver to use\n"
        "  -r, --read-only      export read-only\n"
        "  -s, --snapshot       use snapshot file\n"
        "  -n, --nocache        disable host cache, short for -t none\n"
        "  -C, --copy-on-read   enable copy-on-read\n"
        "  -m, --misalign       misalign allocations for O_DIRECT\n"
        "  -k, --native-aio     use kernel AIO implementation\n"
        "                       (Linux only, prefer use of -i)\n"
        "  -i, --aio=MODE       use AIO mode (threads, native or io_uring)\n"
        "  -t, --cache=MODE     use the given cache mode for the image\n"
        "  -d, --discard=MODE   use the given discard mode for the image\n"
        "  -T, --trace [[enable=]<pattern>][,events=<file>][,file=<file>]\n"
        "                       specify tracing options\n"
        "                       see qemu-img(1) man page for full description\n"
        "  -U, --force-share    force shared permissions\n"
        "  -h, --help           display this help and exit\n"
        "  -V, --version        output version information and exit\n"
        "\n"
        "See '%s -c help' for information on available commands.\n"
        "\n"
        "%s\n",
        name, name, QEMU_HELP_BOTTOM)


def get_prompt() -> str:
    return "%s> " % g_get_prgname()


MAXREADLINESZ = 1024


def fetchline() -> Optional[str]:
    """One line of standard input without its newline, at most
    MAXREADLINESZ - 1 characters (fgets); None at the end."""
    line = sys.stdin.buffer.readline(MAXREADLINESZ - 1)
    if not line:
        return None
    if line.endswith(b'\n'):
        line = line[:-1]
    return line.decode('utf-8', 'surrogateescape')


def prep_fetchline(opaque: list) -> None:
    aio_set_fd_handler(qemu_get_aio_context(), STDIN_FILENO, False,
                       None, None, None)
    opaque[0] = True


def command_loop() -> int:
    """Run the -c commands, or else the commands read from stdin; the last
    error (negative) if any command failed."""
    fetchable = [False]
    prompted = False
    last_error = 0

    for cmd in cmdline:
        if quit_qemu_io:
            break
        ret = qemuio_command(qemuio_blk, cmd)
        if ret < 0:
            last_error = ret
    if cmdline:
        return last_error

    while not quit_qemu_io:
        if not prompted:
            printf("%s", get_prompt())
            fflush_stdout()
            # qemu_set_fd_handler: the main loop polls only the main
            # AioContext here
            aio_set_fd_handler(qemu_get_aio_context(), STDIN_FILENO, False,
                               prep_fetchline, None, fetchable)
            prompted = True

        main_loop_wait(False)

        if not fetchable[0]:
            continue

        line = fetchline()
        if line is None:
            break
        ret = qemuio_command(qemuio_blk, line)
        if ret < 0:
            last_error = ret

        prompted = False
        fetchable[0] = False
    aio_set_fd_handler(qemu_get_aio_context(), STDIN_FILENO, False,
                       None, None, None)
    return last_error


def add_user_command(user_cmd: str) -> None:
    cmdline.append(user_cmd)


# --- -T/--trace (QEMU's trace/control.c, the log back end) -------------------

qemu_trace_opts = QemuOptsList("trace", [QemuOptDesc('enable'),
                                         QemuOptDesc('events'),
                                         QemuOptDesc('file')],
                               implied_opt_name="enable")
trace_opts_file: Optional[str] = None


def trace_enable_events(line: str) -> None:
    """List the events and exit for "help"; else enable (or, with a leading
    '-', disable) the events matching line, warning about a name without
    '*' that matches none."""
    # QEMU has every event linked in: register those of the lazily
    # imported drivers too
    bdrv_init()
    if is_help_option(line):
        trace.trace_list_events(c_stdout)
        sys.exit(0)
    enable = not line.startswith('-')
    name = line if enable else line[1:]
    n = trace.trace_enable(name, enable)
    if n == 0 and '*' not in name:
        warn_report("trace event '%s' does not exist", name)


def trace_init_events(fname: Optional[str]) -> None:
    """Enable the events listed in fname, one pattern a line."""
    if fname is None:
        return
    try:
        with open(fname) as f:
            lines = f.read().splitlines()
    except OSError as e:
        # QEMU reports this with the file as the location
        sys.stderr.write("%s:%s: %s\n" % (g_get_prgname(), fname,
                                          os.strerror(e.errno)))
        sys.exit(1)
    for line in lines:
        if line and not line.startswith('#'):
            trace_enable_events(line)


def trace_opt_parse(optarg: str) -> None:
    global trace_opts_file
    if not qemu_opts_parse_merged(qemu_trace_opts, optarg, True):
        sys.exit(1)
    opts = qemu_opts_take_merged(qemu_trace_opts) or {}
    if opts.get('enable') is not None:
        trace_enable_events(opts['enable'])
    trace_init_events(opts.get('events'))
    trace_opts_file = opts.get('file')


def trace_init_file() -> None:
    """The log back end's qemu_set_log_filename: the file is made now."""
    if trace_opts_file:
        try:
            out = open(trace_opts_file, 'w', buffering=1)
        except OSError as e:
            error_report("Error opening logfile %s: %s", trace_opts_file,
                         os.strerror(e.errno))
            sys.exit(1)
        trace.trace_set_output(out)


# --- --object (QEMU's qom/object_interfaces.c, the types qemu-io needs) ------

# The properties of the user-creatable types and their QAPI types.
_THROTTLE_GROUP_PROPS = {'limits': 'ThrottleLimits', 'x-iops-size': 'int'}
for _what in ('bps', 'iops'):
    for _dir in ('total', 'read', 'write'):
        for _suffix in ('', '-max', '-max-length'):
            _THROTTLE_GROUP_PROPS['x-%s-%s%s' % (_what, _dir, _suffix)] = 'int'
# the members of ThrottleLimits (limits.<member>)
_THROTTLE_LIMITS = tuple(
    '%s-%s%s' % (what, dir, suffix) for what in ('bps', 'iops')
    for dir in ('total', 'read', 'write')
    for suffix in ('', '-max', '-max-length')) + ('iops-size',)

USER_CREATABLE_TYPES = {
    'throttle-group': _THROTTLE_GROUP_PROPS,
    'secret': {'data': 'string', 'file': 'string',
               'format': 'QCryptoSecretFormat', 'iv': 'string',
               'keyid': 'string'},
}

# id -> (qom-type, properties): the objects made by --object, for the parts
# of the block layer that look them up (throttle groups)
user_creatable_objects: dict[str, tuple[str, dict]] = {}


def keyval_parse(params: str, implied_key: str, errp: Errp) -> Optional[dict]:
    """"key=value,..." (',,' escapes a comma; a first value without a key
    belongs to implied_key; "help" asks for help) as a flat dict, the
    subset of util/keyval.c that --object needs."""
    qdict: dict = {}
    i = 0
    first = True
    while i < len(params):
        j = i
        while j < len(params) and params[j] not in '=,':
            j += 1
        key = params[i:j]
        if first and key and (j == len(params) or params[j] == ','):
            # the implied key's value ends at the first comma
            qdict[implied_key] = key
            i = j + 1
            first = False
            continue
        if key == 'help' and (j == len(params) or params[j] == ','):
            qdict['help'] = True
            i = j + 1
            first = False
            continue
        elif not key:
            error_setg(errp, "Invalid parameter ''")
            return None
        elif j == len(params) or params[j] != '=':
            error_setg(errp, "Expected '=' after parameter '%s'", key)
            return None
        value = []
        j += 1
        while j < len(params):
            if params[j] == ',':
                if params[j + 1:j + 2] != ',':
                    break
                j += 1
            value.append(params[j])
            j += 1
        qdict[key] = ''.join(value)
        i = j + 1
        first = False
    return qdict


def user_creatable_print_help(qom_type: Optional[str]) -> None:
    if qom_type is None:
        printf("List of user creatable objects:\n")
        for name in sorted(USER_CREATABLE_TYPES):
            printf("  %s\n", name)
        return
    printf("%s options:\n", qom_type)
    for line in sorted('%s=<%s>' % item
                       for item in USER_CREATABLE_TYPES[qom_type].items()):
        printf("  %s\n", line)


def user_creatable_add_qapi(props: dict, errp: Errp) -> None:
    """Check and record the object props describes (keyval's visitor and
    the type's property setters)."""
    qom_type = props.pop('qom-type', None)
    if qom_type is None:
        error_setg(errp, "Parameter 'qom-type' is missing")
        return
    known = USER_CREATABLE_TYPES.get(qom_type)
    if known is None:
        error_setg(errp, "Parameter 'qom-type' does not accept value '%s'",
                   qom_type)
        return
    obj_id = props.pop('id', None)
    if obj_id is None:
        error_setg(errp, "Parameter 'id' is missing")
        return
    if not core.id_wellformed(obj_id):
        error_setg(errp, "Parameter 'id' expects an identifier")
        error_append_hint(errp, "Identifiers consist of letters, digits, "
                          "'-', '.', '_', starting with a letter.\n")
        return
    for key, value in props.items():
        top, dot, member = key.partition('.')
        kind = known.get(top)
        if kind == 'ThrottleLimits' and member in _THROTTLE_LIMITS:
            kind = 'int'
        elif dot or kind is None or kind == 'ThrottleLimits':
            error_setg(errp, "Parameter '%s' is unexpected", key)
            return
        if kind == 'int':
            if isinstance(value, str):
                err, value = qemu_strtoi64(value, None, 0)
                if err:
                    error_setg(errp, "Parameter '%s' expects integer", key)
                    return
            if value < 0:
                error_setg(errp, "Property values cannot be negative")
                return
            props[key] = value
        elif kind == 'QCryptoSecretFormat' and value not in ('raw', 'base64'):
            error_setg(errp, "Parameter '%s' does not accept value '%s'",
                       key, value)
            return
    if qom_type == 'secret':
        if 'data' not in props and 'file' not in props:
            error_setg(errp, "Either 'file' or 'data' must be provided")
            return
        if 'file' in props:
            # g_file_get_contents and its message
            try:
                with open(props['file'], 'rb') as f:
                    props['data'] = f.read()
            except OSError as e:
                error_setg(errp, "Unable to read %s: Failed to open file "
                           "\u201c%s\u201d: %s", props['file'], props['file'],
                           os.strerror(e.errno))
                return
    if obj_id in user_creatable_objects:
        error_setg(errp, "attempt to add duplicate property '%s' to object "
                   "(type 'container')", obj_id)
        return
    user_creatable_objects[obj_id] = (qom_type, props)


def user_creatable_process_cmdline(optarg: str) -> None:
    """Create the object described by optarg ("type,id=x,prop=v,..." or
    JSON); print the help it asks for, or exit after a message if it is
    invalid."""
    local_err = [None]
    if optarg.startswith('{'):
        try:
            props = json.loads(optarg)
        except ValueError as e:
            error_report("JSON parse error, %s", e)
            sys.exit(1)
    else:
        props = keyval_parse(optarg, 'qom-type', local_err)
        if props is None:
            error_report_err(local_err[0])
            sys.exit(1)
        qom_type = props.get('qom-type')
        if qom_type == 'help':
            user_creatable_print_help(None)
            sys.exit(0)
        if props.pop('help', False):
            user_creatable_print_help(qom_type if qom_type in
                                      USER_CREATABLE_TYPES else None)
            sys.exit(0)
    user_creatable_add_qapi(props, local_err)
    if local_err[0]:
        error_report_err(local_err[0])
        sys.exit(1)


# --- main --------------------------------------------------------------------

OPTION_OBJECT = 256
OPTION_IMAGE_OPTS = 257

file_opts = QemuOptsList("file", [], implied_opt_name="file")


def qemu_io_main(argv: list[str]) -> int:
    """QEMU's main(): the exit status."""
    global imageOpts
    readonly = False
    sopt = "hVc:d:f:rsnCmki:t:T:U"
    lopt = [
        option("help", no_argument, 'h'),
        option("version", no_argument, 'V'),
        option("cmd", required_argument, 'c'),
        option("format", required_argument, 'f'),
        option("read-only", no_argument, 'r'),
        option("snapshot", no_argument, 's'),
        option("nocache", no_argument, 'n'),
        option("copy-on-read", no_argument, 'C'),
        option("misalign", no_argument, 'm'),
        option("native-aio", no_argument, 'k'),
        option("aio", required_argument, 'i'),
        option("discard", required_argument, 'd'),
        option("cache", required_argument, 't'),
        option("trace", required_argument, 'T'),
        option("object", required_argument, OPTION_OBJECT),
        option("image-opts", no_argument, OPTION_IMAGE_OPTS),
        option("force-share", no_argument, 'U'),
    ]
    flags = [BDRV_O_UNMAP]
    writethrough = [True]
    opts = None
    fmt = None
    force_share = False

    error_init(argv[0])

    getopt = Getopt(argv, sopt, lopt)
    for c, optarg in getopt:
        if c == 's':
            flags[0] |= BDRV_O_SNAPSHOT
        elif c == 'n':
            flags[0] |= BDRV_O_NOCACHE
            writethrough[0] = False
        elif c == 'C':
            flags[0] |= BDRV_O_COPY_ON_READ
        elif c == 'd':
            if bdrv_parse_discard_flags(optarg, flags) < 0:
                error_report("Invalid discard option: %s", optarg)
                return 1
        elif c == 'f':
            fmt = optarg
        elif c == 'c':
            add_user_command(optarg)
        elif c == 'r':
            readonly = True
        elif c == 'm':
            qemu_io_cmds.qemuio_misalign = True
        elif c == 'k':
            flags[0] |= BDRV_O_NATIVE_AIO
        elif c == 'i':
            if bdrv_parse_aio(optarg, flags) < 0:
                error_report("Invalid aio option: %s", optarg)
                return 1
        elif c == 't':
            if bdrv_parse_cache_mode(optarg, flags, writethrough) < 0:
                error_report("Invalid cache option: %s", optarg)
                return 1
        elif c == 'T':
            trace_opt_parse(optarg)
        elif c == 'V':
            printf("%s version %s (pyqemu-block %s)\n%s\n", g_get_prgname(),
                   QEMU_VERSION, PYQEMU_VERSION, QEMU_COPYRIGHT)
            return 0
        elif c == 'h':
            usage(g_get_prgname())
            return 0
        elif c == 'U':
            force_share = True
        elif c == OPTION_OBJECT:
            user_creatable_process_cmdline(optarg)
        elif c == OPTION_IMAGE_OPTS:
            imageOpts = True
        else:
            usage(g_get_prgname())
            return 1
    argv, optind = getopt.argv, getopt.optind

    if len(argv) - optind > 1:
        usage(g_get_prgname())
        return 1

    if fmt and imageOpts:
        error_report("--image-opts and -f are mutually exclusive")
        return 1

    # qemu_init_main_loop(): QEMU blocks these signals and reads them from a
    # signalfd, so raising one of them does not end the program
    signal.pthread_sigmask(signal.SIG_BLOCK, (signal.SIGUSR1, signal.SIGIO,
                                              signal.SIGALRM, signal.SIGBUS))

    trace_init_file()

    # initialize commands
    qemuio_add_command(quit_cmd)
    qemuio_add_command(open_cmd)
    qemuio_add_command(close_cmd)

    # open the device
    if not readonly:
        flags[0] |= BDRV_O_RDWR

    if len(argv) - optind == 1:
        if imageOpts:
            if not qemu_opts_parse_merged(file_opts, argv[optind], False):
                return 1
            opts = qemu_opts_take_merged(file_opts)
            if openfile(None, flags[0], writethrough[0], force_share, opts):
                return 1
        else:
            if fmt:
                opts = {"driver": fmt}
            if openfile(argv[optind], flags[0], writethrough[0], force_share,
                        opts):
                return 1

    ret = command_loop()

    # Make sure all outstanding requests complete before the program exits.
    io.bdrv_drain_all()

    qemu_io_cmds.write_perm_blks.discard(qemuio_blk)
    qemu_io_cmds.force_share_values.clear()
    bb.blk_unref(qemuio_blk)

    return 1 if ret < 0 else 0


def main(argv: Optional[list[str]] = None) -> int:
    """The pyqemu-io entry point: qemu_io_main() ended as C's exit() ends a
    program, with stdout flushed."""
    if argv is None:
        argv = [PROGNAME] + sys.argv[1:]
    # C's defaults, which Python changes: SIGINT kills, SIGXFSZ dumps core
    # (SIGPIPE stays ignored, as qemu-io ignores it); output goes through
    # C-like stdio, so that stray prints keep their place.  All of it is
    # put back for a caller in the same process.
    saved = (signal.signal(signal.SIGINT, signal.SIG_DFL),
             signal.signal(signal.SIGXFSZ, signal.SIG_DFL),
             signal.pthread_sigmask(signal.SIG_BLOCK, ()), sys.stdout)
    sys.stdout = c_stdout
    try:
        status = qemu_io_main(argv)
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else 1
    finally:
        fflush_stdout()
        signal.signal(signal.SIGINT, saved[0])
        signal.signal(signal.SIGXFSZ, saved[1])
        # QEMU's signalfd consumes the blocked signals raised meanwhile
        for sig in signal.sigpending() - saved[2]:
            signal.sigtimedwait((sig,), 0)
        signal.pthread_sigmask(signal.SIG_SETMASK, saved[2])
        sys.stdout = saved[3]
    return status


if __name__ == '__main__':
    sys.exit(main())
