"""attrib_core.tune.screen: predicting a whole call from its model passes (closed forms, a scripted
clock, and the chunk size a real probe pushes through the model)."""

from __future__ import annotations

import itertools

import pytest

from attrib_core import limit
from attrib_core.methods import Passes
from attrib_core.run import RunConfig, prepare
from attrib_core.tune import screen as tune_screen

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.usefixtures("one_thread")]


def test_prediction_counts_backward_rows_at_the_backward_pass_and_the_rest_at_the_forward():
    per_row = {limit.FORWARD: 1.0, limit.FORWARD_BACKWARD: 3.0}
    assert tune_screen.predicted_call_s(Passes(10, 8), per_row, limit.FORWARD_BACKWARD) == 8 * 3.0 + 2 * 1.0
    assert tune_screen.predicted_call_s(Passes(730, 0), {limit.FORWARD: 0.02}, None) == pytest.approx(14.6)


def scripted(times):
    """A clock whose successive (start, stop) pairs are `times` apart."""
    ticks = itertools.accumulate(t for pair in ((0.0, t) for t in times) for t in pair)
    return lambda: next(ticks)


def test_seconds_per_row_drops_the_warm_up_and_stops_at_the_budget():
    calls = []
    # a 2 s warm-up, then 1 s passes: a 3.5 s budget is spent after two timed passes
    per_row = tune_screen.seconds_per_row(lambda: calls.append(1), 4, 3.5, scripted([2.0, 1.0, 1.0, 1.0]))
    assert len(calls) == 3 and per_row == pytest.approx(1.0 / 4)
    calls.clear()
    # with room in the budget it takes PROBE_CALLS passes and the median of all but the first
    per_row = tune_screen.seconds_per_row(lambda: calls.append(1), 2, 100.0, scripted([9.0, 1.0, 3.0, 2.0]))
    assert len(calls) == tune_screen.PROBE_CALLS and per_row == pytest.approx(2.0 / 2)


def test_a_first_pass_longer_than_the_whole_budget_is_timed_once():
    calls = []
    per_row = tune_screen.seconds_per_row(lambda: calls.append(1), 256, 2.5, scripted([8.0, 7.0]))
    assert len(calls) == 1 and per_row == pytest.approx(8.0 / 256)


@pytest.mark.parametrize(
    ("method", "knobs", "chunk", "kinds"),
    [
        ("Occlusion", {"sliding_window_shapes": (1, 4, 4), "strides": (1, 4, 4), "perturbations_per_eval": 4}, 8, 1),
        ("IntegratedGradients", {"n_steps": 8, "internal_batch_size": 4}, 4, 2),
    ],
)
def test_probe_times_the_methods_kinds_of_pass_at_the_chunk_it_is_given(method, knobs, chunk, kinds):
    run = prepare(RunConfig(method, "digits_cnn", batch_size=2, knobs=knobs))
    with limit.rows_per_call(run.workload_model) as seen:
        probe = tune_screen.probe(run, chunk, budget_s=1e9)
    assert set(seen) == {chunk} and len(seen) == kinds * tune_screen.PROBE_CALLS
    assert set(probe["s_per_row"]) == set(limit.pass_kinds(run))
    assert probe["predicted_s"] > 0
