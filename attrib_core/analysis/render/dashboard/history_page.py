"""history.html: each cell over commits with its detected steps, per machine and preset.

The same history as `attrib-bench history` (attrib_core.analysis.history: runs ordered by commit
time, steps by attrib_core.analysis.steps, figures by history_plots), for every machine and
preset with at least two runs; a series on one machine is never compared with another's. Every
step of every metric is in the table; the figures draw time and memory (and any fidelity metric
with a step), every cell while there are few, else the cells with a step, so a store of large
presets stays readable.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from attrib_core.analysis.history import (
    MEMORY,
    TIME,
    TIME_RAW,
    Metric,
    commit_axis,
    history_steps,
    load_history,
    metrics_of,
)
from attrib_core.analysis.render.dashboard.layout import Page, Value, number, slug, text
from attrib_core.analysis.render.dashboard.store import Store
from attrib_core.analysis.render.history_plots import history_figure
from attrib_core.analysis.render.history_report import readable_steps, warnings
from attrib_core.analysis.results import ResultsError
from attrib_core.analysis.steps import StepError

MIN_RUNS = 2
MIN_COMMITS_TO_DRAW = 2  # reruns of one commit are a noise measurement, not a history to draw
ALL_PANELS_UP_TO = 16  # cells drawn in every figure; above this only the cells with a step


def histories(store: Store) -> tuple[list[tuple[str, str, list[str]]], list[tuple[str, str, int]]]:
    """(machine, preset, paths) with at least MIN_RUNS runs, and (machine, preset, runs) of the rest."""
    kept, short = [], []
    for (machine, preset), runs in store.runs.groupby(["machine", "preset"], sort=True, dropna=False):
        if len(runs) >= MIN_RUNS:
            kept.append((machine, str(preset), list(runs["path"])))
        else:
            short.append((machine, str(preset), len(runs)))
    return kept, short


def step_rows(readable: pd.DataFrame) -> list[list[Value]]:
    return [
        [
            text(row["workload"]),
            text(row["method"]),
            text(row["cell_key"]),
            text(row["metric"]),
            text(row["commit"]),
            text(row["commit_time"]),
            Value(row["change"], None),
            text("in force" if row["in_force"] else "undone"),
        ]
        for _, row in readable.iterrows()
    ]


STEP_HEADERS = [
    "workload",
    "method",
    "cell",
    "metric",
    "first commit of the new level",
    "commit time",
    "change: size [95% bootstrap interval]",
    "still in force?",
]
SERIES_HEADERS = [
    "cell",
    "metric",
    "commits (count)",
    "runs (count)",
    "noise: run-to-run sigma a step must clear (log units for time and memory)",
    "steps (count)",
    "steps in force (count)",
]


def drawn_cells(df: pd.DataFrame, steps: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, int]:
    """The rows to draw for a metric, and how many cells were left out of the figure."""
    cells = df["cell_key"].nunique()
    if cells <= ALL_PANELS_UP_TO:
        return df, 0
    stepped = set(steps.loc[steps["metric"] == metric, "cell_key"]) if len(steps) else set()
    return df[df["cell_key"].isin(stepped)], cells - len(stepped)


def drawn_metrics(metrics: list[Metric], stepped: set[str]) -> list[Metric]:
    """Time (normalised and raw) and memory always; a fidelity metric where it has a step."""
    return [TIME, TIME_RAW, MEMORY, *(m for m in metrics if m.name in stepped and not m.log)]


def one_history(page: Page, folder: Path, machine: str, preset: str, paths: list[str]) -> None:
    page.heading(f"{machine} · {preset}", anchor=f"h-{slug(machine)}-{slug(preset)}")
    try:
        df = load_history(paths)
        metrics = metrics_of(df)
        steps, series = history_steps(df, metrics)
    except (ResultsError, StepError) as exc:
        page.warning(f"No history for {machine} · {preset}: {exc}")
        return
    axis = commit_axis(df)
    readable = readable_steps(steps, {m.name for m in metrics if m.log})
    page.paragraph(
        f"{len(axis)} commit(s), {df['file'].nunique()} run(s), {df['cell_key'].nunique()} cell(s); "
        f"{len(readable)} step(s) detected over {len(series)} series (cell x metric). Time is the fastest round, "
        "divided by the run's factor (the median over its cells of time over the cell's history median) so that "
        "a busier run moves no cell; 'time raw' is without that factor."
    )
    for line in warnings(df, axis):
        page.warning(line)
    page.heading("Steps", level=3)
    if readable.empty:
        page.paragraph("No step detected in any series.", "skipped")
    else:
        page.table(STEP_HEADERS, step_rows(readable), f"steps of {machine} {preset}", filterable=True)
    if len(axis) < MIN_COMMITS_TO_DRAW:
        page.paragraph(f"No figure: all {df['file'].nunique()} run(s) are of one commit.", "skipped")
    for metric in drawn_metrics(metrics, set(readable["metric"])) if len(axis) >= MIN_COMMITS_TO_DRAW else []:
        rows, left_out = drawn_cells(df, steps, metric.name)
        stem = f"history_{slug(machine)}_{slug(preset)}_{metric.name}"
        if rows.empty:
            page.heading(f"History: {metric.label}", level=3)
            page.paragraph(
                f"Not drawn: no step in {metric.label} among {df['cell_key'].nunique()} cells (too many to draw "
                "them all; each series is in the table below).",
                "skipped",
            )
            continue
        page.figure(history_figure(rows, metric, steps), folder, stem)
        if left_out:
            page.paragraph(f"{left_out} cell(s) without a step in {metric.label} are not drawn.", "skipped")
    page.heading("Series examined", level=3)
    page.table(SERIES_HEADERS, series_rows(series), f"series of {machine} {preset}", filterable=True)


def series_rows(series: pd.DataFrame) -> list[list[Value]]:
    return [
        [
            text(row["cell_key"]),
            text(row["metric"]),
            number(row["commits"]),
            number(row["runs"]),
            number(row["noise"]),
            number(row["steps"]),
            number(row["in_force"]),
        ]
        for _, row in series.iterrows()
    ]


def build(store: Store, folder: Path) -> Page:
    kept, short = histories(store)
    page = Page("history.html", f"History: {len(kept)} machine · preset series over commits")
    page.paragraph(
        "Runs are ordered by commit time (then by when they ran); a step is a change of level that survives the "
        "noise between runs (attrib_core/analysis/steps.py: PELT with a penalty per step, 95% bootstrap interval "
        "of its size). In the figures each dot is a run, the line joins per-commit medians, dashed lines mark "
        f"steps (red in force, grey undone). A history needs at least {MIN_RUNS} runs of one machine and preset."
    )
    if short:
        page.paragraph(
            "Too few runs for a history (machine · preset: runs): "
            + ", ".join(f"{m} · {p}: {n}" for m, p, n in short)
            + ".",
            "skipped",
        )
    if not kept:
        page.warning(f"No machine and preset has {MIN_RUNS} or more runs in the store: there is no history to show.")
    for machine, preset, paths in kept:
        one_history(page, folder, machine, preset, paths)
    return page
