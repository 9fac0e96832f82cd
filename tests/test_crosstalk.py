"""Two people in one room: each microphone carries the other's voice a few dB down, and
that leak follows its talker's level syllable by syllable (dsp.activity._without_leaks).
Synthetic levels on a 20 ms media clock, both engine paths."""
import numpy as np
import pytest

import dsp.engine as engine_module
from dsp.engine import Engine, Wave
from dsp.tuning import PROFILES

FRAME_MS = 20
NOISE_DBOV = -70.0
LEAK_DB = 6.0  # the other's voice in this microphone, below its own microphone's level

PATHS = ["numpy"] + (["c"] if engine_module._kernel is not None else [])


def voice_levels(rng: np.random.Generator, frames: int, mean_dbov: float) -> np.ndarray:
    """Speech-like levels: a syllable every ~200 ms, rising and falling 12-20 dB (a mean
    jump of ~4 dB a frame, as recorded speech)."""
    t = np.arange(frames)
    phase = rng.uniform(0, 2 * np.pi)
    depth = rng.uniform(12, 20)
    syllables = depth / 2 * np.sin(2 * np.pi * t * FRAME_MS / 210.0 + phase)
    return np.round(mean_dbov + syllables + rng.normal(0, 1.5, frames))


def run(levels: np.ndarray, voice: np.ndarray, kernel: str, monkeypatch):
    """Frames (participants x frames) of one room; per frame: speaking flags and holder."""
    monkeypatch.setattr(engine_module, "KERNEL", kernel)
    eng = Engine()
    assert eng.kernel == kernel
    room = eng.add_room(PROFILES["meeting"])
    slots = [eng.add_participant(room) for _ in range(len(levels))]
    speaking, holder = [], []
    for k in range(levels.shape[1]):
        eng.step(Wave(rooms=np.array([room]), t_ms=np.array([k * FRAME_MS]),
                      duration_ms=np.array([FRAME_MS]), level_slots=np.array(slots),
                      level_dbov=levels[:, k].astype(np.float32),
                      level_voice=voice[:, k].astype(np.int8)))
        speaking.append(eng.st.speaking[slots].copy())
        holder.append(int(eng.st.holder[room]))
    return np.array(speaking), np.array(holder)


def room_of_two(rng, talk_a, talk_b, frames, leak_db=LEAK_DB):
    """Levels and V bits of a and b; ``talk_*``: (first, last) frame of each one's talk."""
    levels = np.full((2, frames), NOISE_DBOV) + rng.normal(0, 1, (2, frames)).round()
    voice = np.zeros((2, frames), dtype=np.int8)
    for me, (start, stop) in enumerate((talk_a, talk_b)):
        own = voice_levels(rng, stop - start, -24.0)
        levels[me, start:stop] = own
        voice[me, start:stop] = 1
        other = 1 - me
        if leak_db is not None:  # the other microphone hears it, a few dB down
            levels[other, start:stop] = np.maximum(levels[other, start:stop], own - leak_db)
            voice[other, start:stop] = 1  # a VAD marks the leak voiced
    return levels, voice


@pytest.mark.parametrize("kernel", PATHS)
def test_a_neighbours_voice_in_the_microphone_is_no_speech_of_its_own(kernel, monkeypatch):
    rng = np.random.default_rng(1)
    levels, voice = room_of_two(rng, (10, 160), (160, 160), 200)  # only a talks
    speaking, _ = run(levels, voice, kernel, monkeypatch)
    assert speaking[40:160, 0].all()            # a speaks
    assert not speaking[40:, 1].any()           # b only carries a's voice


@pytest.mark.parametrize("kernel", PATHS)
def test_a_quieter_voice_of_ones_own_is_speech(kernel, monkeypatch):
    """Both talk, b 6 dB below a but with its own syllables: not a leak."""
    rng = np.random.default_rng(2)
    levels = np.full((2, 200), NOISE_DBOV)
    levels[0, 10:160] = voice_levels(rng, 150, -24.0)
    levels[1, 10:160] = voice_levels(rng, 150, -30.0)
    voice = (levels > NOISE_DBOV).astype(np.int8)
    speaking, _ = run(levels, voice, kernel, monkeypatch)
    assert speaking[40:160, 0].all()
    assert speaking[40:160, 1].mean() > 0.9


@pytest.mark.parametrize("kernel", PATHS)
def test_a_neighbour_takes_the_turn_without_waiting_for_its_own_leak(kernel, monkeypatch):
    """a talks 3 s, then b (in a's room) 4 s: a's microphone carries b's voice 4 dB down.
    Taken for a's speech, that leak kept a talking and b waited interrupt_ms (1.2 s)."""
    rng = np.random.default_rng(3)
    a_stop = b_start = 160
    levels, voice = room_of_two(rng, (10, a_stop), (b_start + 10, 360), 400, leak_db=4.0)
    _, holder = run(levels, voice, kernel, monkeypatch)
    assert holder[a_stop - 1] == 0
    switched = int(np.flatnonzero(holder == 1)[0])
    delay_ms = (switched - (b_start + 10)) * FRAME_MS
    hold_ms = PROFILES["meeting"].hold_ms
    assert delay_ms <= hold_ms + 200, delay_ms
    assert delay_ms < PROFILES["meeting"].interrupt_ms
