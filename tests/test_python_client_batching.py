"""The client's batching (clients/python/speakerswitch_client/batching.py), without a server:
what a flush puts in its request for the packets pushed since the last one."""
from __future__ import annotations

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "clients" / "python"))
from speakerswitch_client import batching, pb  # noqa: E402
from speakerswitch_client.batching import Batcher  # noqa: E402


def one(b: Batcher) -> batching.Built:
    (requests,) = b.take().values()
    (built,) = requests
    return built


def test_rooms_and_ticks_of_a_flush_go_in_one_request_in_media_time_order():
    b = Batcher()
    for room in ("r1", "r2"):
        for t in (45, 3, 20):  # 45 -> tick 40, 3 -> 0, 20 -> 20
            b.add_level(room, "a", 30, True, t)
            b.add_level(room, "b", 90, False, t)
    built = one(b)
    assert [(t.room_id, t.timestamp_ms, t.duration_ms) for t in built.request.ticks] == [
        ("r1", 0, 20), ("r1", 20, 20), ("r1", 40, 20),
        ("r2", 0, 20), ("r2", 20, 20), ("r2", 40, 20)]
    first = built.request.ticks[0]
    assert first.levels.levels == bytes([0x80 | 30, 90]) and not first.audio
    assert built.rosters[0] == ("a", "b") and built.rosters[1] is built.rosters[0]
    assert b.packets == 0 and not b.pending


def test_two_packets_of_one_tick_keep_the_louder_level_and_any_voice():
    b = Batcher(tick_ms=20)
    b.add_level("r", "a", 40, False, 0)
    b.add_level("r", "a", 35, False, 10)   # 10 ms packets, 20 ms ticks
    b.add_level("r", "b", 20, True, 0)
    b.add_level("r", "b", 60, False, 10)
    assert b.packets == 2
    assert one(b).request.ticks[0].levels.levels == bytes([35, 0x80 | 20])


def test_a_packet_for_a_tick_already_sent_is_dropped_and_counted():
    b = Batcher()
    b.add_level("r", "a", 30, True, 40)
    one(b)
    assert b.add_level("r", "a", 30, True, 20) is False
    assert b.add_level("r", "a", 30, True, 41) is False  # tick 40 has left too
    assert b.late == 2 and b.packets == 0
    assert b.add_level("r", "a", 30, True, 60) is True


def test_events_go_with_the_rooms_next_tick_or_repeat_its_last_timestamp():
    b = Batcher()
    b.add_event("r", "a", pb.PARTICIPANT_EVENT_TYPE_JOIN)        # nothing sent yet: at 0
    b.add_level("r", "a", 30, True, 0)
    b.add_event("r", "a", pb.PARTICIPANT_EVENT_TYPE_VIDEO_OFF)   # with the pending tick
    built = one(b)
    (tick,) = built.request.ticks
    assert [e.type for e in tick.events] == [pb.PARTICIPANT_EVENT_TYPE_JOIN,
                                             pb.PARTICIPANT_EVENT_TYPE_VIDEO_OFF]
    b.add_event("r", "a", pb.PARTICIPANT_EVENT_TYPE_PIN)         # after: an events-only tick
    b.add_event("r", "b", pb.PARTICIPANT_EVENT_TYPE_JOIN, timestamp_ms=5)  # in the past too
    assert b.add_level("r", "a", 30, True, 0) is False  # not into that events-only tick
    (tick,) = one(b).request.ticks
    assert tick.timestamp_ms == 0 and len(tick.events) == 2 and not tick.levels.levels


def test_senders_without_a_v_bit_and_silent_senders_go_as_participant_audio():
    b = Batcher()
    for p in ("a", "b", "c"):
        b.add_level("r", p, 50, False, 0)
    one(b)
    b.add_level("r", "a", 30, True, 20)   # b and c silent (DTX): the roster stays
    b.add_level("r", "b", 44, None, 20)   # no V bit: never in a LevelVector
    built = one(b)
    (tick,) = built.request.ticks
    assert built.rosters == [None] and not tick.levels.levels
    by_id = {a.participant_id: a.level for a in tick.audio}
    assert by_id["a"].level == 30 and by_id["a"].voice == pb.VOICE_ACTIVITY_PRESENT
    assert by_id["b"].level == 44 and by_id["b"].voice == pb.VOICE_ACTIVITY_UNSPECIFIED
    b.add_level("r", "d", 30, True, 40)   # a newcomer: a new roster
    b.add_level("r", "a", 80, False, 40)
    built = one(b)
    assert built.rosters == [("d", "a")]


def test_pcm_must_be_one_tick_long():
    b = Batcher(tick_ms=20)
    b.add_pcm("r", "a", bytes(640), 16000, 0)
    assert one(b).request.ticks[0].audio[0].pcm.sample_rate_hz == 16000
    with pytest.raises(ValueError, match="samples"):
        b.add_pcm("r", "a", bytes(320), 16000, 20)
    with pytest.raises(ValueError, match="sample_rate_hz"):
        b.add_pcm("r", "a", bytes(640), 22050, 20)
    with pytest.raises(ValueError, match="level"):
        b.add_level("r", "a", 128, True, 20)


def test_what_piles_up_is_split_within_the_servers_limits(monkeypatch):
    monkeypatch.setattr(batching, "MAX_TICKS_PER_REQUEST", 4)
    b = Batcher()
    for t in range(0, 200, 20):
        b.add_level("r", "a", 30, True, t)
    requests = b.take()[None]
    assert [len(r.request.ticks) for r in requests] == [4, 4, 2]
    stamps = [t.timestamp_ms for r in requests for t in r.request.ticks]
    assert stamps == list(range(0, 200, 20))


def test_a_grouping_gives_a_request_per_shard():
    b = Batcher()
    for room in ("r1", "r2", "r3"):
        b.add_level(room, "a", 30, True, 0)
    out = b.take(lambda room: room == "r2")
    assert {k: [t.room_id for r in v for t in r.request.ticks] for k, v in out.items()} == {
        False: ["r1", "r3"], True: ["r2"]}


def test_forgetting_a_closed_room_lets_its_id_start_again_at_any_time():
    b = Batcher()
    b.add_level("r", "a", 30, True, 1000)
    one(b)
    b.add_level("r", "a", 30, True, 1020)
    b.forget("r")
    assert b.packets == 0 and not b.pending
    assert b.add_level("r", "a", 30, True, 0) is True  # a new room: media time from 0
    assert one(b).rosters == [("a",)]
