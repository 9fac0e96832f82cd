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
from service.runtime.auth import create_token

from conftest import ServerThread, script_levels, test_config
from test_security import pki  # noqa: F401 (a fixture: a CA, server and client certificates)

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
    # the same room ids, so on a server of its own: a room's ActiveSpeakers schedule has a
    # phase taken from its id (CRC-32, spreading the rooms' rankings over the interval)
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


def conversation_tick(i: int, switch_at: int) -> list[tuple[str, int, bool]]:
    """Tick i of 20 ms: a talks until tick ``switch_at``, then b; c listens."""
    talker = "a" if i < switch_at else "b"
    return [(p, 25 if p == talker else 70, p == talker) for p in ("a", "b", "c")]


def contiguous(seqs: list[int]) -> bool:
    return seqs == list(range(1, len(seqs) + 1))


def test_a_restarted_server_is_reconnected_to_and_nothing_comes_twice():
    port = free_port()
    target, n_ticks = f"127.0.0.1:{port}", 150
    servers = [ServerThread(test_config(port=port)).__enter__()]

    async def run():
        seen: list[pb.RoomEvent] = []
        loop = asyncio.get_running_loop()
        async with SpeakerSwitchClient(target, backoff=Backoff(0.02, 0.2)) as client:
            async def collect():
                async for e in client.decisions():
                    seen.append(e)
            reader = asyncio.create_task(collect())
            await asyncio.sleep(0)
            for i in range(n_ticks):
                for p, level, voice in conversation_tick(i, 90):
                    await client.push_level("r", p, level, voice, i * 20)
                if i == 40:   # 0.8 s in: the server goes away (its rooms with it)...
                    await loop.run_in_executor(None, servers[0].__exit__, None, None, None)
                if i == 60:   # ... and a new one takes the port 0.4 s later
                    servers.append(await loop.run_in_executor(
                        None, ServerThread(test_config(port=port)).__enter__))
                await asyncio.sleep(0.02)
            link = next(iter(client._links.values()))
        await reader  # closed: everything sent was answered
        return seen, (link.requests, link.responses, link.reconnects, client.rejections)

    try:
        seen, (requests, responses, reconnects, rejections) = asyncio.run(run())
        second = servers[1]
        state = second.call(second.running.registry.room_state, "r", "")
    finally:
        servers[-1].__exit__(None, None, None)
    assert reconnects >= 1
    assert requests == responses and rejections == 0  # every request answered once
    # the events of the first server, then those of the new room on the second: each
    # numbered 1, 2, 3 ... without a repeat; the second's are all of its room's events
    restart = next(k for k in range(1, len(seen)) if seen[k].sequence <= seen[k - 1].sequence)
    first, then = [e.sequence for e in seen[:restart]], [e.sequence for e in seen[restart:]]
    assert contiguous(first) and contiguous(then), (first, then)
    assert then[-1] == state.sequence
    # the second server decided the rest of the conversation: a, then b from 1.8 s
    shown = [(e.timestamp_ms, e.switch.speaker_id) for e in seen[restart:]
             if e.HasField("switch")]
    assert [s for _, s in shown] == ["a", "b"] and shown[1][0] > 1800, shown
    assert state.speaker_id == "b"
    assert served(second, "speakerswitch_batches_total") <= responses


class Proxy:
    """A TCP relay to ``target`` that can be cut (every connection dropped, nothing
    accepted) and restored on the same port: a network outage between client and server."""

    def __init__(self, target_port: int) -> None:
        self.target_port, self.port = target_port, free_port()
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def cut(self) -> None:
        self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        await self._server.wait_closed()

    async def _relay(self, reader, writer) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers |= {writer, up_writer}

        async def pipe(src, dst):
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


def test_watch_resumes_after_a_network_cut_without_gaps_or_repeats(server):
    port = int(server.target.rsplit(":", 1)[1])

    async def run():
        proxy = Proxy(port)
        await proxy.start()
        watched: list[pb.RoomEvent] = []
        published: list[pb.RoomEvent] = []
        async with SpeakerSwitchClient(server.target) as pub, \
                SpeakerSwitchClient(f"127.0.0.1:{proxy.port}",
                                    backoff=Backoff(0.02, 0.2)) as sub:
            async def follow():
                async for e in sub.watch("w"):
                    watched.append(e)

            async def collect():
                async for e in pub.decisions():
                    published.append(e)
            tasks = [asyncio.create_task(follow()), asyncio.create_task(collect())]
            cut_at = None
            for i in range(150):
                for p, level, voice in conversation_tick(i, 70):
                    await pub.push_level("w", p, level, voice, i * 20)
                if i == 50:
                    await proxy.cut()
                    cut_at = len(published)
                if i == 100:
                    await proxy.start()
                await asyncio.sleep(0.02)
            await pub.flush()
            for _ in range(200):  # until the watcher has caught up
                if watched and published and watched[-1].sequence == published[-1].sequence:
                    break
                await asyncio.sleep(0.02)
            during_cut = published[cut_at:]
            for t in tasks:
                t.cancel()
        await proxy.cut()
        return watched, published, during_cut, proxy.connections

    watched, published, during_cut, connections = asyncio.run(run())
    assert connections >= 2  # the watcher did reconnect
    assert during_cut and any(e.HasField("switch") for e in published)
    assert watched[0].HasField("snapshot")
    start = watched[0].snapshot.sequence
    after = [e.sequence for e in watched[1:]]
    assert after == list(range(start + 1, start + 1 + len(after))), after
    # exactly the publisher's events, those of the cut included
    assert [str(e) for e in watched[1:]] == [str(e) for e in published if e.sequence > start]


