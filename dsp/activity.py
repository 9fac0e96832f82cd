"""Per-participant speech activity: noise floor, smoothing and hysteresis, vectorized.

For every participant of a batch at once (no per-participant Python):
1. an adaptive noise floor that falls at once and rises slowly, so each participant is
   judged against its own background (a fan or a hot mic raises only its own bar);
2. a frame is *active* when voiced (webrtcvad, the RFC 6464 V bit, or energy when neither
   is known), far enough above that floor and above an absolute minimum;
3. the share of active frames is smoothed (fast attack, slower release) and speaking
   starts above one threshold and stops below a lower one; digital silence (RFC 6464 level
   127: a muted microphone) stops it at once, with no lingering "speaking" state;
4. the level jump between frames over the recent speech-like frames is smoothed: how
   modulated the sound is (speech is, a breath or a hum is not; see
   ``Tuning.min_modulation_db``);
5. the level itself is smoothed on a fast-attack / slow-release scale: that is the score
   the floor logic compares between participants.
"""
from __future__ import annotations

import numpy as np

from .rfc6464 import SILENCE_DBOV
from .state import ONSET_MODULATION_DB, EngineState, Rows

SMOOTH_FLOOR_DBOV = -100.0
"""Digital silence (-127) is clamped here before smoothing, so a muted or DTX frame drags
the score down like deep silence rather than by an arbitrary extra 27 dB."""
INITIAL_FLOOR_DBOV = -60.0
"""Prior for a new participant's noise floor (typical headset and laptop mics sit at -75 to
-50 dBov): someone who joins mid-sentence is heard at once instead of after their first
pause, while a louder background is still absorbed by the slow rise within seconds."""
INITIAL_SPEECH_MAX_DBOV = -20.0
"""A participant's own speech level starts at its first speech-like frame, but no higher
than this: a door slam or a knock on the desk before someone's first word (VADs mark them
voiced) would otherwise set it 10-20 dB above their voice, and their speech would stay
under the own-speech gate until that level had come down (seconds of voiced frames). A
louder talker still gets there: the level rises toward its frames in ``speech_level_rise_ms``.
-20 dBov is 6 dB above -26 dBov, the level speech is normalized to in ITU-T speech-quality
testing (active speech level per P.56). Repo scenarios: a door slam 34 s before its
participant's turn delayed it 1.9 s; with the cap 0.5 s (noise type 95.4 -> 96.4%, all
95.95 -> 96.07%); the kit's dev and confirm draws are unchanged (no first frame that
loud); -14 to -32 dBov give the same."""
LEAK_MIN_DB = 3.0
"""A frame at least this far below the loudest participant of its room may be that
participant's voice leaking into this microphone (two people in one room, a few metres
apart: 4-10 dB down; a leak louder than that is the same room's speech as far as anyone
can tell)."""
LEAK_FOLLOW_SHARE = 0.5
"""...and is taken for a leak when its level jumps from frame to frame follow the loudest
participant's: their mean difference (``follow_db``) under half of that participant's own
mean jump (``move_db``). A leak follows its talker syllable by syllable, off by ~1 dB
(rounding, the microphone's own noise); speech of one's own moves independently, so the
difference is as large as the jumps. Measured on the crosstalk scenarios (8 x 60 s) at 0.5,
0.6, 0.7 and 0.8: the looser ones caught leaks sooner at onsets but also let a new
talker's own onset pass for its neighbour's leak (false switches 0.13 -> 0.38-0.50/min)."""
LEAK_MIN_MOVE_DB = 2.0
"""...provided that participant's level moves enough to be followed: a steady sound is
followed by anything. At 1 dB, a quiet holder's word that began together with a loud
listener's remark, both then holding a vowel, passed for the listener's leak (its floor
was lost: one false switch in the repo's scenarios); speech jumps 2.6-4.6 dB a frame on
average (``state.ONSET_MODULATION_DB``), and 2 dB kept the crosstalk gains."""
ECHO_HOLD_MS = 200.0
"""Echo of the room's other participants in a listener's microphone (a laptop's speakers
heard by its own microphone, an echo canceller that lets some through) arrives after the
path from their microphones to this one (30-150 ms in the kit and our scenarios, more
over a real network) and rings on in the listener's room. The loudest level the others
sent (``EngineState.echo_peak_dbov``) is held this long as what the echo may still carry,
then decays at ``ECHO_DECAY_DB_PER_MS``."""
ECHO_DECAY_DB_PER_MS = 0.06
"""...60 dB a second: a reverberation time of one second, longer than most rooms', so the
ringing of a holder's last word is still covered when it has died out. 0.03-0.12 and
100-300 ms of hold measured the same on the laptop-echo draws and the kit's dev draw."""
ECHO_COUPLING_UP_DB = 0.4
ECHO_COUPLING_DOWN_DB = 0.1
"""Per frame in which a listener hears the others louder than itself, its coupling moves
this far up or down toward its level less that held peak: it settles where 4 in 5 of
those frames lie below it (their 80th percentile), so a listener's own 'yeah' over the
holder, a few frames in hundreds, hardly moves it; from the initial -40 dB to a -10 dB
echo takes ~1.5 s of the others' speech."""
ECHO_REFERENCE_MIN_DBOV = -50.0
ECHO_REFERENCE_GAP_DB = 3.0
"""...counting only frames in which the loudest other is at least this loud and this
much louder than the listener: what the others send then is what its echo is made of."""
ECHO_MARGIN_DB = 6.0
"""A frame no more than this above the echo expected of it (the held peak plus the
coupling) is taken for the others' echo, not speech of its own: a listener's own voice,
close to its microphone, stands 10 dB and more above the echo of a talker at its level."""
ECHO_AUDIBLE_DB = 6.0
"""...provided that the echo expected is this far above the participant's own noise
floor: one with a loud fan learns a 'coupling' from its noise alone (the others louder
than its fan), and its speech must not be held to it. 0 and 12 dB measured the same."""
ONSET_RESET_ACTIVITY = 0.05
"""A speech run that starts while the smoothed activity is below this is a new onset (its
first frame's time is the onset reported with switches)."""
IMPULSE_ONSET_MS = 40.0
IMPULSE_DROP_DB = 4.0
IMPULSE_JUDGED_MS = 100.0
"""A sound that starts at its loudest (its first 40 ms: two 20 ms frames) and has fallen this
far below that by some frame from 40 to this many ms into it is an impulse: a cough's
explosive phase, a knock, a door (their energy peaks in the first 30-50 ms and decays,
Korpas et al. 1996 on cough sounds), not the start of a turn, whose syllables build up
and go on. It takes no floor (``EngineState.impulse``), though the VAD marks it voiced
and it lasts as long as a 'yeah'. Coughs in a long pause of the holder were 4 of the 7
false switches left on monologue draws, 4 of 34 on the kit's three draws (and a door). Of the
sounds that start after a silence (kit dev and monologue draws), this flags 70-83% of
coughs, every door, 72% of keyboard and 99% of click onsets, and 5-8% of speech onsets
(2-5% of the recorded voices'), which go on at their next rise. Chosen on the kit's dev
draw and 8 monologue draws (0.14 -> 0.12 and 0.58 -> 0.33 false switches a minute;
3 dB: the same, 6 dB or 60-80 ms: half the gain); untouched draws in the docs."""
IMPULSE_RECOVER_DB = 6.0
"""...until it rises this far above its quietest frame since: a word's next syllable (3 dB
measured the same); a cough's tail decays without rising."""


