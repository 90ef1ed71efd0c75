"""blkdebug: the Python twin of QEMU's block/blkdebug.c (v2.5.0).

A protocol driver between a node and its image that injects errors and
stops requests, driven by the BLKDBG_* events the block layer and the
drivers raise (core.bdrv_debug_event).  ``blkdebug:CONFIG:IMAGE`` opens
IMAGE with the rules of the config file CONFIG (``blkdebug::IMAGE``: no
rules); the options form is ``driver=blkdebug,config=...,image.*=...`` and
the rules can also be given as options (``inject-error.0.event=read_aio``).

Rules, as QEMU reads them from the config file:

    [inject-error]               [set-state]
    event = "read_aio"           event = "write_aio"
    state = "2"                  state = "1"
    errno = "28"                 new_state = "2"
    sector = "8"
    once = "on"
    immediately = "off"
    iotype = "write"

When an event happens, the inject-error rules of the event (in the current
state, or of any state if they have none) become the active rules, and each
later request that one of them matches fails with -errno; set-state rules
change the state.  qemu-io's break/resume/remove_break/wait_break add
suspend rules: the request raising the event stops until resumed.
``align=N`` sets the node's request alignment, which makes the block layer
above do read-modify-write (iotest 077).

Where a user sees a difference, this follows the installed QEMU (7.2) rather
than 2.5: event names are 7.2's (``pwritev_rmw_head``; 2.5's
``pwritev_rmw.head`` is accepted too, see tests/compare/DIVERGENCES.rst);
the config-file parser reads as 7.2's does and has its messages; an error
with ``immediately`` carries its errno (2.5 always gave EIO); rules apply to
write-zeroes, discard and flush requests too and can be limited with
``iotype``; rules on the event ``none`` act at open time; write-zeroes and
discard pass through to the image; "Resuming" is printed before the request
continues; remove_break of a hit breakpoint says ENOENT; reopening is
allowed; ``info`` asks the image; and ``align`` has 7.2's checks and
message, as do 7.2's max-transfer, opt-write-zero, max-write-zero,
opt-discard and max-discard.
"""

from __future__ import annotations

import errno
import re
from typing import Optional

from block import core, io
from block.block_int import (BDRV_BLOCK_OFFSET_VALID, BDRV_BLOCK_RAW,
                             BDRV_REQ_ZERO_WRITE, BDRV_SECTOR_BITS,
                             BDRV_SECTOR_SIZE, BlkDebugEvent, BlockDriver,
                             BlockDriverState)
from drivers import bdrv_register
from util.aio import aio_bh_new, qemu_bh_delete, qemu_bh_schedule
from util.coroutine import (qemu_coroutine_enter, qemu_coroutine_self,
                            qemu_coroutine_yield)
from util.cutils import printf
from util.error import (Errp, error_append_hint, error_propagate, error_setg,
                        error_setg_errno)
from util.qemu_option import (QEMU_OPT_BOOL, QEMU_OPT_NUMBER, QEMU_OPT_SIZE,
                              QEMU_OPT_STRING, QERR_INVALID_PARAMETER_VALUE,
                              QemuOptDesc, QemuOpts, QemuOptsList,
                              qemu_opt_get, qemu_opt_get_bool,
                              qemu_opt_get_number, qemu_opt_get_size,
                              qemu_opt_set, qemu_opts_absorb_qdict,
                              qemu_opts_create, qemu_opts_del)

INT_MAX = (1 << 31) - 1

# --- events ------------------------------------------------------------------

# The events that follow l1_shrink_free_l2_clusters in 7.2's BlkdebugEvent,
# which the block layer of the port does not know: they can be named in
# rules and breakpoints (and never happen), and rules on "none" act when the
# image is opened.
_EXTRA_EVENTS = ('cor_write', 'cluster_alloc_space', 'none')

event_names: dict[int, str] = {
    int(ev): ev.name[len('BLKDBG_'):].lower()
    for ev in BlkDebugEvent if ev.name != 'BLKDBG_EVENT_MAX'}
for _number, _name in enumerate(_EXTRA_EVENTS,
                                int(BlkDebugEvent.BLKDBG_EVENT_MAX)):
    event_names[_number] = _name
BLKDBG_NONE = next(ev for ev, name in event_names.items() if name == 'none')

# 2.5 wrote these with a dot after the group ("pwritev_rmw.head")
_DOTTED_GROUPS = ('l1_grow', 'l2_alloc', 'refblock_alloc', 'pwritev_rmw')


