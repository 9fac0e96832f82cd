"""ListRooms and ParticipantState.last_spoke_at_ms (what integrators asked for): a tenant's
rooms page by page within its token's room pattern, and when each participant last
spoke."""
from __future__ import annotations

import grpc
import pytest

from service.api import speakerswitch_pb2 as pb
from service.api import speakerswitch_pb2_grpc as pb_grpc

from conftest import call, script_levels, token, token_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with token_server(tmp_path_factory) as s:
        stub = pb_grpc.SpeakerSwitchStub(grpc.insecure_channel(s.target))
        for tenant, room in [("acme", f"room-{i:02d}") for i in range(5)] + [("other", "x")]:
            ticks = script_levels(room, [("a", 0, 1500), ("b", 2000, 3000)], ["a", "b", "c"],
                                  3200)
            list(stub.Stream(iter([pb.StreamRequest(batch_id=1, ticks=ticks)]),
                             metadata=[("authorization", f"Bearer {token(tenant)}")]))
        yield s




def test_rooms_are_listed_page_by_page_for_the_tenant_only(server):
    first = call(server, "ListRooms", pb.ListRoomsRequest(max_rooms=3), token())
    assert [r.room_id for r in first.rooms] == ["room-00", "room-01", "room-02"] and first.more
    rest = call(server, "ListRooms", pb.ListRoomsRequest(after_room_id="room-02"), token())
    assert [r.room_id for r in rest.rooms] == ["room-03", "room-04"] and not rest.more
    r = rest.rooms[0]
    assert (r.speaker_id, r.participants, r.timestamp_ms) == ("b", 3, 3200)
    assert r.sequence > 0
    other = call(server, "ListRooms", pb.ListRoomsRequest(), token("other"))
    assert [r.room_id for r in other.rooms] == ["x"]


def test_the_token_room_pattern_and_grant_apply(server):
    only = call(server, "ListRooms", pb.ListRoomsRequest(), token(rooms="room-0[13]"))
    assert [r.room_id for r in only.rooms] == ["room-01", "room-03"]
    with pytest.raises(grpc.RpcError) as e:
        call(server, "ListRooms", pb.ListRoomsRequest(), token(grants=("publish",)))
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("request_, field", [(pb.ListRoomsRequest(max_rooms=5000), "max_rooms"),
                                             (pb.ListRoomsRequest(after_room_id="r" * 200),
                                              "after_room_id")])
def test_bad_requests_name_the_field(server, request_, field):
    with pytest.raises(grpc.RpcError) as e:
        call(server, "ListRooms", request_, token())
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details().startswith(field)


def test_participants_say_when_they_last_spoke(server):
    state = call(server, "GetRoom", pb.GetRoomRequest(room_id="room-00"), token())
    spoke = {p.participant_id: (p.HasField("last_spoke_at_ms"), p.last_spoke_at_ms)
             for p in state.participants}
    assert spoke["c"] == (False, 0)              # never spoke
    assert spoke["a"][0] and 1400 <= spoke["a"][1] <= 1600  # its turn ended at 1.5 s
    assert spoke["b"][0] and 2900 <= spoke["b"][1] <= 3100


def test_close_room_ends_it_and_its_watchers_hear_why(server):
    import threading
    import time

    events = []
    stub = pb_grpc.SpeakerSwitchStub(grpc.insecure_channel(server.target))
    watch = stub.Watch(pb.WatchRequest(room_id="room-04"),
                       metadata=[("authorization", f"Bearer {token()}")], timeout=10)
    reader = threading.Thread(target=lambda: events.extend(watch), daemon=True)
    reader.start()
    time.sleep(0.3)  # the snapshot is in
    closed = call(server, "CloseRoom", pb.CloseRoomRequest(room_id="room-04"), token())
    reader.join(5)
    assert not reader.is_alive()  # the stream ended
    assert events[0].HasField("snapshot")
    last = events[-1]
    assert last.WhichOneof("event") == "room_closed" and last.room_closed.reason == "closed"
    assert last.sequence == closed.sequence == events[0].snapshot.sequence + 1
    rooms = call(server, "ListRooms", pb.ListRoomsRequest(), token())
    assert "room-04" not in [r.room_id for r in rooms.rooms]
    with pytest.raises(grpc.RpcError) as e:
        call(server, "CloseRoom", pb.CloseRoomRequest(room_id="room-04"), token())
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as e:  # another tenant cannot close acme's rooms
        call(server, "CloseRoom", pb.CloseRoomRequest(room_id="room-03"), token("other"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as e:
        call(server, "CloseRoom", pb.CloseRoomRequest(room_id="room-03"),
             token(grants=("watch",)))
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
