"""Scoring switching decisions against ground truth: ``speakerswitch evaluate``.

Truth (``truth.json``): ``duration_ms``, ``floor`` = ``[[start_ms, end_ms, pid], ...]`` (who
should be on screen, contiguous from the first floor start to the end) and ``changes`` =
``[[t_ms, from_pid, to_pid], ...]``; ``type`` names the scenario type. Decisions: JSON
Lines ``{"t_ms": ..., "speaker": ...}``, each the shown speaker from ``t_ms`` on (``null``:
nobody); the first line sets the initial speaker.

Metrics:
  accuracy    share of floor time during which the shown speaker is the floor holder
  delay       per true change to X at t: 0 if X is already shown at t, else the time to
              the first switch to X before the next change; no such switch is a miss
  false/min   switches to someone who does not hold the floor then (a switch to X at most
              EARLY_MS before X takes the floor is not false; switches before the first
              floor starts are not judged)
  flicker/min switches undone within FLICKER_MS (A->B then B->A)
  sw/min      all switches, against true changes per minute
"""
from __future__ import annotations

import bisect
import json
import math
import pathlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from .jsonl import records

EARLY_MS = 200
"""A switch this much ahead of the floor change is a good anticipation, not a false one."""
FLICKER_MS = 1000
"""A switch reverted within this long is flicker: the viewer saw a flash of someone."""
TYPE_ORDER = ("sample", "turns", "backchannel", "noise", "gains", "overlap", "echo", "muted",
              "large", "recorded")


def load_decisions(path: str | pathlib.Path) -> list[tuple[float, str | None]]:
    out = []
    for n, d in records(path):
        try:
            speaker = d["speaker"]
            t_ms = float(d["t_ms"])
            if not math.isfinite(t_ms):
                raise ValueError(f"t_ms {d['t_ms']!r} is not a finite number")
            out.append((t_ms, None if speaker is None else str(speaker)))
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}:{n}: not a decision line ({e})") from None
    return out


@dataclass
class Timeline:
    """The shown speaker over time: ``speakers[i]`` from ``times[i]`` on."""
    times: list[float] = field(default_factory=list)
    speakers: list[str | None] = field(default_factory=list)
    switches: list[tuple[float, str | None, str | None]] = field(default_factory=list)

    def at(self, t: float) -> str | None:
        i = bisect.bisect_right(self.times, t) - 1
        return self.speakers[i] if i >= 0 else None


