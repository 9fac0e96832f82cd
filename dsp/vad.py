"""webrtcvad, one detector per participant.

The WebRTC VAD adapts its noise model to the signal it has seen, so each participant needs
its own instance: sharing one would let a noisy participant bias everybody's decisions.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import webrtcvad

DEFAULT_MODE = 2
"""Aggressiveness 0..3. Mode 2 is what browsers' V bit typically reflects; higher modes
drop more noise but also more soft speech onsets."""


class VadBank:
    """webrtcvad instances indexed by participant slot."""

    def __init__(self) -> None:
        self._vads: list[webrtcvad.Vad | None] = []
        self._modes: list[int] = []

    def reset(self, slot: int, mode: int = DEFAULT_MODE) -> None:
        """Give ``slot`` a fresh detector (a new participant must not inherit the
        previous occupant's noise model)."""
        while len(self._vads) <= slot:
            self._vads.append(None)
            self._modes.append(-1)
        self._vads[slot] = webrtcvad.Vad(mode)
        self._modes[slot] = mode

    def classify(self, slots: Sequence[int], frames: Sequence[bytes], sample_rate_hz: int,
                 modes: Sequence[int] | None = None) -> np.ndarray:
        """Voice decision (int8 0/1) of each frame, with the detector of its slot."""
        out = np.zeros(len(slots), dtype=np.int8)
        vads = self._vads
        for i, (slot, frame) in enumerate(zip(slots, frames)):
            vad = vads[slot] if slot < len(vads) else None
            if vad is None or (modes is not None and self._modes[slot] != modes[i]):
                self.reset(slot, DEFAULT_MODE if modes is None else int(modes[i]))
                vad = vads[slot]
            out[i] = vad.is_speech(frame, sample_rate_hz)
        return out