def _dotted_name(name: str) -> Optional[str]:
    for group in _DOTTED_GROUPS:
        if name.startswith(group + '_'):
            return group + '.' + name[len(group) + 1:]
    return None


_events_by_name: dict[str, int] = {}
for _ev, _name in event_names.items():
    _events_by_name[_name] = _ev
    if _dotted_name(_name):
        _events_by_name[_dotted_name(_name)] = _ev


def get_event_by_name(name: str) -> Optional[int]:
    """The event called name, in the spelling of 7.2 or of 2.5."""
    return _events_by_name.get(name)


# 7.2's BlkdebugIOType: the kinds of request an inject-error rule hits
BLKDEBUG_IO_TYPE_READ = 0
BLKDEBUG_IO_TYPE_WRITE = 1
BLKDEBUG_IO_TYPE_WRITE_ZEROES = 2
BLKDEBUG_IO_TYPE_DISCARD = 3
BLKDEBUG_IO_TYPE_FLUSH = 4
BLKDEBUG_IO_TYPE_BLOCK_STATUS = 5
_IO_TYPES = {'read': BLKDEBUG_IO_TYPE_READ, 'write': BLKDEBUG_IO_TYPE_WRITE,
             'write-zeroes': BLKDEBUG_IO_TYPE_WRITE_ZEROES,
             'discard': BLKDEBUG_IO_TYPE_DISCARD,
             'flush': BLKDEBUG_IO_TYPE_FLUSH,
             'block-status': BLKDEBUG_IO_TYPE_BLOCK_STATUS}
# without iotype, a rule hits every kind but block-status
_IO_TYPES_DEFAULT = sum(1 << t for t in (
    BLKDEBUG_IO_TYPE_READ, BLKDEBUG_IO_TYPE_WRITE,
    BLKDEBUG_IO_TYPE_WRITE_ZEROES, BLKDEBUG_IO_TYPE_DISCARD,
    BLKDEBUG_IO_TYPE_FLUSH))

# --- state -------------------------------------------------------------------

ACTION_INJECT_ERROR = 0
ACTION_SET_STATE = 1
ACTION_SUSPEND = 2


class BlkdebugRule:
    """One rule; C's union of per-action options is flattened."""
    __slots__ = ('event', 'action', 'state',
                 'error', 'immediately', 'once', 'offset', 'iotype_mask',
                 'new_state', 'tag')

    def __init__(self, event: int, action: int, state: int) -> None:
        self.event = event
        self.action = action
        self.state = state
        self.error = 0
        self.immediately = False
        self.once = False
        self.offset = -1            # 7.2 keeps sector * 512 here
        self.iotype_mask = 0
        self.new_state = 0
        self.tag = ''


class BlkdebugSuspendedReq:
    __slots__ = ('co', 'tag')

    def __init__(self, co, tag: str) -> None:
        self.co = co
        self.tag = tag


class BDRVBlkdebugState:
    __slots__ = ('state', 'new_state', 'rules', 'active_rules',
                 'suspended_reqs', 'config_file', 'align', 'max_transfer',
                 'opt_write_zero', 'max_write_zero', 'opt_discard',
                 'max_discard')

    def __init__(self) -> None:
        self.state = 0
        self.new_state = 0
        # QLIST_HEAD per event and the other lists: insertion at the head
        # is insert(0)
        self.rules: dict[int, list] = {ev: [] for ev in event_names}
        self.active_rules: list = []
        self.suspended_reqs: list = []
        self.config_file: Optional[str] = None
        self.align = 0
        self.max_transfer = 0
        self.opt_write_zero = 0
        self.max_write_zero = 0
        self.opt_discard = 0
        self.max_discard = 0


inject_error_opts = QemuOptsList('inject-error', [
    QemuOptDesc('event', QEMU_OPT_STRING),
    QemuOptDesc('iotype', QEMU_OPT_STRING),
    QemuOptDesc('state', QEMU_OPT_NUMBER),
    QemuOptDesc('errno', QEMU_OPT_NUMBER),
    QemuOptDesc('sector', QEMU_OPT_NUMBER),
    QemuOptDesc('once', QEMU_OPT_BOOL),
    QemuOptDesc('immediately', QEMU_OPT_BOOL),
])

set_state_opts = QemuOptsList('set-state', [
    QemuOptDesc('event', QEMU_OPT_STRING),
    QemuOptDesc('state', QEMU_OPT_NUMBER),
    QemuOptDesc('new_state', QEMU_OPT_NUMBER),
])

config_groups = (inject_error_opts, set_state_opts)

