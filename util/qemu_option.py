"""Option lists: the part of QEMU's util/qemu-option.c the block layer uses.

A QemuOptsList describes the options a driver accepts; qemu_opts_absorb_qdict
moves the known keys of an options dict (QEMU's flattened QDict: a Python
dict with dotted keys and str/int/bool values) into a QemuOpts, parsing each
value by its type.  Messages follow the installed QEMU (7.2) where a user sees
them ("Parameter 'size' expects a non-negative number below 2^64").
"""

from __future__ import annotations

import errno
import re
from typing import Any, Optional

from util.cutils import printf, qemu_strtosz
from util.error import Errp, error_append_hint, error_propagate, error_setg
from util.qemu_error import error_printf, warn_report

QEMU_OPT_STRING = 0     # no parsing, used as-is
QEMU_OPT_BOOL = 1       # on/off
QEMU_OPT_NUMBER = 2     # a plain number
QEMU_OPT_SIZE = 3       # a size, with an optional k/M/G/T/P/E suffix

QERR_INVALID_PARAMETER_VALUE = "Parameter '%s' expects %s"
QERR_INVALID_PARAMETER = "Invalid parameter '%s'"


class QemuOptDesc:
    __slots__ = ('name', 'type', 'help', 'def_value_str')

    def __init__(self, name: str, type: int = QEMU_OPT_STRING, help: str = '',
                 def_value_str: Optional[str] = None):
        self.name = name
        self.type = type
        self.help = help
        self.def_value_str = def_value_str


class QemuOptsList:
    __slots__ = ('name', 'implied_opt_name', 'merge_lists', 'desc')

    def __init__(self, name: Optional[str], desc: list,
                 implied_opt_name: Optional[str] = None):
        self.name = name
        self.implied_opt_name = implied_opt_name
        self.merge_lists = False
        self.desc = desc            # list of QemuOptDesc; empty accepts any


class QemuOpt:
    __slots__ = ('name', 'str', 'desc', 'value')

    def __init__(self, name: str, value_str: str,
                 desc: Optional[QemuOptDesc]):
        self.name = name
        self.str = value_str
        self.desc = desc
        self.value: Any = None      # parsed value (bool or int), C's union


class QemuOpts:
    __slots__ = ('id', 'list', 'head')

    def __init__(self, lst: QemuOptsList, id: Optional[str] = None):
        self.id = id
        self.list = lst
        self.head: list = []        # QemuOpt, in the order they were set


_BOOL_TRUE = ('on', 'yes', 'true', 'y')
_BOOL_FALSE = ('off', 'no', 'false', 'n')


def parse_option_bool(name: str, value: str, errp: Errp) -> Optional[bool]:
    if value in _BOOL_TRUE:
        return True
    if value in _BOOL_FALSE:
        return False
    error_setg(errp, QERR_INVALID_PARAMETER_VALUE, name, "'on' or 'off'")
    return None


def parse_option_number(name: str, value: str, errp: Errp) -> Optional[int]:
    """strtoull(value, 0): decimal, 0x hex or 0 octal; a leading minus is
    kept (C wraps it around, and callers read it back as int64_t)."""
    m = re.fullmatch(r'\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)',
                     value)
    if not m:
        error_setg(errp, QERR_INVALID_PARAMETER_VALUE, name, 'a number')
        return None
    digits = m.group(2)
    if digits[:2] in ('0x', '0X'):
        number = int(digits, 16)
    elif digits.startswith('0'):
        number = int(digits, 8)
    else:
        number = int(digits)
    return -number if m.group(1) == '-' else number


def parse_option_size(name: str, value: str, errp: Errp) -> Optional[int]:
    """A size option's value by qemu_strtosz: too large a number has a
    message of its own (7.2's parse_option_size)."""
    err, size = qemu_strtosz(value, None)
    if err == -errno.ERANGE:
        error_setg(errp, "Value '%s' is out of range for parameter '%s'",
                   value, name)
        return None
    if err:
        error_setg(errp, QERR_INVALID_PARAMETER_VALUE, name,
                   'a non-negative number below 2^64')
        error_append_hint(errp, 'Optional suffix k, M, G, T, P or E means '
                          'kilo-, mega-, giga-, tera-, peta-\n'
                          'and exabytes, respectively.\n')
        return None
    return size


