"""The perfect-detection oracle (benchmarks/quality/oracle.py) runs the floor rule on truth
speech spans: exact decisions on a hand-made conversation."""
from conftest import load_script


def load_oracle():
    return load_script("quality_oracle", "benchmarks/quality/oracle.py")


# p1 talks, pauses 1000 ms (a "yeah" by p2 lands in the pause), talks again, then p2 takes
# a real turn 400 ms after p1 stops.
TRUTH = {"scenario": "hand_00", "type": "backchannel", "duration_ms": 12000,
         "speech": {"p1": [[0, 3000], [4000, 6000]], "p2": [[3300, 3800], [6400, 9000]]},
         "floor": [[0, 6400, "p1"], [6400, 12000, "p2"]],
         "changes": [[6400, "p1", "p2"]]}


def test_a_short_hold_lets_the_yeah_in_a_long_pause_switch():
    o = load_oracle()
    # hold 600: p1 silent 600 ms at 3600, p2 has talked 300 >= 180 ms by then; p1, back at
    # 4000, must then wait out p2's own hold (p2 silent since 3800: 4400)
    assert o.decide(TRUTH, 600, 180, 1200, 250) == [
        (180.0, "p1"), (3600.0, "p2"), (4400.0, "p1"), (6600.0, "p2")]


def test_a_longer_hold_outlasts_the_yeah_and_delays_the_turn():
    o = load_oracle()
    # hold 800: the yeah ends at 3800, when p1's silence reaches 800 ms: no switch; the
    # turn at 6400 is shown when p1 has been silent 800 ms (6800), not at 6580
    assert o.decide(TRUTH, 800, 180, 1200, 250) == [(180.0, "p1"), (6800.0, "p2")]


def test_the_sweep_scores_each_setting_with_the_scorer():
    o = load_oracle()
    results = o.sweep([TRUTH], holds=(600, 800), talks=(180,))
    by = {(h, t): dict(summary) for h, t, summary in results}
    short, long_ = by[(600, 180)]["backchannel"], by[(800, 180)]["backchannel"]
    assert short["delay_median_ms"] == 200 and long_["delay_median_ms"] == 400
    assert short["false_per_min"] == 1 / (12000 / 60000)  # the yeah
    assert long_["false_per_min"] == 0
    table = o.report(results)
    assert table.splitlines()[0].startswith("| hold_ms | talk_ms | acc%")
    assert len(table.splitlines()) == 4


# p1 talks 0-6000; p2's failed interruption at 2000-2900 (p1 keeps going); p3 interrupts at
# 5000 and outlasts p1: the floor is p3's from 5000.
OVERLAP = {"scenario": "hand_01", "type": "overlap", "duration_ms": 10000,
           "speech": {"p1": [[0, 6000]], "p2": [[2000, 2900]], "p3": [[5000, 9000]]},
           "floor": [[0, 5000, "p1"], [5000, 10000, "p3"]],
           "changes": [[5000, "p1", "p3"]]}


def test_a_short_interrupt_shows_the_overlap_sooner_and_the_failed_interruption_too():
    o = load_oracle()
    # 600 ms of talk over p1: p2 at 2600 (false), p1 back at 3200 (600 ms of talk over p2,
    # who stopped at 2900), p3 at 5600: 600 ms after the change
    assert o.decide(OVERLAP, 700, 180, 600, 250) == [
        (180.0, "p1"), (2600.0, "p2"), (3200.0, "p1"), (5600.0, "p3")]
    # 1200 ms: the 900 ms interruption never switches; p3 is shown at 6200
    assert o.decide(OVERLAP, 700, 180, 1200, 250) == [(180.0, "p1"), (6200.0, "p3")]


def test_the_interrupt_sweep_reports_overlapping_changes_and_their_cost():
    o = load_oracle()
    results = o.interrupt_sweep([OVERLAP], interrupts=(600, 1200))
    short, long_ = (dict(by)["ALL"] for _need, by in results)
    assert short["overlap_changes"] == long_["overlap_changes"] == 1
    assert short["overlap_median_ms"] == 600 and long_["overlap_median_ms"] == 1200
    assert short["false_per_min"] == 1 / (10000 / 60000) and long_["false_per_min"] == 0
    table = o.report_interrupt(results)
    assert table.splitlines()[0].startswith("| interrupt_ms | acc%")
    assert len(table.splitlines()) == 4
