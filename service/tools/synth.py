"""Synthetic signals for the sample conversation and the evaluation scenarios.

Nothing here is recorded speech. ``speech_like`` makes what level meters and webrtcvad react
to in speech: a glottal-like harmonic source with a drifting f0, shaped by vowel formants,
in syllables of 120-280 ms with consonant bursts, grouped into words with short gaps, at a
3-6 Hz syllabic rhythm. The noises are the ones users complain about: fans, room hiss,
keyboard typing, door slams, coughs, breaths, music in the background. All are
deterministic for a given generator.
Signals are float arrays where 1.0 is int16 full scale; levels are dBov (RMS 32768 = 0).
"""
from __future__ import annotations

import wave

import numpy as np


def _scipy_signal():
    """scipy.signal, imported on first use: it takes ~0.7 s to import, and the server (whose
    CLI names the scenario types) never synthesizes anything."""
    from scipy import signal

    return signal

FULL_SCALE = 32768.0
# (F1, F2) in Hz of a few vowels (Peterson & Barney 1952 averages, rounded)
VOWEL_FORMANTS_HZ = ((730, 1090), (270, 2290), (300, 870), (530, 1840), (660, 1720),
                     (490, 1350), (570, 840), (440, 1020))
# a pinking filter (-3 dB/octave), Kellet's 3-pole approximation
PINK_B = (0.049922035, -0.095993537, 0.050612699, -0.004408786)
PINK_A = (1.0, -2.494956002, 2.017265875, -0.522189400)


def dbov_gain(level_dbov: float) -> float:
    """Amplitude for an RMS of ``level_dbov`` from a unit-RMS signal (0 dBov = RMS 1.0)."""
    return 10 ** (level_dbov / 20)


def unit_rms(x: np.ndarray) -> np.ndarray:
    r = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0
    return x / r if r > 0 else x


def _resonator(x: np.ndarray, freq_hz: float, bandwidth_hz: float, rate: int) -> np.ndarray:
    r = np.exp(-np.pi * bandwidth_hz / rate)
    theta = 2 * np.pi * freq_hz / rate
    return _scipy_signal().lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], x)


def _band(x: np.ndarray, lo: float, hi: float, rate: int, order: int = 2) -> np.ndarray:
    hi = min(hi, 0.45 * rate)
    return _scipy_signal().sosfilt(_scipy_signal().butter(order, [lo, hi], "bandpass", fs=rate, output="sos"), x)


def speech_like(rng: np.random.Generator, seconds: float, rate: int, f0_hz: float,
                level_dbov: float) -> np.ndarray:
    """A speech-like utterance of ``seconds``; its active level (RMS over the sounding
    samples) is ``level_dbov``. It starts and ends with a syllable."""
    parts = []
    total = int(seconds * rate)
    n_done = 0
    syllables_left = int(rng.integers(1, 4))
    while n_done < total:
        n = int(rng.uniform(0.12, 0.28) * rate)
        t = np.arange(n) / rate
        f0 = f0_hz * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t + rng.uniform(0, 6))
                      + 0.01 * rng.standard_normal(n))
        phase = np.cumsum(2 * np.pi * f0 / rate)
        k = np.arange(1, max(2, int(0.45 * rate / f0_hz)))
        source = (np.sin(np.outer(phase, k)) / k).sum(axis=1)
        f1, f2 = VOWEL_FORMANTS_HZ[rng.integers(len(VOWEL_FORMANTS_HZ))]
        voiced = _resonator(source, f1, 90, rate) + 0.6 * _resonator(source, f2, 120, rate)
        voiced *= np.sin(np.pi * np.arange(n) / n) ** 0.6
        if rng.random() < 0.6:  # a consonant burst before the vowel
            m = int(0.03 * rate)
            burst = np.diff(rng.standard_normal(m + 1)) * np.hanning(m) * 0.3
            voiced = np.concatenate([burst * np.std(voiced), voiced])
        parts.append(voiced)
        syllables_left -= 1
        if syllables_left == 0:  # a word boundary
            syllables_left = int(rng.integers(1, 4))
            gap = rng.uniform(0.04, 0.12) if rng.random() < 0.85 else rng.uniform(0.15, 0.3)
        else:
            gap = rng.uniform(0.0, 0.04)
        parts.append(np.zeros(int(gap * rate)))
        n_done += len(parts[-2]) + len(parts[-1])
    x = np.concatenate(parts[:-1])[:total]
    active = np.abs(x) > 1e-9
    x = x / (np.sqrt(np.mean(x[active] ** 2)) if active.any() else 1.0)
    return x * dbov_gain(level_dbov)


