"""Engine throughput (pytest-benchmark): participant-frames per second through the same
registry path the server uses, in both input modes. Run with ``make bench``.

The naive per-participant loop (benchmarks/naive.py) runs on the same input in the same
run: the speed-up is measured, not assumed. benchmarks/report.py turns the figures into
the targets table of RESULTS.md.
"""
from __future__ import annotations

import numpy as np
import pytest

from dsp.engine import Engine, PcmGroup, Wave
from service.api import speakerswitch_pb2 as pb
from service.runtime.rooms import RoomRegistry
from service.tools.synth import speech_like, to_int16

FRAME_MS = 20
WARMUP_TICKS = 25
"""The synthetic rooms all start at t=0 with their talker already talking, so the first
~20 ticks carry every room's first ranking, speaking change, floor change, switch and
forwarding change in the same few ticks (a burst of ~15,000 events at 2000 rooms that
no steady server sees). Throughput is measured after 500 ms of media time, for the
engine and the naive baseline alike."""


def level_wave_inputs(n_rooms: int, per_room: int, n_ticks: int, seed: int = 1):
    """Per tick: RFC 6464 bytes for every participant (one talker per room)."""
    rng = np.random.default_rng(seed)
    levels = rng.integers(55, 75, size=(n_ticks, n_rooms, per_room)).astype(np.uint8)
    levels[:, :, 0] = rng.integers(15, 35, size=(n_ticks, n_rooms))
    levels[:, :, 0] |= 0x80
    return levels


@pytest.mark.parametrize("n_rooms,per_room", [(1, 10), (10, 10), (100, 10), (1000, 10),
                                              (2000, 10)])
def test_engine_levels(benchmark, n_rooms, per_room):
    """dsp.Engine.step alone, RFC 6464 levels, one wave of all rooms per tick."""
    eng = Engine()
    rooms = np.array([eng.add_room() for _ in range(n_rooms)])
    slots = np.array([[eng.add_participant(r) for _ in range(per_room)] for r in rooms]).ravel()
    levels = level_wave_inputs(n_rooms, per_room, 50)
    state = {"k": 0}

    def tick():
        k = state["k"]
        state["k"] += 1
        b = levels[k % len(levels)].ravel()
        eng.step(Wave(rooms=rooms, t_ms=np.full(n_rooms, k * FRAME_MS),
                      duration_ms=np.full(n_rooms, FRAME_MS), level_slots=slots,
                      level_dbov=-(b & 0x7F).astype(np.float32),
                      level_voice=(b >> 7).astype(np.int8)))

    benchmark.pedantic(tick, rounds=500, warmup_rounds=WARMUP_TICKS)
    pf = n_rooms * per_room / benchmark.stats.stats.mean
    benchmark.extra_info["participant_frames_per_s"] = round(pf)
    benchmark.extra_info["kernel"] = eng.kernel  # "c" (dsp/_kernel.c) or "numpy"


@pytest.mark.parametrize("n_rooms,per_room", [(100, 10), (1000, 10), (2000, 10)])
def test_registry_levels_roster_bytes(benchmark, n_rooms, per_room):
    """A whole StreamRequest (one tick per room, LevelVector form) through RoomRegistry."""
    reg = RoomRegistry()
    levels = level_wave_inputs(n_rooms, per_room, 50)
    roster = [f"p{i}" for i in range(per_room)]
    state = {"k": 0}

    def request(k):
        req = pb.StreamRequest(batch_id=k)
        for r in range(n_rooms):
            t = req.ticks.add(room_id=f"room-{r}", timestamp_ms=k * FRAME_MS,
                              duration_ms=FRAME_MS)
            if k == 0:
                t.levels.roster.extend(roster)
            t.levels.levels = levels[k % len(levels), r].tobytes()
        return req

    reg.process(request(0))
    reqs = [request(k) for k in range(1, 51)]
    for k, q in enumerate(reqs, 1):
        for t in q.ticks:
            t.timestamp_ms = k * FRAME_MS

    def next_request():
        """Not timed: only the request's media time moves on."""
        state["k"] += 1
        q = reqs[(state["k"] - 1) % len(reqs)]
        for t in q.ticks:
            t.timestamp_ms = (state["k"] + 1) * FRAME_MS
        return (q,), {}

    benchmark.pedantic(reg.process, setup=next_request, rounds=200 if n_rooms > 1000 else 500)
    benchmark.extra_info["participant_frames_per_s"] = round(
        n_rooms * per_room / benchmark.stats.stats.mean)


@pytest.mark.parametrize("rate", [16000, 48000])
def test_engine_pcm(benchmark, rate):
    """dsp.Engine.step with PCM: level, webrtcvad and decisions, 100 rooms x 5."""
    n_rooms, per_room = 100, 5
    eng = Engine()
    rooms = np.array([eng.add_room() for _ in range(n_rooms)])
    slots = np.array([[eng.add_participant(r) for _ in range(per_room)] for r in rooms]).ravel()
    rng = np.random.default_rng(2)
    n = rate * FRAME_MS // 1000
    voice = to_int16(speech_like(rng, 1.0, rate, 140.0, -25.0))
    frames = [voice[k * n:(k + 1) * n].tobytes() for k in range(len(voice) // n)]
    state = {"k": 0}

    def tick():
        k = state["k"]
        state["k"] += 1
        f = frames[k % len(frames)]
        eng.step(Wave(rooms=rooms, t_ms=np.full(n_rooms, k * FRAME_MS),
                      duration_ms=np.full(n_rooms, FRAME_MS),
                      pcm=[PcmGroup(slots, rate, [f] * len(slots))]))

    benchmark(tick)
    benchmark.extra_info["participant_frames_per_s"] = round(
        n_rooms * per_room / benchmark.stats.stats.mean)


@pytest.mark.parametrize("n_rooms,per_room", [(100, 10), (2000, 10)])
def test_naive_levels(benchmark, n_rooms, per_room):
    """The same level-mode logic as a per-participant Python loop (benchmarks/naive.py),
    on the same input as test_engine_levels (each room's RFC 6464 bytes): the in-run
    baseline the vectorized engine is compared with."""
    import naive

    rooms = [naive.Room([naive.Participant() for _ in range(per_room)], index=i)
             for i in range(n_rooms)]
    levels = level_wave_inputs(n_rooms, per_room, 50)
    payloads = [[room.tobytes() for room in tick] for tick in levels]
    state = {"k": 0}

    def tick():
        k = state["k"]
        state["k"] += 1
        naive.step_all(rooms, payloads[k % len(payloads)], (k + 1) * FRAME_MS, FRAME_MS)

    benchmark.pedantic(tick, rounds=50 if n_rooms > 1000 else 200,
                       warmup_rounds=WARMUP_TICKS)
    benchmark.extra_info["participant_frames_per_s"] = round(
        n_rooms * per_room / benchmark.stats.stats.mean)
