"""Regression decisions: is a new run slower, hungrier or less faithful than a baseline?

Pure functions of two results tables (`attrib_core.analysis.results.load_results`): no torch, no
files, no printing, so CI, the proof script and the tests share one rule. Each side may
hold several runs (processes) of the same cells: a cell's rounds are pooled across them.

Per cell that is "ok" on both sides:

- **time**: decided by the one timing rule (`attrib_core.analysis.timing_rule`, shared with
  `attrib-bench compare`): blocks (A/B blocks, or one block per file = process) are the
  units, so between-run variation is in every interval; paired by ABBA group within an A/B
  session, Welch on processes otherwise; Holm over every cell plus a run-level "all cells"
  member at family-wise `alpha` (0.05), and a minimal effect `min_effect` (1.03). Nothing
  is normalised away: a slowdown shared by every cell fails the run-level member. Too few
  blocks (one file per side) is "unchecked" with the reason, never a pass in disguise.
- **memory**: CPU peak bytes are deterministic for a given torch, so the bound is tight:
  regressed when now > baseline x `memory_factor` + `memory_slack_bytes` (1.01, 4 KiB).
- **fidelity**: a `fid_<metric>` value that got worse (higher for error metrics, lower for
  those whose records say `lower_is_better: false`) by more than `fidelity_tolerance` x |baseline| +
  `fidelity_slack` (0.05 and 1e-3).
- A cell that failed now is a regression; a cell on one side only is reported, not failed.

When the CPU / GPU model, the torch / captum version or the thread count differ between
the sides, `Comparison.environment_changes` says so (callers warn loudly) and memory and
fidelity changes are reported as "changed" without failing. Time still decides when only
software differs (that is what an A/B of two environments asks); when the hardware or the
thread count differs, a slower time is "changed" too: another machine is not a regression.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from attrib_core.analysis import timing_rule
from attrib_core.analysis.timing_rule import RUN_LEVEL, CellTiming, RuleSettings, TimingInputError, TimingResult

ENVIRONMENT_COLUMNS = ("cpu_model", "gpu_name", "torch_version", "captum_version", "cuda_version")
HARDWARE_COLUMNS = ("cpu_model", "gpu_name", "threads")  # a change here makes times incomparable

OK, REGRESSED, IMPROVED, FAILED = "ok", "regressed", "improved", "failed"
CHANGED = "changed"  # would have regressed, but the environment differs, so it does not decide
UNCHECKED, MISSING, NEW = "unchecked", "missing", "new"
FAILING = frozenset({REGRESSED, FAILED})
VERDICT_ORDER = (FAILED, REGRESSED, CHANGED, MISSING, UNCHECKED, NEW, IMPROVED, OK)  # worst first


class RegressionInputError(ValueError):
    """Two sides that cannot be compared: one has no cells, or they have no cell in common."""


@dataclass(frozen=True)
class Thresholds:
    """What counts as a regression; defaults chosen from measured noise (see docs/ab-regress.md)."""

    alpha: float = 0.05  # family-wise, over every cell's time plus the run-level member
    min_effect: float = 1.03  # the smallest time ratio called slower / faster
    statistic: str = "min"  # a block's time over its rounds (timing_rule.STATISTICS)
    memory_factor: float = 1.01
    memory_slack_bytes: int = 4096
    fidelity_tolerance: float = 0.05
    fidelity_slack: float = 1e-3

    def __post_init__(self) -> None:
        checks = (
            ("min_effect", self.min_effect, self.min_effect >= 1, "a factor >= 1, e.g. 1.03"),
            ("alpha", self.alpha, 0 < self.alpha < 1, "a number between 0 and 1, e.g. 0.05"),
            ("memory_factor", self.memory_factor, self.memory_factor >= 1, "a number >= 1, e.g. 1.01"),
            ("memory_slack_bytes", self.memory_slack_bytes, self.memory_slack_bytes >= 0, "a number >= 0"),
            ("fidelity_tolerance", self.fidelity_tolerance, self.fidelity_tolerance >= 0, "a number >= 0"),
            ("fidelity_slack", self.fidelity_slack, self.fidelity_slack >= 0, "a number >= 0"),
        )
        for name, value, valid, needs in checks:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or not valid:
                raise ValueError(f"{name}={value!r} is not valid; needs {needs}")
        self.timing()  # the rule checks its own settings (the block statistic)

    def timing(self) -> RuleSettings:
        return RuleSettings(alpha=self.alpha, min_effect=self.min_effect, statistic=self.statistic)


@dataclass(frozen=True)
class Check:
    """One figure of one cell, compared. For time, baseline and now are the median block
    statistic of each side (seconds), `ratio` now / baseline with its interval [ci_low, ci_high],
    `p_value` the test's and `p_adjusted` Holm's (see timing_rule)."""

    cell_key: str
    kind: str  # "status", "time", "memory" or "fidelity:<metric>"
    verdict: str
    baseline: float | None = None
    now: float | None = None
    ratio: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    note: str = ""


@dataclass
class Comparison:
    checks: list[Check]  # time checks include the run-level member (cell_key RUN_LEVEL)
    timing: TimingResult | None  # None when no cell was timed on both sides
    environment_changes: dict[str, tuple[Any, Any]]  # column -> (baseline, now)
    warnings: list[str] = field(default_factory=list)

    @property
    def failing(self) -> list[Check]:
        return [c for c in self.checks if c.verdict in FAILING]

    def cell_verdicts(self) -> dict[str, str]:
        """Each cell's worst verdict over its checks (the run-level member is not a cell)."""
        verdicts: dict[str, str] = {}
        for c in self.checks:
            if c.cell_key == RUN_LEVEL:
                continue
            old = verdicts.get(c.cell_key)
            if old is None or VERDICT_ORDER.index(c.verdict) < VERDICT_ORDER.index(old):
                verdicts[c.cell_key] = c.verdict
        return verdicts


