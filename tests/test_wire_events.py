"""service/runtime/_wire.c writes the engine's events as the protobuf messages
``events.convert`` builds (the reference), numbered as ``events.emit`` numbers them.

The registry merges those bytes into the response of a room that no watcher needs the
messages of; here the writer against the messages on hand-made events at the edges of
every field (empty lists, unknown and negative slots, floats a float32 rounds, numpy
scalars, every switch reason), and the registry with the writer on and off on a long
conversation of many rooms, some of them watched, with metrics.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from dsp import events as ev
from service.api import speakerswitch_pb2 as pb
from service.runtime import wire
from service.runtime.metrics import Metrics
from service.runtime.rooms import Batch, RoomRegistry, events
from service.runtime.rooms.model import Room

pytestmark = pytest.mark.skipif(wire._wire is None,
                                reason="service/runtime/_wire.c is not built here")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def _room() -> Room:
    room = Room("salle-é", 3, pb.RoomConfig(), sequence=41)
    room.names.update({0: "alice", 1: "bob", 2: "", 7: "名前"})
    return room


EDGE_EVENTS = [
    ev.SpeakingChange(3, 100, 0, True),
    ev.SpeakingChange(3, 100, 9, False),            # a slot the room does not name
    ev.SpeakingChange(3, 0, -1, np.bool_(True)),
    ev.FloorChange(3, 120, 1, 0, True, 0.1, 80),
    ev.FloorChange(3, 120, -1, -1, False, 0.0, 0),  # nobody: every field at its default
    ev.FloorChange(3, 2**53, np.int64(7), 1, np.bool_(False), np.float32(3.4e38), -5),
    ev.ActiveSpeakersUpdate(3, 140, (0, 1, 9, -1), (-30.25, -127.0, 0.0, -0.1),
                            (True, False, np.bool_(True), False), (0.5, 1e-46, 1.0, 1 / 3)),
    ev.ActiveSpeakersUpdate(3, 140, (), (), (), ()),  # no speaker: no event field at all
    ev.ActiveSpeakersUpdate(3, 140, (0, 1), (-20.0,), (True, True), (0.1, 0.2)),  # zip
    ev.PresentationChange(3, 160, 7, -1),
    ev.PresentationChange(3, 160, -1, 2),
    ev.ForwardingChange(3, 180, (0, 7, 9, -1)),
    ev.ForwardingChange(3, 180, ()),                 # empty: still set
    ev.ForwardingChange(3, 180, np.array([1, 0])),
] + [ev.SwitchDecision(3, 200 + k, 0, 1, reason, 0.1 * k, 1 if k % 2 else -1, 150 - 400 * k,
                       thumbnail=bool(k % 2))
     for k, reason in enumerate(name[len("SWITCH_REASON_"):] for name in pb.SwitchReason.keys())]


def _by_messages(room: Room, evs: list, metrics=None) -> bytes:
    resp = pb.StreamResponse(batch_id=5)
    msgs: list[pb.RoomEvent] = []
    events.convert(room, evs, msgs)
    events.emit(room, msgs, resp, metrics)
    return resp.SerializeToString()


def _by_bytes(room: Room, evs: list, metrics=None) -> bytes:
    resp = pb.StreamResponse(batch_id=5)
    out = bytearray()
    assert events.encode(room, evs, out, metrics)
    resp.MergeFromString(bytes(out))
    return resp.SerializeToString()


@pytest.mark.parametrize("i", range(len(EDGE_EVENTS)))
def test_each_event_is_written_as_the_message_convert_builds(i):
    a, b = _room(), _room()
    assert _by_bytes(a, [EDGE_EVENTS[i]]) == _by_messages(b, [EDGE_EVENTS[i]])
    assert a.sequence == b.sequence == 42


def test_a_room_s_events_are_numbered_in_order_and_count_in_the_metrics():
    a, b = _room(), _room()
    ma, mb = Metrics(), Metrics()
    got, want = _by_bytes(a, EDGE_EVENTS, ma), _by_messages(b, EDGE_EVENTS, mb)
    assert got == want and a.sequence == b.sequence == 41 + len(EDGE_EVENTS)
    assert [e.sequence for e in pb.StreamResponse.FromString(got).events] == list(
        range(42, 42 + len(EDGE_EVENTS)))
    assert _metric_values(ma) == _metric_values(mb)
    assert any(v for k, v in _metric_values(ma).items() if "switches" in k)


def test_what_it_does_not_write_is_left_to_the_messages():
    room = _room()
    out = bytearray(b"kept")
    bad = ev.SwitchDecision(3, 1, 0, 1, "NO_SUCH_REASON", 0.0, -1, 0)
    assert not events.encode(room, [EDGE_EVENTS[0], bad], out, None)
    assert out == b"kept" and room.sequence == 41           # nothing changed
    room.watchers.append(lambda m: True)                     # a watcher wants messages
    assert not events.encode(room, [EDGE_EVENTS[0]], out, None)


def _metric_values(m: Metrics) -> dict[str, float]:
    out = {}
    for metric in (m.switches, m.switch_delay):
        for family in metric.collect():
            for s in family.samples:
                if not s.name.endswith("_created"):  # a clock reading
                    out[f"{s.name}{sorted(s.labels.items())}"] = s.value
    return out


def _conversation(seed: int, monkeypatch) -> tuple[list[bytes], list[bytes], dict]:
    """Forty rooms of a load-generator conversation (turns, overlaps, rankings), every
    fifth room watched from the start and one more from the middle."""
    import loadgen as lg

    reg = RoomRegistry(metrics=Metrics())
    enc = lg.TickEncoder(seed, 40, 6)
    seen: list[bytes] = []

    def watcher(m: pb.RoomEvent) -> bool:
        seen.append(m.SerializeToString())
        return True

    responses = []
    first = enc.roster_batch(1)
    responses.append(reg.process_many([Batch(pb.StreamRequest.FromString(first), 0.0, "",
                                             None, first)])[0].SerializeToString())
    for r in range(0, 40, 5):
        reg.watch(lg.room_id(seed + r), watcher)
    for k in range(1, 400):
        if k == 200:
            reg.watch(lg.room_id(seed + 7), watcher)
        raw = enc.batch(k + 1, k)
        responses.append(reg.process_many([Batch(pb.StreamRequest.FromString(raw), 0.0, "",
                                                 None, raw)])[0].SerializeToString())
    return responses, seen, _metric_values(reg.metrics)


def test_the_registry_s_responses_watchers_and_metrics_are_the_same_with_it_or_without(
        monkeypatch):
    written = {"rooms": 0}
    encode = events.encode

    def counting(room, evs, out, metrics):
        done = encode(room, evs, out, metrics)
        written["rooms"] += done
        return done

    monkeypatch.setattr("service.runtime.rooms.registry.encode", counting)
    fast = _conversation(0, monkeypatch)
    assert written["rooms"] > 300 and len(fast[1]) > 100
    monkeypatch.setattr(wire, "enabled", False)
    assert _conversation(0, monkeypatch) == fast
