"""Load generator: ramp rooms x participants through a real server until it falls behind.

    python benchmarks/load.py [--participants 10] [--steps 250,500,1000,1500,2000,3000]
                              [--seconds 15] [--out FILE]

Each step starts ``speakerswitch serve`` in its own process on loopback and streams, in
real time, one batch per 20 ms tick carrying every room (levels in the compact roster
form), like one media server hosting that many rooms; it reports the server's CPU share,
the round-trip latency p50/p99/max, RSS, and whether the server kept up (every batch
answered, and the latency of the last seconds no worse than the first: no growing
backlog). The sustained maximum is the largest step that kept up. Bounded in time; the
server processes are stopped at the end of each step.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from soak import run  # noqa: E402  (the same real-time driver as the soak)

BACKLOG_GROWTH_MS = 20.0
"""A step keeps up when every batch is answered and the median round trip of its last third
is within this of its first third's: a server falling behind real time queues batches, and
its round trip grows without bound."""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--participants", type=int, default=10)
    ap.add_argument("--steps", default="250,500,1000,1500,2000,3000")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--out", help="append the results (markdown) to this file")
    a = ap.parse_args(argv)
    rows, best = [], None
    for rooms in (int(x) for x in a.steps.split(",")):
        r = run(rooms, a.participants, a.seconds)
        ok = (r["answered"] == r["batches"] and r["server_errors"] == 0 and r["rejections"] == 0
              and r["rtt_last_third_p50_ms"] <= r["rtt_first_third_p50_ms"] + BACKLOG_GROWTH_MS)
        rows.append((rooms, r, ok))
        print(f"{rooms:5d} rooms x {a.participants} = {rooms * a.participants:6d} participants: "
              f"cpu {100 * r['server_cpu_share']:5.1f}%  rtt p50 {r['rtt_p50_ms']:7.2f} ms  "
              f"p99 {r['rtt_p99_ms']:8.2f} ms  max {r['rtt_max_ms']:8.2f} ms  "
              f"rss {r['rss_mib']['end']:.0f} MiB  {'keeps up' if ok else 'FALLS BEHIND'}",
              flush=True)
        if ok:
            best = rooms
        else:
            break
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
               f", {time.strftime('%Y-%m-%d')}")
    summary = (f"sustained: {best or 0} rooms x {a.participants} = "
               f"{(best or 0) * a.participants} participants in real time ({machine})")
    print(summary)
    if a.out:
        with open(a.out, "a") as f:
            f.write(f"\n## Load ramp ({machine})\n\n| rooms | participants | server CPU | "
                    "rtt p50 ms | rtt p99 ms | rtt max ms | RSS MiB | keeps up |\n"
                    "|---|---|---|---|---|---|---|---|\n")
            for rooms, r, ok in rows:
                f.write(f"| {rooms} | {rooms * a.participants} | "
                        f"{100 * r['server_cpu_share']:.0f}% | {r['rtt_p50_ms']} | "
                        f"{r['rtt_p99_ms']} | {r['rtt_max_ms']} | {r['rss_mib']['end']} | "
                        f"{'yes' if ok else 'no'} |\n")
            f.write(f"\n{summary}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