TIME_CONSTANTS = ("speech_level_rise_ms", "speech_level_fall_ms", "floor_fall_ms",
                  "floor_rise_ms", "level_attack_ms", "level_release_ms",
                  "activity_attack_ms", "activity_release_ms", "modulation_ms")
"""The Tuning fields that are smoothing time constants (see ``coefficients``)."""


def _alpha(dt_ms: np.ndarray, tau_ms: np.ndarray) -> np.ndarray:
    """One-pole smoothing coefficient for a step of dt_ms with time constant tau_ms."""
    return -np.expm1(-dt_ms / np.maximum(tau_ms, 1e-3))


def _toward(x: np.ndarray, y: np.ndarray, up: np.ndarray, down: np.ndarray) -> np.ndarray:
    """``x + np.where(y > x, up, down) * (y - x)``, the one-pole step of ``x`` (float32)
    toward ``y`` (float32) with a coefficient per direction (finite, float64), to the bit,
    without the data-dependent ``np.where``: on noisy levels the branch predictor misses
    half of its picks, which made those selections the slowest lines of a step.

    ``y - x`` is rounded as in that expression and is > 0 exactly where ``y > x``
    (gradual underflow), so ``up * rising + down * ~rising`` is exactly the coefficient
    ``np.where`` picks (the other product is a zero)."""
    d = y - x
    rising = d > 0
    step = up * rising
    step += down * ~rising
    step *= d
    step += x
    return step


