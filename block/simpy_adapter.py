"""Run the block layer inside a SimPy simulation (pip install simpy, or the
project's ``sim`` extra).  Not a QEMU file.

SimPy owns time.  SimPyBlock puts the block layer in deterministic mode
(util/deterministic.py) and keeps QEMU_CLOCK_VIRTUAL in step with the
simpy Environment: when the block layer arms a timer (a simulated disk's
completion, a throttling delay), the adapter schedules a simpy timeout for
that instant; when it fires, the adapter moves the virtual clock there and
runs what became due, which completes requests.  SimPy processes issue
block I/O through the adapter and wait for it with ``yield``:

    env = simpy.Environment()
    blk = SimPyBlock(env)
    img = open_image({"driver": "raw",
                      "file": {"driver": "sim", "latency-ns": 100000}})

    def vm(env):
        yield blk.write(img, 0, b"x" * 4096)
        data = yield blk.read(img, 0, 4096)

    env.process(vm(env))
    env.run()

read/write/write_zeroes/discard/flush take a front Image or a
BlockBackend and return a simpy event whose value is what the front's
method returns (the data for read); a failed request fails the event with
the front's OSError, which ``yield`` raises in the process.  Any number of
requests may be in flight at once.

Time: env.now * ns_per_unit (default 1e9: simpy time in seconds) plus an
offset is the virtual time in ns.  Synchronous calls (opening or closing
an image, the front's read/write) finish by warping the virtual clock
without simpy knowing; the offset then grows so that the virtual clock
never goes back (offset_ns says by how much).  So open images before the
simulation runs, and inside processes use only the adapter's calls.
"""

from __future__ import annotations

from typing import Any, Optional

import simpy

from block.block_int import (BDRV_REQ_FUA, BDRV_REQ_MAY_UNMAP,
                             BDRV_REQ_ZERO_WRITE)
from block.front import _raise
from block.trace_record import BlkRequest, blk_request_submit
from util.aio import aio_poll, qemu_get_aio_context
from util.deterministic import (deterministic_deadline_ns,
                                deterministic_enable, deterministic_now_ns)
from util.timer import QEMU_CLOCK_VIRTUAL, qemu_clock_set_ns


class SimPyBlock:
    """The coupling of the block layer (one AioContext, the main one by
    default) to a simpy Environment."""

    def __init__(self, env: simpy.Environment, ctx: Any = None,
                 ns_per_unit: float = 1e9) -> None:
        deterministic_enable()
        self.env = env
        self.ctx = ctx if ctx is not None else qemu_get_aio_context()
        self.ns_per_unit = ns_per_unit
        self.offset_ns = deterministic_now_ns() - self._env_ns()
        self._wakeup_at: Optional[int] = None

    def _env_ns(self) -> int:
        return round(self.env.now * self.ns_per_unit)

    def now_ns(self) -> int:
        """The virtual time that corresponds to env.now."""
        return self._env_ns() + self.offset_ns

    def _sync(self, at: Optional[int] = None) -> None:
        """Move the virtual clock to env.now (at: the instant a wake-up was
        asked for, which absorbs the rounding of float simpy times)."""
        target = self.now_ns()
        if at is not None and abs(target - at) <= 1:
            target = at
        now = deterministic_now_ns()
        if target > now:
            qemu_clock_set_ns(QEMU_CLOCK_VIRTUAL, target)
        elif target < now:
            # a synchronous call ran the block layer ahead of simpy
            self.offset_ns += now - target

    def _pump(self) -> None:
        """Run what is due, then ask simpy to wake us at the next timer."""
        while aio_poll(self.ctx, False):
            pass
        deadline = deterministic_deadline_ns()
        if deadline < 0:
            return
        at = deterministic_now_ns() + deadline
        if self._wakeup_at is not None and self._wakeup_at <= at:
            return      # an earlier wake-up is coming
        self._wakeup_at = at
        event = self.env.timeout(deadline / self.ns_per_unit, at)
        event.callbacks.append(self._on_wakeup)

    def _on_wakeup(self, event: simpy.Event) -> None:
        at = event.value
        if self._wakeup_at == at:
            self._wakeup_at = None
        self._sync(at)
        self._pump()

    def _submit(self, target: Any, op: str, what: str, offset: int,
                nbytes: int, flags: int, buf: Any, value: Any
                ) -> simpy.Event:
        event = self.env.event()

        def complete(req: BlkRequest) -> None:
            if req.ret < 0:
                try:
                    _raise(req.ret, what)
                except OSError as e:
                    event.fail(e)
            else:
                event.succeed(bytes(req.buf) if value is None else value)

        self._sync()
        blk = getattr(target, 'blk', target)
        blk_request_submit(blk, op, offset, nbytes, flags, buf, complete)
        self._pump()
        return event

    def read(self, target: Any, offset: int, length: int) -> simpy.Event:
        """Value: the bytes read."""
        return self._submit(target, 'read', 'read', offset, length, 0,
                            bytearray(length), None)

    def write(self, target: Any, offset: int, data: Any,
              fua: bool = False) -> simpy.Event:
        """Value: the number of bytes written."""
        view = memoryview(data).cast('B')
        return self._submit(target, 'write', 'write', offset, len(view),
                            BDRV_REQ_FUA if fua else 0, view, len(view))

    def write_zeroes(self, target: Any, offset: int, length: int,
                     unmap: bool = False) -> simpy.Event:
        flags = BDRV_REQ_ZERO_WRITE | (BDRV_REQ_MAY_UNMAP if unmap else 0)
        return self._submit(target, 'write', 'write', offset, length, flags,
                            None, length)

    def discard(self, target: Any, offset: int, length: int) -> simpy.Event:
        return self._submit(target, 'discard', 'discard', offset, length, 0,
                            None, length)

    def flush(self, target: Any) -> simpy.Event:
        return self._submit(target, 'flush', 'flush', 0, 0, 0, None, 0)

