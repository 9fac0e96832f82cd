"""Dominant speaker identification after Volfin & Cohen, as a selectable peer algorithm.

I. Volfin and I. Cohen, "Dominant speaker identification for multipoint videoconferencing",
Computer Speech & Language 27 (2013) 895-910, in the level-based form that SFUs deploy
(jitsi-videobridge, mediasoup's ActiveSpeakerObserver), written here from that description:

- Each 20 ms packet's loudness (127 - RFC 6464 level) is split into N1 = 13 sub-bands of 10
  levels; the *immediate* observation is how many sub-bands the packet reaches above the
  participant's noise floor (0 below floor + one sub-band).
- Over the last 50 packets (1 s): a *medium* sub-block counts the immediates above 7 among
  5 packets, and the *long* block counts the 10 mediums above 4.
- Each time scale's speech-activity score is the log-likelihood ratio of a binomial speech
  model (p = 0.5) against an exponential non-speech model (lambda = 0.78, 24, 47 for the
  immediate, medium and long scales), floored at 1e-10.
- Every 300 ms, a challenger replaces the dominant speaker when the log ratios of its
  scores to the dominant's exceed 3, 2 and 0 on the three scales; of several, the one with
  the largest medium ratio wins.
- The noise floor is the lowest loudness seen; it falls at once and rises only through a
  15 s window: the geometric mean of the floor and the window's minimum.

It runs on levels only (PCM is reduced to its RFC 6464 level), and it is the in-repo
reference the quality benchmark compares our engine with.
"""
from __future__ import annotations

import math

import numpy as np

from .rfc6464 import SILENCE_LEVEL
from .state import EngineState

N1, N2, N3 = 13, 5, 10
HISTORY = N2 * N3                       # 50 packets: the long window
SUBUNIT = (SILENCE_LEVEL + N1 - 1) // N1  # 10 loudness steps per sub-band
MEDIUM_THRESHOLD = 7
LONG_THRESHOLD = 4
LAMBDAS = (0.78, 24.0, 47.0)
C_THRESHOLDS = (3.0, 2.0, 0.0)
DECISION_INTERVAL_MS = 300
FLOOR_WINDOW = 15000 // 20              # packets in the floor's rise window
MIN_SCORE = 1e-10


def _score_table(n: int, lam: float) -> np.ndarray:
    """Speech-activity score for v = 0..n active sub-units out of n."""
    v = np.arange(n + 1)
    log_binom = np.array([math.log(math.comb(n, int(k))) for k in v])
    s = log_binom + n * math.log(0.5) - math.log(lam) + lam * v
    return np.maximum(s, MIN_SCORE)


SCORES = (_score_table(N1, LAMBDAS[0]), _score_table(N2, LAMBDAS[1]),
          _score_table(N3, LAMBDAS[2]))


class DsiState:
    """Per-slot loudness history and noise floor (grown with the engine's slots)."""

    def __init__(self) -> None:
        self.history = np.zeros((0, HISTORY), np.uint8)   # newest first
        self.floor = np.zeros(0, np.int16)                # 0: not known yet
        self.next_floor = np.zeros(0, np.int16)
        self.next_len = np.zeros(0, np.int32)
        self.next_decision_ms: dict[int, int] = {}

    def ensure(self, n_slots: int) -> None:
        """Room for ``n_slots`` slots, at least doubling: growing by one row per join
        copied the whole history per join (20,000 joins took ~1 s)."""
        if len(self.floor) < n_slots:
            grow = max(n_slots, 2 * len(self.floor)) - len(self.floor)
            self.history = np.vstack([self.history, np.zeros((grow, HISTORY), np.uint8)])
            for name in ("floor", "next_floor", "next_len"):
                a = getattr(self, name)
                setattr(self, name, np.concatenate([a, np.zeros(grow, a.dtype)]))

    def reset(self, slot: int) -> None:
        self.ensure(slot + 1)
        self.history[slot] = 0
        self.floor[slot] = self.next_floor[slot] = self.next_len[slot] = 0


def push(ds: DsiState, idx: np.ndarray, level_dbov: np.ndarray) -> None:
    """Add one packet's loudness for each of ``idx`` and track their noise floors."""
    loud = np.clip(np.rint(SILENCE_LEVEL + level_dbov), 0, SILENCE_LEVEL).astype(np.int16)
    ds.history[idx, 1:] = ds.history[idx, :-1]
    ds.history[idx, 0] = loud
    floor, nxt, n = ds.floor[idx], ds.next_floor[idx], ds.next_len[idx]
    sounding = loud > 0
    lower = sounding & ((floor == 0) | (floor > loud))
    other = sounding & ~lower
    start = other & (nxt == 0)
    cont = other & (nxt != 0)
    floor = np.where(lower, loud, floor)
    nxt = np.where(lower, 0, np.where(start, loud, np.where(cont, np.minimum(nxt, loud), nxt)))
    n = np.where(lower, 0, np.where(start, 1, np.where(cont, n + 1, n)))
    roll = cont & (n >= FLOOR_WINDOW)
    floor = np.where(roll, np.sqrt(floor.astype(np.float64) * nxt).astype(np.int16), floor)
    nxt = np.where(roll, 0, nxt)
    n = np.where(roll, 0, n)
    ds.floor[idx], ds.next_floor[idx], ds.next_len[idx] = floor, nxt, n


def scores(ds: DsiState, slots: np.ndarray) -> np.ndarray:
    """[len(slots), 3] immediate, medium and long speech-activity scores."""
    h = ds.history[slots].astype(np.int16)
    threshold = (ds.floor[slots] + SUBUNIT)[:, None]
    immediates = np.where(h < threshold, 0, h) // SUBUNIT
    mediums = (immediates.reshape(len(slots), N3, N2) > MEDIUM_THRESHOLD).sum(axis=2)
    longs = (mediums > LONG_THRESHOLD).sum(axis=1)
    return np.stack([SCORES[0][immediates[:, 0]], SCORES[1][mediums[:, 0]], SCORES[2][longs]],
                    axis=1)


def decide(st: EngineState, ds: DsiState, room: int, t_ms: int) -> int | None:
    """Every DECISION_INTERVAL_MS: the new dominant slot of ``room``, or None."""
    due = ds.next_decision_ms.get(room)
    if due is not None and t_ms < due:
        return None
    ds.next_decision_ms[room] = t_ms + DECISION_INTERVAL_MS
    slots = np.asarray([s for s in st.room_slots[room] if not st.muted[s]], np.int64)
    if len(slots) == 0:
        return None
    holder = int(st.holder[room])
    if holder < 0 or holder not in slots:
        return int(slots[0])  # as deployed: the first participant starts as dominant
    sc = scores(ds, slots)
    ratios = np.log(sc / sc[slots == holder][0])
    ok = ((ratios[:, 0] > C_THRESHOLDS[0]) & (ratios[:, 1] > C_THRESHOLDS[1])
          & (ratios[:, 2] > C_THRESHOLDS[2]) & (slots != holder))
    if not ok.any():
        return None
    return int(slots[np.flatnonzero(ok)[np.argmax(ratios[ok, 1])]])
