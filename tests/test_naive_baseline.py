"""The benchmarks' naive baseline (benchmarks/naive.py) must make the engine's decisions:
a speed-up against a loop that does less, or something else, would prove nothing."""
import dataclasses
import sys
from pathlib import Path

import numpy as np

from dsp import events as ev
from dsp.engine import Engine, Wave

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import naive  # noqa: E402

FRAME_MS = 20


def conversation_levels(n_rooms: int, per_room: int, n_ticks: int, seed: int) -> np.ndarray:
    """RFC 6464 bytes per tick, room and participant: talkers that take turns, overlap,
    interrupt and drop remarks, over listeners' background noise."""
    rng = np.random.default_rng(seed)
    quiet = rng.integers(58, 72, size=(n_ticks, n_rooms, per_room))
    talking = np.zeros((n_ticks, n_rooms, per_room), dtype=bool)
    for r in range(n_rooms):
        t = 0
        while t < n_ticks:
            p = rng.integers(per_room)
            length = int(rng.choice([rng.integers(8, 40), rng.integers(60, 300)]))
            talking[t:t + length, r, p] = True
            t += length + int(rng.integers(-40, 30))  # negative: the next one overlaps
            t = max(t, 1)
    loud = rng.integers(18, 34, size=(n_ticks, n_rooms, per_room))
    levels = np.where(talking, loud | 0x80, quiet).astype(np.uint8)
    return levels


SLOT_FIELDS = ("slot", "previous", "audio_slot", "slots")


def _key(e, per_room: int = 0):
    """An event as a tuple: slots as positions in the room (what the loop numbers them by)
    and float fields rounded (the loop keeps Python floats where the engine keeps float32)."""
    fields = []
    for f in dataclasses.fields(e):
        v = getattr(e, f.name)
        if f.name in SLOT_FIELDS and per_room:
            v = tuple(s % per_room if s >= 0 else s for s in v) if isinstance(v, tuple) \
                else (v % per_room if v >= 0 else v)
        elif isinstance(v, float):
            v = round(v, 1)
        elif isinstance(v, tuple):
            v = tuple(round(x, 1) if isinstance(x, float) else x for x in v)
        fields.append(v)
    return (type(e).__name__, *fields)


def test_the_naive_loop_makes_the_engines_decisions():
    n_rooms, per_room, n_ticks = 40, 6, 1500
    levels = conversation_levels(n_rooms, per_room, n_ticks, seed=3)
    eng = Engine()
    rooms = np.array([eng.add_room() for _ in range(n_rooms)])
    slots = np.array([[eng.add_participant(r) for _ in range(per_room)] for r in rooms]).ravel()
    assert (slots == np.arange(n_rooms * per_room)).all()  # slot = room * per_room + place
    plain = [naive.Room([naive.Participant() for _ in range(per_room)], index=int(r))
             for r in rooms]
    got, want = [], []
    for k in range(n_ticks):
        b = levels[k].ravel()
        got += eng.step(Wave(rooms=rooms, t_ms=np.full(n_rooms, k * FRAME_MS),
                             duration_ms=np.full(n_rooms, FRAME_MS), level_slots=slots,
                             level_dbov=-(b & 0x7F).astype(np.float32),
                             level_voice=(b >> 7).astype(np.int8)))
        want += naive.step_all(plain, [levels[k, r].tobytes() for r in range(n_rooms)],
                               (k + 1) * FRAME_MS, FRAME_MS)
    floor_changes = [e for e in got if isinstance(e, ev.FloorChange)]
    assert len(floor_changes) > 200
    # the engine emits a tick's events kind by kind across rooms, the loop room by room
    def by_room(events, per_room=0):
        return sorted((_key(e, per_room) for e in events), key=lambda k: (k[2], k[1]))
    assert by_room(got, per_room) == by_room(want)
