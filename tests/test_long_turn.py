"""A long turn's pauses get a longer hold (Tuning.long_turn_ms, long_turn_hold_ms): a
listener's remark in a monologue's thinking pause does not take the floor, while the same
remark after a short turn does. Level ticks through the registry (both engine paths run
the same rule; tests/test_engine_paths.py holds them together)."""
import math

from conftest import script_levels, switches
from test_scenarios import ABC, run

from dsp.tuning import PROFILES

T = PROFILES["meeting"]
FIRST_SWITCH_MS = 120  # a's first turn is shown after min_run_ms + the first frames
FRAME_MS = 20


SENTENCE_MS, BREATH_MS = 3000, 400  # a's sentences, and the pauses between them


def _sentences(turn_ms: int) -> list[tuple[str, int, int]]:
    """a's turn of ``turn_ms`` in sentences (its noise floor falls back in each breath)."""
    return [("a", t, min(t + SENTENCE_MS, turn_ms))
            for t in range(0, turn_ms, SENTENCE_MS + BREATH_MS)]


def _remark_after(turn_ms: int, remark_at_ms: int, remark_ms: int = 200):
    """a talks for ``turn_ms``, pauses, and goes on 1.5 s after; b says a remark
    ``remark_at_ms`` into a's pause."""
    segments = _sentences(turn_ms) + [
        ("b", turn_ms + remark_at_ms, turn_ms + remark_at_ms + remark_ms),
        ("a", turn_ms + 1500, turn_ms + 4000)]
    return switches(run(script_levels("r", segments, ABC, turn_ms + 4000))[0])


def test_a_remark_in_a_long_turns_pause_does_not_take_the_floor():
    turn_ms = int(2 * T.long_turn_ms) + SENTENCE_MS  # the full long_turn_hold_ms: 1300 ms
    assert _remark_after(turn_ms, 800) == [(FIRST_SWITCH_MS, "a")]


def test_the_same_remark_after_a_short_turn_does():
    # hold_ms (700) has run out when b starts at 800 ms: it is shown once it has talked
    # min_speech_ms, and a takes the floor back when it goes on
    got = _remark_after(SENTENCE_MS, 800)
    assert got[:2] == [(FIRST_SWITCH_MS, "a"), (SENTENCE_MS + 800 + T.min_speech_ms, "b")]


def test_a_turn_change_after_a_long_turn_is_shown_once_the_newcomer_has_outlasted_it():
    """b starts 600 ms into a's pause and goes on: not at the end of hold_ms (700 ms) but
    when its talk and a's silence add up to outlast_total_ms; a prompt answer (200 ms)
    gets there as soon as without the long-turn hold."""
    turn_ms = int(2 * T.long_turn_ms) + SENTENCE_MS
    for gap_ms in (600, 200):
        segments = _sentences(turn_ms) + [("b", turn_ms + gap_ms, turn_ms + 4000)]
        got = switches(run(script_levels("r", segments, ABC, turn_ms + 4000))[0])
        outlasted_ms = (T.outlast_total_ms + gap_ms) / 2  # talk + silence, both growing
        frame_end = FRAME_MS * math.ceil(outlasted_ms / FRAME_MS)  # the frame that gets there
        assert got == [(FIRST_SWITCH_MS, "a"), (turn_ms + frame_end, "b")]
