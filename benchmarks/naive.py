"""The engine's level-mode logic written the straightforward way: a Python loop over rooms
and participants, one frame at a time. It is the in-run baseline of the performance
benchmarks (what vectorizing buys), not a second implementation to maintain.

It takes the same input as the engine's benchmark (per room, the RFC 6464 header bytes of
its participants, one frame each) and does per frame what ``dsp.engine.Engine.step`` does
for a levels-only wave of rooms running the ``speakerswitch`` algorithm, with the same
formulas, constants and outputs (``dsp.events``):
- decode each byte (level, V bit); a muted participant counts as digital silence; one
  without a frame keeps its state until ``no_audio_timeout_ms``, then counts as quiet
  (its noise floor; digital silence after a silent frame);
- activity (``dsp/activity.py``): noise floor, the loudest participant's voice leaking
  into another's microphone set apart, the others' echo set apart, own speech level, voiced-run gate,
  activity share and its hysteresis, smoothed level, speech-run onsets;
- SpeakingChanged, at most one per ``speaking_interval_ms`` (a stop by digital silence
  at once);
- floor (``dsp/switching.py``): evidence against the holder (a muted or silent holder
  scores nothing), takeover after ``min_speech_ms`` or ``interrupt_ms`` by the talking
  challenger with most evidence (the louder among equals; a shorter hold for the
  previous holder's answer in a quick exchange, a longer one after a long turn), the FloorChange and the main
  feed's SwitchDecision (pin, video);
- the forwarding set (``dsp/forwarding.py``) when someone starts speaking or the floor
  moves;
- ActiveSpeakers every ``active_speakers_interval_ms`` (with the room's phase), sent
  when the ranking changed.
Not covered: PCM and webrtcvad, the peer algorithms (DSI, loudest), joins and leaves,
presentations and the event API (they are per event, not per frame, in both).
State is plain Python floats (the engine keeps float32 arrays), so after many frames a
threshold could be crossed one frame apart; the logic is the same.
tests/test_naive_baseline.py checks that it makes exactly the engine's decisions (40 rooms
x 6, 1500 ticks of turns, overlaps and remarks: every event equal, scores to 0.1 dB).
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

from dsp import events as ev
from dsp.activity import (ECHO_AUDIBLE_DB, ECHO_COUPLING_DOWN_DB, ECHO_COUPLING_UP_DB,
                          ECHO_DECAY_DB_PER_MS, ECHO_HOLD_MS, ECHO_MARGIN_DB,
                          ECHO_REFERENCE_GAP_DB, ECHO_REFERENCE_MIN_DBOV, IMPULSE_DROP_DB,
                          IMPULSE_JUDGED_MS, IMPULSE_ONSET_MS, IMPULSE_RECOVER_DB)
from dsp.state import ECHO_COUPLING_INITIAL_DB
from dsp.switching import NEWCOMER_ROOM_SIZE
from dsp.tuning import PROFILES, Tuning

SILENCE_DBOV = -127.0
SMOOTH_FLOOR_DBOV = -100.0
INITIAL_FLOOR_DBOV = -60.0
INITIAL_SPEECH_MAX_DBOV = -20.0
ONSET_RESET_ACTIVITY = 0.05
ONSET_MODULATION_DB = 3.0
LEAK_MIN_DB = 3.0
LEAK_FOLLOW_SHARE = 0.5
LEAK_MIN_MOVE_DB = 2.0
NEVER_MS = -(2**61)
NO_SLOT = -1


def alpha(dt: float, tau: float) -> float:
    return -math.expm1(-dt / max(tau, 1e-3))


@dataclass
class Participant:
    slot: int = 0
    floor: float = float("nan")
    speech: float = float("nan")
    smooth: float = -127.0
    activity: float = 0.0
    speaking: bool = False
    silent: bool = False
    muted: bool = False
    video: bool = True
    last_active: int = NEVER_MS
    run_start: int = NEVER_MS
    loud_since: int | None = None  # while speaking: first run within overlap_margin_db of the holder
    onset: int = 0
    evidence: float = 0.0
    voiced_run: float = 0.0
    last_level: float = SILENCE_DBOV
    modulation: float = ONSET_MODULATION_DB
    follow: float = 0.0          # mean |jump - the room's loudest participant's jump|
    move: float = 0.0            # mean |that participant's jump|
    credit: float = 0.0          # speech time this frame adds to the evidence
    last_frame: int = NEVER_MS
    active: bool = False
    reported_speaking: bool = False
    reported_ms: int = NEVER_MS
    has_held: bool = False       # has held the room's floor
    echo_peak: float = SILENCE_DBOV   # the loudest other's recent level, held then decaying
    echo_peak_ms: int = NEVER_MS
    echo_coupling: float = ECHO_COUPLING_INITIAL_DB  # this microphone's echo, below it
    impulse_peak: float = -math.inf   # the current sound's early peak, while judged
    impulse_low: float = -math.inf    # its quietest frame since
    impulse: bool = False             # a cough or a knock: takes no floor


@dataclass
class Room:
    participants: list[Participant] = field(default_factory=list)
    index: int = 0
    tuning: Tuning = PROFILES["meeting"]
    holder: int = -1             # position in participants, or -1
    floor_since: int = NEVER_MS  # when the holder took the floor
    previous_holder: int = -1    # who held it before
    previous_turn: float = math.inf  # and for how long
    shown: int = -1
    pinned: int = -1
    ranking_phase_ms: int = 0
    ranking_t: int = NEVER_MS
    last_ranking: tuple = ()
    forwarding: list[int] = field(default_factory=list)     # positions, most recent first
    forwarding_since: dict[int, int] = field(default_factory=dict)
    last_forwarding: tuple = ()

    def __post_init__(self) -> None:
        for i, p in enumerate(self.participants):
            p.slot = i


def step_room(room: Room, payload: bytes, t_end: int, dt: int, out: list) -> None:
    """One frame of a room: ``payload`` holds one RFC 6464 byte per participant."""
    T = room.tuning
    ps = room.participants
    started: list[int] = []
    live = []
    frames = []
    for i, p in enumerate(ps):
        if i < len(payload):
            b = payload[i]
            level, voice = -float(b & 0x7F), b >> 7
            p.last_frame = t_end
        elif t_end - p.last_frame > T.no_audio_timeout_ms:
            # quiet (Opus DTX): its noise floor, or silence after a silent frame
            quiet = p.last_level > SILENCE_DBOV and not math.isnan(p.floor)
            level, voice = (p.floor if quiet else SILENCE_DBOV), 0
        else:
            continue  # no frame: its state is kept (packet loss)
        if p.muted:
            level, voice = SILENCE_DBOV, 0
        frames.append((p, level, voice))
    # the loudest frame (the last of equals): what a leak into another microphone follows
    loudest, loudest_level = None, -math.inf
    for p, level, _voice in frames:
        if level >= loudest_level:
            loudest, loudest_level = p, level
    loudest_jump = loudest_level - loudest.last_level if loudest is not None else 0.0
    # the second loudest level, and how many at the loudest: each one's loudest other
    top = loudest_level
    n_top = sum(1 for _p, level, _v in frames if level == top)
    second = max((level for _p, level, _v in frames if level < top), default=-math.inf)
    holder_p = ps[room.holder] if room.holder >= 0 else None
    for p, level, voice in frames:
        ref = None if p is loudest else (loudest_level, loudest_jump)
        others = second if level == top and n_top == 1 else top
        p.active = _activity(p, level, voice, t_end, dt, T, started, ref,
                             (others, p is not holder_p))
        live.append(p)
        if p.speaking != p.reported_speaking and (
                t_end - p.reported_ms >= T.speaking_interval_ms
                or (not p.speaking and p.silent)):
            p.reported_speaking, p.reported_ms = p.speaking, t_end
            out.append(ev.SpeakingChange(room.index, t_end, p.slot, p.speaking))

    # floor: evidence against the holder, then a takeover
    holder = ps[room.holder] if room.holder >= 0 else None
    holder_score = -math.inf
    if holder is not None and not holder.muted and not holder.silent:
        holder_score = holder.smooth
    best, best_p = 0.0, None  # the talking challenger with most evidence
    outlasted = False         # one talking challenger outlasted the holder
    for p in live:
        if not p.speaking:
            p.loud_since = None
        elif p.active and p.loud_since is None and \
                p.smooth >= holder_score - T.overlap_margin_db:
            p.loud_since = t_end - int(p.voiced_run)
        if p is holder:
            p.evidence = 0.0
            continue
        if p.speaking and not p.muted and p.smooth > holder_score + T.switch_margin_db:
            if p.active:
                p.evidence += p.credit
        else:
            p.evidence = max(p.evidence - T.evidence_decay * dt, 0.0)
        if (t_end - p.last_active > T.takeover_recency_ms or p.evidence <= 0
                or (p.modulation < T.min_modulation_db and holder is not None
                    and holder.modulation >= T.min_modulation_db) or p.impulse):
            continue
        # in a large room, one who has never held its floor needs newcomer_speech_ms more
        e = (p.evidence if p.has_held or len(ps) < NEWCOMER_ROOM_SIZE
             else max(p.evidence - T.newcomer_speech_ms, 0.0))
        if e <= 0:
            continue
        if best_p is None or e > best or (e == best and p.smooth > best_p.smooth):
            best, best_p = e, p
        if (holder is not None and t_end - holder.last_active >= T.outlast_ms
                and p.loud_since is not None
                and (t_end - p.loud_since) + (t_end - holder.last_active) >= T.outlast_total_ms
                and e >= T.min_speech_ms):
            outlasted = True
    hold = T.hold_ms
    # a long turn: its pauses are longer, and so is its hold
    ramp = (t_end - room.floor_since - T.long_turn_ms) / max(T.long_turn_ms, 1.0)
    hold = hold + T.long_turn_hold_ms * min(max(ramp, 0.0), 1.0)
    # a quick exchange: the previous holder answers after a short hold
    if (room.previous_holder >= 0 and t_end - room.floor_since < T.reply_turn_ms
            and room.previous_turn < T.reply_turn_ms
            and ps[room.previous_holder].evidence > 0
            and ps[room.previous_holder].run_start > ps[max(room.holder, 0)].last_active):
        hold = min(hold, T.reply_hold_ms)
    quiet = (holder is None or holder.muted
             or (holder.silent and t_end - holder.last_active >= T.silent_hold_ms)
             or (t_end - holder.last_active >= hold and holder.voiced_run == 0))
    winner = best_p if best >= (T.min_speech_ms if quiet else T.interrupt_ms) or \
        outlasted else None
    floor_moved = winner is not None
    if floor_moved:
        previous = room.holder
        room.holder = winner.slot
        winner.has_held = True
        room.previous_turn = (t_end - room.floor_since if room.floor_since != NEVER_MS
                              and previous >= 0 else math.inf)
        room.previous_holder, room.floor_since = previous, t_end
        for p in ps:
            p.evidence = 0.0
        out.append(ev.FloorChange(room.index, t_end, winner.slot, previous, winner.video,
                                  winner.smooth, winner.onset))
        _update_shown(room, t_end, out)
    if started or floor_moved:
        _refresh_forwarding(room, t_end, started, out)
    _ranking(room, t_end, out)


def f32(x: float) -> float:
    """``x`` rounded to float32, as the engine's state arrays hold it."""
    return struct.unpack("f", struct.pack("f", x))[0]


