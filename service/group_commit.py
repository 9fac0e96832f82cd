"""Group commit: every stream's batch that is waiting is stepped in one engine call.

A media server usually opens a stream per room (or per SFU worker) and sends a message per
room every 20 ms. Stepped one by one, each message pays the engine's fixed cost; the rooms
would rather share it. Batches are queued and drained on the next turn of the event loop,
so an idle server adds no latency (nothing else is waiting, the drain runs at once), and a
busy one steps whatever arrived while it was stepping the previous drain.
"""
from __future__ import annotations

import asyncio
import logging

from .api import speakerswitch_pb2 as pb
from .metrics import Metrics
from .rooms import Batch, RoomRegistry

log = logging.getLogger("speakerswitch.group_commit")


class GroupCommit:
    def __init__(self, registry: RoomRegistry, metrics: Metrics | None = None) -> None:
        self.registry = registry
        self.metrics = metrics
        self._pending: list[tuple[Batch, asyncio.Future]] = []
        self._scheduled = False

    async def process(self, batch: Batch) -> pb.StreamResponse:
        """``RoomRegistry.process`` for one batch, stepped together with the others."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._pending.append((batch, done))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._drain)
        return await done

    def _drain(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        if self.metrics is not None:
            self.metrics.drains.inc()
        try:
            responses = self.registry.process_many([batch for batch, _ in pending])
        except Exception:  # a bug: find the batch it belongs to, fail only that one
            log.exception("internal error stepping %d batches together; retrying one by one",
                          len(pending))
            for batch, done in pending:
                try:
                    _resolve(done, self.registry.process_many([batch])[0])
                except Exception as e:
                    if not done.done():
                        done.set_exception(e)
            return
        for (_, done), response in zip(pending, responses):
            _resolve(done, response)


def _resolve(done: asyncio.Future, response: pb.StreamResponse) -> None:
    if not done.done():  # the stream may have been cancelled while it waited
        done.set_result(response)
