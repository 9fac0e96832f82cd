"""Levels of 16-bit PCM frames, vectorized over every PCM participant of a tick."""
from __future__ import annotations

import numpy as np

from .rfc6464 import SILENCE_DBOV

SAMPLE_RATES_HZ = (8000, 16000, 32000, 48000)
"""The rates webrtcvad accepts, and so the rates we accept."""
FRAME_MS = (10, 20, 30)
"""The frame lengths webrtcvad accepts."""
FULL_SCALE_RMS = 32768.0
"""0 dBov: the RMS of a full-scale int16 square wave (RFC 6464 and WebRTC's RmsLevel), so a
full-scale sine reads -3 dBov."""


def frame_ms(n_bytes: int, sample_rate_hz: int) -> int | None:
    """Duration in ms of an int16 mono frame of ``n_bytes``, or None if it is not exactly
    one of FRAME_MS at this rate."""
    if n_bytes % 2:
        return None
    n = n_bytes // 2
    for ms in FRAME_MS:
        if n == sample_rate_hz * ms // 1000:
            return ms
    return None


def level_dbov(frames: np.ndarray) -> np.ndarray:
    """RMS level in dBov of each row of an int16 array [n_frames, n_samples].

    All-zero rows (digital silence) read -127 dBov, the RFC 6464 floor, as does anything
    quieter.
    """
    x = frames.astype(np.float32)
    mean_square = np.einsum("ij,ij->i", x, x, dtype=np.float64) / max(frames.shape[1], 1)
    with np.errstate(divide="ignore"):
        db = 10.0 * np.log10(mean_square / FULL_SCALE_RMS**2)
    return np.maximum(db, SILENCE_DBOV).astype(np.float32)
