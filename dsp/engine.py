"""The engine: one batch of ticks in, decisions out, all in media time.

A *wave* holds at most one tick per room (a request carrying several ticks of one room is
cut into consecutive waves by the caller). For a wave, every participant of every room in
it is advanced by one frame with array operations; Python runs only per event (a switch, a
speaking change) and per room that is due an ActiveSpeakers ranking.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import chain

import numpy as np

from . import activity, dsi, forwarding, switching
from . import events as ev
from .pcm import VAD_RATE_HZ, for_vad
from .pcm import level_dbov as pcm_level_dbov
from .rfc6464 import SILENCE_DBOV
from .state import LONG_TURN_MS, NEVER_MS, NO_SLOT, NOT_RANKED, UNKNOWN, EngineState, Rows
from .tuning import DSI, LOUDEST, PROFILES, SPEAKERSWITCH, Tuning
from .vad import VadBank

try:  # the compiled level path (dsp/_kernel.c), built by `pip install` when it can be
    from . import _kernel
except ImportError:  # no C compiler at install time: the numpy path, the same decisions
    _kernel = None
if _kernel is not None and getattr(_kernel, "ABI", None) != 12:
    _kernel = None  # a stale build of an older dsp/_kernel.c (rebuild: pip install -e .)
KERNEL_EVENTS = ((ev.SpeakingChange, ("room", "t_ms", "slot", "speaking")),
                 (ev.ActiveSpeakersUpdate, ("room", "t_ms", "slots", "levels_dbov", "speaking",
                                            "activity")))
"""The events dsp/_kernel.c makes itself, with the fields it fills, in its order."""
if _kernel is not None:
    if all({f.name for f in dataclasses.fields(cls)} == set(names)
           for cls, names in KERNEL_EVENTS):
        _kernel.event_types(*chain.from_iterable(KERNEL_EVENTS))
    else:  # an event has a field the kernel does not fill: the numpy path
        _kernel = None
KERNEL = "c" if _kernel is not None and os.environ.get("DSP_KERNEL", "") != "numpy" \
    else "numpy"
"""The level path ``Engine.step`` runs: "c" (dsp/_kernel.c, one call per wave) when it is
built, else "numpy"; DSP_KERNEL=numpy forces numpy (tests compare the two). Both give
byte-identical decisions (tests/test_engine_paths.py)."""

SLOT_FIELDS = ("energy_voice_snr_db", "min_snr_db", "min_level_dbov", "speech_margin_db",
               "min_run_ms", "activity_attack_ms",
               "speaking_on", "speaking_off", "switch_margin_db", "evidence_decay",
               "takeover_recency_ms", "min_modulation_db", "speaking_interval_ms",
               "no_audio_timeout_ms",
               "vad_mode", "algorithm")
"""The Tuning fields read per participant on the audio path (the others per room)."""
KERNEL_STATE = ("noise_floor", "speech_level", "level_smooth", "activity", "speaking",
                "last_active_ms", "run_start_ms", "loud_since_ms", "onset_ms", "evidence_ms",
                "voiced_run_ms", "last_level", "modulation_db", "impulse_peak_dbov",
                "impulse_low_dbov", "impulse", "follow_db", "move_db", "muted",
                "silent",
                "last_frame_ms", "reported_speaking", "reported_ms", "joined", "has_held",
                "echo_peak_dbov", "echo_peak_ms", "echo_coupling_db", "holder",
                "floor_since_ms", "previous_holder", "previous_turn_ms",
                "room_t_ms", "ranking_t_ms", "ranking_phase_ms", "ranked", "slot_room", "video",
                "pinned", "shown", "forwarded", "forwarded_main")
"""The EngineState arrays dsp/_kernel.c reads and writes, in the order of its ``state``."""
ROOM_FIELDS = ("hold_ms", "min_speech_ms", "interrupt_ms", "outlast_ms", "outlast_total_ms",
               "silent_hold_ms", "active_speakers_interval_ms", "active_speakers",
               "forwarding_size", "overlap_margin_db", "reply_hold_ms", "reply_turn_ms",
               "newcomer_speech_ms", "long_turn_ms", "long_turn_hold_ms")
LAYOUT_CACHE_SLOTS = 100_000
"""Slots of all cached wave layouts (~250 bytes each: ~25 MB at most). One wave of every
room, or one wave per room of a server sending a message per room, fits many times."""


@dataclass
class PcmGroup:
    """PCM frames of one sample rate and length (one row per participant)."""
    slots: np.ndarray
    sample_rate_hz: int
    frames: list[bytes]


@dataclass
class Wave:
    """At most one tick per room: its start and length, and the participants' audio.

    Participants of these rooms without audio in the wave are taken as silent.
    """
    rooms: np.ndarray                       # int, unique
    t_ms: np.ndarray                        # int64, tick start per room
    duration_ms: np.ndarray                 # int, tick length per room
    level_slots: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    level_dbov: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    level_voice: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    pcm: list[PcmGroup] = field(default_factory=list)


@dataclass
class _Layout:
    """Which slots a wave of these rooms touches, and their per-slot tuning.

    Gathering ~20 tuning arrays for every participant costs more than the rest of a step;
    they change only with membership, tuning, the set of rooms in the wave or their frame
    lengths, so a media server sending every room every tick gathers them once, and one
    sending a message per room gathers each room's once."""
    key: tuple
    idx: np.ndarray                 # the slots of the wave's rooms, ascending
    rows: slice | np.ndarray        # idx as a slice when contiguous: views, not gathers
    room_of: np.ndarray             # their rooms
    all_ours: bool                  # every room of the wave runs our floor logic
    # per slot, for the numpy path (gathered at its first use there: Engine._per_slot)
    dt: np.ndarray = None           # frame length per slot, ms (float32)
    tuning: dict[str, np.ndarray] = None  # SLOT_FIELDS per slot
    alpha: dict[str, np.ndarray] = None   # activity.coefficients per slot
    pos: np.ndarray = None          # position of each slot's room in the wave's rooms
    rooms: np.ndarray = None        # the wave's rooms and frame lengths (the key's)
    duration_ms: np.ndarray = None
    dt_room: np.ndarray = None      # frame length per room of the wave, ms (float32)
    tun: np.ndarray = None          # rooms of the wave x SLOT_FIELDS[:14] (the kernel's)
    coef: np.ndarray = None         # rooms of the wave x activity.TIME_CONSTANTS
    room_tun: np.ndarray = None     # rooms of the wave x ROOM_FIELDS
    kernel: object = None           # the arrays for _kernel.advance, held (made at first use)
    live: np.ndarray = None         # _kernel.advance's outputs (scratch)
    active: np.ndarray = None
    started: np.ndarray = None
    reports: np.ndarray = None
    refresh: np.ndarray = None
    changes: np.ndarray = None
    due: np.ndarray = None
    t_end_room: np.ndarray = None
    members: np.ndarray = None      # idx grouped by room (of the wave) ...
    member_start: np.ndarray = None  # ... room p's from member_start[p]


