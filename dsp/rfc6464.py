"""RFC 6464 client-to-mixer audio levels.

The header extension byte is ``V|level``: bit 7 is the voice-activity flag, bits 0-6 the
level in -dBov, where 127 means digital silence (RFC 6464 section 3). Levels here are kept
as dBov floats (0 loudest, -127 silence) so that PCM-derived and reported levels share one
scale.
"""
from __future__ import annotations

import numpy as np

SILENCE_LEVEL = 127
"""RFC 6464 level of digital silence (a muted microphone): -127 dBov."""
SILENCE_DBOV = -127.0
VOICE_BIT = 0x80
LEVEL_MASK = 0x7F


def level_to_dbov(level: np.ndarray) -> np.ndarray:
    """RFC 6464 level (0..127, -dBov) -> dBov as float32."""
    return -np.asarray(level, dtype=np.float32)


def split_header_bytes(raw: bytes | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RFC 6464 header bytes -> (level_dbov float32, voice int8 0/1), in one array read."""
    b = np.frombuffer(raw, dtype=np.uint8) if isinstance(raw, (bytes, bytearray, memoryview)) else raw
    level_dbov = -(b & LEVEL_MASK).astype(np.float32)
    voice = (b >> 7).astype(np.int8)
    return level_dbov, voice


def header_bytes(level: np.ndarray, voice: np.ndarray) -> bytes:
    """(level 0..127, voice 0/1) -> RFC 6464 header bytes."""
    lv = np.asarray(level, dtype=np.uint8) & LEVEL_MASK
    v = (np.asarray(voice, dtype=np.uint8) & 1) << 7
    return (lv | v).astype(np.uint8).tobytes()


def dbov_to_level(level_dbov: np.ndarray) -> np.ndarray:
    """dBov -> RFC 6464 level 0..127 (round half up, clipped), as int."""
    x = -np.asarray(level_dbov, dtype=np.float64)
    return np.clip(np.floor(x + 0.5), 0, SILENCE_LEVEL).astype(np.int16)
