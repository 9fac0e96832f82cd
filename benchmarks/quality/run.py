"""Switching quality: every scenario, every algorithm, both input modes, one table.

    python benchmarks/quality/run.py [--corpus DIR] [--out RESULTS.md] [--jobs 2]

Without --corpus, the repository's own scenarios (``speakerswitch scenarios``: each of its
types x 3 seeds x 60 s, and the ``recorded`` type of real voices where Debian's asterisk-core-sounds
are installed, ``make recorded-speech``) are generated once into ``.cache/scenarios``
(deterministic, no network).
``--corpus`` takes any folder of ``<scenario>/{p*.wav, levels.csv, truth.json}``, such as
the evaluation kit's development corpus. Each scenario is replayed in-process through the
same registry path as the server:
  levels  RFC 6464 levels with the V bit from webrtcvad (levels.csv), as a browser sends
  pcm     the WAV tracks as 20 ms PCM frames
  rtp-dtx (--modes) the levels as Opus packets in DTX (a silent frame sends nothing but one
          packet in 20) through the RTP ingest, as a media server forwarding RTP delivers them
for the algorithms speakerswitch (ours, each profile), dsi (Volfin-Cohen as deployed in
SFUs) and loudest (the loudest participant every frame), and scored by
``service.tools.evaluate``. Under the table, what each profile promises (``targets.py``),
met or not, in each mode.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import platform
import sys
import time
from multiprocessing import Pool

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from service.tools import evaluate as ev  # noqa: E402
from service.tools import recorded, replay, scenarios  # noqa: E402
from service.api import speakerswitch_pb2 as pb  # noqa: E402
from service.runtime.rooms import RoomRegistry  # noqa: E402
import targets  # noqa: E402

CACHE = ROOT / ".cache" / "scenarios"
# (label, algorithm, profile): our engine in each profile, then the peers
SYSTEMS = (("speakerswitch", "speakerswitch", "meeting"),
           ("ss-podcast", "speakerswitch", "podcast"),
           ("ss-debate", "speakerswitch", "debate"),
           ("dsi", "dsi", "meeting"),
           ("loudest", "loudest", "meeting"))
MODES = ("levels", "pcm")
ALL_MODES = MODES + ("rtp-dtx",)  # rtp-dtx on request (--modes)


def ensure_scenarios(out: pathlib.Path, variants: int, seconds: float) -> pathlib.Path:
    # the stamp names the types, so that a type added since rebuilds the cache
    stamp = out / f".complete-{variants}x{seconds:g}-{'-'.join(scenarios.TYPES)}"
    if not stamp.exists():
        scenarios.write_all(out, scenarios.TYPES, variants, seconds)
        stamp.write_text("")
    if recorded.available() and not (out / ".complete-recorded").exists():
        # real voices give fewer turns a minute: twice the conversations, twice as long
        scenarios.write_all(out, (scenarios.RECORDED,), 2 * variants, 2 * seconds)
        (out / ".complete-recorded").write_text("")
    return out


def decide(scenario_dir: pathlib.Path, mode: str, algorithm: str, profile: str
           ) -> list[tuple[float, str | None]]:
    """Replay one scenario in-process; the video switches as (t_ms, speaker)."""
    levels = scenario_dir / "levels.csv"
    ticks = (replay.levels_ticks(levels, "bench") if mode == "levels"
             else replay.levels_rtp_ticks(levels, "bench", dtx=True) if mode == "rtp-dtx"
             else replay.wav_ticks(scenario_dir, "bench"))
    config = pb.RoomConfig(profile=profile, algorithm=algorithm)
    registry = RoomRegistry()
    out = []
    for request in replay.requests(ticks, config):
        for e in registry.process(request).events:
            if e.HasField("switch"):
                out.append((float(e.timestamp_ms), e.switch.speaker_id or None))
    return out


def _score_one(job: tuple[str, str, str, str, str]) -> tuple[str, str, ev.Score]:
    scenario_dir, mode, label, algorithm, profile = job
    d = pathlib.Path(scenario_dir)
    truth = ev.load_truth(d / "truth.json")
    return label, mode, ev.score(truth, decide(d, mode, algorithm, profile))


def run(corpus: pathlib.Path, jobs: int = 2, systems=SYSTEMS, modes=MODES
        ) -> dict[tuple[str, str], list[ev.Score]]:
    dirs = sorted(p.parent for p in corpus.glob("*/truth.json"))
    work = [(str(d), m, label, alg, prof) for label, alg, prof in systems for m in modes
            for d in dirs]
    results: dict[tuple[str, str], list[ev.Score]] = {}
    if jobs <= 1:
        scored = map(_score_one, work)
    else:
        pool = Pool(jobs)
        scored = pool.imap(_score_one, work, chunksize=1)
    for label, mode, sc in scored:
        results.setdefault((label, mode), []).append(sc)
    if jobs > 1:
        pool.close()
    return results


def table(results: dict[tuple[str, str], list[ev.Score]], markdown: bool = False) -> str:
    """Rows: scenario type x system x mode (then ALL), the evaluate columns."""
    cols = ("type", "system", "mode") + ev.COLUMNS[1:]
    rows, labels = [], []
    types = [t for t, _ in ev.by_type(next(iter(results.values())))]
    for t in types:
        for (label, mode), scores in results.items():
            summary = dict(ev.by_type(scores))[t]
            rows.append((t, summary))
            labels.append((label, mode))
    cells = [ev.table_cells(t, s) for t, s in rows]
    cells = [[c[0], lab, mode] + c[1:] for c, (lab, mode) in zip(cells, labels)]
    if markdown:
        out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        return "\n".join(out + ["| " + " | ".join(c) + " |" for c in cells])
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(cols)]
    fmt = lambda r: "  ".join(v.ljust(widths[i]) if i < 3 else v.rjust(widths[i])  # noqa: E731
                              for i, v in enumerate(r))
    return "\n".join([fmt(cols)] + [fmt(c) for c in cells])


def target_rows(results: dict[tuple[str, str], list[ev.Score]]
                ) -> list[tuple[targets.Target, str, str, str, bool]]:
    """Every profile's targets (``targets.TARGETS``) checked against these results."""
    return targets.check({key: dict(ev.by_type(scores)) for key, scores in results.items()})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", help="a scenario folder (default: the repo's scenarios)")
    ap.add_argument("--out", help="also write the table as markdown here")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--variants", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--modes", default=",".join(MODES),
                    help=f"comma-separated, of {', '.join(ALL_MODES)}")
    a = ap.parse_args(argv)
    modes = tuple(a.modes.split(","))
    unknown = set(modes) - set(ALL_MODES)
    if unknown:
        ap.error(f"--modes: unknown {', '.join(sorted(unknown))}")
    corpus = (pathlib.Path(a.corpus) if a.corpus
              else ensure_scenarios(CACHE / f"{a.variants}x{a.seconds:g}", a.variants, a.seconds))
    if not any(corpus.glob("*/truth.json")):
        ap.error(f"--corpus: no scenario (<scenario>/truth.json) in {corpus}")
    t0 = time.perf_counter()
    results = run(corpus, a.jobs, modes=modes)
    text = table(results)
    rows = target_rows(results)
    met = f"{sum(ok for *_, ok in rows)} of {len(rows)} met"
    print(text)
    print(f"\nWhat each profile promises (benchmarks/quality/targets.py): {met}\n"
          f"{targets.table(rows)}")
    took = time.perf_counter() - t0
    print(f"\n{len(next(iter(results.values())))} scenarios x {len(SYSTEMS)} systems x "
          f"{len(modes)} modes in {took:.0f} s", file=sys.stderr)
    if a.out:
        pathlib.Path(a.out).write_text(
            f"# Switching quality\n\nCorpus: `{a.corpus or 'speakerswitch scenarios'}` "
            f"({len(next(iter(results.values())))} scenarios). Machine: {platform.machine()}, "
            f"{os.cpu_count()} cores, Python {platform.python_version()}. "
            f"Regenerate with `make bench-quality`.\n\n{table(results, markdown=True)}\n\n"
            f"## What each profile promises\n\n`benchmarks/quality/targets.py`, checked on this "
            f"run: {met}.\n\n"
            f"{targets.table(rows, markdown=True)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
