"""A history: every run of a folder of results files, ordered by commit, and each cell's steps.

Reads through `load_results` (the same schema as every other result). A history mixes runs of
many commits; a commit may have several runs (they measure the noise). Runs are ordered by
the commit's time (commit_info), then by when they ran, so rerunning an old commit later
puts it in its place. Series are kept apart per machine and preset: a level measured on
another machine is not a step.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from attrib_core.analysis.results import ResultsError, load_results, results_files
from attrib_core.analysis.steps import (
    MIN_SEGMENT,
    PENALTY_PER_LOG_N,
    Series,
    detect_steps,
    rerun_noise,
    steps_table,
)

MIN_CELLS_FOR_RUN_MEDIAN = 3  # a median of fewer ratios is not robust to one changed cell

SERIES_KEY = ("machine", "preset", "cell_key")


@dataclass(frozen=True)
class Metric:
    """A quantity tracked over commits: its column, whether a change is a ratio, its axis label."""

    name: str
    column: str
    log: bool
    label: str


# Time as the regression check sees it (attrib_core.analysis.regression): the fastest round,
# divided by the run's factor (the median over cells of the cell's time over its history
# median), so that a run on a busier or faster machine moves no cell; a change that slows
# every cell alike shows in `time_raw` only.
TIME = Metric("time", "min_normalised_s", log=True, label="min time per call, run-normalised (s)")
TIME_RAW = Metric("time_raw", "min_s", log=True, label="min time per call (s)")
MEMORY = Metric("memory", "peak_bytes", log=True, label="peak memory (bytes)")


def fidelity_metrics(df: pd.DataFrame) -> list[Metric]:
    """One metric per fidelity value column present (fid_<name>, not its _status or _time_s)."""
    columns = [c for c in df.columns if c.startswith("fid_") and not c.endswith(("_status", "_time_s"))]
    names = [c.removeprefix("fid_") for c in columns]
    return [Metric(name, c, log=False, label=name.replace("_", " ")) for name, c in zip(names, columns, strict=True)]


def metrics_of(df: pd.DataFrame) -> list[Metric]:
    return [TIME, TIME_RAW, MEMORY, *fidelity_metrics(df)]


def history_files(inputs: Iterable[str | Path]) -> list[Path]:
    """Every results file of the given folders (all of them, not the newest), and files as given."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = results_files(item)
            if not found:
                raise ResultsError(f"{item}: no results files (*.json) in this folder")
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise ResultsError(f"{item}: no such results file or folder")
    if not files:
        raise ResultsError("no results files given: name a history folder (or files)")
    return files


def load_history(inputs: Iterable[str | Path]) -> pd.DataFrame:
    """The history's rows (ok cells only), with `commit_order`: 0 for the oldest commit."""
    df = load_results(history_files(inputs))
    if df.empty:
        raise ResultsError("the history has no benchmark records")
    if df["commit"].isna().any():
        bad = sorted(df.loc[df["commit"].isna(), "file"].unique())
        raise ResultsError(f"{', '.join(bad)}: no commit recorded (run outside a git checkout?); a history needs one")
    df = df[df["status"] == "ok"].copy()
    df["commit_time"] = pd.to_datetime(df["commit_time"], utc=True, errors="coerce")
    df["run_time"] = pd.to_datetime(df["run_datetime"], utc=True, errors="coerce")
    order = df.groupby("commit").agg(commit_time=("commit_time", "min"), run_time=("run_time", "min"))
    order = order.sort_values(["commit_time", "run_time"], na_position="last")
    df["commit_order"] = df["commit"].map({c: i for i, c in enumerate(order.index)})
    df["run_factor"] = run_factors(df)
    df["min_normalised_s"] = df["min_s"] / df["run_factor"]
    return df


