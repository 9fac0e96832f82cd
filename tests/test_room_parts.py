"""The parts of the room registry (service/runtime/rooms/), each used alone, without a
RoomRegistry: validation against a room and the limits, the waves of a batch, a response
kept under the message size, events numbered and handed to watchers, resuming after a
sequence. tests/test_registry.py covers the same through RoomRegistry.process."""
from collections import deque

import grpc
import pytest

from dsp import events as ev
from service.api import speakerswitch_pb2 as pb
from service.runtime.config import ServiceConfig
from service.runtime.rooms import batches, events, model, validation, watchers

from conftest import level_tick


def test_a_refused_tick_names_its_field_and_changes_nothing():
    capacity = validation.Capacity(ServiceConfig(max_participants=10))
    room = model.Room("r", 0, pb.RoomConfig(), slots={"a": 0}, last_audio_t_ms=100)
    rooms = {("", "r"): room}
    growth = validation.Growth()
    with pytest.raises(model.TickError) as refused:
        validation.validate(3, level_tick("r", 100, {"a": 30}), "", growth, rooms, capacity)
    assert (refused.value.code, refused.value.field) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                         "ticks[3].timestamp_ms")
    assert (growth.rooms, growth.participants, capacity.participants) == (0, 0, 0)


def test_a_passed_tick_is_a_plan_and_counts_toward_the_wave():
    capacity = validation.Capacity(ServiceConfig(max_participants=3))
    growth = validation.Growth()
    plan = validation.validate(0, level_tick("new", 0, {"a": 30, "b": 127}), "t", growth, {},
                               capacity)
    assert (plan.room, plan.level_ids, plan.level_dbov) == (None, ["a", "b"], [-30.0, -127.0])
    assert (growth.rooms_of, growth.participants_of) == ({"t": 1}, {"t": 2})
    # the wave's earlier ticks count: two more would make four, over max_participants=3
    with pytest.raises(model.TickError, match="max_participants=3"):
        validation.validate(1, level_tick("other", 0, {"c": 30, "d": 30}), "t", growth, {},
                            capacity)


def test_the_capacity_counts_what_joins_and_leaves():
    capacity = validation.Capacity(ServiceConfig(max_participants=100))
    capacity.room_added("t")
    for _ in range(3):
        capacity.joined("t")
    capacity.left("t")
    assert (capacity.participants, capacity.participants_of) == (2, {"t": 2})
    capacity.room_dropped("t", 2)
    assert (capacity.participants, capacity.participants_of, capacity.rooms_per_tenant) == (
        0, {}, {})


def drain(steps):
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def test_a_rooms_ticks_go_to_successive_waves_in_order():
    b = model.Batch(pb.StreamRequest())
    entries = [(b, None, i, None, room) for i, room in enumerate(["x", "y", "x", "x", "y"])]
    waves = drain(batches.in_waves(entries))
    assert [[(e[4], e[2]) for e in w] for w in waves] == [
        [("x", 0), ("y", 1)], [("x", 2), ("y", 4)], [("x", 3)]]


def test_a_response_over_the_message_size_leaves_out_its_last_events():
    resp = pb.StreamResponse(batch_id=7)
    for k in range(50):
        resp.events.add(room_id="r" * 100, sequence=k + 1)
    whole = resp.ByteSize()
    batches.fit(resp, whole // 2 + batches.RESPONSE_MARGIN_BYTES)
    assert 0 < len(resp.events) < 50 and resp.events_omitted == 50 - len(resp.events)
    assert [e.sequence for e in resp.events] == list(range(1, len(resp.events) + 1))
    assert resp.ByteSize() <= whole // 2


def test_events_are_numbered_per_room_and_a_full_watcher_is_dropped():
    room = model.Room("r", 0, pb.RoomConfig(), names={0: "a", 1: "b"}, sequence=41)
    room.history = deque(maxlen=10)
    seen, full = [], []
    room.watchers[:] = [lambda m: seen.append(m.sequence) or True,
                        lambda m: full.append(m) and False]  # a full queue: dropped
    msgs: list[pb.RoomEvent] = []
    events.convert(room, [ev.SpeakingChange(room=0, t_ms=20, slot=1, speaking=True)], msgs)
    resp = pb.StreamResponse()
    events.emit(room, msgs, resp, None)
    assert [(m.sequence, m.speaking_changed.participant_id) for m in resp.events] == [(42, "b")]
    assert seen == [42] and len(full) == 1 and len(room.watchers) == 1
    events.room_closed(room, "closed")
    assert seen == [42, 43] and room.history[-1].room_closed.reason == "closed"


def test_a_watcher_resumes_only_from_what_the_history_still_holds():
    room = model.Room("r", 0, pb.RoomConfig(), sequence=5)
    room.history = deque([pb.RoomEvent(sequence=s) for s in (4, 5)], maxlen=2)
    assert [m.sequence for m in watchers.missed_after(room, 3)] == [4, 5]
    assert watchers.missed_after(room, 5) == []
    with pytest.raises(LookupError, match="no longer retained"):
        watchers.missed_after(room, 2)
    with pytest.raises(LookupError, match="past the room's last"):
        watchers.missed_after(room, 6)
