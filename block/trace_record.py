"""Record and replay the requests of a BlockBackend; turn a trace into a
qemu-io script.  Not a QEMU file.

Recording.  trace_record_start(blk, path) makes the BlockBackend tell a
TraceRecorder of every request that passed its checks (block_backend.py
calls recorder.begin() and the returned entry's end()): reads, writes
(zero writes and FUA included), flushes and discards, whatever API issued
them (blk_*, the AIO forms, the Pythonic front).  Each completed request
becomes one line, so the file lists requests in the order they completed:

    # pyqemu-block trace 1
    # id op offset bytes flags submit_ns complete_ns ret data
    0 write 0 4096 0x0 0 9000 0 P:61
    2 write 65536 512 0x10 100 9100 0 B:aGVsbG8...
    1 read 0 4096 0x0 50 18000 0 -
    3 write 8192 4096 0x6 9100 20000 0 -
    4 flush 0 0 0x0 20000 21000 0 -
    5 discard 0 65536 0x0 21000 22000 0 -

id numbers the requests in the order they were submitted; flags are the
BDRV_REQ_* flags the block layer got (0x10 FUA, 0x2 zero write, 0x4 may
unmap); times are QEMU_CLOCK_VIRTUAL readings (the virtual time in
deterministic mode); ret is 0 or -errno.  The data of a write is ``P:xx``
when every byte is xx (hex), ``B:`` and base64 otherwise, ``-`` for zero
writes or when the recorder was made with data=False (the replayer then
writes the byte id & 0xff).

Replaying.  trace_replay(blk, entries) runs the requests of a trace
against any BlockBackend (any driver stack).  mode="timed" submits each
request at its recorded submit time (relative to the first) and lets them
run concurrently, as recorded.  A request due at the instant another one
completes is submitted from that completion, as a program that waited for
it would have; the others once everything else of their instant has run.
Then a replay on the same stack, in deterministic mode, repeats the
recording event for event when the program issued its requests either way
(a trace does not say who issued a request: one issued at the same instant
as other events, but before them, is replayed after them).  mode="serial" runs them one
after the other in the order they completed, which reproduces the final
image of the recording whatever the stack's timing.

qemu-io.  trace_to_qemu_io() writes the trace as a qemu-io script, in
completion order (each command waits for the previous one, like the serial
replay): read, write -P / -s FILE / -z [-u], with -f for FUA, flush,
discard.  Requests that failed when recorded are left out.  Feed it to
qemu-io on stdin: ``qemu-io -f raw img < script``.

From the shell:
    python3 -m block.trace_record replay TRACE IMAGE [-f FMT] [--serial]
    python3 -m block.trace_record convert TRACE SCRIPT [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from typing import Any, Callable, Iterable, List, Optional, TextIO, Union

from block import block_backend
from block.block_int import (BDRV_REQ_FUA, BDRV_REQ_MAY_UNMAP,
                             BDRV_REQ_ZERO_WRITE)
from util.aio import aio_poll, aio_timer_new
from util.coroutine import qemu_coroutine_create, qemu_coroutine_enter
from util.iov import QEMUIOVector, qemu_iovec_init_external, qemu_iovec_to_buf
from util.timer import (QEMU_CLOCK_VIRTUAL, SCALE_NS, qemu_clock_get_ns,
                        timer_free, timer_mod_ns)

TRACE_MAGIC = '# pyqemu-block trace 1'
TRACE_FIELDS = ('# id op offset bytes flags submit_ns complete_ns ret data')
TRACE_OPS = ('read', 'write', 'flush', 'discard')


class TraceEntry:
    """One request of a trace (a line of the file)."""
    __slots__ = ('id', 'op', 'offset', 'bytes', 'flags', 'submit_ns',
                 'complete_ns', 'ret', 'data', 'recorder')

    def __init__(self, id: int, op: str, offset: int, nbytes: int,
                 flags: int, submit_ns: int, complete_ns: int = -1,
                 ret: int = 0, data: Optional[bytes] = None) -> None:
        self.id = id
        self.op = op
        self.offset = offset
        self.bytes = nbytes
        self.flags = flags
        self.submit_ns = submit_ns
        self.complete_ns = complete_ns
        self.ret = ret
        self.data = data            # a write's bytes, None if not known
        self.recorder: Optional[TraceRecorder] = None

    # the recorder's side (see block_backend.py)

    def end(self, ret: int) -> int:
        """The request completed with ret; returns ret."""
        rec = self.recorder
        self.recorder = None
        if rec is not None:
            self.complete_ns = qemu_clock_get_ns(rec.clock)
            self.ret = ret
            rec.write_entry(self)
        return ret

    def aio(self, cb: Callable, opaque: Any) -> tuple:
        """An AIO request's (cb, opaque), wrapped to call end() first."""
        def trace_aio_cb(opaque_: Any, ret: int) -> None:
            self.end(ret)
            cb(opaque_, ret)
        return trace_aio_cb, opaque

    def format_data(self) -> str:
        data = self.data
        if data is None or not self.bytes:
            return '-'
        if data.count(data[0]) == len(data):
            return 'P:%02x' % data[0]
        return 'B:' + base64.b64encode(data).decode('ascii')

    def format(self) -> str:
        return '%d %s %d %d 0x%x %d %d %d %s' % (
            self.id, self.op, self.offset, self.bytes, self.flags,
            self.submit_ns, self.complete_ns, self.ret, self.format_data())

    def __repr__(self) -> str:
        return 'TraceEntry(%s)' % self.format()[:80]


