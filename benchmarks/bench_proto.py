"""Protobuf cost on the server's hot path (pytest-benchmark; ``make bench``).

A 2000-room levels batch is ~70 KB on the wire and its decisions a few KB; these suites
show what decoding the one and encoding the other cost next to the registry's
processing, so that a change to the proto or to how the server reads it can be judged:

- decode: ``StreamRequest.FromString`` of a 2000 x 10 batch in the compact roster form
  (sticky roster, so levels bytes only), alone and then read the way
  ``service/runtime/rooms/registry.py`` reads it (its steady-state checks and fields, and the
  levels joined into one buffer);
- encode: building the ``StreamResponse`` of a realistic tick of 2000 rooms (the events a
  real registry emitted for the load generator's conversations, one tick of typical size)
  message by message, then ``SerializeToString``, and serializing alone.

Figures in ``extra_info``: participant-frames/s for decode, events/s for encode.
"""
from __future__ import annotations

import numpy as np
import pytest

import loadgen as lg
from service.api import speakerswitch_pb2 as pb
from service.runtime.rooms import RoomRegistry

ROOMS, PARTICIPANTS = 2000, 10
WARM_TICKS = 400
"""Ticks run before the events are taken: turns have changed hands (3 s turns) by then."""


@pytest.fixture(scope="module")
def batch_bytes() -> bytes:
    return lg.TickEncoder(0, ROOMS, PARTICIPANTS).batch(500, 499)


def read_like_registry(req: pb.StreamRequest) -> int:
    """The field reads of RoomRegistry's steady path per tick, then the levels joined."""
    levels = []
    for tick in req.ticks:
        if tick.events or tick.audio or tick.HasField("config"):
            raise AssertionError("not a steady tick")
        lv = tick.levels
        if lv.roster:
            raise AssertionError("roster")
        levels.append(lv.levels)
        _ = (tick.room_id, tick.timestamp_ms, tick.duration_ms)
    return len(b"".join(levels))


def test_decode_batch(benchmark, batch_bytes):
    """StreamRequest.FromString of a 2000 x 10 compact batch (upb parses lazily)."""
    req = benchmark(pb.StreamRequest.FromString, batch_bytes)
    assert len(req.ticks) == ROOMS
    benchmark.extra_info["participant_frames_per_s"] = round(
        ROOMS * PARTICIPANTS / benchmark.stats.stats.mean)
    benchmark.extra_info["batch_bytes"] = len(batch_bytes)


def test_decode_and_read_batch(benchmark, batch_bytes):
    """FromString, then every field the registry reads on its steady path."""
    n = benchmark(lambda: read_like_registry(pb.StreamRequest.FromString(batch_bytes)))
    assert n == ROOMS * PARTICIPANTS
    benchmark.extra_info["participant_frames_per_s"] = round(
        ROOMS * PARTICIPANTS / benchmark.stats.stats.mean)


@pytest.fixture(scope="module")
def tick_events() -> list[pb.RoomEvent]:
    """The events of one typical 2000-room tick, from a real registry: run the load
    generator's conversations for WARM_TICKS, then keep the tick whose event count is
    closest to the mean of the next 100."""
    reg = RoomRegistry()
    enc = lg.TickEncoder(0, ROOMS, PARTICIPANTS)
    reg.process(pb.StreamRequest.FromString(enc.roster_batch(1)))
    for k in range(1, WARM_TICKS):
        reg.process(pb.StreamRequest.FromString(enc.batch(k + 1, k)))
    responses = [reg.process(pb.StreamRequest.FromString(enc.batch(k + 1, k)))
                 for k in range(WARM_TICKS, WARM_TICKS + 100)]
    counts = np.array([len(r.events) for r in responses])
    best = responses[int(np.argmin(abs(counts - counts.mean())))]
    assert len(best.events) > 0
    return list(best.events)


def rebuild(events: list[pb.RoomEvent]) -> bytes:
    """A StreamResponse built message by message with the setters the registry uses
    (RoomEvent per decision, nested fields set one by one), serialized."""
    resp = pb.StreamResponse(batch_id=123)
    for e in events:
        m = pb.RoomEvent(room_id=e.room_id, timestamp_ms=e.timestamp_ms)
        kind = e.WhichOneof("event")
        if kind == "switch":
            s, sw = e.switch, m.switch
            sw.speaker_id = s.speaker_id
            sw.previous_speaker_id = s.previous_speaker_id
            sw.reason = s.reason
            sw.score = s.score
            sw.audio_speaker_id = s.audio_speaker_id
            sw.speech_onset_ms = s.speech_onset_ms
            sw.slot = s.slot
        elif kind == "floor_change":
            f, fc = e.floor_change, m.floor_change
            fc.speaker_id = f.speaker_id
            fc.previous_speaker_id = f.previous_speaker_id
            fc.has_video = f.has_video
            fc.score = f.score
            fc.speech_onset_ms = f.speech_onset_ms
        elif kind == "speaking_changed":
            m.speaking_changed.participant_id = e.speaking_changed.participant_id
            m.speaking_changed.speaking = e.speaking_changed.speaking
        elif kind == "active_speakers":
            for s in e.active_speakers.speakers:
                m.active_speakers.speakers.add(participant_id=s.participant_id,
                                               level_dbov=s.level_dbov, speaking=s.speaking,
                                               activity=s.activity)
        else:
            m.CopyFrom(e)
        m.sequence = e.sequence
        resp.events.append(m)
    return resp.SerializeToString()


def test_encode_decisions(benchmark, tick_events):
    """Build and serialize the StreamResponse of one typical 2000-room tick."""
    raw = benchmark(rebuild, tick_events)
    assert pb.StreamResponse.FromString(raw).events == tick_events
    kinds: dict[str, int] = {}
    for e in tick_events:
        kinds[e.WhichOneof("event")] = kinds.get(e.WhichOneof("event"), 0) + 1
    benchmark.extra_info["events_per_s"] = round(len(tick_events) / benchmark.stats.stats.mean)
    benchmark.extra_info["events"] = len(tick_events)
    benchmark.extra_info["mix"] = " ".join(f"{k}={v}" for k, v in sorted(kinds.items()))
    benchmark.extra_info["response_bytes"] = len(raw)


def test_serialize_decisions(benchmark, tick_events):
    """SerializeToString alone of that response (what grpc does after the servicer)."""
    resp = pb.StreamResponse(batch_id=123, events=tick_events)
    raw = benchmark(resp.SerializeToString)
    benchmark.extra_info["events_per_s"] = round(len(tick_events) / benchmark.stats.stats.mean)
    benchmark.extra_info["response_bytes"] = len(raw)