def _active_speakers_updates(rooms: np.ndarray, t_ms: np.ndarray, n: np.ndarray,
                             slots: np.ndarray, levels: np.ndarray, speaking: np.ndarray,
                             activity: np.ndarray) -> list[ev.ActiveSpeakersUpdate]:
    """One ActiveSpeakersUpdate per row of the per-place columns (``slots`` ...), with its
    first ``n`` places, in row order. Rows of one length are cut and made tuples together
    (numpy, then ``map``: C loops), and made into events a column at a time: cutting
    each event's four columns in Python cost more than the rest of a ranking (hundreds
    of rooms change their ranking at once)."""
    out: list[ev.ActiveSpeakersUpdate] = []
    order = np.argsort(n, kind="stable")  # rows of one length next to each other
    lengths, starts = np.unique(n[order], return_index=True)
    for length, rows in zip(lengths.tolist(), np.split(order, starts[1:])):
        places = [map(tuple, column[rows, :length].tolist())
                  for column in (slots, levels, speaking, activity)]
        out += ev.many(ev.ActiveSpeakersUpdate, rooms[rows].tolist(), t_ms[rows].tolist(),
                       *places)
    if len(lengths) <= 1:
        return out
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order))
    return [out[i] for i in position.tolist()]


def _allocate(free: list[int], size: int, grow: Callable[[int], None], minimum: int) -> int:
    """A free index; when there is none, the arrays double (amortized O(1) joins)."""
    if not free:
        new_size = max(minimum, 2 * size)
        grow(new_size)
        free.extend(range(new_size - 1, size - 1, -1))
    return free.pop()


