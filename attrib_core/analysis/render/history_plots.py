"""History figures: one per metric, a panel per cell, value against commit, steps marked.

Each run is a dot, the line joins the per-commit medians (the points step detection fits),
and a detected step is a vertical line before its first commit: red while in force, grey
once undone, labelled with its size and 95% interval. Commits are on the x axis in order,
labelled with their short hash and date, so one axis serves "against commit or date".
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from attrib_core.analysis.history import SERIES_KEY, Metric, commit_axis, step_label
from attrib_core.analysis.render.plots import Rendered

IN_FORCE, UNDONE = "#d62728", "#999999"
MAX_COMMIT_LABELS = 25


def _commit_ticks(ax: plt.Axes, axis: pd.DataFrame) -> None:
    every = max(1, int(np.ceil(len(axis) / MAX_COMMIT_LABELS)))
    shown = axis.iloc[::every]
    dates = shown["commit_time"].dt.strftime("%m-%d").fillna("")
    ax.set_xticks(shown["commit_order"], [f"{c[:7]} {d}" for c, d in zip(shown["commit"], dates, strict=True)])
    ax.tick_params(axis="x", labelrotation=90, labelsize=7)


def _panel_title(cells: pd.DataFrame) -> str:
    first = cells.iloc[0]
    return f"{first['workload']} · {first['method']}\n{first['cell_key'].split('-', 2)[-1][:60]}"


def _draw(ax: plt.Axes, cells: pd.DataFrame, metric: Metric, steps: pd.DataFrame) -> None:
    known = cells.dropna(subset=[metric.column])
    injected = known["injected_slowdown"] > 1
    ax.scatter(known["commit_order"][~injected], known[metric.column][~injected], s=10, color="#1f77b4", zorder=3)
    ax.scatter(known["commit_order"][injected], known[metric.column][injected], s=22, marker="x", color="k", zorder=3)
    medians = known.groupby("commit_order")[metric.column].median()
    ax.plot(medians.index, medians.to_numpy(), color="#1f77b4", linewidth=1, zorder=2)
    for _, step in steps.iterrows():
        colour = IN_FORCE if step["in_force"] else UNDONE
        ax.axvline(step["index_order"] - 0.5, color=colour, linestyle="--", linewidth=1.2, zorder=1)
        ax.annotate(
            step_label(step, metric.log),
            xy=(step["index_order"] - 0.5, 1.0),
            xycoords=("data", "axes fraction"),
            fontsize=7,
            color=colour,
            ha="right",
            va="top",
            rotation=90,
        )
    if metric.log:
        ax.set_yscale("log")


def history_figure(df: pd.DataFrame, metric: Metric, steps: pd.DataFrame, col_wrap: int = 4) -> Rendered:
    """The metric over commits for every cell (and machine) that has it."""
    name, title = f"history_{metric.name}", f"History: {metric.label}"
    known = df.dropna(subset=[metric.column])
    if known.empty:
        return Rendered(name, title, "", skipped=f"no cell has {metric.column}")
    axis = commit_axis(df)
    mine = steps[steps["metric"] == metric.name] if len(steps) else steps
    panels = list(known.groupby(list(SERIES_KEY), sort=True))
    cols = min(col_wrap, len(panels))
    rows = int(np.ceil(len(panels) / cols))
    sns.set_theme(style="whitegrid", font_scale=0.8)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False, sharex=True)
    several_machines = known["machine"].nunique() > 1
    for ax, (key, cells) in zip(axes.flat, panels, strict=False):
        ident = dict(zip(SERIES_KEY, key, strict=True))
        cell_steps = mine
        if len(mine):
            same = np.logical_and.reduce([mine[k] == v for k, v in ident.items()])
            cell_steps = mine[same].assign(index_order=lambda s: s["commit"].map(_order(df)))
        _draw(ax, cells, metric, cell_steps)
        ax.set_title(_panel_title(cells) + (f"\n{ident['machine']}" if several_machines else ""), fontsize=8)
        ax.set_ylabel(metric.label if ax in axes[:, 0] else "")
        _commit_ticks(ax, axis)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    n_steps = len(mine)
    caption = (
        f"{metric.label} over {len(axis)} commits ({df['file'].nunique()} runs); dots are runs (x: a run with an "
        f"injected slowdown, a test of the checks), the line joins per-commit medians. {n_steps} step(s) detected "
        "(dashed: red in force, grey undone; size and 95% "
        "bootstrap interval). Method: attrib_core/analysis/steps.py."
    )
    fig.tight_layout()
    return Rendered(name, title, caption, figure=fig)


def _order(df: pd.DataFrame) -> dict[str, int]:
    return dict(zip(df["commit"], df["commit_order"], strict=True))