def run_factors(df: pd.DataFrame, column: str = "min_s") -> pd.Series:
    """Per row, its run's factor: the median over the run's cells of time / the cell's history median.

    As the regression check's run-median normalisation, it holds while fewer than half the
    cells of a run change; a run with fewer than MIN_CELLS_FOR_RUN_MEDIAN timed cells gets NaN.
    """
    groups = [df[k] for k in SERIES_KEY]
    ratio = df[column] / df.groupby(groups, dropna=False)[column].transform("median")
    per_file = ratio.groupby(df["file"]).agg(["median", "count"])
    factor = per_file["median"].where(per_file["count"] >= MIN_CELLS_FOR_RUN_MEDIAN)
    return df["file"].map(factor)


def commit_axis(df: pd.DataFrame) -> pd.DataFrame:
    """One row per commit in order: its position, hash, commit date, number of runs."""
    return (
        df.groupby(["commit_order", "commit"], as_index=False)
        .agg(commit_time=("commit_time", "min"), runs=("file", "nunique"))
        .sort_values("commit_order")
    )


def series_of(cells: pd.DataFrame, metric: Metric) -> Series | None:
    """One cell's metric over commits (runs grouped per commit), or None if it has no values."""
    known = cells.dropna(subset=[metric.column]).sort_values(["commit_order", "run_time"])
    if metric.log:
        known = known[known[metric.column] > 0]
    if known.empty:
        return None
    groups = known.groupby("commit_order", sort=True)
    return Series(
        commits=[g["commit"].iloc[0] for _, g in groups],
        runs=[g[metric.column].to_numpy(dtype=float) for _, g in groups],
        log=metric.log,
    )


def history_steps(
    df: pd.DataFrame,
    metrics: list[Metric] | None = None,
    per_log_n: float = PENALTY_PER_LOG_N,
    min_segment: int = MIN_SEGMENT,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(steps, series): every detected step, and one row per (cell, metric) series examined."""
    steps, series_rows = [], []
    for key, cells in df.groupby(list(SERIES_KEY), sort=True, dropna=False):
        first = cells.iloc[0]
        for metric in metrics or metrics_of(df):
            series = series_of(cells, metric)
            if series is None:
                continue
            found, sigma = detect_steps(series, per_log_n=per_log_n, min_segment=min_segment)
            ident = dict(zip(SERIES_KEY, key, strict=True))
            ident.update(workload=first["workload"], method=first["method"], metric=metric.name)
            series_rows.append(
                {
                    **ident,
                    "commits": len(series.commits),
                    "runs": int(sum(len(r) for r in series.runs)),
                    "noise": sigma,
                    "steps": len(found),
                    "in_force": sum(s.in_force for s in found),
                }
            )
            if found:
                table = steps_table(found).assign(**ident)
                steps.append(table)
    step_columns = [*SERIES_KEY, "workload", "method", "metric", "commit", "previous_commit", "index"]
    steps_df = pd.concat(steps, ignore_index=True) if steps else pd.DataFrame(columns=step_columns)
    if len(steps_df):
        dates = df.groupby("commit")["commit_time"].min()
        steps_df["commit_time"] = steps_df["commit"].map(dates)
        rest = [c for c in steps_df.columns if c not in step_columns]
        steps_df = steps_df[step_columns + rest]
    return steps_df, pd.DataFrame(series_rows)


def step_label(row: pd.Series | dict, log: bool) -> str:
    """'+12.3% [8.1, 15.0]' for ratios, '+0.012 [0.008, 0.015]' for differences."""
    if log:
        return f"{row['size']:+.1%} [{row['low']:+.1%}, {row['high']:+.1%}]"
    return f"{row['size']:+.3g} [{row['low']:+.3g}, {row['high']:+.3g}]"


def noise_between_runs(df: pd.DataFrame, metric: Metric = TIME) -> pd.DataFrame:
    """Per cell, the run-to-run noise of reruns of one commit (pooled std of log values for times)."""
    rows = []
    for key, cells in df.groupby(list(SERIES_KEY), sort=True):
        series = series_of(cells, metric)
        noise = rerun_noise(series) if series is not None else None
        if noise is not None:
            reruns = sum(len(r) for r in series.runs if len(r) > 1)
            rows.append({**dict(zip(SERIES_KEY, key, strict=True)), "reruns": reruns, "noise": noise})
    return pd.DataFrame(rows)
