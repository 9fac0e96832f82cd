"""How far can hold-and-evidence switching go? The switching rule with perfect speech detection.

    python benchmarks/quality/oracle.py [--corpus DIR] [--out ORACLE.md]

The engine's floor rule (``dsp/switching.py``) is run here on the ground truth's own speech
spans instead of on detected speech: every participant talks exactly inside its truth
utterances, with no detection delay, no early end and no missed syllable. What remains is
the rule itself: a challenger needs ``talk_ms`` of talking once the holder has been silent
for ``hold_ms``, ``interrupt_ms`` while the holder talks, and ``talk_ms`` again once the
holder has been silent ``outlast_ms`` and the challenger's talk plus that silence reach
``outlast_total_ms`` (evidence starts over at
every change of floor). Levels play no part: nobody is louder or quieter. The decisions are
scored by ``service.tools.evaluate``, as the engine's are.

The second table sweeps ``interrupt_ms`` instead. In an overlapping turn change the
newcomer starts while the holder still talks; the truth gives it the floor from its start
if it outlasts the holder, and a failed interruption (the holder keeps going) changes
nothing. Switching while both talk is the only way to show such a change sooner than the
holder's stop, and the table says what every such setting costs.

Why: a "yeah" dropped into a pause of the holder longer than the hold switches whatever
the detector, because its first ``talk_ms`` cannot say whether it is a backchannel or the
start of a turn. Sweeping ``hold_ms`` x ``talk_ms`` shows which targets any
setting of this rule can meet at all (false switches in backchannel scenarios against the
median switch delay), and so which shortfalls are the detector's and which the rule's.
Without --corpus the repository's scenarios are used (generated like ``run.py`` does).
"""
from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from service.tools import evaluate as ev  # noqa: E402
from dsp.tuning import PROFILES  # noqa: E402

STEP_MS = 20
"""The frame length browsers send levels at: the oracle decides on the same grid."""
HOLD_GRID_MS = (600, 700, 800, 900, 1000, 1200)
TALK_GRID_MS = (120, 180, 250, 300, 400, 500)
"""The sweep. ``talk_ms`` is all the talking a challenger needs: the engine's ``min_run_ms``
plus ``min_speech_ms`` (60 + 120 = 180 ms in the meeting profile)."""
INTERRUPT_GRID_MS = (400, 600, 800, 1000, 1200, 1500, 2000)
"""The second sweep, of ``interrupt_ms`` (talk over a holder who is still talking) at the
meeting profile's hold and talk: how soon an overlapping turn change could be shown, and
what that costs in switches to interrupters who do not keep the floor."""


def speech_grid(truth: dict) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Per participant and STEP_MS step: how long it has been talking (its utterance in
    progress; -1 when silent) and how long it has been silent since its last utterance
    (0 while talking)."""
    pids = sorted(truth["speech"])
    n = int(truth["duration_ms"]) // STEP_MS + 1
    t = np.arange(n, dtype=np.float64) * STEP_MS
    talked = np.full((len(pids), n), -1.0)
    silent = np.full((len(pids), n), np.inf)
    for i, p in enumerate(pids):
        for s, e in sorted(truth["speech"][p]):
            inside = (t >= s) & (t < e)
            talked[i, inside] = t[inside] - s
            after = t >= e
            silent[i, after] = np.minimum(silent[i, after], t[after] - e)
        silent[i, talked[i] >= 0] = 0.0
    return pids, talked, silent


def decide(truth: dict, hold_ms: float, talk_ms: float, interrupt_ms: float,
           outlast_ms: float, outlast_total_ms: float = 1500.0
           ) -> list[tuple[float, str | None]]:
    """The floor rule on the truth's speech spans: the switches as (t_ms, speaker)."""
    pids, talked, silent = speech_grid(truth)
    holder, since_ms = -1, -np.inf
    out: list[tuple[float, str | None]] = []
    for i in np.flatnonzero((talked >= talk_ms).any(axis=0)):
        # evidence starts over at every change of floor, as in the engine
        col = np.minimum(talked[:, i], i * STEP_MS - since_ms)
        holder_silent = np.inf if holder < 0 else silent[holder, i]
        if holder_silent >= hold_ms:
            need = np.full(len(pids), talk_ms)
        else:
            need = np.where((col + holder_silent >= outlast_total_ms)
                            & (holder_silent >= outlast_ms),
                            talk_ms, interrupt_ms)
        ready = col >= need
        if holder >= 0:
            ready[holder] = False
        if ready.any():
            holder, since_ms = int(np.argmax(np.where(ready, col, -1.0))), i * STEP_MS
            out.append((float(since_ms), pids[holder]))
    return out


