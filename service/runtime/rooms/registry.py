"""The room registry: protobuf batches in, engine calls, protobuf decisions out.

This is the one path from a ``StreamRequest`` to its ``StreamResponse``: the gRPC server,
the in-process replay, the tests and the benchmarks all call ``RoomRegistry.process``.
It validates each tick against its room before touching anything, so a refused tick leaves
its room exactly as it was and never affects the other rooms of the batch (validation.py);
then it applies the ticks, steps the engine and hands the events on (events.py).
"""
from __future__ import annotations

import logging
import operator
import zlib
from itertools import repeat
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass

import grpc
import numpy as np

from dsp import events as ev
from dsp.engine import Engine, PcmGroup, Wave
from dsp.rfc6464 import split_header_bytes
from dsp.state import NO_SLOT

from .. import wire
from ...api import speakerswitch_pb2 as pb
from ..auth import clip
from ..config import ServiceConfig
from ..metrics import Metrics
from .batches import (EVENTS_BEFORE_SIZE_CHECK, PREPARE_CHUNK, Entry, count_entries, fit,
                      in_waves, over_budget, read_in_parts)
from .events import convert, emit, encode, room_closed
from .model import (DEFAULT_DURATION_MS, MAX_TIMESTAMP_MS, TICK_DURATIONS_MS, Batch, Room,
                    RoomKey, TickError, Watcher)
from .snapshots import state_of, summary_of
from .validation import ET, Capacity, Growth, Plan, Steady, steady, tuning_for, validate
from .watchers import close_watchers, missed_after, subscribe, unsubscribe

log = logging.getLogger("speakerswitch.rooms")

RANKING_PHASES_MS = 1000
"""Rooms spread their ActiveSpeakers checks by a phase taken from the room id's hash: the
same room always gets the same phase, wherever and beside whatever it runs."""
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

_LAST_AUDIO = operator.attrgetter("_last_audio_t_ms")  # read once settled
_ROSTER = operator.attrgetter("roster")
_ROSTER_SLOTS = operator.attrgetter("roster_slots")
FEW_ROOMS = 8
"""Under this many rooms a wave's roster slots are built, not looked up in the kept ones:
the rooms of a group commit's drain (a few streams' messages) change every drain, and the
kept slots were compared, missed and rebuilt with their offsets, 29 us for 4 rooms
against 3 us for the concatenation alone (a patch needs 8 rooms per changed one)."""
_INDEX = operator.attrgetter("index")
"""Room fields read for every room of a batch (a map of these runs in C)."""


def _gather_frames(room: Room, t_ms: int, plan: Plan, lv_slots: list, lv_dbov: list,
                   lv_voice: list, pcm: dict) -> None:
    """Append a planned tick's level frames and PCM frames (by rate) to a wave's columns,
    and date its room: the one gathering of the general and the mostly steady paths."""
    lv_slots.extend(room.slots[p] for p in plan.level_ids)
    lv_dbov.extend(plan.level_dbov)
    lv_voice.extend(plan.level_voice)
    for key, (ids_, frames) in plan.pcm.items():
        g = pcm.setdefault(key, ([], []))
        g[0].extend(room.slots[p] for p in ids_)
        g[1].extend(frames)
    room.end_t_ms = t_ms + plan.duration_ms
    room.last_audio_t_ms = t_ms


@dataclass(eq=False)
class _SteadyRooms:
    """The rooms of the last batch stepped as columns and what ``_step_steady`` read from
    them: a media server sends the same rooms in the same order tick after tick, so the
    next such batch skips the per-room look-ups (~0.5 ms at 2,000 rooms). Their times
    wait here too, written into the rooms when one is read (Room's properties) or
    anything else changes a room (``RoomRegistry._changed``), which drops all this: one
    attribute write per room and tick on 2,000 rooms took 0.5-0.8 ms, the rooms' memory
    being cold by the next tick."""
    tenant: str
    ids: list[str]
    allowed: Callable[[str], bool] | None
    """The room pattern these ids passed (the same callable: a stream's own)."""
    rooms: list[Room]
    index: np.ndarray
    roster_slots: np.ndarray
    n_roster: np.ndarray
    t_ms: np.ndarray
    """Each room's last tick's timestamp: its last_t_ms and last_audio_t_ms."""
    end_t_ms: np.ndarray
    now_s: float
    pending: bool = False
    """Whether the times above are newer than the rooms' own."""

    def settle(self) -> None:
        now = self.now_s
        for room, t_ms, end_ms in zip(self.rooms, self.t_ms.tolist(), self.end_t_ms.tolist()):
            room._last_seen_s = now
            room._last_t_ms = room._last_audio_t_ms = t_ms
            room._end_t_ms = end_ms
        self.pending = False