def timeline(decisions: Iterable[tuple[float, str | None]], duration_ms: float) -> Timeline:
    """Decisions in time order (of equal times the last counts; repeats are no switch)."""
    by_time: dict[float, str | None] = {}
    for t, s in sorted(decisions, key=lambda d: d[0]):
        if t < duration_ms:
            by_time[t] = s
    tl = Timeline()
    for t in sorted(by_time):
        s = by_time[t]
        if tl.speakers and tl.speakers[-1] == s:
            continue
        if tl.speakers:
            tl.switches.append((t, tl.speakers[-1], s))
        tl.times.append(t)
        tl.speakers.append(s)
    return tl


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    xs = sorted(values)
    k = (len(xs) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


@dataclass
class Score:
    scenario: str
    type: str
    minutes: float
    floor_ms: float
    correct_ms: float
    changes: int
    delays: list[float]
    missed: int
    switches: int
    false_switches: int
    flicker: int
    overlap_delays: list[float] = field(default_factory=list)
    """Delays of the overlapping changes: the newcomer started while the holder was still
    talking (an utterance of the holder spans the change). Real turn-taking overlaps
    often, briefly; a rule that waits for the holder to stop is slow exactly there."""
    overlap_missed: int = 0

    @property
    def accuracy(self) -> float | None:
        return self.correct_ms / self.floor_ms if self.floor_ms else None

    def as_dict(self) -> dict:
        return summary([self]) | {"scenario": self.scenario, "type": self.type,
                                  "delays_ms": self.delays}


def score(truth: dict, decisions: list[tuple[float, str | None]]) -> Score:
    duration = float(truth["duration_ms"])
    floor = truth["floor"]
    changes = truth["changes"]
    tl = timeline(decisions, duration)
    # accuracy: walk each floor segment through the shown timeline
    floor_ms = correct = 0.0
    for start, end, holder in floor:
        floor_ms += end - start
        t, shown = start, tl.at(start)
        i = bisect.bisect_right(tl.times, start)
        while i < len(tl.times) and tl.times[i] < end:
            if shown == holder:
                correct += tl.times[i] - t
            t, shown = tl.times[i], tl.speakers[i]
            i += 1
        if shown == holder:
            correct += end - t
    delays, missed = [], 0
    overlap_delays, overlap_missed = [], 0
    speech = truth.get("speech", {})
    for k, (t, from_, to) in enumerate(changes):
        until = changes[k + 1][0] if k + 1 < len(changes) else duration
        overlapping = any(s <= t < e for s, e in speech.get(from_, []))
        if tl.at(t) == to:
            hit: float | None = t
        else:
            hit = next((ts for ts, _a, b in tl.switches if t <= ts < until and b == to), None)
        if hit is None:
            missed += 1
            overlap_missed += overlapping
        else:
            delays.append(hit - t)
            if overlapping:
                overlap_delays.append(hit - t)
    first_floor = floor[0][0] if floor else duration
    starts = [f[0] for f in floor]
    holders = [f[2] for f in floor]
    false = 0
    for ts, _a, b in tl.switches:
        if ts < first_floor:
            continue
        i = bisect.bisect_right(starts, ts) - 1
        if i >= 0 and holders[i] == b:
            continue
        if any(ts < c[0] <= ts + EARLY_MS and c[2] == b for c in changes):
            continue
        false += 1
    flicker = sum(1 for x, y in zip(tl.switches, tl.switches[1:])
                  if x[1] is not None and y[2] == x[1] and y[0] - x[0] < FLICKER_MS)
    return Score(str(truth.get("scenario", "")), str(truth.get("type", "")), duration / 60000,
                 floor_ms, correct, len(changes), delays, missed, len(tl.switches), false,
                 flicker, overlap_delays, overlap_missed)


def summary(scores: list[Score]) -> dict:
    """Aggregate figures over scenarios (time-weighted accuracy, pooled delays)."""
    minutes = sum(s.minutes for s in scores)
    floor_ms = sum(s.floor_ms for s in scores)
    delays = [d for s in scores for d in s.delays]
    overlap = [d for s in scores for d in s.overlap_delays]
    per_min = (lambda n: n / minutes if minutes else 0.0)
    return {
        "n": len(scores), "minutes": minutes,
        "accuracy": sum(s.correct_ms for s in scores) / floor_ms if floor_ms else None,
        "changes": sum(s.changes for s in scores), "missed": sum(s.missed for s in scores),
        "delay_median_ms": percentile(delays, 50), "delay_p90_ms": percentile(delays, 90),
        "delay_max_ms": max(delays) if delays else None,
        "false_per_min": per_min(sum(s.false_switches for s in scores)),
        "switches_per_min": per_min(sum(s.switches for s in scores)),
        "true_changes_per_min": per_min(sum(s.changes for s in scores)),
        "flicker_per_min": per_min(sum(s.flicker for s in scores)),
        "overlap_changes": len(overlap) + sum(s.overlap_missed for s in scores),
        "overlap_median_ms": percentile(overlap, 50),
    }


def by_type(scores: list[Score]) -> list[tuple[str, dict]]:
    """Summaries per scenario type, then ``ALL``."""
    types = sorted({s.type for s in scores},
                   key=lambda t: (TYPE_ORDER.index(t) if t in TYPE_ORDER else len(TYPE_ORDER), t))
    rows = [(t, summary([s for s in scores if s.type == t])) for t in types]
    return rows + [("ALL", summary(scores))]


COLUMNS = ("type", "n", "min", "acc%", "med_ms", "p90_ms", "max_ms", "miss/chg", "false/min",
           "sw/min", "true/min", "flick/min", "ovl_n", "ovl_med_ms")


def table_cells(name: str, s: dict) -> list[str]:
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.0f}"
    return [name, str(s["n"]), f"{s['minutes']:.1f}",
            "-" if s["accuracy"] is None else f"{100 * s['accuracy']:.1f}",
            ms(s["delay_median_ms"]), ms(s["delay_p90_ms"]), ms(s["delay_max_ms"]),
            f"{s['missed']}/{s['changes']}", f"{s['false_per_min']:.2f}",
            f"{s['switches_per_min']:.1f}", f"{s['true_changes_per_min']:.1f}",
            f"{s['flicker_per_min']:.2f}", str(s["overlap_changes"]),
            ms(s["overlap_median_ms"])]


