"""Servers compared under the stream-per-room load, in interleaved runs (ABAB...).

    python benchmarks/per_room_ab.py [--rounds 3] [--seconds 4] [--rooms 50] VARIANT...

A variant is a server and its flags in one argument: ``"echo"`` (benchmarks/echo_server.py,
the framework's floor, with its flags: ``"echo --loop uvloop"``, ``"echo --option
grpc.http2.bdp_probe=0"``), ``"serve"`` (``speakerswitch serve``, with its flags);
``NAME=VALUE`` words with an upper-case name are the server's environment (``"echo
GRPC_POLL_STRATEGY=poll"``), and ``drain_interval_s=SECONDS`` runs ``serve`` with
``group_commit.DRAIN_INTERVAL_S`` set (``0``: each drain on the next loop turn, as before
it existed).

The load is ``make bench-load``'s small deployment (benchmarks/loadgen.py
``drive_per_room``): ``--rooms`` rooms x 10, a stream each, a message per room per 20 ms
tick. On a machine shared with other work, one run's CPU says little (other jobs' load
changes it by tens of points, and a starved server steps more messages per wake-up and
uses *less* CPU per message); runs alternate A B ... then ... B A, and the summary gives
each variant's median over all its runs and over the runs that kept up (rtt p50 <= 4 ms).
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import loadgen as lg  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
PER_ROOM_ENV = {"SPEAKERSWITCH_MAX_STREAMS_PER_TENANT": "1000"}
"""A stream per room: more streams than the default per-tenant limit (64) at 100 rooms."""
KEPT_UP_RTT_P50_MS = 4.0
"""A run whose median round trip is over this fell behind (a starved server)."""
SERVE_WITH_INTERVAL = (
    "-c", "import sys; from service.runtime import group_commit; "
    "group_commit.DRAIN_INTERVAL_S = float(sys.argv.pop(1)); "
    "from service.cli import main; sys.exit(main(sys.argv[1:]))")


def server_for(variant: str) -> lg.Server:
    """The ``loadgen.Server`` a variant names (see the module's docstring)."""
    words = shlex.split(variant)
    if not words or words[0] not in ("echo", "serve"):
        raise ValueError(f"{variant!r}: starts with echo or serve")
    env = {"PYTHONPATH": ROOT, **PER_ROOM_ENV}
    flags, interval = [], None
    for w in words[1:]:
        name, sep, value = w.partition("=")
        if sep and name == "drain_interval_s":
            interval = value
        elif sep and re.fullmatch(r"[A-Z][A-Z0-9_]*", name):  # not a flag's value
            env[name] = value
        else:
            flags.append(w)
    if words[0] == "echo":
        if interval is not None:
            raise ValueError(f"{variant!r}: drain_interval_s is serve's")
        command = (os.path.join(ROOT, "benchmarks", "echo_server.py"), *flags)
        return lg.Server(command=command, env=env)
    if interval is not None:
        float(interval)  # a number, or the server would not start
        return lg.Server(command=(*SERVE_WITH_INTERVAL, interval, "serve"), env=env,
                         extra_args=tuple(flags))
    return lg.Server(env=env, extra_args=tuple(flags))


def run(variant: str, rooms: int, seconds: float) -> dict:
    with server_for(variant) as server:
        r = lg.drive_per_room(server, rooms, 10, seconds, n_streams=rooms)
        r["drains"] = lg.counter(lg.scrape(server.metrics_port), "speakerswitch_drains_total")
    return r


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("variants", nargs="+")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--rooms", type=int, default=50)
    a = ap.parse_args(argv)
    for v in a.variants:
        server_for(v)  # refuse a bad variant before the first run
    runs: dict[str, list[dict]] = {v: [] for v in a.variants}
    for k in range(a.rounds):
        for v in a.variants if k % 2 == 0 else a.variants[::-1]:
            load = os.getloadavg()[0]
            r = run(v, a.rooms, a.seconds)
            runs[v].append(r)
            print(f"round {k} {v!r}: server {100 * r['server_cpu_share']:.0f}%  client "
                  f"{100 * r['client_cpu_share']:.0f}%  other jobs "
                  f"{100 * r['other_cpu_share']:.0f}%  processing p99 {r['proc_p99_ms']} ms  "
                  f"rtt p50 {r['rtt_p50_ms']} ms  answered {r['answered']}/{r['messages']}  "
                  f"drains {r['drains']:g}  load {load:.2f}", flush=True)
    for v, rs in runs.items():
        cpu = [100 * r["server_cpu_share"] for r in rs]
        kept = [c for c, r in zip(cpu, rs) if r["rtt_p50_ms"] <= KEPT_UP_RTT_P50_MS]
        print(f"{v!r}: server CPU median {statistics.median(cpu):.0f}% "
              f"{[round(c) for c in cpu]}; kept up {len(kept)}/{len(rs)}"
              + (f", median {statistics.median(kept):.0f}%" if kept else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
