"""Step detection on series whose steps are known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from attrib_core.analysis.steps import (
    DIFF_MAD_TO_SIGMA,
    Series,
    StepError,
    detect_steps,
    difference_noise,
    noise_sigma,
    rerun_noise,
)


def series(values, log: bool = True) -> Series:
    return Series([f"c{i:02d}" for i in range(len(values))], [np.atleast_1d(v).astype(float) for v in values], log)


def wobble(n: int, level: float, spread: float = 0.01) -> list[float]:
    """Deterministic +-spread around a level (alternating), so tests need no random draws."""
    return [level * (1 + spread * (-1) ** i) for i in range(n)]


def test_one_step_found_at_its_commit_with_its_size():
    steps, sigma = detect_steps(series(wobble(10, 1.0) + wobble(10, 1.2)))
    assert len(steps) == 1
    step = steps[0]
    assert (step.index, step.commit, step.previous_commit) == (10, "c10", "c09")
    assert step.size == pytest.approx(0.2, abs=0.02)
    assert step.low <= 0.2 <= step.high and step.low > 0
    assert step.in_force
    assert sigma == pytest.approx((np.log(1.01) - np.log(0.99)) / DIFF_MAD_TO_SIGMA, rel=1e-3)  # the wobble


def test_step_that_is_undone_is_not_in_force():
    steps, _ = detect_steps(series(wobble(8, 1.0) + wobble(8, 1.5) + wobble(8, 1.0)))
    assert [s.index for s in steps] == [8, 16]
    assert steps[0].size == pytest.approx(0.5, abs=0.05)
    assert steps[1].size == pytest.approx(-1 / 3, abs=0.05)
    assert not steps[0].in_force  # back to the level before it
    assert steps[1].in_force


def test_single_outlier_run_is_not_a_step():
    values = wobble(20, 1.0)
    values[9] = 3.0  # one run on a busy machine
    steps, _ = detect_steps(series(values))
    assert steps == []


def test_noise_alone_rarely_gives_a_step():
    rng = np.random.default_rng(7)
    histories_with_steps = sum(
        bool(detect_steps(series(np.exp(rng.normal(0, 0.05, 50))), seed=i)[0]) for i in range(10)
    )
    assert histories_with_steps <= 1


def test_linear_metric_reports_a_difference():
    steps, _ = detect_steps(series(wobble(6, 0.50) + wobble(6, 0.80), log=False))
    assert len(steps) == 1
    assert steps[0].size == pytest.approx(0.30, abs=0.02)
    assert (steps[0].before, steps[0].after) == pytest.approx((0.50, 0.80), abs=0.01)


def test_reruns_of_one_commit_set_the_noise():
    s = series([[1.0, 3.0], [2.0, 4.0], 5.0], log=False)
    assert rerun_noise(s) == pytest.approx(np.sqrt(2.0))  # (2 + 2) / (1 + 1) degrees of freedom
    assert noise_sigma(s) >= np.sqrt(2.0)
    assert rerun_noise(series([1.0, 2.0, 3.0])) is None


def test_difference_noise_closed_form():
    points = np.array([0.0, 1.0, 0.0, 1.0, 0.0])
    assert difference_noise(points) == pytest.approx(1.0 / DIFF_MAD_TO_SIGMA)


def test_deterministic_metric_uses_the_floor():
    steps, sigma = detect_steps(series([1000.0] * 6 + [1100.0] * 6))
    assert sigma == pytest.approx(1e-3)
    assert len(steps) == 1 and steps[0].size == pytest.approx(0.1)


def test_too_short_history_has_no_steps():
    assert detect_steps(series([1.0, 2.0, 2.0]))[0] == []


@pytest.mark.parametrize(
    ("values", "log", "message"),
    [([1.0, -2.0], True, "positive"), ([1.0, float("nan")], False, "finite"), ([1.0, []], False, "non-empty")],
)
def test_bad_values_are_named(values, log, message):
    with pytest.raises(StepError, match=message):
        Series(["a", "b"], [np.atleast_1d(np.asarray(v, dtype=float)) for v in values], log)


def test_bad_min_segment():
    with pytest.raises(StepError, match="min_segment"):
        detect_steps(series([1.0] * 4), min_segment=0)
