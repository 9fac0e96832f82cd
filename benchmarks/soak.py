"""Soak: many rooms through a real server, in real time, for minutes.

    python benchmarks/soak.py [--rooms 1000] [--participants 8] [--minutes 10] [--out FILE]

Starts ``speakerswitch serve`` as its own process on loopback (ephemeral ports), streams
one batch per 20 ms tick carrying every room (RFC 6464 levels in the compact roster form;
each room a turn-taking conversation) for the given time, and reports frames processed,
decisions, errors (must be 0), client round-trip and server processing latency (p50/p99),
and the server's RSS at the start, middle and end (flat once warm: state is bounded).
Stops the server and exits by itself.
"""
from __future__ import annotations

import argparse
import os
import platform
import queue
import re
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from service.api import speakerswitch_pb2 as pb  # noqa: E402
from service.api import speakerswitch_pb2_grpc as pb_grpc  # noqa: E402
from loadgen import cpu_s, free_port, rss_kib, sleep_until  # noqa: E402  (one copy)

TICK_MS = 20


def levels_for(k: int, n_rooms: int, n: int) -> list[bytes]:
    """Tick k of every room: 3 s turns, each room's turns starting at its own phase (rooms
    are not synchronized in real life), with a syllabic on/off pattern; the others sit at
    room noise; V bit on speech."""
    rooms = np.arange(n_rooms)
    phase = k + 37 * rooms
    talker = (phase // 150 + rooms) % n
    lv = np.full((n_rooms, n), 68, np.uint8)
    on = (phase % 12) < 9
    lv[rooms, talker] = np.where(on, 0x80 | 24, 60)
    return [row.tobytes() for row in lv]


def histogram_quantiles(text: str, name: str, qs=(0.5, 0.99)) -> dict[float, float]:
    buckets = []
    for m in re.finditer(rf'^{name}_bucket{{le="([^"]+)"}} (\S+)$', text, re.M):
        le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
        buckets.append((le, float(m.group(2))))
    total = buckets[-1][1] if buckets else 0
    out = {}
    for q in qs:
        target = q * total
        out[q] = next((le for le, c in buckets if c >= target), float("nan"))
    return out


def run(rooms: int, participants: int, seconds: float) -> dict:
    """Start a server of our own, drive it, stop it."""
    port, mport = free_port(), free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--insecure-no-auth", "--port", str(port),
         "--metrics-port", str(mport), "--log-level", "WARNING"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return drive(f"127.0.0.1:{port}", server.pid, mport, rooms, participants, seconds)
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()


def drive(target: str, server_pid: int, metrics_port: int, rooms: int, participants: int,
          seconds: float) -> dict:
    """Stream to ``target`` (a server, or a proxy in front of the server ``server_pid``
    whose metrics are on ``metrics_port``) in real time; measure."""
    pid, mport = server_pid, metrics_port
    channel = grpc.insecure_channel(target,
                                    options=[("grpc.max_send_message_length", 64 << 20)])
    grpc.channel_ready_future(channel).result(timeout=30)
    stub = pb_grpc.SpeakerSwitchStub(channel)
    roster = [f"p{i}" for i in range(participants)]
    sent_at: dict[int, float] = {}
    outbox: queue.Queue = queue.Queue()
    n_ticks = int(seconds * 1000 / TICK_MS)

    def requests():
        while True:
            r = outbox.get()
            if r is None:
                return
            yield r

    responses = stub.Stream(requests())
    stats = dict(frames=0, events=0, switches=0, rejections=0, rtt=[])

    def reader():
        for resp in responses:
            stats["rtt"].append(time.perf_counter() - sent_at.pop(resp.batch_id))
            stats["events"] += len(resp.events)
            stats["switches"] += sum(1 for e in resp.events if e.HasField("switch"))
            stats["rejections"] += len(resp.rejections)

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    rss = {"start": rss_kib(pid)}
    cpu0 = cpu_s(pid)
    t0 = time.perf_counter()
    late = 0
    for k in range(n_ticks):
        late += sleep_until(t0 + k * TICK_MS / 1000)
        req = pb.StreamRequest(batch_id=k + 1)
        for r, lv in enumerate(levels_for(k, rooms, participants)):
            tick = req.ticks.add(room_id=f"room-{r}", timestamp_ms=k * TICK_MS,
                                 duration_ms=TICK_MS)
            tick.levels.levels = lv
            if k == 0:
                tick.levels.roster.extend(roster)
        sent_at[k + 1] = time.perf_counter()
        outbox.put(req)
        stats["frames"] += rooms * participants
        if k == n_ticks // 2:
            rss["middle"] = rss_kib(pid)
    outbox.put(None)
    th.join(60)
    wall = time.perf_counter() - t0
    rss["end"] = rss_kib(pid)
    server_cpu = cpu_s(pid) - cpu0
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=10).read().decode()
    errors = sum(float(v) for v in re.findall(r"^speakerswitch_errors_total\{[^}]*\} (\S+)$",
                                              metrics, re.M))
    proc_q = histogram_quantiles(metrics, "speakerswitch_processing_latency_seconds")
    rtt = np.array(stats["rtt"]) * 1000
    return dict(rooms=rooms, participants=participants, seconds=round(wall, 1),
                batches=n_ticks, answered=len(stats["rtt"]), late_sends=late,
                frames=stats["frames"], events=stats["events"], switches=stats["switches"],
                rejections=stats["rejections"], server_errors=errors,
                rtt_p50_ms=round(float(np.percentile(rtt, 50)), 2),
                rtt_p99_ms=round(float(np.percentile(rtt, 99)), 2),
                rtt_max_ms=round(float(rtt.max()), 2),
                # a growing backlog shows as a later round trip far above the early one
                rtt_first_third_p50_ms=round(float(np.median(rtt[: len(rtt) // 3])), 2),
                rtt_last_third_p50_ms=round(float(np.median(rtt[-(len(rtt) // 3):])), 2),
                processing_p50_ms_bucket=proc_q[0.5] * 1000,
                processing_p99_ms_bucket=proc_q[0.99] * 1000,
                server_cpu_share=round(server_cpu / wall, 3),
                rss_mib={k: round(v / 1024, 1) for k, v in rss.items()})


def main(argv: list[str] | None = None) -> int:
    """The soak itself runs the light client of loadgen.py (no protobuf work per tick on
    the client, server latency from its histogram after a warm-up); ``run``/``drive``
    above stay for benchmarks/scaleout.py, whose target may be a proxy."""
    import loadgen as lg

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rooms", type=int, default=1000)
    ap.add_argument("--participants", type=int, default=8)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--out", help="append the result (markdown) to this file")
    a = ap.parse_args(argv)
    with lg.Server() as server:
        r = lg.drive_realtime(server, a.rooms, a.participants, a.minutes * 60)
    lines = [f"- {k}: {v}" for k, v in r.items()]
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, Python "
               f"{platform.python_version()}, {time.strftime('%Y-%m-%d')}")
    print("\n".join([f"soak on {machine}"] + lines))
    if a.out:
        with open(a.out, "a") as f:
            f.write(f"\n## Soak {a.rooms} rooms x {a.participants}, {a.minutes:g} min "
                    f"({machine}; light client, processing from the server's histogram)\n\n"
                    + "\n".join(lines) + "\n")
    ok = (r["server_errors"] == 0 and r["stream_errors"] == 0
          and r["answered"] == r["batches"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
