"""``make attack``: what a hostile tenant can do to a real server, measured.

    python benchmarks/attack.py [--seconds 10] [--out benchmarks/ATTACK.md]

Three parts, each against a ``speakerswitch serve`` of its own on loopback (with tokens, two
tenants), stopped at the end:

- stall: tenant A sends the largest batches the limits accept (one room, 5 participants,
  max_ticks_per_batch ticks, within max_entries_per_batch), back to back on one stream; meanwhile tenant B
  calls GetRoom on its own room and the health check every 20 ms. Target: B's latency p99
  <= 100 ms, max <= 250 ms (the drain yields every 10 ms of work: service/runtime/group_commit.py).
- idle connections: 500 TCP connections to the metrics port that never send a request;
  the server's thread count, and how long a real scrape takes meanwhile. Target: < 100
  threads, the scrape within 2 s.
- waves: 1000 rooms x 100 participants join, go idle and are collected; a second wave of
  the same size joins. Target: the second wave grows RSS by <= 10% over the first.
"""
from __future__ import annotations

import argparse
import os
import re
import socket
import sys
import tempfile
import time

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import loadgen as lg  # noqa: E402
from load import machine  # noqa: E402

from service.api import speakerswitch_pb2 as pb  # noqa: E402
from service.api import speakerswitch_pb2_grpc as pb_grpc  # noqa: E402
from service.runtime.auth import create_token  # noqa: E402
from service.runtime.config import ServiceConfig  # noqa: E402

SECRET = b"attack-benchmark-secret-of-32-bytes!"
STALL_P99_MS, STALL_MAX_MS = 100.0, 250.0
IDLE_CONNECTIONS, IDLE_MAX_THREADS, IDLE_SCRAPE_S = 500, 100, 2.0
WAVE_ROOMS, WAVE_PARTICIPANTS, WAVE_GROWTH = 1000, 100, 0.10


def _server(secret_file: str, **env: str) -> lg.Server:
    return lg.Server(extra_args=("--jwt-secret-file", secret_file),
                     env={f"SPEAKERSWITCH_{k.upper()}": v for k, v in env.items()})


def _metadata(tenant: str, grants: list[str]) -> tuple[tuple[str, str], ...]:
    return (("authorization", "Bearer " + create_token(SECRET, tenant, grants, 3600)),)


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024


def _threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"Threads:\s+(\d+)", f.read()).group(1))


def _attack(target: str, metadata, n_ticks: int, participants: int, sent) -> None:
    """Tenant A, in a process of its own (building 50,000-entry batches in the measuring
    process would hold its GIL and show up as B's latency)."""
    def requests():
        t = 0
        while True:
            req = pb.StreamRequest(batch_id=sent.value + 1)
            for k in range(n_ticks):
                tick = req.ticks.add(room_id="big", timestamp_ms=t + 20 * k, duration_ms=20)
                for i in range(participants):
                    tick.audio.add(participant_id=f"p{i}", level=pb.AudioLevel(level=30 + i))
            t += 20 * n_ticks
            yield req

    with grpc.insecure_channel(target) as ch:
        for resp in pb_grpc.SpeakerSwitchStub(ch).Stream(requests(), metadata=metadata):
            assert not resp.rejections, resp.rejections[0]
            sent.value += 1


