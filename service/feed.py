"""A room's event feed for subscribers (gRPC ``Watch``, the web viewer's event stream).

One interface, two sources: ``LocalFeed`` reads the rooms of this process's registry;
``service.fanout.RedisFeed`` reads the Redis stream every replica publishes to, so that a
subscriber may connect to any replica. Either way a subscriber gets a snapshot and then
every later event in sequence order, or, resuming after a disconnect, the events it missed
and then the live ones, with no gap and no duplicate.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol

import grpc

from .api import speakerswitch_pb2 as pb
from .rooms import RoomRegistry


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


class _WatchQueue:
    """A bounded queue of one subscriber, fed synchronously by the registry."""

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[pb.RoomEvent | None] = asyncio.Queue(maxsize=size)
        self.overflowed = False

    def __call__(self, event: pb.RoomEvent) -> bool:
        try:
            self.queue.put_nowait(event)
            return True
        except asyncio.QueueFull:
            self.overflowed = True
            return False

    def close(self) -> None:
        try:
            self.queue.put_nowait(None)
        except asyncio.QueueFull:
            self.overflowed = True


class LocalFeed:
    """The rooms of this process's registry."""

    def __init__(self, registry: RoomRegistry, queue_events: int) -> None:
        self.registry = registry
        self.queue_events = queue_events

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
                     wait_for_room: bool = False) -> AsyncIterator[pb.RoomEvent]:
        registry = self.registry
        q = _WatchQueue(self.queue_events)
        first = self._subscribe(tenant, room_id, q, after_sequence)
        if first is None:
            if not wait_for_room:
                raise FeedError(grpc.StatusCode.NOT_FOUND, f"room_id: no room {room_id!r}")
            created = asyncio.Event()
            registry.when_created(room_id, created.set, tenant)
            try:
                await created.wait()
            finally:  # a subscriber that gives up waiting leaves nothing behind
                registry.cancel_when_created(room_id, created.set, tenant)
            first = self._subscribe(tenant, room_id, q, after_sequence) or []
        try:
            for event in first:
                yield event
            while True:
                event = await q.queue.get()
                if event is None:
                    return  # the room was dropped
                yield event
                if q.overflowed and q.queue.empty():
                    raise FeedError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                    f"watch of room {room_id!r} fell more than "
                                    f"{self.queue_events} events behind; resubscribe "
                                    f"with after_sequence={event.sequence}")
        finally:
            registry.unwatch(room_id, q, tenant)