_NO_ROOM = Room("", -1, pb.RoomConfig())
"""Stands for an unknown room where every tick's room is read at once (no roster, no
audio yet): such a tick is never steady."""


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
        self._roster_cache: tuple[list[np.ndarray], np.ndarray, list[int]] | None = None
        """The rooms' roster slots last concatenated, that concatenation, and where each
        room's part starts in it."""
        self._steady: _SteadyRooms | None = None
        self._events_out = 0
        """Events handed to responses by the batches being processed (none of the
        responses can be over max_message_bytes while this is small)."""
        self._room_waiters: dict[RoomKey, list[Callable[[], None]]] = {}
        self.capacity = Capacity(self.config, metrics)
        """Rooms and participants held, against their limits."""

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
        entries: list[Entry] = []
        stepped = False  # as columns, by _step_steady
        self._events_out = 0
        max_ticks = self.config.max_ticks_per_batch
        max_entries = self.config.max_entries_per_batch
        for batch, resp in zip(batches, responses):
            raw = batch.raw if batch.raw is not None else batch.request.SerializeToString()
            read = counted = ticks = None
            if len(raw) < 2 * PREPARE_CHUNK:  # at most PREPARE_CHUNK ticks (two bytes each
                # at least): read now, and counted from that, not from protobuf's tick list
                read = wire.steady_ticks(raw)
            n_ticks = len(read) if read is not None else len(batch.request.ticks)
            # a batch that may be over the entry budget is counted from its steady ticks; a
            # huge one is read in parts, other calls served in between
            if PREPARE_CHUNK < n_ticks <= max_ticks:
                read = yield from read_in_parts(raw, n_ticks)
                if len(raw) > max_entries:
                    counted = yield from count_entries(batch.request.ticks, read,
                                                       PREPARE_CHUNK)
            elif read is None and len(raw) > max_entries:
                read = wire.steady_ticks(raw)
            if n_ticks > max_ticks or len(raw) > max_entries:  # else within budget at once
                refusal = over_budget(batch.request, self.config, self.capacity.limit_hit,
                                      len(raw), read, counted)
                if refusal is not None:
                    self._reject(resp, refusal, 0, "")
                    continue
            if len(batches) == 1 and STEADY_COLUMNS_MIN_TICKS <= n_ticks <= MAX_TICKS_PER_STEP:
                columns = wire.steady_columns(
                    raw, self._steady.ids if self._steady is not None else None)
                if (self._step_steady(batch, resp, columns)
                        or self._step_mostly_steady(batch, resp, columns)):
                    stepped = True
                    yield
                    continue
            # read from the bytes even for one tick: 2 us against 4 us through protobuf
            if read is None:
                read = wire.steady_ticks(raw)
            if n_ticks == 1:  # a message per room: the usual shape
                r = read[0] if read is not None else None
                if r is None:
                    tick = batch.request.ticks[0]
                    entries.append((batch, resp, 0, tick, tick.room_id))
                else:
                    entries.append((batch, resp, 0, r, r[0]))
                continue
            ticks = batch.request.ticks
            for lo in range(0, n_ticks, PREPARE_CHUNK):  # a huge batch yields meanwhile
                hi = min(lo + PREPARE_CHUNK, n_ticks)
                if read is None:
                    entries.extend([(batch, resp, i, ticks[i], ticks[i].room_id)
                                    for i in range(lo, hi)])
                else:
                    entries.extend([(batch, resp, i, read[i], read[i][0])
                                    if read[i] is not None
                                    else (batch, resp, i, ticks[i], ticks[i].room_id)
                                    for i in range(lo, hi)])
                if hi < n_ticks:
                    yield
        waves = yield from in_waves(entries)
        for wave in waves if entries or not stepped else ():
            # rooms are independent: a wave of many rooms may be stepped in parts
            for start in range(0, max(len(wave), 1), MAX_TICKS_PER_STEP):
                self._process_wave(wave[start:start + MAX_TICKS_PER_STEP])
                yield
        for resp in responses if self._events_out > EVENTS_BEFORE_SIZE_CHECK else ():
            if len(resp.events) > EVENTS_BEFORE_SIZE_CHECK:
                fit(resp, self.config.max_message_bytes)
        if self.metrics is not None:
            self.metrics.batches.inc(len(batches))
        return responses

    def _process_wave(self, entries: list[Entry]) -> None:
        # Validate every tick first (a refused tick changes nothing), then apply. A media
        # server's steady ticks (known room, roster levels only) are checked in a few field
        # reads and kept as tuples: this loop runs for every room of every tick.
        self._changed()
        plans: list[tuple[Plan | Steady, pb.StreamResponse, Batch]] = []
        growth = Growth()
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
                if type(tick) is tuple:  # read from the bytes: steady()'s remaining checks,
                    # inlined, as this runs for every room of every tick
                    room = rooms_of.get(room_id)
                    if room is not None and room.roster:
                        _, t, d, levels = tick
                        last = room._last_audio_t_ms  # settled: by _changed() above
                        if (len(levels) == len(room.roster) and (last is None or t > last)
                                and 0 <= t <= MAX_TIMESTAMP_MS
                                and (not d or d in TICK_DURATIONS_MS)):
                            plans.append(((room, t, d or DEFAULT_DURATION_MS, levels),
                                          resp, batch))
                            continue
                    plan = None
                    tick = batch.request.ticks[i]
                else:
                    plan = steady(tick, rooms_of.get(room_id))
                if plan is None:
                    plan = validate(i, tick, batch.tenant, growth, self.rooms, self.capacity)
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
            if type(plan) is tuple:  # Steady: only audio, a few attributes to set
                room, t, duration, levels = plan
                index = room.index
                resp_of_room[index] = resp
                room._last_seen_s = batch.now_s
                room._last_t_ms = room._last_audio_t_ms = t
                room._end_t_ms = t + duration
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
            _gather_frames(room, tick.timestamp_ms, plan, lv_slots, lv_dbov, lv_voice, pcm)
            if plan.roster_levels:
                roster_rooms.append(room)
                roster_bytes.append(plan.roster_levels)
        wave = Wave(rooms=np.asarray(rooms, np.int64), t_ms=np.asarray(t_ms, np.int64),
                    duration_ms=np.asarray(durations, np.int64),
                    level_slots=np.asarray(lv_slots, np.int64),
                    level_dbov=np.asarray(lv_dbov, np.float32),
                    level_voice=np.asarray(lv_voice, np.int8),
                    pcm=[PcmGroup(np.asarray(s, np.int64), rate, frames)
                         for (rate, _n), (s, frames) in pcm.items()])
        if roster_bytes:
            self._add_roster_levels(wave, b"".join(roster_bytes), roster_rooms)
        self._step_and_emit(wave, out, resp_of_room.__getitem__, len(plans))

    def _add_roster_levels(self, wave: Wave, header_bytes: bytes, rooms: list[Room]) -> None:
        """Append the roster-ordered level bytes of ``rooms`` (in that order) to ``wave``'s
        level columns: the one step of the general and the mostly steady paths."""
        dbov, voice = split_header_bytes(header_bytes)
        slots = self._roster_slots(rooms)
        if len(wave.level_slots):
            wave.level_slots = np.concatenate([wave.level_slots, slots])
            wave.level_dbov = np.concatenate([wave.level_dbov, dbov])
            wave.level_voice = np.concatenate([wave.level_voice, voice])
        else:
            wave.level_slots, wave.level_dbov, wave.level_voice = slots, dbov, voice

    def _step_steady(self, batch: Batch, resp: pb.StreamResponse,
                     columns: wire.SteadyColumns | None) -> bool:
        """A media server's steady batch (every tick a known room's levels in its roster's
        order, one tick per room) stepped as columns: ``steady``'s checks on arrays, one
        engine step, no Python loop over the rooms but one that dates them. False, having
        changed nothing, when any tick is not such a tick: the general path, which gives
        the same responses, then takes the batch (tests/test_registry_paths.py)."""
        if columns is None:
            return False
        ids, t, duration, levels, n_levels = columns
        allowed = batch.room_allowed
        kept = self._steady
        if (kept is not None and ids is kept.ids  # the scanner saw the same rooms, in order
                and kept.tenant == batch.tenant and kept.allowed is allowed):
            rooms, index, slots = kept.rooms, kept.index, kept.roster_slots
            n_roster, last = kept.n_roster, kept.t_ms
        else:
            kept = None
            if None in ids:
                return False
            self._changed()  # the rooms' own times are read below
            rooms = list(map(self._by_tenant.get(batch.tenant, {}).get, ids))
            if None in rooms or len(set(ids)) != len(ids):
                return False
            if allowed is not None and not all(map(allowed, ids)):
                return False
            listed = list(map(_LAST_AUDIO, rooms))
            if None in listed:
                listed = [NO_AUDIO_YET_MS if x is None else x for x in listed]
            last = np.array(listed, np.int64)
            n_roster = np.fromiter(map(len, map(_ROSTER, rooms)), np.int64, len(rooms))
            index = np.fromiter(map(_INDEX, rooms), np.int64, len(rooms))
            index.flags.writeable = False  # kept for the next batch
            slots = self._roster_slots(rooms)
        n = len(rooms)
        ok = ((n_roster > 0) & (n_levels == n_roster)
              & (t > last) & (t >= 0) & (t <= MAX_TIMESTAMP_MS)
              & np.logical_or.reduce([duration == d for d in (0, *TICK_DURATIONS_MS)]))
        if not ok.all():
            return False
        duration = np.where(duration == 0, DEFAULT_DURATION_MS, duration)
        if kept is None:
            kept = self._steady = _SteadyRooms(batch.tenant, ids, allowed, rooms, index,
                                               slots, n_roster, t, t + duration, batch.now_s)
            for room in rooms:
                room.kept = kept
        else:
            kept.t_ms, kept.end_t_ms, kept.now_s = t, t + duration, batch.now_s
        kept.pending = True  # the rooms are dated when read
        level_dbov, voice = split_header_bytes(levels)
        wave = Wave(rooms=index, t_ms=t, duration_ms=duration, level_slots=slots,
                    level_dbov=level_dbov, level_voice=voice, pcm=[])
        self._step_and_emit(wave, [], lambda _index: resp, n)
        return True

    def _step_mostly_steady(self, batch: Batch, resp: pb.StreamResponse,
                            columns: wire.SteadyColumns | None) -> bool:
        """A batch of one tick per room, most of them steady but not all (a room's roster
        changed, a refused tick): what ``_process_wave`` does with it, and in the same
        order (rejections, state changes, the wave's rows and levels, the events), with
        the steady ticks checked and stepped as columns and only the others tick by tick.
        A batch of 2,000 rooms with one roster change took the general path's 5-6x the
        steady batch's time. False, having changed nothing, where it does not apply."""
        if columns is None:
            return False
        ids, t, duration, levels, n_levels = columns
        n = len(ids)
        odd = [i for i, room_id in enumerate(ids) if room_id is None]
        if 2 * len(odd) > n:
            return False  # mostly not steady: the general path
        ticks = batch.request.ticks
        all_ids = list(ids)
        for i in odd:
            all_ids[i] = ticks[i].room_id
        if len(set(all_ids)) != n:
            return False  # a room ticks twice: waves
        self._changed()
        tenant, allowed = batch.tenant, batch.room_allowed
        rooms_of = self._by_tenant.get(tenant, {})
        rooms = list(map(rooms_of.get, all_ids))
        known = np.fromiter(map(operator.is_not, rooms, repeat(None)), bool, n)
        present = rooms if known.all() else [_NO_ROOM if r is None else r for r in rooms]
        in_roster = np.fromiter(map(len, map(_ROSTER, present)), np.int64, n)
        listed = list(map(_LAST_AUDIO, present))  # settled: by _changed() above
        if None in listed:
            listed = [NO_AUDIO_YET_MS if x is None else x for x in listed]
        last = np.array(listed, np.int64)
        ok = (np.fromiter(map(operator.is_not, ids, repeat(None)), bool, n) & known
              & (in_roster > 0) & (n_levels == in_roster) & (t > last) & (t >= 0)
              & (t <= MAX_TIMESTAMP_MS)
              & np.logical_or.reduce([duration == d for d in (0, *TICK_DURATIONS_MS)]))
        if allowed is not None:
            ok &= np.fromiter(map(allowed, all_ids), bool, n)
        if 2 * int(ok.sum()) < n:
            return False  # (nothing changed: _changed() only wrote waiting times)
        # the others as _process_wave takes them, in order: refused, or a plan
        plans: dict[int, Plan | Steady] = {}
        growth = Growth()
        for i in np.flatnonzero(~ok).tolist():
            room_id = all_ids[i]
            try:
                if allowed is not None and not allowed(room_id):
                    raise TickError(grpc.StatusCode.PERMISSION_DENIED, f"ticks[{i}].room_id",
                                    f"room {clip(room_id)} is outside the token's rooms")
                plan = None if ids[i] is not None else steady(ticks[i], rooms_of.get(room_id))
                if plan is None:
                    plan = validate(i, ticks[i], tenant, growth, self.rooms, self.capacity)
            except TickError as e:
                self._reject(resp, e, i, room_id)
                continue
            plans[i] = plan
        # apply: the steady ones dated, the plans in order
        duration = np.where(duration == 0, DEFAULT_DURATION_MS, duration)
        now = batch.now_s
        steady_at = np.flatnonzero(ok)
        for i, t_ms, end_ms in zip(steady_at.tolist(), t[steady_at].tolist(),
                                   (t + duration)[steady_at].tolist()):
            room = rooms[i]
            room._last_seen_s = now
            room._last_t_ms = room._last_audio_t_ms = t_ms
            room._end_t_ms = end_ms
        out: list[tuple[Room, list[pb.RoomEvent], pb.StreamResponse]] = []
        row = ok.copy()
        index = np.zeros(n, np.int64)
        index[steady_at] = np.fromiter(map(_INDEX, map(rooms.__getitem__, steady_at.tolist())),
                                       np.int64, len(steady_at))
        t_row, d_row = t.copy(), duration.copy()
        roster_row = ok.copy()
        roster_bytes: dict[int, bytes] = {}
        lv_slots: list[int] = []
        lv_dbov: list[float] = []
        lv_voice: list[int] = []
        pcm: dict[tuple[int, int], tuple[list[int], list[bytes]]] = {}
        for i, plan in plans.items():
            if type(plan) is tuple:  # Steady
                room, t_ms, d_ms, lv = plan
                room._last_seen_s = now
                room._last_t_ms = room._last_audio_t_ms = t_ms
                room._end_t_ms = t_ms + d_ms
                rooms[i] = room
                row[i] = roster_row[i] = True
                index[i], t_row[i], d_row[i] = room.index, t_ms, d_ms
                roster_bytes[i] = lv
                continue
            room, state_events = self._apply_state(plan, now, tenant)
            rooms[i] = room
            out.append((room, state_events, resp))
            if not (plan.level_ids or plan.pcm or plan.roster_levels):
                continue  # events only: nobody's audio advances
            tick = plan.tick
            row[i] = True
            index[i], t_row[i], d_row[i] = room.index, tick.timestamp_ms, plan.duration_ms
            _gather_frames(room, tick.timestamp_ms, plan, lv_slots, lv_dbov, lv_voice, pcm)
            if plan.roster_levels:
                roster_row[i] = True
                roster_bytes[i] = plan.roster_levels
        # the roster levels in tick order: the steady ticks' bytes between the others'
        ends = np.cumsum(n_levels).tolist()
        parts, at = [], 0
        for i in np.flatnonzero(~ok).tolist():
            start = ends[i] - int(n_levels[i])
            parts.append(levels[at:start])
            if i in roster_bytes:
                parts.append(roster_bytes[i])
            at = ends[i]
        parts.append(levels[at:])
        rows = np.flatnonzero(row)
        wave = Wave(rooms=index[rows], t_ms=t_row[rows], duration_ms=d_row[rows],
                    level_slots=np.asarray(lv_slots, np.int64),
                    level_dbov=np.asarray(lv_dbov, np.float32),
                    level_voice=np.asarray(lv_voice, np.int8),
                    pcm=[PcmGroup(np.asarray(s, np.int64), rate, frames)
                         for (rate, _n), (s, frames) in pcm.items()])
        roster_at = np.flatnonzero(roster_row).tolist()
        if roster_at:
            self._add_roster_levels(wave, b"".join(parts), [rooms[i] for i in roster_at])
        self._step_and_emit(wave, out, lambda _index: resp, len(steady_at) + len(plans))
        return True

    def _step_and_emit(self, wave: Wave,
                       out: list[tuple[Room, list[pb.RoomEvent], pb.StreamResponse]],
                       resp_of: Callable[[int], pb.StreamResponse], n_ticks: int) -> None:
        """Step the wave; hand the state events ``out`` and the step's decisions (to the
        response ``resp_of(room index)``) to responses and watchers."""
        step_events = self.engine.step(wave) if len(wave.rooms) else []
        self._events_out += len(step_events) + sum(len(msgs) for _, msgs, _ in out)
        for room, msgs, resp in out:
            emit(room, msgs, resp, self.metrics)
        grouped: dict[int, list[ev.Event]] = {}
        for e in step_events:
            grouped.setdefault(e.room, []).append(e)
        encoded: dict[int, tuple[pb.StreamResponse, bytearray]] = {}  # by id(response)
        for index, events in grouped.items():
            room = self._room_at[index]
            resp = resp_of(index)
            pending = encoded.get(id(resp))
            if pending is None:
                pending = encoded[id(resp)] = (resp, bytearray())
            if encode(room, events, pending[1], self.metrics):
                continue
            if pending[1]:  # the events encoded so far go first
                resp.MergeFromString(bytes(pending[1]))
                del pending[1][:]
            msgs: list[pb.RoomEvent] = []
            convert(room, events, msgs)
            emit(room, msgs, resp, self.metrics)
        for resp, pending in encoded.values():
            if pending:
                resp.MergeFromString(bytes(pending))
        if self.metrics is not None:
            m = self.metrics
            m.ticks.inc(n_ticks)
            n_levels = len(wave.level_slots)
            n_pcm = sum(len(g.slots) for g in wave.pcm)
            if n_levels:
                m.frames.labels("level").inc(n_levels)
            if n_pcm:
                m.frames.labels("pcm").inc(n_pcm)

    def _changed(self) -> None:
        """A room is about to change other than by ``_step_steady``: what it kept of the
        rooms it stepped no longer holds (their waiting times are written into them)."""
        kept = self._steady
        if kept is not None:
            if kept.pending:
                kept.settle()
            self._steady = None
            # the rooms still point here (not pending: never read again); let go of them,
            # so that a room dropped meanwhile is not kept alive by the others
            kept.rooms, kept.ids = [], []

    def _roster_slots(self, rooms: list[Room]) -> np.ndarray:
        """The slots of these rooms' rosters, end to end: the order of their level bytes.
        Kept while the rooms and their rosters stay the same (one concatenation of
        thousands of small arrays per tick is not free)."""
        key = list(map(_ROSTER_SLOTS, rooms))
        if len(key) < FEW_ROOMS:
            slots = np.concatenate(key) if key else np.zeros(0, np.int64)
            slots.flags.writeable = False
            return slots
        cached = self._roster_cache
        if cached is not None and len(cached[0]) == len(key):
            same = list(map(operator.is_, key, cached[0]))
            if all(same):
                return cached[1]
            changed = [i for i, kept in enumerate(same) if not kept]
            if len(changed) <= len(key) // 8 and all(
                    len(key[i]) == len(cached[0][i]) for i in changed):
                # a few rooms' rosters changed, not their sizes: patched, not rebuilt
                slots, starts = cached[1].copy(), cached[2]
                for i in changed:
                    slots[starts[i]:starts[i] + len(key[i])] = key[i]
                slots.flags.writeable = False
                self._roster_cache = (key, slots, starts)
                return slots
        slots = np.concatenate(key) if key else np.zeros(0, np.int64)
        slots.flags.writeable = False
        starts = np.concatenate([[0], np.cumsum(list(map(len, key)))[:-1]]).astype(
            np.int64).tolist() if key else []
        self._roster_cache = (key, slots, starts)
        return slots

    def _reject(self, resp: pb.StreamResponse, e: TickError, index: int, room_id: str) -> None:
        resp.rejections.add(code=e.code.value[0], tick_index=index, room_id=room_id,
                            field=e.field, message=e.message)
        if self.metrics is not None:
            self.metrics.errors.labels(e.code.name).inc()

    # ------------------------------------------------------------------ state changes
    def _apply_state(self, plan: Plan, now_s: float, tenant: str
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
                    convert(room, eng.remove_participant(slot, t), out)
                    self._leave(room, pid)
                continue
            if e.type == ET.PARTICIPANT_EVENT_TYPE_UNPIN:
                convert(room, eng.set_pinned(room.index, NO_SLOT, t), out)
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
            convert(room, result, out)
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
        self._changed()
        cfg = pb.RoomConfig()
        cfg.CopyFrom(config)
        index = self.engine.add_room(tuning_for(cfg, self.config.profile),
                                     zlib.crc32(room_id.encode()) % RANKING_PHASES_MS)
        room = Room(room_id, index, cfg, tenant=tenant)
        self.rooms[(tenant, room_id)] = room
        self._by_tenant.setdefault(tenant, {})[room_id] = room
        self._room_at[index] = room
        self.capacity.room_added(tenant)
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
        self.capacity.joined(room.tenant)
        return slot

    def _leave(self, room: Room, pid: str) -> None:
        slot = room.slots.pop(pid)
        del room.names[slot]
        self.capacity.left(room.tenant)
        if pid in room.roster:
            self._set_roster(room, room.roster)

    def _set_roster(self, room: Room, roster: tuple[str, ...]) -> None:
        """Keep the roster's slots cached; a participant who left drops out of it."""
        self._changed()
        roster = tuple(p for p in roster if p in room.slots)
        room.roster = roster
        room.roster_slots = np.asarray([room.slots[p] for p in roster], np.int64)

    # ------------------------------------------------------------------ queries
    def room_state(self, room_id: str, tenant: str = "") -> pb.RoomState | None:
        room = self.rooms.get((tenant, room_id))
        if room is None:
            return None
        return state_of(room, self.engine, self.config.profile)

    def list_rooms(self, tenant: str, after_room_id: str = "", limit: int = 1000,
                   allowed: Callable[[str], bool] | None = None
                   ) -> tuple[list[pb.RoomSummary], bool]:
        """The tenant's rooms after ``after_room_id`` in id order, at most ``limit``, that
        ``allowed`` admits; and whether there are more."""
        ids = sorted(r for r in self._by_tenant.get(tenant, {}) if r > after_room_id
                     and (allowed is None or allowed(r)))
        out = [summary_of(self._by_tenant[tenant][room_id], self.engine)
               for room_id in ids[:limit]]
        return out, len(ids) > limit

    def watch(self, room_id: str, watcher: Watcher, tenant: str = "") -> pb.RoomState | None:
        """Subscribe ``watcher`` to a room's events; returns the snapshot it starts from
        (None if the room does not exist: nothing is subscribed)."""
        snap = self.room_state(room_id, tenant)
        if snap is not None:
            subscribe(self.rooms[(tenant, room_id)], watcher, self.config.watch_history_events)
        return snap

    def resume(self, room_id: str, watcher: Watcher, after_sequence: int, tenant: str = ""
               ) -> list[pb.RoomEvent] | None:
        """Subscribe ``watcher`` from just after ``after_sequence``: returns the retained
        events it missed (None if the room does not exist: nothing is subscribed). Raises
        LookupError, subscribing nothing, when those events are no longer all retained."""
        room = self.rooms.get((tenant, room_id))
        if room is None:
            return None
        missed = missed_after(room, after_sequence)
        subscribe(room, watcher, self.config.watch_history_events)
        return missed

    def unwatch(self, room_id: str, watcher: Watcher, tenant: str = "") -> None:
        room = self.rooms.get((tenant, room_id))
        if room is not None:
            unsubscribe(room, watcher)

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
        self._changed()
        room = self.rooms.pop(key)
        room_closed(room, reason)
        del self._by_tenant[room.tenant][room.room_id]
        if not self._by_tenant[room.tenant]:
            del self._by_tenant[room.tenant]
        del self._room_at[room.index]
        self.engine.remove_room(room.index)
        self.capacity.room_dropped(room.tenant, len(room.slots))
        close_watchers(room)
        if self.metrics is not None:
            self.metrics.rooms.set(len(self.rooms))
            self.metrics.participants.set(self.capacity.participants)
        log.info("room %r of tenant %r dropped (%s)", room.room_id, room.tenant,
                 f"{self.config.idle_timeout_s:.0f} s idle" if reason == "idle" else reason)
        return room.sequence