def stall(secret_file: str, seconds: float) -> dict:
    import multiprocessing

    participants = 5
    cfg = ServiceConfig()
    n_ticks = min(cfg.max_entries_per_batch // participants, cfg.max_ticks_per_batch) - 10
    with _server(secret_file) as server, grpc.insecure_channel(server.target) as ch:
        stub = pb_grpc.SpeakerSwitchStub(ch)
        a, b = _metadata("a", ["publish"]), _metadata("b", ["publish", "watch"])
        first = pb.StreamRequest(ticks=[pb.RoomTick(room_id="mine", timestamp_ms=0)])
        first.ticks[0].audio.add(participant_id="x", level=pb.AudioLevel(level=30))
        list(stub.Stream(iter([first]), metadata=b))
        ctx = multiprocessing.get_context("spawn")
        answered = ctx.Value("i", 0)
        attacker = ctx.Process(target=_attack, args=(server.target, a, n_ticks, participants,
                                                     answered), daemon=True)
        attacker.start()
        try:
            while answered.value < 1:  # the attack is under way
                time.sleep(0.05)
            health = health_pb2_grpc.HealthStub(ch)
            get_ms, health_ms = [], []
            t_end = time.perf_counter() + seconds
            while time.perf_counter() < t_end:
                t0 = time.perf_counter()
                stub.GetRoom(pb.GetRoomRequest(room_id="mine"), metadata=b, timeout=10)
                t1 = time.perf_counter()
                health.Check(health_pb2.HealthCheckRequest(), timeout=10)
                t2 = time.perf_counter()
                get_ms.append(1000 * (t1 - t0))
                health_ms.append(1000 * (t2 - t1))
                time.sleep(0.02)
            batches = answered.value
        finally:
            attacker.terminate()
            attacker.join(10)
    out = dict(ticks_per_batch=n_ticks, participants=participants,
               batches_answered=batches, calls=len(get_ms))
    for name, ms in (("getroom", get_ms), ("health", health_ms)):
        a_ms = np.asarray(ms)
        out[name] = dict(p50_ms=round(float(np.percentile(a_ms, 50)), 1),
                         p99_ms=round(float(np.percentile(a_ms, 99)), 1),
                         max_ms=round(float(a_ms.max()), 1))
    out["ok"] = all(out[n]["p99_ms"] <= STALL_P99_MS and out[n]["max_ms"] <= STALL_MAX_MS
                    for n in ("getroom", "health"))
    return out


def idle_connections(secret_file: str) -> dict:
    with _server(secret_file) as server:
        pid = server.pids[0]
        before = _threads(pid)
        socks = []
        try:
            for _ in range(IDLE_CONNECTIONS):
                s = socket.create_connection(("127.0.0.1", server.metrics_port), timeout=5)
                socks.append(s)
            time.sleep(1.0)
            during = _threads(pid)
            t0 = time.perf_counter()
            try:
                lg.scrape(server.metrics_port)
                scrape_s = round(time.perf_counter() - t0, 3)
            except OSError as e:
                scrape_s = f"failed: {e}"
        finally:
            for s in socks:
                s.close()
    ok = during < IDLE_MAX_THREADS and isinstance(scrape_s, float) and scrape_s <= IDLE_SCRAPE_S
    return dict(connections=IDLE_CONNECTIONS, threads_before=before, threads_during=during,
                scrape_s=scrape_s, ok=ok)


def waves(secret_file: str) -> dict:
    with _server(secret_file, idle_timeout_s="2", gc_interval_s="0.5") as server, \
            grpc.insecure_channel(server.target) as ch:
        stub = pb_grpc.SpeakerSwitchStub(ch)
        meta = _metadata("a", ["publish"])
        pid = server.pids[0]

        def wave(tag: str) -> None:
            reqs = []
            for b in range(WAVE_ROOMS // 100):
                req = pb.StreamRequest(batch_id=b + 1)
                for r in range(b * 100, (b + 1) * 100):
                    t = req.ticks.add(room_id=f"{tag}-{r}", timestamp_ms=0, duration_ms=20)
                    t.levels.roster.extend(f"{tag}-{r}-participant-{i}"
                                           for i in range(WAVE_PARTICIPANTS))
                    t.levels.levels = bytes([70] * WAVE_PARTICIPANTS)
                reqs.append(req)
            for resp in stub.Stream(iter(reqs), metadata=meta):
                assert not resp.rejections, resp.rejections[0]

        start = _rss_mib(pid)
        wave("first")
        first = _rss_mib(pid)
        time.sleep(4.0)  # idle_timeout_s 2 + a collection pass
        collected = _rss_mib(pid)
        wave("second")
        second = _rss_mib(pid)
    growth = (second - start) / max(first - start, 1e-9) - 1
    return dict(rooms=WAVE_ROOMS, participants=WAVE_PARTICIPANTS, start_mib=round(start, 1),
                first_mib=round(first, 1), collected_mib=round(collected, 1),
                second_mib=round(second, 1), second_over_first=round(growth, 3),
                ok=growth <= WAVE_GROWTH)


def markdown(d: dict) -> str:
    s, i, w = d["stall"], d["idle"], d["waves"]
    mark = lambda ok: "**met**" if ok else "**missed**"  # noqa: E731
    return "\n".join([
        "# Attack figures (`make attack`)", "",
        f"{d['machine']}. benchmarks/attack.py against real servers on loopback, with "
        "tokens. Re-run before quoting: figures hold for this machine and run.", "",
        "## One tenant's maximal batches do not stall another", "",
        f"Tenant A: {s['batches_answered']} batches of {s['ticks_per_batch']:,} ticks "
        f"({s['participants']} participants each, the limits' largest) back to back on one "
        f"stream. Tenant B, {s['calls']} calls meanwhile:", "",
        "| call | p50 ms | p99 ms | max ms |", "|---|---|---|---|",
        f"| GetRoom | {s['getroom']['p50_ms']} | {s['getroom']['p99_ms']} | "
        f"{s['getroom']['max_ms']} |",
        f"| health Check | {s['health']['p50_ms']} | {s['health']['p99_ms']} | "
        f"{s['health']['max_ms']} |", "",
        f"Target p99 <= {STALL_P99_MS:g} ms, max <= {STALL_MAX_MS:g} ms: {mark(s['ok'])}.", "",
        f"## {i['connections']} idle connections to the metrics port", "",
        f"Server threads {i['threads_before']} before, {i['threads_during']} with the "
        f"connections open; a scrape meanwhile took {i['scrape_s']} s. Target < "
        f"{IDLE_MAX_THREADS} threads, scrape <= {IDLE_SCRAPE_S:g} s: {mark(i['ok'])}.", "",
        f"## Two waves of {w['rooms']} rooms x {w['participants']} participants", "",
        f"RSS {w['start_mib']} MiB at start, {w['first_mib']} after the first wave, "
        f"{w['collected_mib']} once it was collected, {w['second_mib']} after the second: "
        f"the second wave grew RSS {100 * w['second_over_first']:+.1f}% over the first. "
        f"Target <= {100 * WAVE_GROWTH:.0f}%: {mark(w['ok'])}.", ""])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="of the stall part (10)")
    ap.add_argument("--out", help="write the report (markdown) here")
    a = ap.parse_args(argv)
    d = {"machine": machine()}
    with tempfile.TemporaryDirectory() as tmp:
        secret_file = os.path.join(tmp, "jwt.secret")
        with open(secret_file, "wb") as f:
            f.write(SECRET)
        d["stall"] = stall(secret_file, a.seconds)
        print("stall:", d["stall"], flush=True)
        d["idle"] = idle_connections(secret_file)
        print("idle connections:", d["idle"], flush=True)
        d["waves"] = waves(secret_file)
        print("waves:", d["waves"], flush=True)
    text = markdown(d)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
