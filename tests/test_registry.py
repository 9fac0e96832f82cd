"""Validation: every bad input is refused with a status code naming the field, and it
changes nothing, in its room or any other."""
import grpc
import pytest

from service.api import speakerswitch_pb2 as pb
from service.runtime.config import ServiceConfig
from service.runtime.rooms import RoomRegistry

from conftest import level_tick, script_levels

INVALID = grpc.StatusCode.INVALID_ARGUMENT.value[0]
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]


def pcm_tick(room, t, pid, n_bytes, rate):
    tick = pb.RoomTick(room_id=room, timestamp_ms=t)
    tick.audio.add(participant_id=pid, pcm=pb.PcmFrame(samples=b"\0" * n_bytes,
                                                       sample_rate_hz=rate))
    return tick


def bad_ticks():
    yield "empty room id", level_tick("", 0, {"a": 30}), "ticks[0].room_id", INVALID
    yield "long room id", level_tick("r" * 129, 0, {"a": 30}), "ticks[0].room_id", INVALID
    yield "empty participant", level_tick("r", 0, {"": 30}), "ticks[0].audio[0].participant_id", INVALID
    yield "level 128", level_tick("r", 0, {"a": 128}), "ticks[0].audio[0].level.level", INVALID
    yield "sample rate", pcm_tick("r", 0, "a", 882, 44100), "ticks[0].audio[0].pcm.sample_rate_hz", INVALID
    yield "pcm length", pcm_tick("r", 0, "a", 500, 16000), "ticks[0].audio[0].pcm.samples", INVALID
    yield "odd bytes", pcm_tick("r", 0, "a", 641, 16000), "ticks[0].audio[0].pcm.samples", INVALID
    t = pcm_tick("r", 0, "a", 640, 16000)
    t.duration_ms = 10
    yield "duration vs pcm", t, "ticks[0].duration_ms", INVALID
    t = pcm_tick("r", 0, "a", 640, 16000)
    t.audio.add(participant_id="b", pcm=pb.PcmFrame(samples=b"\0" * 320, sample_rate_hz=16000))
    yield "mixed frame lengths", t, "ticks[0].audio", INVALID
    yield "duration 25", level_tick("r", 0, {"a": 30}, duration_ms=25), "ticks[0].duration_ms", INVALID
    t = level_tick("r", 0, {"a": 30})
    t.audio.add(participant_id="a", level=pb.AudioLevel(level=40))
    yield "duplicate participant", t, "ticks[0].audio[1].participant_id", INVALID
    t = pb.RoomTick(room_id="r", timestamp_ms=0)
    t.audio.add(participant_id="a")
    yield "no payload", t, "ticks[0].audio[0].payload", INVALID
    t = pb.RoomTick(room_id="r", timestamp_ms=0)
    t.events.add(participant_id="a", type=pb.PARTICIPANT_EVENT_TYPE_UNSPECIFIED)
    yield "unspecified event", t, "ticks[0].events[0].type", INVALID
    t = pb.RoomTick(room_id="r", timestamp_ms=0)
    t.levels.roster.extend(["a", "b"])
    t.levels.levels = b"\x1e"
    yield "roster length", t, "ticks[0].levels.levels", INVALID
    t = pb.RoomTick(room_id="r", timestamp_ms=0)
    t.levels.roster.extend(["a", "a"])
    t.levels.levels = b"\x1e\x1e"
    yield "roster duplicate", t, "ticks[0].levels.roster", INVALID
    t = level_tick("r", 0, {"a": 30})
    t.config.profile = "karaoke"
    yield "unknown profile", t, "ticks[0].config.profile", INVALID
    t = level_tick("r", 0, {"a": 30})
    t.config.switch_margin_db = float("nan")
    yield "NaN margin", t, "ticks[0].config.switch_margin_db", INVALID


@pytest.mark.parametrize("name,tick,field,code", list(bad_ticks()), ids=[c[0] for c in bad_ticks()])
def test_bad_tick_is_refused_naming_the_field(name, tick, field, code):
    reg = RoomRegistry()
    good = level_tick("ok", 0, {"x": 30}, {"x": 1})
    resp = reg.process(pb.StreamRequest(ticks=[good, tick]))
    assert [(r.code, r.field) for r in resp.rejections] == [(code, field.replace("[0]", "[1]", 1))]
    assert resp.rejections[0].tick_index == 1 and resp.rejections[0].message
    assert reg.room("ok") is not None        # the good room was processed
    if tick.room_id not in ("", "ok"):
        assert reg.room(tick.room_id) is None  # the refused tick created nothing


def test_timestamps_going_backwards_are_refused_and_change_nothing():
    reg = RoomRegistry()
    ticks = script_levels("r", [("a", 0, 1000)], ["a", "b"], 1000)
    for t in ticks:
        reg.process(pb.StreamRequest(ticks=[t]))
    before = reg.room_state("r")
    resp = reg.process(pb.StreamRequest(ticks=[level_tick("r", 500, {"a": 10, "c": 10})]))
    assert [(r.code, r.field) for r in resp.rejections] == [(INVALID, "ticks[0].timestamp_ms")]
    assert "500" in resp.rejections[0].message
    assert reg.room_state("r") == before     # c did not join, nothing advanced
    ok = reg.process(pb.StreamRequest(ticks=[level_tick("r", 1000, {"a": 10})]))
    assert not ok.rejections


