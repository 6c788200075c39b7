"""The one timing comparison rule: is side B (candidate) slower or faster than side A (base)?

`attrib-bench compare` and `regress` both decide through `compare_timing`; nothing else
judges timings. Torch-free: two tables from `attrib_core.analysis.results.load_results` in,
one `TimingResult` out.

Why blocks, not rounds. Rounds inside one process share that process's state (memory
layout, CPU frequency, what the neighbours were doing in those seconds), so they are not
independent draws: a bootstrap over them measures the noise inside one run and leaves out
the run-to-run drift that dominates on a shared machine. The unit here is the BLOCK (a run
of consecutive rounds of one cell, `extra_info["blocks"]`). A record without blocks (an
ordinary `pytest bench` run) is one block whose process is its file, so several files =
several processes. A block's statistic is its fastest round by default (`statistic="min"`;
"median" is the alternative): interference on a shared machine only adds time, and
measured over 6 separate `ci` runs here the between-process spread of log(min) was smaller
than that of log(median) in all 11 cells (mean sd 0.049 against 0.068). The minimum sees
a slowdown that shifts every round (extra work in the model), not one that adds rare
stalls; the median is there for those.

Two designs, picked from the files, never from a flag:

- **paired** (both sides from one A/B session, opposite sides; `machine_info.attrib_bench.ab`):
  per ABBA group (`pair`) d = log(median of B's block statistics / median of A's). Drift
  within a group hits both sides alike and cancels. Test: one-sample t-test of the d's
  against 0; ratio exp(mean d), interval exp(mean d +- t * sd / sqrt(n)). Needs 3 pairs.
- **unpaired** (anything else: committed baselines, runs from different sessions): per side,
  the units are its processes (a plain file, or the `process` of A/B blocks) or, in a run made
  with several passes over its sweep (`[timing] passes`), each pass of each file: a later pass
  times every cell again in a shuffled order, so the machine's drift between passes is the
  between-run variation one run can carry (a process's own offset, e.g. its code layout, is
  shared by its passes; the minimal effect covers that). A unit's value is log of the median
  of its block statistics. Test: Welch's t-test on those logs; ratio exp(difference of means),
  Welch's interval. Needs 2 units per side (3 are better).

Why a t-test on log ratios and not a bootstrap or a sign test: with 3 to 10 units per side a
bootstrap over units has a handful of distinct resamples, so its percentile interval is too
narrow and its p-value lumpy; a sign-flip test over 8 pairs cannot go below 2/256 = 0.0078,
which Holm over 12 cells at alpha 0.05 (first threshold 0.05/13 = 0.0038) can never reject.
The t-test's p is continuous, its interval has the right width for small n when the log
block statistics are about normal (timings are close to log-normal, and a block's median
already tames single odd rounds), and heavy tails make it conservative, not liberal.

False alarms are controlled per run, not per cell: Holm's step-down over the family of every
determined cell PLUS one run-level member ("all cells": the mean over cells of the log ratio,
per pair or per process, tested the same way). The run-level member catches a slowdown that
reaches every cell but is too small for any one cell's test (the model's forward got slower,
torch regressed for every method). A cell is "slower" or "faster" only when its
Holm-adjusted p is below alpha AND its ratio is past the minimal effect (default 1.03):
on a shared machine two builds of identical code can differ by a few percent for reasons
nobody controls (code layout, which CPU the process lands on), which pyperf warns about
too; the floor stays below the 1.05x the proof checks for. The interval shown is the
unadjusted (1 - alpha) interval of the ratio.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

SLOWER, FASTER, SAME, UNDETERMINED = "slower", "faster", "same", "undetermined"
PAIRED, UNPAIRED = "paired", "unpaired"
RUN_LEVEL = "ALL CELLS (geometric mean)"
MIN_PAIRS = 3  # a t-test on 2 differences has 1 degree of freedom: an interval wider than any slowdown
MIN_PROCESSES = 2  # per side, unpaired: Welch needs a variance on each side
STATISTICS = {"min": np.min, "median": np.median}  # a block's statistic over its rounds


class TimingInputError(ValueError):
    """Sides that cannot be compared: no cell in common, or a file without raw rounds."""


@dataclass(frozen=True)
class RuleSettings:
    """Family-wise alpha over all cells + the run-level member, the smallest ratio called a
    change, and each block's statistic over its rounds."""

    alpha: float = 0.05
    min_effect: float = 1.03
    statistic: str = "min"

    def __post_init__(self) -> None:
        if self.statistic not in STATISTICS:
            raise ValueError(f"unknown block statistic {self.statistic!r}; valid: {', '.join(STATISTICS)}")
        for name, value, valid, needs in (
            ("alpha", self.alpha, 0 < self.alpha < 1, "a number between 0 and 1, e.g. 0.05"),
            ("min_effect", self.min_effect, self.min_effect >= 1, "a factor >= 1, e.g. 1.03"),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or not valid:
                raise ValueError(f"{name}={value!r} is not valid; needs {needs}")


@dataclass(frozen=True)
class Units:
    """One cell's log block statistics: `diffs` (paired: log B/A per pair) or `base` and
    `new` (unpaired: log statistic per process of each side)."""

    design: str
    diffs: np.ndarray = field(default_factory=lambda: np.empty(0))
    base: np.ndarray = field(default_factory=lambda: np.empty(0))
    new: np.ndarray = field(default_factory=lambda: np.empty(0))

    def shortage(self) -> str | None:
        """Why this cell cannot be decided (too few units), or None."""
        if self.design == PAIRED:
            if len(self.diffs) < MIN_PAIRS:
                return f"{len(self.diffs)} A/B pairs (ABBA groups): needs at least {MIN_PAIRS}"
            return None
        if min(len(self.base), len(self.new)) < MIN_PROCESSES:
            runs = f"{len(self.base)} and {len(self.new)} runs" if len(self.base) != len(self.new) else None
            runs = runs or f"{len(self.base)} run{'s' if len(self.base) != 1 else ''} per side"
            return (
                f"{runs}: between-run variation unknown; run A/B (nox -s regress), "
                f"pass at least {MIN_PROCESSES} runs per side (3 are better), or runs made with "
                f"[timing] passes >= {MIN_PROCESSES}"
            )
        return None


@dataclass(frozen=True)
class Estimate:
    """ratio = B / A (> 1: B slower), its (1 - alpha) interval, the test's two-sided p."""

    ratio: float
    low: float
    high: float
    p_value: float
    df: float


@dataclass(frozen=True)
class CellTiming:
    cell_key: str
    verdict: str
    design: str
    units_base: int
    units_new: int
    ratio: float = math.nan
    low: float = math.nan
    high: float = math.nan
    p_value: float = math.nan
    p_adjusted: float = math.nan
    base_s: float = math.nan  # median over the side's block statistics, for display
    new_s: float = math.nan
    note: str = ""


@dataclass
class TimingResult:
    cells: dict[str, CellTiming]
    run_level: CellTiming
    design: str
    settings: RuleSettings
    warnings: list[str] = field(default_factory=list)

    @property
    def flagged(self) -> list[CellTiming]:
        return [c for c in [*self.cells.values(), self.run_level] if c.verdict in (SLOWER, FASTER)]


# --- the statistics on arrays (the tests simulate families with these) ---------------------


def paired_estimate(diffs: np.ndarray, alpha: float) -> Estimate:
    """One-sample t on log ratios; all-equal differences give a zero-width interval (p 0 or 1)."""
    d = np.asarray(diffs, dtype=float)
    n, mean = len(d), float(np.mean(d))
    sd = float(np.std(d, ddof=1))
    if sd == 0 or not math.isfinite(sd):
        return _degenerate(mean, n - 1)
    se = sd / math.sqrt(n)
    return _estimate(mean, se, n - 1, alpha)


def welch_estimate(base: np.ndarray, new: np.ndarray, alpha: float) -> Estimate:
    """Welch's t on log statistics (new - base), with the Welch-Satterthwaite degrees of freedom."""
    a, b = np.asarray(base, dtype=float), np.asarray(new, dtype=float)
    mean = float(np.mean(b) - np.mean(a))
    va, vb = float(np.var(a, ddof=1)) / len(a), float(np.var(b, ddof=1)) / len(b)
    if va + vb == 0:
        return _degenerate(mean, len(a) + len(b) - 2)
    df = (va + vb) ** 2 / ((va**2 / (len(a) - 1) if va else 0) + (vb**2 / (len(b) - 1) if vb else 0))
    return _estimate(mean, math.sqrt(va + vb), df, alpha)


def _estimate(mean: float, se: float, df: float, alpha: float) -> Estimate:
    t = mean / se
    p = float(2 * stats.t.sf(abs(t), df))
    half = float(stats.t.ppf(1 - alpha / 2, df)) * se
    return Estimate(math.exp(mean), math.exp(mean - half), math.exp(mean + half), p, df)


def _degenerate(mean: float, df: float) -> Estimate:
    ratio = math.exp(mean)
    return Estimate(ratio, ratio, ratio, 1.0 if mean == 0 else 0.0, df)


def estimate(units: Units, alpha: float) -> Estimate:
    if units.design == PAIRED:
        return paired_estimate(units.diffs, alpha)
    return welch_estimate(units.base, units.new, alpha)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (monotone, capped at 1)."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    m = len(p)
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def run_level_units(per_cell: dict[str, Units], design: str, unit_ids: dict[str, tuple]) -> Units:
    """The "all cells" member: per pair (paired) or per process (unpaired), the mean over cells
    of the log ratio. Unpaired, each cell is centred on its base side's mean first, so cells
    of different speeds weigh alike. `unit_ids[key]` names each cell's units in order."""
    if design == PAIRED:
        table = pd.DataFrame({key: pd.Series(u.diffs, index=unit_ids[key][0]) for key, u in per_cell.items()})
        return Units(PAIRED, diffs=table.mean(axis=1, skipna=True).dropna().to_numpy())
    base_cols, new_cols = {}, {}
    for key, u in per_cell.items():
        centre = float(np.mean(u.base))
        base_ids, new_ids = unit_ids[key]
        base_cols[key] = pd.Series(u.base - centre, index=base_ids)
        new_cols[key] = pd.Series(u.new - centre, index=new_ids)
    base = pd.DataFrame(base_cols).mean(axis=1).dropna().to_numpy()
    new = pd.DataFrame(new_cols).mean(axis=1).dropna().to_numpy()
    return Units(UNPAIRED, base=base, new=new)


def decide(
    per_cell: dict[str, Units], run_level: Units | None, settings: RuleSettings
) -> tuple[dict[str, CellTiming], CellTiming]:
    """Estimates, Holm across the determined cells + the run-level member, verdicts."""
    members: dict[str, tuple[Units, Estimate | None, str | None]] = {}
    for key, units in [*per_cell.items(), *([(RUN_LEVEL, run_level)] if run_level is not None else [])]:
        short = units.shortage()
        members[key] = (units, None if short else estimate(units, settings.alpha), short)
    tested = [k for k, (_, e, _) in members.items() if e is not None]
    adjusted = dict(zip(tested, holm([members[k][1].p_value for k in tested]), strict=True)) if tested else {}
    out: dict[str, CellTiming] = {}
    for key, (units, est, short) in members.items():
        n_base, n_new = (len(units.diffs),) * 2 if units.design == PAIRED else (len(units.base), len(units.new))
        if est is None:
            out[key] = CellTiming(key, UNDETERMINED, units.design, n_base, n_new, note=short or "")
            continue
        p_adj = float(adjusted[key])
        verdict, note = SAME, ""
        if p_adj < settings.alpha:
            if est.ratio >= settings.min_effect:
                verdict = SLOWER
            elif est.ratio <= 1 / settings.min_effect:
                verdict = FASTER
            else:
                note = f"significant but within the minimal effect {settings.min_effect:g}x"
        out[key] = CellTiming(
            key, verdict, units.design, n_base, n_new, est.ratio, est.low, est.high, est.p_value, p_adj, note=note
        )
    if run_level is None:
        level = CellTiming(RUN_LEVEL, UNDETERMINED, PAIRED, 0, 0, note="no cell timed on both sides")
    else:
        level = out.pop(RUN_LEVEL)
    return out, level


# --- from results tables to units ----------------------------------------------------------


def design_of(base: pd.DataFrame, new: pd.DataFrame) -> tuple[str, str]:
    """PAIRED when both sides come from one A/B session and opposite sides; else UNPAIRED (and why)."""
    sessions = {side: _distinct(df, "ab_session") for side, df in (("base", base), ("new", new))}
    sides = {side: _distinct(df, "ab_side") for side, df in (("base", base), ("new", new))}
    if not sessions["base"] and not sessions["new"]:
        return UNPAIRED, "not from an A/B session: processes (files), or their passes over the sweep, are the units"
    if len(sessions["base"]) == 1 and sessions["base"] == sessions["new"]:
        if len(sides["base"]) == 1 and len(sides["new"]) == 1 and sides["base"] != sides["new"]:
            return PAIRED, f"A/B session {next(iter(sessions['base']))}: paired by ABBA group"
        return UNPAIRED, "one A/B session but not its two opposite sides: unpaired"
    return UNPAIRED, "the sides come from different A/B sessions: unpaired"


def _distinct(df: pd.DataFrame, column: str) -> set:
    if column not in df:
        return set()
    return {v for v in df[column] if v is not None and not (isinstance(v, float) and math.isnan(v))}


def block_statistics(rows: pd.DataFrame, statistic: str = "min") -> list[tuple[int | None, str, float]]:
    """(pair, process, statistic of its rounds) per block of a cell's rows on one side."""
    location = STATISTICS[statistic]
    out = []
    for _, row in rows.iterrows():
        for pair, _position, process, samples in row["blocks"]:
            values = np.asarray(samples, dtype=float)
            values = values[np.isfinite(values)]
            if len(values):
                out.append((pair, str(process), float(location(values))))
    return out


def cell_units(
    base_rows: pd.DataFrame, new_rows: pd.DataFrame, design: str, statistic: str = "min"
) -> tuple[Units, tuple, float, float]:
    """A cell's units, their ids (for the run-level member), and each side's median block statistic."""
    a, b = block_statistics(base_rows, statistic), block_statistics(new_rows, statistic)
    base_s = float(np.median([s for _, _, s in a]))
    new_s = float(np.median([s for _, _, s in b]))
    if design == PAIRED:
        per_pair_a = pd.Series([s for _, _, s in a]).groupby([p for p, _, _ in a]).median()
        per_pair_b = pd.Series([s for _, _, s in b]).groupby([p for p, _, _ in b]).median()
        common = per_pair_a.index.intersection(per_pair_b.index)
        diffs = np.log(per_pair_b[common].to_numpy() / per_pair_a[common].to_numpy())
        return Units(PAIRED, diffs=diffs), (list(common),), base_s, new_s
    per_a = pd.Series([s for _, _, s in a]).groupby([p for _, p, _ in a]).median()
    per_b = pd.Series([s for _, _, s in b]).groupby([p for _, p, _ in b]).median()
    units = Units(UNPAIRED, base=np.log(per_a.to_numpy()), new=np.log(per_b.to_numpy()))
    return units, (list(per_a.index), list(per_b.index)), base_s, new_s


def check_raw_rounds(df: pd.DataFrame, side: str) -> None:
    """A timed cell without raw rounds cannot enter the rule: name the file."""
    ok = df[df["status"] == "ok"]
    missing = ok[[not any(len(block[3]) for block in blocks) for blocks in ok["blocks"]]]
    if len(missing):
        row = missing.iloc[0]
        where = row.get("path") or row.get("file")
        raise TimingInputError(
            f"{side}: {where} has no raw rounds for {len(missing)} timed cell(s) (e.g. {row['cell_key']}): "
            "stats.data is missing; re-run it with this harness (it keeps every round) to compare it"
        )


def compare_timing(
    base: pd.DataFrame,
    new: pd.DataFrame,
    settings: RuleSettings | None = None,
    keys: Iterable[str] | None = None,
    key_column: str = "cell_key",
) -> TimingResult:
    """Every cell timed ("ok") on both sides, decided by the one rule; see the module docstring.

    `keys` limits the cells (default: every common one); `key_column` is what matches cells
    (compare matches across devices by another column)."""
    settings = settings or RuleSettings()
    common_all = [k for k in dict.fromkeys(new[key_column]) if k in set(base[key_column])]
    if not common_all:
        raise TimingInputError(
            f"the sides share no cell (A: {base[key_column].nunique()} cells, e.g. {_example(base, key_column)}; "
            f"B: {new[key_column].nunique()} cells, e.g. {_example(new, key_column)})"
        )
    check_raw_rounds(base, "A (base)")
    check_raw_rounds(new, "B (candidate)")
    design, why = design_of(base, new)
    wanted = set(keys) if keys is not None else None
    per_cell: dict[str, Units] = {}
    ids: dict[str, tuple] = {}
    seconds: dict[str, tuple[float, float]] = {}
    for key in common_all:
        if wanted is not None and key not in wanted:
            continue
        a = base[(base[key_column] == key) & (base["status"] == "ok")]
        b = new[(new[key_column] == key) & (new["status"] == "ok")]
        if a.empty or b.empty:
            continue
        units, unit_ids, base_s, new_s = cell_units(a, b, design, settings.statistic)
        per_cell[key], ids[key], seconds[key] = units, unit_ids, (base_s, new_s)
    decidable = {k: u for k, u in per_cell.items() if u.shortage() is None}
    level = run_level_units(decidable, design, ids) if decidable else None
    cells, run_level = decide(per_cell, level, settings)
    if level is None and per_cell:
        first = next(iter(per_cell.values())).shortage() or ""
        run_level = CellTiming(RUN_LEVEL, UNDETERMINED, design, 0, 0, note=first)
    for key, (base_s, new_s) in seconds.items():
        c = cells[key]
        cells[key] = CellTiming(**{**c.__dict__, "base_s": base_s, "new_s": new_s})
    return TimingResult(cells, run_level, design, settings, [why, *noise_notes(base, "A"), *noise_notes(new, "B")])


def noise_notes(df: pd.DataFrame, side: str) -> list[str]:
    """One line per file whose run recorded noise warnings (attrib_core.noise)."""
    if "noise_warnings" not in df:
        return []
    files = df.drop_duplicates("file")
    return [
        f"side {side}: {row['file']} ran on a noisy machine: {'; '.join(row['noise_warnings'])}"
        for _, row in files.iterrows()
        if row["noise_warnings"]
    ]


def _example(df: pd.DataFrame, column: str) -> str:
    return ", ".join(map(str, list(dict.fromkeys(df[column]))[:2])) or "none"