def _impulse(p: Participant, level: float, onset: bool) -> None:
    """Whether this speech-like frame's sound is a cough or a knock (activity._impulses)."""
    early = p.voiced_run < IMPULSE_ONSET_MS
    if p.voiced_run == 0:
        p.impulse = False
    again = p.impulse and level >= f32(p.impulse_low + IMPULSE_RECOVER_DB)
    if again:
        p.impulse = False
    if onset:
        p.impulse_peak = level
    elif p.voiced_run == 0:
        p.impulse_peak = -math.inf
    elif early:
        p.impulse_peak = max(p.impulse_peak, level)
    if again or (not early and level > p.impulse_peak):
        p.impulse_peak = -math.inf
    if (not early and p.voiced_run <= IMPULSE_JUDGED_MS
            and level <= f32(p.impulse_peak - IMPULSE_DROP_DB)):
        p.impulse = True
    p.impulse_low = level if early else min(p.impulse_low, level)


def _activity(p: Participant, level: float, voice: int, t_end: int, dt: int, T: Tuning,
              started: list[int], ref: tuple[float, float] | None,
              echo: tuple[float, bool]) -> bool:
    """One frame of ``p``; whether the frame was speech. ``ref``: the level and the jump
    of the room's loudest frame, if not ``p``'s; ``echo``: the loudest other's level and
    whether ``p`` is listening (not the holder)."""
    sounding = level > SILENCE_DBOV
    if math.isnan(p.floor) and sounding:
        p.floor = min(level, INITIAL_FLOOR_DBOV)
    snr = level - p.floor
    active = (bool(voice) and sounding and snr >= T.min_snr_db
              and level >= T.min_level_dbov)
    if active and ref is not None:  # the loudest one's voice leaking into this microphone?
        ref_level, ref_jump = ref
        a = alpha(dt, T.modulation_ms)
        p.follow += a * (abs((level - p.last_level) - ref_jump) - p.follow)
        p.move += a * (abs(ref_jump) - p.move)
        if (ref_level - level >= LEAK_MIN_DB and p.move >= LEAK_MIN_MOVE_DB
                and p.follow < LEAK_FOLLOW_SHARE * p.move):
            active = False
    # the others' echo (activity._without_echo)
    others, listening = echo
    decayed = p.echo_peak - ECHO_DECAY_DB_PER_MS * max(0.0, (t_end - p.echo_peak_ms)
                                                       - ECHO_HOLD_MS)
    if others >= decayed:
        p.echo_peak, p.echo_peak_ms = others, t_end
    reference = max(others, decayed)
    if (listening and sounding and others >= ECHO_REFERENCE_MIN_DBOV
            and others - level >= ECHO_REFERENCE_GAP_DB):
        p.echo_coupling += (ECHO_COUPLING_UP_DB if level - reference > p.echo_coupling
                            else -ECHO_COUPLING_DOWN_DB)
    expected = reference + p.echo_coupling
    if active and level <= expected + ECHO_MARGIN_DB and expected - p.floor >= ECHO_AUDIBLE_DB:
        active = False
    if math.isnan(p.speech) and active:
        p.speech = min(level, INITIAL_SPEECH_MAX_DBOV)
    if active:
        p.speech += alpha(dt, T.speech_level_rise_ms if level > p.speech
                          else T.speech_level_fall_ms) * (level - p.speech)
        active = level >= p.speech - T.speech_margin_db
    if active:
        onset = p.voiced_run == 0 and p.activity < ONSET_RESET_ACTIVITY
        if onset:
            p.modulation = ONSET_MODULATION_DB
        else:
            jump = abs(level - p.last_level)
            p.modulation += alpha(dt, T.modulation_ms) * (jump - p.modulation)
        _impulse(p, f32(level), onset)
    p.last_level = level
    p.voiced_run = p.voiced_run + dt if active else 0.0
    active = active and p.voiced_run >= T.min_run_ms
    step = p.voiced_run if active and p.voiced_run - dt < T.min_run_ms else dt
    p.credit = step
    if sounding:
        p.floor += alpha(dt, T.floor_fall_ms if level < p.floor
                         else T.floor_rise_ms) * (level - p.floor)
    lv = max(level, SMOOTH_FLOOR_DBOV)
    p.smooth += alpha(dt, T.level_attack_ms if lv > p.smooth
                      else T.level_release_ms) * (lv - p.smooth)
    before = p.activity
    target = 1.0 if active else 0.0
    if sounding:
        p.activity += (alpha(step, T.activity_attack_ms) if target > p.activity
                       else alpha(dt, T.activity_release_ms)) * (target - p.activity)
    else:
        p.activity = 0.0
    p.silent = not sounding
    if active and before < ONSET_RESET_ACTIVITY:
        p.run_start = t_end - int(step)
    if active:
        p.last_active = t_end
    was = p.speaking
    p.speaking = sounding and (p.activity > T.speaking_off if was
                               else p.activity >= T.speaking_on)
    if p.speaking and not was:
        p.onset = p.run_start
        started.append(p.slot)
    return active


