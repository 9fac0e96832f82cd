"""Service-level figures (pytest-benchmark): startup to SERVING, and memory per participant.
Run with ``make bench``."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.api import speakerswitch_pb2 as pb
from service.runtime.rooms import RoomRegistry


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def test_startup_to_serving(benchmark):
    """Wall time from process start to the health check answering SERVING."""
    def start_once() -> None:
        port = _free_port()
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--insecure-no-auth",
                                 "--port", str(port), "--metrics-port", "-1",
                                 "--log-level", "WARNING"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            # poll the port with plain TCP connects: a gRPC channel whose first connect is
            # refused backs off for about a second, which would be measured instead
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    assert time.perf_counter() - t0 < 30 and proc.poll() is None
                    time.sleep(0.005)
            with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
                reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(),
                                                              timeout=10)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
        finally:
            proc.terminate()
            proc.wait(10)
    benchmark.pedantic(start_once, rounds=3, iterations=1)
    benchmark.extra_info["seconds_to_serving"] = round(benchmark.stats.stats.mean, 3)


def test_memory_per_participant(benchmark):
    """RSS growth per participant with 10,000 rooms x 10 participants in the registry
    (engine arrays, VADs, ids), measured once."""
    def fill() -> float:
        reg = RoomRegistry()
        roster = [f"participant-{i}" for i in range(10)]
        before = _rss_kib()
        for batch in range(10):
            req = pb.StreamRequest(batch_id=batch)
            for r in range(batch * 1000, (batch + 1) * 1000):
                t = req.ticks.add(room_id=f"room-{r:05d}", timestamp_ms=0, duration_ms=20)
                t.levels.roster.extend(roster)
                t.levels.levels = bytes([0x80 | 30] + [70] * 9)
            reg.process(req)
        grown = (_rss_kib() - before) * 1024 / 100_000
        fill.kept = reg  # keep it alive until measured
        return grown
    per = benchmark.pedantic(fill, rounds=1, iterations=1)
    benchmark.extra_info["bytes_per_participant"] = round(per)
    assert per > 0


PER_ROOM_ROOMS, PER_ROOM_PARTICIPANTS = 50, 10
"""The shape media servers send: a stream per room, a message per room per 20 ms tick."""


def _per_room_requests(k: int) -> list[pb.StreamRequest]:
    """Tick ``k`` of every room, one request each (roster form, the first tick names it)."""
    roster = [f"p{i}" for i in range(PER_ROOM_PARTICIPANTS)]
    out = []
    for r in range(PER_ROOM_ROOMS):
        req = pb.StreamRequest(batch_id=k + 1)
        t = req.ticks.add(room_id=f"room-{r:03d}", timestamp_ms=20 * k, duration_ms=20)
        if k == 0:
            t.levels.roster.extend(roster)
        speaker = (k // 100 + r) % PER_ROOM_PARTICIPANTS
        t.levels.levels = bytes((0x80 | 25) if i == speaker else 70
                                for i in range(PER_ROOM_PARTICIPANTS))
        out.append(req)
    return out


def _run_per_room(benchmark, together: bool) -> None:
    from service.runtime.rooms import Batch

    rounds = 400
    reg = RoomRegistry()
    ticks = [_per_room_requests(k) for k in range(rounds + 11)]  # media time only goes on
    reg.process_many([Batch(r) for r in ticks[0]])
    next_tick = iter(ticks[1:])

    def one_tick() -> None:
        requests = next(next_tick)
        if together:
            reg.process_many([Batch(r) for r in requests])
        else:
            for r in requests:
                reg.process(r)
    benchmark.pedantic(one_tick, rounds=rounds, iterations=1, warmup_rounds=10)
    state = reg.room_state("room-000")
    assert state is not None and state.timestamp_ms == 20 * (rounds + 10) + 20
    per_message_us = benchmark.stats.stats.median / PER_ROOM_ROOMS * 1e6
    benchmark.extra_info["messages_per_tick"] = PER_ROOM_ROOMS
    benchmark.extra_info["us_per_message"] = round(per_message_us, 1)
    benchmark.extra_info["pf_per_s"] = round(PER_ROOM_ROOMS * PER_ROOM_PARTICIPANTS
                                             / benchmark.stats.stats.median)


def test_per_room_messages_one_call_each(benchmark):
    """50 rooms x 10, a request per room per tick, each its own RoomRegistry.process call:
    what a server without group commit does."""
    _run_per_room(benchmark, together=False)


def test_per_room_messages_group_commit(benchmark):
    """The same 50 requests stepped together (RoomRegistry.process_many): what the server
    does with the requests that wait at once."""
    _run_per_room(benchmark, together=True)
