"""Whether a tick may be applied, decided before anything changes: ids, config, events,
audio, roster, media time, and the limits on rooms and participants (``Capacity``). A refused
tick raises ``TickError`` naming the field; one that passes becomes a ``Plan`` (a media
server's steady tick: a ``Steady`` tuple, checked in a few field reads) for the registry to
apply."""
from __future__ import annotations

from dataclasses import dataclass

import grpc

from dsp.pcm import SAMPLE_RATES_HZ, frame_ms
from dsp.rfc6464 import SILENCE_LEVEL
from dsp.tuning import ALGORITHMS, PROFILES, Tuning

from ...api import speakerswitch_pb2 as pb
from ..auth import clip
from ..config import ServiceConfig
from ..memory import default_max_participants
from ..metrics import Metrics
from .model import (DEFAULT_DURATION_MS, MAX_ID_BYTES, MAX_TIMESTAMP_MS, TICK_DURATIONS_MS, Room,
                    RoomKey, TickError)

ET = pb.ParticipantEventType
VOICE = {pb.VOICE_ACTIVITY_UNSPECIFIED: -1, pb.VOICE_ACTIVITY_ABSENT: 0,
         pb.VOICE_ACTIVITY_PRESENT: 1}
OVERRIDE_RANGES = {"hold_ms": (0, 60000), "min_speech_ms": (0, 60000),
                   "interrupt_ms": (0, 60000), "outlast_ms": (0, 60000),
                   "switch_margin_db": (0.0, 60.0),
                   "active_speakers": (1, 64), "active_speakers_interval_ms": (0, 60000),
                   "forwarding_size": (1, 64), "forwarding_min_ms": (0, 600000),
                   "speaking_interval_ms": (0, 60000), "no_audio_timeout_ms": (20, 600000)}
"""RoomConfig overrides (each a Tuning field of the same name) and their allowed ranges."""
TUNING_OVERRIDES = tuple(OVERRIDE_RANGES)


@dataclass
class Plan:
    """A validated tick, ready to apply."""
    index: int
    tick: pb.RoomTick
    room: Room | None
    duration_ms: int
    level_ids: list[str]
    level_dbov: list[float]
    level_voice: list[int]
    pcm: dict[tuple[int, int], tuple[list[str], list[bytes]]]
    roster: tuple[str, ...] | None
    roster_levels: bytes


Steady = tuple  # (room, timestamp_ms, duration_ms, RFC 6464 bytes in roster order)
"""A tick in a media server's steady state, validated: a plain tuple, as a batch holds
thousands of them."""


def steady(tick: pb.RoomTick, room: Room | None) -> Steady | None:
    """The steady state of a media server (a known room, one RFC 6464 byte per participant
    in the sticky roster's order, nothing else), checked in a few field reads; anything
    else, valid or not, takes the full validation (None)."""
    if room is None or not room.roster or tick.events or tick.audio or tick.HasField("config"):
        return None
    lv = tick.levels
    levels = lv.levels
    if len(levels) != len(room.roster) or lv.roster:
        return None
    t, last = tick.timestamp_ms, room.last_audio_t_ms
    if (last is not None and t <= last) or not 0 <= t <= MAX_TIMESTAMP_MS:
        return None
    d = tick.duration_ms
    if d and d not in TICK_DURATIONS_MS:
        return None
    return room, t, d or DEFAULT_DURATION_MS, levels


def tuning_for(config: pb.RoomConfig, default_profile: str) -> Tuning:
    base = PROFILES[config.profile or default_profile]
    changes = {k: getattr(config, k) for k in TUNING_OVERRIDES if config.HasField(k)}
    if config.algorithm:
        changes["algorithm"] = ALGORITHMS.index(config.algorithm)
    return base.replace(**changes) if changes else base


def check_id(value: str, path: str) -> None:
    """A room or participant id is 1..MAX_ID_BYTES bytes (UTF-8), wherever it comes from:
    Stream, GetRoom, Watch, the HTTP API. Raises TickError (INVALID_ARGUMENT)."""
    if not value:
        raise TickError(grpc.StatusCode.INVALID_ARGUMENT, path, "must not be empty")
    if len(value) > MAX_ID_BYTES or len(value.encode()) > MAX_ID_BYTES:
        raise TickError(grpc.StatusCode.INVALID_ARGUMENT, path,
                        f"longer than {MAX_ID_BYTES} bytes")


