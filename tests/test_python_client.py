"""The client-only Python package (clients/python, issue 24) against a real server: what a
media server pushes per packet for many rooms reaches the server as one message per tick
(counted by the server), with the decisions of the same levels sent the existing way; it
reconnects and resumes; its queues are bounded; a bad token is a clear exception."""
from __future__ import annotations

import asyncio
import pathlib
import socket
import sys
import threading

import grpc
import pytest

from service.api import speakerswitch_pb2 as pb
from service.auth import create_token

from conftest import ServerThread, script_levels, test_config

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "clients" / "python"))
from speakerswitch_client import (AuthenticationError, Backoff,  # noqa: E402
                                  PermissionDeniedError, SpeakerSwitchClient)

SECRET = b"python-client-secret-that-is-long-enough-for-hs256"


def served(server: ServerThread, name: str) -> float:
    """A counter of the server's own metrics (what it processed, not what we sent)."""
    return server.running.metrics.registry.get_sample_value(name) or 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scripts(rooms: int) -> dict[str, list[pb.RoomTick]]:
    """A different conversation per room: who talks when shifts with the room's index."""
    out = {}
    for k in range(rooms):
        room = f"room-{k}"
        shift = 200 * k
        out[room] = script_levels(room, [("a", 0 + shift, 1500 + shift),
                                         ("b", 2000 + shift, 3400),
                                         ("c", 3600, 4400 - shift // 2)],
                                  ["a", "b", "c"], 4600)
    return out


async def push_tick(client: SpeakerSwitchClient, tick: pb.RoomTick) -> None:
    """One tick of the script as a media server would push it: a packet per participant."""
    for a in tick.audio:
        await client.push_level(tick.room_id, a.participant_id, a.level.level,
                                a.level.voice == pb.VOICE_ACTIVITY_PRESENT, tick.timestamp_ms)


def compact(tick: pb.RoomTick) -> pb.RoomTick:
    """The tick's levels as a LevelVector (the form docs/clients.md sends, and the client's)."""
    out = pb.RoomTick(room_id=tick.room_id, timestamp_ms=tick.timestamp_ms,
                      duration_ms=tick.duration_ms)
    out.levels.roster.extend(a.participant_id for a in tick.audio)
    out.levels.levels = bytes(a.level.level | (0x80 if a.level.voice == pb.VOICE_ACTIVITY_PRESENT
                                               else 0) for a in tick.audio)
    return out


def decisions_the_existing_way(server: ServerThread, ticks_by_room) -> dict[str, list]:
    """The same ticks through service.client, one message per room per tick."""
    from service.client import Client
    out: dict[str, list] = {room: [] for room in ticks_by_room}
    with Client(server.target) as c, c.session() as s:
        for i in range(len(next(iter(ticks_by_room.values())))):
            for room, ticks in ticks_by_room.items():
                out[room].extend(s.send_ticks(compact(ticks[i])).events)
    return out


def comparable(events) -> list[str]:
    """An event without its room id (the two runs use different rooms)."""
    out = []
    for e in events:
        e = pb.RoomEvent.FromString(e.SerializeToString())
        e.room_id = ""
        out.append(str(e))
    return out


@pytest.fixture
def server():
    with ServerThread(test_config()) as s:
        yield s


def test_many_rooms_go_as_one_message_per_tick_with_the_same_decisions(server):
    by_room = scripts(4)
    # on a server of its own: a room's ActiveSpeakers timing depends on the rooms created
    # before it on the same server (the second room of a server gets its first one at 80
    # ms where the first gets it at 100, the same levels), so both ways start from scratch
    with ServerThread(test_config()) as other:
        expected = decisions_the_existing_way(other, by_room)
    n_ticks = len(by_room["room-0"])
    batches0, ticks0 = (served(server, "speakerswitch_batches_total"),
                        served(server, "speakerswitch_ticks_total"))

    async def run():
        got: dict[str, list] = {room: [] for room in by_room}
        async with SpeakerSwitchClient(server.target, auto_flush=False) as client:
            async def collect():
                async for e in client.decisions():
                    got[e.room_id].append(e)
            reader = asyncio.create_task(collect())
            await asyncio.sleep(0)
            for i in range(n_ticks):
                for ticks in by_room.values():
                    await push_tick(client, ticks[i])
                await client.flush()
            views = {room: client.room(room) for room in by_room}
        await reader
        return got, views

    got, views = asyncio.run(run())
    # the server processed one request per tick carrying every room's tick
    assert served(server, "speakerswitch_batches_total") - batches0 == n_ticks
    assert served(server, "speakerswitch_ticks_total") - ticks0 == n_ticks * len(by_room)
    for room in by_room:
        assert got[room], room
        assert comparable(got[room]) == comparable(expected[room]), room
        state = server.call(server.running.registry.room_state, room, "")
        view = views[room]
        assert (view.speaker_id, view.sequence) == (state.speaker_id, state.sequence)
        for p in state.participants:
            mine = view.participants[p.participant_id]
            assert mine.is_speaking == p.speaking, (room, p.participant_id)
            # the time it stopped speaking: its last SpeakingChanged, after the server's
            # end of its last speech-like frame by the speaking hysteresis
            stops = [e.timestamp_ms for e in got[room] if e.HasField("speaking_changed")
                     and e.speaking_changed.participant_id == p.participant_id]
            if p.speaking:  # still: the latest event saying so, since its start
                assert stops[-1] <= mine.last_spoke_at_ms <= state.timestamp_ms, (room, mine)
            else:
                assert mine.last_spoke_at_ms == stops[-1], (room, mine)
                assert 0 <= mine.last_spoke_at_ms - p.last_spoke_at_ms <= 500, (room, mine, p)


def test_pushed_in_real_time_the_flushes_carry_every_room(server):
    rooms, n_ticks = [f"live-{k}" for k in range(6)], 40
    batches0, ticks0 = (served(server, "speakerswitch_batches_total"),
                        served(server, "speakerswitch_ticks_total"))

    async def run():
        async with SpeakerSwitchClient(server.target) as client:
            for i in range(n_ticks):
                for room in rooms:
                    for p in ("a", "b", "c"):
                        await client.push_level(room, p, 30 if p == "a" else 80, p == "a",
                                                i * 20)
                await asyncio.sleep(0.02)  # the media server's packet interval
            link = next(iter(client._links.values()))
        return link.requests, link.responses

    requests, responses = asyncio.run(run())
    assert requests == responses
    assert served(server, "speakerswitch_batches_total") - batches0 == requests
    # every room's tick arrived once; requests follow the ticks, not the rooms
    assert served(server, "speakerswitch_ticks_total") - ticks0 == n_ticks * len(rooms)
    assert requests <= n_ticks + 2, requests
    for room in rooms:
        assert server.call(server.running.registry.room_state, room, "").speaker_id == "a"


def test_a_bad_token_is_an_authentication_error(tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    with ServerThread(test_config(insecure_no_auth=False,
                                  jwt_secret_file=str(secret))) as srv:
        async def run(token):
            async with SpeakerSwitchClient(srv.target, token=token, auto_flush=False) as c:
                for i in range(100):
                    await c.push_level("r", "a", 30, True, i * 20)
                    await c.flush()
                    await asyncio.sleep(0.01)
                return c.room("r").sequence

        good = create_token(SECRET, "acme", ["publish"], 600)
        assert asyncio.run(run(good)) > 0  # the same calls work with a good token
        with pytest.raises(AuthenticationError) as e:
            asyncio.run(run("not-a-token"))
        assert e.value.code == grpc.StatusCode.UNAUTHENTICATED
        assert "UNAUTHENTICATED" in str(e.value) and "token" in str(e.value)
        with pytest.raises(PermissionDeniedError):
            asyncio.run(run(create_token(SECRET, "acme", ["watch"], 600)))