def find_desc_by_name(desc: list, name: str) -> Optional[QemuOptDesc]:
    for d in desc:
        if d.name == name:
            return d
    return None


def qemu_opt_find(opts: QemuOpts, name: str) -> Optional[QemuOpt]:
    """The last value set for name wins, as with QTAILQ_FOREACH_REVERSE."""
    for opt in reversed(opts.head):
        if opt.name == name:
            return opt
    return None


def _opt_or_default(opts: QemuOpts, name: str) -> Optional[str]:
    opt = qemu_opt_find(opts, name)
    if opt:
        return opt.str
    desc = find_desc_by_name(opts.list.desc, name)
    return desc.def_value_str if desc else None


def qemu_opt_get(opts: Optional[QemuOpts], name: str) -> Optional[str]:
    if opts is None:
        return None
    return _opt_or_default(opts, name)


def _del_all(opts: QemuOpts, name: str) -> None:
    opts.head = [o for o in opts.head if o.name != name]


def qemu_opt_get_del(opts: Optional[QemuOpts], name: str) -> Optional[str]:
    if opts is None:
        return None
    value = _opt_or_default(opts, name)
    _del_all(opts, name)
    return value


def _get_typed(opts: Optional[QemuOpts], name: str, defval: Any,
               del_: bool, opt_type: int, parse) -> Any:
    if opts is None:
        return defval
    opt = qemu_opt_find(opts, name)
    if opt is None:
        desc = find_desc_by_name(opts.list.desc, name)
        if desc and desc.def_value_str is not None:
            defval = parse(name, desc.def_value_str, None)
        return defval
    assert opt.desc and opt.desc.type == opt_type
    value = opt.value
    if del_:
        _del_all(opts, name)
    return value


def qemu_opt_get_bool(opts, name: str, defval: bool) -> bool:
    return _get_typed(opts, name, defval, False, QEMU_OPT_BOOL,
                      parse_option_bool)


def qemu_opt_get_bool_del(opts, name: str, defval: bool) -> bool:
    return _get_typed(opts, name, defval, True, QEMU_OPT_BOOL,
                      parse_option_bool)


def qemu_opt_get_number(opts, name: str, defval: int) -> int:
    return _get_typed(opts, name, defval, False, QEMU_OPT_NUMBER,
                      parse_option_number)


def qemu_opt_get_number_del(opts, name: str, defval: int) -> int:
    return _get_typed(opts, name, defval, True, QEMU_OPT_NUMBER,
                      parse_option_number)


def qemu_opt_get_size(opts, name: str, defval: int) -> int:
    return _get_typed(opts, name, defval, False, QEMU_OPT_SIZE,
                      parse_option_size)


def qemu_opt_get_size_del(opts, name: str, defval: int) -> int:
    return _get_typed(opts, name, defval, True, QEMU_OPT_SIZE,
                      parse_option_size)


def qemu_opt_parse(opt: QemuOpt, errp: Errp) -> None:
    if opt.desc is None:
        return
    parser = {QEMU_OPT_BOOL: parse_option_bool,
              QEMU_OPT_NUMBER: parse_option_number,
              QEMU_OPT_SIZE: parse_option_size}.get(opt.desc.type)
    if parser:
        opt.value = parser(opt.name, opt.str, errp)


def opt_set(opts: QemuOpts, name: str, value: str, prepend: bool,
            errp: Errp) -> None:
    desc = find_desc_by_name(opts.list.desc, name)
    if desc is None and opts.list.desc:
        error_setg(errp, QERR_INVALID_PARAMETER, name)
        return
    opt = QemuOpt(name, value, desc)
    local_err = [None]
    qemu_opt_parse(opt, local_err)
    if local_err[0]:
        error_propagate(errp, local_err[0])
        return
    if prepend:
        opts.head.insert(0, opt)
    else:
        opts.head.append(opt)


