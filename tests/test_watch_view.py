"""The live room view: its model follows the events, and the command follows a server."""
import threading

from service.api import speakerswitch_pb2 as pb
from service.cli import main
from service.tools.watch_view import RoomView

from conftest import script_levels


def test_view_follows_snapshot_and_events():
    v = RoomView()
    snap = pb.RoomState(room_id="r", sequence=7, timestamp_ms=1000, speaker_id="a",
                        audio_speaker_id="a", forwarding=["a", "b"])
    snap.active_speakers.add(participant_id="a", level_dbov=-20, speaking=True, activity=0.9)
    v.apply(pb.RoomEvent(room_id="r", snapshot=snap, timestamp_ms=1000))
    v.apply(pb.RoomEvent(room_id="r", sequence=8, timestamp_ms=1500, floor_change=pb.FloorChange(
        speaker_id="b", previous_speaker_id="a", has_video=False)))
    v.apply(pb.RoomEvent(room_id="r", sequence=9, timestamp_ms=1600,
                         presentation=pb.PresentationChanged(presenter_id="c")))
    text = v.render()
    assert "room r" in text and "seq 9" in text and "media time      1.6 s" in text
    assert "shown: a  (floor: b, camera off)" in text
    assert "presenting: c" in text and "forwarding: a, b" in text
    assert " * a                " + "#" * 18 + "." * 6 + "  -20.0 dBov" in text  # 60 of 80 dB
    v.apply(pb.RoomEvent(room_id="r", sequence=10, timestamp_ms=2000, switch=pb.Switch(
        speaker_id="b", previous_speaker_id="a", reason=pb.SWITCH_REASON_VIDEO_ON,
        audio_speaker_id="b")))
    assert "shown: b\n" in v.render() and "a -> b  (VIDEO_ON)" in v.render()


def test_watch_command_prints_switches_of_a_live_room(server, client, capsys):
    from service.runtime.rooms import RoomRegistry

    ticks = script_levels("tv", [("a", 0, 1500), ("b", 2000, 3500)], ["a", "b"], 3500)
    alone = RoomRegistry()
    alone.process(pb.StreamRequest(ticks=ticks[:10]))
    expected = len(alone.process(pb.StreamRequest(ticks=ticks[10:])).events) + 1  # + snapshot
    list(client.stream([pb.StreamRequest(batch_id=1, ticks=ticks[:10])]))
    done = []
    t = threading.Thread(target=lambda: done.append(
        main(["watch", "tv", "--server", server.target, "--max-events", str(expected)])))
    t.start()
    import time
    time.sleep(0.5)
    list(client.stream([pb.StreamRequest(batch_id=2, ticks=ticks[10:])]))
    t.join(20)
    assert done == [0]
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("(SNAPSHOT)")
    assert any(line.endswith("a -> b  (DOMINANT_SPEAKER)") for line in out)