def test_pushes_wait_when_the_server_is_away_and_memory_stays_bounded():
    port = free_port()

    async def run():
        async with SpeakerSwitchClient(f"127.0.0.1:{port}", max_pending=60, max_in_flight=2,
                                       backoff=Backoff(0.02, 0.1)) as client:
            accepted, i = 0, 0
            blocked = None
            while blocked is None and i < 1000:
                for p, level, voice in conversation_tick(i, 500):
                    push = asyncio.create_task(client.push_level("b", p, level, voice, i * 20))
                    done, _ = await asyncio.wait({push}, timeout=0.5)
                    if not done:
                        blocked = push
                        break
                    accepted += 1
                i += 1
            link = next(iter(client._links.values()))
            bounded = (client.batcher.packets, len(link.unacked))
            with ServerThread(test_config(port=port)) as srv:
                await asyncio.wait_for(blocked, 10)  # the server is back: it goes on
                for _ in range(100):
                    await client.flush()
                    if link.responses == link.requests:
                        break
                    await asyncio.sleep(0.05)
                answered = link.responses == link.requests
                levels = srv.call(srv.running.registry.room_state, "b", "")
        return accepted, bounded, answered, levels

    accepted, (pending, unacked), answered, state = asyncio.run(run())
    assert pending <= 60 and unacked <= 2
    # no more than what the buffer and the two requests in flight hold (and the flush
    # that waits for a slot): the rest waited
    assert accepted <= 4 * 60, accepted
    assert answered
    assert state.speaker_id == "a" and state.timestamp_ms > 0


def test_shards_get_one_request_each_per_tick_sent_together(server):
    from speakerswitch_client import shard_of
    rooms = [f"s-{k}" for k in range(12)]
    shards = {shard_of(room, 4) for room in rooms}
    batches0 = served(server, "speakerswitch_batches_total")

    async def run():
        async with SpeakerSwitchClient(server.target, shards=4, auto_flush=False) as client:
            for i in range(30):
                for room in rooms:
                    for p, level, voice in conversation_tick(i, 100):
                        await client.push_level(room, p, level, voice, i * 20)
                await client.flush()
            # one stream per shard, open together (their requests are not sent in turn)
            streams = served(server, "speakerswitch_streams")
        links = {k: (link.requests, link.responses) for k, link in client._links.items()}
        return streams, links, {r: client.room(r).speaker_id for r in rooms}

    streams, links, shown = asyncio.run(run())
    assert len(shards) > 1 and streams == len(shards) and set(links) == shards
    assert all(req == resp == 30 for req, resp in links.values()), links
    assert served(server, "speakerswitch_batches_total") - batches0 == 30 * len(shards)
    assert set(shown.values()) == {"a"}


def test_tls_with_a_client_certificate_and_a_token(pki, tmp_path):
    from speakerswitch_client import tls_credentials
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    cfg = test_config(tls_cert_file=str(pki / "server.pem"), tls_key_file=str(pki / "server.key"),
                      tls_client_ca_file=str(pki / "ca.pem"), insecure_no_auth=False,
                      jwt_secret_file=str(secret))
    asked = []

    def token() -> str:  # asked at every (re)connect: a refreshed token goes in
        asked.append(1)
        return create_token(SECRET, "acme", ["publish", "watch"], 600)

    with ServerThread(cfg) as srv:
        async def run():
            creds = tls_credentials(str(pki / "ca.pem"), str(pki / "client.pem"),
                                    str(pki / "client.key"))
            async with SpeakerSwitchClient(srv.target, token=token, tls=creds,
                                           auto_flush=False) as client:
                for i in range(60):
                    for p, level, voice in conversation_tick(i, 100):
                        await client.push_level("tls", p, level, voice, i * 20)
                    await client.flush()
                await client.flush()
                listed = [r.room_id async for r in client.list_rooms()]
                return client.room("tls").speaker_id, listed
        shown, listed = asyncio.run(run())
    assert shown == "a" and listed == ["tls"] and asked


