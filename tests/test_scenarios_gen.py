"""The scenario generator: floor rules on hand-made spans, and determinism."""
import json

import numpy as np
import pytest

from service.tools import scenarios
from service.tools.scenarios import derive_floor


def test_turns_take_the_floor_and_backchannels_do_not():
    speech = {"a": [[0, 3000]], "b": [[1000, 1400], [3500, 6000]], "c": [[4000, 4600]]}
    floor, changes = derive_floor(speech, 10000)
    assert floor == [[0, 3500, "a"], [3500, 10000, "b"]]
    assert changes == [[3500, "a", "b"]]


def test_utterances_closer_than_600_ms_form_one_spurt():
    # b's two 700 ms utterances 500 ms apart make a 1.9 s spurt: a turn
    speech = {"a": [[0, 2000]], "b": [[2500, 3200], [3700, 4400]]}
    assert derive_floor(speech, 6000)[1] == [[2500, "a", "b"]]
    # 700 ms apart they stay two backchannels
    speech = {"a": [[0, 2000]], "b": [[2500, 3200], [3900, 4600]]}
    assert derive_floor(speech, 6000)[1] == []


def test_interruption_must_last_and_outlast_the_holder():
    # b starts during a's turn, talks 2 s and outlasts a: b took the floor at its start
    ok = {"a": [[0, 5000]], "b": [[4000, 6000]]}
    assert derive_floor(ok, 8000)[1] == [[4000, "a", "b"]]
    # b talks 1.2 s inside a's turn: a failed interruption
    failed = {"a": [[0, 5000]], "b": [[2000, 3200]]}
    assert derive_floor(failed, 8000)[1] == []
    # b talks 2 s but a keeps talking longer: no change
    longer = {"a": [[0, 8000]], "b": [[2000, 4000]]}
    assert derive_floor(longer, 9000)[1] == []


def test_silence_keeps_the_previous_holder():
    floor, _ = derive_floor({"a": [[1000, 2500]], "b": [[6000, 8000]]}, 10000)
    assert floor == [[1000, 6000, "a"], [6000, 10000, "b"]]


@pytest.mark.parametrize("kind", scenarios.TYPES)
def test_every_type_builds_a_consistent_truth(kind):
    s = scenarios.scene(kind, 0, seconds=20.0)
    tracks = s.finish()
    assert set(tracks) == set(s.participants) and all(len(x) == 20 * 16000 for x in tracks.values())
    floor, changes = derive_floor(s.speech, 20000)
    assert all(a[1] == b[0] for a, b in zip(floor, floor[1:]))      # contiguous
    assert floor and floor[-1][1] == 20000
    assert len(changes) == len(floor) - 1
    if kind == "muted":
        assert any(np.count_nonzero(x) == 0 for x in tracks.values())   # muted all along
    if kind == "backchannel":
        assert changes == []
    if kind == "crosstalk":  # p2's microphone carries p1's voice a few dB down
        p1 = np.array(s.clean["p1"][:20 * 16000])
        leak = tracks["p2"] - s.clean["p2"][:20 * 16000]
        ratio_db = 10 * np.log10(np.mean(leak ** 2) / np.mean(p1 ** 2))
        assert -10.5 < ratio_db < -3.5
    if kind == "music":  # music in one or two rooms, never anyone's speech
        music = {p: spans for p, spans in s.nonspeech.items() if any(k == "music" for *_, k in spans)}
        assert 1 <= len(music) <= 2
        assert all(e - a >= 0.3 * 20000 - 20 for spans in music.values() for a, e, k in spans if k == "music")
    if kind == "space":  # 25 in the room, the floor only ever with the 2-4 on stage
        assert len(s.participants) == 25
        assert {h for _a, _b, h in floor} <= set(s.participants[:4])
    if kind == "laptop":  # a laptop's microphone carries the others' voices, late
        others = {p: sum(s.clean[q][:20 * 16000] for q in s.participants if q != p)
                  for p in s.participants}
        echo = {p: tracks[p] - s.clean[p][:20 * 16000] for p in s.participants}
        ratio_db = {p: 10 * np.log10(np.mean(echo[p] ** 2) / np.mean(others[p] ** 2))
                    for p in s.participants}
        p = max(ratio_db, key=ratio_db.get)
        assert -26 < ratio_db[p] < -8
        xcorr = np.fft.irfft(np.fft.rfft(echo[p]) * np.conj(np.fft.rfft(others[p])))
        assert 20 <= np.argmax(xcorr[:16000]) / 16 <= 155  # ms: the path's delay
    if kind == "rapid":  # quick exchanges: a change every 1-3.5 s
        assert len(changes) >= 5
        assert np.median([b - a for a, b, _ in floor]) < 3500


@pytest.mark.parametrize("kind", ["echo", "laptop"])  # laptop: random room responses too
def test_generation_is_deterministic(tmp_path, kind):
    name = f"{kind}_00"
    a = scenarios.write(tmp_path / "a", name, scenarios.scene(kind, 0, 8.0))
    b = scenarios.write(tmp_path / "b", name, scenarios.scene(kind, 0, 8.0))
    assert a == b
    for f in ("p1.wav", "p2.wav", "levels.csv", "truth.json"):
        assert (tmp_path / "a" / name / f).read_bytes() == (tmp_path / "b" / name / f).read_bytes()
    truth = json.loads((tmp_path / "a" / name / "truth.json").read_text())
    assert truth["type"] == kind and truth["duration_ms"] == 8000


def test_music_is_at_its_level_beats_and_never_pauses():
    from service.tools import synth
    x = synth.music(np.random.default_rng(3), 10.0, 16000, -30.0)
    assert len(x) == 160000
    assert 10 * np.log10(np.mean(x ** 2)) == pytest.approx(-30.0, abs=0.01)
    frame_db = 10 * np.log10(np.mean(x.reshape(-1, 320) ** 2, axis=1) + 1e-12)
    p5, p95 = np.percentile(frame_db, [5, 95])
    assert p95 - p5 > 6.0                 # the beat and the notes move the level...
    assert frame_db.min() > -30.0 - 15    # ...but it never pauses for a floor to settle in
