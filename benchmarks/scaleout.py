"""Scale-out figures: the proxy hop's added latency, rooms per replica with Redis, and the
failover time, on loopback (Redis + replicas + nginx from benchmarks/cluster.py).

    python benchmarks/scaleout.py [--seconds 10] [--steps 250,500,1000,1500,2000]
                                  [--failovers 3] [--out FILE]

1. Hop: one replica with Redis; the same real-time load (one batch per 20 ms tick carrying
   every room, compact levels) straight to the replica, then through nginx; and, as the
   baseline, a replica without Redis. The difference of round trips is the proxy's cost.
2. Rooms per replica: the ramp of benchmarks/load.py against a replica that publishes to
   Redis, until it falls behind real time.
3. Failover: three replicas, rooms streamed in real time through nginx in sharded streams;
   one replica is killed (SIGKILL) and we time, in wall time (= media time, the stream is
   real time), from the kill to the first answered batch of every shard it served.
Everything is started and stopped here; nothing is left running.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import platform
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from cluster import Cluster, missing_tools  # noqa: E402
from load import BACKLOG_GROWTH_MS  # noqa: E402
from soak import drive, run  # noqa: E402

from service.api import speakerswitch_pb2 as pb  # noqa: E402
from service.client import Client, shard_of  # noqa: E402


def kept_up(r: dict) -> bool:
    return (r["answered"] == r["batches"] and r["server_errors"] == 0 and r["rejections"] == 0
            and r["rtt_last_third_p50_ms"] <= r["rtt_first_third_p50_ms"] + BACKLOG_GROWTH_MS)


def row(label: str, r: dict) -> str:
    return (f"| {label} | {r['rooms']} x {r['participants']} | {r['rtt_p50_ms']:.2f} | "
            f"{r['rtt_p99_ms']:.2f} | {100 * r['server_cpu_share']:.0f}% | "
            f"{'yes' if kept_up(r) else 'no'} |")


def hop(seconds: float, loads: list[tuple[int, int]]) -> list[str]:
    out = []
    for rooms, n in loads:
        out.append(row("one replica, no Redis", run(rooms, n, seconds)))
        with tempfile.TemporaryDirectory() as wd, Cluster(pathlib.Path(wd), replicas=1) as c:
            rep = c.replicas[0]
            out.append(row("one replica + Redis, direct",
                           drive(rep.target, rep.proc.pid, rep.metrics_port, rooms, n, seconds)))
        # a fresh cluster: the rooms of the direct run would otherwise be warm here
        with tempfile.TemporaryDirectory() as wd, Cluster(pathlib.Path(wd), replicas=1) as c:
            rep = c.replicas[0]
            out.append(row("one replica + Redis, through nginx",
                           drive(c.proxy_target, rep.proc.pid, rep.metrics_port, rooms, n,
                                 seconds)))
        print("\n".join(out[-3:]), flush=True)
    return out


def ramp(seconds: float, steps: list[int], participants: int) -> tuple[list[str], int]:
    out, best = [], 0
    for rooms in steps:
        with tempfile.TemporaryDirectory() as wd, Cluster(pathlib.Path(wd), replicas=1) as c:
            rep = c.replicas[0]
            r = drive(rep.target, rep.proc.pid, rep.metrics_port, rooms, participants, seconds)
        out.append(row("one replica + Redis", r))
        print(out[-1], flush=True)
        if not kept_up(r):
            break
        best = rooms
    return out, best


def failover_once(rooms: int, participants: int, shards: int) -> tuple[float, int]:
    """Seconds from SIGKILL to the first answer on every shard the victim served."""
    roster = [f"p{i}" for i in range(participants)]
    tick_ms = 20
    with tempfile.TemporaryDirectory() as wd, Cluster(pathlib.Path(wd), replicas=3) as c, \
            Client(c.proxy_target) as client, client.sharded_session(shards) as s:
        ids = [f"room-{r}" for r in range(rooms)]
        loud = bytes([0x80 | 25] + [70] * (participants - 1))
        t0 = time.monotonic()
        killed_at = None
        victim_shards: set[int] = set()
        answered_after: dict[int, float] = {}
        k = 0
        while True:
            due = t0 + k * tick_ms / 1000
            time.sleep(max(0.0, due - time.monotonic()))
            ticks = []
            for rid in ids:
                t = pb.RoomTick(room_id=rid, timestamp_ms=k * tick_ms, duration_ms=tick_ms)
                t.levels.levels = loud
                if k == 0:
                    t.levels.roster.extend(roster)
                ticks.append(t)
            if k == 150:  # 3 s in: kill the replica with the most rooms
                owners = c.owners()
                victim = max(range(3), key=owners.__getitem__)
                before = {sh: link.reconnects for sh, link in s.sessions.items()}
                c.replicas[victim].kill()
                killed_at = time.monotonic()
            by_shard: dict[int, list[pb.RoomTick]] = {}
            for t in ticks:
                by_shard.setdefault(shard_of(t.room_id, shards), []).append(t)
            for shard, group in by_shard.items():
                s.send_ticks(*group)
                if killed_at is not None and shard not in answered_after:
                    if s.sessions[shard].reconnects != before.get(shard, 0):  # reconnected
                        victim_shards.add(shard)
                    answered_after[shard] = time.monotonic() - killed_at
            k += 1
            if killed_at is not None and time.monotonic() - killed_at > 3:
                break
        worst = max(answered_after[sh] for sh in victim_shards) if victim_shards else 0.0
        return worst, len(victim_shards)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--steps", default="250,500,1000,1500,2000")
    ap.add_argument("--participants", type=int, default=10)
    ap.add_argument("--failovers", type=int, default=3)
    ap.add_argument("--out", help="write the results (markdown) to this file")
    a = ap.parse_args(argv)
    missing = missing_tools()
    if missing:
        print(f"needs {' and '.join(missing)} (Debian packages)", file=sys.stderr)
        return 2
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, Python "
               f"{platform.python_version()}, {time.strftime('%Y-%m-%d')}")
    head = "| setup | rooms x participants | rtt p50 ms | rtt p99 ms | server CPU | real time |"
    sep = "|---|---|---|---|---|---|"
    hop_rows = hop(a.seconds, [(50, 6), (1000, 10)])
    ramp_rows, best = ramp(a.seconds, [int(x) for x in a.steps.split(",")], a.participants)
    fails = [failover_once(100, 6, 16) for _ in range(a.failovers)]
    for worst, n in fails:
        print(f"failover: {n} shards moved, all answered again after {1000 * worst:.0f} ms",
              flush=True)
    text = "\n".join([
        f"# Scale-out figures ({machine})", "",
        "Generated by `make bench-scaleout` (benchmarks/scaleout.py): Redis, replicas and "
        "nginx (deploy/nginx/nginx.conf) on loopback, load from a separate process.", "",
        "## The proxy hop and Redis", "", head, sep, *hop_rows, "",
        "## Rooms per replica (publishing to Redis)", "", head, sep, *ramp_rows, "",
        f"Sustained: {best} rooms x {a.participants} = {best * a.participants} participants "
        "per replica in real time.", "",
        "## Failover (SIGKILL of the replica with most rooms; 100 rooms x 6, 16 shards)", "",
        "| run | shards moved | kill -> every moved shard answered again |", "|---|---|---|",
        *[f"| {i + 1} | {n} | {1000 * w:.0f} ms |" for i, (w, n) in enumerate(fails)], ""])
    print(text)
    if a.out:
        pathlib.Path(a.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
