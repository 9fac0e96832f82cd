"""A small synthetic conversation, generated on demand (nothing large is committed).

Speech-like signal: syllables of a glottal-like harmonic source (f0 with slow drift and
jitter) shaped by two vowel formants, with short consonant noise bursts and syllabic
pauses. It is not speech, but it has what level meters and webrtcvad react to: harmonic
energy in the speech bands, a 3-6 Hz syllabic rhythm, and pauses. Deterministic per seed.
"""
from __future__ import annotations

import json
import pathlib
import wave

import numpy as np
from scipy import signal

from dsp.pcm import level_dbov
from dsp.rfc6464 import dbov_to_level
from dsp.vad import DEFAULT_MODE, VadBank

FULL_SCALE = 32768.0
# (F1, F2) in Hz of a few vowels (Peterson & Barney 1952 averages, rounded)
VOWEL_FORMANTS_HZ = ((730, 1090), (270, 2290), (300, 870), (530, 1840), (660, 1720),
                     (490, 1350), (570, 840), (440, 1020))


def _resonator(x: np.ndarray, freq_hz: float, bandwidth_hz: float, rate: int) -> np.ndarray:
    r = np.exp(-np.pi * bandwidth_hz / rate)
    theta = 2 * np.pi * freq_hz / rate
    return signal.lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], x)


def speech_like(rng: np.random.Generator, seconds: float, rate: int, f0_hz: float,
                level_dbov: float) -> np.ndarray:
    """A speech-like utterance of about ``seconds``, float (1.0 = int16 full scale), whose
    RMS over its voiced part is ``level_dbov``."""
    parts = []
    total = int(seconds * rate)
    n_done = 0
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
        if rng.random() < 0.6:  # consonant burst at the syllable start
            m = int(0.03 * rate)
            burst = np.diff(rng.standard_normal(m + 1)) * np.hanning(m) * 0.3
            voiced = np.concatenate([burst * np.std(voiced), voiced])
        parts.append(voiced)
        gap = rng.uniform(0.02, 0.07) if rng.random() < 0.85 else rng.uniform(0.12, 0.25)
        parts.append(np.zeros(int(gap * rate)))
        n_done += len(parts[-2]) + len(parts[-1])
    x = np.concatenate(parts)[:total]
    active = np.abs(x) > 1e-9
    rms = np.sqrt(np.mean(x[active] ** 2)) if active.any() else 1.0
    return (x / rms * 10 ** (level_dbov / 20) * np.sqrt(2)).astype(np.float64)


def noise(rng: np.random.Generator, n: int, level_dbov: float, kind: str = "pink",
          rate: int = 16000) -> np.ndarray:
    """Background noise at an RMS of ``level_dbov``: 'white', 'pink' (1/f) or 'hum' (a fan:
    mains-like harmonics plus low-passed noise)."""
    if kind == "hum":
        t = np.arange(n)
        x = sum(np.sin(2 * np.pi * f * t / rate) / (i + 1)
                for i, f in enumerate((100, 200, 300)))
        x = x + signal.lfilter([0.05], [1, -0.95], rng.standard_normal(n))
    elif kind == "pink":
        b, a = [0.049922, -0.095993, 0.050612, -0.004408], [1, -2.494956, 2.017265, -0.522189]
        x = signal.lfilter(b, a, rng.standard_normal(n))
    else:
        x = rng.standard_normal(n)
    x = x - np.mean(x)
    return x / np.sqrt(np.mean(x**2)) * 10 ** (level_dbov / 20) * np.sqrt(2)


# The sample script: (participant, start s, length s, kind). Turns take the floor at their
# start; backchannels never do.
SCRIPT = (("p1", 0.5, 4.0, "turn"), ("p2", 2.2, 0.4, "backchannel"),
          ("p2", 5.0, 4.0, "turn"), ("p3", 9.5, 3.5, "turn"), ("p1", 11.0, 0.35, "backchannel"),
          ("p1", 13.6, 4.0, "turn"), ("p2", 15.2, 0.3, "backchannel"))
VOICES = {"p1": (120.0, -20.0, "pink", -62.0), "p2": (210.0, -30.0, "pink", -66.0),
          "p3": (160.0, -24.0, "hum", -52.0)}
"""participant -> (f0 Hz, speech level dBov, background kind, background dBov): a loud
talker, a quiet one, and one with a fan behind them."""
DURATION_S = 19.0


def conversation(seed: int = 1, rate: int = 16000) -> tuple[dict[str, np.ndarray], dict]:
    """-> ({participant: float track}, truth) for SCRIPT."""
    rng = np.random.default_rng(seed)
    n = int(DURATION_S * rate)
    tracks = {p: noise(rng, n, v[3], v[2], rate) for p, v in VOICES.items()}
    speech: dict[str, list[list[int]]] = {p: [] for p in VOICES}
    floor_starts = []
    for pid, start, length, kind in SCRIPT:
        f0, lvl, _, _ = VOICES[pid]
        x = speech_like(rng, length, rate, f0 * rng.uniform(0.95, 1.05), lvl)
        i = int(start * rate)
        tracks[pid][i:i + len(x)] += x
        speech[pid].append([int(start * 1000), int((start + length) * 1000)])
        if kind == "turn":
            floor_starts.append((int(start * 1000), pid))
    duration_ms = int(DURATION_S * 1000)
    floor = [[t, floor_starts[i + 1][0] if i + 1 < len(floor_starts) else duration_ms, p]
             for i, (t, p) in enumerate(floor_starts)]
    changes = [[b[0], a[2], b[2]] for a, b in zip(floor, floor[1:])]
    truth = {"duration_ms": duration_ms, "participants": sorted(VOICES), "speech": speech,
             "floor": floor, "changes": changes, "scenario": "sample", "type": "sample"}
    return tracks, truth


def to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * FULL_SCALE), -32768, 32767).astype("<i2")


def levels_rows(tracks: dict[str, np.ndarray], rate: int, packet_ms: int = 20) -> list[tuple]:
    """RFC 6464 (level, V bit) per 20 ms packet and participant, as a sender would report
    them: the packet's RMS level and webrtcvad's decision (mode 2)."""
    vads = VadBank()
    rows = []
    per = rate * packet_ms // 1000
    pids = sorted(tracks)
    pcm = {p: to_int16(tracks[p]) for p in pids}
    n = min(len(x) for x in pcm.values()) // per
    for slot, p in enumerate(pids):
        vads.reset(slot, DEFAULT_MODE)
    frames = {p: pcm[p][: n * per].reshape(n, per) for p in pids}
    levels = {p: dbov_to_level(level_dbov(frames[p])) for p in pids}
    for k in range(n):
        for slot, p in enumerate(pids):
            v = vads.classify([slot], [frames[p][k].tobytes()], rate)[0]
            rows.append((k * packet_ms, p, int(levels[p][k]), int(v)))
    return rows


def write_sample(out: str | pathlib.Path, seed: int = 1, rate: int = 16000) -> dict:
    """Write p*.wav, levels.csv and truth.json into ``out``; returns the truth."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tracks, truth = conversation(seed, rate)
    for p, x in tracks.items():
        with wave.open(str(out / f"{p}.wav"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(to_int16(x).tobytes())
    with open(out / "levels.csv", "w") as f:
        f.write("t_ms,participant,level,voice\n")
        for row in levels_rows(tracks, rate):
            f.write(",".join(map(str, row)) + "\n")
    with open(out / "truth.json", "w") as f:
        json.dump(truth, f, indent=1)
    return truth