def check_config(c: pb.RoomConfig, path: str) -> None:
    if c.profile and c.profile not in PROFILES:
        raise TickError(grpc.StatusCode.INVALID_ARGUMENT, f"{path}.profile",
                        f"unknown profile {clip(c.profile)} (known: {', '.join(PROFILES)})")
    if c.algorithm and c.algorithm not in ALGORITHMS:
        raise TickError(grpc.StatusCode.INVALID_ARGUMENT, f"{path}.algorithm",
                        f"unknown algorithm {clip(c.algorithm)} (known: {', '.join(ALGORITHMS)})")
    for k, (lo, hi) in OVERRIDE_RANGES.items():
        if c.HasField(k):
            v = getattr(c, k)
            if not lo <= v <= hi:  # also refuses NaN
                raise TickError(grpc.StatusCode.INVALID_ARGUMENT, f"{path}.{k}",
                                f"{v} is outside {lo}..{hi}")


class Membership:
    """Who a tick leaves in its room, without copying the room's member set."""

    def __init__(self, known: dict[str, int]) -> None:
        self.known = known
        self.joins: set[str] = set()
        self.leaves: set[str] = set()

    def add(self, pid: str) -> None:
        if pid in self.leaves:
            self.leaves.discard(pid)
        elif pid not in self.known:
            self.joins.add(pid)

    def remove(self, pid: str) -> None:
        if pid in self.joins:
            self.joins.discard(pid)
        elif pid in self.known:
            self.leaves.add(pid)

    @property
    def count(self) -> int:
        return len(self.known) - len(self.leaves) + len(self.joins)


class Growth:
    """Rooms and participants that the ticks of a wave validated so far will add: limits
    hold for the wave as a whole, before any of it is applied."""

    def __init__(self) -> None:
        self.rooms = 0
        self.rooms_of: dict[str, int] = {}
        self.participants = 0
        self.participants_of: dict[str, int] = {}

    def add(self, tenant: str, new_room: bool, joins: int) -> None:
        if new_room:
            self.rooms += 1
            self.rooms_of[tenant] = self.rooms_of.get(tenant, 0) + 1
        if joins:  # joins less leaves: may be negative
            self.participants += joins
            self.participants_of[tenant] = self.participants_of.get(tenant, 0) + joins


class Capacity:
    """The rooms and participants the registry holds, counted against their limits (the
    registry reports each room it adds or drops and each participant who joins or leaves)."""

    def __init__(self, config: ServiceConfig, metrics: Metrics | None = None) -> None:
        self.config, self.metrics = config, metrics
        self.rooms_per_tenant: dict[str, int] = {}
        self.participants = 0
        self.participants_of: dict[str, int] = {}
        self.max_participants = config.max_participants or default_max_participants()
        self.max_participants_per_tenant = (config.max_participants_per_tenant
                                            or self.max_participants)

    def check_participants(self, path: str, tenant: str, joins: int, growth: Growth
                           ) -> None:
        """Memory is bounded by participants: server-wide and per tenant, so that one tenant
        cannot take what the others need. A join over either is refused for its tick
        (``joins``: the tick's joins less its leaves; ``growth``: the same of the wave's
        earlier ticks, which are applied before it)."""
        total = self.participants + growth.participants + joins
        if total > self.max_participants:
            self.limit_hit("max_participants")
            raise TickError(grpc.StatusCode.RESOURCE_EXHAUSTED, path,
                            f"{joins} more participants would exceed the server's "
                            f"max_participants={self.max_participants}")
        of_tenant = (self.participants_of.get(tenant, 0) + growth.participants_of.get(tenant, 0)
                     + joins)
        if of_tenant > self.max_participants_per_tenant:
            self.limit_hit("max_participants_per_tenant")
            raise TickError(grpc.StatusCode.RESOURCE_EXHAUSTED, path,
                            f"{joins} more participants would exceed the tenant's "
                            f"max_participants_per_tenant={self.max_participants_per_tenant}")

    def limit_hit(self, limit: str) -> None:
        if self.metrics is not None:
            self.metrics.limit_rejections.labels(limit).inc()

    def room_added(self, tenant: str) -> None:
        self.rooms_per_tenant[tenant] = self.rooms_per_tenant.get(tenant, 0) + 1

    def room_dropped(self, tenant: str, participants: int) -> None:
        self.rooms_per_tenant[tenant] -= 1
        if not self.rooms_per_tenant[tenant]:
            del self.rooms_per_tenant[tenant]
        self.participants -= participants
        left = self.participants_of.get(tenant, 0) - participants
        if left > 0:
            self.participants_of[tenant] = left
        else:
            self.participants_of.pop(tenant, None)

    def joined(self, tenant: str) -> None:
        self.participants += 1
        self.participants_of[tenant] = self.participants_of.get(tenant, 0) + 1
        if self.metrics is not None:
            self.metrics.participants.set(self.participants)

    def left(self, tenant: str) -> None:
        self.participants -= 1
        self.participants_of[tenant] -= 1
        if self.metrics is not None:
            self.metrics.participants.set(self.participants)


