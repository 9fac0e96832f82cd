"""Per-participant activity on synthetic level sequences, with exact media times."""
import numpy as np
import pytest

from dsp.engine import Engine, Wave
from dsp.tuning import PROFILES

T = PROFILES["meeting"]


def run(levels_dbov, voice, frame_ms=20):
    """One participant; returns (speaking per frame, noise floor per frame)."""
    eng = Engine()
    room = eng.add_room(T)
    slot = eng.add_participant(room)
    speaking, floor = [], []
    for k, (lv, v) in enumerate(zip(levels_dbov, voice)):
        eng.step(Wave(rooms=np.array([room]), t_ms=np.array([k * frame_ms]),
                      duration_ms=np.array([frame_ms]), level_slots=np.array([slot]),
                      level_dbov=np.array([lv], np.float32), level_voice=np.array([v], np.int8)))
        speaking.append(bool(eng.st.speaking[slot]))
        floor.append(float(eng.st.noise_floor[slot]))
    return np.array(speaking), np.array(floor)


def first(mask):
    return int(np.flatnonzero(mask)[0])


def test_speech_onset_and_release_follow_the_time_constants():
    # 2 s of -70 dBov room noise, 1 s of voiced speech at -30, then noise again
    lv = [-70.0] * 100 + [-30.0] * 50 + [-70.0] * 50
    vc = [0] * 100 + [1] * 50 + [0] * 50
    speaking, _ = run(lv, vc)
    # activity 1 - exp(-t/60 ms) passes speaking_on=0.6 after 55 ms: the 3rd frame
    assert first(speaking) == 100 + 2
    # it decays as exp(-t/250 ms) below speaking_off=0.25 after ~347 ms: the 18th frame
    assert first(~speaking[102:]) + 102 == 150 + 17
    assert not speaking[:100].any()


def test_breathing_pause_does_not_stop_speaking():
    lv = [-70.0] * 50 + [-30.0] * 40 + [-70.0] * 10 + [-30.0] * 40
    vc = [0] * 50 + [1] * 40 + [0] * 10 + [1] * 40
    speaking, _ = run(lv, vc)
    assert speaking[55:].all()  # the 200 ms pause at frames 90-99 is bridged


def test_noise_floor_falls_fast_and_rises_slowly():
    lv = [-40.0] * 10 + [-70.0] * 20 + [-50.0] * 250
    _, floor = run(lv, [0] * len(lv))
    # a new participant starts from the -60 dBov prior and rises with a 3 s time constant
    assert floor[9] == pytest.approx(-40 - 20 * np.exp(-200 / 3000), abs=0.01)
    # falling with an 80 ms time constant: 400 ms later the gap is e^-5 of what it was
    assert floor[29] == pytest.approx(-70.0 + (floor[9] + 70) * np.exp(-400 / 80), abs=0.01)
    # rising again: 1 s after the jump to -50, 1 - e^(-1/3) of the way
    assert floor[29 + 50] == pytest.approx(floor[29] + (-50 - floor[29]) * (1 - np.exp(-1 / 3)),
                                           abs=0.05)
    assert floor[-1] == pytest.approx(-50 - 20 * np.exp(-5000 / 3000), abs=0.3)


def test_fan_without_voice_bit_is_never_a_speaker():
    lv = [-70.0] * 50 + [-42.0] * 500
    speaking, _ = run(lv, [0] * len(lv))
    assert not speaking.any()


def test_fan_with_energy_only_detection_is_absorbed_by_the_noise_floor():
    lv = [-70.0] * 50 + [-42.0] * 500          # a fan switched on; no V bit (-1)
    speaking, floor = run(lv, [-1] * len(lv))
    stops = np.flatnonzero(speaking)
    assert len(stops) and stops[-1] < 50 + 150  # absorbed within 3 s
    assert not speaking[300:].any()
    assert floor[-1] > -46


def test_voice_below_the_noise_margin_is_not_speech():
    # a V bit on frames barely above the background (a VAD firing on hiss)
    lv = [-60.0] * 50 + [-55.0] * 100
    speaking, _ = run(lv, [1] * len(lv))
    assert not speaking.any()
