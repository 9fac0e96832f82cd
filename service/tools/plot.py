"""A timeline picture of a conversation and its decisions (matplotlib, headless).

One lane per participant: its RFC 6464 level (dBov) and, shaded, the packets its sender's
VAD marked as voice. Above them, the ground-truth floor (when given) and the shown
speaker as coloured bands, with a tick at every switch. Readable at a glance: where the
band changes colour late, or flashes, is where switching went wrong.
"""
from __future__ import annotations

import pathlib
from collections.abc import Sequence

import numpy as np

from .replay import read_levels_csv


def require_matplotlib():
    """matplotlib, or an ImportError saying which extra installs it (it is optional)."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("drawing needs matplotlib, which the `plot` extra installs: "
                          "pip install 'speakerswitch[plot]' (in a checkout: "
                          "pip install -e '.[plot]')") from None
    return matplotlib


def _palette(n: int) -> list:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


Levels = dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
"""{participant: (t_ms, level_dbov, voice)}"""


def levels_from_rows(rows) -> Levels:
    """(t_ms, participant, RFC 6464 level, V bit) rows -> per-participant arrays."""
    out: dict[str, list] = {}
    for t, pid, level, voice in rows:
        out.setdefault(pid, []).append((t, -float(level), int(voice)))
    return {p: tuple(np.array(col) for col in zip(*r)) for p, r in out.items()}


def levels_by_participant(path: str | pathlib.Path) -> Levels:
    """levels.csv -> per-participant arrays."""
    times, rosters, payloads = read_levels_csv(path)
    return levels_from_rows((t, pid, byte & 0x7F, byte >> 7)
                            for t, roster, payload in zip(times, rosters, payloads)
                            for pid, byte in zip(roster, payload))


def _bands(ax, segments: Sequence[tuple[float, float, str | None]], y: float, colors: dict,
           height: float = 0.8) -> None:
    for a, b, who in segments:
        if who is not None and b > a:
            ax.broken_barh([(a / 1000, (b - a) / 1000)], (y - height / 2, height),
                           facecolors=colors.get(who, "grey"))


def decision_segments(decisions: Sequence[tuple[float, str | None]], end_ms: float
                      ) -> list[tuple[float, float, str | None]]:
    pts = sorted(decisions)
    return [(t, pts[i + 1][0] if i + 1 < len(pts) else end_ms, s) for i, (t, s) in enumerate(pts)]


def timeline(out: str | pathlib.Path,
             levels: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
             decisions: Sequence[tuple[float, str | None]], truth: dict | None = None,
             title: str = "") -> pathlib.Path:
    matplotlib = require_matplotlib()
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pids = list(truth["participants"]) if truth and "participants" in truth else sorted(levels)
    pids += [p for p in levels if p not in pids]
    colors = dict(zip(pids, _palette(len(pids))))
    end_ms = max([float(t[-1]) + 20 for t, _, _ in levels.values()]
                 + ([float(truth["duration_ms"])] if truth else []) + [1.0])
    n = len(pids)
    fig, axes = plt.subplots(n + 1, 1, sharex=True, figsize=(14, 1.2 + 0.75 * (n + 1)),
                             gridspec_kw={"height_ratios": [1.2] + [1] * n})
    top = axes[0]
    rows = []
    if truth:
        _bands(top, [(a, b, p) for a, b, p in truth["floor"]], 1.0, colors)
        rows.append((1.0, "truth"))
    _bands(top, decision_segments(decisions, end_ms), 0.0, colors)
    rows.append((0.0, "shown"))
    for t, _s in sorted(decisions)[1:]:
        top.axvline(t / 1000, color="black", lw=0.6, alpha=0.6)
    top.set_yticks([y for y, _ in rows], [label for _, label in rows])
    top.set_ylim(-0.6, 1.6 if truth else 0.6)
    top.set_title(title or "speakerswitch timeline", loc="left", fontsize=10)
    for ax, pid in zip(axes[1:], pids):
        if pid in levels:
            t, lv, voice = levels[pid]
            x = t / 1000
            ax.fill_between(x, -100, np.maximum(lv, -100), color=colors[pid], alpha=0.55, lw=0)
            ymin, ymax = -100, 0
            ax.fill_between(x, ymin, ymax, where=voice > 0, color="black", alpha=0.08, lw=0,
                            step="post")
        if truth and pid in truth.get("speech", {}):
            for a, b in truth["speech"][pid]:
                ax.plot([a / 1000, b / 1000], [-3, -3], color="black", lw=2, solid_capstyle="butt")
        ax.set_ylim(-100, 0)
        ax.set_yticks([-80, -40, 0])
        ax.set_ylabel(pid, rotation=0, ha="right", va="center", fontsize=9)
        ax.tick_params(labelsize=7)
    axes[-1].set_xlabel("media time (s)")
    axes[-1].set_xlim(0, end_ms / 1000)
    fig.text(0.01, 0.005, "lanes: level (dBov), grey = V bit, black bar = true speech; "
             "top: truth floor / shown speaker, lines = switches", fontsize=7)
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    out = pathlib.Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
