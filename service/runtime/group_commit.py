"""Group commit: every stream's batch that is waiting is stepped in one engine call.

A media server usually opens a stream per room (or per SFU worker) and sends a message per
room every 20 ms. Stepped one by one, each message pays the engine's fixed cost; the rooms
would rather share it. Batches are queued and drained on the next turn of the event loop,
so an idle server adds no latency (nothing else is waiting, the drain runs at once), and a
busy one steps whatever arrived while it was stepping the previous drain, and whatever
arrives until DRAIN_INTERVAL_S after that drain started. A drain yields to other calls
every SLICE_S of work, between engine steps, so no batch holds the loop.
"""
from __future__ import annotations

import asyncio
import logging
import time

from ..api import speakerswitch_pb2 as pb
from .metrics import Metrics
from .rooms import Batch, RoomRegistry

log = logging.getLogger("speakerswitch.group_commit")


SLICE_S = 0.002
"""Work done on the event loop before other calls get a turn (between engine steps, so a
step of thousands of rooms is never cut). A call needs a few turns of the loop to be read,
handled and answered: with 2 ms slices another tenant's GetRoom or a health check waits
tens of milliseconds behind a 50,000-entry batch instead of seconds (benchmarks/ATTACK.md);
10 ms slices made it ~75 ms."""

DRAIN_INTERVAL_S = 0.001
"""Drains start at least this far apart: a drain's engine step costs ~150 us on a busy
server, mostly a fixed cost (in-process, warm: 70 us for one room, 105 us for five; in
the server the framework's work between drains leaves caches cold), and a stream per
room at 50 rooms sends 2,500 messages a second that arrive one by one, so without a wait
most drains stepped one or two of them. A server that has not drained for this long (an
idle one, or one message per stream now and then) still drains at once, and so does one
with a message waiting from every open stream (a client sending back to back: nothing
else is about to come); the wait is only ever the rest of this interval, so it adds at
most 1 ms to a message's processing (target p99 5 ms). At 50 rooms x 10 a stream each:
3.6-6.6 messages a drain instead of 1.7, and about 10 points of a core less, for ~0.5 ms
more round trip; 2 ms saved more and cost more latency (docs/performance.md)."""


class GroupCommit:
    def __init__(self, registry: RoomRegistry, metrics: Metrics | None = None,
                 clock=time.perf_counter) -> None:
        self.registry = registry
        self.metrics = metrics
        self.clock = clock
        self._pending: list[tuple[Batch, asyncio.Future]] = []
        self._draining: asyncio.Task | None = None
        self._last_drain = -float("inf")
        """When the last drain started (``clock``)."""
        self.streams = 0
        """Open Stream calls (the server counts them). With a message waiting from each
        (one stream sending back to back, say), nothing else is about to arrive: the
        drain does not wait for the interval."""
        self._quiet = asyncio.Event()
        self._quiet.set()

    async def process(self, batch: Batch) -> pb.StreamResponse:
        """``RoomRegistry.process`` for one batch, stepped together with the others."""
        done = asyncio.get_running_loop().create_future()
        self._pending.append((batch, done))
        if self._draining is None:
            self._quiet.clear()
            self._draining = asyncio.create_task(self._drain())
        return await done

    async def quiet(self) -> None:
        """Return at a moment when no drain is running: a caller that then changes rooms
        without awaiting (closing one, collecting idle ones) never lands between a
        batch's engine steps."""
        while self._draining is not None:
            await self._quiet.wait()

    async def _drain(self) -> None:
        """Step what is waiting, again and again until nothing is: one drain at a time, so
        a room's ticks always run in the order their batches arrived."""
        try:
            while self._pending:
                wait = self._last_drain + DRAIN_INTERVAL_S - self.clock()
                if wait > 0 and len(self._pending) < self.streams:
                    await asyncio.sleep(wait)  # a busy server: what arrives joins this drain
                self._last_drain = self.clock()
                pending, self._pending = self._pending, []
                if self.metrics is not None:
                    self.metrics.drains.inc()
                try:
                    responses = await self._sliced(pending)
                except Exception:  # a bug: find the batch it belongs to, fail only that one
                    log.exception("internal error stepping %d batches together; retrying "
                                  "one by one", len(pending))
                    for one in pending:
                        try:
                            _resolve(one[1], (await self._sliced([one]))[0])
                        except Exception as e:
                            if not one[1].done():
                                one[1].set_exception(e)
                    continue
                for (_, done), response in zip(pending, responses):
                    _resolve(done, response)
        finally:
            self._draining = None
            self._quiet.set()

    async def _sliced(self, pending: list[tuple[Batch, asyncio.Future]]
                      ) -> list[pb.StreamResponse]:
        steps = self.registry.process_steps([batch for batch, _ in pending])
        slice_end = self.clock() + SLICE_S
        while True:
            try:
                next(steps)
            except StopIteration as finished:
                return finished.value
            if self.clock() > slice_end:
                await asyncio.sleep(0)  # let other calls in
                slice_end = self.clock() + SLICE_S


def _resolve(done: asyncio.Future, response: pb.StreamResponse) -> None:
    if not done.done():  # the stream may have been cancelled while it waited
        done.set_result(response)
