"""The bundled demo conversation and ``speakerswitch demo``'s media-server side: small,
consistent, and streamed through gRPC to exactly the decisions a replay of the same input
makes (one engine)."""
from __future__ import annotations

import json

from service.demo import live as demo
from service.tools import replay
from service.api import speakerswitch_pb2 as pb
from service.cli import build_parser, main

from conftest import ServerThread, test_config

MAX_BUNDLE_BYTES = 2 * 1024 * 1024


def test_the_bundled_conversation_is_small_compressed_and_consistent():
    conv = demo.Conversation.bundled()
    files = sorted(p.name for p in demo.DATA.iterdir())
    assert files == ["conversation.ogg", "events.jsonl", "levels.csv.gz", "script.json"]
    assert sum(p.stat().st_size for p in demo.DATA.iterdir()) < MAX_BUNDLE_BYTES
    head = conv.audio.read_bytes()[:64]
    assert head.startswith(b"OggS") and b"OpusHead" in head
    script = conv.script
    assert script["participants"] == ["alice", "bob", "chen", "dana"]
    assert 120_000 <= script["duration_ms"] <= 300_000 and script["duration_ms"] % 20 == 0
    starts = [ln["start_ms"] for ln in script["lines"]]
    assert starts == sorted(starts)
    assert all(0 <= ln["start_ms"] < ln["end_ms"] <= script["duration_ms"]
               for ln in script["lines"])
    events = replay.read_events(conv.events)
    assert [(t, e.participant_id, e.type) for t, e in events][:4] == [
        (0, "dana", pb.PARTICIPANT_EVENT_TYPE_VIDEO_OFF),
        (0, "alice", pb.PARTICIPANT_EVENT_TYPE_VIDEO_ON),
        (0, "bob", pb.PARTICIPANT_EVENT_TYPE_VIDEO_ON),
        (0, "chen", pb.PARTICIPANT_EVENT_TYPE_VIDEO_ON)]
    ticks = conv.ticks("r")
    assert ticks[0].timestamp_ms == 0 and list(ticks[0].levels.roster) == script["participants"]
    assert max(t.timestamp_ms for t in ticks) == script["duration_ms"] - 20


def switches(events) -> list[tuple[int, str, str]]:
    return [(e.timestamp_ms, e.switch.speaker_id, pb.SwitchReason.Name(e.switch.reason))
            for e in events if e.HasField("switch")]


def test_streaming_through_grpc_decides_exactly_as_a_replay_of_the_same_input():
    conv = demo.Conversation.bundled()
    requests = replay.requests(conv.ticks("demo"), batch_ticks=50)
    expected = switches(e for r in replay.run_local(requests) for e in r.events)
    # as fast as it goes (one tick per request, like the real-time demo, without waits)
    with ServerThread(test_config(max_batches_per_s=1e6)) as server:
        streamer = demo.Streamer(server.target, conv, "demo", speed=1e6, loops=1)
        streamer.start()
        streamer.join(120)
        assert not streamer.is_alive() and streamer.error is None
    assert streamer.rejected == 0
    got = switches(streamer.events)
    assert got == expected
    # the conversation shows what the demo is for: turns, a camera coming on, one going off
    reasons = [r for _, _, r in got]
    assert reasons[0] == "SWITCH_REASON_FIRST_SPEAKER"
    assert reasons.count("SWITCH_REASON_VIDEO_ON") == 1
    assert reasons.count("SWITCH_REASON_VIDEO_OFF") == 1
    assert reasons.count("SWITCH_REASON_DOMINANT_SPEAKER") >= 12
    # interjections, the cough and bob's fan never put their owner on screen early:
    # every speech switch goes to the participant whose turn it is in the script
    turn_at = {ln["start_ms"]: ln["participant"] for ln in conv.script["lines"]
               if len(ln["text"]) > 20}
    for t, who, reason in got:
        if reason == "SWITCH_REASON_DOMINANT_SPEAKER":
            started = max(s for s in turn_at if s <= t)
            assert turn_at[started] == who, (t, who)


def test_the_page_is_told_where_the_conversation_is(monkeypatch):
    conv = demo.Conversation.bundled()
    streamer = demo.Streamer("unused:1", conv, speed=2.0)
    assert streamer.position_ms() is None  # not streaming yet
    monkeypatch.setattr(demo.time, "monotonic", lambda: 1000.0)
    streamer.started_s = 1000.0 - 100.0  # 100 s ago at 2x: 200 s of conversation
    assert streamer.position_ms() == 200_000 % conv.duration_ms


def test_demo_command_line(capsys):
    a = build_parser().parse_args(["demo", "--port", "0", "--http-port", "0", "--no-browser"])
    assert (a.port, a.http_port, a.speed, a.no_browser) == (0, 0, 1.0, True)
    assert main(["demo", "--speed", "0"]) == 2
    assert "--speed must be > 0" in capsys.readouterr().err
    assert main(["demo", "--http-port", "-1"]) == 2
    assert "http_port: the demo needs the web viewer" in capsys.readouterr().err


def test_demo_info_for_the_page():
    conv = demo.Conversation.bundled()
    info = demo.DemoInfo("demo", conv.audio, conv.duration_ms, lambda: 1234,
                         conv.script["lines"])
    d = info.as_json()
    assert (d["demo"], d["room_id"], d["audio_url"], d["position_ms"]) == \
        (True, "demo", "/demo/audio", 1234)
    assert json.dumps(d)  # plain JSON