# --- reading rules (util/qemu-config.c) --------------------------------------
#
# QEMU keeps the QemuOpts of a list in the list itself; here the parse
# collects them in `found`, a dict from list name to QemuOpts in order.


def id_wellformed(id: str) -> bool:
    return bool(re.fullmatch(r'[A-Za-z][A-Za-z0-9_.-]*', id))


def _opts_create(found: dict, lst: QemuOptsList, id: Optional[str],
                 errp: Errp) -> Optional[QemuOpts]:
    """qemu_opts_create(list, id, fail_if_exists=1, errp)."""
    if id is not None:
        if not id_wellformed(id):
            error_setg(errp, QERR_INVALID_PARAMETER_VALUE, 'id',
                       'an identifier')
            error_append_hint(errp, "Identifiers consist of letters, "
                              "digits, '-', '.', '_', starting with a "
                              "letter.\n")
            return None
        if any(o.id == id for o in found[lst.name]):
            error_setg(errp, "Duplicate ID '%s' for %s", id, lst.name)
            return None
    opts = qemu_opts_create(lst, id)
    found[lst.name].append(opts)
    return opts


def qemu_config_do_parse(group: str, qdict: dict, found: dict,
                         errp: Errp) -> None:
    """One [group] of a config file: its keys, a QDict, become QemuOpts
    (qemu_opts_from_qdict)."""
    lst = next((g for g in config_groups if g.name == group), None)
    if lst is None:
        error_setg(errp, "There is no option group '%s'", group)
        return
    opts = _opts_create(found, lst, qdict.get('id'), errp)
    if opts is None:
        return
    for key, value in qdict.items():
        if key == 'id':
            continue
        local_err = [None]
        qemu_opt_set(opts, key, value, local_err)
        if local_err[0]:
            error_propagate(errp, local_err[0])
            found[lst.name].remove(opts)
            return


# The sscanf formats of qemu_config_foreach(): '[%63s "%63[^"]"]',
# '[%63[^]]]' and ' %63s = "%1023[^"]"'.  %s never gives characters back,
# which the lookahead-and-backreference (an atomic group) reproduces.
_SCANF_GROUP_ID = re.compile(r'\[\s*(?=(\S{1,63}))\1\s*"([^"]{1,63})')
_SCANF_GROUP = re.compile(r'\[([^\]]{1,63})')
_SCANF_WORD = re.compile(r'\s*(?=(\S{1,63}))\1')
_SCANF_VALUE = re.compile(r'\s*=\s*"([^"]{1,1023})')


def qemu_config_parse(lines: list, found: dict, errp: Errp) -> int:
    """Read a config file the way QEMU 7.2's qemu_config_foreach() does
    with sscanf: "[group]" or '[group "id"]' opens a group; any other line
    whose first word is W reads as W = "value" (value empty unless W is
    followed by = and a quoted string).  A group is handed on when the next
    one starts, or at the end.  Returns the number of lines, or -EINVAL."""
    group: Optional[str] = None
    qdict: Optional[dict] = None
    local_err = [None]
    lineno = 0
    for line in lines:
        lineno += 1
        if line.startswith('\n') or line.startswith('#'):
            continue
        m_id = _SCANF_GROUP_ID.match(line)
        m_group = _SCANF_GROUP.match(line)
        m_arg = _SCANF_WORD.match(line)
        if m_id or m_group:
            if qdict is not None:
                qemu_config_do_parse(group, qdict, found, local_err)
                if local_err[0]:
                    break
            if m_id:
                group, qdict = m_id.group(1), {'id': m_id.group(2)}
            else:
                group, qdict = m_group.group(1), {}
            continue
        if m_arg:
            if qdict is None:
                error_setg(local_err, 'no group defined')
                break
            m_value = _SCANF_VALUE.match(line, m_arg.end())
            qdict[m_arg.group(1)] = m_value.group(1) if m_value else ''
            continue
        error_setg(local_err, 'parse error')
        break
    else:
        if qdict is not None:
            qemu_config_do_parse(group, qdict, found, local_err)
    if local_err[0]:
        error_propagate(errp, local_err[0])
        return -errno.EINVAL
    return lineno


def qdict_array_split(src: dict) -> list:
    """Move the entries "0.*", "1.*", ... (or plain "0", "1", ...) of src
    into a list of dicts (or values), up to the first missing index."""
    dst = []
    i = 0
    while True:
        sub = core.qdict_extract_subqdict(src, '%d.' % i)
        if sub:
            dst.append(sub)
        elif str(i) in src:
            dst.append(src.pop(str(i)))
        else:
            return dst
        i += 1