def coefficients(dt_ms: np.ndarray, tuning: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The smoothing coefficient of every time constant for frames of ``dt_ms``, by field
    name. They depend only on the frame lengths and the tuning, which rarely change: the
    engine keeps them between ticks instead of taking 8 exponentials per participant."""
    return {name: _alpha(dt_ms, tuning[name]) for name in TIME_CONSTANTS}


def update(st: EngineState, idx: np.ndarray, level_dbov: np.ndarray, voice: np.ndarray,
           dt_ms: np.ndarray, t_end_ms: np.ndarray, tuning: dict[str, np.ndarray],
           alpha: dict[str, np.ndarray], rows: Rows | None = None,
           room_of: np.ndarray | None = None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Advance the participants ``idx`` (of rooms ``room_of``) by one frame each.

    level_dbov: frame level; voice: int8, 1 voiced, 0 not, -1 unknown; dt_ms, t_end_ms: the
    frame's length and end (media time); tuning: per-element parameter arrays; alpha:
    ``coefficients(dt_ms, tuning)``; rows: ``idx`` as a slice if contiguous.
    Returns (active, started, stopped) boolean masks over ``idx``.
    """
    rows = idx if rows is None else rows
    # (the `if`s below skip whole-array work that would change nothing this frame)
    floor = st.noise_floor[rows]
    sounding = level_dbov > SILENCE_DBOV
    first = np.isnan(floor) & sounding
    if first.any():
        floor = np.where(first, np.minimum(level_dbov, INITIAL_FLOOR_DBOV), floor)

    # (frames are judged by index subsets from here: few of a batch are voiced, fewer
    # active, and whole-array masks cost more than the subsets)
    unknown = voice < 0
    voiced = np.where(unknown, level_dbov - floor >= tuning["energy_voice_snr_db"], voice > 0) \
        if unknown.any() else voice > 0
    k = np.flatnonzero(voiced)
    lv_k = level_dbov[k]
    k = k[sounding[k] & (lv_k - floor[k] >= tuning["min_snr_db"][k])
          & (lv_k >= tuning["min_level_dbov"][k])]

    if room_of is not None:
        # each room's loudest frame: what a leak follows, and an echo's reference
        loudest = np.full(st.n_rooms, -np.inf, dtype=np.float32)
        np.maximum.at(loudest, room_of, level_dbov)
        # another participant's voice leaking into this microphone is not speech of its own
        if k.size:
            k = _without_leaks(st, idx, k, room_of, level_dbov, loudest, alpha["modulation_ms"])
        # ...nor is the others' echo in it
        k = _without_echo(st, idx, k, room_of, level_dbov, loudest, t_end_ms, floor)
    # the participant's own speech level (it moves only on speech frames: computed for
    # those), and whether this frame reaches near it
    lv_k = level_dbov[k]
    speech = st.speech_level[idx[k]]
    speech = np.where(np.isnan(speech), np.minimum(lv_k, INITIAL_SPEECH_MAX_DBOV), speech)
    a_sp = np.where(lv_k > speech, alpha["speech_level_rise_ms"][k],
                    alpha["speech_level_fall_ms"][k])
    speech = speech + a_sp * (lv_k - speech)
    st.speech_level[idx[k]] = speech
    near = lv_k >= speech - tuning["speech_margin_db"][k]
    k, lv_k = k[near], lv_k[near]
    # how modulated these speech-like frames are: an onset starts at ONSET_MODULATION_DB
    # (its jump out of the silence before it says nothing about the sound)
    slots = idx[k]
    mod = st.modulation_db[slots]
    mod += alpha["modulation_ms"][k] * (np.abs(lv_k - st.last_level[slots]) - mod)
    run_before = st.voiced_run_ms[slots]
    onset = (run_before == 0) & (st.activity[slots] < ONSET_RESET_ACTIVITY)
    mod[onset] = ONSET_MODULATION_DB
    st.modulation_db[slots] = mod
    _impulses(st, slots, lv_k, run_before, onset)
    # only runs of speech-like frames count; the frame that confirms a run brings the run's
    # earlier frames with it (the activity steps over the whole run at once)
    run_ms = np.zeros(len(idx), dtype=np.float32)
    run_ms[k] = run_before + dt_ms[k]
    st.voiced_run_ms[rows] = run_ms
    run_k, min_run = run_ms[k], tuning["min_run_ms"][k]
    confirmed = run_k >= min_run
    confirming = k[confirmed & (run_k - dt_ms[k] < min_run)]
    k = k[confirmed]  # the active frames
    active = np.zeros(len(idx), dtype=bool)
    active[k] = True
    step_ms = dt_ms
    if confirming.size:
        step_ms = dt_ms.copy()
        step_ms[confirming] = run_ms[confirming]

    st.last_level[rows] = level_dbov
    floor_moved = _toward(floor, level_dbov, alpha["floor_rise_ms"], alpha["floor_fall_ms"])
    all_sounding = bool(sounding.all())
    st.noise_floor[rows] = floor_moved if all_sounding else np.where(sounding, floor_moved, floor)

    lv = np.maximum(level_dbov, SMOOTH_FLOOR_DBOV)
    smooth = st.level_smooth[rows]
    st.level_smooth[rows] = _toward(smooth, lv, alpha["level_attack_ms"],
                                    alpha["level_release_ms"])

    act = st.activity[rows]
    new_run = k[act[k] < ONSET_RESET_ACTIVITY]  # before `act` (maybe a view) changes
    target = active.astype(np.float32)
    new_act = _toward(act, target, alpha["activity_attack_ms"], alpha["activity_release_ms"])
    if confirming.size:  # a confirmed run's frames, all at once
        c = confirming
        new_act[c] = act[c] + (_alpha(step_ms[c], tuning["activity_attack_ms"][c])
                               * (target[c] - act[c]))
    if not all_sounding:
        new_act = np.where(sounding, new_act, 0.0)
    st.activity[rows] = new_act
    st.silent[rows] = ~sounding

    st.run_start_ms[idx[new_run]] = t_end_ms[new_run] - step_ms[new_run].astype(np.int64)
    st.last_active_ms[idx[k]] = t_end_ms[k]

    was = st.speaking[rows]
    now = sounding & ((was & (new_act > tuning["speaking_off"]))
                      | (~was & (new_act >= tuning["speaking_on"])))
    started, stopped = now & ~was, was & ~now
    st.speaking[rows] = now
    k = idx[np.flatnonzero(started)]
    st.onset_ms[k] = st.run_start_ms[k]
    return active, started, stopped


def _impulses(st: EngineState, slots: np.ndarray, lv_k: np.ndarray, run_before: np.ndarray,
              onset: np.ndarray) -> None:
    """Whether each speech-like frame's sound is an impulse (``IMPULSE_DROP_DB``): judged
    on sounds that start after a silence (``onset``), from their first frames' peak."""
    peak = st.impulse_peak_dbov[slots]
    low = st.impulse_low_dbov[slots]
    first = run_before == 0
    early = run_before < IMPULSE_ONSET_MS  # the frames the peak is taken from
    impulse = st.impulse[slots] & ~first
    again = impulse & (lv_k >= low + np.float32(IMPULSE_RECOVER_DB))
    impulse &= ~again
    peak = np.where(onset, lv_k, np.where(first, -np.inf,
                                          np.where(early, np.maximum(peak, lv_k), peak)))
    # louder than its start, or rising again: a word, judged no more in this run
    peak = np.where(again | (~early & (lv_k > peak)), -np.inf, peak).astype(np.float32)
    impulse |= (~early & (run_before <= IMPULSE_JUDGED_MS)
                & (lv_k <= peak - np.float32(IMPULSE_DROP_DB)))
    st.impulse_peak_dbov[slots] = peak
    st.impulse_low_dbov[slots] = np.where(early, lv_k, np.minimum(low, lv_k))
    st.impulse[slots] = impulse


def _without_leaks(st: EngineState, idx: np.ndarray, k: np.ndarray, room_of: np.ndarray,
                   level_dbov: np.ndarray, loudest: np.ndarray, alpha_follow: np.ndarray
                   ) -> np.ndarray:
    """``k`` (positions of speech-like frames) less the frames that are the voice of the
    room's loudest participant leaking into this microphone (``LEAK_FOLLOW_SHARE``).

    Two people in one room hear each other: each microphone carries the other's voice a
    few dB down. Taken for speech, the leak kept a holder 'speaking' while its neighbour
    took the turn (the change waited ``interrupt_ms``), and raised the neighbour's own
    speech level. The loudest frame of each room is the reference (the last of equals);
    ``follow_db`` and ``move_db`` move on a participant's speech-like frames that are not
    it, over ``modulation_ms``."""
    n_rooms = st.n_rooms
    tied = np.flatnonzero(level_dbov == loudest[room_of])
    ref_of_room = np.full(n_rooms, -1, dtype=np.int64)
    np.maximum.at(ref_of_room, room_of[tied], tied)
    ref = ref_of_room[room_of[k]]
    other = ref != k
    j, ref = k[other], ref[other]
    if not j.size:
        return k
    s, s_ref = idx[j], idx[ref]
    jump = level_dbov[j] - st.last_level[s]
    jump_ref = level_dbov[ref] - st.last_level[s_ref]
    a = alpha_follow[j]
    follow = st.follow_db[s]
    move = st.move_db[s]
    follow = (follow + a * (np.abs(jump - jump_ref) - follow)).astype(np.float32)
    move = (move + a * (np.abs(jump_ref) - move)).astype(np.float32)
    st.follow_db[s] = follow
    st.move_db[s] = move
    leak = ((level_dbov[ref] - level_dbov[j] >= LEAK_MIN_DB) & (move >= LEAK_MIN_MOVE_DB)
            & (follow < LEAK_FOLLOW_SHARE * move))
    if not leak.any():
        return k
    is_leak = np.zeros(len(idx), dtype=bool)
    is_leak[j[leak]] = True
    return k[~is_leak[k]]


def _without_echo(st: EngineState, idx: np.ndarray, k: np.ndarray, room_of: np.ndarray,
                  level_dbov: np.ndarray, loudest: np.ndarray, t_end_ms: np.ndarray,
                  floor: np.ndarray) -> np.ndarray:
    """``k`` less the frames that are the echo of the room's other participants, learning
    each participant's echo coupling on the way (``ECHO_*``).

    Without an echo canceller worth the name (laptop speakers), a listener's microphone
    carries the talker's voice 10-25 dB down, late, with the room's ringing after each
    word. Taken for speech, it outlasted the talker at the end of each of its sentences
    and took the floor (laptop-echo draws: 1.25 false switches a minute). The zero-lag
    leak test (``_without_leaks``) does not see it: the echo is late and smeared. The
    coupling is learned only while a participant does not hold the floor (a holder quieter
    than a listener's laugh is no echo of it); every participant's frames are gated,
    the holder's too: its microphone's echo of the one taking over would keep it talking.
    """
    n_rooms = st.n_rooms
    # the loudest other participant of each one's room: the loudest of the room, or the
    # second loudest for the one participant that is the loudest (ties: the loudest)
    top = loudest
    at_top = level_dbov == top[room_of]
    n_top = np.bincount(room_of[at_top], minlength=n_rooms)
    second = np.full(n_rooms, -np.inf, dtype=np.float32)
    np.maximum.at(second, room_of, np.where(at_top, np.float32(-np.inf), level_dbov))
    others = np.where(at_top & (n_top[room_of] == 1), second[room_of], top[room_of])
    # what the others sent recently, held then decaying: the echo's reference
    peak = st.echo_peak_dbov[idx]
    since_ms = (t_end_ms - st.echo_peak_ms[idx]).astype(np.float64)
    decayed = peak - ECHO_DECAY_DB_PER_MS * np.maximum(0.0, since_ms - ECHO_HOLD_MS)
    louder = others >= decayed
    st.echo_peak_dbov[idx] = np.where(louder, others, peak)
    st.echo_peak_ms[idx] = np.where(louder, t_end_ms, st.echo_peak_ms[idx])
    reference = np.maximum(others, decayed)
    coupling = st.echo_coupling_db[idx]
    listening = ((st.holder[room_of] != idx) & (level_dbov > SILENCE_DBOV)
                 & (others >= ECHO_REFERENCE_MIN_DBOV)
                 & (others - level_dbov >= ECHO_REFERENCE_GAP_DB))
    step = np.where(level_dbov - reference > coupling, ECHO_COUPLING_UP_DB,
                    -ECHO_COUPLING_DOWN_DB)
    coupling = np.where(listening, coupling + step, coupling).astype(np.float32)
    st.echo_coupling_db[idx] = coupling
    expected = reference + coupling
    echo = (level_dbov <= expected + ECHO_MARGIN_DB) & (expected - floor >= ECHO_AUDIBLE_DB)
    return k[~echo[k]]