def _update_shown(room: Room, t: int, out: list) -> None:
    ps = room.participants
    if room.pinned >= 0:
        target = room.pinned
    elif room.holder >= 0 and ps[room.holder].video:
        target = room.holder
    elif room.shown >= 0 and ps[room.shown].video:
        target = room.shown
    else:
        with_video = [p for p in ps if p.video]
        target = max(with_video, key=lambda p: p.last_active).slot if with_video else -1
    if target == room.shown:
        return
    previous, room.shown = room.shown, target
    reason = ev.FIRST_SPEAKER if previous < 0 else ev.DOMINANT_SPEAKER
    score, onset = (ps[target].smooth, ps[target].onset) if target >= 0 else (-127.0, 0)
    out.append(ev.SwitchDecision(room.index, t, target, previous, reason, score, room.holder,
                                 onset, False))


def _refresh_forwarding(room: Room, t: int, started: list[int], out: list) -> None:
    T, ps = room.tuning, room.participants
    members, since = room.forwarding, room.forwarding_since
    main = room.pinned if room.pinned >= 0 else room.shown
    for s in [s for s in members if not ps[s].video]:
        members.remove(s)
        del since[s]

    def admit(s: int, force: bool) -> None:
        if s in members:
            members.remove(s)
            members.insert(0, s)
            return
        if len(members) >= T.forwarding_size:
            victims = [m for m in reversed(members)
                       if m != main and (force or t - since[m] >= T.forwarding_min_ms)]
            if not victims:
                return
            members.remove(victims[0])
            del since[victims[0]]
        members.insert(0, s)
        since[s] = t

    for s in started:
        if ps[s].video:
            admit(s, False)
    if main >= 0 and ps[main].video and main not in members:
        admit(main, True)
    order = tuple(([main] if main in members else []) + [s for s in members if s != main])
    if order != room.last_forwarding:
        room.last_forwarding = order
        out.append(ev.ForwardingChange(room.index, t, order))


def _ranking(room: Room, t: int, out: list) -> None:
    interval = room.tuning.active_speakers_interval_ms
    if t - room.ranking_t < interval:
        return
    first = room.ranking_t == NEVER_MS and interval > 0
    room.ranking_t = t
    if first:
        room.ranking_t -= room.ranking_phase_ms % int(interval)
    ranked = [p for p in room.participants if p.speaking or p.last_active > NEVER_MS]
    ranked.sort(key=lambda p: (not p.speaking, -p.smooth if p.speaking else 0.0,
                               -p.last_active))
    top = ranked[: room.tuning.active_speakers]
    key = tuple((p.slot, p.speaking) for p in top)
    if key != room.last_ranking:
        room.last_ranking = key
        out.append(ev.ActiveSpeakersUpdate(
            room.index, t, tuple(p.slot for p in top), tuple(p.smooth for p in top),
            tuple(p.speaking for p in top), tuple(p.activity for p in top)))


def step_all(rooms: list[Room], payloads: list[bytes], t_end: int, dt: int = 20) -> list:
    """One tick of every room (``payloads[i]``: room i's RFC 6464 bytes); the events."""
    out: list = []
    for room, payload in zip(rooms, payloads):
        step_room(room, payload, t_end, dt, out)
    return out