class TraceRecorder:
    """Writes the trace of one or more BlockBackends to a text stream."""

    def __init__(self, out: TextIO, data: bool = True,
                 clock: int = QEMU_CLOCK_VIRTUAL) -> None:
        self.out: Optional[TextIO] = out
        self.owns_out = False       # opened by trace_record_start
        self.data = data
        self.clock = clock
        self.next_id = 0
        self.entries: List[TraceEntry] = []     # in completion order
        out.write(TRACE_MAGIC + '\n' + TRACE_FIELDS + '\n')

    def begin(self, op: str, offset: int, nbytes: int, flags: int,
              qiov: Optional[QEMUIOVector]) -> TraceEntry:
        entry = TraceEntry(self.next_id, op, offset, nbytes, flags,
                           qemu_clock_get_ns(self.clock))
        self.next_id += 1
        if self.data and qiov is not None and op == 'write':
            buf = bytearray(nbytes)
            qemu_iovec_to_buf(qiov, 0, buf, nbytes)
            entry.data = bytes(buf)
        entry.recorder = self
        return entry

    def write_entry(self, entry: TraceEntry) -> None:
        if self.out is None:        # stopped: later completions are lost
            return
        self.entries.append(entry)
        self.out.write(entry.format() + '\n')


def _blk(target: Any) -> block_backend.BlockBackend:
    """A BlockBackend, or the one of a front Image."""
    return getattr(target, 'blk', target)


def trace_record_start(target: Any, path_or_stream: Union[str, TextIO],
                       data: bool = True) -> TraceRecorder:
    """Record the requests of target (a BlockBackend or a front Image) to
    a file (given by name: created) or an open text stream."""
    blk = _blk(target)
    assert blk.recorder is None, 'trace_record_start: already recording'
    if isinstance(path_or_stream, (str, os.PathLike)):
        out = open(path_or_stream, 'w')
    else:
        out = path_or_stream
    rec = TraceRecorder(out, data)
    rec.owns_out = out is not path_or_stream
    blk.recorder = rec
    return rec


def trace_record_stop(target: Any) -> TraceRecorder:
    """Stop recording; requests still in flight are not written."""
    blk = _blk(target)
    rec = blk.recorder
    assert rec is not None, 'trace_record_stop: not recording'
    blk.recorder = None
    if rec.owns_out:
        rec.out.close()
    else:
        rec.out.flush()
    rec.out = None
    return rec


def _parse_data(field: str) -> Optional[bytes]:
    if field == '-':
        return None
    if field.startswith('B:'):
        return base64.b64decode(field[2:])
    if field.startswith('P:'):
        return bytes([int(field[2:], 16)])      # expanded by the caller
    raise ValueError('bad data field %r' % field[:20])


def trace_parse(lines: Iterable[str]) -> List[TraceEntry]:
    """The entries of a trace, in file (completion) order."""
    entries = []
    for lineno, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        try:
            f = line.split(' ')
            if len(f) != 9 or f[1] not in TRACE_OPS:
                raise ValueError('expected 9 fields')
            entry = TraceEntry(int(f[0]), f[1], int(f[2]), int(f[3]),
                               int(f[4], 16), int(f[5]), int(f[6]),
                               int(f[7]), _parse_data(f[8]))
            if entry.data is not None and len(entry.data) == 1:
                entry.data = entry.data * entry.bytes
        except ValueError as e:
            raise ValueError('trace line %d: %s' % (lineno, e)) from None
        entries.append(entry)
    return entries


def trace_load(path: str) -> List[TraceEntry]:
    with open(path) as f:
        return trace_parse(f)


