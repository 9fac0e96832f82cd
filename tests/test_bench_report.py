"""benchmarks/report.py judges the performance targets from pytest-benchmark's JSON: a
wrong verdict there would print 'met' over a figure that is not."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import report  # noqa: E402


def engine_runs(mean_ms_by_rooms: dict[int, float]) -> dict:
    return {f"test_engine_levels[{r}-10]": {"stats": {"mean": ms / 1000, "median": ms / 1000}}
            for r, ms in mean_ms_by_rooms.items()}


def test_a_linear_engine_is_met_with_its_fixed_and_marginal_costs():
    # 0.1 ms per tick + 40 ns per participant, exactly
    runs = engine_runs({r: 0.1 + r * 10 * 40e-6 for r in (1, 10, 100, 1000, 2000)})
    row = report.linearity_row(runs)
    assert row.met is True
    assert row.figure.startswith("0.10 ms per tick + 40 ns per participant from 10k to 20k "
                                 "(40 ns from 1k to 10k)")


def test_cost_that_grows_faster_than_the_batch_is_not_met():
    runs = engine_runs({1: 0.1, 10: 0.104, 100: 0.14, 1000: 0.5, 2000: 1.5})
    row = report.linearity_row(runs)
    assert row.met is False
    assert "2.50x the 1k-10k step" in row.why


def test_a_missing_size_is_not_measured():
    runs = engine_runs({1: 0.1, 10: 0.1, 100: 0.1, 1000: 0.5})
    assert report.linearity_row(runs).met is None


@pytest.mark.parametrize("engine,naive,met", [(24e6, 0.7e6, True), (20e6, 0.7e6, False),
                                              (6e6, 0.1e6, False)])
def test_engine_target_needs_both_the_rate_and_the_ratio(engine, naive, met):
    stats = {"stats": {"mean": 0.001, "median": 0.001}}
    runs = {"test_engine_levels[2000-10]": {"extra_info": {"participant_frames_per_s": engine},
                                            **stats},
            "test_naive_levels[2000-10]": {"extra_info": {"participant_frames_per_s": naive},
                                           **stats}}
    rows = report.targets(runs, None)
    assert rows[0].met is met


@pytest.mark.parametrize("one_ms,e100,e2000,met", [(0.025, 12e6, 20e6, (True, True)),
                                                    (0.040, 12e6, 20e6, (False, True)),
                                                    (0.025, 9e6, 20e6, (True, False)),
                                                    (0.025, 12e6, 17e6, (True, False))])
def test_the_engine_cost_targets_of_issue_21(one_ms, e100, e2000, met):
    def run(ms, pf=None):
        return {"stats": {"mean": ms / 1000, "median": ms / 1000},
                "extra_info": {} if pf is None else {"participant_frames_per_s": pf}}
    runs = {"test_engine_levels[1-10]": run(one_ms),
            "test_engine_levels[100-10]": run(0.1, e100),
            "test_engine_levels[2000-10]": run(1.0, e2000),
            "test_naive_levels[2000-10]": run(50.0, 0.2e6)}
    step, rate = report.engine_cost_rows(runs)
    assert (step.met, rate.met) == met
    assert step.figure == f"{one_ms * 1000:.1f} us"


@pytest.mark.parametrize("pps,met", [(60_000, True), (49_000, False), (None, None)])
def test_the_rtp_ingest_target(pps, met):
    runs = {} if pps is None else {"test_rtp_ingest[1000]": {
        "stats": {"mean": 1000 / pps, "median": 1000 / pps},
        "extra_info": {"packets_per_s": pps, "us_per_packet": 1e6 / pps}}}
    assert report.rtp_row(runs).met is met
