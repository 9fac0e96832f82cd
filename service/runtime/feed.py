"""A room's event feed for subscribers (gRPC ``Watch``, the web viewer's event stream).

One interface, two sources: ``LocalFeed`` reads the rooms of this process's registry;
``service.runtime.fanout.RedisFeed`` reads the Redis stream every replica publishes to, so that a
subscriber may connect to any replica. Either way a subscriber gets a snapshot and then
every later event in sequence order, or, resuming after a disconnect, the events it missed
and then the live ones, with no gap and no duplicate.
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import grpc

from ..api import speakerswitch_pb2 as pb
from .auth import clip
from .metrics import LogLimiter, Metrics
from .rooms import RoomRegistry

log = logging.getLogger("speakerswitch.feed")


class FeedError(Exception):
    """A subscription ends or cannot start: the gRPC status and its message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class RoomFeed(Protocol):
    def events(self, tenant: str, room_id: str, *, after_sequence: int | None = None,
               wait_for_room: bool = False) -> AsyncIterator[pb.RoomEvent]:
        """``after_sequence`` None: a snapshot event first (sequence 0, ``snapshot`` set,
        whose ``sequence`` is the room's last), then every later event. Otherwise every event
        after ``after_sequence``, retained ones first. Raises FeedError: NOT_FOUND (no such
        room and not ``wait_for_room``), OUT_OF_RANGE (the missed events are no longer
        retained), RESOURCE_EXHAUSTED (the subscriber fell too far behind)."""
        ...


def snapshot_event(snap: pb.RoomState) -> pb.RoomEvent:
    return pb.RoomEvent(room_id=snap.room_id, sequence=0, timestamp_ms=snap.timestamp_ms,
                        snapshot=snap)


QUEUED_EVENT_OVERHEAD_BYTES = 64
"""What a queued event costs one watcher beyond its encoded size (its entry in the queue;
the event object itself is shared by all the room's watchers): a conservative count."""


class WatchSlots:
    """Subscriptions open at once (gRPC Watch, the viewer's event streams), per tenant:
    one more than ``limit`` is refused with RESOURCE_EXHAUSTED."""

    def __init__(self, limit: int, metrics: Metrics | None = None) -> None:
        self.limit = limit
        self.metrics = metrics
        self.open: dict[str, int] = {}

    def take(self, tenant: str) -> None:
        """Count one more subscription of ``tenant`` (FeedError if it has ``limit``);
        ``release`` it when it ends."""
        n = self.open.get(tenant, 0)
        if n >= self.limit:
            if self.metrics is not None:
                self.metrics.limit_rejections.labels("max_watchers_per_tenant").inc()
            raise FeedError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                            f"limit max_watchers_per_tenant={self.limit} reached: close a "
                            "Watch or event stream of this tenant first")
        self.open[tenant] = n + 1

    def release(self, tenant: str) -> None:
        left = self.open[tenant] - 1
        if left:
            self.open[tenant] = left
        else:
            del self.open[tenant]


class _WatchQueue:
    """One subscriber's queue, fed synchronously by the registry; what it holds counts
    against its tenant's byte budget (LocalFeed)."""

    def __init__(self, feed: LocalFeed, tenant: str, room_id: str,
                 on_drop: Callable[[FeedError], None] | None) -> None:
        self.feed, self.tenant, self.room_id, self.on_drop = feed, tenant, room_id, on_drop
        self.events: deque[tuple[pb.RoomEvent, int]] = deque()
        self.bytes = 0
        self.ready = asyncio.Event()
        self.dropped: FeedError | None = None
        self.closed = False
        self.last_sequence: int | None = None
        """The sequence of the last event handed out (a snapshot's: the last it includes)."""

    def __call__(self, event: pb.RoomEvent) -> bool:
        return self.dropped is None and self.feed._offer(self, event)

    def close(self) -> None:
        """The room was dropped: what is queued is still handed out, then the end."""
        self.closed = True
        self.ready.set()

    async def get(self) -> pb.RoomEvent | None:
        """The next event; None once the room is gone; FeedError once dropped."""
        while not self.events:
            if self.dropped is not None:
                raise self.dropped
            if self.closed:
                return None
            self.ready.clear()
            await self.ready.wait()
        event, size = self.events.popleft()
        self.bytes -= size
        self.feed._release(self.tenant, size)
        return event


def _queued(q: _WatchQueue) -> int:
    return q.bytes


