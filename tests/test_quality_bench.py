"""The quality benchmark harness runs end to end on a tiny corpus (the full run is
`make bench-quality`)."""

import pytest

from service.api import speakerswitch_pb2 as pb
from service.runtime.rooms import RoomRegistry
from service.tools import replay, scenarios

from conftest import load_script


def load_harness():
    return load_script("quality_run", "benchmarks/quality/run.py")


def test_harness_scores_every_system_and_mode(tmp_path):
    q = load_harness()
    for kind in ("turns", "backchannel"):
        scenarios.write(tmp_path, f"{kind}_00", scenarios.scene(kind, 0, 12.0))
    systems = (("speakerswitch", "speakerswitch", "meeting"), ("dsi", "dsi", "meeting"))
    results = q.run(tmp_path, jobs=1, systems=systems, modes=("levels", "pcm"))
    assert set(results) == {(s, m) for s, _, _ in systems for m in ("levels", "pcm")}
    assert all(len(scores) == 2 for scores in results.values())
    text = q.table(results)
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["type", "system", "mode", "n"]
    assert sum(1 for line in lines if line.startswith("ALL")) == 4
    ours = [s for s in results[("speakerswitch", "levels")] if s.type == "turns"][0]
    assert ours.accuracy is not None and ours.accuracy > 0.5


def _decisions(ticks):
    registry = RoomRegistry()
    return [(e.timestamp_ms, e.switch.speaker_id)
            for request in replay.requests(ticks, pb.RoomConfig(profile="meeting"))
            for e in registry.process(request).events if e.HasField("switch")]


def test_levels_sent_as_rtp_decide_as_the_levels_do_with_and_without_dtx(tmp_path):
    """The rtp-dtx mode's path: each levels row an Opus packet through the RTP ingest. All
    packets sent, the ticks decide exactly as the levels do; in DTX (a silent frame sends
    one packet in 20) the ingest fills the gaps with each one's quiet level, so the holder
    keeps its hold: the same switches within a frame or two (with digital silence for the
    gaps, as the ingest did before, the holder counted as muted and these came 200-440 ms
    early)."""
    for kind, seed in (("turns", 1), ("rapid", 1)):
        name = f"{kind}_{seed}"
        scenarios.write(tmp_path, name, scenarios.scene(kind, seed, 40.0))
        levels = tmp_path / name / "levels.csv"
        want = _decisions(replay.levels_ticks(levels, "r"))
        assert len(want) >= 4
        assert _decisions(replay.levels_rtp_ticks(levels, "r")) == want
        dtx = _decisions(replay.levels_rtp_ticks(levels, "r", dtx=True))
        assert [p for _, p in dtx] == [p for _, p in want]
        assert all(abs(t - u) <= 40 for (t, _), (u, _) in zip(dtx, want)), (name, dtx, want)


def test_the_rtp_dtx_mode_scores_and_an_unknown_mode_is_refused(tmp_path, capsys):
    q = load_harness()
    scenarios.write(tmp_path, "turns_00", scenarios.scene("turns", 0, 12.0))
    results = q.run(tmp_path, jobs=1, systems=(("speakerswitch", "speakerswitch", "meeting"),),
                    modes=("rtp-dtx",))
    (score,) = results[("speakerswitch", "rtp-dtx")]
    assert score.accuracy is not None and score.accuracy > 0.5
    with pytest.raises(SystemExit):
        q.main(["--corpus", str(tmp_path), "--modes", "levels,rtp"])
    assert "--modes: unknown rtp" in capsys.readouterr().err
