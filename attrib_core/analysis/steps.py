"""Step detection: the commits where a cell's level changed, told apart from run-to-run noise.

The method is asv's idea (`asv/step_detect.py`: fit a piecewise-constant line with a penalty
per step, L1 so that one odd run cannot drag a level), solved exactly by PELT from the
`ruptures` library on noise-standardised values:

1. One point per commit: the median of that commit's runs (several runs of one commit are
   allowed; they also measure the noise, step 2).
2. Standardise: z = log(value) / sigma for times and memory (a step is a ratio), value / sigma
   for other metrics. sigma is the run-to-run noise, the largest of: (a) the pooled spread of
   reruns of one commit, where the history has them; (b) a robust estimate from successive
   differences of the series (median |diff| / 0.954: unbiased for Gaussian noise, hardly moved
   by a few steps); (c) a floor (`NOISE_FLOOR`, 0.1%: deterministic metrics such as peak
   memory have no noise, and a change below that is not worth a step).
3. PELT with the L1 cost, segments of at least `min_segment` commits (default 2: a single odd
   run is indistinguishable from a busy machine; a new level shows once a second commit
   confirms it) and a penalty `PENALTY_PER_LOG_N * ln(n)` per step. The constant is calibrated
   by simulation (`python -m experiments.history.proof synthetic --penalty C`, its noise-only
   column): at 2.6, pure noise of 50 commits gave a step in 1 of 1200 histories, where 1.5
   gave one in 0.5-2% and found a 10% step less often (docs/measurements/history-proof.md). Real noise
   is heavier-tailed than the simulation's, hence the margin.
4. Each step's size is median(after) / median(before) - 1 over the runs of the segments
   either side, with a 95% bootstrap interval resampling those runs; a step whose interval
   holds 0 is removed (its neighbours merge) and the rest re-measured.
5. A step is still in force when the newest level still differs from the level before the
   step, in the step's direction, by at least half the step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import ruptures

PENALTY_PER_LOG_N = 2.6
NOISE_FLOOR = 1e-3
MIN_SEGMENT = 2
DIFF_MAD_TO_SIGMA = 0.6745 * np.sqrt(2)  # median |x_i - x_(i-1)| of N(0, s^2) noise is this x s
BOOTSTRAP_DRAWS = 2000
CONFIDENCE = 0.95


class StepError(ValueError):
    """Input that step detection cannot use; names the bad value."""


@dataclass(frozen=True)
class Step:
    """A level change: `commit` is the first commit of the new level."""

    index: int  # position of `commit` in the commit order
    commit: str
    previous_commit: str
    before: float  # median level of the segment before
    after: float  # median level of the segment after
    size: float  # after / before - 1 (log metrics) or after - before (linear metrics)
    low: float  # bootstrap interval of `size`
    high: float
    in_force: bool


@dataclass(frozen=True)
class Series:
    """One metric of one cell over commits, oldest first; `runs[i]` holds commit i's values."""

    commits: list[str]
    runs: list[np.ndarray]
    log: bool = True  # a change is a ratio (times, memory); False: a difference (fidelity)

    def __post_init__(self) -> None:
        if len(self.commits) != len(self.runs):
            raise StepError(f"{len(self.commits)} commits but {len(self.runs)} groups of runs")
        for commit, values in zip(self.commits, self.runs, strict=True):
            if len(values) == 0 or not np.all(np.isfinite(values)):
                raise StepError(f"commit {commit}: values must be finite and non-empty, got {list(values)}")
            if self.log and np.any(values <= 0):
                raise StepError(f"commit {commit}: a log-scale metric needs positive values, got {list(values)}")

    def transformed(self) -> list[np.ndarray]:
        return [np.log(v) if self.log else np.asarray(v, dtype=float) for v in self.runs]

    @property
    def points(self) -> np.ndarray:
        """One point per commit: the median of its runs (transformed)."""
        return np.array([np.median(v) for v in self.transformed()])


def rerun_noise(series: Series) -> float | None:
    """Pooled standard deviation of runs around their commit's mean, where commits were rerun."""
    groups = [v for v in series.transformed() if len(v) > 1]
    if not groups:
        return None
    squares = sum(float(np.sum((v - v.mean()) ** 2)) for v in groups)
    degrees = sum(len(v) - 1 for v in groups)
    return float(np.sqrt(squares / degrees))


