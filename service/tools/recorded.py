"""Real recorded voices for the ``recorded`` scenario type (built in ``scenarios.py``).

Voices are the professional recordings of Debian's ``asterisk-core-sounds-<lang>-wav``
packages (CC-BY-SA 3.0, Digium; one speaker per language: en, es, fr, it, ru), 8 kHz
telephone-band prompts resampled to 16 kHz. A turn is one to four prompts of one voice
with 150-450 ms pauses; listeners answer with short recorded words (digits, "yes") as
backchannels. When the packages are missing (``make recorded-speech`` installs them),
``available()`` is false and the type cannot be built.
"""
from __future__ import annotations

import functools
import pathlib
import wave

import numpy as np

from dsp.pcm import level_dbov

from . import synth

SOUNDS = pathlib.Path("/usr/share/asterisk/sounds")
LANGUAGES = ("en", "es", "fr", "it", "ru")
"""One professional speaker each: five real voices."""
SOURCE_RATE = 8000
RATE = 16000
"""The scenarios' rate (``scenarios.RATE``)."""
TRIM_DB = 35.0
"""A prompt's audible extent: its 10 ms frames within this many dB of its loudest one
(the recordings carry some silence before and after the words)."""
BACKCHANNEL_FILE_MAX_MS = 1200
"""Single words (``digits/``) whose files, silence before and after included, last at most
this serve as backchannels ("yes", a digit); most are well under the 1 s a turn needs once
trimmed, a few reach it (and then count as a turn when they fall in a pause)."""


def available() -> bool:
    return all((SOUNDS / lang).is_dir() for lang in LANGUAGES)


def _read(path: pathlib.Path) -> np.ndarray | None:
    with wave.open(str(path)) as w:
        if w.getframerate() != SOURCE_RATE or w.getsampwidth() != 2 or w.getnchannels() != 1:
            return None
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def _trim(x: np.ndarray) -> np.ndarray:
    per = SOURCE_RATE // 100
    n = len(x) // per
    if n < 3:
        return x[:0]
    db = level_dbov(x[: n * per].reshape(n, per))
    loud = np.flatnonzero(db >= db.max() - TRIM_DB)
    return x[loud[0] * per:(loud[-1] + 1) * per]


def _upsample(x: np.ndarray) -> np.ndarray:
    """8 kHz -> 16 kHz (linear): the band stays telephone-limited, as on a PSTN leg."""
    t = np.arange(len(x) * RATE // SOURCE_RATE) * (SOURCE_RATE / RATE)
    return np.interp(t, np.arange(len(x)), x)


@functools.lru_cache(maxsize=None)
def prompts(lang: str) -> tuple[tuple[pathlib.Path, ...], tuple[pathlib.Path, ...]]:
    """(turn material, backchannels) of one voice, by file name (deterministic): the
    prompts of the language's top folder, and its single words (``digits/``) short enough
    to be backchannels. Only headers are read here."""
    def ms(path: pathlib.Path) -> float:
        with wave.open(str(path)) as w:
            return 1000 * w.getnframes() / w.getframerate()
    top = sorted((SOUNDS / lang).glob("*.wav"))
    words = sorted((SOUNDS / lang / "digits").glob("*.wav"))
    return (tuple(p for p in top if ms(p) > 1500),
            tuple(p for p in words if ms(p) <= BACKCHANNEL_FILE_MAX_MS))


@functools.lru_cache(maxsize=256)
def clip(path: pathlib.Path) -> np.ndarray:
    """One prompt: trimmed to its audible extent, at 16 kHz, unit active RMS."""
    x = _read(path)
    x = _trim(x) / 32768.0 if x is not None else np.zeros(0)
    return synth.unit_rms(_upsample(x)).astype(np.float32) if len(x) else np.zeros(0, np.float32)
