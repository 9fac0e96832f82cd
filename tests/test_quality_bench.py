"""The quality benchmark harness runs end to end on a tiny corpus (the full run is
`make bench-quality`)."""

from service.tools import scenarios

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
