"""Newcomers in a large room (Tuning.newcomer_speech_ms, switching.NEWCOMER_ROOM_SIZE): one
who has never held the floor of a room of 8 or more needs more evidence. Synthetic levels on
a 20 ms media clock, exact switch times, both engine paths."""
import pytest

from dsp.switching import NEWCOMER_ROOM_SIZE
from dsp.tuning import PROFILES
from test_quick_exchange import PATHS, floor_changes

T = PROFILES["meeting"]


def room(size: int, talk: dict[int, list[tuple[int, int]]]) -> dict[int, list[tuple[int, int]]]:
    """``talk`` in a room of ``size`` participants (the others silent all along)."""
    return {p: talk.get(p, []) for p in range(size)}


@pytest.mark.parametrize("kernel", PATHS)
def test_a_listeners_remark_in_a_long_pause_takes_a_small_room_but_not_a_large_one(
        kernel, monkeypatch):
    # 0 talks, pauses 2 s; listener 1 says 300 ms of something in the pause
    talk = {0: [(0, 2000), (4000, 6000)], 1: [(3000, 3300)]}
    small = floor_changes(room(3, talk), 7000, kernel, monkeypatch)
    large = floor_changes(room(NEWCOMER_ROOM_SIZE, talk), 7000, kernel, monkeypatch)
    assert [who for _, who in small] == [0, 1, 0]
    assert [who for _, who in large] == [0]


@pytest.mark.parametrize("kernel", PATHS)
def test_a_newcomers_first_turn_waits_newcomer_speech_ms_and_its_next_does_not(
        kernel, monkeypatch):
    # 1 answers 0 after a 1 s gap (past the hold), 0 answers back, 1 again
    talk = {0: [(0, 2000), (6000, 8000)], 1: [(3000, 5000), (9000, 11000)]}
    small = floor_changes(room(3, talk), 12000, kernel, monkeypatch)
    large = floor_changes(room(NEWCOMER_ROOM_SIZE, talk), 12000, kernel, monkeypatch)
    assert [who for _, who in small] == [who for _, who in large] == [0, 1, 0, 1]
    assert large[1][0] - small[1][0] == T.newcomer_speech_ms  # 1's first turn
    assert large[2][0] == small[2][0] and large[3][0] == small[3][0]  # held before


def test_a_room_moved_after_a_failure_knows_its_holder_has_held_the_floor():
    from dsp.engine import Engine
    eng = Engine()
    r = eng.add_room(T)
    slots = [eng.add_participant(r) for _ in range(NEWCOMER_ROOM_SIZE)]
    eng.restore_decisions(r, 5000, shown=slots[2], holder=slots[2], pinned=-1, presenters=[],
                          forwarding=[slots[2]])
    assert eng.st.has_held[slots].tolist() == [s == slots[2] for s in slots]
