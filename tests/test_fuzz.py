"""Property-based tests over the whole request surface: random and adversarial batches
never raise, every refusal names a status code, a field and a reason, and a correct room
processed alongside decides exactly as when processed alone."""
from __future__ import annotations

import math

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.api import speakerswitch_pb2 as pb
from service.runtime.config import ServiceConfig
from service.runtime.rooms import RoomRegistry

from conftest import script_levels

CODES = {grpc.StatusCode.INVALID_ARGUMENT.value[0], grpc.StatusCode.RESOURCE_EXHAUSTED.value[0],
         grpc.StatusCode.PERMISSION_DENIED.value[0]}
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=140)
ids = st.one_of(st.sampled_from(["a", "b", "c", "", "p1", "x" * 129]), text)
timestamps = st.one_of(st.integers(-10**6, 10**7), st.integers(-2**63, 2**63 - 1),
                       st.sampled_from([0, 20, 40, 3_600_000, 2**62]))
floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32),
                   st.sampled_from([math.nan, math.inf, -math.inf, 0.0, 3.0]))


@st.composite
def audio(draw):
    a = pb.ParticipantAudio(participant_id=draw(ids))
    kind = draw(st.sampled_from(["level", "pcm", "none"]))
    if kind == "level":
        a.level.level = draw(st.integers(0, 2**32 - 1))
        a.level.voice = draw(st.integers(0, 2))  # enum values outside are refused by protobuf
    elif kind == "pcm":
        rate = draw(st.sampled_from([8000, 16000, 32000, 48000, 44100, 0, 1, 96000]))
        n = draw(st.one_of(st.sampled_from([160, 320, 480, 640, 960, 1920, 2880, 641]),
                           st.integers(0, 4000)))
        a.pcm.sample_rate_hz = rate
        a.pcm.samples = draw(st.binary(min_size=n, max_size=n)) if n < 64 else bytes(
            (i * 37) & 0xFF for i in range(n))
    return a


@st.composite
def tick(draw, room_ids=ids):
    t = pb.RoomTick(room_id=draw(room_ids), timestamp_ms=draw(timestamps),
                    duration_ms=draw(st.sampled_from([0, 10, 20, 30, 25, 2**32 - 1])))
    for a in draw(st.lists(audio(), max_size=6)):
        t.audio.append(a)
    for _ in range(draw(st.integers(0, 3))):
        t.events.add(participant_id=draw(ids), type=draw(st.integers(0, 10)))
    if draw(st.booleans()):
        roster = draw(st.lists(ids, max_size=5))
        t.levels.roster.extend(roster)
        t.levels.levels = draw(st.binary(max_size=7))
    if draw(st.booleans()):
        c = t.config
        c.profile = draw(st.sampled_from(["", "meeting", "debate", "karaoke"]))
        if draw(st.booleans()):
            c.switch_margin_db = draw(floats)
        if draw(st.booleans()):
            c.hold_ms = draw(st.integers(0, 2**32 - 1))
        if draw(st.booleans()):
            c.forwarding_size = draw(st.integers(0, 100))
        if draw(st.booleans()):
            c.algorithm = draw(st.sampled_from(["", "dsi", "loudest", "magic"]))
    return t


def check_rejections(resp: pb.StreamResponse, n_ticks: int) -> None:
    for r in resp.rejections:
        assert r.code in CODES, r
        assert r.field and r.message, r
        assert r.field == "ticks" or r.tick_index < n_ticks


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(tick(), max_size=6), min_size=1, max_size=8))
def test_random_batches_never_raise_and_refusals_are_named(batches):
    reg = RoomRegistry(ServiceConfig(max_participants_per_room=8, max_rooms=6))
    for k, ticks in enumerate(batches):
        resp = reg.process(pb.StreamRequest(batch_id=k, ticks=ticks))
        assert resp.batch_id == k
        check_rejections(resp, len(ticks))
        for e in resp.events:
            assert e.sequence >= 1
    for key, room in reg.rooms.items():                  # state stays queryable
        assert reg.room_state(room.room_id, key[0]) is not None


CONTROL = script_levels("control", [("a", 0, 1500), ("b", 1900, 3000), ("c", 3400, 4000)],
                        ["a", "b", "c"], 4000)
ALONE = None


def control_alone() -> list[str]:
    global ALONE
    if ALONE is None:
        reg = RoomRegistry()
        ALONE = [str(e) for t in CONTROL for e in reg.process(pb.StreamRequest(ticks=[t])).events]
    return ALONE


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.integers(0, len(CONTROL) - 1),
                       st.lists(tick(st.sampled_from(["noise-1", "noise-2", ""])), max_size=3),
                       max_size=12))
def test_a_correct_room_decides_alike_beside_garbage(noise):
    reg = RoomRegistry(ServiceConfig(max_participants_per_room=8))
    got = []
    for k, good in enumerate(CONTROL):
        junk = noise.get(k, [])
        resp = reg.process(pb.StreamRequest(batch_id=k, ticks=junk + [good]))
        check_rejections(resp, len(junk) + 1)
        assert all(r.room_id != "control" for r in resp.rejections)
        got += [str(e) for e in resp.events if e.room_id == "control"]
    assert got == control_alone()


@settings(max_examples=100, deadline=None)
@given(st.lists(tick(st.just("control")), min_size=1, max_size=4))
def test_refused_ticks_leave_the_room_unchanged(bad_ticks):
    reg = RoomRegistry()
    for t in CONTROL[:50]:
        reg.process(pb.StreamRequest(ticks=[t]))
    before = reg.room_state("control")
    for t in bad_ticks:
        resp = reg.process(pb.StreamRequest(ticks=[t]))
        if resp.rejections:
            assert reg.room_state("control") == before
        else:
            before = reg.room_state("control")
