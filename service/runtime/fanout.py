"""Redis behind several replicas: decision fan-out and failover state.

Each room is served by one replica at a time (the proxy routes by room). After every batch,
the owner writes, in one atomic script call per batch, each changed room's new events
to the room's Redis stream (entry id ``0-<sequence>``, so a reader resumes from a sequence
number with XREAD; length capped) and the room's ``RoomState`` (its decisions: speaker,
camera/mute/pin state, forwarding set, roster, last sequence) to the room's state key. The
batch is written before its response is sent, so whatever a media server
has seen is in Redis.

A ``Watch`` on any replica reads that stream (``RedisFeed``). A replica that receives a
room it does not hold in memory first restores it from the state key, so after a failover
the sequence goes on with no gap or duplicate and the shown speaker stays until the audio
says otherwise. With no Redis configured none of this runs.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..api import speakerswitch_pb2 as pb
from .feed import FeedError, snapshot_event
from .metrics import Metrics
from .rooms import RoomRegistry

log = logging.getLogger("speakerswitch.fanout")

EVENT_FIELD = b"e"
READ_BLOCK_MS = 1000
"""XREAD blocks at most this long, so a cancelled subscriber frees its connection soon."""
READ_COUNT = 512
PUBLISH_SCRIPT = """
-- One batch, atomically (a script runs alone in Redis): for each room, its new events
-- appended to its stream under ids 0-<sequence>, the stream capped, and its state replaced.
-- KEYS: stream and state key of each room. ARGV: maxlen, ttl_ms, then per room the number
-- of events, the state, and the (sequence, event) pairs.
local maxlen, ttl = ARGV[1], tonumber(ARGV[2])
local a = 3
for r = 1, #KEYS, 2 do
  local n = tonumber(ARGV[a])
  redis.call('SET', KEYS[r + 1], ARGV[a + 1], 'PX', ttl)
  a = a + 2
  for _ = 1, n do
    redis.call('XADD', KEYS[r], 'MAXLEN', '~', maxlen, '0-' .. ARGV[a], 'e', ARGV[a + 1])
    a = a + 2
  end
  redis.call('PEXPIRE', KEYS[r], ttl)