def sweep(truths: list[dict], holds=HOLD_GRID_MS, talks=TALK_GRID_MS
          ) -> list[tuple[float, float, list[tuple[str, dict]]]]:
    """Per (hold_ms, talk_ms): the evaluate summary by scenario type."""
    base = PROFILES["meeting"]
    out = []
    for hold in holds:
        for need in talks:
            scores = [ev.score(t, decide(t, hold, need, base.interrupt_ms, base.outlast_ms,
                                          base.outlast_total_ms))
                      for t in truths]
            out.append((hold, need, ev.by_type(scores)))
    return out


def interrupt_sweep(truths: list[dict], interrupts=INTERRUPT_GRID_MS
                    ) -> list[tuple[float, list[tuple[str, dict]]]]:
    """Per ``interrupt_ms``, at the meeting profile's hold and talk: the evaluate summary
    by scenario type."""
    base = PROFILES["meeting"]
    talk = base.min_run_ms + base.min_speech_ms
    return [(need, ev.by_type([ev.score(t, decide(t, base.hold_ms, talk, need, base.outlast_ms,
                                                   base.outlast_total_ms)) for t in truths]))
            for need in interrupts]


def report_interrupt(results: list[tuple[float, list[tuple[str, dict]]]]) -> str:
    """One row per ``interrupt_ms``: overall figures, overlapping changes, false switches."""
    head = ["interrupt_ms", "acc%", "med_ms", "false/min", "ovl_n", "ovl_med_ms",
            "acc% overlap", "false overlap", "false backchannel"]
    rows = []
    for need, by in results:
        summary = dict(by)
        a = summary["ALL"]
        o = summary.get("overlap")
        b = summary.get("backchannel")
        rows.append([f"{need:g}", f"{100 * a['accuracy']:.1f}", _ms(a["delay_median_ms"]),
                     f"{a['false_per_min']:.2f}", str(a["overlap_changes"]),
                     _ms(a["overlap_median_ms"]),
                     "-" if o is None else f"{100 * o['accuracy']:.1f}",
                     "-" if o is None else f"{o['false_per_min']:.2f}",
                     "-" if b is None else f"{b['false_per_min']:.2f}"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def report(results: list[tuple[float, float, list[tuple[str, dict]]]]) -> str:
    """One row per setting: overall accuracy and delays, false switches per type."""
    types = [t for t, _ in results[0][2] if t != "ALL"]
    head = ["hold_ms", "talk_ms", "acc%", "med_ms", "p90_ms", "false/min"]
    head += [f"false {t}" for t in types]
    rows = []
    for hold, need, by in results:
        summary = dict(by)
        a = summary["ALL"]
        row = [f"{hold:g}", f"{need:g}", f"{100 * a['accuracy']:.1f}",
               _ms(a["delay_median_ms"]), _ms(a["delay_p90_ms"]), f"{a['false_per_min']:.2f}"]
        row += [f"{summary[t]['false_per_min']:.2f}" for t in types]
        rows.append(row)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def main(argv: list[str] | None = None) -> int:
    import run as quality  # the scenario cache lives there
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", help="a scenario folder (default: the repo's scenarios)")
    ap.add_argument("--out", help="also write the table as markdown here")
    a = ap.parse_args(argv)
    corpus = (pathlib.Path(a.corpus) if a.corpus
              else quality.ensure_scenarios(quality.CACHE / "3x60", 3, 60.0))
    truths = [ev.load_truth(path) for path in sorted(corpus.glob("*/truth.json"))]
    if not truths:
        ap.error(f"--corpus: no scenario (<scenario>/truth.json) in {corpus}")
    base = PROFILES["meeting"]
    text = (report(sweep(truths)) + "\n\nTalk over a holder who is still talking "
            f"(`interrupt_ms`), at hold_ms {base.hold_ms:g} and talk_ms "
            f"{base.min_run_ms + base.min_speech_ms:g}; ovl: turn changes whose newcomer "
            "started before the holder stopped:\n\n" + report_interrupt(interrupt_sweep(truths)))
    print(text)
    if a.out:
        pathlib.Path(a.out).write_text(
            f"# The switching rule with perfect speech detection\n\n"
            f"`python benchmarks/quality/oracle.py{' --corpus ' + a.corpus if a.corpus else ''}`"
            f" ({len(truths)} scenarios; see the module docstring).\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
