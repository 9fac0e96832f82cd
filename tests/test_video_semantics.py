"""Video-switching semantics through a real server: camera toggles, mute (event, digital
silence, no packets), leave, pin, screen share, the forwarding set, rate-limited
indicators, and Watch consistency across a reconnect."""
from __future__ import annotations

import pytest

from service.api import speakerswitch_pb2 as pb

ET = pb.ParticipantEventType
TALK, QUIET, SILENCE = 25, 70, 127


class RoomDriver:
    """Sends one 20 ms tick at a time for one room through a stream session; each
    participant is talking, quiet, silent (level 127) or absent (no packet)."""

    def __init__(self, session, room: str, participants: list[str], config=None) -> None:
        self.session, self.room, self.participants = session, room, participants
        self.t = 0
        self.events: list[pb.RoomEvent] = []
        self.config = config

    def tick(self, talking=(), silent=(), absent=(), events=()) -> list[pb.RoomEvent]:
        tick = pb.RoomTick(room_id=self.room, timestamp_ms=self.t, duration_ms=20)
        if self.config is not None and self.t == 0:
            tick.config.CopyFrom(self.config)
        for pid, kind in events:
            tick.events.add(participant_id=pid, type=kind)
        for p in self.participants:
            if p in absent:
                continue
            level = TALK if p in talking else SILENCE if p in silent else QUIET
            voice = pb.VOICE_ACTIVITY_PRESENT if p in talking else pb.VOICE_ACTIVITY_ABSENT
            tick.audio.add(participant_id=p, level=pb.AudioLevel(level=level, voice=voice))
        resp = self.session.send_ticks(tick)
        assert not resp.rejections, resp.rejections
        self.events.extend(resp.events)
        self.t += 20
        return list(resp.events)

    def run(self, ms: int, **kw) -> list[pb.RoomEvent]:
        out = []
        for _ in range(ms // 20):
            out += self.tick(**kw)
        return out

    def event(self, pid: str, kind: int) -> list[pb.RoomEvent]:
        """An events-only tick at the current media time."""
        tick = pb.RoomTick(room_id=self.room, timestamp_ms=self.t)
        tick.events.add(participant_id=pid, type=kind)
        resp = self.session.send_ticks(tick)
        assert not resp.rejections, resp.rejections
        self.events.extend(resp.events)
        return list(resp.events)


def of(events, kind):
    return [getattr(e, kind) for e in events if e.HasField(kind)]


def shown(events):
    return [s.speaker_id for s in of(events, "switch")]


@pytest.fixture
def session(client):
    with client.session() as s:
        yield s


def test_camera_off_speaker_holds_the_floor_but_not_the_feed_until_camera_on(session):
    room = RoomDriver(session, "cam-1", ["a", "b", "c"])
    room.tick(events=[("b", ET.PARTICIPANT_EVENT_TYPE_VIDEO_OFF)])
    room.run(2000, talking={"a"})
    out = room.run(1000, talking={"b"})
    assert shown(room.events) == ["a"]
    floor = of(out, "floor_change")
    assert [(f.speaker_id, f.has_video) for f in floor] == [("b", False)]
    # b turns the camera on while holding the floor: the feed goes to b in that tick
    t = room.t
    out = room.tick(talking={"b"}, events=[("b", ET.PARTICIPANT_EVENT_TYPE_VIDEO_ON)])
    sw = [(e.timestamp_ms, e.switch.speaker_id, e.switch.reason) for e in out
          if e.HasField("switch")]
    assert sw == [(t, "b", pb.SWITCH_REASON_VIDEO_ON)]


def test_shown_camera_off_moves_the_feed_at_once_even_mid_challenge(session):
    room = RoomDriver(session, "cam-2", ["a", "b", "c"])
    room.run(1500, talking={"c"})
    room.run(2000, talking={"a"})
    assert shown(room.events) == ["c", "a"]
    room.run(100, talking={"b"})              # b has started a turn; not switched yet
    assert shown(room.events) == ["c", "a"]
    out = room.tick(talking={"b"}, events=[("a", ET.PARTICIPANT_EVENT_TYPE_VIDEO_OFF)])
    assert [(s.speaker_id, s.previous_speaker_id, s.reason) for s in of(out, "switch")] == [
        ("b", "a", pb.SWITCH_REASON_VIDEO_OFF)]   # b is the most recently active with video
    out = room.run(1000, talking={"b"})
    assert [f.speaker_id for f in of(out, "floor_change")] == ["b"]
    assert of(out, "switch") == []            # already shown: no second switch


def test_mute_event_stops_the_speaker_immediately(session):
    room = RoomDriver(session, "mute-1", ["a", "b"])
    room.run(1000, talking={"a"})
    out = room.tick(talking={"a"}, events=[("a", ET.PARTICIPANT_EVENT_TYPE_AUDIO_MUTED)])
    assert [(s.participant_id, s.speaking) for s in of(out, "speaking_changed")] == [("a", False)]
    assert [f.speaker_id for f in of(out, "floor_change")] == [""]
    out = room.run(1000, talking={"a"})      # its levels keep coming: ignored while muted
    assert ("a", True) not in [(s.participant_id, s.speaking) for s in of(out, "speaking_changed")]


def test_digital_silence_stops_the_speaker_in_the_same_tick(session):
    room = RoomDriver(session, "mute-2", ["a", "b"])
    room.run(1000, talking={"a"})
    out = room.tick(silent={"a"})
    assert [(s.participant_id, s.speaking) for s in of(out, "speaking_changed")] == [("a", False)]
    # and the next speaker waits only silent_hold_ms (500 ms), not the holder's hold
    # (700 ms) or its interrupt time (1.2 s)
    room.run(400, silent={"a"}, talking={"b"})
    assert shown(room.events) == ["a"]
    room.run(200, silent={"a"}, talking={"b"})
    assert shown(room.events) == ["a", "b"]


def test_no_packets_stop_the_speaker_after_the_timeout_but_a_short_gap_does_not(session):
    room = RoomDriver(session, "dtx-1", ["a", "b"])
    room.run(1000, talking={"a"})
    out = room.run(100, absent={"a"})                    # packet loss: state kept
    assert of(out, "speaking_changed") == []
    room.run(500, talking={"a"})
    t_gone = room.t
    out = room.run(700, absent={"a"})                    # DTX: nothing for 700 ms
    stops = [e for e in out if e.HasField("speaking_changed")]
    assert [(e.speaking_changed.participant_id, e.speaking_changed.speaking) for e in stops] == [
        ("a", False)]
    # quiet from the timeout (200 ms) on: its activity runs down as in any pause
    # (speaking_off 0.25 after activity_release_ms 250: ~350 ms)
    assert t_gone + 200 + 250 < stops[0].timestamp_ms <= t_gone + 200 + 450


def test_a_participant_in_dtx_stops_speaking_between_its_packets(session):
    """Opus DTX sends one packet in 400 ms while its speaker is quiet: shorter gaps than
    the timeout of 500 ms of before, so the participant's state stayed frozen between
    them, 'speaking' (with its evidence) for seconds after its last word."""
    room = RoomDriver(session, "dtx-2", ["a", "b"])
    room.run(1000, talking={"a"})
    room.run(400, talking={"a", "b"})
    t_quiet = room.t
    out = []
    for _ in range(5):                                    # b in DTX for 2 s
        out += room.run(380, talking={"a"}, absent={"b"})
        out += room.run(20, talking={"a"})                # its comfort-noise packet
    stops = [e for e in out if e.HasField("speaking_changed")]
    assert [(e.speaking_changed.participant_id, e.speaking_changed.speaking) for e in stops] == [
        ("b", False)]
    # quiet 200 ms of each 400 (the timeout, then up to its next packet): its activity
    # runs down in ~350 ms of those; frozen, it took 17 packets, ~7 s
    assert stops[0].timestamp_ms <= t_quiet + 1000


def test_leave_of_the_shown_participant_hands_over_at_once(session):
    room = RoomDriver(session, "leave-1", ["a", "b", "c"])
    room.run(1500, talking={"b"})
    room.run(1500, talking={"a"})
    room.participants.remove("a")
    out = room.event("a", ET.PARTICIPANT_EVENT_TYPE_LEAVE)
    assert [(s.speaker_id, s.previous_speaker_id, s.reason) for s in of(out, "switch")] == [
        ("b", "a", pb.SWITCH_REASON_LEFT)]
    assert [list(f.participant_ids) for f in of(out, "forwarding")] == [["b"]]


def test_pin_of_a_muted_participant_holds_the_feed_and_unpin_goes_to_the_speaker(session):
    room = RoomDriver(session, "pin-1", ["a", "b", "c"])
    room.tick(events=[("c", ET.PARTICIPANT_EVENT_TYPE_AUDIO_MUTED)])
    room.run(1000, talking={"a"})
    out = room.event("c", ET.PARTICIPANT_EVENT_TYPE_PIN)
    assert [(s.speaker_id, s.reason) for s in of(out, "switch")] == [("c", pb.SWITCH_REASON_PINNED)]
    out = room.run(2000, talking={"b"})
    assert of(out, "switch") == []
    assert [f.speaker_id for f in of(out, "floor_change")] == ["b"]   # detection goes on
    out = room.event("", ET.PARTICIPANT_EVENT_TYPE_UNPIN)
    assert [(s.speaker_id, s.reason) for s in of(out, "switch")] == [("b", pb.SWITCH_REASON_UNPINNED)]


def test_screen_share_takes_the_main_feed_and_the_speaker_goes_to_the_thumbnail(session):
    room = RoomDriver(session, "share-1", ["a", "b", "c"])
    room.run(1000, talking={"a"})
    out = room.event("b", ET.PARTICIPANT_EVENT_TYPE_SCREEN_SHARE_ON)
    assert [(p.presenter_id, p.previous_presenter_id) for p in of(out, "presentation")] == [("b", "")]
    out = room.run(1000, talking={"c"})
    assert [(s.speaker_id, s.slot) for s in of(out, "switch")] == [("c", pb.VIDEO_SLOT_THUMBNAIL)]
    out = room.event("a", ET.PARTICIPANT_EVENT_TYPE_SCREEN_SHARE_ON)
    assert [p.presenter_id for p in of(out, "presentation")] == ["a"]     # the latest wins
    out = room.event("a", ET.PARTICIPANT_EVENT_TYPE_SCREEN_SHARE_OFF)
    assert [p.presenter_id for p in of(out, "presentation")] == ["b"]     # b still presents
    out = room.event("b", ET.PARTICIPANT_EVENT_TYPE_SCREEN_SHARE_OFF)
    assert [(p.presenter_id, p.previous_presenter_id) for p in of(out, "presentation")] == [("", "b")]
    out = room.run(1000, talking={"a"})
    assert [(s.speaker_id, s.slot) for s in of(out, "switch")] == [("a", pb.VIDEO_SLOT_MAIN)]


def test_forwarding_set_orders_by_recency_and_does_not_churn(session):
    cfg = pb.RoomConfig(forwarding_size=2, forwarding_min_ms=5000)
    room = RoomDriver(session, "fwd-1", ["a", "b", "c", "d"], cfg)
    room.tick(events=[("d", ET.PARTICIPANT_EVENT_TYPE_VIDEO_OFF)])
    room.run(2000, talking={"a"})
    room.run(1500, talking={"b"})
    sets = [list(f.participant_ids) for f in of(room.events, "forwarding")]
    assert sets[-1] == ["b", "a"]
    room.run(1500, talking={"c"})      # c takes the feed: the main participant must be in
    assert [list(f.participant_ids) for f in of(room.events, "forwarding")][-1] == ["c", "b"]
    n_before = len(of(room.events, "forwarding"))
    room.run(300, talking={"a"})       # a remark: b entered < 5 s ago, so a waits
    room.run(1000)
    assert len(of(room.events, "forwarding")) == n_before
    room.run(1000, talking={"d"})      # camera off: never forwarded
    room.run(2000)
    room.run(300, talking={"a"})       # b has now been in for 5 s: it makes room for a,
    sets = [list(f.participant_ids) for f in of(room.events, "forwarding")]
    assert shown(room.events)[-1] == "a"   # who (after 2 s of silence) also takes the feed
    assert sets[-1] == ["a", "c"]
    assert all(x != y for x, y in zip(sets, sets[1:]))    # emitted only on change
    assert all("d" not in s for s in sets)


def test_speaking_indicators_are_rate_limited(session):
    room = RoomDriver(session, "rate-1", ["a", "b"], pb.RoomConfig(speaking_interval_ms=400))
    for _ in range(10):                # a says something short every half second
        room.run(120, talking={"a"})
        room.run(400)
    changes = [e for e in room.events if e.HasField("speaking_changed")]
    times = [e.timestamp_ms for e in changes]
    assert len(changes) >= 4
    assert all(b - a >= 400 for a, b in zip(times, times[1:]))
    states = [e.speaking_changed.speaking for e in changes]
    assert all(x != y for x, y in zip(states, states[1:]))  # only changes are sent


def test_active_speakers_carry_activity(session):
    room = RoomDriver(session, "rank-1", ["a", "b"])
    room.run(1000, talking={"a"})
    last = of(room.events, "active_speakers")[-1].speakers
    assert last[0].participant_id == "a" and last[0].speaking and 0.6 <= last[0].activity <= 1


def watch_a_while(client, room: RoomDriver, ms: int) -> list[pb.RoomEvent]:
    """Watch while ``a`` then ``b`` talk ``ms`` each, then disconnect: what the watcher got
    after its snapshot."""
    room.run(ms, talking={"a"})
    first = client.watch(room.room)
    snap = next(first).snapshot
    room.run(ms, talking={"b"})
    got = [next(first) for _ in range(len(room.events) - snap.sequence)]
    first.cancel()
    assert [e.sequence for e in got] == list(range(snap.sequence + 1, len(room.events) + 1))
    return got


def test_watch_reconnect_mid_conversation_has_no_gap_and_no_duplicate(client, session):
    room = RoomDriver(session, "watch-1", ["a", "b", "c"])
    watch_a_while(client, room, 1500)
    room.run(1000, talking={"c"})          # events while disconnected
    room.event("b", ET.PARTICIPANT_EVENT_TYPE_SCREEN_SHARE_ON)
    again = client.watch("watch-1")
    snap2 = next(again).snapshot
    assert snap2.sequence == room.events[-1].sequence
    assert snap2.speaker_id == "c" and snap2.presenter_id == "b"
    assert list(snap2.forwarding) == ["c", "b", "a"]
    assert {p.participant_id for p in snap2.participants if p.screen_share} == {"b"}
    room.run(1000, talking={"a"})
    newer = [e for e in room.events if e.sequence > snap2.sequence]
    seen = [next(again) for _ in newer]
    again.cancel()
    assert [str(e) for e in seen] == [str(e) for e in newer]


def test_watch_resumes_after_a_sequence_with_exactly_the_missed_events(client, session):
    room = RoomDriver(session, "resume-1", ["a", "b", "c"])
    last = watch_a_while(client, room, 1000)[-1].sequence
    room.run(1500, talking={"c"})          # events while disconnected
    room.event("c", ET.PARTICIPANT_EVENT_TYPE_VIDEO_OFF)
    again = client.watch("resume-1", after_sequence=last)
    missed = [e for e in room.events if e.sequence > last]
    assert len(missed) > 3 and any(e.HasField("switch") for e in missed)
    seen = [next(again) for _ in missed]
    room.run(200, talking={"a"})
    live = [e for e in room.events if e.sequence > missed[-1].sequence]
    seen += [next(again) for _ in live]
    again.cancel()
    assert not any(e.HasField("snapshot") for e in seen)
    assert [str(e) for e in seen] == [str(e) for e in missed + live]


def test_watch_resume_refuses_events_it_no_longer_has(client, session):
    import grpc
    room = RoomDriver(session, "resume-2", ["a", "b"])
    room.run(1000, talking={"a"})          # nobody watched: nothing retained
    with pytest.raises(grpc.RpcError) as e:
        next(client.watch("resume-2", after_sequence=1))
    assert e.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert "after_sequence" in e.value.details() and "no longer retained" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        next(client.watch("resume-2", after_sequence=len(room.events) + 5))
    assert e.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert "past the room's last sequence" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        next(client.watch("no-such-room", after_sequence=0))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