class LocalFeed:
    """The rooms of this process's registry. A subscriber that falls behind is dropped
    (RESOURCE_EXHAUSTED) when its queue holds ``queue_events`` events, or when an event
    would take its tenant's queued bytes over ``tenant_bytes`` and it is the tenant's
    slowest subscriber (the most bytes queued): memory stays bounded per tenant however
    many of its subscribers stop reading, and one tenant's never fill another's."""

    def __init__(self, registry: RoomRegistry, queue_events: int,
                 tenant_bytes: int = 64 * 1024 * 1024) -> None:
        self.registry = registry
        self.queue_events = queue_events
        self.tenant_bytes = tenant_bytes
        self._queued: dict[str, int] = {}
        self._queues: dict[str, set[_WatchQueue]] = {}
        self._sized: tuple[pb.RoomEvent | None, int] = (None, 0)
        self._log = LogLimiter()

    def queued_bytes(self, tenant: str) -> int:
        """Bytes of events queued for the tenant's subscribers (as the budget counts them)."""
        return self._queued.get(tenant, 0)

    def _size(self, event: pb.RoomEvent) -> int:
        last, size = self._sized  # the room's watchers are offered the same event in a row
        if event is not last:
            size = event.ByteSize() + QUEUED_EVENT_OVERHEAD_BYTES
            self._sized = (event, size)
        return size

    def _offer(self, q: _WatchQueue, event: pb.RoomEvent) -> bool:
        if len(q.events) >= self.queue_events:
            self._drop(q, "watch_queue_events",
                       f"fell more than {self.queue_events} events behind")
            return False
        size = self._size(event)
        tenant = q.tenant
        while self._queued.get(tenant, 0) + size > self.tenant_bytes:
            slowest = max(self._queues[tenant], key=_queued)
            if not slowest.bytes:  # nothing queued to free: the event alone is over
                slowest = q
            self._drop(slowest, "watch_bytes_per_tenant",
                       f"was the slowest when the tenant's watchers held "
                       f"{self.tenant_bytes} bytes of events")
            if slowest is q:
                return False
        q.events.append((event, size))
        q.bytes += size
        self._queued[tenant] = self._queued.get(tenant, 0) + size
        q.ready.set()
        return True

    def _release(self, tenant: str, size: int) -> None:
        if size:
            left = self._queued[tenant] - size
            if left:
                self._queued[tenant] = left
            else:
                del self._queued[tenant]

    def _forget(self, q: _WatchQueue) -> None:
        self._release(q.tenant, q.bytes)
        q.events.clear()
        q.bytes = 0
        queues = self._queues.get(q.tenant)
        if queues is not None:
            queues.discard(q)
            if not queues:
                del self._queues[q.tenant]

    def _drop(self, q: _WatchQueue, limit: str, why: str) -> None:
        """Drop a subscriber that fell behind: its queue is freed at once, its consumer gets
        FeedError(RESOURCE_EXHAUSTED) and ``on_drop`` is told (a consumer stuck writing to
        a client that does not read would not ask for the next event)."""
        resume = ("without after_sequence" if q.last_sequence is None
                  else f"with after_sequence={q.last_sequence}")
        q.dropped = FeedError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"watch of room {clip(q.room_id)} dropped: it {why} ({limit}); "
                              f"resubscribe {resume}")
        self._forget(q)
        q.ready.set()
        metrics = self.registry.metrics
        if metrics is not None:
            metrics.limit_rejections.labels(limit).inc()
        self._log.warning(log, "dropped", "dropped a watcher of room %s of tenant %s: it %s "
                          "(%s)", clip(q.room_id), clip(q.tenant), why, limit)
        if q.on_drop is not None:
            q.on_drop(q.dropped)

    def _subscribe(self, tenant: str, room_id: str, q: _WatchQueue,
                   after_sequence: int | None) -> list[pb.RoomEvent] | None:
        if after_sequence is None:
            snap = self.registry.watch(room_id, q, tenant)
            return None if snap is None else [snapshot_event(snap)]
        try:
            return self.registry.resume(room_id, q, after_sequence, tenant)
        except LookupError as e:
            raise FeedError(grpc.StatusCode.OUT_OF_RANGE,
                            f"after_sequence: {e}; subscribe without it for a snapshot") from None

    async def events(self, tenant: str, room_id: str, *, after_sequence: int | None = None,
                     wait_for_room: bool = False,
                     on_drop: Callable[[FeedError], None] | None = None
                     ) -> AsyncIterator[pb.RoomEvent]:
        """RoomFeed.events; ``on_drop`` is called (synchronously, from the registry's
        processing: schedule, do not block) when the subscriber is dropped for falling
        behind. Without it, the next read raises the FeedError instead."""
        registry = self.registry
        q = _WatchQueue(self, tenant, room_id, on_drop)
        self._queues.setdefault(tenant, set()).add(q)
        try:
            first = self._subscribe(tenant, room_id, q, after_sequence)
            if first is None:
                if not wait_for_room:
                    raise FeedError(grpc.StatusCode.NOT_FOUND,
                                    f"room_id: no room {clip(room_id)}")
                created = asyncio.Event()
                registry.when_created(room_id, created.set, tenant)
                try:
                    await created.wait()
                finally:  # a subscriber that gives up waiting leaves nothing behind
                    registry.cancel_when_created(room_id, created.set, tenant)
                first = self._subscribe(tenant, room_id, q, after_sequence) or []
            for event in first:
                q.last_sequence = event.sequence or event.snapshot.sequence
                yield event
            while True:
                event = await q.get()
                if event is None:
                    return  # the room was dropped
                q.last_sequence = event.sequence
                yield event
        finally:
            registry.unwatch(room_id, q, tenant)
            self._forget(q)


def subscribe(feed: RoomFeed, tenant: str, room_id: str, *, after_sequence: int | None = None,
              wait_for_room: bool = False, on_drop: Callable[[FeedError], None] | None = None
              ) -> AsyncIterator[pb.RoomEvent]:
    """``feed.events(...)``; a LocalFeed also learns whom to tell when it drops this
    subscriber (a Redis feed has no queue of its own to drop it from)."""
    if isinstance(feed, LocalFeed):
        return feed.events(tenant, room_id, after_sequence=after_sequence,
                           wait_for_room=wait_for_room, on_drop=on_drop)
    return feed.events(tenant, room_id, after_sequence=after_sequence,
                       wait_for_room=wait_for_room)
