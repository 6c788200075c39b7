"""Regression decisions: is a new run slower, hungrier or less faithful than a baseline?

Pure functions of two results tables (`attrib_core.analysis.results.load_results`): no torch, no
files, no printing, so CI, the proof script and the tests share one rule. Each side may
hold several runs (processes) of the same cells: a cell's rounds are pooled across them.

Per cell that is "ok" on both sides:

- **time**: the samples are first normalised so that a uniformly faster or slower machine
  cancels out (`NORMALISATIONS`; default "run-median": the new samples are divided by the
  median over cells of stat(now) / stat(baseline), which holds while fewer than half the
  cells slow down). The cell has regressed when BOTH a one-sided Mann-Whitney U test on the
  normalised samples finds the new ones larger (p < alpha, default 0.01) AND the normalised
  ratio of a location statistic exceeds `time_factor` (default 1.3). As in asv: the test
  keeps a ratio that a few odd rounds produced from deciding alone, the factor keeps real but
  small shifts (which a test on many rounds always finds) from failing a build. The
  statistic is the minimum over the pooled rounds ("median" is the alternative): on a
  shared machine interference only adds time, so the fastest round is the steadiest.
  Measured with bench/regress_proof.py (README): on a shared 2-core machine the normalised
  ratio of identical reruns reached 1.27 at the 95th percentile, so 1.3 sits above the
  noise. The minimum beat the median (fewer false alarms, more detections), run-median beat
  no normalisation; "calibration" (each cell over its workload's own forward+backward time
  in the same run) raised fewer false alarms but missed more slowdowns.
- **memory**: CPU peak bytes are deterministic for a given torch, so the bound is tight:
  regressed when now > baseline x `memory_factor` + `memory_slack_bytes` (1.01, 4 KiB).
- **fidelity**: a `fid_<metric>` value that got worse (higher for error metrics, lower for
  those in `HIGHER_IS_BETTER`) by more than `fidelity_tolerance` x |baseline| +
  `fidelity_slack` (0.05 and 1e-3).
- A cell that failed now is a regression; a cell on one side only is reported, not failed.

When the CPU / GPU model, the torch / captum version or the thread count differ between
the sides, raw figures are not comparable: `Comparison.environment_changes` says so
(callers warn loudly), memory and fidelity changes are reported as "changed" without
failing, and only the normalised time decides.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu

NORMALISATIONS = ("run-median", "calibration", "none")
STATISTICS = ("min", "median")
ENVIRONMENT_COLUMNS = ("cpu_model", "gpu_name", "torch_version", "captum_version", "cuda_version")
# every other fidelity metric is an error: lower is better
HIGHER_IS_BETTER = frozenset({"insertion", "pointing_game", "relevance_mass", "relevance_rank", "top_k_intersection"})
STATISTIC_FUNCTIONS = {"min": np.min, "median": np.median}
MIN_CELLS_FOR_RUN_MEDIAN = 3  # a median of fewer ratios is not robust to one slowed cell

OK, REGRESSED, IMPROVED, FAILED = "ok", "regressed", "improved", "failed"
CHANGED = "changed"  # would have regressed, but the environment differs, so it does not decide
UNCHECKED, MISSING, NEW = "unchecked", "missing", "new"
FAILING = frozenset({REGRESSED, FAILED})
VERDICT_ORDER = (FAILED, REGRESSED, CHANGED, MISSING, UNCHECKED, NEW, IMPROVED, OK)  # worst first


class RegressionInputError(ValueError):
    """Two sides that cannot be compared: one has no cells, or they have no cell in common."""


@dataclass(frozen=True)
class Thresholds:
    """What counts as a regression; defaults chosen from measured noise (see the README)."""

    time_factor: float = 1.3
    alpha: float = 0.01
    memory_factor: float = 1.01
    memory_slack_bytes: int = 4096
    fidelity_tolerance: float = 0.05
    fidelity_slack: float = 1e-3
    normalisation: str = "run-median"
    statistic: str = "min"

    def __post_init__(self) -> None:
        checks = (
            ("time_factor", self.time_factor, self.time_factor > 1, "a number > 1, e.g. 1.3"),
            ("alpha", self.alpha, 0 < self.alpha < 1, "a number between 0 and 1, e.g. 0.01"),
            ("memory_factor", self.memory_factor, self.memory_factor >= 1, "a number >= 1, e.g. 1.01"),
            ("memory_slack_bytes", self.memory_slack_bytes, self.memory_slack_bytes >= 0, "a number >= 0"),
            ("fidelity_tolerance", self.fidelity_tolerance, self.fidelity_tolerance >= 0, "a number >= 0"),
            ("fidelity_slack", self.fidelity_slack, self.fidelity_slack >= 0, "a number >= 0"),
        )
        for name, value, valid, needs in checks:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or not valid:
                raise ValueError(f"{name}={value!r} is not valid; needs {needs}")
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"unknown normalisation {self.normalisation!r}; valid: {', '.join(NORMALISATIONS)}")
        if self.statistic not in STATISTICS:
            raise ValueError(f"unknown statistic {self.statistic!r}; valid: {', '.join(STATISTICS)}")


@dataclass(frozen=True)
class Check:
    """One figure of one cell, compared. For time, baseline and now are the statistic over the
    pooled rounds (seconds) and `ratio` is normalised: it decides."""

    cell_key: str
    kind: str  # "status", "time", "memory" or "fidelity:<metric>"
    verdict: str
    baseline: float | None = None
    now: float | None = None
    ratio: float | None = None
    raw_ratio: float | None = None
    p_value: float | None = None
    note: str = ""


@dataclass
class Comparison:
    checks: list[Check]
    normalisation: str  # the one actually used (a fallback can differ from the one asked for)
    time_scale: float | None  # run-median only: new times were divided by this
    environment_changes: dict[str, tuple[Any, Any]]  # column -> (baseline, now)
    warnings: list[str] = field(default_factory=list)

    @property
    def failing(self) -> list[Check]:
        return [c for c in self.checks if c.verdict in FAILING]

    def cell_verdicts(self) -> dict[str, str]:
        """Each cell's worst verdict over its checks."""
        verdicts: dict[str, str] = {}
        for c in self.checks:
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
    both_ok = [k for k in common if base_rows[k]["status"] == "ok" and now_rows[k]["status"] == "ok"]
    scales, used, time_scale, warnings = time_scales(
        {k: base_rows[k] for k in both_ok}, {k: now_rows[k] for k in both_ok}, th.normalisation, th.statistic
    )
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
            checks.append(time_check(key, base, row, *scales[key], th))
            checks.append(memory_check(key, base.get("peak_bytes"), row.get("peak_bytes"), th, decisive))
            checks.extend(fidelity_checks(key, base, row, th, decisive))
    return Comparison(checks, used, time_scale, env, warnings)