def format_table(rows: list[tuple[str, dict]], columns: tuple[str, ...] = COLUMNS,
                 markdown: bool = False, first: list[str] | None = None) -> str:
    """rows: (label, summary); ``first`` replaces the label column values if given."""
    cells = [table_cells(name, s) for name, s in rows]
    if first is not None:
        for c, f in zip(cells, first):
            c[0] = f
    if markdown:
        out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        return "\n".join(out + ["| " + " | ".join(c) + " |" for c in cells])
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(columns)]
    fmt = lambda r: "  ".join(v.ljust(widths[0]) if i == 0 else v.rjust(widths[i])  # noqa: E731
                              for i, v in enumerate(r))
    return "\n".join([fmt(list(columns))] + [fmt(c) for c in cells])


def _is_ms(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x  # not NaN


def read_truth(path: str | pathlib.Path) -> dict:
    """A ``truth.json`` as written by ``speakerswitch sample``/``scenarios``, checked enough
    that scoring and plotting cannot trip on it: ValueError names the file."""
    path = pathlib.Path(path)
    try:
        truth = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text (is it a truth.json?)") from None
    except ValueError as e:
        raise ValueError(f"{path}: not JSON ({e}); is it a truth.json?") from None
    shape = ("a truth.json is an object with duration_ms, floor [[start_ms, end_ms, pid], "
             "...] and changes [[t_ms, from, to], ...]")
    if not isinstance(truth, dict) or not all(k in truth for k in ("duration_ms", "floor",
                                                                    "changes")):
        raise ValueError(f"{path}: not a truth.json ({shape})")
    floor, changes, speech = truth["floor"], truth["changes"], truth.get("speech", {})
    if not (_is_ms(truth["duration_ms"])
            and isinstance(floor, list) and isinstance(changes, list)
            and all(isinstance(f, list) and len(f) == 3 and _is_ms(f[0]) and _is_ms(f[1])
                    for f in floor)
            and all(isinstance(c, list) and len(c) == 3 and _is_ms(c[0]) for c in changes)
            and isinstance(truth.get("participants", []), list)
            and isinstance(speech, dict)
            and all(isinstance(s, list) and all(isinstance(x, list) and len(x) == 2
                                                and _is_ms(x[0]) and _is_ms(x[1]) for x in s)
                    for s in speech.values())):
        raise ValueError(f"{path}: malformed truth ({shape})")
    return truth


def load_truth(truth_path: str | pathlib.Path) -> dict:
    """A scenario's ``truth.json``; its name and type default to its folder's name
    (``<type>_<n>``)."""
    truth_path = pathlib.Path(truth_path)
    name = truth_path.parent.name
    truth = read_truth(truth_path)
    truth.setdefault("scenario", name)
    truth.setdefault("type", name.rsplit("_", 1)[0])
    return truth


def score_dir(corpus: str | pathlib.Path, decisions_dir: str | pathlib.Path,
              progress=None) -> tuple[list[Score], list[str]]:
    """Score ``decisions_dir/<scenario>.jsonl`` against ``corpus/<scenario>/truth.json``;
    a missing decisions file scores as no decisions. -> (scores, missing scenarios)"""
    scores, missing = [], []
    for truth_path in sorted(pathlib.Path(corpus).glob("*/truth.json")):
        name = truth_path.parent.name
        truth = load_truth(truth_path)
        dec = pathlib.Path(decisions_dir) / f"{name}.jsonl"
        if not dec.exists():
            missing.append(name)
        scores.append(score(truth, load_decisions(dec) if dec.exists() else []))
        if progress is not None:
            progress(len(scores))
    if not scores:
        raise ValueError(f"{corpus}: no */truth.json")
    return scores, missing
