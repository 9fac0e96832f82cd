"""service.client.ShardedSession (the client package's blocking layer, issue 24) sends every
shard's request of a batch before it waits for any answer (shard after shard, 16 shards took
16 ms a batch where one stream took 1.6 ms); the answers still come back merged, rejection
indexes the caller's."""
from __future__ import annotations

import asyncio
import time

from service.api import speakerswitch_pb2 as pb
from service.client import shard_of

from conftest import level_tick


async def _hold(seconds: float) -> None:
    time.sleep(seconds)  # holds the server's event loop, as a long step would


def rooms_one_per_shard(shards: int) -> list[str]:
    rooms: dict[int, str] = {}
    k = 0
    while len(rooms) < shards:
        rooms.setdefault(shard_of(f"shard-room-{k}", shards), f"shard-room-{k}")
        k += 1
    return list(rooms.values())


def test_every_shard_is_sent_to_before_any_answer_is_awaited(server, client):
    """While the server is held, the shards' requests of one batch all arrive, so the server
    steps them in one or two drains; one shard at a time would take a drain per shard."""
    shards = 8
    rooms = rooms_one_per_shard(shards)
    drains = server.running.metrics.drains
    with client.sharded_session(shards=shards) as s:
        s.send_ticks(*[level_tick(r, 0, {"a": 30}) for r in rooms])  # every stream is open
        held = asyncio.run_coroutine_threadsafe(_hold(0.3), server.loop)
        time.sleep(0.05)
        before = drains._value.get()
        resp = s.send_ticks(*[level_tick(r, 20, {"a": 30}) for r in rooms])
        held.result(5)
        stepped_in = drains._value.get() - before
    assert not resp.rejections, resp.rejections
    assert 1 <= stepped_in <= 2, f"{shards} shards' requests took {stepped_in} drains"
    # the second tick (20 ms from 20) was stepped in every room
    assert {client.get_room(r).timestamp_ms for r in rooms} == {40}


def test_answers_are_merged_with_the_callers_tick_indexes(client):
    rooms = [f"merge-room-{k}" for k in range(8)]
    assert len({shard_of(r, 4) for r in rooms}) > 1
    with client.sharded_session(shards=4) as s:
        ticks = [level_tick(r, 0, {"a": 30}, {"a": 1}) for r in rooms]
        ticks.insert(3, pb.RoomTick(room_id="", timestamp_ms=0))  # refused: no room id
        resp = s.send_ticks(*ticks)
        assert s.reconnects == 0 and len(s.sessions) == len({shard_of(r, 4)
                                                              for r in rooms + [""]})
    (rejection,) = resp.rejections
    assert rejection.tick_index == 3 and rejection.field.startswith("ticks[3]")
    state = {r: client.get_room(r).participants[0].participant_id for r in rooms}
    assert set(state.values()) == {"a"}
