"""A room restored elsewhere from its published RoomState (failover) goes on deciding as
the original would: same shown speaker while the same person talks, sequence numbers that
continue, compact levels still understood, and the next real turn change still switches."""
from __future__ import annotations

from service.api import speakerswitch_pb2 as pb
from service.runtime.rooms import RoomRegistry

ET = pb.ParticipantEventType
PEOPLE = ["ann", "bob", "cat", "dan"]
TALK, QUIET = 25, 62
V = 0x80
TURNS = [("ann", 0, 4000), ("bob", 4000, 12000), ("cat", 9000, 9300), ("dan", 12000, 16000)]
"""ann, then bob (with a 300 ms "yeah" from cat in the middle of bob's turn), then dan."""


def compact_tick(t: int, with_roster: bool) -> pb.RoomTick:
    tick = pb.RoomTick(room_id="r", timestamp_ms=t, duration_ms=20)
    if with_roster:
        tick.levels.roster.extend(PEOPLE)
    levels = bytearray()
    for p in PEOPLE:
        talking = any(s == p and a <= t < b for s, a, b in TURNS)
        levels.append(V | TALK if talking else QUIET)
    tick.levels.levels = bytes(levels)
    return tick


def run(registry: RoomRegistry, start: int, end: int) -> list[pb.RoomEvent]:
    out = []
    for t in range(start, end, 20):
        resp = registry.process(pb.StreamRequest(ticks=[compact_tick(t, t == 0)]))
        assert not resp.rejections, resp.rejections
        out.extend(resp.events)
    return out


def kinds(events, kind):
    return [(e.timestamp_ms, getattr(e, kind)) for e in events if e.HasField(kind)]


def decisions(state: pb.RoomState) -> tuple:
    return (state.speaker_id, state.audio_speaker_id, state.pinned_id, state.presenter_id,
            list(state.forwarding), list(state.roster), state.sequence, state.timestamp_ms,
            [(p.participant_id, p.video, p.muted, p.screen_share) for p in state.participants],
            str(state.config))


def original_until(t_ms: int) -> tuple[RoomRegistry, list[pb.RoomEvent]]:
    a = RoomRegistry()
    events = run(a, 0, 1000)
    for pid, kind in (("dan", ET.PARTICIPANT_EVENT_TYPE_VIDEO_OFF),
                      ("cat", ET.PARTICIPANT_EVENT_TYPE_SCREEN_SHARE_ON),
                      ("cat", ET.PARTICIPANT_EVENT_TYPE_SCREEN_SHARE_OFF)):
        tick = pb.RoomTick(room_id="r", timestamp_ms=1000)
        tick.events.add(participant_id=pid, type=kind)
        events += a.process(pb.StreamRequest(ticks=[tick])).events
    events += run(a, 1000, t_ms)
    return a, events


def test_restored_room_has_the_same_decision_state():
    a, _ = original_until(6000)
    state = a.room_state("r")
    assert state.speaker_id == "bob" and list(state.roster) == PEOPLE
    b = RoomRegistry()
    b.restore(state)
    assert decisions(b.room_state("r")) == decisions(state)


def test_restored_room_keeps_the_speaker_ignores_the_yeah_and_follows_the_next_turn():
    a, _ = original_until(6000)
    state = a.room_state("r")
    b = RoomRegistry()
    b.restore(state)
    after_a = run(a, 6000, 16000)
    after_b = run(b, 6000, 16000)   # steady compact levels: the roster came with the state
    assert [e.sequence for e in after_b] == list(range(state.sequence + 1,
                                                       state.sequence + 1 + len(after_b)))
    # bob goes on talking (cat's "yeah" at 9 s included): nothing changes on screen
    before_dan = [e for e in after_b if e.timestamp_ms < 12000]
    assert kinds(before_dan, "switch") == [] and kinds(before_dan, "floor_change") == []
    # the forwarding set changes only as the original's does (cat's remark admits cat)
    assert ([list(f.participant_ids) for _, f in kinds(after_b, "forwarding")]
            == [list(f.participant_ids) for _, f in kinds(after_a, "forwarding")])
    # dan takes the floor (camera off: floor but not the feed), as in the original
    floor_a = [(t, f.speaker_id) for t, f in kinds(after_a, "floor_change")]
    floor_b = [(t, f.speaker_id) for t, f in kinds(after_b, "floor_change")]
    assert [p for _, p in floor_b] == [p for _, p in floor_a] == ["dan"]
    assert abs(floor_b[0][0] - floor_a[0][0]) <= 100
    assert kinds(after_b, "switch") == kinds(after_a, "switch") == []


def test_a_retried_tick_the_previous_owner_processed_is_refused_not_replayed():
    a, _ = original_until(6000)
    b = RoomRegistry()
    b.restore(a.room_state("r"))
    resp = b.process(pb.StreamRequest(ticks=[compact_tick(5980, False)]))
    assert [r.field for r in resp.rejections] == ["ticks[0].timestamp_ms"]
    assert not resp.events and b.room_state("r").sequence == a.room_state("r").sequence