def noise(rng: np.random.Generator, n: int, level_dbov: float, kind: str = "pink",
          rate: int = 16000) -> np.ndarray:
    """Steady background at an RMS of ``level_dbov``: 'white', 'pink' (1/f: room hiss),
    'brown' (1/f^2: rumble) or 'fan' (a motor hum: harmonics with a slow wobble over
    low-passed noise)."""
    w = rng.standard_normal(n + rate // 2)
    if kind == "pink":
        x = _scipy_signal().lfilter(PINK_B, PINK_A, w)[rate // 2:]
    elif kind == "brown":
        x = _scipy_signal().lfilter([1.0], [1.0, -0.995], w)[rate // 2:]
        x = _scipy_signal().sosfilt(_scipy_signal().butter(2, 30, "highpass", fs=rate, output="sos"), x)
    elif kind == "fan":
        t = np.arange(n) / rate
        f0 = rng.uniform(50, 120)
        wobble = 1 + 0.003 * np.sin(2 * np.pi * rng.uniform(0.05, 0.2) * t)
        phase = 2 * np.pi * f0 * np.cumsum(wobble) / rate
        tone = sum(k ** -1.2 * np.sin(k * phase + rng.uniform(0, 6)) for k in range(1, 8))
        broadband = _scipy_signal().sosfilt(_scipy_signal().butter(4, rng.uniform(700, 2000), "lowpass", fs=rate,
                                                 output="sos"), w[:n])
        x = 0.5 * unit_rms(tone) + 0.5 * unit_rms(broadband)
    else:
        x = w[:n]
    return unit_rms(x - np.mean(x)) * dbov_gain(level_dbov)


def keyboard(rng: np.random.Generator, seconds: float, rate: int, level_dbov: float
             ) -> np.ndarray:
    """A bout of typing: key clicks (a sharp band-passed tick plus a low thock) every
    80-250 ms with a few longer pauses; ``level_dbov`` is the peak-ish click level."""
    n = int(seconds * rate)
    x = np.zeros(n)
    t = rng.uniform(0.0, 0.1)
    while t < seconds - 0.05:
        m = int(rng.uniform(0.008, 0.016) * rate)
        tt = np.arange(m) / rate
        tick = _band(rng.standard_normal(m), 1500, 7000, rate) * np.exp(-tt / 0.003)
        thock = np.sin(2 * np.pi * rng.uniform(150, 400) * tt) * np.exp(-tt / 0.006)
        click = unit_rms(tick) + 0.4 * unit_rms(thock)
        i = int(t * rate)
        x[i:i + m] += click[: n - i] * rng.uniform(0.5, 1.0)
        t += rng.uniform(0.08, 0.25) + (rng.uniform(0.3, 1.0) if rng.random() < 0.07 else 0)
    return x * dbov_gain(level_dbov)


def door_slam(rng: np.random.Generator, rate: int, level_dbov: float) -> np.ndarray:
    """A thump (40-120 Hz decaying partials) with a crack and a short rattle, ~0.8 s."""
    n = int(0.8 * rate)
    tt = np.arange(n) / rate
    x = sum(np.sin(2 * np.pi * rng.uniform(40, 120) * tt) * np.exp(-tt / rng.uniform(0.08, 0.2))
            for _ in range(3))
    crack = _band(rng.standard_normal(n), 200, 3000, rate) * np.exp(-tt / 0.025)
    x = unit_rms(x) + 2 * unit_rms(crack)
    return unit_rms(x) * dbov_gain(level_dbov)


def cough(rng: np.random.Generator, rate: int, level_dbov: float) -> np.ndarray:
    """One or two coughs: broadband noise bursts with a fast attack and ~80 ms decay."""
    parts = []
    for _ in range(int(rng.integers(1, 3))):
        m = int(rng.uniform(0.15, 0.3) * rate)
        tt = np.arange(m) / rate
        burst = _band(rng.standard_normal(m), 250, 4000, rate)
        parts += [burst * (1 - np.exp(-tt / 0.008)) * np.exp(-tt / rng.uniform(0.05, 0.12)),
                  np.zeros(int(rng.uniform(0.12, 0.25) * rate))]
    return unit_rms(np.concatenate(parts[:-1])) * dbov_gain(level_dbov)


def breath(rng: np.random.Generator, rate: int, level_dbov: float) -> np.ndarray:
    """An in-breath: band-passed noise under a smooth 250-550 ms envelope."""
    m = int(rng.uniform(0.25, 0.55) * rate)
    x = _band(rng.standard_normal(m), 400, 3000, rate) * np.sin(np.linspace(0, np.pi, m)) ** 1.5
    return unit_rms(x) * dbov_gain(level_dbov)


MAJOR_SCALE_SEMITONES = (0, 2, 4, 5, 7, 9, 11, 12)


def _note(f_hz: float, seconds: float, rate: int, harmonics: int, decay_s: float) -> np.ndarray:
    """A plucked or struck note: harmonics falling off as 1/k, a 10 ms attack, an
    exponential decay."""
    tt = np.arange(int(seconds * rate)) / rate
    partials = sum(np.sin(2 * np.pi * f_hz * k * tt) / k
                   for k in range(1, harmonics + 1) if f_hz * k < 0.45 * rate)
    return np.minimum(1.0, tt / 0.01) * np.exp(-tt / decay_s) * partials


def music(rng: np.random.Generator, seconds: float, rate: int, level_dbov: float) -> np.ndarray:
    """Background music (a radio, a television, a cafe): bars of four beats at 70-140 bpm,
    a kick drum on each beat and a hi-hat between, a bass note, one or two melody notes a
    beat and a held chord. What makes it hard for a speaker detector: it is harmonic (a
    VAD marks much of it voiced), the beat modulates its level by several dB at 1-2 Hz, and
    it never pauses long enough for a noise floor to settle under it."""
    x = np.zeros(int(seconds * rate))
    kt = np.arange(int(0.12 * rate)) / rate  # kick: a sine thump falling 130 -> 50 Hz
    kick = 0.9 * np.sin(2 * np.pi * (50 + 80 * np.exp(-kt / 0.02)) * kt) * np.exp(-kt / 0.05)
    beat_s = 60.0 / rng.uniform(70, 140)
    key_hz = rng.uniform(110, 220)
    t = 0.0
    while t < seconds:
        root_hz = key_hz * 2 ** (MAJOR_SCALE_SEMITONES[int(rng.integers(0, 6))] / 12)
        for b in range(4):
            tb = t + b * beat_s
            add_at(x, kick, tb, rate)
            m = int(0.03 * rate)
            hat = unit_rms(_band(rng.standard_normal(m), 5000, 7900, rate))
            add_at(x, 0.15 * hat * np.exp(-np.arange(m) / rate / 0.01), tb + beat_s / 2, rate)
            add_at(x, 0.5 * _note(root_hz / 2, beat_s, rate, 3, beat_s), tb, rate)
            for k in range(int(rng.integers(1, 3))):
                f = 2 * key_hz * 2 ** (MAJOR_SCALE_SEMITONES[int(rng.integers(0, 8))] / 12)
                add_at(x, 0.35 * _note(f, beat_s / 2, rate, 5, 0.25), tb + k * beat_s / 2, rate)
        for interval in (0, 4, 7):  # a major triad held over the bar
            add_at(x, 0.12 * _note(root_hz * 2 ** (interval / 12), 4 * beat_s, rate, 4, 3.0), t,
                   rate)
        t += 4 * beat_s
    return unit_rms(x) * dbov_gain(level_dbov)


def room_response(rng: np.random.Generator, rate: int, rt60_s: float, delay_ms: float,
                  direct_to_reverb_db: float) -> np.ndarray:
    """The impulse response of a path through a room, of unit energy (it moves no level):
    ``delay_ms`` of nothing, the direct sound, then the room's ringing, ``direct_to_reverb_db``
    below it in energy: noise dying away by 60 dB in ``rt60_s`` (the reverberation time),
    its highs a little damped (walls and air absorb them first)."""
    delay = int(delay_ms * rate / 1000)
    t = np.arange(int(rt60_s * 1.2 * rate)) / rate
    tail = np.convolve(rng.standard_normal(len(t)) * 10 ** (-3 * t / rt60_s),
                       np.ones(4) / 4, mode="same")
    tail *= 10 ** (-direct_to_reverb_db / 20) / np.sqrt(np.sum(tail ** 2))
    h = np.zeros(delay + len(t))
    h[delay:] = tail
    h[delay] += 1.0
    return h / np.sqrt(np.sum(h ** 2))


def through(x: np.ndarray, response: np.ndarray) -> np.ndarray:
    """``x`` as heard through an impulse ``response`` (same length as ``x``)."""
    return _scipy_signal().fftconvolve(x, response)[: len(x)]


def add_at(track: np.ndarray, x: np.ndarray, start_s: float, rate: int) -> tuple[int, int]:
    """Mix ``x`` into ``track`` at ``start_s``; returns the span in ms actually covered."""
    i = int(start_s * rate)
    j = min(len(track), i + len(x))
    if j > i:
        track[i:j] += x[: j - i]
    return int(1000 * i / rate), int(1000 * j / rate)


def to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * FULL_SCALE), -32768, 32767).astype("<i2")


def write_wav(path, x: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(to_int16(x).tobytes())