def qemu_opt_set(opts: QemuOpts, name: str, value: str, errp: Errp) -> None:
    opt_set(opts, name, value, False, errp)


def qemu_opt_set_number(opts: QemuOpts, name: str, val: int,
                        errp: Errp) -> None:
    opt_set(opts, name, str(val), False, errp)


def qemu_opts_create(lst: QemuOptsList, id: Optional[str] = None,
                     fail_if_exists: int = 0, errp: Errp = None) -> QemuOpts:
    """A fresh QemuOpts; the global per-list registry of QEMU is not kept."""
    return QemuOpts(lst, id)


def qemu_opts_del(opts: Optional[QemuOpts]) -> None:
    if opts is not None:
        opts.head = []


def _qobject_to_str(value: Any) -> Optional[str]:
    """qemu_opts_from_qdict_1: strings, integers, floats and bools only."""
    if isinstance(value, bool):
        return 'on' if value else 'off'
    if isinstance(value, (str, int)):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    return None


def qemu_opts_absorb_qdict(opts: QemuOpts, qdict: dict, errp: Errp) -> None:
    """Move every key of qdict that opts knows into opts (parsing it)."""
    for key in list(qdict):
        if find_desc_by_name(opts.list.desc, key) is None:
            continue
        value = _qobject_to_str(qdict[key])
        if value is None:
            continue
        local_err = [None]
        opt_set(opts, key, value, False, local_err)
        if local_err[0]:
            error_propagate(errp, local_err[0])
            return
        del qdict[key]


def _get_opt_value(p: str, i: int) -> tuple[str, int]:
    """get_opt_value: read up to an unescaped ',' (',,' stands for ',')."""
    out = []
    while i < len(p):
        if p[i] == ',':
            if i + 1 < len(p) and p[i + 1] == ',':
                out.append(',')
                i += 2
                continue
            break
        out.append(p[i])
        i += 1
    return ''.join(out), i


def is_help_option(s: str) -> bool:
    return s in ('?', 'help')


def _get_opt_name_value(params: str, i: int, firstname: Optional[str],
                        warn_on_flag: bool) -> tuple[str, str, int, bool]:
    """get_opt_name_value: the option at params[i:] as (name, value, index
    after it and its comma, whether it is a bare help flag)."""
    pe = params.find('=', i)
    pc = params.find(',', i)
    is_help = False
    if pe < 0 or (0 <= pc < pe):
        if firstname:
            option = firstname
            value, i = _get_opt_value(params, i)
        else:
            end = len(params) if pc < 0 else pc
            option, i = params[i:end], end
            prefix = ''
            if option.startswith('no'):
                option, value, prefix = option[2:], 'off', 'no'
            else:
                value = 'on'
                is_help = is_help_option(option)
            if not is_help and warn_on_flag:
                warn_report("short-form boolean option '%s%s' deprecated",
                            prefix, option)
                if option == 'delay':
                    error_printf("Please use nodelay=%s instead\n",
                                 'on' if prefix else 'off')
                else:
                    error_printf("Please use %s=%s instead\n", option, value)
    else:
        option = params[i:pe]
        value, i = _get_opt_value(params, pe + 1)
    if i < len(params):
        i += 1      # the comma
    return option, value, i, is_help


def qemu_opts_parse_id(params: str) -> Optional[str]:
    """opts_parse_id: the value of the first "id" option of params."""
    i = 0
    while i < len(params):
        option, value, i, _ = _get_opt_name_value(params, i, None, False)
        if option == 'id':
            return value
    return None


