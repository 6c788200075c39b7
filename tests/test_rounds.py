"""The rule that ends a cell's timed rounds: narrow interval, time budget or max_rounds."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from attrib_core.suite.rounds import (
    INTERVAL,
    MAX_ROUNDS,
    TIME_BUDGET,
    EnoughRounds,
    RoundRule,
    RoundStopper,
    relative_halfwidth,
)
from attrib_core.sweep import Timing


def test_halfwidth_is_the_t_interval_of_log_times():
    samples = [1.0, math.e**0.1, math.e**-0.1]  # logs 0, 0.1, -0.1: sd 0.1
    expected = math.expm1(stats.t.ppf(0.975, 2) * 0.1 / math.sqrt(3))
    assert relative_halfwidth(samples) == pytest.approx(expected, rel=1e-12)
    assert relative_halfwidth([0.5, 0.5, 0.5]) == 0.0
    assert relative_halfwidth([0.5]) == math.inf


def test_identical_rounds_stop_at_min_rounds():
    rule = RoundRule(min_rounds=3, max_rounds=10, budget_s=100.0, target_halfwidth=0.02)
    assert rule.stop_reason([0.1, 0.1]) is None
    assert rule.stop_reason([0.1, 0.1, 0.1]) == INTERVAL


def test_noisy_rounds_go_on_to_the_budget_or_max_rounds():
    noisy = [0.1, 0.2, 0.1, 0.2]  # a half-width far above 2%
    assert relative_halfwidth(noisy) > 0.02
    assert RoundRule(3, 10, budget_s=100.0, target_halfwidth=0.02).stop_reason(noisy) is None
    assert RoundRule(3, 10, budget_s=0.5, target_halfwidth=0.02).stop_reason(noisy) == TIME_BUDGET
    assert RoundRule(3, 4, budget_s=100.0, target_halfwidth=0.02).stop_reason(noisy) == MAX_ROUNDS


def test_min_rounds_holds_even_past_the_budget():
    rule = RoundRule(min_rounds=3, max_rounds=10, budget_s=0.01, target_halfwidth=0.02)
    assert rule.stop_reason([5.0, 9.0]) is None
    assert rule.stop_reason([5.0, 9.0, 7.0]) == TIME_BUDGET


def test_fixed_count_when_min_equals_max():
    rule = RoundRule.of(Timing(min_rounds=4, max_rounds=4, max_time_s=0.001))
    assert [rule.stop_reason([0.1] * n) for n in range(5)] == [None, None, None, None, MAX_ROUNDS]


def test_stopper_raises_before_the_round_it_saves_and_records_why():
    samples: list[float] = []
    paired = []
    stopper = RoundStopper(RoundRule(2, 10, 100.0, 0.02), lambda: samples, lambda: paired.append(len(samples)))
    for value in (0.3, 0.3):
        stopper()  # no stop: the limit's paired passes run, then the round is timed
        samples.append(value)
    with pytest.raises(EnoughRounds):
        stopper()
    assert paired == [0, 1]  # not run for the round that was saved
    assert stopper.record(samples) == {"stopped_by": INTERVAL, "halfwidth": 0.0, "target_halfwidth": 0.02}


def test_stopper_record_when_the_loop_ran_out():
    samples = [0.1, 0.3]
    stopper = RoundStopper(RoundRule(1, 2, 100.0, 0.02), lambda: samples, lambda: None)
    record = stopper.record(samples)
    assert record["stopped_by"] == MAX_ROUNDS
    assert record["halfwidth"] == pytest.approx(relative_halfwidth(samples))
