"""The load client's wire templates and the latency quantiles it reads from the server's
histogram: a wrong byte here would make every load figure measure something else."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

from service.api import speakerswitch_pb2 as pb
from service.runtime.metrics import PROCESSING_BUCKETS_S

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import loadgen as lg  # noqa: E402


def built(first_room: int, n_rooms: int, n: int, k: int, batch_id: int) -> pb.StreamRequest:
    req = pb.StreamRequest(batch_id=batch_id)
    for r, lv in zip(range(first_room, first_room + n_rooms),
                     lg.levels_for(k, n_rooms, n, first_room)):
        t = req.ticks.add(room_id=lg.room_id(r), timestamp_ms=lg.ts_ms(k), duration_ms=20)
        t.levels.levels = lv.tobytes()
    return req


@pytest.mark.parametrize("k,batch_id", [(1, 2), (2, 3), (127, 128), (500, 300_000)])
def test_encoder_is_byte_identical_to_protobuf(k, batch_id):
    enc = lg.TickEncoder(7, 5, 10)
    assert enc.batch(batch_id, k) == built(7, 5, 10, k, batch_id).SerializeToString()


def test_encoder_per_room_messages():
    enc = lg.TickEncoder(0, 3, 6)
    msgs = enc.per_room(40, 9)
    whole = built(0, 3, 6, 9, 1)
    for i, raw in enumerate(msgs):
        req = pb.StreamRequest.FromString(raw)
        assert req.batch_id == 40 + i and list(req.ticks) == [whole.ticks[i]]


def test_roster_batch_creates_the_rooms_the_template_then_feeds():
    from service.runtime.rooms import RoomRegistry
    reg = RoomRegistry()
    enc = lg.TickEncoder(0, 4, 10)
    first = reg.process(pb.StreamRequest.FromString(enc.roster_batch(1)))
    assert not first.rejections and len(reg.rooms) == 4
    for k in range(1, 30):
        resp = reg.process(pb.StreamRequest.FromString(enc.batch(k + 1, k)))
        assert not resp.rejections and resp.batch_id == k + 1
        assert lg.response_batch_id(resp.SerializeToString()) == k + 1


def test_timestamps_stay_three_byte_varints_and_refuse_beyond():
    enc = lg.TickEncoder(0, 1, 2)
    last = (lg.TS_MAX_MS - lg.TS0_MS) // lg.TICK_MS
    assert pb.StreamRequest.FromString(enc.batch(1, last)).ticks[0].timestamp_ms == \
        lg.ts_ms(last)
    with pytest.raises(AssertionError):
        enc.batch(1, last + 1)


def test_quantile_from_cumulative_buckets():
    # 100 observations: 50 in (0, 1 ms], 49 in (1, 2], 1 in (2, 5]
    buckets = {0.001: 50, 0.002: 99, 0.005: 100, float("inf"): 100}
    est, bound = lg.quantile(buckets, 0.5)
    assert bound == 0.001 and est == pytest.approx(0.001)
    est, bound = lg.quantile(buckets, 0.99)
    assert bound == 0.002 and est == pytest.approx(0.002)
    est, bound = lg.quantile(buckets, 0.995)
    assert bound == 0.005 and 0.002 < est < 0.005
    assert all(math.isnan(x) for x in lg.quantile({float("inf"): 0}, 0.5))  # no data


def test_histogram_and_counter_parse_prometheus_text():
    text = ('speakerswitch_processing_latency_seconds_bucket{le="0.001"} 3.0\n'
            'speakerswitch_processing_latency_seconds_bucket{le="+Inf"} 4.0\n'
            'speakerswitch_errors_total{code="INTERNAL"} 1.0\n'
            'speakerswitch_errors_total{code="NOT_FOUND"} 2.0\n'
            'speakerswitch_streams 2.0\n')
    assert lg.histogram(text) == {0.001: 3.0, float("inf"): 4.0}
    assert lg.counter(text, "speakerswitch_errors_total") == 3.0
    assert lg.counter(text, "speakerswitch_streams") == 2.0


def test_processing_buckets_resolve_the_targets():
    """The load figures read p99 from these buckets: steps of at most 1 ms from 1 to
    10 ms and 2 ms to 20 ms, a 2 ms bound exactly, and the earlier buckets kept (the
    dashboards and alerts query them)."""
    b = PROCESSING_BUCKETS_S
    assert list(b) == sorted(b)
    assert {5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25,
            1.0} <= set(b)
    assert 2e-3 in b and 1e-2 in b
    for lo, hi in zip(b, b[1:]):
        if 1e-3 <= lo < 1e-2:
            assert hi - lo <= 1e-3 + 1e-12
        elif 1e-2 <= lo < 2e-2:
            assert hi - lo <= 2e-3 + 1e-12


def test_the_small_deployments_summary_can_be_written_as_json(monkeypatch):
    """load.json once came out truncated: the summary listed itself among its steps."""
    import contextlib
    import json

    import load

    figures = {"answered": 10, "messages": 10, "server_errors": 0, "rtt_first_third_p50_ms": 1,
               "rtt_last_third_p50_ms": 1, "proc_p50_ms": 1, "proc_p99_ms": 2,
               "proc_p99_le_ms": 2, "rtt_p50_ms": 1, "rtt_p99_ms": 2, "server_cpu_share": 0.4,
               "client_cpu_share": 0.3, "other_cpu_share": 0.0}
    monkeypatch.setattr(lg, "Server", lambda **kw: contextlib.nullcontext(None))
    monkeypatch.setattr(lg, "drive_per_room", lambda server, rooms, *a, **kw: dict(
        figures, rooms=rooms, participants=10))
    result = load.small(1.0, [50, 100])
    assert [r["rooms"] for r in result["steps"]] == [50, 100]
    assert json.loads(json.dumps(result))["sustained_rooms"] == 100


def test_a_standing_queue_is_not_real_time(monkeypatch):
    """A saturated client that sends late keeps the round trip steady but hundreds of ms
    long: that step does not count as sustained."""
    import contextlib

    import load

    def figures(rooms):
        late = rooms > 50
        return {"answered": 10, "messages": 10, "server_errors": 0,
                "rtt_first_third_p50_ms": 280 if late else 1,
                "rtt_last_third_p50_ms": 280 if late else 1, "rtt_p50_ms": 280 if late else 1,
                "proc_p50_ms": 1, "proc_p99_ms": 2, "proc_p99_le_ms": 2, "rtt_p99_ms": 300,
                "server_cpu_share": 0.4, "client_cpu_share": 0.9, "other_cpu_share": 0.0,
                "rooms": rooms, "participants": 10}
    monkeypatch.setattr(lg, "Server", lambda **kw: contextlib.nullcontext(None))
    monkeypatch.setattr(lg, "drive_per_room", lambda server, rooms, *a, **kw: figures(rooms))
    result = load.small(1.0, [50, 100])
    assert [r["keeps_up"] for r in result["steps"]] == [True, False]
    assert result["sustained_rooms"] == 50
