"""All engine state, as flat arrays: one row per participant slot, one per room.

Participants of every room share the slot arrays, so one tick of many rooms is processed as
one batch of array operations. A room's state is small (a few numbers per participant) and
rebuilds from a few seconds of audio, which keeps rooms cheap to move between processes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .tuning import FIELDS, INT_FIELDS, Tuning

NO_SLOT = -1
NEVER_MS = np.iinfo(np.int64).min // 4
"""'Long ago' for media-time stamps: far enough that any difference with it is huge, near
enough that subtracting it does not overflow."""
NOT_LOUD_MS = -NEVER_MS
"""``EngineState.loud_since_ms`` of a participant that has not (yet) sounded comparably loud
to the holder in its current speech: 'not yet', later than any media time."""
LONG_TURN_MS = -NEVER_MS
"""``previous_turn_ms`` when unknown: longer than any quick exchange's turn."""
Rows = slice | np.ndarray
"""Where a batch's slots sit in the slot arrays: their index array, or the same slots as a
slice when they are one contiguous run (then reads are views and writes are copies, not
gathers and scatters). A view changes when its array is written: read what you need
before writing to the same array."""
ONSET_MODULATION_DB = 3.0
"""``modulation_db`` of a participant at each speech onset (and when it joins): the
modulation of most speech (speech onsets jump a median 4.6 dB per 20 ms frame on the
espeak-ng evaluation corpus, 2.6 dB on the smoother synthetic speech of our own scenarios),
so speech is not held back while the estimate settles, and a smooth sound has to show its
smoothness over a few hundred ms before it is barred."""
ECHO_COUPLING_INITIAL_DB = -40.0
"""``EngineState.echo_coupling_db`` of a new participant: no echo to speak of (a headset)."""
UNKNOWN = -2
"""``EngineState.forwarded_main`` of a room whose forwarding set was not copied."""
NOT_RANKED = -1
"""An empty place in a room's last ActiveSpeakers ranking (``EngineState.ranked``)."""


def _grow(a: np.ndarray, n: int, fill: object) -> np.ndarray:
    out = np.full(n, fill, dtype=a.dtype)
    out[: len(a)] = a
    return out


def grown_table(a: np.ndarray, rows: int, cols: int, fill: int) -> np.ndarray:
    """The per-room table ``a`` with at least ``rows`` rows and ``cols`` columns (itself if
    it has them); the new cells hold ``fill``."""
    if a.shape[0] >= rows and a.shape[1] >= cols:
        return a
    out = np.full((max(rows, a.shape[0]), max(cols, a.shape[1])), fill, dtype=a.dtype)
    out[: a.shape[0], : a.shape[1]] = a
    return out