def test_a_failing_callback_is_logged_and_the_decisions_go_on(server, caplog):
    async def run():
        async with SpeakerSwitchClient(server.target, auto_flush=False) as client:
            def broken(room, switch):
                raise RuntimeError("the application's bug")
            client.on_switch = broken
            for i in range(150):
                for p, level, voice in conversation_tick(i, 70):
                    await client.push_level("cb", p, level, voice, i * 20)
                await client.flush()
        return client.room("cb").speaker_id, client.stats()

    shown, stats = asyncio.run(run())
    assert shown == "b" and stats["responses"] == stats["requests"] == 150
    failed = [r for r in caplog.records
              if r.exc_info and "the application's bug" in str(r.exc_info[1])]
    assert len(failed) == 2  # the switches to a and to b


def test_closing_a_room_ends_its_watch_and_a_later_push_starts_it_again(server):
    async def run():
        closed, watched = [], []
        async with SpeakerSwitchClient(server.target, auto_flush=False) as client:
            client.on_room_closed = lambda room, reason: closed.append((room.room_id, reason,
                                                                        room.sequence))

            async def follow():
                async for e in client.watch("c"):
                    watched.append(e)
            for i in range(100):
                for p, level, voice in conversation_tick(i, 50):
                    await client.push_level("c", p, level, voice, 1000 + i * 20)
                await client.flush()
                if i == 0:
                    follower = asyncio.create_task(follow())
            last = await client.close_room("c")
            await asyncio.wait_for(follower, 10)  # ended by room_closed
            for i in range(20):  # the same id again: a new room, its media time from 0
                for p, level, voice in conversation_tick(i, 50):
                    await client.push_level("c", p, level, voice, i * 20)
                await client.flush()
        return last, closed, watched, client.room("c"), client.rejections

    last, closed, watched, again, rejections = asyncio.run(run())
    assert closed == [("c", "closed", last)]
    assert watched[-1].HasField("room_closed") and watched[-1].sequence == last
    assert watched[-1].room_closed.reason == "closed"
    assert rejections == 0 and again.sequence < last and again.speaker_id == "a"


def test_pcm_pushed_per_packet_decides_as_pcm_sent_the_existing_way():
    import numpy as np

    from service.tools import sample
    from service.client import Client
    tracks, _ = sample.conversation(rate=16000)
    frame = 320  # 20 ms at 16 kHz
    n_ticks = 300
    pcm = {p: (np.clip(x[:n_ticks * frame], -1, 1) * 32767).astype("<i2").tobytes()
           for p, x in tracks.items()}

    def chunk(p: str, i: int) -> bytes:
        return pcm[p][i * frame * 2:(i + 1) * frame * 2]

    expected = []
    with ServerThread(test_config()) as srv, Client(srv.target) as c, c.session() as s:
        for i in range(n_ticks):
            tick = pb.RoomTick(room_id="pcm", timestamp_ms=i * 20, duration_ms=20)
            for p in tracks:
                tick.audio.add(participant_id=p, pcm=pb.PcmFrame(samples=chunk(p, i),
                                                                 sample_rate_hz=16000))
            expected.extend(s.send_ticks(tick).events)

    async def run(target):
        got = []
        async with SpeakerSwitchClient(target, auto_flush=False) as client:
            async def collect():
                async for e in client.decisions():
                    got.append(e)
            reader = asyncio.create_task(collect())
            await asyncio.sleep(0)
            for i in range(n_ticks):
                for p in tracks:
                    await client.push_pcm("pcm", p, chunk(p, i), 16000, i * 20)
                await client.flush()
        await reader
        return got

    with ServerThread(test_config()) as srv:
        got = asyncio.run(run(srv.target))
    assert any(e.HasField("switch") for e in expected)
    assert [str(e) for e in got] == [str(e) for e in expected]


def test_the_blocking_layer_rides_the_asyncio_streams_across_a_server_restart():
    """service.client's sessions are this package's streams (speakerswitch_client.sync): a
    sharded session reopens its shards' streams on a restarted server and is answered; a
    plain session does not reconnect, its failure is the grpc.RpcError it always raised."""
    from conftest import level_tick
    from service.client import Client

    port = free_port()
    rooms = [f"blocking-{k}" for k in range(6)]
    old = ServerThread(test_config(port=port)).__enter__()
    with Client(f"127.0.0.1:{port}") as c, c.sharded_session(shards=4) as sharded:
        plain = c.session()
        assert not plain.send_ticks(level_tick("plain", 0, {"a": 30}, {"a": 1})).rejections
        first = sharded.send_ticks(*[level_tick(r, 0, {"a": 30}, {"a": 1}) for r in rooms])
        assert not first.rejections and sharded.reconnects == 0
        old.__exit__(None, None, None)
        with ServerThread(test_config(port=port)) as new:
            again = sharded.send_ticks(*[level_tick(r, 20, {"a": 30}, {"a": 1})
                                         for r in rooms])
            assert not again.rejections and sharded.reconnects >= 1
            assert {new.call(new.running.registry.room_state, r, "").timestamp_ms
                    for r in rooms} == {40}
            with pytest.raises(grpc.RpcError) as e:
                plain.send_ticks(level_tick("plain", 20, {"a": 30}, {"a": 1}))
            assert e.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
                                      grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)
            plain.close()
