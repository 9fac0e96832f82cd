"""The room registry: protobuf batches in, engine calls, protobuf decisions out.

This is the one path from a ``StreamRequest`` to its ``StreamResponse``: the gRPC server,
the in-process replay, the tests and the benchmarks all call ``RoomRegistry.process``.
It validates each tick against its room before touching anything, so a refused tick leaves
its room exactly as it was and never affects the other rooms of the batch.
"""
from __future__ import annotations

import logging
import operator
import zlib
from collections import deque
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field

import grpc
import numpy as np

from dsp import events as ev
from dsp.engine import Engine, PcmGroup, Wave
from dsp.pcm import SAMPLE_RATES_HZ, frame_ms
from dsp.rfc6464 import SILENCE_LEVEL, split_header_bytes
from dsp.state import NEVER_MS, NO_SLOT
from dsp.tuning import ALGORITHMS, PROFILES, Tuning

from .. import wire
from ...api import speakerswitch_pb2 as pb
from ..auth import clip
from ..config import ServiceConfig
from ..memory import default_max_participants
from ..metrics import Metrics

log = logging.getLogger("speakerswitch.rooms")

MAX_ID_BYTES = 128
DEFAULT_DURATION_MS = 20
RANKING_PHASES_MS = 1000
"""Rooms spread their ActiveSpeakers checks by a phase taken from the room id's hash: the
same room always gets the same phase, wherever and beside whatever it runs."""
MAX_TIMESTAMP_MS = 2**53
"""Media time must fit a double exactly; far beyond any RTP-derived clock."""
TICK_DURATIONS_MS = (10, 20, 30)
PREPARE_CHUNK = 2048
"""Ticks of a batch sorted into waves between two yields: a batch of 20,000 ticks took
70 ms to sort before its first engine step, during which no other call was served."""
STEADY_COLUMNS_MIN_TICKS = 32
"""A batch of at least this many ticks may be stepped as columns (``_step_steady``): its
array operations cost ~0.2 ms whatever the size, which a one-room message (a stream per
room) pays back nowhere: 261 us a message that way against 81 us on the general path."""
NO_AUDIO_YET_MS = -1
"""A room's last audio time before its first (any valid timestamp is later)."""
MAX_TICKS_PER_STEP = 4096
"""Rooms stepped in one engine call at most: a wave of 20,000 new rooms is five steps, so
a server that yields between steps never holds its event loop for the whole wave; a media
server's usual batch (a few thousand rooms) stays one step."""
ET = pb.ParticipantEventType
_VOICE = {pb.VOICE_ACTIVITY_UNSPECIFIED: -1, pb.VOICE_ACTIVITY_ABSENT: 0,
          pb.VOICE_ACTIVITY_PRESENT: 1}
_SPEECH_REASONS = (pb.SWITCH_REASON_FIRST_SPEAKER, pb.SWITCH_REASON_DOMINANT_SPEAKER)
_OVERRIDE_RANGES = {"hold_ms": (0, 60000), "min_speech_ms": (0, 60000),
                    "interrupt_ms": (0, 60000), "outlast_ms": (0, 60000),
                    "switch_margin_db": (0.0, 60.0),
                    "active_speakers": (1, 64), "active_speakers_interval_ms": (0, 60000),
                    "forwarding_size": (1, 64), "forwarding_min_ms": (0, 600000),
                    "speaking_interval_ms": (0, 60000), "no_audio_timeout_ms": (20, 600000)}
"""RoomConfig overrides (each a Tuning field of the same name) and their allowed ranges."""
_TUNING_OVERRIDES = tuple(_OVERRIDE_RANGES)


class TickError(Exception):
    """A tick is refused: gRPC status code, field path, reason."""

    def __init__(self, code: grpc.StatusCode, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.code, self.field, self.message = code, field, message


Watcher = Callable[[pb.RoomEvent], bool]
"""Receives a room's events; returns False to be dropped (e.g. its queue is full)."""


RoomKey = tuple[str, str]
"""(tenant, room_id): the same room id under two tenants is two rooms."""


@dataclass(eq=False)  # a room is itself: compared by identity (and found fast in lists)
class Room:
    room_id: str
    index: int
    config: pb.RoomConfig
    slots: dict[str, int] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)
    roster: tuple[str, ...] = ()
    roster_slots: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    last_t_ms: int | None = None
    last_audio_t_ms: int | None = None
    end_t_ms: int = 0
    sequence: int = 0
    last_seen_s: float = 0.0
    watchers: list[Watcher] = field(default_factory=list)
    tenant: str = ""
    history: deque[pb.RoomEvent] | None = None
    """The room's last events, kept from its first Watch on, for subscribers that resume."""


@dataclass
class _Plan:
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


@dataclass(frozen=True)
class Batch:
    """One StreamRequest with who sent it: the unit ``process_many`` steps together."""
    request: pb.StreamRequest
    now_s: float = 0.0
    """Wall clock of its arrival: dates room activity for idle collection only."""
    tenant: str = ""
    room_allowed: Callable[[str], bool] | None = None
    """The caller's room pattern; ticks of other rooms are refused."""
    raw: bytes | None = None
    """The request's bytes as received, if at hand (else it is serialized again)."""


_LAST_AUDIO = operator.attrgetter("last_audio_t_ms")
_ROSTER = operator.attrgetter("roster")
_ROSTER_SLOTS = operator.attrgetter("roster_slots")
_INDEX = operator.attrgetter("index")
"""Room fields read for every room of a batch (a map of these runs in C)."""

_Entry = tuple
"""(Batch, its StreamResponse, tick index in the batch, the RoomTick or its
``wire.SteadyTick``, room id)"""

_Steady = tuple  # (room, timestamp_ms, duration_ms, RFC 6464 bytes in roster order)
"""A tick in a media server's steady state, validated: a plain tuple, as a batch holds
thousands of them."""