# --- the comparison ---------------------------------------------------------------------


def compare(baseline: pd.DataFrame, now: pd.DataFrame, thresholds: Thresholds | None = None) -> Comparison:
    """Every cell of the two sides compared; raises RegressionInputError when they cannot be."""
    th = thresholds or Thresholds()
    base_rows, now_rows = _by_cell(baseline, "baseline"), _by_cell(now, "new run")
    common = [k for k in now_rows if k in base_rows]
    if not common:
        raise RegressionInputError(
            f"the baseline and the new run have no cell in common (baseline: {len(base_rows)} cells, e.g. "
            f"{_examples(base_rows)}; new run: {len(now_rows)} cells, e.g. {_examples(now_rows)}); "
            "was the baseline recorded with another preset?"
        )
    env = environment_changes(baseline, now)
    decisive = not env
    time_decisive = not any(column in env for column in HARDWARE_COLUMNS)
    both_ok = [k for k in common if base_rows[k]["status"] == "ok" and now_rows[k]["status"] == "ok"]
    timing = None
    if both_ok:
        try:
            timing = timing_rule.compare_timing(baseline, now, th.timing(), keys=both_ok)
        except TimingInputError as exc:
            raise RegressionInputError(str(exc)) from None
    warnings = list(timing.warnings) if timing else []
    if _values(baseline, "preset_sha256") != _values(now, "preset_sha256"):
        warnings.append("the preset file changed since the baseline: cells are matched by key; re-record the baseline")
    checks: list[Check] = []
    for key in base_rows:
        if key not in now_rows:
            checks.append(Check(key, "status", MISSING, note="in the baseline, not in the new run"))
    for key, row in now_rows.items():
        if key not in base_rows:
            checks.append(Check(key, "status", NEW, note="not in the baseline"))
        elif row["status"] != "ok":
            checks.append(Check(key, "status", FAILED, note=str(row.get("error") or "failed")))
        elif base_rows[key]["status"] != "ok":
            checks.append(Check(key, "status", UNCHECKED, note="failed in the baseline: nothing to compare with"))
        else:
            base = base_rows[key]
            checks.append(time_check(timing.cells[key], time_decisive))
            checks.append(memory_check(key, base.get("peak_bytes"), row.get("peak_bytes"), th, decisive))
            checks.extend(fidelity_checks(key, base, row, th, decisive))
    if timing is not None:
        checks.append(time_check(timing.run_level, time_decisive))
    return Comparison(checks, timing, env, warnings)


def environment_changes(baseline: pd.DataFrame, now: pd.DataFrame) -> dict[str, tuple[Any, Any]]:
    """Machine and library columns whose values differ between the two runs."""
    changes = {}
    for column in (*ENVIRONMENT_COLUMNS, "threads"):
        before, after = _values(baseline, column), _values(now, column)
        if before != after:
            changes[column] = (_one(before), _one(after))
    return changes


TIME_VERDICTS = {
    timing_rule.SLOWER: REGRESSED,
    timing_rule.FASTER: IMPROVED,
    timing_rule.SAME: OK,
    timing_rule.UNDETERMINED: UNCHECKED,
}