def difference_noise(points: np.ndarray) -> float:
    """Robust noise of a piecewise-constant series from its successive differences."""
    if len(points) < 2:
        return 0.0
    return float(np.median(np.abs(np.diff(points))) / DIFF_MAD_TO_SIGMA)


def noise_sigma(series: Series, floor: float = NOISE_FLOOR) -> float:
    """The noise that a step must clear: reruns, successive differences, or the floor."""
    points = series.points
    scale = 1.0 if series.log else max(float(np.median(np.abs(points))), 1e-12)
    candidates = [difference_noise(points), floor * scale, rerun_noise(series) or 0.0]
    return max(candidates)


def penalty(n_points: int, per_log_n: float = PENALTY_PER_LOG_N) -> float:
    return per_log_n * np.log(max(n_points, 2))


def segment_breaks(z: np.ndarray, pen: float, min_segment: int = MIN_SEGMENT) -> list[int]:
    """Indices where a new segment starts (PELT, L1 cost, exact for jump=1)."""
    if len(z) < 2 * min_segment:
        return []
    algo = ruptures.Pelt(model="l1", min_size=min_segment, jump=1).fit(z.reshape(-1, 1))
    return [b for b in algo.predict(pen=pen) if b < len(z)]


def _pooled(runs: list[np.ndarray], start: int, end: int) -> np.ndarray:
    return np.concatenate(runs[start:end])


def _change(before: np.ndarray, after: np.ndarray, log: bool) -> np.ndarray:
    """Step size from (draws of) medians before and after."""
    return np.expm1(after - before) if log else after - before


def step_interval(before: np.ndarray, after: np.ndarray, log: bool, rng: np.random.Generator) -> tuple[float, float]:
    """95% bootstrap interval of the step size, resampling the runs of each side."""
    draws_before = np.median(rng.choice(before, size=(BOOTSTRAP_DRAWS, len(before))), axis=1)
    draws_after = np.median(rng.choice(after, size=(BOOTSTRAP_DRAWS, len(after))), axis=1)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(_change(draws_before, draws_after, log), [tail, 100 - tail])
    return float(low), float(high)


def _measure(series: Series, breaks: list[int], rng: np.random.Generator) -> list[Step]:
    runs = series.transformed()
    edges = [0, *breaks, len(runs)]
    newest = float(np.median(_pooled(runs, edges[-2], edges[-1])))
    steps = []
    for k, start in enumerate(breaks):
        before = _pooled(runs, edges[k], start)
        after = _pooled(runs, start, edges[k + 2])
        level_before, level_after = float(np.median(before)), float(np.median(after))
        size = float(_change(np.array(level_before), np.array(level_after), series.log))
        low, high = step_interval(before, after, series.log, rng)
        shift, now = level_after - level_before, newest - level_before
        untransform = np.exp if series.log else float
        steps.append(
            Step(
                index=start,
                commit=series.commits[start],
                previous_commit=series.commits[start - 1],
                before=float(untransform(level_before)),
                after=float(untransform(level_after)),
                size=size,
                low=low,
                high=high,
                in_force=bool(np.sign(now) == np.sign(shift) and abs(now) >= abs(shift) / 2),
            )
        )
    return steps


def detect_steps(
    series: Series,
    per_log_n: float = PENALTY_PER_LOG_N,
    min_segment: int = MIN_SEGMENT,
    floor: float = NOISE_FLOOR,
    seed: int = 0,
) -> tuple[list[Step], float]:
    """The steps of one series, oldest first, and the noise sigma they were judged against."""
    if min_segment < 1:
        raise StepError(f"min_segment must be >= 1, got {min_segment}")
    sigma = noise_sigma(series, floor)
    z = series.points / sigma
    breaks = segment_breaks(z, penalty(len(z), per_log_n), min_segment)
    rng = np.random.default_rng(seed)
    while True:
        steps = _measure(series, breaks, rng)
        unsure = [s for s in steps if s.low <= 0 <= s.high]
        if not unsure:
            return steps, sigma
        weakest = min(unsure, key=lambda s: abs(s.size) / max(s.high - s.low, 1e-300))
        breaks.remove(weakest.index)


def steps_table(steps: list[Step]) -> pd.DataFrame:
    return pd.DataFrame([s.__dict__ for s in steps])