def environment_changes(baseline: pd.DataFrame, now: pd.DataFrame) -> dict[str, tuple[Any, Any]]:
    """Machine and library columns whose values differ between the two runs."""
    changes = {}
    for column in (*ENVIRONMENT_COLUMNS, "threads"):
        before, after = _values(baseline, column), _values(now, column)
        if before != after:
            changes[column] = (_one(before), _one(after))
    return changes


def time_scales(
    base_rows: dict[str, dict[str, Any]],
    now_rows: dict[str, dict[str, Any]],
    normalisation: str,
    statistic: str = "min",
) -> tuple[dict[str, tuple[float, float]], str, float | None, list[str]]:
    """Per cell (baseline divisor, new-run divisor) for the samples, the normalisation used,
    the run-median factor (or None) and warnings about fallbacks."""
    warnings: list[str] = []
    if normalisation == "run-median":
        pairs = [(_statistic(base_rows[k], statistic), _statistic(now_rows[k], statistic)) for k in base_rows]
        ratios = [now / base for base, now in pairs if base > 0 and now > 0]
        if len(ratios) >= MIN_CELLS_FOR_RUN_MEDIAN:
            factor = float(np.median(ratios))
            return {k: (1.0, factor) for k in base_rows}, normalisation, factor, warnings
        warnings.append(
            f"only {len(ratios)} cells timed in both runs (run-median needs {MIN_CELLS_FOR_RUN_MEDIAN}): "
            "normalising by calibration instead"
        )
        normalisation = "calibration"
    if normalisation == "calibration":
        scales = {k: (cost_bound(base_rows[k]), cost_bound(now_rows[k])) for k in base_rows}
        uncalibrated = sorted(k for k, (b, n) in scales.items() if not (b > 0 and n > 0))
        if uncalibrated:
            warnings.append(f"no calibration for {len(uncalibrated)} cells (e.g. {uncalibrated[0]}): raw times there")
        return (
            {k: (b, n) if b > 0 and n > 0 else (1.0, 1.0) for k, (b, n) in scales.items()},
            normalisation,
            None,
            warnings,
        )
    return {k: (1.0, 1.0) for k in base_rows}, "none", None, warnings


