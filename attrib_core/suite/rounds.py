"""When a cell has timed enough rounds: as soon as its interval is as narrow as the preset asks.

A fixed count wastes a slow machine's time on cells that were settled after three rounds and
stops noisy ones before they are. The rule, checked before each round:

- fewer than `min_rounds`: go on;
- `max_rounds` reached: stop ("max_rounds");
- the 95% interval of the rounds' geometric mean is within +-`target_halfwidth` of it: stop
  ("interval");
- the rounds have used the cell's time budget `max_time_s`: stop ("time_budget").

The interval is a t interval on log round times, the scale the comparison rule works on
(attrib_core/analysis/timing_rule.py). Rounds inside one process are not independent draws (they
share its state), so this interval is narrower than the between-run one `compare` reports: it
says when more rounds of THIS block stop paying, not how far another run may land. The
geometric mean stands in for the median, which has no interval worth the name at 3 to 10 rounds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from attrib_core.sweep import Timing

CONFIDENCE = 0.95
MAX_ROUNDS, INTERVAL, TIME_BUDGET = "max_rounds", "interval", "time_budget"


class EnoughRounds(Exception):
    """Raised by the round's setup to end pytest-benchmark's loop before its `rounds`."""


def relative_halfwidth(samples_s: Sequence[float]) -> float:
    """Half-width of the 95% interval of the geometric mean, as a fraction of it (inf below 2 rounds)."""
    if len(samples_s) < 2:
        return math.inf
    logs = np.log(np.asarray(samples_s, dtype=float))
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, len(logs) - 1) * logs.std(ddof=1) / math.sqrt(len(logs))
    return float(np.expm1(half))


@dataclass(frozen=True)
class RoundRule:
    min_rounds: int
    max_rounds: int
    budget_s: float
    target_halfwidth: float | None  # None: no interval stop, rounds go on to the budget

    @classmethod
    def of(cls, timing: Timing) -> RoundRule:
        return cls(timing.min_rounds, timing.max_rounds, timing.max_time_s, timing.target_halfwidth)

    def stop_reason(self, samples_s: Sequence[float]) -> str | None:
        """Why no further round is needed after these, or None to time another."""
        if len(samples_s) >= self.max_rounds:
            return MAX_ROUNDS
        if len(samples_s) < self.min_rounds:
            return None
        if self.target_halfwidth is not None and relative_halfwidth(samples_s) <= self.target_halfwidth:
            return INTERVAL
        if sum(samples_s) >= self.budget_s:
            return TIME_BUDGET
        return None


@dataclass
class RoundStopper:
    """pytest-benchmark's `setup` for each round: ends the loop (EnoughRounds) when the rule says
    so, otherwise runs `before_round` (the limit's paired passes) and lets the round be timed."""

    rule: RoundRule
    samples: Callable[[], Sequence[float]]  # the rounds timed so far
    before_round: Callable[[], None]
    reason: str | None = None

    def __call__(self) -> None:
        self.reason = self.rule.stop_reason(self.samples())
        if self.reason is not None:
            raise EnoughRounds(self.reason)
        self.before_round()

    def record(self, samples_s: Sequence[float]) -> dict[str, object]:
        """What the results file keeps of the stop: why, and how narrow the interval got."""
        halfwidth = relative_halfwidth(samples_s)
        return {
            "stopped_by": self.reason or self.rule.stop_reason(samples_s) or MAX_ROUNDS,
            "halfwidth": None if math.isinf(halfwidth) else halfwidth,
            "target_halfwidth": self.rule.target_halfwidth,
        }
