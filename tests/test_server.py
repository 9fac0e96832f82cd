"""The gRPC API against a real server on an ephemeral loopback port."""
import threading
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from service.api import speakerswitch_pb2 as pb

from conftest import level_tick, script_levels, switches

SCRIPT = [("a", 0, 2000), ("b", 2500, 5000), ("c", 5500, 8000)]


def requests(ticks, per_batch=10):
    for k in range(0, len(ticks), per_batch):
        yield pb.StreamRequest(batch_id=k // per_batch + 1, ticks=ticks[k:k + per_batch])


def test_stream_answers_each_batch_in_order_with_its_decisions(client):
    ticks = script_levels("room-1", SCRIPT, ["a", "b", "c"], 8000)
    responses = list(client.stream(requests(ticks)))
    assert [r.batch_id for r in responses] == list(range(1, len(ticks) // 10 + 1))
    events = [e for r in responses for e in r.events]
    assert [s for _, s in switches(events)] == ["a", "b", "c"]
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))


def test_a_bad_tick_is_reported_in_band_and_the_stream_goes_on(client):
    bad = level_tick("room-2", 0, {"a": 300})
    good = script_levels("room-2", [("a", 0, 1000)], ["a"], 1000)
    responses = list(client.stream(requests([bad] + good, per_batch=1)))
    rej = responses[0].rejections
    assert [(r.code, r.field) for r in rej] == [(grpc.StatusCode.INVALID_ARGUMENT.value[0],
                                                  "ticks[0].audio[0].level.level")]
    assert "outside 0..127" in rej[0].message
    assert len(responses) == 1 + len(good)
    assert switches([e for r in responses for e in r.events])[0][1] == "a"


def test_get_room_and_its_errors(client):
    list(client.stream(requests(script_levels("room-3", SCRIPT, ["a", "b", "c"], 3000))))
    state = client.get_room("room-3")
    assert state.speaker_id == "b" and state.audio_speaker_id == "b"
    assert state.timestamp_ms == 3000 and state.sequence > 0
    assert {p.participant_id for p in state.participants} == {"a", "b", "c"}
    assert state.config.profile == "meeting" and state.config.hold_ms == 700
    with pytest.raises(grpc.RpcError) as e:
        client.get_room("nope")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND and "nope" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        client.get_room("")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details().startswith("room_id")


def test_watch_starts_with_a_snapshot_then_follows_without_gap(client):
    ticks = script_levels("room-4", SCRIPT, ["a", "b", "c"], 8000)
    first = [e for r in client.stream(requests(ticks[:150])) for e in r.events]
    watch = client.watch("room-4")
    snap = next(watch)
    assert snap.HasField("snapshot") and snap.snapshot.sequence == first[-1].sequence
    assert snap.snapshot.speaker_id == "b"
    rest = [e for r in client.stream(requests(ticks[150:])) for e in r.events]
    seen = [next(watch) for _ in rest]
    watch.cancel()
    assert [str(e) for e in seen] == [str(e) for e in rest]
    assert seen[0].sequence == snap.snapshot.sequence + 1


def test_watch_errors_and_waiting_for_a_room(client):
    with pytest.raises(grpc.RpcError) as e:
        next(client.watch("not-yet"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as e:
        next(client.watch(""))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    watch = client.watch("later", wait_for_room=True)
    got = []
    reader = threading.Thread(target=lambda: got.append(next(watch)))
    reader.start()
    list(client.stream(requests(script_levels("later", [("a", 0, 600)], ["a"], 600))))
    reader.join(10)
    watch.cancel()
    assert got and got[0].HasField("snapshot") and got[0].room_id == "later"


def test_health_and_reflection(server, client):
    health = health_pb2_grpc.HealthStub(client.channel)
    for service in ("", "speakerswitch.v1.SpeakerSwitch"):
        assert health.Check(health_pb2.HealthCheckRequest(service=service)).status == \
            health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(client.channel)
    reply = next(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
        list_services="")])))
    names = {s.name for s in reply.list_services_response.service}
    assert {"speakerswitch.v1.SpeakerSwitch", "grpc.health.v1.Health"} <= names


def test_metrics_show_switch_latency_after_traffic(server, client):
    list(client.stream(requests(script_levels("room-5", SCRIPT, ["a", "b", "c"], 8000))))
    text = urllib.request.urlopen(
        f"http://127.0.0.1:{server.running.metrics_port}/metrics", timeout=10).read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith("speakerswitch_"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    assert values["speakerswitch_switch_delay_seconds_count"] == 3
    assert 0 < values["speakerswitch_switch_delay_seconds_sum"] < 3 * 0.5
    assert values["speakerswitch_processing_latency_seconds_count"] == 40  # batches
    assert values['speakerswitch_frames_total{kind="level"}'] == 400 * 3
    assert values['speakerswitch_switches_total{reason="DOMINANT_SPEAKER"}'] == 2
    assert values['speakerswitch_switches_total{reason="FIRST_SPEAKER"}'] == 1
    assert values["speakerswitch_rooms"] == 1 and values["speakerswitch_participants"] == 3
    assert "room-5" not in text                     # no room ids in labels


def test_idle_rooms_are_collected_by_the_server():
    from conftest import ServerThread, test_config
    from service.client import Client

    with ServerThread(test_config(idle_timeout_s=0.2)) as srv, Client(srv.target) as c:
        list(c.stream(requests(script_levels("brief", [("a", 0, 200)], ["a"], 200))))
        assert c.get_room("brief").room_id == "brief"
        import time
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                c.get_room("brief")
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.NOT_FOUND
                break
            time.sleep(0.05)
        else:
            pytest.fail("room was not collected")


def test_a_watcher_that_gives_up_waiting_leaves_nothing_behind(server, client):
    import time

    watch = client.watch("never", wait_for_room=True)
    reader = threading.Thread(target=lambda: pytest.raises(grpc.RpcError, next, watch))
    reader.start()
    deadline = time.monotonic() + 10
    while not server.call(lambda: ("", "never") in server.running.registry._room_waiters):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    watch.cancel()
    reader.join(10)
    while server.call(lambda: ("", "never") in server.running.registry._room_waiters):
        assert time.monotonic() < deadline, "waiter leaked"
        time.sleep(0.02)