def config_parse_qdict_section(options: dict, lst: QemuOptsList,
                               found: dict, errp: Errp) -> None:
    """The options "<list>.key=..." (one section) or "<list>.N.key=..."
    (several) of a node, taken out of options."""
    subqdict = core.qdict_extract_subqdict(options, lst.name + '.')
    orig_size = len(subqdict)
    if not orig_size:
        return

    subopts = _opts_create(found, lst, None, errp)
    local_err = [None]
    qemu_opts_absorb_qdict(subopts, subqdict, local_err)
    if local_err[0]:
        error_propagate(errp, local_err[0])
        return

    enum_size = len(subqdict)
    if enum_size < orig_size and enum_size:
        error_setg(errp, "Unknown option '%s' for [%s]", next(iter(subqdict)),
                   lst.name)
        return
    if not enum_size:
        return

    # several, numbered sections: the first try found nothing
    found[lst.name].remove(subopts)
    sections = qdict_array_split(subqdict)
    if subqdict:
        error_setg(errp, "Unused option '%s' for [%s]", next(iter(subqdict)),
                   lst.name)
        return
    for i, section in enumerate(sections):
        if not isinstance(section, dict):
            error_setg(errp, '[%s] section (index %u) does not consist of '
                       'keys', lst.name, i)
            return
        subopts = _opts_create(found, lst, '%s.%u' % (lst.name, i), errp)
        if subopts is None:
            return
        qemu_opts_absorb_qdict(subopts, section, local_err)
        if local_err[0]:
            error_propagate(errp, local_err[0])
            found[lst.name].remove(subopts)
            return
        if section:
            error_setg(errp, "[%s] section doesn't support the option '%s'",
                       lst.name, next(iter(section)))
            found[lst.name].remove(subopts)
            return


def qemu_config_parse_qdict(options: dict, found: dict, errp: Errp) -> bool:
    for lst in config_groups:
        local_err = [None]
        config_parse_qdict_section(options, lst, found, local_err)
        if local_err[0]:
            error_propagate(errp, local_err[0])
            return False
    return True


def add_rule(s: BDRVBlkdebugState, action: int, opts: QemuOpts,
             errp: Errp) -> int:
    # find the right event for the rule
    event_name = qemu_opt_get(opts, 'event')
    if event_name is None:
        error_setg(errp, 'Missing event name for rule')
        return -1
    event = get_event_by_name(event_name)
    if event is None:
        error_setg(errp, 'invalid parameter value: %s', event_name)
        return -1

    # attributes common to all actions
    rule = BlkdebugRule(event, action, qemu_opt_get_number(opts, 'state', 0))

    # action-specific options
    if action == ACTION_INJECT_ERROR:
        rule.error = _c_int(qemu_opt_get_number(opts, 'errno', errno.EIO))
        rule.once = qemu_opt_get_bool(opts, 'once', False)
        rule.immediately = qemu_opt_get_bool(opts, 'immediately', False)
        sector = _c_int64(qemu_opt_get_number(opts, 'sector', -1))
        rule.offset = -1 if sector == -1 else sector * BDRV_SECTOR_SIZE
        iotype = qemu_opt_get(opts, 'iotype')
        if iotype is not None:
            if iotype not in _IO_TYPES:
                error_setg(errp, 'invalid parameter value: %s', iotype)
                return -1
            rule.iotype_mask = 1 << _IO_TYPES[iotype]
        else:
            rule.iotype_mask = _IO_TYPES_DEFAULT
    elif action == ACTION_SET_STATE:
        rule.new_state = qemu_opt_get_number(opts, 'new_state', 0)

    s.rules[event].insert(0, rule)
    return 0


def _c_int(value: int) -> int:
    """The value as C's int keeps it (options are parsed as uint64_t)."""
    value &= 0xffffffff
    return value - (1 << 32) if value >= 1 << 31 else value


def _c_int64(value: int) -> int:
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def remove_rule(s: BDRVBlkdebugState, rule: BlkdebugRule) -> None:
    s.rules[rule.event].remove(rule)


