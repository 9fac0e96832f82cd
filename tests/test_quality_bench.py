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


def _summary(accuracy=0.95, median_ms=250.0, false_per_min=0.1, missed=0, changes=100,
             flicker_per_min=0.0, overlap_median_ms=None):
    return {"accuracy": accuracy, "delay_median_ms": median_ms, "false_per_min": false_per_min,
            "missed": missed, "changes": changes, "flicker_per_min": flicker_per_min,
            "overlap_median_ms": overlap_median_ms}


def test_each_profiles_promise_is_checked_against_its_bound_or_a_peer():
    t = load_harness().targets
    rule = (t.Target("ss-podcast", "ALL", "false_per_min", "<=", 0.1, "few wrong switches"),
            t.Target("ss-podcast", "ALL", "accuracy", ">=", "dsi", "ahead of DSI"),
            t.Target("ss-podcast", "ALL", "missed_share", "<=", 0.02, "few missed"),
            t.Target("ss-debate", "rapid", "accuracy", ">=", "speakerswitch", "quick"),
            t.Target("ss-podcast", "ALL", "overlap_median_ms", "<=", 600.0, "no overlaps"))
    summaries = {
        ("ss-podcast", "levels"): {"ALL": _summary(0.90, false_per_min=0.05, missed=3)},
        ("ss-podcast", "pcm"): {"ALL": _summary(0.92, false_per_min=0.15, missed=1)},
        ("dsi", "levels"): {"ALL": _summary(0.91)},
        ("dsi", "pcm"): {"ALL": _summary(0.91)},
        ("ss-debate", "levels"): {"ALL": _summary()},     # a corpus without rapid exchanges
    }
    rows = t.check(summaries, rule)
    got = [(r[0].metric, r[1], r[2], r[3], r[4]) for r in rows]
    assert got == [
        ("false_per_min", "levels", "0.05", "<= 0.10", True),
        ("false_per_min", "pcm", "0.15", "<= 0.10", False),
        ("accuracy", "levels", "90.0%", ">= dsi's 91.0%", False),
        ("accuracy", "pcm", "92.0%", ">= dsi's 91.0%", True),
        ("missed_share", "levels", "3.0%", "<= 2.0%", False),
        ("missed_share", "pcm", "1.0%", "<= 2.0%", True),
    ]  # the debate's rapid scope and the overlaps nobody timed are left out
    table = t.table(rows, markdown=True).splitlines()
    assert table[0].startswith("| profile | mode | scope | target | measured | bound | met")
    assert [line.split(" | ")[6] for line in table[2:]] == ["yes", "NO", "NO", "yes", "NO", "yes"]


def test_the_bench_reports_every_profiles_targets(tmp_path, capsys):
    q = load_harness()
    for kind in ("turns", "rapid"):
        scenarios.write(tmp_path, f"{kind}_00", scenarios.scene(kind, 0, 20.0))
    out = tmp_path / "RESULTS.md"
    assert q.main(["--corpus", str(tmp_path), "--jobs", "1", "--modes", "levels",
                   "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "What each profile promises" in printed
    text = out.read_text()
    section = text[text.index("## What each profile promises"):]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| ss-")
            or line.startswith("| speakerswitch ")]
    assert {r[0].lstrip("| ") for r in rows} == {"speakerswitch", "ss-podcast", "ss-debate"}
    assert any(r[2] == "rapid" and r[0] == "| ss-debate" for r in rows)
    met = sum(r[6] == "yes" for r in rows)
    assert f"{met} of {len(rows)} met" in section


def test_a_folder_without_scenarios_is_refused_by_name(tmp_path, capsys):
    """A mistyped --corpus ended in a StopIteration traceback (the bench) or a TypeError
    (the oracle) after loading nothing: both now say what they did not find."""
    (tmp_path / "notes").mkdir()
    for module in (load_harness(), load_script("quality_oracle", "benchmarks/quality/oracle.py")):
        with pytest.raises(SystemExit) as stop:
            module.main(["--corpus", str(tmp_path)])
        assert stop.value.code == 2
        assert f"--corpus: no scenario (<scenario>/truth.json) in {tmp_path}" \
            in capsys.readouterr().err