class Engine:
    """State of many rooms in flat arrays, and the operations on it."""

    def __init__(self) -> None:
        self.st = EngineState()
        self.vads = VadBank()
        self.dsi = dsi.DsiState()
        self._free_slots: list[int] = []
        self._free_rooms: list[int] = []
        self._layouts: dict[tuple, _Layout] = {}  # by key; all of one layout_version
        self._layouts_slots = 0                   # their slots in all (the cache's size)
        self._joins = 0
        self.kernel = KERNEL  # "c" or "numpy"; a test may set it per engine
        self._kernel_state: tuple | None = None  # (st, its arrays_version, _kernel.State)
        self._room_tables: tuple = (None,)  # (st, key, the kernel's tables of every room)

    # ------------------------------------------------------------------ rooms & members
    def add_room(self, tuning: Tuning = PROFILES["meeting"], ranking_phase_ms: int = 0) -> int:
        """A new room. ``ranking_phase_ms`` offsets its ActiveSpeakers schedule, so that
        thousands of rooms do not all rank on the same tick; derive it from something
        stable (the room id), so a room decides the same whatever else is running."""
        st = self.st
        st.check_tuning(tuning)  # before a room is taken
        room = _allocate(self._free_rooms, st.n_rooms, st.grow_rooms, 8)
        st.reset_room(room)
        st.ranking_phase_ms[room] = ranking_phase_ms
        st.set_tuning(room, tuning)
        return room

    def remove_room(self, room: int) -> None:
        st = self.st
        for slot in st.room_slots[room]:
            st.reset_slot(slot, -1)
            self._free_slots.append(slot)
        st.reset_room(room)
        self.dsi.next_decision_ms.pop(room, None)
        self._free_rooms.append(room)

    def set_tuning(self, room: int, tuning: Tuning) -> None:
        self.st.set_tuning(room, tuning)

    def tuning(self, room: int) -> Tuning:
        return self.st.get_tuning(room)

    def add_participant(self, room: int) -> int:
        st = self.st
        slot = _allocate(self._free_slots, st.n_slots, st.grow_slots, 16)
        st.reset_slot(slot, room)
        self._joins += 1
        st.joined[slot] = self._joins
        st.room_slots[room].append(slot)
        self.vads.reset(slot, int(st.tuning["vad_mode"][room]))
        self.dsi.reset(slot)
        return slot

    def remove_participant(self, slot: int, t_ms: int) -> list[ev.Event]:
        """The participant leaves; if it held the floor, was shown or presented, hand over
        at once."""
        st = self.st
        room = int(st.slot_room[slot])
        out: list[ev.Event] = []
        if st.reported_speaking[slot]:
            out.append(ev.SpeakingChange(room, t_ms, slot, False))
        st.room_slots[room].remove(slot)
        if st.pinned[room] == slot:
            st.pinned[room] = NO_SLOT
        if st.holder[room] == slot:
            out.append(switching.set_holder(st, room, NO_SLOT, t_ms))
        if st.previous_holder[room] == slot:
            st.previous_holder[room] = NO_SLOT
        presentation = switching.set_presenting(st, room, slot, False, t_ms)
        if presentation is not None:
            out.append(presentation)
        was_shown = st.shown[room] == slot
        if was_shown:
            st.shown[room] = NO_SLOT
        st.reset_slot(slot, -1)
        self._free_slots.append(slot)
        if was_shown:
            # one switch, from the leaver straight to its successor (or to nobody)
            d = switching.update_shown(st, room, t_ms, ev.LEFT)
            out.append(dataclasses.replace(d, previous=slot) if d is not None else
                       ev.SwitchDecision(room, t_ms, NO_SLOT, slot, ev.LEFT, -127.0,
                                         int(st.holder[room]), 0, bool(st.presenters[room])))
        return self._with_forwarding(room, t_ms, out)

    def set_video(self, slot: int, on: bool, t_ms: int) -> list[ev.Event]:
        """Camera on/off: no debounce, the feed follows at once."""
        st = self.st
        if bool(st.video[slot]) == on:
            return []
        st.video[slot] = on
        room = int(st.slot_room[slot])
        d = switching.update_shown(st, room, t_ms, ev.VIDEO_ON if on else ev.VIDEO_OFF)
        return self._with_forwarding(room, t_ms, [d] if d is not None else [])

    def set_muted(self, slot: int, muted: bool, t_ms: int) -> list[ev.Event]:
        """Muting stops a speaker at once: no lingering 'speaking' state, and the floor is
        released (the next speaker needs only min_speech_ms)."""
        st = self.st
        if bool(st.muted[slot]) == muted:
            return []
        st.muted[slot] = muted
        if not muted:
            return []
        room = int(st.slot_room[slot])
        out: list[ev.Event] = []
        if st.reported_speaking[slot]:
            out.append(ev.SpeakingChange(room, t_ms, slot, False))
        st.speaking[slot] = st.reported_speaking[slot] = False
        st.reported_ms[slot] = t_ms
        st.activity[slot] = 0.0
        st.evidence_ms[slot] = 0.0
        if st.holder[room] == slot:
            out.append(switching.set_holder(st, room, NO_SLOT, t_ms))
        return out

    def set_pinned(self, room: int, slot: int, t_ms: int) -> list[ev.Event]:
        st = self.st
        if st.pinned[room] == slot:
            return []
        st.pinned[room] = slot
        d = switching.update_shown(st, room, t_ms, ev.PINNED if slot >= 0 else ev.UNPINNED)
        return self._with_forwarding(room, t_ms, [d] if d is not None else [])

    def set_presenting(self, slot: int, on: bool, t_ms: int) -> list[ev.Event]:
        room = int(self.st.slot_room[slot])
        d = switching.set_presenting(self.st, room, slot, on, t_ms)
        return [d] if d is not None else []

    # ------------------------------------------------------------------ failover
    def restore_participant(self, slot: int, t_ms: int, *, video: bool, muted: bool,
                            speaking: bool, noise_floor_dbov: float | None,
                            level_dbov: float, activity_share: float = 0.0) -> None:
        """Warm a newly added participant with what another process knew of it (a room
        moving after a failure): its camera and mute state, and enough of its audio
        state that a speaker who goes on talking keeps the floor (``t_ms``: when it was
        last known). Audio history is not needed: the rest rebuilds in a few seconds."""
        st = self.st
        st.video[slot], st.muted[slot] = video, muted
        if noise_floor_dbov is not None:
            st.noise_floor[slot] = noise_floor_dbov
        st.level_smooth[slot] = level_dbov
        st.activity[slot] = activity_share
        st.speaking[slot] = st.reported_speaking[slot] = speaking
        if speaking:
            st.last_active_ms[slot] = st.run_start_ms[slot] = st.onset_ms[slot] = t_ms
            st.last_frame_ms[slot] = t_ms
        elif activity_share >= activity.ONSET_RESET_ACTIVITY:
            # a run goes on (its next frame starts none): count it from now, not from never
            st.run_start_ms[slot] = t_ms

    def restore_decisions(self, room: int, t_ms: int, *, shown: int, holder: int,
                          pinned: int, presenters: list[int], forwarding: list[int]) -> None:
        """Take over the decisions another process had made for ``room`` (failover), with
        no events: the first tick here then changes nothing that its audio does not."""
        st = self.st
        st.shown[room], st.holder[room], st.pinned[room] = shown, holder, pinned
        if holder >= 0:  # of who held the floor before, only the holder is known
            st.has_held[holder] = True
        st.floor_since_ms[room], st.previous_holder[room] = NEVER_MS, NO_SLOT
        st.previous_turn_ms[room] = LONG_TURN_MS
        st.presenters[room] = list(presenters)
        # members count as just admitted: a failover is no reason to churn the SFU's streams
        st.forwarding[room] = list(forwarding)
        st.forwarding_since[room] = {s: t_ms for s in forwarding}
        st.last_forwarding[room] = tuple(forwarding)
        st.forwarded_main[room] = UNKNOWN  # no copy in st.forwarded: the next refresh runs
        st.room_t_ms[room] = t_ms

    def _with_forwarding(self, room: int, t_ms: int, out: list[ev.Event],
                         started: list[int] | tuple[int, ...] = ()) -> list[ev.Event]:
        f = forwarding.refresh(self.st, room, t_ms, started)
        if f is not None:
            out.append(f)
        return out

    # ------------------------------------------------------------------ audio
    def step(self, wave: Wave) -> list[ev.Event]:
        """Advance every participant of the wave's rooms by one frame; return decisions.

        A participant of these rooms with no frame in the wave keeps its state (packet
        loss) until ``no_audio_timeout_ms`` after its last frame; then it is advanced as
        quiet (its noise floor, unvoiced: Opus DTX), or as digital silence if its last
        frame was (a muted track)."""
        if self.kernel == "c":
            return self._step_kernel(wave)
        return self._step_numpy(wave)

    def _step_kernel(self, wave: Wave) -> list[ev.Event]:
        """``step`` with the compiled kernel: activity, speaking reports, floor evidence
        and takeovers (rooms of our algorithm), the forwarding prefilter and the ranking
        check in one call; Python for the events only."""
        st = self.st
        rooms = np.asarray(wave.rooms, dtype=np.int64)
        if len(rooms) == 0:
            return []
        layout = self._layout_for(rooms, np.asarray(wave.duration_ms, np.int64))
        plan = layout.kernel
        if plan is None:
            plan = layout.kernel = _kernel.layout(
                layout.all_ours, layout.idx, layout.pos, layout.rooms, layout.duration_ms,
                layout.dt_room, layout.tun, layout.coef, layout.room_tun, layout.members,
                layout.member_start, layout.t_end_room, layout.live, layout.active,
                layout.started, layout.refresh, layout.reports, layout.changes, layout.due)
        held = self._kernel_state
        if held is None or held[0] is not st or held[1] != st.arrays_version:
            held = self._kernel_state = (st, st.arrays_version, _kernel.state(
                *(getattr(st, name) for name in KERNEL_STATE)))
        t_end_room = layout.t_end_room
        t_ms = np.asarray(wave.t_ms, np.int64)
        level, voice = wave.level_dbov, wave.level_voice
        made = None
        if not wave.pcm:
            # every participant has a level, in slot order (a server's steady state)?
            made = _kernel.advance(plan, held[2], np.asarray(wave.level_slots, np.int64),
                                   np.asarray(level, np.float32), np.asarray(voice, np.int8),
                                   None, t_ms)
        if made is None:
            level, voice, present = self._frames(wave, layout)
            made = _kernel.advance(plan, held[2], layout.idx, level, voice, present, t_ms)
        out, n_start, n_chg, rankings = made  # SpeakingChange events first
        idx, room_of, pos = layout.idx, layout.room_of, layout.pos
        if layout.all_ours:
            changes = layout.changes[:n_chg].tolist() if n_chg else []
        else:
            live = self._per_slot(layout).live
            level = np.where(st.muted[idx], SILENCE_DBOV, np.asarray(level, np.float32))
            changes = self._floor_by_algorithm(
                rooms, t_end_room, idx[live], room_of[live], t_end_room[pos[live]],
                level[live], layout.active[live], layout.dt[live],
                {k: v[live] for k, v in layout.tuning.items()})
            where = {r: p for p, r in enumerate(rooms.tolist())}
            changes = [(where[room], slot) for room, slot in changes]
        if n_start or changes:
            self._floor_and_forwarding(rooms, t_end_room, idx, room_of, layout.started[:n_start],
                                       layout.refresh[:n_start], changes, out)
        if rankings:
            out += rankings
        return out

    def _floor_and_forwarding(self, rooms, t_end_room, idx, room_of, started, refresh_flags,
                              changes, out) -> None:
        """The floor ``changes`` (wave room position, new holder) and the forwarding sets
        of the rooms whose floor moved or where someone ``started`` speaking (those of
        ``refresh_flags``, which the kernel judged before any floor moved)."""
        st = self.st
        floor_moved = []
        for p, slot in changes:
            room, t = int(rooms[p]), int(t_end_room[p])
            floor = switching.set_holder(st, room, slot, t)
            if floor is not None:
                out.append(floor)
                d = switching.update_shown(st, room, t, ev.DOMINANT_SPEAKER)
                if d is not None:
                    out.append(d)
                floor_moved.append(room)
        if floor_moved:  # the main feeds may have moved: judge again
            refresh = self._forwarding_to_refresh(idx[started], room_of[started])
        else:
            refresh = {}
            started = started[refresh_flags]
            for room, slot in zip(room_of[started].tolist(), idx[started].tolist()):
                refresh.setdefault(room, []).append(slot)
        for room in floor_moved:
            refresh.setdefault(room, [])
        if refresh:  # each room's end of tick, looked up for these rooms only
            end_of_room = np.zeros(st.n_rooms, dtype=np.int64)
            end_of_room[rooms] = t_end_room
            ends = end_of_room[np.fromiter(refresh, np.int64, len(refresh))].tolist()
            for (room, slots), end in zip(refresh.items(), ends):
                self._with_forwarding(room, end, out, slots)

    def _step_numpy(self, wave: Wave) -> list[ev.Event]:
        """``step`` as batches of array operations (without the compiled kernel)."""
        st = self.st
        rooms = np.asarray(wave.rooms, dtype=np.int64)
        if len(rooms) == 0:
            return []
        t_end_room = np.asarray(wave.t_ms, np.int64) + np.asarray(wave.duration_ms, np.int64)
        end_of_room = np.zeros(st.n_rooms, dtype=np.int64)
        end_of_room[rooms] = t_end_room
        layout = self._per_slot(self._layout_for(rooms, np.asarray(wave.duration_ms, np.int64)))
        idx, room_of, dt, tuning, alpha = (layout.idx, layout.room_of, layout.dt,
                                           layout.tuning, layout.alpha)
        t_end = end_of_room[room_of]

        rows = layout.rows
        if (not wave.pcm and len(wave.level_slots) == len(idx)
                and np.array_equal(wave.level_slots, idx)):
            # every participant has a level, in slot order (a server's steady state)
            level = np.array(wave.level_dbov, dtype=np.float32)
            voice = np.array(wave.level_voice, dtype=np.int8)
            present = None
        else:
            level, voice, present = self._frames(wave, layout)
        if present is None:
            st.last_frame_ms[rows] = t_end
        else:
            k = np.flatnonzero(present)
            st.last_frame_ms[idx[k]] = t_end[k]
        muted = st.muted[rows]
        level[muted] = SILENCE_DBOV
        voice[muted] = 0
        if present is not None:
            timed_out = t_end - st.last_frame_ms[rows] > tuning["no_audio_timeout_ms"]
            live = present | timed_out
            if not live.all():  # frozen participants (a short gap in their packets) sit out
                idx, room_of, t_end, dt = idx[live], room_of[live], t_end[live], dt[live]
                level, voice = level[live], voice[live]
                tuning = {k: v[live] for k, v in tuning.items()}
                alpha = {k: v[live] for k, v in alpha.items()}
                rows = idx

        active, started, _stopped = activity.update(st, idx, level, voice, dt, t_end, tuning,
                                                    alpha, rows, room_of)
        out = self._speaking_reports(idx, room_of, t_end, tuning, rows)
        if layout.all_ours or (tuning["algorithm"] == SPEAKERSWITCH).all():
            switching.accumulate_evidence(st, idx, room_of, active, dt, t_end, tuning, rows)
            changes = switching.takeovers(st, rooms, t_end_room, idx, room_of, t_end, tuning,
                                          rows)
        else:
            changes = self._floor_by_algorithm(rooms, t_end_room, idx, room_of, t_end, level,
                                               active, dt, tuning)
        floor_moved = []
        for room, slot in changes:
            t = int(end_of_room[room])
            floor = switching.set_holder(st, room, slot, t)
            if floor is not None:
                out.append(floor)
                d = switching.update_shown(st, room, t, ev.DOMINANT_SPEAKER)
                if d is not None:
                    out.append(d)
                floor_moved.append(room)
        refresh = self._forwarding_to_refresh(idx[started], room_of[started])
        for room in floor_moved:
            refresh.setdefault(room, [])
        for room, slots in refresh.items():
            self._with_forwarding(room, int(end_of_room[room]), out, slots)

        st.room_t_ms[rooms] = t_end_room
        out.extend(self._rankings(rooms, t_end_room, layout.idx, layout.room_of))
        return out

    def _forwarding_to_refresh(self, slots: np.ndarray, room_of: np.ndarray
                               ) -> dict[int, list[int]]:
        """The rooms whose forwarding set is to be refreshed for the ``slots`` (in rooms
        ``room_of``) that started speaking, with those slots; but for rooms that the
        refresh would leave as they are (most: their one starter leads the set already),
        found with arrays for all rooms at once."""
        if len(slots) == 0:  # most ticks: nobody started
            return {}
        st = self.st
        alone = np.bincount(room_of, minlength=st.n_rooms)[room_of] == 1
        keep = ~(alone & forwarding.unchanged(st, room_of, slots))
        refresh: dict[int, list[int]] = {}
        for room, slot in zip(room_of[keep].tolist(), slots[keep].tolist()):
            refresh.setdefault(room, []).append(slot)
        return refresh

    def _frames(self, wave: Wave, layout: _Layout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The wave's level, voice (VAD for PCM) and whether it has a frame, per slot of
        ``layout.idx``; where there is none, the slot's noise floor (digital silence after
        a silent frame, or before any), unvoiced."""
        n = len(layout.idx)
        level = np.full(n, SILENCE_DBOV, dtype=np.float32)
        voice = np.zeros(n, dtype=np.int8)
        present = np.zeros(n, dtype=bool)
        idx = layout.idx  # ascending: a slot's position in it is a binary search away
        if len(wave.level_slots):
            p = np.searchsorted(idx, wave.level_slots)
            level[p] = wave.level_dbov
            voice[p] = wave.level_voice
            present[p] = True
        # no frame: a sender in Opus DTX is quiet, not muted (it sends one packet in 400 ms
        # while its speaker is silent): its background, the noise floor, unless its last
        # frame was digital silence (a muted track's packets). Used once it has been
        # without frames for no_audio_timeout_ms; until then it sits the wave out.
        gone = np.flatnonzero(~present)
        if gone.size:
            slots = idx[gone]
            floor = self.st.noise_floor[slots]
            quiet = (self.st.last_level[slots] > SILENCE_DBOV) & ~np.isnan(floor)
            level[gone] = np.where(quiet, floor, SILENCE_DBOV)
        if wave.pcm:
            self._per_slot(layout)
        for g in wave.pcm:
            p = np.searchsorted(idx, g.slots)
            samples = np.frombuffer(b"".join(g.frames), dtype="<i2").reshape(len(g.frames), -1)
            level[p] = pcm_level_dbov(samples)
            vad_frames, vad_rate = for_vad(samples, g.sample_rate_hz) if g.sample_rate_hz > \
                VAD_RATE_HZ else (g.frames, g.sample_rate_hz)
            voice[p] = self.vads.classify(g.slots.tolist(), vad_frames, vad_rate,
                                          layout.tuning["vad_mode"][p].astype(int).tolist())
            present[p] = True
        return level, voice, present

    def _layout_for(self, rooms: np.ndarray, duration_ms: np.ndarray) -> _Layout:
        """The wave's per-slot gathers, reused while nothing they depend on changed."""
        st = self.st
        key = (st.layout_version, rooms.tobytes(), duration_ms.tobytes())
        layout = self._layouts.get(key)
        if layout is not None:
            return layout
        if 8 * len(rooms) < st.n_rooms:  # a few rooms: their member lists, not every slot
            idx = np.unique(np.fromiter(chain.from_iterable(map(st.room_slots.__getitem__,
                                                                rooms.tolist())), np.int64))
        else:
            touched = np.zeros(st.n_rooms, dtype=bool)
            touched[rooms] = True
            idx = np.flatnonzero(touched[np.maximum(st.slot_room, 0)] & (st.slot_room >= 0))
        room_of = st.slot_room[idx].astype(np.int64)
        contiguous = len(idx) > 0 and idx[-1] - idx[0] + 1 == len(idx)
        rows = slice(int(idx[0]), int(idx[-1]) + 1) if contiguous else idx
        layout = _Layout(key, idx, rows, room_of,
                         bool((st.tuning["algorithm"][rooms] == SPEAKERSWITCH).all()))
        pos_of_room = np.zeros(st.n_rooms, dtype=np.int64)
        pos_of_room[rooms] = np.arange(len(rooms))
        n = len(idx)
        layout.pos = pos_of_room[room_of]
        layout.rooms, layout.duration_ms = rooms.copy(), duration_ms.copy()
        layout.dt_room = duration_ms.astype(np.float32)
        layout.tun, layout.coef, layout.room_tun = self._kernel_tables(rooms, duration_ms)
        layout.live = np.zeros(n, dtype=bool)
        layout.active = np.zeros(n, dtype=bool)
        layout.started = np.zeros(n, dtype=np.int64)
        layout.reports = np.zeros(n, dtype=np.int64)
        layout.refresh = np.zeros(n, dtype=bool)
        layout.changes = np.zeros((len(rooms), 2), dtype=np.int64)
        layout.due = np.zeros(len(rooms), dtype=np.int64)
        layout.t_end_room = np.zeros(len(rooms), dtype=np.int64)
        by_room = np.argsort(layout.pos, kind="stable")
        layout.members = idx[by_room]
        layout.member_start = np.searchsorted(layout.pos[by_room], np.arange(len(rooms) + 1))
        for a in (idx, room_of):
            a.flags.writeable = False  # shared by every step until the layout changes
        if (self._layouts and next(iter(self._layouts))[0] != st.layout_version
                or self._layouts_slots + len(idx) > LAYOUT_CACHE_SLOTS):
            self._layouts.clear()  # stale (membership or tuning changed), or full
            self._layouts_slots = 0
        self._layouts[key] = layout
        self._layouts_slots += len(idx)
        return layout

    def _kernel_tables(self, rooms: np.ndarray, duration_ms: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The kernel's tables for the wave's ``rooms``: tuning (SLOT_FIELDS[:14]),
        smoothing coefficients for their frame lengths, and room tuning (ROOM_FIELDS).

        Per room, as a room's participants all share its values, with a row per room (a
        room's values side by side, in a few cache lines). When the wave's frames are of
        one length (the usual case) they are rows of tables of every room, kept until a
        tuning changes: a wave of a new set of rooms (one group commit's) then takes 3
        gathers instead of 33 and 9 exponentials."""
        st = self.st
        if not (duration_ms == duration_ms[0]).all():
            return self._tuning_tables(rooms, duration_ms.astype(np.float32))
        key = (st.tuning_version, st.n_rooms, int(duration_ms[0]))
        kept = self._room_tables
        if kept[0] is not st or kept[1] != key:
            kept = self._room_tables = (st, key, *self._tuning_tables(
                slice(None), np.full(st.n_rooms, duration_ms[0], np.float32)))
        return tuple(table[rooms] for table in kept[2:])

    def _tuning_tables(self, rooms: np.ndarray | slice, dt: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        st = self.st
        coef = activity.coefficients(dt, {name: st.tuning[name][rooms]
                                          for name in activity.TIME_CONSTANTS})
        return (np.array([st.tuning[name][rooms] for name in SLOT_FIELDS[:14]],
                         dtype=np.float64).T.copy(),
                np.array([coef[name] for name in activity.TIME_CONSTANTS],
                         dtype=np.float64).T.copy(),
                np.array([st.tuning[name][rooms] for name in ROOM_FIELDS],
                         dtype=np.float64).T.copy())

    def _per_slot(self, layout: _Layout) -> _Layout:
        """``layout`` with its per-slot frame lengths, tuning and coefficients, gathered at
        their first use (the numpy path, peer algorithms, PCM): the kernel reads them per
        room, and a wave of a new set of rooms (one group commit's) skips ~30 gathers and 9
        exponentials per slot."""
        if layout.tuning is None:
            st = self.st
            room_of = layout.room_of
            dt = layout.dt_room[layout.pos]
            tuning = {name: st.tuning[name][room_of] for name in SLOT_FIELDS}
            alpha = activity.coefficients(
                dt, {name: st.tuning[name][room_of] for name in activity.TIME_CONSTANTS})
            for a in (dt, *tuning.values(), *alpha.values()):
                a.flags.writeable = False  # shared by every step until the layout changes
            layout.dt, layout.tuning, layout.alpha = dt, tuning, alpha
        return layout

    def _floor_by_algorithm(self, rooms, t_end_room, idx, room_of, t_end, level, active, dt,
                            tuning) -> list[tuple[int, int]]:
        """Floor changes when some rooms run a peer algorithm (DSI, loudest)."""
        st = self.st
        algorithm = tuning["algorithm"]
        room_algorithm = st.tuning["algorithm"][rooms]
        ours = algorithm == SPEAKERSWITCH
        sub = {k: v[ours] for k, v in tuning.items()}
        switching.accumulate_evidence(st, idx[ours], room_of[ours], active[ours], dt[ours],
                                      t_end[ours], sub)
        mine = room_algorithm == SPEAKERSWITCH
        changes = switching.takeovers(st, rooms[mine], t_end_room[mine], idx[ours],
                                      room_of[ours], t_end[ours], sub)
        d = algorithm == DSI
        if d.any():
            self.dsi.ensure(st.n_slots)
            dsi.push(self.dsi, idx[d], level[d])
            for room, t in zip(rooms[room_algorithm == DSI].tolist(),
                               t_end_room[room_algorithm == DSI].tolist()):
                new = dsi.decide(st, self.dsi, room, t)
                if new is not None:
                    changes.append((room, new))
        for room in rooms[room_algorithm == LOUDEST].tolist():
            k = np.flatnonzero((room_of == room) & ~st.muted[idx])
            if len(k):
                loudest = k[level[k] == level[k].max()]
                holder = int(st.holder[room])
                if holder not in idx[loudest]:   # ties keep the current speaker
                    changes.append((room, int(idx[loudest[0]])))
        return changes

    def _speaking_reports(self, idx: np.ndarray, room_of: np.ndarray, t_end: np.ndarray,
                          tuning: dict[str, np.ndarray], rows: Rows) -> list[ev.Event]:
        """SpeakingChanged for participants whose state differs from what was last reported,
        at most one per ``speaking_interval_ms``; a stop by digital silence goes out at once."""
        st = self.st
        speaking = st.speaking[rows]
        k = np.flatnonzero(speaking != st.reported_speaking[rows])  # few: the rest on those
        slots, t, now = idx[k], t_end[k], speaking[k]
        due = ((t - st.reported_ms[slots] >= tuning["speaking_interval_ms"][k])
               | (~now & st.silent[slots]))
        slots, t, now = slots[due], t[due], now[due]
        st.reported_speaking[slots] = now
        st.reported_ms[slots] = t
        return ev.many(ev.SpeakingChange, room_of[k[due]].tolist(), t.tolist(), slots.tolist(),
                       now.tolist())

    def _rankings(self, rooms: np.ndarray, t_end_room: np.ndarray, idx: np.ndarray,
                  room_of: np.ndarray) -> list[ev.Event]:
        """ActiveSpeakers for rooms due one (rate limit) whose ranking changed.

        ``idx``/``room_of``: every member of ``rooms`` (frozen ones too). All due rooms are
        ranked and compared with their last ranking at once; Python runs per event."""
        st = self.st
        interval_ms = st.tuning["active_speakers_interval_ms"][rooms]
        due = t_end_room - st.ranking_t_ms[rooms] >= interval_ms
        if not due.any():
            return []
        # checked (not only emitted) at most once per interval. A room's first check shifts
        # its schedule by its phase, spreading the rooms' checks over the interval
        interval = interval_ms.astype(np.int64)
        first = due & (st.ranking_t_ms[rooms] == NEVER_MS) & (interval > 0)
        st.ranking_t_ms[rooms[due]] = t_end_room[due]
        st.ranking_t_ms[rooms[first]] -= st.ranking_phase_ms[rooms[first]] % interval[first]
        due_rooms, due_t = rooms[due], t_end_room[due]
        rows = self._ranking_rows(due_rooms, idx, room_of)
        changed = np.flatnonzero((rows != st.ranked[due_rooms]).any(axis=1))
        st.ranked[due_rooms[changed]] = rows[changed]
        ranked = rows[changed]
        listed = ranked != NOT_RANKED
        slots = np.where(listed, ranked >> 1, 0)
        return _active_speakers_updates(due_rooms[changed], due_t[changed], listed.sum(axis=1),
                                        slots, st.level_smooth[slots], (ranked & 1) == 1,
                                        st.activity[slots])

    def _ranking_rows(self, due_rooms: np.ndarray, idx: np.ndarray, room_of: np.ndarray
                      ) -> np.ndarray:
        """``ranking`` of each of ``due_rooms`` (members ``idx`` in rooms ``room_of``, a
        superset), encoded as ``EngineState.ranked`` rows, with one sort for all rooms."""
        st = self.st
        row_of_room = np.full(st.n_rooms, -1, dtype=np.int64)
        row_of_room[due_rooms] = np.arange(len(due_rooms))
        row = row_of_room[room_of]
        s = idx[row >= 0]
        row = row[row >= 0]
        spk = st.speaking[s]
        keep = spk | (st.last_active_ms[s] > NEVER_MS)
        s, row, spk = s[keep], row[keep], spk[keep]
        # the keys of ``ranking`` after the room; its stable sort's last resort, the order
        # of the member list, is the join order
        order = np.lexsort((st.joined[s], -st.last_active_ms[s], -st.level_smooth[s] * spk,
                            ~spk, row))
        s, row, spk = s[order], row[order], spk[order]
        starts = np.flatnonzero(np.diff(row, prepend=-1))
        place = np.arange(len(row)) - np.repeat(starts, np.diff(starts, append=len(row)))
        top = place < st.tuning["active_speakers"][due_rooms].astype(np.int64)[row]
        rows = np.full((len(due_rooms), st.ranked.shape[1]), NOT_RANKED, dtype=np.int64)
        rows[row[top], place[top]] = 2 * s[top] + spk[top]
        return rows

    def ranking(self, room: int) -> tuple[tuple[int, ...], tuple[float, ...], tuple[bool, ...],
                                          tuple[float, ...]]:
        """Top-N participants: speakers first (loudest first), then the most recently
        active. Participants that never spoke are not ranked."""
        st = self.st
        slots = np.asarray(st.room_slots[room], dtype=np.int64)
        if len(slots) == 0:
            return (), (), (), ()
        spk = st.speaking[slots]
        keep = spk | (st.last_active_ms[slots] > NEVER_MS)
        slots, spk = slots[keep], spk[keep]
        order = np.lexsort((-st.last_active_ms[slots], -st.level_smooth[slots] * spk, ~spk))
        top = slots[order[: int(st.tuning["active_speakers"][room])]]
        return (tuple(top.tolist()), tuple(float(x) for x in st.level_smooth[top]),
                tuple(bool(x) for x in st.speaking[top]),
                tuple(float(x) for x in st.activity[top]))
