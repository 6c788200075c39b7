"""The report's sanity panel: how each method's map changes as the model's layers are randomised,
and a table naming the methods that fail a sanity check (see docs/sanity.md).

Reads the tidy table (`similarity_curves` and the fid_* columns of the sanity metrics); never
runs a model. Cells whose weights are random have no meaningful similarity and are left out.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pandas as pd

from attrib_core.analysis.render.plots import Rendered, footnote, legend_right, method_handles, theme
from attrib_core.analysis.render.style import MethodStyle

# A check fails where the map's Spearman rank correlation (of |map|) with its reference map stays at
# or above this: 0.7 is the usual floor of a "strong" correlation, so a failing map keeps most of
# its pixel ranking after the model (or the explained class) changed.
SANITY_THRESHOLD = 0.7
VARIANTS = {
    "randomisation_cascading": "cascading: groups randomised so far (output side first)",
    "randomisation_independent": "independent: one group randomised",
}
CHECKS = {  # column -> the check it fails when its value is at or above the threshold
    "fid_randomisation_cascading": "cascading randomisation",
    "fid_randomisation_independent": "independent randomisation",
    "fid_random_logit": "random logit",
}
SIMILARITY_LABEL = "Spearman of |map| with the\ntrained model's |map|\n(mean over examples)"
COLUMNS = {
    "fid_randomisation_cascading": "cascading (mean over steps)",
    "full_randomisation": "cascading, all randomised",
    "fid_randomisation_independent": "independent (mean)",
    "fid_random_logit": "random logit",
    "fid_road_morf": "ROAD MoRF (lower better)",
    "fid_road_lerf": "ROAD LeRF (higher better)",
}


def _sanity_cells(df: pd.DataFrame) -> pd.DataFrame:
    if "similarity_curves" not in df.columns:
        return df.iloc[0:0]
    meaningful = df["weights"].astype(str) != "random"
    return df[(df["status"] == "ok") & df["similarity_curves"].notna() & meaningful]


def _full_randomisation(curves: dict) -> float | None:
    values = ((curves or {}).get("randomisation_cascading") or {}).get("mean_curve", {}).get("spearman_abs") or []
    return values[-1] if values else None


def sanity_table(df: pd.DataFrame, threshold: float = SANITY_THRESHOLD) -> pd.DataFrame:
    """One row per cell with a sanity record: its similarities, ROAD areas, what the checks cost
    next to the call's own time, and the checks it fails at `threshold`."""
    cells = _sanity_cells(df)
    if cells.empty:
        return pd.DataFrame()
    out = pd.DataFrame({"workload": cells["workload"], "device": cells["device"], "method": cells["label"]})
    for column, header in COLUMNS.items():
        if column == "full_randomisation":
            out[header] = cells["similarity_curves"].map(_full_randomisation)
        else:
            out[header] = cells[column] if column in cells.columns else None
    out["median_ms"] = cells["median_s"] * 1e3
    time_columns = [f"{c}_time_s" for c in (*CHECKS, "fid_road_morf", "fid_road_lerf") if f"{c}_time_s" in cells]
    out["sanity_checks_s"] = cells[time_columns].sum(axis=1, min_count=1) if time_columns else None
    out["fails"] = [
        ", ".join(name for column, name in CHECKS.items() if _at_or_above(row.get(column), threshold)) or "-"
        for _, row in cells.iterrows()
    ]
    return out.sort_values(["workload", "device", "method"]).reset_index(drop=True)


def _at_or_above(value: object, threshold: float) -> bool:
    return isinstance(value, (int, float)) and not math.isnan(value) and value >= threshold


def sanity_figure(df: pd.DataFrame, style: MethodStyle, threshold: float = SANITY_THRESHOLD) -> Rendered:
    title = "Sanity: does the map change when the model's layers are randomised?"
    caption = (
        "Model parameter randomisation (Adebayo et al. 2018). One column per workload · device, one line per "
        "method: Spearman rank correlation between |map| on the trained model and |map| after randomising the "
        "model's layer groups. Top row: cascading, output side first (x: the last group randomised; at the right "
        "end every group is random). Bottom row: each group randomised alone. A map that explains the model falls "
        f"towards 0; the dashed line is the failing threshold ({threshold:g}). Each point is the mean over the "
        "cell's examples; the run records no per-step spread, so no bars are drawn. The table names the cells "
        "failing a check (by that mean) and sets the checks' cost beside the call's time."
    )
    cells = _sanity_cells(df)
    if cells.empty:
        return Rendered("sanity", title, caption, skipped="no ok cell with trained weights has a randomisation record")
    theme()
    panels = sorted(cells["panel"].unique())
    fig, axes = plt.subplots(
        len(VARIANTS), len(panels), figsize=(4.6 * len(panels), 3.4 * len(VARIANTS)), squeeze=False
    )
    for column, panel in enumerate(panels):
        for row, (variant, label) in enumerate(VARIANTS.items()):
            ax = axes[row][column]
            steps: list[str] = []
            for _, cell in cells[cells["panel"] == panel].iterrows():
                curve = (cell["similarity_curves"] or {}).get(variant)
                if not curve:
                    continue
                steps = curve["steps"]
                values = curve["mean_curve"].get("spearman_abs") or []
                values = [math.nan if v is None else v for v in values]
                method = str(cell["method"])
                ax.plot(
                    range(len(values)),
                    values,
                    color=style.palette.get(method),
                    marker=style.markers.get(method, "o"),
                    markersize=4,
                    linewidth=1.2,
                )
            ax.axhline(threshold, color="0.3", linestyle="--", linewidth=0.8)
            ax.set_xticks(range(len(steps)), steps, rotation=45, ha="right", fontsize=7)
            ax.set_ylim(-0.1, 1.05)
            ax.set_title(f"{panel}\n{label}", fontsize=8)
            ax.set_ylabel(SIMILARITY_LABEL if column == 0 else "")
    fig.tight_layout()
    legend_right(fig, method_handles(sorted(cells["method"].astype(str).unique()), style), "method")
    several = cells.groupby(["panel", "method"]).size()
    if (several > 1).any():
        footnote(fig, ["Methods measured in several configurations draw one line each, in the method's colour."])
    return Rendered("sanity", title, caption, fig)
