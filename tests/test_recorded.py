"""Conversations from real recordings (service/tools/recorded.py): Debian's asterisk-core-sounds
voices placed with conversational gaps and overlaps. Skipped where the packages are not
installed (``make recorded-speech`` installs them)."""
import numpy as np
import pytest

from service.tools import recorded, scenarios
from service.cli import main

needs_sounds = pytest.mark.skipif(
    not recorded.available(),
    reason=f"no asterisk-core-sounds in {recorded.SOUNDS} (make recorded-speech)")


@needs_sounds
def test_a_recorded_conversation_is_deterministic_and_overlaps_like_real_talk():
    a, b = scenarios.recorded_scene(3, 90), scenarios.recorded_scene(3, 90)
    assert a.speech == b.speech and a.langs == b.langs
    assert len(set(a.langs.values())) == len(a.langs)  # one real voice per participant
    assert recorded.RATE == scenarios.RATE
    overlaps, gaps = [], []
    for seed in range(4):
        s = scenarios.recorded_scene(seed, 90)
        _floor, changes = scenarios.derive_floor(s.speech, 90_000)
        assert changes, f"seed {seed}: nobody took a turn"
        for t, frm, _to in changes:
            ends = [e for st, e in s.speech[frm] if st <= t]
            (overlaps if any(st <= t < e for st, e in s.speech[frm]) else gaps).append(
                max(ends) - t if ends else 0)
        for spans in s.speech.values():
            assert all(0 <= st < e <= 90_000 for st, e in spans)
    # some turn changes start before the holder has finished, by less than a second or so
    assert overlaps and gaps
    assert 0 < float(np.median(overlaps)) < 1300


@needs_sounds
def test_the_scenarios_command_writes_the_recorded_type(tmp_path):
    assert main(["scenarios", "--out", str(tmp_path), "--types", "recorded",
                 "--variants", "1", "--seconds", "20"]) == 0
    d = tmp_path / "recorded_00"
    truth = __import__("json").loads((d / "truth.json").read_text())
    assert truth["type"] == "recorded" and (d / "levels.csv").stat().st_size > 0
    assert sorted(p.name for p in d.glob("p*.wav")) == [f"{p}.wav" for p in truth["participants"]]


def test_without_the_recordings_the_type_is_refused_with_the_make_target(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(recorded, "SOUNDS", tmp_path / "nothing-here")
    assert main(["scenarios", "--out", str(tmp_path / "out"), "--types", "recorded"]) == 2
    err = capsys.readouterr().err
    assert "--types recorded" in err and "make recorded-speech" in err
    assert not (tmp_path / "out" / "recorded_00").exists()