def _entries(ticks, read: list[wire.SteadyTick | None] | None) -> int:
    """Audio frames, level bytes, roster names and events of these ticks (a steady tick
    read from the bytes: its level bytes)."""
    steps = _count_entries(ticks, read, chunk=0)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def _count_entries(ticks, read: list[wire.SteadyTick | None] | None, chunk: int = 0
                   ) -> Generator[None, None, int]:
    """``_entries``, with a yield every ``chunk`` ticks (0: none)."""
    n = 0
    for i, t in enumerate(ticks):
        r = read[i] if read is not None else None
        if r is not None:
            n += len(r[3])
        else:
            lv = t.levels
            n += len(t.audio) + len(t.events) + len(lv.roster) + len(lv.levels)
        if chunk and i % chunk == chunk - 1:
            yield
    return n


def _read_in_parts(raw: bytes, n_ticks: int
                   ) -> Generator[None, None, list[wire.SteadyTick | None] | None]:
    """``wire.steady_ticks(raw)``, PREPARE_CHUNK ticks at a time with a yield after each
    part (None where that gives None)."""
    read: list[wire.SteadyTick | None] = []
    offset = 0
    while len(read) < n_ticks:
        part = wire.steady_ticks_part(raw, offset, PREPARE_CHUNK)
        if part is None or not part[0]:
            return None
        read += part[0]
        offset = part[1]
        yield
    return read


def _steady(tick: pb.RoomTick, room: Room | None) -> _Steady | None:
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


EVENTS_BEFORE_SIZE_CHECK = 1000
"""Responses with fewer events are far below any max_message_bytes (an event with the
longest ids and a full forwarding set is under 9 KB): their size is not computed."""
RESPONSE_MARGIN_BYTES = 1024
"""Kept free under max_message_bytes for the response's own fields and framing."""


def _fit(resp: pb.StreamResponse, max_bytes: int) -> None:
    """Leave out the events after those that fit ``max_bytes`` (they were decided and sent
    to watchers: Watch and GetRoom have them) and say how many were left out."""
    if resp.ByteSize() <= max_bytes - RESPONSE_MARGIN_BYTES:
        return
    framed = [_framed_bytes(e.ByteSize()) for e in resp.events]
    budget = max_bytes - RESPONSE_MARGIN_BYTES - (resp.ByteSize() - sum(framed))
    kept = 0
    for size in framed:
        budget -= size
        if budget < 0:
            break
        kept += 1
    resp.events_omitted = len(resp.events) - kept
    del resp.events[kept:]
    log.warning("batch %d: %d events left out of its response (max_message_bytes=%d)",
                resp.batch_id, resp.events_omitted, max_bytes)