end
return #KEYS / 2
"""
WAIT_FOR_ROOM_POLL_S = 0.1
REVALIDATE_AFTER_S = 2.0
"""A room this replica has not been sent for this long (wall time) may have been served by
another replica meanwhile (a failover, then the proxy moving it back): its sequence is
checked against Redis before the next tick, and a newer state there replaces ours."""


def _entry_id(sequence: int) -> str:  # the script writes the same form
    return f"0-{sequence}"


def _sequence(entry_id: bytes) -> int:
    return int(entry_id.split(b"-")[1])


class RedisFanout:
    """The Redis side of one replica: publish, restore, and the feed of any room."""

    def __init__(self, url: str, prefix: str, stream_events: int, ttl_s: float,
                 metrics: Metrics | None = None) -> None:
        self.redis = aioredis.from_url(url)
        self.prefix = prefix
        self.stream_events = stream_events
        self.ttl_ms = int(ttl_s * 1000)
        self.metrics = metrics
        self._publish = self.redis.register_script(PUBLISH_SCRIPT)

    async def connect(self) -> None:
        await self.redis.ping()

    async def close(self) -> None:
        await self.redis.aclose()

    # ------------------------------------------------------------------ keys
    def _key(self, tenant: str, room_id: str, kind: str) -> str:
        # the tenant's length keeps ("a:b", "c") and ("a", "b:c") apart
        return f"{self.prefix}:{len(tenant)}:{tenant}:{room_id}:{kind}"

    def stream_key(self, tenant: str, room_id: str) -> str:
        return self._key(tenant, room_id, "events")

    def state_key(self, tenant: str, room_id: str) -> str:
        return self._key(tenant, room_id, "state")

    def _error(self, op: str, e: Exception) -> None:
        log.error("redis %s failed: %s", op, e)
        if self.metrics is not None:
            self.metrics.redis_errors.labels(op).inc()

    # ------------------------------------------------------------------ owner side
    async def publish(self, registry: RoomRegistry, tenant: str,
                      response: pb.StreamResponse) -> None:
        """Write the batch's events and the new state of each room they came from."""
        if not response.events:
            return
        by_room: dict[str, list[pb.RoomEvent]] = {}
        for e in response.events:
            by_room.setdefault(e.room_id, []).append(e)
        keys: list[str] = []
        args: list[bytes | int | str] = [self.stream_events, self.ttl_ms]
        for room_id, events in by_room.items():
            state = registry.room_state(room_id, tenant)
            if state is None:  # a leave emptied and dropped it in this very batch
                continue
            keys += (self.stream_key(tenant, room_id), self.state_key(tenant, room_id))
            args += (len(events), state.SerializeToString())
            for e in events:
                args += (e.sequence, e.SerializeToString())
        if not keys:
            return
        try:
            await self._publish(keys=keys, args=args)
        except RedisError as e:  # the media server still gets its decisions
            self._error("publish", e)

    async def restore_missing(self, registry: RoomRegistry, tenant: str,
                              request: pb.StreamRequest, now_s: float) -> None:
        """Before a batch: restore from Redis each of its rooms this replica does not hold,
        and replace any it holds that another replica has moved further since."""
        rooms = registry.rooms
        wanted: dict[str, int] = {}  # room id -> our sequence (-1: not here)
        for tick in request.ticks:
            room = rooms.get((tenant, tick.room_id))
            if room is None:
                wanted[tick.room_id] = -1
            elif now_s - room.last_seen_s > REVALIDATE_AFTER_S:
                wanted[tick.room_id] = room.sequence
        ids = [r for r in wanted if r]  # an empty id is refused by validation, not looked up
        if not ids:  # MGET of nothing is a Redis error, not "nothing to restore"
            return
        try:
            blobs = await self.redis.mget([self.state_key(tenant, r) for r in ids])
        except RedisError as e:
            self._error("restore", e)
            return
        for room_id, blob in zip(ids, blobs):
            if blob is None:
                continue
            state = pb.RoomState.FromString(blob)
            ours = wanted[room_id]
            if ours >= 0:
                if state.sequence <= ours:
                    continue
                log.info("room %r of tenant %r moved on elsewhere (sequence %d > %d): "
                         "taking the newer state", room_id, tenant, state.sequence, ours)
                registry.drop_room((tenant, room_id), reason="superseded")
            try:
                registry.restore(state, tenant)
            except Exception:  # a state we cannot read must not stop the batch
                log.exception("cannot restore room %r of tenant %r", room_id, tenant)
                self._error("restore", RedisError("bad state"))
                continue
            if self.metrics is not None:
                self.metrics.rooms_restored.inc()
            log.info("room %r of tenant %r restored from redis at sequence %d",
                     room_id, tenant, state.sequence)

    # ------------------------------------------------------------------ any replica
    async def state(self, tenant: str, room_id: str) -> pb.RoomState | None:
        blob = await self.redis.get(self.state_key(tenant, room_id))
        return None if blob is None else pb.RoomState.FromString(blob)

    async def events(self, tenant: str, room_id: str, *, after_sequence: int | None = None,
                     wait_for_room: bool = False) -> AsyncIterator[pb.RoomEvent]:
        """The RoomFeed contract (service.runtime.feed), read from the room's Redis stream."""
        stream = self.stream_key(tenant, room_id)
        try:
            state = await self.state(tenant, room_id)
            while state is None and wait_for_room:
                await asyncio.sleep(WAIT_FOR_ROOM_POLL_S)
                state = await self.state(tenant, room_id)
            if state is None:
                raise FeedError(grpc.StatusCode.NOT_FOUND, f"room_id: no room {room_id!r}")
            if after_sequence is None:
                last = state.sequence
                yield snapshot_event(state)
            else:
                if after_sequence > state.sequence:
                    raise FeedError(grpc.StatusCode.OUT_OF_RANGE,
                                    f"after_sequence: {after_sequence} is past the room's last "
                                    f"sequence {state.sequence}")
                oldest = await self.redis.xrange(stream, count=1)
                first = _sequence(oldest[0][0]) if oldest else state.sequence + 1
                if after_sequence + 1 < first:
                    raise FeedError(grpc.StatusCode.OUT_OF_RANGE,
                                    f"after_sequence: events after sequence {after_sequence} "
                                    f"are no longer retained (oldest kept: {first}); "
                                    "subscribe without it for a snapshot")
                last = after_sequence
            while True:
                got = await self.redis.xread({stream: _entry_id(last)}, count=READ_COUNT,
                                             block=READ_BLOCK_MS)
                for _key, entries in got:
                    for entry_id, fields in entries:
                        seq = _sequence(entry_id)
                        if seq != last + 1:
                            raise FeedError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                            f"watch of room {room_id!r} fell behind the "
                                            f"{self.stream_events} events kept; resubscribe")
                        last = seq
                        yield pb.RoomEvent.FromString(fields[EVENT_FIELD])
        except RedisError as e:
            self._error("watch", e)
            raise FeedError(grpc.StatusCode.UNAVAILABLE,
                            f"event store unavailable: {e}; retry") from None