def validate(i: int, tick: pb.RoomTick, tenant: str, growth: Growth | None,
             rooms: dict[RoomKey, Room], capacity: Capacity) -> Plan:
    """Check a tick against its room without changing anything (``growth``: the rooms
    and participants that earlier ticks of the same wave will add; this tick's are
    added to it when it passes; ``rooms``: the registry's; ``capacity``: its counts and
    limits)."""
    growth = growth if growth is not None else Growth()
    new_rooms, new_rooms_of_tenant = growth.rooms, growth.rooms_of.get(tenant, 0)
    path = f"ticks[{i}]"
    check_id(tick.room_id, f"{path}.room_id")
    room = rooms.get((tenant, tick.room_id))
    if room is None:
        if len(rooms) + new_rooms >= capacity.config.max_rooms:
            capacity.limit_hit("max_rooms")
            raise TickError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{path}.room_id",
                            f"limit max_rooms={capacity.config.max_rooms} reached")
        if (capacity.rooms_per_tenant.get(tenant, 0) + new_rooms_of_tenant
                >= capacity.config.max_rooms_per_tenant):
            capacity.limit_hit("max_rooms_per_tenant")
            raise TickError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{path}.room_id",
                            f"limit max_rooms_per_tenant="
                            f"{capacity.config.max_rooms_per_tenant} reached")
    if not 0 <= tick.timestamp_ms <= MAX_TIMESTAMP_MS:
        raise TickError(grpc.StatusCode.INVALID_ARGUMENT, f"{path}.timestamp_ms",
                        f"{tick.timestamp_ms} is outside 0..2^53")
    if tick.HasField("config"):
        check_config(tick.config, f"{path}.config")
    if tick.duration_ms and tick.duration_ms not in TICK_DURATIONS_MS:
        raise TickError(grpc.StatusCode.INVALID_ARGUMENT, f"{path}.duration_ms",
                        f"{tick.duration_ms} is not one of {TICK_DURATIONS_MS}")
    if len(tick.events) > capacity.config.max_events_per_tick:
        capacity.limit_hit("max_events_per_tick")
        raise TickError(grpc.StatusCode.INVALID_ARGUMENT, f"{path}.events",
                        f"{len(tick.events)} events exceed max_events_per_tick="
                        f"{capacity.config.max_events_per_tick}")
    members = Membership(room.slots if room else {})
    for j, e in enumerate(tick.events):
        if e.participant_id or e.type != ET.PARTICIPANT_EVENT_TYPE_UNPIN:
            check_id(e.participant_id, f"{path}.events[{j}].participant_id")
        if e.type not in ET.values() or e.type == ET.PARTICIPANT_EVENT_TYPE_UNSPECIFIED:
            raise TickError(grpc.StatusCode.INVALID_ARGUMENT, f"{path}.events[{j}].type",
                            f"unknown or unspecified event type {e.type}")
        if e.type == ET.PARTICIPANT_EVENT_TYPE_LEAVE:
            members.remove(e.participant_id)
        elif e.type != ET.PARTICIPANT_EVENT_TYPE_UNPIN:
            members.add(e.participant_id)

    in_tick: set[str] = set()
    level_ids, level_dbov, level_voice = [], [], []
    pcm: dict[tuple[int, int], tuple[list[str], list[bytes]]] = {}
    pcm_ms = set()
    for j, a in enumerate(tick.audio):
        ap = f"{path}.audio[{j}]"
        pid = a.participant_id
        check_id(pid, f"{ap}.participant_id")
        if pid in in_tick:
            raise TickError(grpc.StatusCode.INVALID_ARGUMENT, f"{ap}.participant_id",
                            f"participant {clip(pid)} appears twice in the tick")
        in_tick.add(pid)
        kind = a.WhichOneof("payload")
        if kind == "level":
            if a.level.level > SILENCE_LEVEL:
                raise TickError(grpc.StatusCode.INVALID_ARGUMENT, f"{ap}.level.level",
                                f"{a.level.level} is outside 0..127")
            if a.level.voice not in VOICE:
                raise TickError(grpc.StatusCode.INVALID_ARGUMENT, f"{ap}.level.voice",
                                f"unknown voice activity {a.level.voice}")
            level_ids.append(pid)
            level_dbov.append(-float(a.level.level))
            level_voice.append(VOICE[a.level.voice])
        elif kind == "pcm":
            rate = a.pcm.sample_rate_hz
            if rate not in SAMPLE_RATES_HZ:
                raise TickError(grpc.StatusCode.INVALID_ARGUMENT,
                                f"{ap}.pcm.sample_rate_hz",
                                f"{rate} Hz is not one of {SAMPLE_RATES_HZ}")
            n = len(a.pcm.samples)
            ms = frame_ms(n, rate)
            if ms is None:
                raise TickError(grpc.StatusCode.INVALID_ARGUMENT, f"{ap}.pcm.samples",
                                f"{n} bytes at {rate} Hz is not a 10, 20 or 30 ms frame "
                                "of 16-bit mono samples")
            pcm_ms.add(ms)
            g = pcm.setdefault((rate, n), ([], []))
            g[0].append(pid)
            g[1].append(a.pcm.samples)
        else:
            raise TickError(grpc.StatusCode.INVALID_ARGUMENT, f"{ap}.payload",
                            "neither level nor pcm is set")
        members.add(pid)

    duration = tick.duration_ms
    if len(pcm_ms) > 1:
        raise TickError(grpc.StatusCode.INVALID_ARGUMENT, f"{path}.audio",
                        f"PCM frames of different lengths {sorted(pcm_ms)} ms in one tick")
    if pcm_ms:
        (ms,) = pcm_ms
        if duration and duration != ms:
            raise TickError(grpc.StatusCode.INVALID_ARGUMENT, f"{path}.duration_ms",
                            f"{duration} ms but the PCM frames are {ms} ms")
        duration = ms
    duration = duration or DEFAULT_DURATION_MS

    roster = None
    roster_levels = b""
    if tick.HasField("levels"):
        lp = f"{path}.levels"
        if tick.levels.roster:
            roster = tuple(tick.levels.roster)
            if len(set(roster)) != len(roster):
                raise TickError(grpc.StatusCode.INVALID_ARGUMENT, f"{lp}.roster",
                                "a participant appears twice")
            for j, pid in enumerate(roster):
                check_id(pid, f"{lp}.roster[{j}]")
        current = roster if roster is not None else (room.roster if room else ())
        if roster is None and members.leaves:  # the sticky roster, less who left now
            current = tuple(p for p in current if p not in members.leaves)
        if len(tick.levels.levels) != len(current):
            raise TickError(grpc.StatusCode.INVALID_ARGUMENT, f"{lp}.levels",
                            f"{len(tick.levels.levels)} bytes for a roster of "
                            f"{len(current)} participants")
        both = in_tick.intersection(current) if in_tick else ()
        if both:
            raise TickError(grpc.StatusCode.INVALID_ARGUMENT, f"{lp}.roster",
                            f"participant {clip(sorted(both)[0])} also has audio in the tick")
        if roster is not None:
            for pid in roster:
                members.add(pid)
        roster_levels = tick.levels.levels

    if members.count > capacity.config.max_participants_per_room:
        capacity.limit_hit("max_participants_per_room")
        raise TickError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{path}",
                        f"room would have {members.count} participants, over "
                        f"max_participants_per_room={capacity.config.max_participants_per_room}")
    joins = len(members.joins)
    if joins:
        capacity.check_participants(path, tenant, joins - len(members.leaves), growth)
    has_audio = bool(level_ids or pcm or roster_levels)
    if room is not None:
        last = room.last_audio_t_ms if has_audio else room.last_t_ms
        if last is not None and (tick.timestamp_ms <= last if has_audio
                                 else tick.timestamp_ms < last):
            raise TickError(grpc.StatusCode.INVALID_ARGUMENT, f"{path}.timestamp_ms",
                            f"{tick.timestamp_ms} does not advance past {last}, the room's "
                            "previous tick (media time must increase)")
    growth.add(tenant, room is None, joins - len(members.leaves))
    return Plan(i, tick, room, duration, level_ids, level_dbov, level_voice,
                 pcm, roster, roster_levels)
