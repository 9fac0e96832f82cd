"""No request holds the server: whole-batch budgets refused before anything is applied, a
per-tick event limit, responses that fit the send limit, and a drain that lets other calls
in while it works through a huge batch."""
import threading
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dsp import engine as engine_module
from service.api import speakerswitch_pb2 as pb
from service.client import Client
from service.runtime.config import ServiceConfig
from service.runtime.rooms import RoomRegistry

from conftest import ServerThread, level_tick, test_config

INVALID = grpc.StatusCode.INVALID_ARGUMENT.value[0]
ET = pb.ParticipantEventType


def test_a_batch_over_the_entry_budget_is_refused_whole_before_anything_is_applied():
    reg = RoomRegistry(ServiceConfig(max_entries_per_batch=1000))
    ok = [level_tick("small", 20 * k, {"a": 30, "b": 70}) for k in range(10)]
    big = [level_tick("big", 20 * k, {f"p{i}": 70 for i in range(40)}) for k in range(30)]
    r_ok = reg.process(pb.StreamRequest(ticks=ok))
    r_big = reg.process(pb.StreamRequest(ticks=big))
    assert not r_ok.rejections
    assert [(r.code, r.field) for r in r_big.rejections] == [(INVALID, "ticks")]
    assert "1200 entries" in r_big.rejections[0].message
    assert "max_entries_per_batch=1000" in r_big.rejections[0].message
    assert reg.room_state("big") is None and not r_big.events


def test_a_tick_over_the_event_limit_is_refused_and_its_batch_goes_on():
    reg = RoomRegistry(ServiceConfig(max_events_per_tick=8))
    crowded = level_tick("r", 0, {"a": 30})
    for i in range(9):
        crowded.events.add(participant_id=f"p{i}", type=ET.PARTICIPANT_EVENT_TYPE_JOIN)
    fine = level_tick("r", 20, {"a": 30})
    resp = reg.process(pb.StreamRequest(ticks=[crowded, fine]))
    assert [(r.tick_index, r.field) for r in resp.rejections] == [(0, "ticks[0].events")]
    assert "9 events exceed max_events_per_tick=8" in resp.rejections[0].message
    assert [p.participant_id for p in reg.room_state("r").participants] == ["a"]


def test_the_largest_accepted_batch_of_events_answers_within_the_send_limit():
    """Pins flipping on every event, as many as the budgets allow, with the longest ids and
    a full forwarding set: the response fits max_message_bytes, with the events that did not
    fit counted (they are in the room's history, as Watch gives them)."""
    cfg = ServiceConfig(max_message_bytes=4 * 1024 * 1024, max_entries_per_batch=50_000,
                        watch_history_events=100_000)
    reg = RoomRegistry(cfg)
    room = "r" * 128
    members = [f"{i:04d}".rjust(128, "p") for i in range(10)]
    reg.process(pb.StreamRequest(ticks=[level_tick(room, 0, {p: 70 for p in members},
                                                   config=pb.RoomConfig(forwarding_size=10))]))
    ticks, n_events, t = [], 0, 20
    while n_events + cfg.max_events_per_tick + 1 <= cfg.max_entries_per_batch:
        tick = pb.RoomTick(room_id=room, timestamp_ms=t, duration_ms=20)
        tick.audio.add(participant_id=members[0], level=pb.AudioLevel(level=70))
        for j in range(cfg.max_events_per_tick):
            tick.events.add(participant_id=members[j % len(members)],
                            type=ET.PARTICIPANT_EVENT_TYPE_PIN if j % 2 == 0
                            else ET.PARTICIPANT_EVENT_TYPE_UNPIN)
        ticks.append(tick)
        n_events += cfg.max_events_per_tick + 1
        t += 20
    before = reg.room_state(room).sequence
    resp = reg.process(pb.StreamRequest(ticks=ticks))
    assert not resp.rejections
    assert resp.ByteSize() <= cfg.max_message_bytes
    assert resp.events_omitted > 0 and len(resp.events) > 1000
    # nothing was lost: the response's events and the omitted ones are one numbered run
    assert [e.sequence for e in resp.events] == list(range(before + 1,
                                                          before + 1 + len(resp.events)))
    assert reg.room_state(room).sequence == before + len(resp.events) + resp.events_omitted


def test_a_huge_batch_does_not_hold_other_calls(monkeypatch):
    """While one stream sends an 8000-tick batch of one room (thousands of engine steps,
    seconds of work), another caller's GetRoom and the health check keep answering.
    On the engine's numpy path: the compiled kernel (dsp/_kernel.c) steps through this
    batch in less time than it takes to decode, which is not sliced (a bigger batch
    only makes the decode, and the wait for it, longer)."""
    monkeypatch.setattr(engine_module, "KERNEL", "numpy")
    cfg = test_config(max_batches_per_s=1000)
    with ServerThread(cfg) as server, Client(server.target) as c:
        c.wait_ready()
        with c.session() as s:
            s.send_ticks(level_tick("other", 0, {"x": 30}))
        huge = pb.StreamRequest(ticks=[level_tick("huge", 20 * k, {f"p{i}": 30 + i
                                                                   for i in range(5)})
                                       for k in range(8000)])
        took: dict[str, float] = {}

        def send_huge() -> None:
            t0 = time.perf_counter()
            with c.session() as s:
                resp = s.send(huge)
            took["huge"] = time.perf_counter() - t0
            took["rejections"] = len(resp.rejections)

        sender = threading.Thread(target=send_huge)
        sender.start()
        time.sleep(0.3)  # the batch is being worked through
        health = health_pb2_grpc.HealthStub(c.channel)
        waits = []
        while sender.is_alive() and len(waits) < 400:
            t0 = time.perf_counter()
            assert c.get_room("other").room_id == "other"
            health.Check(health_pb2.HealthCheckRequest(), timeout=10)
            waits.append(time.perf_counter() - t0)
        sender.join(120)
    assert took["rejections"] == 0
    assert len(waits) >= 5, f"the batch took {took['huge']:.2f} s: too short to measure"
    # unsliced, a call waits for the whole batch (seconds); sliced, for one slice
    assert max(waits) < min(1.0, took["huge"] / 3), (max(waits), took["huge"])


def test_rejections_quote_at_most_64_bytes_of_client_input():
    reg = RoomRegistry(ServiceConfig())
    tick = level_tick("r", 0, {"a": 30}, config=pb.RoomConfig(profile="x" * 5000))
    outside = level_tick("y" * 100, 0, {"a": 30})
    resp = reg.process(pb.StreamRequest(ticks=[tick]))
    resp2 = reg.process(pb.StreamRequest(ticks=[outside]), room_allowed=lambda r: False)
    for r in [*resp.rejections, *resp2.rejections]:
        assert len(r.message) < 200 and "bytes)" in r.message, r.message