def read_config(s: BDRVBlkdebugState, filename: Optional[str],
                options: dict, errp: Errp) -> int:
    found: dict = {lst.name: [] for lst in config_groups}

    if filename:
        try:
            with open(filename, encoding='utf-8', errors='surrogateescape',
                      newline='') as f:
                lines = f.readlines()
        except OSError as e:
            # a directory opens (and reads as empty) in C
            if e.errno != errno.EISDIR:
                error_setg_errno(errp, e.errno,
                                 'Could not read blkdebug config file')
                return -e.errno
            lines = []
        ret = qemu_config_parse(lines, found, errp)
        if ret < 0:
            return ret

    if not qemu_config_parse_qdict(options, found, errp):
        return -errno.EINVAL

    # every inject-error rule first, then the set-state ones
    for action, lst in ((ACTION_INJECT_ERROR, inject_error_opts),
                        (ACTION_SET_STATE, set_state_opts)):
        for opts in found[lst.name]:
            if add_rule(s, action, opts, errp) < 0:
                return -errno.EINVAL
    return 0


# --- opening -----------------------------------------------------------------

def blkdebug_parse_filename(filename: str, options: dict,
                            errp: Errp) -> None:
    """blkdebug:[CONFIG]:IMAGE; without the prefix, filename is IMAGE and
    the rest must be in the options."""
    prefix = 'blkdebug:'
    if not filename.startswith(prefix):
        options['x-image'] = filename
        return
    filename = filename[len(prefix):]

    c = filename.find(':')
    if c < 0:
        error_setg(errp, 'blkdebug requires both config file and image path')
        return
    if c > 0:
        options['config'] = filename[:c]
    # IMAGE may itself have a protocol prefix
    options['x-image'] = filename[c + 1:]


runtime_opts = QemuOptsList('blkdebug', [
    QemuOptDesc('config', QEMU_OPT_STRING, 'Path to the configuration file'),
    QemuOptDesc('x-image', QEMU_OPT_STRING,
                '[internal use only, will be removed]'),
    QemuOptDesc('align', QEMU_OPT_SIZE, 'Required alignment in bytes'),
    QemuOptDesc('max-transfer', QEMU_OPT_SIZE,
                'Maximum transfer size in bytes'),
    QemuOptDesc('opt-write-zero', QEMU_OPT_SIZE,
                'Optimum write zero alignment in bytes'),
    QemuOptDesc('max-write-zero', QEMU_OPT_SIZE,
                'Maximum write zero size in bytes'),
    QemuOptDesc('opt-discard', QEMU_OPT_SIZE,
                'Optimum discard alignment in bytes'),
    QemuOptDesc('max-discard', QEMU_OPT_SIZE, 'Maximum discard size in bytes'),
])


def _check_limit(opts: QemuOpts, name: str, align: int, errp: Errp) -> int:
    """The limit option name: 0 (unset), or below INT_MAX and a multiple of
    align; -1 (with the error set) otherwise."""
    value = qemu_opt_get_size(opts, name, 0)
    if value and (value >= INT_MAX or value % align):
        error_setg(errp, 'Cannot meet constraints with %s %d', name, value)
        return -1
    return value


def blkdebug_open(bs: BlockDriverState, options: dict, flags: int,
                  errp: Errp) -> int:
    s = bs.opaque
    local_err = [None]

    opts = qemu_opts_create(runtime_opts)
    qemu_opts_absorb_qdict(opts, options, local_err)
    if local_err[0]:
        error_propagate(errp, local_err[0])
        qemu_opts_del(opts)
        return -errno.EINVAL

    ret = _blkdebug_open_opts(bs, s, opts, options, errp)
    qemu_opts_del(opts)
    return ret


def _blkdebug_open_opts(bs: BlockDriverState, s: BDRVBlkdebugState,
                        opts: QemuOpts, options: dict, errp: Errp) -> int:
    """The body of blkdebug_open between creating and freeing opts."""
    local_err = [None]

    # rules from the config file and from the options
    s.config_file = qemu_opt_get(opts, 'config')
    ret = read_config(s, s.config_file, options, errp)
    if ret:
        return ret

    # the initial state, in which the rules on "none" act
    s.state = 1
    blkdebug_debug_event(bs, BLKDBG_NONE)

    bs.file = core.bdrv_open_child(qemu_opt_get(opts, 'x-image'), options,
                                   'image', bs, core.child_file, False,
                                   local_err)
    if local_err[0]:
        error_propagate(errp, local_err[0])
        return -errno.EINVAL
    # a filter in 7.2: truncate flags go to the image unchecked
    bs.supported_truncate_flags = (bs.file.bs.supported_truncate_flags &
                                   BDRV_REQ_ZERO_WRITE)

    # limits, checked as 7.2 does; blkdebug_refresh_limits applies them
    s.align = qemu_opt_get_size(opts, 'align', 0)
    if s.align and (s.align >= INT_MAX or s.align & (s.align - 1)):
        error_setg(errp, 'Cannot meet constraints with align %d', s.align)
        return -errno.EINVAL
    align = max(s.align, bs.file.bs.request_alignment)
    s.max_transfer = _check_limit(opts, 'max-transfer', align, errp)
    if s.max_transfer < 0:
        return -errno.EINVAL
    s.opt_write_zero = _check_limit(opts, 'opt-write-zero', align, errp)
    if s.opt_write_zero < 0:
        return -errno.EINVAL
    s.max_write_zero = _check_limit(opts, 'max-write-zero',
                                    max(s.opt_write_zero, align), errp)
    if s.max_write_zero < 0:
        return -errno.EINVAL
    s.opt_discard = _check_limit(opts, 'opt-discard', align, errp)
    if s.opt_discard < 0:
        return -errno.EINVAL
    s.max_discard = _check_limit(opts, 'max-discard',
                                 max(s.opt_discard, align), errp)
    if s.max_discard < 0:
        return -errno.EINVAL
    return 0


