"""The sample conversation of the README quickstart, generated on demand (nothing large is
committed): 19 s, three synthetic voices (a loud talker, a quiet one, one with a fan behind
them), three turn changes and three interjections that must not switch."""
from __future__ import annotations

import pathlib

import numpy as np

from . import synth
from .scenarios import derive_floor, write_files

# (participant, start s, length s): the turns take the floor; the short ones never do
SCRIPT = (("p1", 0.5, 4.0), ("p2", 2.2, 0.4), ("p2", 5.0, 4.0), ("p3", 9.5, 3.5),
          ("p1", 11.0, 0.35), ("p1", 13.6, 4.0), ("p2", 15.2, 0.3))
VOICES = {"p1": (120.0, -20.0, "pink", -62.0), "p2": (210.0, -30.0, "pink", -66.0),
          "p3": (160.0, -24.0, "fan", -52.0)}
"""participant -> (f0 Hz, speech level dBov, background kind, background dBov)"""
DURATION_S = 19.0


def conversation(seed: int = 1, rate: int = 16000) -> tuple[dict[str, np.ndarray], dict]:
    """-> ({participant: float track}, truth) for SCRIPT."""
    rng = np.random.default_rng(seed)
    n = int(DURATION_S * rate)
    tracks = {p: synth.noise(rng, n, v[3], v[2], rate) for p, v in VOICES.items()}
    speech: dict[str, list[list[int]]] = {p: [] for p in VOICES}
    for pid, start, length in SCRIPT:
        f0, level, _, _ = VOICES[pid]
        x = synth.speech_like(rng, length, rate, f0 * rng.uniform(0.95, 1.05), level)
        speech[pid].append(list(synth.add_at(tracks[pid], x, start, rate)))
    duration_ms = int(DURATION_S * 1000)
    floor, changes = derive_floor(speech, duration_ms)
    truth = {"duration_ms": duration_ms, "participants": sorted(VOICES), "speech": speech,
             "floor": floor, "changes": changes, "scenario": "sample", "type": "sample"}
    return tracks, truth


def write_sample(out: str | pathlib.Path, seed: int = 1, rate: int = 16000) -> dict:
    """Write p*.wav, levels.csv and truth.json into ``out``; returns the truth."""
    tracks, truth = conversation(seed, rate)
    write_files(out, tracks, rate, truth)
    return truth