def cost_bound(row: dict[str, Any]) -> float:
    """The model's own time for the passes one call makes (see results.efficiency); NaN if unknown.

    Dividing a cell's time by it removes the machine's speed at running this model, measured
    in the same run; without a cost model, the per-sample forward+backward time stands in."""
    fb, fwd = _number(row.get("calib_forward_backward_s_per_sample")), _number(row.get("calib_forward_s_per_sample"))
    backward, forward = _number(row.get("passes_backward")), _number(row.get("passes_forward"))
    bound = backward * fb + (forward - backward) * fwd
    return bound if bound > 0 else fb


def time_check(
    key: str, base: dict[str, Any], now: dict[str, Any], base_scale: float, now_scale: float, th: Thresholds
) -> Check:
    """Mann-Whitney U (one-sided) on normalised samples AND a factor on the statistic's ratio."""
    base_s, now_s = _samples(base), _samples(now)
    if not len(base_s) or not len(now_s):
        return Check(key, "time", UNCHECKED, note="no timing samples")
    location = STATISTIC_FUNCTIONS[th.statistic]
    base_value, now_value = float(location(base_s)), float(location(now_s))
    raw_ratio = now_value / base_value if base_value > 0 else math.inf
    ratio = raw_ratio * base_scale / now_scale
    common = {"baseline": base_value, "now": now_value, "ratio": ratio, "raw_ratio": raw_ratio}
    least_p = smallest_p_value(len(base_s), len(now_s))
    if least_p >= th.alpha:
        note = f"{len(base_s)} and {len(now_s)} rounds cannot reach p < {th.alpha} (at best {least_p:.3g})"
        return Check(key, "time", UNCHECKED, note=note, **common)
    slower = float(mannwhitneyu(now_s / now_scale, base_s / base_scale, alternative="greater").pvalue)
    faster = float(mannwhitneyu(now_s / now_scale, base_s / base_scale, alternative="less").pvalue)
    if slower < th.alpha and ratio > th.time_factor:
        return Check(key, "time", REGRESSED, p_value=slower, **common)
    if faster < th.alpha and ratio < 1 / th.time_factor:
        return Check(key, "time", IMPROVED, p_value=faster, **common)
    return Check(key, "time", OK, p_value=min(slower, faster), **common)


def smallest_p_value(n: int, m: int) -> float:
    """The least one-sided p an exact Mann-Whitney U test can give for sample sizes n and m."""
    return 1.0 / math.comb(n + m, n)


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
        worse_by = (before - after) if metric in HIGHER_IS_BETTER else (after - before)
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
    return sorted(n for n in names if not n.endswith(("_status", "_time_s")))


# --- helpers ------------------------------------------------------------------------------


def _by_cell(df: pd.DataFrame, side: str) -> dict[str, dict[str, Any]]:
    """One pooled record per cell: rounds concatenated over runs, failed if any run failed."""
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
        pooled["samples_s"] = np.concatenate([_samples(r) for r in ok]) if ok else np.asarray([], dtype=float)
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


def _samples(row: dict[str, Any]) -> np.ndarray:
    samples = row.get("samples_s")
    if isinstance(samples, (list, tuple, np.ndarray)) and len(samples):
        values = np.asarray(samples, dtype=float)
        return values[np.isfinite(values)]
    return np.asarray([], dtype=float)


def _statistic(row: dict[str, Any], statistic: str) -> float:
    samples = _samples(row)
    return float(STATISTIC_FUNCTIONS[statistic](samples)) if len(samples) else math.nan