# --- requests ----------------------------------------------------------------

def _enter_co(co) -> None:
    qemu_coroutine_enter(co)


def rule_check(bs: BlockDriverState, offset: int, nbytes: int,
               iotype: int) -> int:
    """The error of the first active rule that hits this request, or 0.
    (7.2's rule_check: 2.5 did this in each aio function, failing through a
    bottom half, or with -EIO at once for immediately.)"""
    s = bs.opaque
    rule = None
    for r in s.active_rules:
        if ((r.offset == -1 or
             (nbytes and offset <= r.offset < offset + nbytes)) and
                r.iotype_mask & (1 << iotype)):
            rule = r
            break

    if rule is None or not rule.error:
        return 0

    immediately = rule.immediately
    error = rule.error
    if rule.once:
        s.active_rules.remove(rule)
        remove_rule(s, rule)

    if not immediately:
        # fail later, from the event loop, as a real I/O error would
        co = qemu_coroutine_self()
        bh = aio_bh_new(core.bdrv_get_aio_context(bs), _enter_co, co)
        qemu_bh_schedule(bh)
        qemu_coroutine_yield()
        qemu_bh_delete(bh)

    return -error


def blkdebug_co_readv(bs: BlockDriverState, sector_num: int,
                      nb_sectors: int, qiov) -> int:
    err = rule_check(bs, sector_num << BDRV_SECTOR_BITS,
                     nb_sectors << BDRV_SECTOR_BITS, BLKDEBUG_IO_TYPE_READ)
    if err:
        return err
    return io.bdrv_co_readv(bs.file.bs, sector_num, nb_sectors, qiov)


def blkdebug_co_writev(bs: BlockDriverState, sector_num: int,
                       nb_sectors: int, qiov) -> int:
    err = rule_check(bs, sector_num << BDRV_SECTOR_BITS,
                     nb_sectors << BDRV_SECTOR_BITS, BLKDEBUG_IO_TYPE_WRITE)
    if err:
        return err
    return io.bdrv_co_writev(bs.file.bs, sector_num, nb_sectors, qiov)


def blkdebug_co_write_zeroes(bs: BlockDriverState, sector_num: int,
                             nb_sectors: int, flags: int) -> int:
    offset = sector_num << BDRV_SECTOR_BITS
    nbytes = nb_sectors << BDRV_SECTOR_BITS
    align = max(bs.request_alignment, bs.opaque.opt_write_zero)

    # pass on only requests of at least the preferred alignment, so that
    # the fallback to writes is exercised for the pieces around them
    if nbytes < align:
        return -errno.ENOTSUP

    err = rule_check(bs, offset, nbytes, BLKDEBUG_IO_TYPE_WRITE_ZEROES)
    if err:
        return err
    return io.bdrv_co_write_zeroes(bs.file.bs, sector_num, nb_sectors, flags)


def blkdebug_co_discard(bs: BlockDriverState, sector_num: int,
                        nb_sectors: int) -> int:
    offset = sector_num << BDRV_SECTOR_BITS
    nbytes = nb_sectors << BDRV_SECTOR_BITS

    # a discard smaller than the alignment is not passed on (and a failed
    # discard is no error)
    if nbytes < bs.request_alignment:
        return -errno.ENOTSUP

    err = rule_check(bs, offset, nbytes, BLKDEBUG_IO_TYPE_DISCARD)
    if err:
        return err
    return io.bdrv_co_discard(bs.file.bs, sector_num, nb_sectors)