def test_a_bad_room_does_not_change_another_rooms_decisions():
    script = [("a", 0, 2000), ("b", 2500, 5000), ("a", 5400, 8000)]
    alone = RoomRegistry()
    mixed = RoomRegistry()
    out_alone, out_mixed = [], []
    for k, t in enumerate(script_levels("good", script, ["a", "b", "c"], 8000)):
        out_alone += alone.process(pb.StreamRequest(ticks=[t])).events
        noisy = level_tick("bad", t.timestamp_ms if k % 3 else 0, {"z": 10 + k % 100}, {"z": 1})
        if k % 7 == 0:
            noisy.audio[0].level.level = 200          # invalid every 7th tick
        resp = mixed.process(pb.StreamRequest(ticks=[noisy, t]))
        out_mixed += [e for e in resp.events if e.room_id == "good"]
    assert out_alone and [str(e) for e in out_alone] == [str(e) for e in out_mixed]


def test_too_many_ticks_in_a_batch_is_resource_exhausted():
    reg = RoomRegistry(ServiceConfig(max_ticks_per_batch=3))
    resp = reg.process(pb.StreamRequest(ticks=[level_tick(f"r{i}", 0, {"a": 30}) for i in range(4)]))
    assert [(r.code, r.field) for r in resp.rejections] == [(EXHAUSTED, "ticks")]
    assert "max_ticks_per_batch=3" in resp.rejections[0].message
    assert not reg.rooms


def test_room_full_is_resource_exhausted_and_others_stay():
    reg = RoomRegistry(ServiceConfig(max_participants_per_room=2))
    assert not reg.process(pb.StreamRequest(ticks=[level_tick("r", 0, {"a": 30, "b": 30})])).rejections
    resp = reg.process(pb.StreamRequest(ticks=[level_tick("r", 20, {"a": 30, "b": 30, "c": 30})]))
    assert [(r.code, r.field) for r in resp.rejections] == [(EXHAUSTED, "ticks[0]")]
    assert {p.participant_id for p in reg.room_state("r").participants} == {"a", "b"}


def test_max_rooms_is_resource_exhausted():
    reg = RoomRegistry(ServiceConfig(max_rooms=1))
    resp = reg.process(pb.StreamRequest(ticks=[level_tick("r1", 0, {"a": 30}),
                                               level_tick("r2", 0, {"a": 30})]))
    assert [(r.code, r.tick_index) for r in resp.rejections] == [(EXHAUSTED, 1)]


def test_roster_is_sticky_and_follows_leaves():
    reg = RoomRegistry()
    t0 = pb.RoomTick(room_id="r", timestamp_ms=0)
    t0.levels.roster.extend(["a", "b", "c"])
    t0.levels.levels = bytes([0x80 | 20, 70, 70])
    t1 = pb.RoomTick(room_id="r", timestamp_ms=20)
    t1.levels.levels = bytes([0x80 | 20, 70, 70])      # roster omitted: reused
    t2 = pb.RoomTick(room_id="r", timestamp_ms=40)
    t2.events.add(participant_id="b", type=pb.PARTICIPANT_EVENT_TYPE_LEAVE)
    t2.levels.levels = bytes([0x80 | 20, 70])           # b left: the roster is now a, c
    for t in (t0, t1, t2):
        resp = reg.process(pb.StreamRequest(ticks=[t]))
        assert not resp.rejections, resp.rejections
    assert reg.room("r").roster == ("a", "c")
    bad = pb.RoomTick(room_id="r", timestamp_ms=60)
    bad.levels.levels = bytes([20, 70, 70])
    assert reg.process(pb.StreamRequest(ticks=[bad])).rejections[0].field == "ticks[0].levels.levels"


def test_roster_bytes_and_per_participant_levels_decide_alike():
    script = [("a", 0, 2000), ("b", 2400, 4000)]
    per = script_levels("r", script, ["a", "b"], 4000)
    compact = []
    for k, t in enumerate(per):
        c = pb.RoomTick(room_id="r", timestamp_ms=t.timestamp_ms, duration_ms=20)
        if k == 0:
            c.levels.roster.extend(["a", "b"])
        c.levels.levels = bytes((0x80 if au.level.voice == pb.VOICE_ACTIVITY_PRESENT else 0)
                                | au.level.level for au in t.audio)
        compact.append(c)
    r1, r2 = RoomRegistry(), RoomRegistry()
    e1 = [e for t in per for e in r1.process(pb.StreamRequest(ticks=[t])).events]
    e2 = [e for t in compact for e in r2.process(pb.StreamRequest(ticks=[t])).events]
    assert e1 and [str(e) for e in e1] == [str(e) for e in e2]


def test_idle_rooms_are_collected():
    reg = RoomRegistry(ServiceConfig(idle_timeout_s=10))
    reg.process(pb.StreamRequest(ticks=[level_tick("old", 0, {"a": 30})]), now_s=100.0)
    reg.process(pb.StreamRequest(ticks=[level_tick("new", 0, {"a": 30})]), now_s=105.0)
    assert reg.collect_idle(112.0) == [("", "old")]
    assert set(reg.rooms) == {("", "new")}
    # a collected room starts over: its media time may restart
    assert not reg.process(pb.StreamRequest(ticks=[level_tick("old", 0, {"a": 30})])).rejections


def test_events_for_unknown_participants_join_them_and_leave_of_unknown_is_a_no_op():
    reg = RoomRegistry()
    t = pb.RoomTick(room_id="r", timestamp_ms=0)
    t.events.add(participant_id="ghost", type=pb.PARTICIPANT_EVENT_TYPE_LEAVE)
    t.events.add(participant_id="cam", type=pb.PARTICIPANT_EVENT_TYPE_VIDEO_OFF)
    assert not reg.process(pb.StreamRequest(ticks=[t])).rejections
    parts = {p.participant_id: p for p in reg.room_state("r").participants}
    assert set(parts) == {"cam"} and not parts["cam"].video
