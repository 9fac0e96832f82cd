"""A quick exchange (Tuning.reply_hold_ms): the previous holder answering a short turn that
answered its own waits a shorter hold. Synthetic levels on a 20 ms media clock, exact
switch times, both engine paths."""
import numpy as np
import pytest

import dsp.engine as engine_module
from dsp import events as ev
from dsp.engine import Engine, Wave
from dsp.tuning import PROFILES

FRAME_MS = 20
SPEECH_DBOV, NOISE_DBOV = -20.0, -70.0
T = PROFILES["meeting"]
PATHS = ["numpy"] + (["c"] if engine_module._kernel is not None else [])


def floor_changes(talk: dict[int, list[tuple[int, int]]], end_ms: int, kernel: str,
                  monkeypatch) -> list[tuple[int, int]]:
    """(t_ms, new holder) of every floor change; ``talk``: per participant, its spans."""
    monkeypatch.setattr(engine_module, "KERNEL", kernel)
    eng = Engine()
    assert eng.kernel == kernel
    room = eng.add_room(T)
    slots = [eng.add_participant(room) for _ in talk]
    changes = []
    for k in range(end_ms // FRAME_MS):
        t = k * FRAME_MS
        on = [any(a <= t < b for a, b in talk[p]) for p in talk]
        events = eng.step(Wave(
            rooms=np.array([room]), t_ms=np.array([t]), duration_ms=np.array([FRAME_MS]),
            level_slots=np.array(slots),
            level_dbov=np.array([SPEECH_DBOV if o else NOISE_DBOV for o in on], np.float32),
            level_voice=np.array(on, np.int8)))
        changes += [(e.t_ms, slots.index(e.slot)) for e in events
                    if isinstance(e, ev.FloorChange)]
    return changes


@pytest.mark.parametrize("kernel", PATHS)
def test_an_answer_to_a_short_answer_waits_the_reply_hold(kernel, monkeypatch):
    """a (2 s), b answers (2 s), a answers back 300 ms after b's last word: a's answer is
    shown reply_hold_ms after b's last speech frame, not hold_ms."""
    changes = floor_changes({0: [(0, 2000), (4600, 6600)], 1: [(2300, 4300)], 2: []},
                            7000, kernel, monkeypatch)
    assert [who for _, who in changes] == [0, 1, 0]
    assert changes[2][0] == 4300 + T.reply_hold_ms  # b's last speech frame ends at 4300


@pytest.mark.parametrize("kernel", PATHS)
def test_after_a_long_turn_the_answer_waits_the_full_hold(kernel, monkeypatch):
    changes = floor_changes({0: [(0, 2000), (7600, 9600)], 1: [(2300, 7300)], 2: []},
                            10000, kernel, monkeypatch)
    assert [who for _, who in changes] == [0, 1, 0]
    assert changes[2][0] == 7300 + T.hold_ms


@pytest.mark.parametrize("kernel", PATHS)
def test_someone_else_answering_waits_the_full_hold(kernel, monkeypatch):
    """c, who did not hold the floor before b, waits hold_ms: a listener's remark after a
    new holder's short turn is no quick reply."""
    changes = floor_changes({0: [(0, 2000)], 1: [(2300, 4300)], 2: [(4600, 6600)]},
                            7000, kernel, monkeypatch)
    assert [who for _, who in changes] == [0, 1, 2]
    assert changes[2][0] == 4300 + T.hold_ms


def test_the_podcast_profile_keeps_its_hold():
    assert PROFILES["podcast"].reply_hold_ms == PROFILES["podcast"].hold_ms
    assert PROFILES["debate"].reply_hold_ms >= PROFILES["debate"].hold_ms


@pytest.mark.parametrize("kernel", PATHS)
def test_an_answer_begun_over_the_holders_last_word_waits_the_full_hold(kernel, monkeypatch):
    """a's remark that starts before b's last word and runs into b's pause is talk over b,
    not an answer to it (a real recorded conversation's 'yeah' did this)."""
    changes = floor_changes({0: [(0, 2000), (4200, 6200)], 1: [(2300, 4300)], 2: []},
                            7000, kernel, monkeypatch)
    assert [who for _, who in changes] == [0, 1, 0]
    assert changes[2][0] > 4300 + T.reply_hold_ms