# --- issuing requests (the replayer and block/simpy_adapter.py) -------------

class BlkRequest:
    """One request run in its own coroutine by blk_request_submit."""
    __slots__ = ('blk', 'op', 'offset', 'bytes', 'flags', 'buf', 'ret',
                 'cb', 'opaque')


def blk_request_entry(req: BlkRequest) -> None:
    blk = req.blk
    if req.op == 'read' or req.op == 'write':
        qiov = None
        if req.buf is not None:
            qiov = QEMUIOVector()
            qemu_iovec_init_external(qiov, [memoryview(req.buf)], 1)
        if req.op == 'read':
            ret = block_backend.blk_co_preadv(blk, req.offset, req.bytes,
                                              qiov, req.flags)
        else:
            ret = block_backend.blk_co_pwritev(blk, req.offset, req.bytes,
                                               qiov, req.flags)
    elif req.op == 'flush':
        ret = block_backend.blk_co_flush(blk)
    else:
        # in a coroutine the synchronous discard runs inline
        ret = block_backend.blk_pdiscard(blk, req.offset, req.bytes)
    req.ret = ret
    req.cb(req)


def blk_request_submit(blk: block_backend.BlockBackend, op: str, offset: int,
                       nbytes: int, flags: int, buf: Any,
                       cb: Callable[[BlkRequest], None],
                       opaque: Any = None) -> BlkRequest:
    """Start a request in a coroutine; cb(req) runs when it completes
    (req.ret: 0 or -errno; a read's data is in req.buf), possibly before
    this returns.  buf: the buffer to read into or write from (None for a
    zero write, with BDRV_REQ_ZERO_WRITE in flags)."""
    req = BlkRequest()
    req.blk = blk
    req.op = op
    req.offset = offset
    req.bytes = nbytes
    req.flags = flags
    req.buf = buf
    req.ret = 0
    req.cb = cb
    req.opaque = opaque
    co = qemu_coroutine_create(blk_request_entry)
    qemu_coroutine_enter(co, req)
    return req


def trace_entry_buffer(entry: TraceEntry) -> Optional[bytearray]:
    """The buffer to replay entry with."""
    if entry.op == 'read':
        return bytearray(entry.bytes)
    if entry.op != 'write' or entry.flags & BDRV_REQ_ZERO_WRITE:
        return None
    if entry.data is not None:
        return bytearray(entry.data)
    return bytearray([entry.id & 0xff]) * entry.bytes


class ReplayResult:
    """How a replayed request went."""
    __slots__ = ('entry', 'ret', 'submit_ns', 'complete_ns')

    def __init__(self, entry: TraceEntry, submit_ns: int) -> None:
        self.entry = entry
        self.ret = 0
        self.submit_ns = submit_ns
        self.complete_ns = -1


def trace_replay(target: Any, entries: List[TraceEntry], mode: str = 'timed',
                 skip_failed: bool = False) -> List[ReplayResult]:
    """Run the requests of a trace against target (a BlockBackend or a
    front Image) and wait for them all; results in submission order.
    mode: "timed" or "serial" (see the module comment).  skip_failed
    leaves out the requests that failed when recorded."""
    assert mode in ('timed', 'serial')
    blk = _blk(target)
    ctx = block_backend.blk_get_aio_context(blk)
    todo = [e for e in entries if not (skip_failed and e.ret < 0)]
    results: List[ReplayResult] = []
    pending = [0]

    def complete(req: BlkRequest) -> None:
        result = req.opaque
        result.ret = req.ret
        result.complete_ns = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL)
        pending[0] -= 1
        if mode == 'timed':
            # a request due now was most likely issued by whoever waited
            # for this one: submit it here, as that caller did, before
            # the other events of this instant
            submit_due()

    def submit(entry: TraceEntry) -> None:
        result = ReplayResult(entry, qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL))
        results.append(result)
        pending[0] += 1
        blk_request_submit(blk, entry.op, entry.offset, entry.bytes,
                           entry.flags, trace_entry_buffer(entry), complete,
                           result)

    if mode == 'serial':
        for entry in todo:
            submit(entry)
            while pending[0]:
                aio_poll(ctx, True)
        return results

    todo.sort(key=lambda e: (e.submit_ns, e.id))
    base = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL) - \
        (todo[0].submit_ns if todo else 0)
    state = {'next': 0}

    def submit_due() -> bool:
        # every request due now, then the timer for the next one; a
        # request may complete inside submit() and call us again
        first = state['next']
        now = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL)
        while (state['next'] < len(todo) and
               base + todo[state['next']].submit_ns <= now):
            state['next'] += 1
            submit(todo[state['next'] - 1])
        if state['next'] < len(todo):
            timer_mod_ns(timer, base + todo[state['next']].submit_ns)
        return state['next'] > first

    # The timer only stops time at the next submission: the requests due
    # then that no completion submitted go in once everything else of that
    # instant has run.
    timer = aio_timer_new(ctx, QEMU_CLOCK_VIRTUAL, SCALE_NS, lambda _: None,
                          None)
    while state['next'] < len(todo) or pending[0]:
        while aio_poll(ctx, False):
            pass
        if not submit_due():
            aio_poll(ctx, True)
    timer_free(timer)
    return results


