"""Tables for people: the per-cell summary, and a markdown writer that needs no extra package.

Headers carry units (`median_ms`, `peak_MiB`); the same frame is written as CSV (full
precision) and markdown (3 significant digits). pandas' own `to_markdown` needs tabulate,
which the light report venv does not have, hence the small writer here.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from attrib_core.analysis.knobs import all_knobs_label, knob_columns

FIDELITY = ("reference_error", "completeness", "deletion", "insertion")  # always a column, in this order
FIDELITY_FIELDS = ("_status", "_time_s", "_lower_is_better", "_raw")  # a metric's other columns
NOISY = 0.5  # IQR above this share of the median: the timing of that cell is not to be trusted


def noisy_cells(df: pd.DataFrame) -> pd.DataFrame:
    """Ok cells whose rounds spread widely (IQR / median > NOISY): re-run them on a quiet machine."""
    spread = df["iqr_s"] / df["median_s"]
    return df[(df["status"] == "ok") & (spread > NOISY)]


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: identity, time, memory, efficiency, fidelity, status."""
    knobs = knob_columns(df)
    out = pd.DataFrame(
        {
            "cell_key": df["cell_key"],
            "workload": df["workload"],
            "method": df["method"],
            "device": df["device"],
            "batch_size": df["batch_size"],
            "precision": df["precision"],
            "memory_format": df["memory_format"],
            "knobs": [all_knobs_label(row, knobs) for _, row in df.iterrows()],
            "status": df["status"],
            "median_ms": df["median_s"] * 1e3,
            "iqr_ms": df["iqr_s"] * 1e3,
            "iqr_over_median": df["iqr_s"] / df["median_s"],
            "rounds": df["rounds"],
            "per_example_ms": df["per_sample_median_s"] * 1e3,
            "peak_MiB": df["peak_bytes"] / 2**20,
            "efficiency": df["efficiency"],
            # above 1.05 the limit was measured wrong for this cell: never read it as "fast"
            "efficiency_suspect": df.get("efficiency_suspect"),
            "efficiency_basis": df.get("efficiency_basis"),
        }
    )
    for metric in FIDELITY:
        column = f"fid_{metric}"
        out[column] = df[column] if column in df.columns else None
    for column in other_metric_columns(df):  # any other metric, for runs that measured it
        out[column] = df[column]
    out["weights"] = df["weights"]
    out["error"] = df["error"]
    if df["file"].nunique() > 1:
        out.insert(0, "file", df["file"])
    return out.sort_values(["workload", "device", "method", "median_ms"], na_position="last").reset_index(drop=True)


def other_metric_columns(df: pd.DataFrame) -> list[str]:
    """The value columns of every fidelity metric beyond FIDELITY that some cell measured (sorted)."""
    shown = {f"fid_{metric}" for metric in FIDELITY}
    values = [c for c in df.columns if c.startswith("fid_") and not c.endswith(FIDELITY_FIELDS) and c not in shown]
    return sorted(c for c in values if df[c].notna().any())


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table of the frame (index left out)."""
    header = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(_cell(v) for v in record) + " |" for record in df.itertuples(index=False)]
    return "\n".join([header, rule, *rows]) + "\n"
