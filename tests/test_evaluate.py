"""Scoring on hand-made truths with exact expected figures."""
import json

import pytest

from service.tools import evaluate as ev
from service.cli import main

TRUTH = {"duration_ms": 60000, "scenario": "t", "type": "turns",
         "floor": [[1000, 20000, "a"], [20000, 40000, "b"], [40000, 60000, "a"]],
         "changes": [[20000, "a", "b"], [40000, "b", "a"]]}


def test_perfect_and_late_switches():
    s = ev.score(TRUTH, [(1000, "a"), (20300, "b"), (40000, "a")])
    assert s.delays == [300.0, 0.0] and s.missed == 0
    assert s.correct_ms == 59000 - 300 and s.accuracy == pytest.approx(58700 / 59000)
    assert (s.switches, s.false_switches, s.flicker) == (2, 0, 0)


def test_false_switch_flicker_and_miss():
    # c flashes on screen for 500 ms, and the return to a never happens
    s = ev.score(TRUTH, [(1000, "a"), (10000, "c"), (10500, "a"), (20100, "b")])
    assert s.false_switches == 1            # to c (the switch back to a is to the holder)
    assert s.flicker == 1
    assert s.delays == [100.0] and s.missed == 1
    assert s.correct_ms == (10000 - 1000) + (20000 - 10500) + (40000 - 20100)


def test_early_switch_within_tolerance_is_not_false():
    s = ev.score(TRUTH, [(1000, "a"), (19850, "b"), (40000, "a")])
    assert s.false_switches == 0 and s.delays == [0.0, 0.0]
    s = ev.score(TRUTH, [(1000, "a"), (19700, "b"), (40000, "a")])
    assert s.false_switches == 1


def test_same_time_last_wins_and_repeats_are_not_switches():
    tl = ev.timeline([(0, "a"), (500, "b"), (500, "a"), (900, "a"), (1000, None)], 60000)
    assert tl.speakers == ["a", None] and tl.switches == [(1000, "a", None)]


def test_summary_pools_delays_and_weights_accuracy_by_time():
    s1 = ev.score(TRUTH, [(1000, "a"), (20300, "b"), (40500, "a")])
    s2 = ev.score(TRUTH, [])
    agg = ev.summary([s1, s2])
    assert agg["accuracy"] == pytest.approx((59000 - 800) / 118000)
    assert agg["delay_median_ms"] == 400 and agg["missed"] == 2 and agg["changes"] == 4


def test_overlapping_changes_are_scored_apart():
    # b starts at 20 s while a still talks until 20.4 s (an overlap); a comes back at 40 s
    # after b stopped at 39.5 s (no overlap)
    truth = dict(TRUTH, speech={"a": [[1000, 20400], [40000, 59000]],
                                "b": [[20000, 39500]]})
    s = ev.score(truth, [(1000, "a"), (20700, "b"), (40100, "a")])
    assert s.delays == [700.0, 100.0] and s.overlap_delays == [700.0]
    agg = ev.summary([s, ev.score(truth, [(1000, "a")])])  # the second misses both
    assert agg["overlap_changes"] == 2 and agg["overlap_median_ms"] == 700
    assert ev.table_cells("x", agg)[-2:] == ["2", "700"]
    # a truth without speech spans (older files) has no overlapping changes
    assert ev.score(TRUTH, [(1000, "a"), (20700, "b")]).overlap_delays == []


def test_evaluate_cli_single_and_directory(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    (corpus / "turns_00").mkdir(parents=True)
    (corpus / "turns_00" / "truth.json").write_text(json.dumps(TRUTH))
    (corpus / "echo_00").mkdir()
    (corpus / "echo_00" / "truth.json").write_text(json.dumps(TRUTH | {"type": "echo"}))
    dec = tmp_path / "dec"
    dec.mkdir()
    (dec / "turns_00.jsonl").write_text('{"t_ms": 1000, "speaker": "a"}\n'
                                        '{"t_ms": 20300, "speaker": "b"}\n'
                                        '{"t_ms": 40000, "speaker": "a"}\n')
    assert main(["evaluate", "--truth", str(corpus / "turns_00" / "truth.json"),
                 "--decisions", str(dec / "turns_00.jsonl"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["delay_median_ms"] == 150 and d["false_per_min"] == 0
    assert main(["evaluate", "--truth", str(corpus), "--decisions", str(dec)]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == ["type", "turns", "echo", "ALL"]
    assert lines[1].split()[3] == "99.5" and lines[2].split()[3] == "0.0"
    assert "no decisions for 1 scenario(s): echo_00" in err


def test_evaluate_cli_bad_decisions(tmp_path, capsys):
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps(TRUTH))
    dec = tmp_path / "d.jsonl"
    dec.write_text('{"t": 1}\n')
    assert main(["evaluate", "--truth", str(truth), "--decisions", str(dec)]) == 2
    assert "d.jsonl:1" in capsys.readouterr().err
