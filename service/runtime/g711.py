"""G.711 (ITU-T G.711: mu-law PCMU, RTP payload type 0; A-law PCMA, type 8) to 16-bit
linear PCM, by table: a telephone gateway (Asterisk, FreeSWITCH) forwards these without an
audio level, so the RTP ingest decodes them for the VAD path. Each table maps the 256 code
words to the segment's midpoint, as the standard's decoders do."""
from __future__ import annotations

import numpy as np

MU_LAW_BIAS = 0x84
"""Added before encoding so that segment boundaries are powers of two; removed here."""


def _mu_law_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.uint8)  # code words are sent complemented
    exponent = (u >> 4).astype(np.int32) & 0x07
    mantissa = u.astype(np.int32) & 0x0F
    magnitude = (((mantissa << 3) + MU_LAW_BIAS) << exponent) - MU_LAW_BIAS
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)


def _a_law_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55  # even bits are sent inverted
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8,
                         ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(a & 0x80, magnitude, -magnitude).astype(np.int16)


MU_LAW = _mu_law_table()
A_LAW = _a_law_table()


def decode(payload: bytes, table: np.ndarray) -> bytes:
    """G.711 code words -> little-endian int16 samples (8 kHz, one per byte)."""
    return table[np.frombuffer(payload, np.uint8)].astype("<i2").tobytes()