def blkdebug_co_flush(bs: BlockDriverState) -> int:
    err = rule_check(bs, 0, 0, BLKDEBUG_IO_TYPE_FLUSH)
    if err:
        return err
    return io.bdrv_co_flush(bs.file.bs)


def blkdebug_co_get_block_status(bs: BlockDriverState, sector_num: int,
                                 nb_sectors: int, pnum: list,
                                 file: list) -> int:
    """The image says (7.2: bdrv_co_block_status_from_file)."""
    err = rule_check(bs, sector_num << BDRV_SECTOR_BITS,
                     nb_sectors << BDRV_SECTOR_BITS,
                     BLKDEBUG_IO_TYPE_BLOCK_STATUS)
    if err:
        return err
    pnum[0] = nb_sectors
    file[0] = bs.file.bs
    return (BDRV_BLOCK_RAW | BDRV_BLOCK_OFFSET_VALID |
            (sector_num << BDRV_SECTOR_BITS))


def blkdebug_close(bs: BlockDriverState) -> None:
    s = bs.opaque
    for rules in s.rules.values():
        rules.clear()
    s.active_rules.clear()


# --- events and breakpoints --------------------------------------------------

def suspend_request(bs: BlockDriverState, rule: BlkdebugRule) -> None:
    """Note the request as suspended; blkdebug_debug_event stops it once
    the event's rules are done."""
    s = bs.opaque
    r = BlkdebugSuspendedReq(qemu_coroutine_self(), rule.tag)

    remove_rule(s, rule)
    s.suspended_reqs.insert(0, r)

    printf("blkdebug: Suspended request '%s'\n", r.tag)


def process_rule(bs: BlockDriverState, rule: BlkdebugRule,
                 injected: bool) -> bool:
    s = bs.opaque

    # only the rules of the current state, or of none
    if rule.state and rule.state != s.state:
        return injected

    if rule.action == ACTION_INJECT_ERROR:
        if not injected:
            # the rules of this event replace the ones of the last
            s.active_rules.clear()
            injected = True
        s.active_rules.insert(0, rule)
    elif rule.action == ACTION_SET_STATE:
        s.new_state = rule.new_state
    elif rule.action == ACTION_SUSPEND:
        suspend_request(bs, rule)
    return injected


def blkdebug_debug_event(bs: BlockDriverState, event: int) -> None:
    s = bs.opaque
    assert event in s.rules

    injected = False
    suspended = len(s.suspended_reqs)
    s.new_state = s.state
    for rule in list(s.rules[event]):
        injected = process_rule(bs, rule, injected)
    s.state = s.new_state

    # stop once per breakpoint hit (7.2 yields here, after the state
    # change; 2.5 yielded inside the loop)
    for _ in range(len(s.suspended_reqs) - suspended):
        qemu_coroutine_yield()


def blkdebug_debug_breakpoint(bs: BlockDriverState, event: str,
                              tag: str) -> int:
    s = bs.opaque
    blkdebug_event = get_event_by_name(event)
    if blkdebug_event is None:
        return -errno.ENOENT

    rule = BlkdebugRule(blkdebug_event, ACTION_SUSPEND, 0)
    rule.tag = tag
    s.rules[blkdebug_event].insert(0, rule)
    return 0


def resume_req_by_tag(s: BDRVBlkdebugState, tag: str, all: bool) -> int:
    """Resume the request suspended as tag; with all, every one of them,
    and then the answer is -ENOENT all the same (as in 7.2, which makes
    remove_break of a hit breakpoint report an error)."""
    while True:
        r = next((r for r in s.suspended_reqs if r.tag == tag), None)
        if r is None:
            return -errno.ENOENT
        printf("blkdebug: Resuming request '%s'\n", r.tag)
        s.suspended_reqs.remove(r)
        qemu_coroutine_enter(r.co)
        if not all:
            return 0


def blkdebug_debug_resume(bs: BlockDriverState, tag: str) -> int:
    return resume_req_by_tag(bs.opaque, tag, False)


def blkdebug_debug_remove_breakpoint(bs: BlockDriverState, tag: str) -> int:
    s = bs.opaque
    ret = -errno.ENOENT
    for rules in s.rules.values():
        for rule in list(rules):
            if rule.action == ACTION_SUSPEND and rule.tag == tag:
                rules.remove(rule)
                ret = 0
    if resume_req_by_tag(s, tag, True) == 0:
        ret = 0
    return ret


def blkdebug_debug_is_suspended(bs: BlockDriverState, tag: str) -> bool:
    return any(r.tag == tag for r in bs.opaque.suspended_reqs)