def time_check(cell: CellTiming, decisive: bool = True) -> Check:
    """The timing rule's verdict as a check; a slowdown on other hardware is "changed", not failed."""
    verdict, note = TIME_VERDICTS[cell.verdict], cell.note
    if verdict == REGRESSED and not decisive:
        verdict, note = CHANGED, "other hardware or thread count: not decisive"
    return Check(
        cell.cell_key,
        "time",
        verdict,
        _or_none(cell.base_s),
        _or_none(cell.new_s),
        _or_none(cell.ratio),
        _or_none(cell.low),
        _or_none(cell.high),
        _or_none(cell.p_value),
        _or_none(cell.p_adjusted),
        note=note,
    )


def _or_none(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def memory_check(key: str, base: Any, now: Any, th: Thresholds, decisive: bool = True) -> Check:
    base_b, now_b = _number(base), _number(now)
    if math.isnan(base_b) or math.isnan(now_b):
        return Check(key, "memory", UNCHECKED, base_b, now_b, note="no peak memory on one side")
    ratio = now_b / base_b if base_b > 0 else (1.0 if now_b == 0 else math.inf)
    verdict = OK
    if now_b > base_b * th.memory_factor + th.memory_slack_bytes:
        verdict = REGRESSED if decisive else CHANGED
    elif now_b * th.memory_factor + th.memory_slack_bytes < base_b:
        verdict = IMPROVED
    note = "" if decisive or verdict != CHANGED else "environment differs: not decisive"
    return Check(key, "memory", verdict, base_b, now_b, ratio, note=note)


def fidelity_checks(
    key: str, base: dict[str, Any], now: dict[str, Any], th: Thresholds, decisive: bool = True
) -> list[Check]:
    checks = []
    for metric in fidelity_metrics(base):
        before, after = _number(base.get(f"fid_{metric}")), _number(now.get(f"fid_{metric}"))
        kind = f"fidelity:{metric}"
        if math.isnan(before) and math.isnan(after):
            continue  # not applicable to this method, on both sides
        if math.isnan(before) or math.isnan(after):
            checks.append(Check(key, kind, UNCHECKED, before, after, note="a value on one side only"))
            continue
        direction = base.get(f"fid_{metric}_lower_is_better")
        lower_is_better = True if direction is None or pd.isna(direction) else bool(direction)
        worse_by = (after - before) if lower_is_better else (before - after)
        allowed = th.fidelity_tolerance * abs(before) + th.fidelity_slack
        ratio = after / before if before != 0 else (1.0 if after == 0 else math.inf)
        verdict = OK
        if worse_by > allowed:
            verdict = REGRESSED if decisive else CHANGED
        elif -worse_by > allowed:
            verdict = IMPROVED
        note = "environment differs: not decisive" if verdict == CHANGED else ""
        checks.append(Check(key, kind, verdict, before, after, ratio, note=note))
    return checks


def fidelity_metrics(row: dict[str, Any]) -> list[str]:
    """Metric names from a row's fid_<metric> columns (not their _status / _time_s companions)."""
    names = (c[len("fid_") :] for c in row if c.startswith("fid_"))
    return sorted(n for n in names if not n.endswith(("_status", "_time_s", "_lower_is_better")))


# --- helpers ------------------------------------------------------------------------------


def _by_cell(df: pd.DataFrame, side: str) -> dict[str, dict[str, Any]]:
    """One record per cell for status, memory and fidelity (time reads the blocks of every run):
    failed if any run failed; peak bytes the largest, fidelity and calibration the median."""
    if df is None or df.empty or "cell_key" not in df:
        raise RegressionInputError(f"the {side} has no cells")
    cells: dict[str, dict[str, Any]] = {}
    for key, rows in df.groupby("cell_key", sort=False):
        records = rows.to_dict("records")
        ok = [r for r in records if r.get("status") == "ok"]
        pooled = dict(ok[0] if ok else records[0])
        if len(ok) < len(records):
            failed = next(r for r in records if r.get("status") != "ok")
            pooled.update(status=failed.get("status") or "failed", error=failed.get("error"))
        pooled["runs"] = len(records)
        for column in rows.columns:
            if column == "peak_bytes" or column.startswith(("fid_", "calib_")):
                values = [_number(r.get(column)) for r in ok]
                values = [v for v in values if not math.isnan(v)]
                if values:
                    pooled[column] = max(values) if column == "peak_bytes" else float(np.median(values))
        cells[str(key)] = pooled
    return cells


def _values(df: pd.DataFrame, column: str) -> tuple[Any, ...]:
    if column not in df:
        return ()
    return tuple(sorted({str(v) for v in df[column].dropna()}))


def _one(values: Sequence[Any]) -> Any:
    return values[0] if len(values) == 1 else (None if not values else ", ".join(values))


def _examples(rows: dict[str, Any]) -> str:
    return ", ".join(list(rows)[:2]) or "none"


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number
