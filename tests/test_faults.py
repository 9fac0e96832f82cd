"""Faults: reconnecting media servers, slow watchers, shutdown."""
from __future__ import annotations

import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.api import speakerswitch_pb2 as pb
from service.client import Client

from conftest import ServerThread, script_levels, test_config

SCRIPT = [("a", 0, 2000), ("b", 2500, 5000), ("c", 5400, 8000), ("a", 8400, 10000)]


def requests(ticks, first_id=1):
    return [pb.StreamRequest(batch_id=first_id + i, ticks=[t]) for i, t in enumerate(ticks)]


def events_of(responses):
    return [str(e) for r in responses for e in r.events]


def test_a_reconnecting_media_server_continues_without_a_spurious_switch(client):
    ticks = script_levels("rc", SCRIPT, ["a", "b", "c"], 10000)
    with ServerThread(test_config()) as other, Client(other.target) as c2:
        whole = events_of(c2.stream(requests(ticks)))             # one uninterrupted stream
    first = events_of(client.stream(requests(ticks[:260])))       # the connection drops...
    time.sleep(0.2)
    second = events_of(client.stream(requests(ticks[260:])))      # ...and comes back
    assert first + second == whole


def chatty_room(room: str, n_ticks: int, n: int = 30) -> list[pb.StreamRequest]:
    """Many participants toggling speaking: a torrent of events for a watcher."""
    pids = [f"p{i}" for i in range(n)]
    reqs = []
    for k in range(0, n_ticks, 50):
        batch = pb.StreamRequest(batch_id=k // 50 + 1)
        for t in range(k, min(k + 50, n_ticks)):
            tick = batch.ticks.add(room_id=room, timestamp_ms=t * 20, duration_ms=20)
            tick.levels.levels = bytes((0x80 | 20) if (t // 40 + i) % 2 else 70
                                       for i in range(n))
            if t == 0:
                tick.levels.roster.extend(pids)
        reqs.append(batch)
    return reqs


def test_a_watcher_that_stops_reading_is_dropped_and_the_room_goes_on():
    with ServerThread(test_config(watch_queue_events=16)) as srv, Client(srv.target) as c:
        reqs = chatty_room("slow", 6000)
        list(c.stream(reqs[:1]))
        watch = c.watch("slow")
        snap = next(watch)                             # then it stops reading
        responses = list(c.stream(reqs[1:]))
        sent = sum(len(r.events) for r in responses)
        assert sent > 3000
        assert srv.call(lambda: len(srv.running.registry.room("slow").watchers)) == 0
        got = []
        with pytest.raises(grpc.RpcError) as e:
            for ev in watch:
                got.append(ev)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "resubscribe" in e.value.details()
        assert len(got) < sent                         # it did not get everything...
        assert [g.sequence for g in got] == list(range(snap.snapshot.sequence + 1,
                                                       snap.snapshot.sequence + 1 + len(got)))
        # ...but what it got has no gap, and the room itself went on
        assert c.get_room("slow").timestamp_ms == 6000 * 20


def test_shutdown_turns_health_not_serving_and_ends_open_streams():
    srv = ServerThread(test_config()).__enter__()
    c = Client(srv.target)
    try:
        session = c.session()
        session.send_ticks(*script_levels("sd", [("a", 0, 200)], ["a"], 200)[:1])
        health = health_pb2_grpc.HealthStub(c.channel)
        statuses = []
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""))

        def read_statuses():
            try:
                for s in watch:
                    statuses.append(s.status)
            except grpc.RpcError:
                pass  # the server went away: expected

        reader = threading.Thread(target=read_statuses, daemon=True)
        reader.start()
        time.sleep(0.2)
        t0 = time.monotonic()
        import asyncio
        asyncio.run_coroutine_threadsafe(srv.running.stop(0.5), srv.loop).result(10)
        assert time.monotonic() - t0 < 5
        reader.join(5)
        assert statuses[0] == health_pb2.HealthCheckResponse.SERVING
        assert health_pb2.HealthCheckResponse.NOT_SERVING in statuses
        with pytest.raises(grpc.RpcError):
            session.send_ticks(*script_levels("sd", [("a", 0, 200)], ["a"], 200)[1:2])
    finally:
        c.close()
        srv.loop.call_soon_threadsafe(srv.loop.stop)
        srv.thread.join(10)