def qemu_opts_do_parse(opts: QemuOpts, params: str,
                       firstname: Optional[str], errp: Errp,
                       warn_on_flag: bool = False,
                       help_wanted: Optional[list] = None) -> None:
    """Parse "a=b,c=d,flag,noflag" into opts (opts_do_parse).  With
    warn_on_flag, flags get 7.2's deprecation warning; help_wanted (a
    one-element list) is set on a bare "help" or "?", which ends parsing."""
    i = 0
    while i < len(params):
        option, value, i, is_help = _get_opt_name_value(params, i, firstname,
                                                        warn_on_flag)
        if help_wanted is not None and is_help:
            help_wanted[0] = True
            return
        firstname = None
        if option != 'id':
            local_err = [None]
            opt_set(opts, option, value, False, local_err)
            if local_err[0]:
                error_propagate(errp, local_err[0])
                return


_OPT_TYPE_NAMES = {QEMU_OPT_STRING: 'str', QEMU_OPT_BOOL: 'bool (on/off)',
                   QEMU_OPT_NUMBER: 'num', QEMU_OPT_SIZE: 'size'}


def qemu_opts_print_help(lst: QemuOptsList, print_caption: bool) -> None:
    """The sorted "  name=<type>  - help" lines of the options of lst, on
    standard output."""
    lines = []
    for desc in lst.desc:
        line = '  %s=<%s>' % (desc.name, _OPT_TYPE_NAMES[desc.type])
        if desc.help:
            line = line.ljust(24) + ' - ' + desc.help
        lines.append(line)
    lines.sort()
    if print_caption and lines:
        if lst.name:
            printf("%s options:\n", lst.name)
        else:
            printf("Options:\n")
    elif not lines:
        if lst.name:
            printf("There are no options for %s.\n", lst.name)
        else:
            printf("No options.\n")
    for line in lines:
        printf("%s\n", line)


def qemu_opts_print(opts: QemuOpts, separator: str) -> str:
    """The text QEMU's qemu_opts_print() writes, returned instead of printed
    so that the caller chooses the stream."""
    out = []
    sep = ''
    if opts.id:
        out.append('id=%s' % opts.id)
        sep = separator
    if not opts.list.desc:
        for opt in opts.head:
            out.append('%s%s=%s' % (sep, opt.name, opt.str.replace(',', ',,')))
            sep = separator
        return ''.join(out)
    for desc in opts.list.desc:
        opt = qemu_opt_find(opts, desc.name)
        value = opt.str if opt else desc.def_value_str
        if value is None:
            continue
        if desc.type == QEMU_OPT_STRING:
            out.append('%s%s=%s' % (sep, desc.name, value.replace(',', ',,')))
        elif desc.type in (QEMU_OPT_SIZE, QEMU_OPT_NUMBER) and opt:
            out.append('%s%s=%d' % (sep, desc.name, opt.value))
        else:
            out.append('%s%s=%s' % (sep, desc.name, value))
        sep = separator
    return ''.join(out)


def qemu_opts_append(dst: Optional[QemuOptsList],
                     lst: Optional[QemuOptsList]) -> Optional[QemuOptsList]:
    """A list with dst's descriptions followed by lst's new ones."""
    if lst is None:
        return dst
    if dst is None:
        dst = QemuOptsList(None, [])
    for desc in lst.desc:
        if find_desc_by_name(dst.desc, desc.name) is None:
            dst.desc.append(desc)
    return dst


def qemu_opts_from_qdict(lst: QemuOptsList, qdict: dict,
                         errp: Errp) -> Optional[QemuOpts]:
    """New QemuOpts of lst holding the entries of qdict (its 'id' as the
    id), each parsed as a -o option would be; None with errp set if one is
    unknown to lst or does not parse."""
    opts = qemu_opts_create(lst, qdict.get('id'))
    for key, value in qdict.items():
        if key == 'id':
            continue
        value = _qobject_to_str(value)
        if value is None:
            continue
        local_err = [None]
        opt_set(opts, key, value, False, local_err)
        if local_err[0]:
            error_propagate(errp, local_err[0])
            qemu_opts_del(opts)
            return None
    return opts


def qemu_opts_to_qdict(opts: QemuOpts, qdict: Optional[dict] = None) -> dict:
    if qdict is None:
        qdict = {}
    if opts.id:
        qdict['id'] = opts.id
    for opt in opts.head:
        qdict[opt.name] = opt.str
    return qdict
