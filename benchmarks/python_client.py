"""A media server's pattern through the Python client (clients/python), in real time.

    make bench-client     (= python benchmarks/python_client.py --out benchmarks/CLIENT.md)
    python benchmarks/python_client.py [--rooms 300] [--participants 6] [--seconds 10]

Every 20 ms of wall time, for every room and participant, one ``push_level`` call: what a
media server does per received audio packet (RFC 6464 level and V bit). The client groups
them and sends one request per tick for all rooms. One server (``speakerswitch serve``,
its own process) on loopback. Reported over the measured seconds (after a warm-up):

- whether it is held in real time: the pushing loop never a tick late, every pushed
  packet counted by the server (its frames counter), the server's batches per second
  (~50: one per tick, not one per room), round trip p50/p99 (queued -> answered);
- the client's CPU (this process: the pushing loop, batching, protobuf, gRPC threads) and
  the server's, each as a share of one core; what else ran on the machine meanwhile.

In each room one participant talks at a time (a new one every 3 s, rooms out of phase),
the others sit at background levels without the V bit, so switches happen throughout.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "clients" / "python"))
import loadgen as lg  # noqa: E402
from load import machine  # noqa: E402
from speakerswitch_client import SpeakerSwitchClient  # noqa: E402

TICK_S = 0.02
WARMUP_S = 2.0


TALK_TICKS = 150
"""A new talker every 3 s in each room."""


def talker(room: int, tick: int, participants: int) -> int:
    return (tick // TALK_TICKS + room) % participants


def levels(room: int, participant: int, tick: int) -> tuple[int, int]:
    """-dBov of one packet if it talks (22-28, with the V bit) and if it does not (62-74,
    without): a few dB of variation from tick to tick."""
    jitter = (tick + participant * 13 + room) % 7
    return 22 + jitter, 62 + 2 * jitter


async def drive(target: str, rooms: int, participants: int, seconds: float,
                server: lg.Server, shards: int = 1) -> dict:
    ids = [f"room-{r:04d}" for r in range(rooms)]
    names = [f"p{k}" for k in range(participants)]
    # precomputed (the benchmark measures the client, not our synthesis of levels): per
    # room and tick phase, each participant's level talking and silent
    table = [[[levels(r, k, t) for k in range(participants)] for t in range(7)]
             for r in range(rooms)]
    switches = 0

    def count(_room, _switch) -> None:
        nonlocal switches
        switches += 1

    async with SpeakerSwitchClient(target, shards=shards) as client:
        client.on_switch = count
        loop = asyncio.get_running_loop()
        start = loop.time()
        late_ticks, tick, measuring = 0, 0, None
        total = WARMUP_S + seconds
        while tick * TICK_S < total:
            due = start + tick * TICK_S
            now = loop.time()
            if now < due:
                await asyncio.sleep(due - now)
            elif now - due > TICK_S and measuring is not None:
                late_ticks += 1  # the pushing loop itself fell a tick behind
            if measuring is None and tick * TICK_S >= WARMUP_S:
                hist = lg.HistogramWindow(server.metrics_ports)
                hist.start()
                cpu = lg.CpuWindow(server.pids)
                stats0 = client.stats()
                rtt0 = {k: len(link.rtt_s) for k, link in client._links.items()}
                switches0 = switches
                measuring = tick
            t_ms, phase = tick * 20, tick % 7
            for r, room in enumerate(ids):
                packets, talking = table[r][phase], talker(r, tick, participants)
                for k, name in enumerate(names):
                    talk, silent = packets[k]
                    if k == talking:
                        await client.push_level(room, name, talk, True, t_ms)
                    else:
                        await client.push_level(room, name, silent, False, t_ms)
            tick += 1
        shares = cpu.shares()
        await asyncio.sleep(0.2)  # the last tick's answer
        hist.stop()
        stats = client.stats()
        # round trips of the measured ticks only (the warm-up's first request creates
        # every room)
        rtts = sorted(r for k, link in client._links.items()
                      for r in list(link.rtt_s)[rtt0.get(k, 0):])
    measured_ticks = tick - measuring
    wall = shares["wall_s"]
    return dict(
        rooms=rooms, participants=participants, shards=shards, seconds=round(wall, 2),
        packets_pushed=measured_ticks * rooms * participants,
        frames_processed=hist.summary()["frames"],
        batches_per_s=round(hist.summary()["proc_batches"] / (measured_ticks * TICK_S), 1),
        pushes_per_s=round(measured_ticks * rooms * participants / wall),
        late_ticks=late_ticks, late_packets=stats["late_packets"],
        requests=stats["requests"] - stats0["requests"],
        unanswered=stats["requests"] - stats["responses"],
        reconnects=stats["reconnects"], rejections=stats["rejections"],
        switches=switches - switches0, server_errors=int(hist.errors),
        rtt_p50_ms=round(rtts[len(rtts) // 2] * 1000, 2),
        rtt_p99_ms=round(rtts[min(len(rtts) - 1, int(0.99 * len(rtts)))] * 1000, 2),
        proc_p50_ms=hist.summary()["proc_p50_ms"], proc_p99_ms=hist.summary()["proc_p99_ms"],
        client_cpu_share=shares["client_cpu_share"],
        server_cpu_share=shares["server_cpu_share"],
        # CPU seconds per second of media pushed: what each needs to hold real time, also
        # when a busy machine starves them and the run stretches past real time
        client_cpu_per_media_s=round(shares["client_cpu_share"] * wall
                                     / (measured_ticks * TICK_S), 3),
        server_cpu_per_media_s=round(sum(shares["worker_cpu_s"]) / (measured_ticks * TICK_S),
                                     3),
        other_cpu_share=shares["other_cpu_share"])


def held(r: dict) -> bool:
    """Real time: every packet pushed on time (a pushing tick more than a tick late at most
    once in a hundred: a shared machine's scheduling), processed, nothing left waiting, no
    error, and the median round trip within two ticks (as load.py's REALTIME_RTT_P50_MS)."""
    ticks = r["seconds"] / TICK_S
    return (r["late_ticks"] <= 0.01 * ticks and r["late_packets"] == 0
            and r["frames_processed"] >= r["packets_pushed"] and r["unanswered"] == 0
            and r["server_errors"] == 0 and r["rejections"] == 0
            and r["rtt_p50_ms"] <= 2 * TICK_S * 1000)


def markdown(r: dict, machine_line: str) -> str:
    return "\n".join([
        "# The Python client in a media server's pattern", "",
        f"Machine: {machine_line}.", "",
        f"{r['rooms']} rooms x {r['participants']} participants"
        + (f" on {r['shards']} streams (shards)" if r.get("shards", 1) > 1 else "")
        + ", a `push_level` per packet "
        f"every 20 ms ({r['pushes_per_s']:,} calls/s), {r['seconds']} s measured after a "
        f"{WARMUP_S:g} s warm-up; `python benchmarks/python_client.py`.", "",
        "| held in real time | client CPU | server CPU | other jobs | batches/s | "
        "round trip p50 / p99 | server processing p50 / p99 | switches |",
        "|---|---|---|---|---|---|---|---|",
        f"| {'yes' if r['held'] else 'NO'} | {r['client_cpu_share']:.0%} of a core | "
        f"{r['server_cpu_share']:.0%} of a core | {r['other_cpu_share']:.0%} | "
        f"{r['batches_per_s']} | {r['rtt_p50_ms']} / {r['rtt_p99_ms']} ms | "
        f"{r['proc_p50_ms']} / {r['proc_p99_ms']} ms | {r['switches']} |", "",
        f"CPU per second of media pushed (what holding real time needs, whatever the "
        f"machine's load): client {r['client_cpu_per_media_s']:.0%} of a core, server "
        f"{r['server_cpu_per_media_s']:.0%}.", "",
        f"Packets pushed {r['packets_pushed']:,}, processed by the server "
        f"{r['frames_processed']:,}; late pushing ticks {r['late_ticks']}, late packets "
        f"{r['late_packets']}, unanswered requests {r['unanswered']}, reconnects "
        f"{r['reconnects']}, refusals {r['rejections']}, server errors "
        f"{r['server_errors']}.", ""])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rooms", type=int, default=300)
    ap.add_argument("--participants", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--shards", type=int, default=1,
                    help="streams by room shard (as for a room-affine proxy), sent together")
    ap.add_argument("--out", help="write the markdown here")
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args(argv)
    machine_line = machine()
    with lg.Server() as server:
        r = asyncio.run(drive(server.target, a.rooms, a.participants, a.seconds, server,
                              a.shards))
    r["held"] = held(r)
    r["machine"] = machine_line
    r["load_average_end"] = round(os.getloadavg()[0], 2)
    text = markdown(r, machine_line)
    print(text)
    print(json.dumps(r))
    if a.out:
        pathlib.Path(a.out).write_text(text)
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(r, indent=1) + "\n")
    return 0 if r["held"] else 1


if __name__ == "__main__":
    sys.exit(main())
