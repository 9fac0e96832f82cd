"""A cough, a knock or a door is no turn (activity.IMPULSE_DROP_DB): a sound that starts at
its loudest and falls within 100 ms takes no floor, even in a long pause of the holder,
while a word whose first syllable falls and whose next one rises is still a turn. Level
ticks through the registry (tests/test_engine_paths.py holds both engine paths together)."""
from conftest import level_tick, switches
from test_scenarios import run

from dsp.activity import IMPULSE_DROP_DB, IMPULSE_JUDGED_MS
from dsp.tuning import PROFILES

T = PROFILES["meeting"]
FRAME_MS = 20
QUIET = 70                 # -70 dBov, no V bit: a listener's microphone
A_SPEAKS = [(0, 3000), (5000, 7000)]  # the holder, with a 2 s pause
SOUND_AT_MS = 3800         # into the pause, after hold_ms (700 ms)
COUGH = [20, 21, 24, 26, 28, 30, 32, 34, 36, 38, 40, 42, 44]  # -dBov: loudest at once, decaying
FIRST_SWITCH_MS = 120


def _room(b_levels: list[int], at_ms: int = SOUND_AT_MS):
    """a talks (-25 dBov, modulated by 3 dB) with a pause; b sends ``b_levels`` (voiced)
    from ``at_ms``; c listens."""
    ticks = []
    for t in range(0, 7000, FRAME_MS):
        a_talks = any(s <= t < e for s, e in A_SPEAKS)
        k = (t - at_ms) // FRAME_MS
        b = b_levels[k] if 0 <= k < len(b_levels) else None
        ticks.append(level_tick("r", t, {"a": (25 + 3 * (t // FRAME_MS % 2)) if a_talks
                                         else QUIET, "b": QUIET if b is None else b,
                                         "c": QUIET},
                                {"a": int(a_talks), "b": int(b is not None), "c": 0},
                                duration_ms=FRAME_MS))
    return switches(run(ticks)[0])


def test_a_cough_in_a_long_pause_takes_no_floor():
    assert COUGH[2] - COUGH[0] >= IMPULSE_DROP_DB  # 4 dB down by its third frame
    assert _room(COUGH) == [(FIRST_SWITCH_MS, "a")]


def test_the_same_sound_held_at_its_level_is_a_turn():
    """Not decaying, the cough's first frames are a remark taken as a turn in that pause
    (what the cough was before the rule): the rule is the only difference."""
    got = _room([20, 22] + [21, 23] * 8)  # never 4 dB below its start
    assert got[:2] == [(FIRST_SWITCH_MS, "a"), (SOUND_AT_MS + T.min_speech_ms, "b")]


def test_a_word_whose_first_syllable_falls_is_a_turn_once_the_next_one_rises():
    # the first syllable peaks at once and falls 7 dB (taken for an impulse at 40 ms) and
    # lingers 10 dB down; the next rises 10 dB over that at 180 ms: speech going on. Its
    # evidence gathered meanwhile (min_speech_ms by 120 ms) counts from that frame on
    word = [20, 22, 27, 28, 29, 30, 30, 29, 30] + [20, 22, 21, 23] * 10
    got = _room(word)
    assert got[:2] == [(FIRST_SWITCH_MS, "a"), (SOUND_AT_MS + 9 * FRAME_MS + FRAME_MS, "b")]


def test_a_fall_after_the_judged_window_is_no_impulse():
    n = int(IMPULSE_JUDGED_MS // FRAME_MS) + 1   # frames 0..100 ms: level, then the fall
    got = _room([20] * n + [30, 34, 38, 42] + [22] * 30)
    assert got[:2] == [(FIRST_SWITCH_MS, "a"), (SOUND_AT_MS + T.min_speech_ms, "b")]