@dataclass
class EngineState:
    # ---- per participant slot
    slot_room: np.ndarray = field(default_factory=lambda: np.full(0, -1, np.int32))
    noise_floor: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    speech_level: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    level_smooth: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    activity: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    speaking: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    last_active_ms: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    run_start_ms: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    loud_since_ms: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """While speaking: the start of the first speech run in which the participant sounded
    within ``Tuning.overlap_margin_db`` of the floor holder (NOT_LOUD_MS: not yet). What an
    interrupter has talked over the holder is counted from here (``outlast_total_ms``), not
    from an onset that echo of the holder began."""
    onset_ms: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    evidence_ms: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    voiced_run_ms: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    """Length of the current run of consecutive speech-like frames."""
    last_level: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    """The level of the participant's previous frame (dBov; digital silence before its first:
    a first frame is an onset, whose jump is not counted)."""
    modulation_db: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    """Mean level jump between frames over the recent speech-like frames (see
    ``Tuning.min_modulation_db``)."""
    impulse_peak_dbov: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    """The loudest frame of the first ``activity.IMPULSE_ONSET_MS`` of the participant's
    current sound, while it may still prove an impulse (-inf once it cannot: see
    ``activity.IMPULSE_DROP_DB``)..."""
    impulse_low_dbov: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    """...the quietest frame of the sound since then..."""
    impulse: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    """...and whether it is one (a cough, a knock, a door): it takes no floor."""
    follow_db: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    """How far the participant's level jumps stray from those of the loudest other
    participant of its room, frame by frame (mean |difference|, dB, over its recent
    speech-like frames that are not the loudest): about 1 dB for that participant's voice
    leaking into this microphone, as large as the jumps themselves for speech of its own
    (see ``activity.LEAK_FOLLOW_SHARE``)."""
    move_db: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    """The mean |level jump| of that loudest other participant over the same frames."""
    video: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    muted: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    silent: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    last_frame_ms: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    reported_speaking: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    reported_ms: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    joined: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """Join order (a counter, larger is later): ties in a ranking go to the earlier joiner,
    as in the room's member list, without walking that list."""
    has_held: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    """Whether the participant has held its room's floor (see ``Tuning.newcomer_speech_ms``)."""
    echo_peak_dbov: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    """The loudest level another participant of the room sent lately (dBov), the reference
    of the echo this participant's microphone may carry (``activity.ECHO_HOLD_MS``)..."""
    echo_peak_ms: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """...and when (media time)."""
    echo_coupling_db: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    """How far below that reference this microphone's level sits while the others talk
    (dB, their 80th percentile): near -10 for a laptop playing the call through its
    speakers, far below for a headset (``activity.ECHO_COUPLING_UP_DB``)."""
    # ---- per room
    holder: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    floor_since_ms: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """When the holder took the floor (NEVER_MS: unknown, e.g. restored)."""
    previous_holder: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    """Who held the floor before the holder (NO_SLOT: nobody, or gone)."""
    previous_turn_ms: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """How long that previous holder held it (LONG_TURN_MS: unknown). With
    ``floor_since_ms``, whether the room is in a quick exchange (``Tuning.reply_hold_ms``)."""
    shown: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    pinned: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    room_t_ms: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    forwarded_main: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    ranking_t_ms: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    ranking_phase_ms: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    tuning: dict[str, np.ndarray] = field(default_factory=dict)
    forwarded: np.ndarray = field(default_factory=lambda: np.full((0, 1), NO_SLOT, np.int64))
    """A copy of ``forwarding`` taken by its last refresh, one row per room (NO_SLOT after
    its end), with the main feed's participant then (``forwarded_main``; UNKNOWN: no copy
    to trust): the engine tells from them, for all rooms at once, which rooms a refresh
    would leave as they are (see ``dsp.forwarding.unchanged``)."""
    ranked: np.ndarray = field(default_factory=lambda: np.full((0, 1), NOT_RANKED, np.int64))
    """The last ActiveSpeakers ranking sent, one row per room: ``2 * slot + speaking`` per
    place, NOT_RANKED after its end. As an array, all due rooms are compared at once and
    Python runs only for the rooms whose ranking changed. As wide as the largest
    ``active_speakers`` of any room."""
    layout_version: int = 0
    """Bumped by every change of membership, rooms or tuning: the engine's per-slot
    gathers (which slots a wave touches, their tuning) stay valid while it is unchanged."""
    tuning_version: int = 0
    """Bumped by every change of a room's tuning (and by growth): what the engine derives
    from all rooms' tuning stays valid while it is unchanged (membership does not bump it)."""
    arrays_version: int = 0
    """Bumped whenever an array of the state is replaced by another (growth, a wider table;
    see ``__setattr__``): what the engine's compiled kernel holds of the arrays is then
    stale."""
    # ---- per room, Python side (changed only by joins, leaves and presentation changes)
    room_slots: list[list[int]] = field(default_factory=list)
    presenters: list[list[int]] = field(default_factory=list)
    """Slots presenting, oldest first: the last one is in the main feed."""
    forwarding: list[list[int]] = field(default_factory=list)
    """Forwarding-set members, most recent speaker first."""
    forwarding_since: list[dict[int, int]] = field(default_factory=list)
    last_forwarding: list[tuple] = field(default_factory=list)

    SLOT_FILL = dict(slot_room=-1, noise_floor=np.nan, speech_level=np.nan, level_smooth=-127.0, activity=0.0,
                     speaking=False, last_active_ms=NEVER_MS, run_start_ms=NEVER_MS,
                     loud_since_ms=NOT_LOUD_MS,
                     onset_ms=0, evidence_ms=0.0, voiced_run_ms=0.0, last_level=-127.0,
                     modulation_db=ONSET_MODULATION_DB, impulse_peak_dbov=-np.inf,
                     impulse_low_dbov=-np.inf, impulse=False, follow_db=0.0, move_db=0.0,
                     video=True, muted=False,
                     silent=False, last_frame_ms=NEVER_MS, reported_speaking=False,
                     reported_ms=NEVER_MS, joined=0, has_held=False,
                     echo_peak_dbov=-127.0, echo_peak_ms=NEVER_MS,
                     echo_coupling_db=ECHO_COUPLING_INITIAL_DB)
    ROOM_FILL = dict(holder=NO_SLOT, floor_since_ms=NEVER_MS, previous_holder=NO_SLOT,
                     previous_turn_ms=LONG_TURN_MS, shown=NO_SLOT, pinned=NO_SLOT,
                     room_t_ms=NEVER_MS, ranking_t_ms=NEVER_MS, ranking_phase_ms=0,
                     forwarded_main=UNKNOWN)

    def __setattr__(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)
        if isinstance(value, np.ndarray):
            object.__setattr__(self, "arrays_version", self.arrays_version + 1)

    def __post_init__(self) -> None:
        for name in FIELDS:
            self.tuning.setdefault(name, np.zeros(0, np.float64))

    @property
    def n_slots(self) -> int:
        return len(self.slot_room)

    @property
    def n_rooms(self) -> int:
        return len(self.holder)

    def grow_slots(self, n: int) -> None:
        for name, fill in self.SLOT_FILL.items():
            setattr(self, name, _grow(getattr(self, name), n, fill))
        self.layout_version += 1

    def grow_rooms(self, n: int) -> None:
        for name, fill in self.ROOM_FILL.items():
            setattr(self, name, _grow(getattr(self, name), n, fill))
        for name in FIELDS:
            self.tuning[name] = _grow(self.tuning[name], n, 0.0)
        self.ranked = grown_table(self.ranked, n, 1, NOT_RANKED)
        self.forwarded = grown_table(self.forwarded, n, 1, NO_SLOT)
        self.layout_version += 1
        self.tuning_version += 1
        while len(self.room_slots) < n:
            self.room_slots.append([])
            self.presenters.append([])
            self.forwarding.append([])
            self.forwarding_since.append({})
            self.last_forwarding.append(())

    def reset_slot(self, slot: int, room: int) -> None:
        for name, fill in self.SLOT_FILL.items():
            getattr(self, name)[slot] = fill
        self.slot_room[slot] = room
        self.layout_version += 1

    def reset_room(self, room: int) -> None:
        for name, fill in self.ROOM_FILL.items():
            getattr(self, name)[room] = fill
        self.room_slots[room] = []
        self.ranked[room] = NOT_RANKED
        self.forwarded[room] = NO_SLOT
        self.layout_version += 1
        self.presenters[room] = []
        self.forwarding[room] = []
        self.forwarding_since[room] = {}
        self.last_forwarding[room] = ()

    @staticmethod
    def check_tuning(tuning: Tuning) -> None:
        """ValueError naming the field, for a tuning the engine cannot run."""
        if tuning.evidence_decay < 0:  # the floor logic relies on evidence only draining
            raise ValueError(f"evidence_decay: must be >= 0, got {tuning.evidence_decay}")
        if tuning.forwarding_size < 1:  # the main feed's participant always fits
            raise ValueError(f"forwarding_size: must be >= 1, got {tuning.forwarding_size}")

    def set_tuning(self, room: int, tuning: Tuning) -> None:
        self.check_tuning(tuning)
        for name in FIELDS:
            self.tuning[name][room] = float(getattr(tuning, name))
        self.ranked = grown_table(self.ranked, 0, tuning.active_speakers, NOT_RANKED)
        self.layout_version += 1
        self.tuning_version += 1

    def get_tuning(self, room: int) -> Tuning:
        values = {name: self.tuning[name][room] for name in FIELDS}
        for name in INT_FIELDS:
            values[name] = int(values[name])
        return Tuning(**values)