# --- the rest of the driver --------------------------------------------------

def blkdebug_get_info(bs: BlockDriverState, bdi) -> int:
    # 7.2 asks the image of a filter node
    return core.bdrv_get_info(bs.file.bs, bdi)


def blkdebug_getlength(bs: BlockDriverState) -> int:
    return core.bdrv_getlength(bs.file.bs)


def blkdebug_truncate(bs: BlockDriverState, offset: int, prealloc: str,
                      flags: int, errp: Errp) -> int:
    return core.bdrv_truncate(bs.file.bs, offset, prealloc, errp, flags)


def blkdebug_refresh_filename(bs: BlockDriverState) -> None:
    """blkdebug:CONFIG:IMAGE while the config file (and no other option of
    ours) says everything; the options otherwise."""
    own: dict = {}
    core.append_open_options(own, bs)
    own.pop('x-image', None)
    own.pop('image', None)
    # rules given as options
    own.update((k, v) for k, v in (bs.options or {}).items()
               if k.startswith(('inject-error.', 'set-state.')))
    force_json = any(k != 'config' for k in own)

    if force_json and not bs.file.bs.full_open_options:
        # the config file cannot be recreated: no plain filename is possible
        return

    if not force_json and bs.file.bs.exact_filename:
        bs.exact_filename = 'blkdebug:%s:%s' % (own.get('config') or '',
                                                bs.file.bs.exact_filename)

    if bs.file.bs.full_open_options:
        bs.full_open_options = dict(own, driver='blkdebug',
                                    image=bs.file.bs.full_open_options)


def blkdebug_refresh_limits(bs: BlockDriverState, errp: Errp) -> None:
    s = bs.opaque
    if s.align:
        bs.request_alignment = s.align
    # the block limits of the port count sectors
    if s.max_transfer:
        bs.bl.max_transfer_length = s.max_transfer >> BDRV_SECTOR_BITS
    if s.opt_write_zero:
        bs.bl.write_zeroes_alignment = s.opt_write_zero >> BDRV_SECTOR_BITS
    if s.max_write_zero:
        bs.bl.max_write_zeroes = s.max_write_zero >> BDRV_SECTOR_BITS
    if s.opt_discard:
        bs.bl.discard_alignment = s.opt_discard >> BDRV_SECTOR_BITS
    if s.max_discard:
        bs.bl.max_discard = s.max_discard >> BDRV_SECTOR_BITS


def blkdebug_reopen_prepare(reopen_state, queue, errp: Errp) -> int:
    # nothing of blkdebug's own changes (7.2 allows reopening; 2.5 did not)
    return 0


class BdrvBlkdebug(BlockDriver):
    format_name = 'blkdebug'
    protocol_name = 'blkdebug'
    instance_type = BDRVBlkdebugState

    bdrv_parse_filename = staticmethod(blkdebug_parse_filename)
    bdrv_file_open = staticmethod(blkdebug_open)
    bdrv_close = staticmethod(blkdebug_close)
    bdrv_reopen_prepare = staticmethod(blkdebug_reopen_prepare)
    bdrv_getlength = staticmethod(blkdebug_getlength)
    bdrv_get_info = staticmethod(blkdebug_get_info)
    bdrv_truncate = staticmethod(blkdebug_truncate)
    bdrv_refresh_filename = staticmethod(blkdebug_refresh_filename)
    bdrv_refresh_limits = staticmethod(blkdebug_refresh_limits)

    bdrv_co_readv = staticmethod(blkdebug_co_readv)
    bdrv_co_writev = staticmethod(blkdebug_co_writev)
    bdrv_co_write_zeroes = staticmethod(blkdebug_co_write_zeroes)
    bdrv_co_discard = staticmethod(blkdebug_co_discard)
    bdrv_co_flush_to_disk = staticmethod(blkdebug_co_flush)
    bdrv_co_get_block_status = staticmethod(blkdebug_co_get_block_status)

    bdrv_debug_event = staticmethod(blkdebug_debug_event)
    bdrv_debug_breakpoint = staticmethod(blkdebug_debug_breakpoint)
    bdrv_debug_remove_breakpoint = staticmethod(
        blkdebug_debug_remove_breakpoint)
    bdrv_debug_resume = staticmethod(blkdebug_debug_resume)
    bdrv_debug_is_suspended = staticmethod(blkdebug_debug_is_suspended)


bdrv_blkdebug = BdrvBlkdebug()
bdrv_register(bdrv_blkdebug)
