"""Switching parameters and the named profiles.

Every constant says what it does to switching. Times are media-time milliseconds, levels
dBov. A room's parameters are stored as one row of per-room arrays in the engine, so rooms
with different tunings still run in one vectorized batch.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Tuning:
    # --- activity (per participant) -----------------------------------------------------
    level_attack_ms: float = 30.0
    """Smoothing of the level when it rises: short, so a new speaker's score is ready
    within a few frames."""
    level_release_ms: float = 250.0
    """Smoothing when the level falls: bridges the dips between syllables so the holder's
    score does not collapse mid-word."""
    floor_fall_ms: float = 80.0
    """The noise floor follows the signal down almost at once: the quietest recent frame is
    the best estimate of the background."""
    floor_rise_ms: float = 3000.0
    """The floor rises slowly, so speech (which always has pauses) cannot lift it, but a fan
    switched on is absorbed within a few seconds and stops looking like a speaker."""
    min_snr_db: float = 9.0
    """A frame counts as speech only this far above the participant's own noise floor: a
    hot mic or a noisy room raises the bar for that participant alone."""
    min_level_dbov: float = -65.0
    """Frames quieter than this never count as speech, whatever the floor (VADs fire on
    very low-level hiss)."""
    energy_voice_snr_db: float = 14.0
    """With no VAD decision (levels without the V bit), a frame is voiced when this far
    above the noise floor."""
    speech_level_rise_ms: float = 200.0
    speech_level_fall_ms: float = 8000.0
    """Each participant's own speech level: follows its voiced frames up quickly and down
    slowly, so it sits near the loud part of what that participant says."""
    speech_margin_db: float = 14.0
    """Voiced frames this far below the participant's own speech level are not speech from
    that participant: a breath before a turn, or another talker leaking in through
    imperfect echo cancellation (20-30 dB down). They neither light its indicator nor
    keep or win it the floor."""
    min_run_ms: float = 60.0
    """Speech-like frames count only once they form a run this long. Syllables last 100-300
    ms, so speech loses nothing (its first frames are credited when the run is
    confirmed); keyboard typing and mouse clicks, which VADs often mark voiced, light one
    or two 20 ms frames at a time (85% of typing's voiced frames on the evaluation corpus,
    0.2% of speech's), so they never add up to a speaker."""
    modulation_ms: float = 200.0
    min_modulation_db: float = 1.75
    """Speech is modulated: syllables (4-5 a second) make its level jump by several dB from
    one 20 ms frame to the next. A breath before a turn, a steady hum or a fan is smooth,
    even when the VAD marks it voiced, and a listener's breath is loud enough to pass the
    other gates while its own speech level is not yet known. ``modulation_db`` is the mean
    jump over a participant's speech-like frames (one-pole, ``modulation_ms``); a
    challenger below ``min_modulation_db`` takes no floor from a holder above it. (A holder
    below it means the room's levels are smooth anyway, e.g. averaged by the sender: then
    nobody is judged on it.) Measured with 20 ms frames, as browsers send them; with 10
    or 30 ms PCM frames (smaller or larger jumps) it still removes false switches on the
    dev corpus, 0.23 -> 0.20 and 0.25 -> 0.22/min, accuracy (96.0%) and median delay
    unchanged. Over the first 200 ms of a sound (espeak-ng evaluation corpus, levels): speech jumps 4.6 dB a frame
    (5th percentile 2.1), breaths 1.4 (90th percentile 2.5). What it did: false switches
    0.22 -> 0.15/min on the dev corpus (breaths before turns, 200-250 ms before the turn:
    outside the 200 ms grace), 0.15 -> 0.14 on the confirm draw, 0.21 -> 0.17 on the repo
    scenarios, whose smoother synthetic speech (2.6 dB) costs a little there (accuracy
    95.99 -> 95.94%). Faster (100 ms) or stricter (2 dB) settings removed more breaths but
    delayed our synthetic speech more."""
    activity_attack_ms: float = 60.0
    activity_release_ms: float = 250.0
    """The share of recent speech frames, smoothed: fast up, slower down."""
    speaking_on: float = 0.6
    speaking_off: float = 0.25
    """Hysteresis on the activity: speaking starts above `speaking_on` and only stops below
    `speaking_off`, so breathing pauses do not toggle indicators."""
    vad_mode: int = 2
    """webrtcvad aggressiveness for PCM participants."""

    # --- floor (per room) ---------------------------------------------------------------
    min_speech_ms: float = 120.0
    """Dominant speech a challenger needs while the holder is silent (after `hold_ms`). It
    adds to the 60 ms that `min_run_ms` already asks of any speech, so a click or a
    keyboard never gets this far; it decides how fast a turn change after a long gap is
    shown. With `hold_ms` it is one trade-off (see `hold_ms`)."""
    interrupt_ms: float = 1200.0
    """Dominant speech a challenger needs while the holder is still talking: a 'yeah' or a
    failed interruption never lasts this long."""
    hold_ms: float = 700.0
    """The holder keeps the floor through its own pauses shorter than this (breaths, commas,
    the gap between two sentences) before challengers need only `min_speech_ms`. A 'yeah'
    dropped into such a pause is what it guards against. The two act on different turn
    changes: the hold on those whose newcomer starts soon after the holder stops,
    `min_speech_ms` on those after a long gap. Moving weight from one to the other (600 /
    200 -> 800 / 120 ms) gave, on three corpora at once, higher accuracy, shorter median
    delays and fewer false switches (dev 96.0 -> 96.1%, 272 -> 260 ms, 0.26 -> 0.22/min;
    confirm 95.3 -> 95.6%, 296 -> 254 ms, 0.30 -> 0.15; repo 95.8 -> 96.0%, 277 -> 232 ms,
    0.29 -> 0.21), for a longer p90 (538 -> 676 ms on dev); 750-850 / 100-140 ms measured
    around it. 800 -> 700 came with `overlap_margin_db`, which removed the echo false
    switches a shorter hold would have let through: on six corpora at once (levels) accuracy
    up and median delay down on each (kit dev 96.19 -> 96.42%, 260 -> 222 ms; kit draws two
    and three 95.37 -> 95.62%, 268 -> 245 ms and 95.41 -> 95.51%, 261 -> 242 ms; recorded
    voices 95.72 -> 96.23%, 514 -> 414 ms and 96.41 -> 96.81%, 515 -> 414 ms), false
    switches 0.15 -> 0.18, 0.32 -> 0.30, 0.27 -> 0.29, 0.10 -> 0.05, 0.05 -> 0.00 per min.
    650 was faster still and added false switches on the three kit draws; 750 gave back
    half the gain. On the repo scenarios, which no tuning had seen, 700 added false
    switches at the frame the holder's voice came back (0.17 -> 0.28/min): a holder whose
    current frame is speech-like now keeps the floor when its hold runs out (0.19/min;
    the kit's draws 0.18, 0.29, 0.26; docs/switching-quality.md)."""
    outlast_ms: float = 250.0
    """An interrupter still talking this long after the holder's last speech frame, whose
    talk and that silence add up to `outlast_total_ms`, has outlasted it: the room needs only
    `min_speech_ms` of evidence, not the holder's full `hold_ms` of silence. It must exceed
    an echo path (30-120 ms) plus `takeover_recency_ms` (100 ms), so that a leaked copy of
    the holder never outlasts it; at 250 ms the interrupter is shown up to 550 ms sooner
    (overlap scenarios: 86.6 -> 89.1% on the dev corpus, 83.8 -> 86.9% on the confirm
    draw; 200, 300 and 400 ms measured). At or above `hold_ms` it changes nothing."""
    outlast_total_ms: float = 1500.0
    """With `outlast_ms`: the interrupter's talk plus the holder's silence since its last
    speech must reach this. Before, the interrupter had to have talked `interrupt_ms`
    (1200 ms) whatever the overlap, so a turn change that overlapped the holder by 240 ms
    (real conversation: most overlaps are that short) waited ~1 s; now the shorter the
    overlap, the longer the silence it must outlast (1500 = 1250 + 250: one that talked
    1250 ms switches at the 250 ms mark, as before). A 'yeah' over a pause of the holder
    rarely lasts this long. Measured at once on four corpora (levels): accuracy +0.10
    to +0.15 points on each (kit dev 96.09 -> 96.19%, kit second draw 95.22 -> 95.37%,
    recorded voices 95.57 -> 95.72%, repo scenarios 95.65 -> 95.79%), the median delay of
    overlapping changes 1247 -> 1212, 1266 -> 1233, 935 -> 823 and 1097 -> 897 ms; false
    switches the same on the two kit draws (0.15, 0.32/min) and one more on each of the
    other two (0.05 -> 0.10, 0.14 -> 0.17/min). 1400 was faster and added false switches
    on three; 1600 was slower on the kit's long overlaps (docs/switching-quality.md)."""
    overlap_margin_db: float = 9.0
    """The interrupter's talk for `outlast_total_ms` counts from the first speech run in which
    it sounded no more than this below the holder (smoothed levels). Speech leaking into a
    listener's microphone (echo, 20-30 dB down) keeps that listener 'speaking' through the
    holder's turn; counted from its onset, that talk let a breath or a cough just after the
    holder stopped 'outlast' it (most echo-room false switches of the kit's draws). Two
    people talking over each other sit within a few dB. Measured with `hold_ms` 700 on six
    corpora (levels): 9, 12 and 15 dB equal on the kit's dev draw, the recorded-voice sets
    and the real pyannote sample; on the kit's other two draws echo-room false switches
    0.10 / 0.12 per min at 9 dB against 0.21 / 0.35 at 15 (0.63 / 0.58 with no margin)."""
    silent_hold_ms: float = 500.0
    """A holder sending digital silence (a muted microphone that still sends, a noise gate,
    the RTP ingest's silence for a source in Opus DTX that has sent no unvoiced packet)
    keeps the floor this long after its last speech
    frame, then as if muted: challengers need only `min_speech_ms`. Zero here would let a
    listener's cough win the floor in a 100 ms gap of zeros between two of the holder's
    words (the Janus browser test's cough did, 180 ms on screen). 250 ms was not enough:
    a pause between words lasts up to 300 ms, and the quiet end of the word before it is
    already below the speech gate, so the silence counted from the last speech frame
    reached 250 ms in some pauses and the test's cough, or alice's 'mm-hm', landing in
    one took the floor (2 of 6 runs). 500 ms is past that and still short of `hold_ms`.
    The corpora (digital silence only from mutes) decide exactly as with 0 and 250."""
    reply_hold_ms: float = 500.0
    """The hold in a quick exchange: when the holder took the floor less than
    `reply_turn_ms` ago from a previous holder whose own turn was that short too, and that
    previous holder answers (it has evidence, in a run begun after the holder's last
    word), the answer needs this much of the holder's silence instead of `hold_ms`. A
    back-and-forth of 1-3 s turns changes hands 20 times a minute, and each change paid
    the full hold (the hidden sets' rapid exchanges: 79% accuracy). A listener's remark in
    or after a long turn is untouched, and so is talk begun over the holder's last word
    (the real sample's 'yeah' into a 550 ms pause took the floor without that condition).
    Chosen on the `rapid` type (8 draws: 81.9 -> 84.6%, median 400 -> 271 ms, false
    switches 0.38 -> 0.50/min); on 12 new draws (seeds 100-111, 90 s), untouched: 80.0 ->
    83.2%, 401 -> 275 ms, 0.28 -> 0.28/min; the real sample 78.2 -> 81.6% (a change after a
    short exchange shown 160 ms after it instead of 640); the repo scenarios 95.20 ->
    95.36%, 275 -> 257 ms, 0.21 -> 0.24/min; the kit's dev draw 96.40 -> 96.41%, its
    second 0.29 -> 0.30/min, its third, the recorded voices and the crosstalk draws the
    same. Without the two conditions on who answers (anyone, after any holder of under
    4 s), rapid gained more (86.8%) but false switches rose on every other corpus (kit dev
    0.18 -> 0.28/min): listeners' remarks in a new holder's first pauses."""
    long_turn_ms: float = 15000.0
    long_turn_hold_ms: float = 600.0
    """A holder whose turn has gone on for more than `long_turn_ms` gets a longer hold, by up
    to `long_turn_hold_ms` as the turn reaches twice that length. A long turn's pauses are
    longer (thinking, not yielding: pauses within a speaker's turn run longer than the gaps
    between speakers, Heldner & Edlund 2010), and in a monologue each pause past `hold_ms`
    was a listener's cough or 'mm' away from a false switch. Chosen on 8 draws of a
    monologue (one talker, 4-15 s runs with 0.6-2 s pauses; listeners' coughs, typing,
    'mm', some on laptops) and the kit's dev draw: 0.83 -> 0.58 and 0.20 -> 0.14 false
    switches a minute, accuracy 98.4 -> 99.0% and equal, median 232 -> 235 ms; untouched:
    8 other monologue draws 0.67 -> 0.58, the kit's c2 / s3 0.23 -> 0.20 / 0.23 -> 0.18
    (medians +1 / +2 ms), repo scenarios 0.25 -> 0.21; recorded voices, whose turns are
    long, 96.8 -> 96.6%, median 340 -> 366 ms. 300 ms gave half the gain; from 8 s on,
    medians +16-27 ms (docs/switching-quality.md)."""
    reply_turn_ms: float = 4000.0
    """See `reply_hold_ms`: how short both turns must be for an exchange to be quick."""
    newcomer_speech_ms: float = 300.0
    """In a room of ``switching.NEWCOMER_ROOM_SIZE`` (8) or more, the evidence a participant
    that has never held the floor needs on top of the others' (``min_speech_ms``,
    ``interrupt_ms``). In an audience most never speak, and each one's cough, typing or
    'yeah' in a speaker's pause is a false switch waiting to happen; one who has held the
    floor is likelier to speak again. The cost: each participant's first turn in such a
    room is shown this much later, once. Chosen on 6 draws of a 25-person space (2-4 on
    stage, the others' coughs, typing and remarks): 1.22 -> 0.22 false switches a minute;
    on 8 other draws, untouched: 96.8 -> 96.9%, 1.08 -> 0.25/min, median 154 -> 285 ms
    (the talkers' first turns). The kit's `large` type (12-20, most listeners muted):
    accuracy 97.3 -> 96.7, 96.7 -> 96.6 and 97.2 -> 96.3% on its three draws, false
    switches 0 -> 0, 0.25 -> 0 and 0.14 -> 0.14/min; rooms under 8 decide as before. 150 ms
    in every room was measured too: kit dev 96.4 -> 96.2%, median 219 -> 271 ms (every
    first turn in a meeting of four pays it), backchannels 0.88 -> 0.55/min."""
    switch_margin_db: float = 3.0
    """A challenger gathers evidence only while this much louder than the holder, so two
    people at similar levels do not trade the floor back and forth."""
    takeover_recency_ms: float = 100.0
    """A challenger takes the floor only while it is talking: its last speech frame at most
    this long ago. Without it, a remark could win the floor after it had ended, once the
    holder's hold ran out."""
    evidence_decay: float = 1.0
    """Evidence drains at this multiple of real time when the challenger stops dominating:
    scattered interjections do not add up to a switch. Not negative."""

    algorithm: int = 0
    """Who decides the floor: 0 our evidence engine (`switching.py`), 1 the Volfin-Cohen
    DSI as deployed in SFUs (`dsi.py`), 2 the loudest participant every frame. The peers
    exist to be measured against; everything else (video, pin, forwarding) is shared."""

    # --- outputs ------------------------------------------------------------------------
    active_speakers: int = 5
    """Length of the ActiveSpeakers list."""
    active_speakers_interval_ms: float = 200.0
    """Minimum media time between two ActiveSpeakers events of a room (UI rate limit)."""
    speaking_interval_ms: float = 200.0
    """Minimum media time between two SpeakingChanged events of a participant, so a
    speaking indicator never blinks faster than the eye can follow."""
    forwarding_size: int = 5
    """N of the forwarding set (last-N): cameras the media server forwards."""
    forwarding_min_ms: float = 5000.0
    """A camera that entered the forwarding set stays at least this long, so a brief
    remark does not make the SFU start and stop a video stream (keyframes are costly)."""
    no_audio_timeout_ms: float = 200.0
    """No packets for this long means a quiet sender (Opus DTX) or a stalled one: the
    participant is advanced as quiet (its noise floor, unvoiced; digital silence if its
    last frame was), so its speaking and its evidence run down. Shorter gaps are packet
    loss: its state is kept. Opus DTX sends one packet in 400 ms while its speaker is
    silent, so at 500 ms the rule never fired: a listener frozen 'speaking' after its
    'yeah' kept its evidence and took the floor with its next word (the kit's dev draw
    with DTX: 0.35 false switches a minute, its second 0.50; 0.18 and 0.24 now, as
    without DTX: 0.20, 0.23). Loss bursts of 20-180 ms (10% of packets) decide as
    before."""

    def replace(self, **changes: float) -> "Tuning":
        return dataclasses.replace(self, **changes)


ALGORITHMS = ("speakerswitch", "dsi", "loudest")
SPEAKERSWITCH, DSI, LOUDEST = range(3)

PROFILES: dict[str, Tuning] = {
    "meeting": Tuning(),
    # Long monologues, few speakers: switching late is cheap, switching wrongly is not
    # (benchmarks/quality/targets.py: at most 0.1 false switches a minute, none undone
    # within a second). Until 2026-12-05 500 / 2000 / 1200 / 2500 ms (min_speech, interrupt,
    # hold, outlast_total): as few false switches as this one on the monologues, but turns
    # shown 830 ms late, and behind the SFUs' DSI in accuracy on the kit's dev draw (90.8%
    # against 91.0%). Chosen on the kit's dev draw, the repo scenarios and 8 monologue
    # draws (8 settings): dev 90.8 -> 93.6%, median 836 -> 554 ms, 0 -> 0 false/min; on 14
    # corpora untouched, accuracy +1.7 to +8.7 points (but monologues 99.4 -> 99.1%: one
    # false switch) and medians 170-380 ms shorter, false switches 0.1/min or fewer on
    # each but for rapid exchanges (0.17 -> 0.25, not a podcast), and none undone within
    # a second (docs/switching-quality.md).
    "podcast": Tuning(min_speech_ms=300.0, interrupt_ms=1600.0, hold_ms=1000.0,
                      outlast_ms=500.0, outlast_total_ms=2000.0, switch_margin_db=4.0,
                      reply_hold_ms=1000.0),
    # Rapid exchanges: follow the voice quickly, accept a few more switches. A long turn
    # (an opening statement) doubles its hold by 30 s (long_turn_hold_ms 300; it had none
    # until 2026-12-05): chosen on the kit's dev draw, the repo scenarios and 8 rapid
    # draws (false switches 0.72 -> 0.60, 1.06 -> 1.02 and 0.25 -> 0.25 a minute, the
    # same medians; 600 measured too); on the kit's c2 / s3 draws 0.65 -> 0.53 / 0.82 ->
    # 0.76, accuracy +0.2 / +0.1 points; 12 other rapid draws, monologues, crosstalk,
    # laptop and the real sample the same; recorded voices' median +10 ms.
    "debate": Tuning(min_speech_ms=150.0, interrupt_ms=800.0, hold_ms=300.0,
                     outlast_total_ms=1050.0, switch_margin_db=2.0, long_turn_hold_ms=300.0),
}
DEFAULT_PROFILE = "meeting"

FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Tuning))
INT_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Tuning) if f.type == "int")


def profile(name: str) -> Tuning:
    """The named profile; KeyError names the known ones."""
    try:
        return PROFILES[name or DEFAULT_PROFILE]
    except KeyError:
        raise KeyError(f"unknown profile {name!r} (known: {', '.join(PROFILES)})") from None
