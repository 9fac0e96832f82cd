"""benchmarks/python_client.py (make bench-client): its verdict can say NO, and a short
run through a real server reports batches per tick, not per room, with both CPUs."""
from __future__ import annotations

import json
import pathlib
import sys

BENCH = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))
import python_client as bench  # noqa: E402

GOOD = dict(rooms=300, participants=6, seconds=10.0, packets_pushed=900_000,
            frames_processed=900_000, batches_per_s=50.0, pushes_per_s=90_000, late_ticks=0,
            late_packets=0, requests=500, unanswered=0, reconnects=0, rejections=0,
            switches=900, server_errors=0, rtt_p50_ms=2.0, rtt_p99_ms=9.0, proc_p50_ms=1.0,
            proc_p99_ms=5.0, client_cpu_share=0.25, server_cpu_share=0.07,
            other_cpu_share=0.01, client_cpu_per_media_s=0.25, server_cpu_per_media_s=0.07)


def test_the_verdict_says_no_when_anything_falls_behind():
    assert bench.held(GOOD)
    for change in (dict(late_packets=1), dict(frames_processed=899_999), dict(unanswered=2),
                   dict(rtt_p50_ms=41.0), dict(late_ticks=6), dict(server_errors=1),
                   dict(rejections=1)):
        assert not bench.held({**GOOD, **change}), change
    text = bench.markdown({**GOOD, "held": False}, "a machine")
    assert "| NO |" in text and "25% of a core" in text and "7% of a core" in text


def test_a_short_run_sends_a_request_per_tick_for_all_rooms(tmp_path):
    out = tmp_path / "client.json"
    bench.main(["--rooms", "12", "--participants", "3", "--seconds", "1",
                "--json", str(out)])
    r = json.loads(out.read_text())
    assert r["packets_pushed"] > 0 and r["packets_pushed"] % (12 * 3) == 0  # whole ticks
    # a message per room per tick would be 600/s: the server counted about one per tick
    assert 0 < r["batches_per_s"] <= 55, r
    assert r["client_cpu_share"] > 0 and r["server_cpu_share"] > 0
    assert r["client_cpu_per_media_s"] > 0 and r["server_cpu_per_media_s"] > 0
    assert r["frames_processed"] >= r["packets_pushed"] // 2 and r["reconnects"] == 0