# --- qemu-io ----------------------------------------------------------------

def trace_to_qemu_io(entries: List[TraceEntry], script: TextIO,
                     data_dir: Optional[str] = None) -> int:
    """Write entries (in their order) as qemu-io commands to script; the
    data of writes that is not a single repeated byte goes to files in
    data_dir (required then), read with ``write -s``.  Requests that
    failed when recorded are left out.  Returns the number of commands."""
    n = 0
    for e in entries:
        if e.ret < 0:
            continue
        if e.op == 'read':
            cmd = 'read -q %d %d' % (e.offset, e.bytes)
        elif e.op == 'write':
            opts = '-q'
            if e.flags & BDRV_REQ_FUA:
                opts += ' -f'
            if e.flags & BDRV_REQ_ZERO_WRITE:
                opts += ' -z'
                if e.flags & BDRV_REQ_MAY_UNMAP:
                    opts += ' -u'
            else:
                data = trace_entry_buffer(e)
                if data.count(data[0]) == len(data):
                    opts += ' -P 0x%02x' % data[0]
                else:
                    assert data_dir is not None, \
                        'trace_to_qemu_io: data_dir needed for write data'
                    path = os.path.join(os.path.abspath(data_dir),
                                        'write-%d.bin' % e.id)
                    with open(path, 'wb') as f:
                        f.write(data)
                    opts += ' -s %s' % path
            cmd = 'write %s %d %d' % (opts, e.offset, e.bytes)
        elif e.op == 'flush':
            cmd = 'flush'
        else:
            cmd = 'discard -q %d %d' % (e.offset, e.bytes)
        script.write(cmd + '\n')
        n += 1
    return n


# --- command line -----------------------------------------------------------

def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog='python3 -m block.trace_record',
        description='Replay a pyqemu-block trace, or convert it to a '
                    'qemu-io script.')
    sub = parser.add_subparsers(dest='cmd', required=True)
    rp = sub.add_parser('replay', help='run a trace against an image')
    rp.add_argument('trace')
    rp.add_argument('image', help='file name, json:{...} or protocol:')
    rp.add_argument('-f', '--format', help='image format (default: probe)')
    rp.add_argument('--serial', action='store_true',
                    help='one request at a time, in completion order')
    rp.add_argument('--skip-failed', action='store_true',
                    help='leave out requests that failed when recorded')
    cp = sub.add_parser('convert', help='write a qemu-io script')
    cp.add_argument('trace')
    cp.add_argument('script', help="output file, '-' for stdout")
    cp.add_argument('--data-dir', help='where to put write data files '
                    '(default: SCRIPT.d)')
    args = parser.parse_args(argv)

    try:
        entries = trace_load(args.trace)
    except (OSError, ValueError) as e:
        print('%s: %s' % (args.trace, e), file=sys.stderr)
        return 1

    if args.cmd == 'convert':
        data_dir = args.data_dir
        if data_dir is None:
            data_dir = ('qemu-io-data' if args.script == '-'
                        else args.script + '.d')
        os.makedirs(data_dir, exist_ok=True)
        out = sys.stdout if args.script == '-' else open(args.script, 'w')
        try:
            trace_to_qemu_io(entries, out, data_dir)
        finally:
            if out is not sys.stdout:
                out.close()
        return 0

    # a replay is a simulation: virtual time, no thread timing
    from block.front import open_image
    from util.deterministic import deterministic_enable
    deterministic_enable()
    try:
        img = open_image(args.image, fmt=args.format)
    except OSError as e:
        print(e.strerror, file=sys.stderr)
        return 1
    with img:
        results = trace_replay(img, entries,
                               'serial' if args.serial else 'timed',
                               args.skip_failed)
    failed = sum(1 for r in results if r.ret < 0)
    end = max((r.complete_ns for r in results), default=0)
    start = min((r.submit_ns for r in results), default=0)
    print('%d requests, %d failed, %d ns of virtual time' %
          (len(results), failed, end - start))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
