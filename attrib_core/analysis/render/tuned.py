"""Tuned against default: the table and figure of a tune run (torch-free).

Times, peak memory and efficiency come from the results table (load_results), so they
follow the one schema and the one efficiency rule; which record is the default and which the
tuned setting, the error target and the share of the gain from each axis come from the run's
tune summary (machine_info.attrib_bench.run['tune']).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from attrib_core import schema
from attrib_core.analysis.render.plots import Rendered, theme

AXIS_LABELS = {
    "fewer steps": "fewer steps",
    "batching": "batching",
    "memory_format": "layout",
    "precision": "precision",
    "threads": "threads",
    "compile": "compile",
}


def tune_summaries(df: pd.DataFrame) -> dict[str, dict[str, dict[str, Any]]]:
    """file name -> method -> its tune summary; files that are not tune runs are left out."""
    if "tune_summary" not in df:
        return {}
    firsts = df.dropna(subset=["tune_summary"]).groupby("file", sort=False)["tune_summary"].first()
    return dict(firsts.items())


def _row(df: pd.DataFrame, file: str, key: str) -> pd.Series:
    rows = df[(df["file"] == file) & (df["cell_key"] == key)]
    if rows.empty:
        raise schema.ResultsError(f"{file}: the tune summary names {key!r}, which has no record")
    return rows.iloc[0]


def tuned_table(
    df: pd.DataFrame, summaries: Mapping[str, Mapping[str, Mapping[str, Any]]], points: pd.DataFrame
) -> pd.DataFrame:
    """One row per method and setting (default, tuned): time, memory, error, efficiency; speedup and shares.

    The error comes from the records themselves (`points`): the results table hides fidelity of random
    weights as meaningless for an explanation, but the distance to the converged value is what tune's
    target is about, whatever the weights.
    """
    errors = {(r.file, r.cell_key): r.rel_error for r in points.itertuples()} if len(points) else {}
    rows = []
    for file, methods in summaries.items():
        for method, summary in methods.items():
            default = _row(df, file, summary["default_key"])
            for role in ("default", "tuned"):
                row = _row(df, file, summary[f"{role}_key"])
                shares = summary.get("gain_shares") or {}
                rows.append(
                    {
                        "workload": row["workload"],
                        "method": method,
                        "setting": role,
                        "cell_key": row["cell_key"],
                        "median_s": row["median_s"],
                        "peak_MiB": row["peak_bytes"] / 2**20 if pd.notna(row["peak_bytes"]) else np.nan,
                        "rel_error": errors.get((file, row["cell_key"]), np.nan),
                        "efficiency": row["efficiency"],
                        "speedup": default["median_s"] / row["median_s"],
                        "target": summary["target"],
                        **{
                            f"share_{AXIS_LABELS.get(axis, axis)}": (shares.get(axis, 0.0) if role == "tuned" else None)
                            for axis in AXIS_LABELS
                        },
                        "search_s": summary["search_s"] if role == "tuned" else None,
                    }
                )
    return pd.DataFrame(rows)


def search_points(df: pd.DataFrame) -> pd.DataFrame:
    """Every configuration tried: (method, time_s, rel_error), from the records' tune and fidelity entries."""
    columns = ["file", "workload", "method", "cell_key", "time_s", "timed", "rel_error", "phase", "role"]
    if "tune_phase" not in df or "fid_reference_error_raw" not in df:
        return pd.DataFrame(columns=columns)
    tried = df[df["tune_phase"].notna() & df["fid_reference_error_raw"].notna()]
    timed = tried["median_s"].notna()
    time_s = tried["median_s"].where(timed, tried["tune_first_call_s"])  # fidelity settings: one call
    points = pd.DataFrame(
        {
            "file": tried["file"],
            "workload": tried["workload"],
            "method": tried["method"],
            "cell_key": tried["cell_key"],
            "time_s": time_s,
            "timed": timed,
            "rel_error": tried["fid_reference_error_raw"].astype(float),
            "phase": tried["tune_phase"],
            "role": tried["tune_role"],
        }
    )
    return points[points["time_s"].notna()].reset_index(drop=True)[columns]


def tuned_figure(points: pd.DataFrame, summaries: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> Rendered:
    """Per tune run and method: every configuration tried (time vs error), its Pareto front, default and tuned."""
    title = "Tuned against default"
    caption = (
        "Every configuration tune ran (grey: search; filled: timed in a race, open: fidelity settings run once, their "
        "time includes the first call's warm-up), the Pareto front of time and error "
        "against the reference (line), Captum's default and the tuned setting (timed round-robin in one window), "
        "and the error bound the tuned setting had to meet (dashed)."
    )
    if points.empty:
        return Rendered("tuned", title, caption, skipped="no tune run among the results files")
    panels = sorted(set(zip(points["file"], points["method"], strict=True)))
    theme()
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.0 * columns, 4.0 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (file, method) in zip(axes.flat, panels, strict=False):
        own = points[(points["file"] == file) & (points["method"] == method)]
        search = own[own["phase"] != "final"]
        timed = search["timed"].astype(bool)
        ax.scatter(
            search.loc[timed, "time_s"], search.loc[timed, "rel_error"], color="0.5", s=18, label="search (timed)"
        )
        ax.scatter(
            search.loc[~timed, "time_s"],
            search.loc[~timed, "rel_error"],
            facecolors="none",
            edgecolors="0.5",
            s=18,
            label="search (one call)",
        )
        summary = summaries.get(file, {}).get(method)
        if summary:
            front = pd.DataFrame(summary["pareto_front"])
            if len(front):
                ax.step(front["time_s"], front["rel_error"], where="post", color="0.2", lw=1, label="Pareto front")
            finals = own[own["phase"] == "final"]
            for role, marker, color in (("default", "s", "tab:red"), ("tuned", "*", "tab:green")):
                chosen = finals[finals["cell_key"] == summary[f"{role}_key"]]
                ax.scatter(
                    chosen["time_s"], chosen["rel_error"], marker=marker, s=120, color=color, label=role, zorder=3
                )
            if summary.get("target_bound") and np.isfinite(summary["target_bound"]):
                ax.axhline(summary["target_bound"], color="tab:green", ls="--", lw=1)
            workload = own["workload"].iloc[0]
            ax.set_title(f"{workload} {method}: {summary['speedup']:.2f}x", fontweight="bold")
        ax.set_xscale("log")
        positive = own["rel_error"][own["rel_error"] > 0]
        if len(positive) and positive.max() / positive.min() > 10:  # a narrow range reads better on a linear axis
            ax.set_yscale("log")
        ax.set_xlabel("median time per call (s)")
        ax.set_ylabel("relative error vs reference")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return Rendered("tuned", title, caption, fig)


def tuned_report(df: pd.DataFrame) -> tuple[Rendered, pd.DataFrame]:
    summaries = tune_summaries(df)
    if not summaries:
        return Rendered(
            "tuned", "Tuned against default", "", skipped="no tune run among the results files"
        ), pd.DataFrame()
    points = search_points(df)
    return tuned_figure(points, summaries), tuned_table(df, summaries, points)
