"""Opus (RFC 6716) to 16-bit PCM with the system's libopus (Debian ``libopus0``), through
ctypes: for RTP sources that send Opus without the RFC 6464 audio level, so that the RTP
ingest can hand their audio to the VAD path.

No Python package is needed: the PyPI bindings (``opuslib``, unmaintained since 2018, and
its fork ``opuslib-next``) return each frame through a Python list of samples, which took
240-650 us a packet here against 30-55 us for the library's own decode into a buffer we
keep (benchmarks/bench_rtp.py, ``test_opus_decode``). Without libopus, ``available()`` is
False and the ingest counts such packets as ``no_level``.

Decoding costs far more than reading a level (about 5x the ingest's whole per-packet cost),
so it is for a few hundred sources per core, not thousands: a media server that can add
the level should.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools

RATE_HZ = 16000
"""Decoded at 16 kHz: the VAD works on speech bands, and libopus decodes to 16 kHz for less
than to 48 kHz (it skips the upper bands)."""
MAX_FRAME_SAMPLES = RATE_HZ * 120 // 1000
"""The longest Opus packet, 120 ms."""
_OPUS_OK = 0


@functools.cache
def _library() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("opus") or "libopus.so.0"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    lib.opus_decoder_create.restype = ctypes.c_void_p
    lib.opus_decoder_create.argtypes = [ctypes.c_int32, ctypes.c_int,
                                        ctypes.POINTER(ctypes.c_int)]
    lib.opus_decoder_destroy.restype = None
    lib.opus_decoder_destroy.argtypes = [ctypes.c_void_p]
    lib.opus_decode.restype = ctypes.c_int
    lib.opus_decode.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32,
                                ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    return lib


def available() -> bool:
    """Whether libopus could be loaded."""
    return _library() is not None


class Decoder:
    """One source's decoder (Opus decoding carries state from packet to packet)."""

    def __init__(self) -> None:
        lib = _library()
        if lib is None:
            raise RuntimeError("libopus is not installed (Debian: apt-get install libopus0)")
        error = ctypes.c_int()
        self._lib = lib
        self._state = lib.opus_decoder_create(RATE_HZ, 1, ctypes.byref(error))
        if error.value != _OPUS_OK or not self._state:
            raise RuntimeError(f"opus_decoder_create failed ({error.value})")
        self._out = ctypes.create_string_buffer(MAX_FRAME_SAMPLES * 2)

    def decode(self, payload: bytes) -> bytes | None:
        """The packet's audio as little-endian int16 at RATE_HZ, mono; None if libopus
        refuses it (not Opus, or corrupt)."""
        n = self._lib.opus_decode(self._state, payload, len(payload), self._out,
                                  MAX_FRAME_SAMPLES, 0)
        if n < 0:
            return None
        return self._out.raw[: 2 * n]

    def __del__(self) -> None:
        state, self._state = getattr(self, "_state", None), None
        if state:
            self._lib.opus_decoder_destroy(state)
