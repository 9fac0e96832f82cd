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


VAD_RATE_HZ = 16000
"""webrtcvad runs at 16 kHz: at 48 kHz it costs about 7x more per frame (20 us against
2.6 us in the webrtcvad-wheels build) and its speech bands all lie below 4 kHz anyway."""


def for_vad(frames: np.ndarray, sample_rate_hz: int) -> tuple[list[bytes], int]:
    """Frames [n, samples] as webrtcvad input: 32 and 48 kHz are decimated to 16 kHz by
    averaging 2 or 3 neighbouring samples, one vectorized step for the whole batch (the
    averaging is a low-pass with its first null at 16 kHz; what folds back lies far above
    the bands the VAD weighs)."""
    k = sample_rate_hz // VAD_RATE_HZ
    if k <= 1:
        return [f.tobytes() for f in frames], sample_rate_hz
    m = frames.shape[1] - frames.shape[1] % k
    # the mean of each k samples, as np.mean(axis=2, dtype=float32) computes it (summed
    # in order, then divided) to the bit, but with k strided adds: a reduction over an
    # axis of 2 or 3 elements was most of a 48 kHz tick
    down = frames[:, 0:m:k].astype(np.float32)
    for j in range(1, k):
        down += frames[:, j:m:k]
    down /= np.float32(k)
    down = np.round(down).astype("<i2")
    return [f.tobytes() for f in down], VAD_RATE_HZ


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