def _framed_bytes(size: int) -> int:
    """An embedded message's bytes in its parent: a one-byte tag, the length as a varint."""
    return 1 + max(1, (size.bit_length() + 6) // 7) + size


def tuning_for(config: pb.RoomConfig, default_profile: str) -> Tuning:
    base = PROFILES[config.profile or default_profile]
    changes = {k: getattr(config, k) for k in _TUNING_OVERRIDES if config.HasField(k)}
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


_check_id = check_id


def _check_config(c: pb.RoomConfig, path: str) -> None:
    if c.profile and c.profile not in PROFILES:
        raise TickError(grpc.StatusCode.INVALID_ARGUMENT, f"{path}.profile",
                        f"unknown profile {clip(c.profile)} (known: {', '.join(PROFILES)})")
    if c.algorithm and c.algorithm not in ALGORITHMS:
        raise TickError(grpc.StatusCode.INVALID_ARGUMENT, f"{path}.algorithm",
                        f"unknown algorithm {clip(c.algorithm)} (known: {', '.join(ALGORITHMS)})")
    for k, (lo, hi) in _OVERRIDE_RANGES.items():
        if c.HasField(k):
            v = getattr(c, k)
            if not lo <= v <= hi:  # also refuses NaN
                raise TickError(grpc.StatusCode.INVALID_ARGUMENT, f"{path}.{k}",
                                f"{v} is outside {lo}..{hi}")


class _Membership:
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


class _Growth:
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


class RoomRegistry:
    """All rooms of one server (or one replay), on one engine."""

    def __init__(self, config: ServiceConfig | None = None, metrics: Metrics | None = None,
                 tenant: str = "") -> None:
        self.config = config or ServiceConfig()
        self.metrics = metrics
        self.engine = Engine()
        self.rooms: dict[RoomKey, Room] = {}
        self._by_tenant: dict[str, dict[str, Room]] = {}
        """The same rooms by tenant, then id: no key tuple to build per tick."""
        self._room_at: dict[int, Room] = {}
        """Rooms by engine index, for the engine's events."""
        self._roster_cache: tuple[list[np.ndarray], np.ndarray] | None = None
        self._room_waiters: dict[RoomKey, list[Callable[[], None]]] = {}
        self._rooms_per_tenant: dict[str, int] = {}
        self._participants = 0
        self._participants_of: dict[str, int] = {}
        self.max_participants = self.config.max_participants or default_max_participants()
        self.max_participants_per_tenant = (self.config.max_participants_per_tenant
                                            or self.max_participants)

    # ------------------------------------------------------------------ processing
    def room(self, room_id: str, tenant: str = "") -> Room | None:
        return self.rooms.get((tenant, room_id))

    def process(self, request: pb.StreamRequest, now_s: float = 0.0, tenant: str = "",
                room_allowed: Callable[[str], bool] | None = None) -> pb.StreamResponse:
        """Process one batch for ``tenant``; ``now_s`` (wall clock) only dates room activity
        for GC; ``room_allowed`` (the caller's room pattern) refuses other rooms' ticks."""
        return self.process_many([Batch(request, now_s, tenant, room_allowed)])[0]

    def process_many(self, batches: Sequence[Batch]) -> list[pb.StreamResponse]:
        """Process several batches, of any streams and tenants, as one: the first tick of
        every room in all of them is one engine step, the second tick the next step, and so
        on. Each batch gets the response it would have got alone, in the order given (a
        room's ticks run in batch order): a server with a stream per room steps all its
        rooms once per drain instead of once per message."""
        steps = self.process_steps(batches)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value

    def process_steps(self, batches: Sequence[Batch]
                      ) -> Generator[None, None, list[pb.StreamResponse]]:
        """``process_many`` one engine step at a time: it yields after each step, so that a
        server can let other calls in between (a batch of 20,000 ticks of one room is
        20,000 steps), and returns the responses. Other batches must not be processed
        until it is done: they would run between a room's ticks."""
        responses = [pb.StreamResponse(batch_id=b.request.batch_id) for b in batches]
        entries: list[_Entry] = []
        stepped = False  # as columns, by _step_steady
        for batch, resp in zip(batches, responses):
            ticks = batch.request.ticks
            raw = batch.raw if batch.raw is not None else batch.request.SerializeToString()
            # a batch that may be over the entry budget is counted from its steady ticks; a
            # huge one is read in parts, other calls served in between
            read = counted = None
            if PREPARE_CHUNK < len(ticks) <= self.config.max_ticks_per_batch:
                read = yield from _read_in_parts(raw, len(ticks))
                if len(raw) > self.config.max_entries_per_batch:
                    counted = yield from _count_entries(ticks, read, PREPARE_CHUNK)
            elif len(raw) > self.config.max_entries_per_batch:
                read = wire.steady_ticks(raw)
            refusal = self._over_budget(batch.request, len(raw), read, counted)
            if refusal is not None:
                self._reject(resp, refusal, 0, "")
                continue
            if (len(batches) == 1 and STEADY_COLUMNS_MIN_TICKS <= len(ticks) <= MAX_TICKS_PER_STEP
                    and self._step_steady(batch, resp, wire.steady_columns(raw))):
                stepped = True
                yield
                continue
            # read from the bytes even for one tick: 2 us against 4 us through protobuf
            if read is None:
                read = wire.steady_ticks(raw)
            for lo in range(0, len(ticks), PREPARE_CHUNK):  # a huge batch yields meanwhile
                hi = min(lo + PREPARE_CHUNK, len(ticks))
                if read is None:
                    entries.extend([(batch, resp, i, ticks[i], ticks[i].room_id)
                                    for i in range(lo, hi)])
                else:
                    entries.extend([(batch, resp, i, read[i], read[i][0])
                                    if read[i] is not None
                                    else (batch, resp, i, ticks[i], ticks[i].room_id)
                                    for i in range(lo, hi)])
                if hi < len(ticks):
                    yield
        keys = [(e[0].tenant, e[4]) for e in entries]
        waves: list[list[_Entry]] = [entries]
        if len(set(keys)) != len(keys):
            # wave k holds the k-th tick of each (tenant, room): a room's ticks run in order
            waves, seen = [], {}
            for n, (key, entry) in enumerate(zip(keys, entries), 1):
                k = seen.get(key, 0)
                seen[key] = k + 1
                if k == len(waves):
                    waves.append([])
                waves[k].append(entry)
                if n % PREPARE_CHUNK == 0:
                    yield
        for wave in waves if entries or not stepped else ():
            # rooms are independent: a wave of many rooms may be stepped in parts
            for start in range(0, max(len(wave), 1), MAX_TICKS_PER_STEP):
                self._process_wave(wave[start:start + MAX_TICKS_PER_STEP])
                yield
        for resp in responses:
            if len(resp.events) > EVENTS_BEFORE_SIZE_CHECK:
                _fit(resp, self.config.max_message_bytes)
        if self.metrics is not None:
            self.metrics.batches.inc(len(batches))
        return responses

    def _over_budget(self, request: pb.StreamRequest, size: int | None = None,
                     read: list[wire.SteadyTick | None] | None = None,
                     counted: int | None = None) -> TickError | None:
        """A batch over a whole-batch limit, refused before any of it is applied (``size``:
        its bytes, if known; ``read``: its steady ticks, if read, counted without
        protobuf; ``counted``: its entries, if counted already)."""
        cfg = self.config
        ticks = request.ticks
        if len(ticks) > cfg.max_ticks_per_batch:
            self._limit_hit("max_ticks_per_batch")
            return TickError(grpc.StatusCode.RESOURCE_EXHAUSTED, "ticks",
                             f"{len(ticks)} ticks exceed max_ticks_per_batch="
                             f"{cfg.max_ticks_per_batch}")
        # every entry takes at least a byte on the wire: a small batch cannot be over, and
        # the count (a Python loop over the ticks) is only paid by the large ones
        if (size if size is not None else request.ByteSize()) <= cfg.max_entries_per_batch:
            return None
        n = counted if counted is not None else _entries(ticks, read)
        if n > cfg.max_entries_per_batch:
            self._limit_hit("max_entries_per_batch")
            return TickError(grpc.StatusCode.INVALID_ARGUMENT, "ticks",
                             f"{n} entries (audio frames, level bytes, roster names and "
                             f"events) exceed max_entries_per_batch="
                             f"{cfg.max_entries_per_batch}; send smaller batches")
        return None

    def _process_wave(self, entries: list[_Entry]) -> None:
        # Validate every tick first (a refused tick changes nothing), then apply. A media
        # server's steady ticks (known room, roster levels only) are checked in a few field
        # reads and kept as tuples: this loop runs for every room of every tick.
        plans: list[tuple[_Plan | _Steady, pb.StreamResponse, Batch]] = []
        growth = _Growth()
        batch_of: Batch | None = None
        rooms_of: dict[str, Room] = {}
        allowed = None
        for batch, resp, i, tick, room_id in entries:
            if batch is not batch_of:
                batch_of, allowed = batch, batch.room_allowed
                rooms_of = self._by_tenant.get(batch.tenant, {})
            try:
                if allowed is not None and not allowed(room_id):
                    raise TickError(grpc.StatusCode.PERMISSION_DENIED, f"ticks[{i}].room_id",
                                    f"room {clip(room_id)} is outside the token's rooms")
                if type(tick) is tuple:  # read from the bytes: _steady's remaining checks,
                    # inlined, as this runs for every room of every tick
                    room = rooms_of.get(room_id)
                    if room is not None and room.roster:
                        _, t, d, levels = tick
                        last = room.last_audio_t_ms
                        if (len(levels) == len(room.roster) and (last is None or t > last)
                                and 0 <= t <= MAX_TIMESTAMP_MS
                                and (not d or d in TICK_DURATIONS_MS)):
                            plans.append(((room, t, d or DEFAULT_DURATION_MS, levels),
                                          resp, batch))
                            continue
                    plan = None
                    tick = batch.request.ticks[i]
                else:
                    plan = _steady(tick, rooms_of.get(room_id))
                if plan is None:
                    plan = self._validate(i, tick, batch.tenant, growth)
            except TickError as e:
                self._reject(resp, e, i, room_id)
                continue
            plans.append((plan, resp, batch))
        if not plans:
            return
        out: list[tuple[Room, list[pb.RoomEvent], pb.StreamResponse]] = []
        resp_of_room: dict[int, pb.StreamResponse] = {}
        rooms, t_ms, durations = [], [], []
        lv_slots: list[int] = []
        lv_dbov: list[float] = []
        lv_voice: list[int] = []
        roster_rooms: list[Room] = []
        roster_bytes: list[bytes] = []
        pcm: dict[tuple[int, int], tuple[list[int], list[bytes]]] = {}
        add_room, add_t, add_duration = rooms.append, t_ms.append, durations.append
        add_roster_room, add_roster_bytes = roster_rooms.append, roster_bytes.append
        for plan, resp, batch in plans:
            if type(plan) is tuple:  # _Steady: only audio, a few attributes to set
                room, t, duration, levels = plan
                index = room.index
                resp_of_room[index] = resp
                room.last_seen_s = batch.now_s
                room.last_t_ms = room.last_audio_t_ms = t
                room.end_t_ms = t + duration
                add_room(index)
                add_t(t)
                add_duration(duration)
                add_roster_room(room)
                add_roster_bytes(levels)
                continue
            room, state_events = self._apply_state(plan, batch.now_s, batch.tenant)
            resp_of_room[room.index] = resp
            out.append((room, state_events, resp))
            tick = plan.tick
            if not (plan.level_ids or plan.pcm or plan.roster_levels):
                continue  # events only: nobody's audio advances
            rooms.append(room.index)
            t_ms.append(tick.timestamp_ms)
            durations.append(plan.duration_ms)
            lv_slots.extend(room.slots[p] for p in plan.level_ids)
            lv_dbov.extend(plan.level_dbov)
            lv_voice.extend(plan.level_voice)
            if plan.roster_levels:
                roster_rooms.append(room)
                roster_bytes.append(plan.roster_levels)
            for key, (ids_, frames) in plan.pcm.items():
                g = pcm.setdefault(key, ([], []))
                g[0].extend(room.slots[p] for p in ids_)
                g[1].extend(frames)
            room.end_t_ms = tick.timestamp_ms + plan.duration_ms
            room.last_audio_t_ms = tick.timestamp_ms
        wave = Wave(rooms=np.asarray(rooms, np.int64), t_ms=np.asarray(t_ms, np.int64),
                    duration_ms=np.asarray(durations, np.int64),
                    level_slots=np.asarray(lv_slots, np.int64),
                    level_dbov=np.asarray(lv_dbov, np.float32),
                    level_voice=np.asarray(lv_voice, np.int8),
                    pcm=[PcmGroup(np.asarray(s, np.int64), rate, frames)
                         for (rate, _n), (s, frames) in pcm.items()])
        if roster_bytes:
            dbov, voice = split_header_bytes(b"".join(roster_bytes))
            slots = self._roster_slots(roster_rooms)
            if len(wave.level_slots):
                wave.level_slots = np.concatenate([wave.level_slots, slots])
                wave.level_dbov = np.concatenate([wave.level_dbov, dbov])
                wave.level_voice = np.concatenate([wave.level_voice, voice])
            else:
                wave.level_slots, wave.level_dbov, wave.level_voice = slots, dbov, voice
        self._step_and_emit(wave, out, resp_of_room.__getitem__, len(plans))

    def _step_steady(self, batch: Batch, resp: pb.StreamResponse,
                     columns: wire.SteadyColumns | None) -> bool:
        """A media server's steady batch (every tick a known room's levels in its roster's
        order, one tick per room) stepped as columns: ``_steady``'s checks on arrays, one
        engine step, no Python loop over the rooms but one that dates them. False, having
        changed nothing, when any tick is not such a tick: the general path, which gives
        the same responses, then takes the batch (tests/test_registry_paths.py)."""
        if columns is None or None in columns[0]:
            return False
        ids, t, duration, levels, n_levels = columns
        rooms = list(map(self._by_tenant.get(batch.tenant, {}).get, ids))
        if None in rooms or len(set(ids)) != len(ids):
            return False
        allowed = batch.room_allowed
        if allowed is not None and not all(map(allowed, ids)):
            return False
        n = len(rooms)
        last = list(map(_LAST_AUDIO, rooms))
        if None in last:
            last = [NO_AUDIO_YET_MS if x is None else x for x in last]
        n_roster = np.fromiter(map(len, map(_ROSTER, rooms)), np.int64, n)
        ok = ((n_roster > 0) & (n_levels == n_roster)
              & (t > np.array(last, np.int64)) & (t >= 0) & (t <= MAX_TIMESTAMP_MS)
              & np.logical_or.reduce([duration == d for d in (0, *TICK_DURATIONS_MS)]))
        if not ok.all():
            return False
        duration = np.where(duration == 0, DEFAULT_DURATION_MS, duration)
        now = batch.now_s
        for room, t_ms, end_ms in zip(rooms, t.tolist(), (t + duration).tolist()):
            room.last_seen_s = now
            room.last_t_ms = room.last_audio_t_ms = t_ms
            room.end_t_ms = end_ms
        level_dbov, voice = split_header_bytes(levels)
        wave = Wave(rooms=np.fromiter(map(_INDEX, rooms), np.int64, n), t_ms=t,
                    duration_ms=duration, level_slots=self._roster_slots(rooms),
                    level_dbov=level_dbov, level_voice=voice, pcm=[])
        self._step_and_emit(wave, [], lambda _index: resp, n)
        return True

    def _step_and_emit(self, wave: Wave,
                       out: list[tuple[Room, list[pb.RoomEvent], pb.StreamResponse]],
                       resp_of: Callable[[int], pb.StreamResponse], n_ticks: int) -> None:
        """Step the wave; hand the state events ``out`` and the step's decisions (to the
        response ``resp_of(room index)``) to responses and watchers."""
        step_events = self.engine.step(wave) if len(wave.rooms) else []
        for room, msgs, resp in out:
            self._emit(room, msgs, resp)
        grouped: dict[int, list[ev.Event]] = {}
        for e in step_events:
            grouped.setdefault(e.room, []).append(e)
        for index, events in grouped.items():
            room = self._room_at[index]
            msgs: list[pb.RoomEvent] = []
            self._convert(room, events, msgs)
            self._emit(room, msgs, resp_of(index))
        if self.metrics is not None:
            m = self.metrics
            m.ticks.inc(n_ticks)
            n_levels = len(wave.level_slots)
            n_pcm = sum(len(g.slots) for g in wave.pcm)
            if n_levels:
                m.frames.labels("level").inc(n_levels)
            if n_pcm:
                m.frames.labels("pcm").inc(n_pcm)

    def _roster_slots(self, rooms: list[Room]) -> np.ndarray:
        """The slots of these rooms' rosters, end to end: the order of their level bytes.
        Kept while the rooms and their rosters stay the same (one concatenation of
        thousands of small arrays per tick is not free)."""
        key = list(map(_ROSTER_SLOTS, rooms))
        cached = self._roster_cache
        if (cached is not None and len(cached[0]) == len(key)
                and all(map(operator.is_, key, cached[0]))):
            return cached[1]
        slots = np.concatenate(key) if key else np.zeros(0, np.int64)
        slots.flags.writeable = False
        self._roster_cache = (key, slots)
        return slots

    def _reject(self, resp: pb.StreamResponse, e: TickError, index: int, room_id: str) -> None:
        resp.rejections.add(code=e.code.value[0], tick_index=index, room_id=room_id,
                            field=e.field, message=e.message)
        if self.metrics is not None:
            self.metrics.errors.labels(e.code.name).inc()

    # ------------------------------------------------------------------ validation
    def _check_participants(self, path: str, tenant: str, joins: int, growth: _Growth
                            ) -> None:
        """Memory is bounded by participants: server-wide and per tenant, so that one tenant
        cannot take what the others need. A join over either is refused for its tick
        (``joins``: the tick's joins less its leaves; ``growth``: the same of the wave's
        earlier ticks, which are applied before it)."""
        total = self._participants + growth.participants + joins
        if total > self.max_participants:
            self._limit_hit("max_participants")
            raise TickError(grpc.StatusCode.RESOURCE_EXHAUSTED, path,
                            f"{joins} more participants would exceed the server's "
                            f"max_participants={self.max_participants}")
        of_tenant = (self._participants_of.get(tenant, 0) + growth.participants_of.get(tenant, 0)
                     + joins)
        if of_tenant > self.max_participants_per_tenant:
            self._limit_hit("max_participants_per_tenant")
            raise TickError(grpc.StatusCode.RESOURCE_EXHAUSTED, path,
                            f"{joins} more participants would exceed the tenant's "
                            f"max_participants_per_tenant={self.max_participants_per_tenant}")

    def _limit_hit(self, limit: str) -> None:
        if self.metrics is not None:
            self.metrics.limit_rejections.labels(limit).inc()

    def _validate(self, i: int, tick: pb.RoomTick, tenant: str = "",
                  growth: _Growth | None = None) -> _Plan:
        """Check a tick against its room without changing anything (``growth``: the rooms
        and participants that earlier ticks of the same wave will add; this tick's are
        added to it when it passes)."""
        growth = growth if growth is not None else _Growth()
        new_rooms, new_rooms_of_tenant = growth.rooms, growth.rooms_of.get(tenant, 0)
        path = f"ticks[{i}]"
        _check_id(tick.room_id, f"{path}.room_id")
        room = self.rooms.get((tenant, tick.room_id))
        if room is None:
            if len(self.rooms) + new_rooms >= self.config.max_rooms:
                self._limit_hit("max_rooms")
                raise TickError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{path}.room_id",
                                f"limit max_rooms={self.config.max_rooms} reached")
            if (self._rooms_per_tenant.get(tenant, 0) + new_rooms_of_tenant
                    >= self.config.max_rooms_per_tenant):
                self._limit_hit("max_rooms_per_tenant")
                raise TickError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{path}.room_id",
                                f"limit max_rooms_per_tenant="
                                f"{self.config.max_rooms_per_tenant} reached")
        if not 0 <= tick.timestamp_ms <= MAX_TIMESTAMP_MS:
            raise TickError(grpc.StatusCode.INVALID_ARGUMENT, f"{path}.timestamp_ms",
                            f"{tick.timestamp_ms} is outside 0..2^53")
        if tick.HasField("config"):
            _check_config(tick.config, f"{path}.config")
        if tick.duration_ms and tick.duration_ms not in TICK_DURATIONS_MS:
            raise TickError(grpc.StatusCode.INVALID_ARGUMENT, f"{path}.duration_ms",
                            f"{tick.duration_ms} is not one of {TICK_DURATIONS_MS}")
        if len(tick.events) > self.config.max_events_per_tick:
            self._limit_hit("max_events_per_tick")
            raise TickError(grpc.StatusCode.INVALID_ARGUMENT, f"{path}.events",
                            f"{len(tick.events)} events exceed max_events_per_tick="
                            f"{self.config.max_events_per_tick}")
        members = _Membership(room.slots if room else {})
        for j, e in enumerate(tick.events):
            if e.participant_id or e.type != ET.PARTICIPANT_EVENT_TYPE_UNPIN:
                _check_id(e.participant_id, f"{path}.events[{j}].participant_id")
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
            _check_id(pid, f"{ap}.participant_id")
            if pid in in_tick:
                raise TickError(grpc.StatusCode.INVALID_ARGUMENT, f"{ap}.participant_id",
                                f"participant {clip(pid)} appears twice in the tick")
            in_tick.add(pid)
            kind = a.WhichOneof("payload")
            if kind == "level":
                if a.level.level > SILENCE_LEVEL:
                    raise TickError(grpc.StatusCode.INVALID_ARGUMENT, f"{ap}.level.level",
                                    f"{a.level.level} is outside 0..127")
                if a.level.voice not in _VOICE:
                    raise TickError(grpc.StatusCode.INVALID_ARGUMENT, f"{ap}.level.voice",
                                    f"unknown voice activity {a.level.voice}")
                level_ids.append(pid)
                level_dbov.append(-float(a.level.level))
                level_voice.append(_VOICE[a.level.voice])
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
                    _check_id(pid, f"{lp}.roster[{j}]")
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

        if members.count > self.config.max_participants_per_room:
            self._limit_hit("max_participants_per_room")
            raise TickError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{path}",
                            f"room would have {members.count} participants, over "
                            f"max_participants_per_room={self.config.max_participants_per_room}")
        joins = len(members.joins)
        if joins:
            self._check_participants(path, tenant, joins - len(members.leaves), growth)
        has_audio = bool(level_ids or pcm or roster_levels)
        if room is not None:
            last = room.last_audio_t_ms if has_audio else room.last_t_ms
            if last is not None and (tick.timestamp_ms <= last if has_audio
                                     else tick.timestamp_ms < last):
                raise TickError(grpc.StatusCode.INVALID_ARGUMENT, f"{path}.timestamp_ms",
                                f"{tick.timestamp_ms} does not advance past {last}, the room's "
                                "previous tick (media time must increase)")
        growth.add(tenant, room is None, joins - len(members.leaves))
        return _Plan(i, tick, room, duration, level_ids, level_dbov, level_voice,
                     pcm, roster, roster_levels)

    # ------------------------------------------------------------------ state changes
    def _apply_state(self, plan: _Plan, now_s: float, tenant: str
                     ) -> tuple[Room, list[pb.RoomEvent]]:
        """Apply a validated tick's config and events in order, then join the participants
        its audio names. Engine events are converted at once (a leaver's slot is freed)."""
        tick = plan.tick
        room = plan.room or self._create_room(tenant, tick.room_id, tick.config)
        room.last_seen_s = now_s
        if plan.room is not None and tick.HasField("config"):
            room.config.CopyFrom(tick.config)
            self.engine.set_tuning(room.index, tuning_for(room.config, self.config.profile))
        t = tick.timestamp_ms
        eng = self.engine
        out: list[pb.RoomEvent] = []
        for e in tick.events:
            pid = e.participant_id
            if e.type == ET.PARTICIPANT_EVENT_TYPE_LEAVE:
                slot = room.slots.get(pid, NO_SLOT)
                if slot != NO_SLOT:
                    self._convert(room, eng.remove_participant(slot, t), out)
                    self._leave(room, pid)
                continue
            if e.type == ET.PARTICIPANT_EVENT_TYPE_UNPIN:
                self._convert(room, eng.set_pinned(room.index, NO_SLOT, t), out)
                continue
            slot = self._join(room, pid)
            if e.type in (ET.PARTICIPANT_EVENT_TYPE_VIDEO_ON, ET.PARTICIPANT_EVENT_TYPE_VIDEO_OFF):
                result = eng.set_video(slot, e.type == ET.PARTICIPANT_EVENT_TYPE_VIDEO_ON, t)
            elif e.type in (ET.PARTICIPANT_EVENT_TYPE_AUDIO_MUTED,
                            ET.PARTICIPANT_EVENT_TYPE_AUDIO_UNMUTED):
                result = eng.set_muted(slot, e.type == ET.PARTICIPANT_EVENT_TYPE_AUDIO_MUTED, t)
            elif e.type == ET.PARTICIPANT_EVENT_TYPE_PIN:
                result = eng.set_pinned(room.index, slot, t)
            elif e.type in (ET.PARTICIPANT_EVENT_TYPE_SCREEN_SHARE_ON,
                            ET.PARTICIPANT_EVENT_TYPE_SCREEN_SHARE_OFF):
                result = eng.set_presenting(
                    slot, e.type == ET.PARTICIPANT_EVENT_TYPE_SCREEN_SHARE_ON, t)
            else:  # JOIN
                result = []
            self._convert(room, result, out)
        for pid in plan.level_ids:
            self._join(room, pid)
        for ids, _frames in plan.pcm.values():
            for pid in ids:
                self._join(room, pid)
        if plan.roster is not None:
            for pid in plan.roster:
                self._join(room, pid)
            self._set_roster(room, plan.roster)
        room.last_t_ms = t
        return room, out

    def restore(self, state: pb.RoomState, tenant: str = "") -> Room:
        """Recreate a room from the state another process published (failover): members,
        camera/mute/pin/presentation state, the shown speaker and floor holder, the
        forwarding set, the sticky roster, and the sequence to continue from. Emits nothing.
        The next tick must start at or after ``state.timestamp_ms`` (a retried tick that
        the previous owner already processed is refused, not processed twice)."""
        config = pb.RoomConfig()
        config.CopyFrom(state.config)
        room = self._create_room(tenant, state.room_id, config)
        t = state.timestamp_ms
        ranked = {s.participant_id: s.activity for s in state.active_speakers}
        eng = self.engine
        for p in state.participants:
            slot = self._join(room, p.participant_id)
            eng.restore_participant(
                slot, t, video=p.video, muted=p.muted, speaking=p.speaking,
                noise_floor_dbov=None if p.noise_floor_dbov <= -127 else p.noise_floor_dbov,
                level_dbov=p.level_dbov, activity_share=ranked.get(p.participant_id, 0.0))
        slot = lambda pid: room.slots.get(pid, NO_SLOT)  # noqa: E731
        presenters = [slot(p.participant_id) for p in state.participants if p.screen_share]
        if state.presenter_id in room.slots:  # the one in the main feed presents last
            presenters.remove(slot(state.presenter_id))
            presenters.append(slot(state.presenter_id))
        eng.restore_decisions(room.index, t, shown=slot(state.speaker_id),
                              holder=slot(state.audio_speaker_id), pinned=slot(state.pinned_id),
                              presenters=presenters,
                              forwarding=[slot(p) for p in state.forwarding if p in room.slots])
        self._set_roster(room, tuple(state.roster))
        room.sequence = state.sequence
        room.end_t_ms = t
        room.last_t_ms = room.last_audio_t_ms = t - 1
        return room

    def _create_room(self, tenant: str, room_id: str, config: pb.RoomConfig) -> Room:
        cfg = pb.RoomConfig()
        cfg.CopyFrom(config)
        index = self.engine.add_room(tuning_for(cfg, self.config.profile),
                                     zlib.crc32(room_id.encode()) % RANKING_PHASES_MS)
        room = Room(room_id, index, cfg, tenant=tenant)
        self.rooms[(tenant, room_id)] = room
        self._by_tenant.setdefault(tenant, {})[room_id] = room
        self._room_at[index] = room
        self._rooms_per_tenant[tenant] = self._rooms_per_tenant.get(tenant, 0) + 1
        if self.metrics is not None:
            self.metrics.rooms.set(len(self.rooms))
        for wake in self._room_waiters.pop((tenant, room_id), []):
            wake()
        return room

    def _join(self, room: Room, pid: str) -> int:
        """The participant's slot, joining it first if it is new."""
        slot = room.slots.get(pid)
        if slot is not None:
            return slot
        slot = self.engine.add_participant(room.index)
        room.slots[pid] = slot
        room.names[slot] = pid
        self._participants += 1
        self._participants_of[room.tenant] = self._participants_of.get(room.tenant, 0) + 1
        if self.metrics is not None:
            self.metrics.participants.set(self._participants)
        return slot

    def _leave(self, room: Room, pid: str) -> None:
        slot = room.slots.pop(pid)
        del room.names[slot]
        self._participants -= 1
        self._participants_of[room.tenant] -= 1
        if self.metrics is not None:
            self.metrics.participants.set(self._participants)
        if pid in room.roster:
            self._set_roster(room, room.roster)

    def _set_roster(self, room: Room, roster: tuple[str, ...]) -> None:
        """Keep the roster's slots cached; a participant who left drops out of it."""
        roster = tuple(p for p in roster if p in room.slots)
        room.roster = roster
        room.roster_slots = np.asarray([room.slots[p] for p in roster], np.int64)

    # ------------------------------------------------------------------ output
    def _convert(self, room: Room, events: list[ev.Event], out: list[pb.RoomEvent]) -> None:
        """Engine events -> messages (not numbered yet), with the room's participant ids."""
        names = room.names

        def name(slot: int) -> str:
            return names.get(slot, "") if slot >= 0 else ""

        for e in events:
            m = pb.RoomEvent(room_id=room.room_id, timestamp_ms=e.t_ms)
            if isinstance(e, ev.SwitchDecision):
                sw = m.switch
                sw.speaker_id = name(e.slot)
                sw.previous_speaker_id = name(e.previous)
                sw.reason = pb.SwitchReason.Value("SWITCH_REASON_" + e.reason)
                sw.score = e.score
                sw.audio_speaker_id = name(e.audio_slot)
                sw.speech_onset_ms = e.onset_ms
                sw.slot = pb.VIDEO_SLOT_THUMBNAIL if e.thumbnail else pb.VIDEO_SLOT_MAIN
            elif isinstance(e, ev.FloorChange):
                fc = m.floor_change
                fc.speaker_id = name(e.slot)
                fc.previous_speaker_id = name(e.previous)
                fc.has_video = e.has_video
                fc.score = e.score
                fc.speech_onset_ms = e.onset_ms
            elif isinstance(e, ev.SpeakingChange):
                m.speaking_changed.participant_id = name(e.slot)
                m.speaking_changed.speaking = e.speaking
            elif isinstance(e, ev.ActiveSpeakersUpdate):
                for s, lv, spk, act in zip(e.slots, e.levels_dbov, e.speaking, e.activity):
                    m.active_speakers.speakers.add(participant_id=name(s), level_dbov=lv,
                                                   speaking=spk, activity=act)
            elif isinstance(e, ev.PresentationChange):
                m.presentation.presenter_id = name(e.slot)
                m.presentation.previous_presenter_id = name(e.previous)
            elif isinstance(e, ev.ForwardingChange):
                m.forwarding.participant_ids.extend(name(s) for s in e.slots)
            out.append(m)

    def _emit(self, room: Room, msgs: list[pb.RoomEvent], resp: pb.StreamResponse) -> None:
        """Number the room's events and hand them to the response and the watchers."""
        for m in msgs:
            room.sequence += 1
            m.sequence = room.sequence
            if m.HasField("switch"):
                self._observe_switch(m)
            resp.events.append(m)
            if room.history is not None:
                room.history.append(m)
            if room.watchers:
                room.watchers[:] = [w for w in room.watchers if w(m)]

    def _observe_switch(self, m: pb.RoomEvent) -> None:
        if self.metrics is None:
            return
        sw = m.switch
        self.metrics.switches.labels(pb.SwitchReason.Name(sw.reason)[len("SWITCH_REASON_"):]).inc()
        if sw.reason in _SPEECH_REASONS:
            self.metrics.switch_delay.observe(max(0, m.timestamp_ms - sw.speech_onset_ms) / 1000)

    # ------------------------------------------------------------------ queries
    def room_state(self, room_id: str, tenant: str = "") -> pb.RoomState | None:
        room = self.rooms.get((tenant, room_id))
        if room is None:
            return None
        st = self.engine.st
        r = room.index
        name = lambda s: room.names.get(int(s), "") if s >= 0 else ""  # noqa: E731
        tuning = self.engine.tuning(r)
        cfg = pb.RoomConfig(profile=room.config.profile or self.config.profile,
                            algorithm=ALGORITHMS[tuning.algorithm])
        for k in _TUNING_OVERRIDES:
            setattr(cfg, k, type(getattr(cfg, k))(getattr(tuning, k)))
        presenters = st.presenters[r]
        out = pb.RoomState(room_id=room_id, timestamp_ms=room.end_t_ms, sequence=room.sequence,
                           speaker_id=name(st.shown[r]), audio_speaker_id=name(st.holder[r]),
                           pinned_id=name(st.pinned[r]), config=cfg,
                           presenter_id=name(presenters[-1]) if presenters else "",
                           forwarding=[name(s) for s in st.last_forwarding[r]],
                           roster=room.roster)
        # `speaking` as last reported in SpeakingChanged, so a Watch snapshot and the events
        # after it agree; read per column, not per participant (this runs for every room
        # that changed when decisions are shared through Redis)
        slots = np.fromiter(room.slots.values(), np.int64, len(room.slots))
        columns = zip(room.slots, st.reported_speaking[slots].tolist(),
                      st.level_smooth[slots].tolist(),
                      np.nan_to_num(st.noise_floor[slots], nan=-127.0).tolist(),
                      st.video[slots].tolist(), st.muted[slots].tolist(), slots.tolist(),
                      st.last_active_ms[slots].tolist())
        add = out.participants.add
        for pid, speaking, level, floor, video, muted, s, spoke in columns:
            p = add(participant_id=pid, speaking=speaking, level_dbov=level,
                    noise_floor_dbov=floor, video=video, muted=muted,
                    screen_share=s in presenters)
            if spoke != NEVER_MS:
                p.last_spoke_at_ms = spoke
        slots, levels, speaking, act = self.engine.ranking(r)
        for s, lv, spk, a in zip(slots, levels, speaking, act):
            out.active_speakers.add(participant_id=name(s), level_dbov=lv, speaking=spk,
                                    activity=a)
        return out

    def list_rooms(self, tenant: str, after_room_id: str = "", limit: int = 1000,
                   allowed: Callable[[str], bool] | None = None
                   ) -> tuple[list[pb.RoomSummary], bool]:
        """The tenant's rooms after ``after_room_id`` in id order, at most ``limit``, that
        ``allowed`` admits; and whether there are more."""
        st = self.engine.st
        ids = sorted(r for r in self._by_tenant.get(tenant, {}) if r > after_room_id
                     and (allowed is None or allowed(r)))
        out = []
        for room_id in ids[:limit]:
            room = self._by_tenant[tenant][room_id]
            shown = int(st.shown[room.index])
            out.append(pb.RoomSummary(room_id=room_id, timestamp_ms=room.end_t_ms,
                                      sequence=room.sequence,
                                      speaker_id=room.names.get(shown, "") if shown >= 0
                                      else "", participants=len(room.slots)))
        return out, len(ids) > limit

    def watch(self, room_id: str, watcher: Watcher, tenant: str = "") -> pb.RoomState | None:
        """Subscribe ``watcher`` to a room's events; returns the snapshot it starts from
        (None if the room does not exist: nothing is subscribed)."""
        snap = self.room_state(room_id, tenant)
        if snap is not None:
            self._subscribe(self.rooms[(tenant, room_id)], watcher)
        return snap

    def resume(self, room_id: str, watcher: Watcher, after_sequence: int, tenant: str = ""
               ) -> list[pb.RoomEvent] | None:
        """Subscribe ``watcher`` from just after ``after_sequence``: returns the retained
        events it missed (None if the room does not exist: nothing is subscribed). Raises
        LookupError, subscribing nothing, when those events are no longer all retained."""
        room = self.rooms.get((tenant, room_id))
        if room is None:
            return None
        history = room.history or ()
        first = history[0].sequence if history else room.sequence + 1
        if after_sequence > room.sequence:
            raise LookupError(f"after_sequence {after_sequence} is past the room's last "
                              f"sequence {room.sequence}")
        if after_sequence + 1 < first:
            raise LookupError(f"events after sequence {after_sequence} are no longer retained "
                              f"(oldest kept: {first})")
        missed = [m for m in history if m.sequence > after_sequence]
        self._subscribe(room, watcher)
        return missed

    def _subscribe(self, room: Room, watcher: Watcher) -> None:
        if room.history is None:
            room.history = deque(maxlen=self.config.watch_history_events)
        room.watchers.append(watcher)

    def unwatch(self, room_id: str, watcher: Watcher, tenant: str = "") -> None:
        room = self.rooms.get((tenant, room_id))
        if room is not None and watcher in room.watchers:
            room.watchers.remove(watcher)

    def when_created(self, room_id: str, wake: Callable[[], None], tenant: str = "") -> None:
        """Call ``wake`` once when the room appears."""
        self._room_waiters.setdefault((tenant, room_id), []).append(wake)

    def cancel_when_created(self, room_id: str, wake: Callable[[], None],
                            tenant: str = "") -> None:
        waiters = self._room_waiters.get((tenant, room_id))
        if waiters and wake in waiters:
            waiters.remove(wake)
            if not waiters:
                del self._room_waiters[(tenant, room_id)]

    def collect_idle(self, now_s: float) -> list[RoomKey]:
        """Drop rooms with no tick since ``now_s - idle_timeout_s``; returns their keys."""
        limit = now_s - self.config.idle_timeout_s
        gone = [key for key, room in self.rooms.items() if room.last_seen_s < limit]
        for key in gone:
            self.drop_room(key)
        return gone

    def drop_room(self, key: RoomKey, reason: str = "idle") -> int:
        """Forget a room; its watchers get a room_closed event, then their end. Returns the
        room's last sequence (that event's)."""
        room = self.rooms.pop(key)
        closed = pb.RoomEvent(room_id=room.room_id, timestamp_ms=room.end_t_ms,
                              room_closed=pb.RoomClosed(reason=reason))
        room.sequence += 1
        closed.sequence = room.sequence
        if room.history is not None:
            room.history.append(closed)
        if room.watchers:
            room.watchers[:] = [w for w in room.watchers if w(closed)]
        del self._by_tenant[room.tenant][room.room_id]
        if not self._by_tenant[room.tenant]:
            del self._by_tenant[room.tenant]
        del self._room_at[room.index]
        self._rooms_per_tenant[room.tenant] -= 1
        if not self._rooms_per_tenant[room.tenant]:
            del self._rooms_per_tenant[room.tenant]
        self.engine.remove_room(room.index)
        self._participants -= len(room.slots)
        left = self._participants_of.get(room.tenant, 0) - len(room.slots)
        if left > 0:
            self._participants_of[room.tenant] = left
        else:
            self._participants_of.pop(room.tenant, None)
        for w in room.watchers:
            close = getattr(w, "close", None)
            if close is not None:
                close()
        if self.metrics is not None:
            self.metrics.rooms.set(len(self.rooms))
            self.metrics.participants.set(self._participants)
        log.info("room %r of tenant %r dropped (%s)", room.room_id, room.tenant,
                 f"{self.config.idle_timeout_s:.0f} s idle" if reason == "idle" else reason)
        return room.sequence
