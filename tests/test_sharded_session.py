"""service.client.ShardedSession sends every shard's request of a batch before it waits for
any answer (shard after shard, 16 shards took 16 ms a batch where one stream took 1.6 ms,
issue 24); the answers still come back merged, rejection indexes the caller's."""
from __future__ import annotations

from service.api import speakerswitch_pb2 as pb
from service.client import StreamSession, shard_of

from conftest import level_tick


def test_every_shard_is_sent_to_before_any_answer_is_awaited(client, monkeypatch):
    calls: list[str] = []
    submit, receive = StreamSession.submit, StreamSession.receive
    monkeypatch.setattr(StreamSession, "submit",
                        lambda self, r: (calls.append("submit"), submit(self, r))[1])
    monkeypatch.setattr(StreamSession, "receive",
                        lambda self: (calls.append("receive"), receive(self))[1])
    rooms = [f"shard-room-{k}" for k in range(8)]
    shards = {shard_of(r, 4) for r in rooms}
    assert len(shards) > 1
    with client.sharded_session(shards=4) as s:
        ticks = [level_tick(r, 0, {"a": 30}, {"a": 1}) for r in rooms]
        ticks.insert(3, pb.RoomTick(room_id="", timestamp_ms=0))  # refused: no room id
        resp = s.send_ticks(*ticks)
        assert calls == ["submit"] * len(shards | {shard_of("", 4)}) + \
            ["receive"] * len(shards | {shard_of("", 4)})
    (rejection,) = resp.rejections
    assert rejection.tick_index == 3 and rejection.field.startswith("ticks[3]")
    state = {r: client.get_room(r).participants[0].participant_id for r in rooms}
    assert set(state.values()) == {"a"}
