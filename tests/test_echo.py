"""A laptop that plays the call through its speakers: its microphone carries the talker's
voice late, a dozen dB down, ringing on after each word (dsp.activity._without_echo).
Synthetic levels on a 20 ms media clock, both engine paths."""
import numpy as np
import pytest

import dsp.engine as engine_module
from test_crosstalk import FRAME_MS, NOISE_DBOV, PATHS, voice_levels
from dsp.engine import Engine, Wave
from dsp.tuning import PROFILES

ECHO_DELAY_FRAMES = 6    # 120 ms from the talker's microphone to the laptop's
ECHO_DB = -8.0           # laptop speakers turned up, no echo canceller
RING_DB_PER_FRAME = 3.0  # a room of 0.4 s reverberation time: 60 dB in 20 frames
SENTENCE_FRAMES, PAUSE_FRAMES = 150, 30  # 3 s sentences, 600 ms between them


def talk(rng: np.random.Generator, frames: int, mean_dbov: float, start: int, stop: int,
         pause_every: int = SENTENCE_FRAMES) -> np.ndarray:
    """Levels of one participant who talks from ``start`` to ``stop`` in sentences."""
    out = np.full(frames, NOISE_DBOV) + rng.normal(0, 1, frames).round()
    t = start
    while t < stop:
        end = min(t + pause_every, stop)
        out[t:end] = voice_levels(rng, end - t, mean_dbov)
        t = end + PAUSE_FRAMES
    return out


def echo_of(levels: np.ndarray) -> np.ndarray:
    """The level another microphone hears of ``levels`` through speakers and a room: late,
    attenuated, each frame's sound ringing on (power summed over the decaying tail)."""
    power = 10 ** (levels / 10)
    ring = 10 ** (-RING_DB_PER_FRAME * np.arange(25) / 10)
    heard = np.convolve(power, ring / ring.sum())[: len(levels)]
    heard = np.concatenate([np.full(ECHO_DELAY_FRAMES, 1e-12), heard[:-ECHO_DELAY_FRAMES]])
    return np.round(10 * np.log10(heard) + ECHO_DB)


def run(levels: np.ndarray, kernel: str, monkeypatch):
    """Frames (participants x frames) of one room, the V bit where a VAD would set it;
    -> (holder per frame, the engine, the slots)."""
    monkeypatch.setattr(engine_module, "KERNEL", kernel)
    eng = Engine()
    assert eng.kernel == kernel
    room = eng.add_room(PROFILES["meeting"])
    slots = [eng.add_participant(room) for _ in range(len(levels))]
    voice = (levels > NOISE_DBOV + 10).astype(np.int8)  # the echo is voice to a VAD
    holder = []
    for k in range(levels.shape[1]):
        eng.step(Wave(rooms=np.array([room]), t_ms=np.array([k * FRAME_MS]),
                      duration_ms=np.array([FRAME_MS]), level_slots=np.array(slots),
                      level_dbov=levels[:, k].astype(np.float32),
                      level_voice=voice[:, k].copy()))
        holder.append(int(eng.st.holder[room]))
    return np.array(holder), eng, slots


def laptop_room(rng, frames, talker_stop, reply=None):
    """a talks until ``talker_stop``; b's laptop hears a; c wears a headset. ``reply``:
    (start, stop, dBov) of b's own voice."""
    a = talk(rng, frames, -24.0, 10, talker_stop)
    b = np.maximum(np.full(frames, NOISE_DBOV) + rng.normal(0, 1, frames).round(), echo_of(a))
    if reply is not None:
        start, stop, dbov = reply
        b[start:stop] = np.maximum(b[start:stop], voice_levels(rng, stop - start, dbov))
        a = np.maximum(a, echo_of(b) - 30)  # a's headset: b in it far down
    c = np.full(frames, NOISE_DBOV) + rng.normal(0, 1, frames).round()
    return np.stack([a, b, c])


@pytest.mark.parametrize("kernel", PATHS)
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_the_talkers_echo_in_a_laptop_never_takes_the_floor(kernel, seed, monkeypatch):
    """Before: the ringing echo still 'talked' after each of a's sentences, had talked
    over a long enough, and outlasted a (the floor went to b at sentence ends)."""
    rng = np.random.default_rng(seed)
    levels = laptop_room(rng, 1000, 940)  # 19 s of a's sentences
    holder, eng, (a, b, c) = run(levels, kernel, monkeypatch)
    assert (holder[40:] == a).all()
    # what it learned: b's microphone hears a ECHO_DB down, a few dB more from the
    # syllable peaks it is measured against; c's hears nothing of a
    assert ECHO_DB - 10 < eng.st.echo_coupling_db[b] < ECHO_DB
    assert eng.st.echo_coupling_db[c] < -30


@pytest.mark.parametrize("kernel", PATHS)
def test_the_laptops_own_reply_takes_the_floor(kernel, monkeypatch):
    """b answers at its own level after a's last sentence: its voice stands well above the
    echo expected of a (who has stopped), and it is shown as promptly as anyone."""
    rng = np.random.default_rng(4)
    levels = laptop_room(rng, 1000, 700, reply=(730, 1000, -26.0))
    holder, _eng, (a, b, _c) = run(levels, kernel, monkeypatch)
    assert (holder[40:700] == a).all()
    took = np.flatnonzero(holder == b)
    assert took.size and (holder[took[0]:] == b).all()
    assert took[0] - 730 <= 25  # within 500 ms of its first word


@pytest.mark.parametrize("kernel", PATHS)
def test_the_laptops_reply_over_the_talker_takes_the_floor(kernel, monkeypatch):
    """b starts over a's last second, at a's level: double talk, not echo."""
    rng = np.random.default_rng(5)
    levels = laptop_room(rng, 1000, 700, reply=(650, 1000, -24.0))
    holder, _eng, (a, b, _c) = run(levels, kernel, monkeypatch)
    took = np.flatnonzero(holder == b)
    assert took.size and (holder[took[0]:] == b).all()
    assert took[0] - 700 <= 50  # within a second of a's end
