"""The report's figures, one function each: tidy table (labelled by attrib_core.analysis.render.style) in, a
`Rendered` figure out, or a reason why the data has nothing to show for it.

Figures are seaborn FacetGrids: one facet per measure (each with its unit and scale) and
panel (workload · device [· run]). Methods keep the colour and marker of the report's
MethodStyle everywhere. Nothing here runs a model or imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # files only; never a window, also on a laptop with a display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, LogFormatter, NullLocator, ScalarFormatter

from attrib_core.analysis.pareto import pareto_front, staircase
from attrib_core.analysis.render.style import MethodStyle
from attrib_core.analysis.results import SUSPECT_ABOVE
from attrib_core.analysis.tables import NOISY, noisy_cells
from attrib_core.formatting import seconds

MIB = 2**20
KEY_LINE = 0.075  # axes fraction per entry of the Pareto-front key beside a panel
KEY_WIDTH = 3.6  # inches for that key
THEME = {"style": "whitegrid", "context": "notebook", "font_scale": 0.9}
FRONT_EDGE = "black"


@dataclass
class Rendered:
    """One figure of the report: file stem, heading, caption, and the figure or why there is none."""

    name: str
    title: str
    caption: str
    figure: Figure | None = None
    skipped: str | None = None


@dataclass(frozen=True)
class Measure:
    """A plotted quantity: its column, axis label (with unit), scale and factor."""

    column: str
    label: str
    log: bool = True
    factor: float = 1.0


TIME_PER_EXAMPLE = Measure("per_sample_median_s", "median time per example (s)")
TIME_PER_CALL = Measure("median_s", "median time per call (s)")
PEAK_MIB = Measure("peak_bytes", "peak memory (MiB)", factor=1 / MIB)

# Fidelity axes of the trade-off figure, in order of preference.
REFERENCE_ERROR = Measure(
    "fid_reference_error", "error vs the method's own\nconverged reference\n(relative L2; lower is better)"
)
DELETION = Measure(
    "fid_deletion",
    "deletion AUC, any method\n(target probability as top features\nare removed; lower is better)",
    False,
)
COMPLETENESS = Measure("fid_completeness", "completeness error\n(|Σ attr − ΔF| / |ΔF|; lower is better)")


def theme() -> None:
    sns.set_theme(**THEME)


# --- shared helpers ---------------------------------------------------------------------


def melt(df: pd.DataFrame, measures: list[Measure]) -> pd.DataFrame:
    """Long format: one row per (cell, measure) with `measure` (its label) and `value`."""
    frames = []
    for m in measures:
        if m.column not in df.columns:
            continue
        part = df[df[m.column].notna()].copy()
        part["value"] = pd.to_numeric(part[m.column], errors="coerce") * m.factor
        part = part[np.isfinite(part["value"]) & ((part["value"] > 0) if m.log else True)]
        if not part.empty:
            frames.append(part.assign(measure=m.label, metric=m.column))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def measure_grid(
    long: pd.DataFrame,
    measures: list[Measure],
    draw: Callable[..., None],
    *,
    xlabel: str,
    xlog: bool = True,
    xticks: list[float] | None = None,
    height: float = 3.3,
    aspect: float = 1.5,
    measures_across: bool = False,
) -> sns.FacetGrid:
    """One facet per (measure, panel): measures in rows and panels in columns, or the other
    way round with `measures_across` (many panels then grow the figure downwards, not
    sideways). Each panel keeps one x axis; `draw(data=...)` fills each facet."""
    present = set(long["measure"])
    shown = [m for m in measures if m.label in present]
    panels = sorted(long["panel"].unique())
    facets = {"row": "measure", "col": "panel", "row_order": [m.label for m in shown], "col_order": panels}
    if measures_across:
        facets = {"row": "panel", "col": "measure", "row_order": panels, "col_order": [m.label for m in shown]}
    grid = sns.FacetGrid(
        long,
        **facets,
        sharex="row" if measures_across else "col",
        sharey=False,
        height=height,
        aspect=aspect,
        despine=False,
        dropna=False,
    )
    grid.map_dataframe(draw)
    last_row = grid.axes.shape[0] - 1
    for (i, j), ax in np.ndenumerate(grid.axes):
        measure, panel = (shown[j], panels[i]) if measures_across else (shown[i], panels[j])
        ax.set_title(panel if measures_across or i == 0 else "", fontweight="bold")
        ax.set_ylabel(measure.label if measures_across or j == 0 else "")
        ax.set_xlabel(xlabel if i == last_row else "")
        if xlog:
            ax.set_xscale("log", base=2 if xticks else 10)
        if xticks:
            ax.xaxis.set_major_locator(FixedLocator(xticks))
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_locator(NullLocator())
        if measure.log:
            plain_log_axis(ax.yaxis)
        else:
            _readable_linear(ax)
        if not ax.has_data():
            ax.text(0.5, 0.5, "no cell measured this", transform=ax.transAxes, ha="center", color="0.5")
    grid.tight_layout()
    return grid


def plain_log_axis(axis) -> None:
    """Log scale with plain tick labels (600, 2000), not matplotlib's default 6x10^2."""
    if axis.axis_name == "y":
        axis.axes.set_yscale("log")
    else:
        axis.axes.set_xscale("log")
    axis.set_major_formatter(LogFormatter())
    axis.set_minor_formatter(LogFormatter(minor_thresholds=(2, 0.5)))


def _readable_linear(ax: plt.Axes) -> None:
    """No offset notation ('1e-8 + 2.2e-2'); a range too narrow to see is widened to ±2%."""
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    low, high = ax.get_ylim()
    middle = (low + high) / 2
    if high - low < 1e-3 * max(abs(middle), 1e-12):
        ax.set_ylim(middle - 0.02 * abs(middle) - 1e-12, middle + 0.02 * abs(middle) + 1e-12)


def method_handles(methods: list[str], style: MethodStyle) -> list[Line2D]:
    return [
        Line2D([], [], linestyle="", marker=style.markers[m], color=style.palette[m], markersize=7, label=m)
        for m in methods
    ]


def legend_right(fig: Figure, handles: list, title: str) -> None:
    """One legend for the whole figure, outside on the right, in columns if long."""
    ncol = 1 if len(handles) <= 24 else 2
    fig.legend(
        handles=handles,
        title=title,
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        frameon=False,
        ncol=ncol,
        fontsize=9,
    )


def lift_legend(grid: sns.FacetGrid, title: str) -> None:
    """One legend on the right from what seaborn drew on the facets (FacetGrid collects it)."""
    grid.add_legend(title=title, adjust_subtitles=True)


def footnote(fig: Figure, lines: list[str]) -> None:
    if lines:
        fig.text(0.01, -0.01, "\n".join(lines), ha="left", va="top", fontsize=8, color="0.25", wrap=True)


def not_plotted_note(df: pd.DataFrame, shown: pd.Series, limit: int = 8) -> list[str]:
    """Text lines naming failed cells (with their error) and ok cells this figure has no value for."""
    lines = []
    failed = df[~df["status"].isin(["ok", "not_applicable"])]
    if len(failed):
        lines.append(f"Not plotted: {len(failed)} failed cell(s):")
        for _, row in failed.head(limit).iterrows():
            lines.append(f"  {row['cell_key']}: {str(row.get('error') or '')[:110]}")
        if len(failed) > limit:
            lines.append(f"  ... and {len(failed) - limit} more (see report.html)")
    missing = df[(df["status"] == "ok") & ~shown]
    if len(missing):
        methods = ", ".join(sorted(missing["method"].astype(str).unique()))
        lines.append(f"No fidelity value to plot for {len(missing)} ok cell(s) of: {methods}")
    noisy = noisy_cells(df)
    if len(noisy):
        lines.append(
            f"Noisy timing (IQR > {NOISY:.0%} of the median) in {len(noisy)} cell(s): "
            + ", ".join(noisy["label"].head(limit))
            + (" ..." if len(noisy) > limit else "")
        )
    random = sorted(df.loc[df["weights"].astype(str) == "random", "workload"].astype(str).unique())
    if random:
        lines.append(
            f"Weights: {', '.join(random)} ran with randomly initialised weights: time and memory are shown, "
            "fidelity is not meaningful for an untrained network and is not plotted."
        )
    return lines


# --- 1. the headline: speed vs fidelity ---------------------------------------------------


def tradeoff_table(df: pd.DataFrame) -> pd.DataFrame:
    """Points of the trade-off figure: per fidelity axis and panel, with `on_front` marked."""
    ok = df[df["status"] == "ok"]
    long = melt(ok, [REFERENCE_ERROR, DELETION])
    if long.empty:
        return long
    long = long[np.isfinite(long[TIME_PER_EXAMPLE.column]) & (long[TIME_PER_EXAMPLE.column] > 0)].copy()
    long["time_s"] = long[TIME_PER_EXAMPLE.column]
    long["on_front"] = False
    for _, group in long.groupby(["measure", "panel"], sort=False):
        long.loc[group.index, "on_front"] = pareto_front(group, "time_s", "value")
    return long.reset_index(drop=True)


def _draw_tradeoff(style: MethodStyle) -> Callable[..., None]:
    def draw(data: pd.DataFrame, **_: object) -> None:
        ax = plt.gca()
        for front, size, alpha in ((False, 45, 0.55), (True, 110, 1.0)):
            part = data[data["on_front"] == front]
            if part.empty:
                continue
            sns.scatterplot(
                data=part,
                x="time_s",
                y="value",
                hue="method",
                style="method",
                palette=style.palette,
                markers=style.markers,
                s=size,
                alpha=alpha,
                edgecolor=FRONT_EDGE if front else "white",
                linewidth=1.2 if front else 0.4,
                legend=False,
                ax=ax,
                zorder=3 if front else 2,
            )
        front = data[data["on_front"]].sort_values("time_s")
        xs, ys = staircase(front, "time_s", "value", float(data["time_s"].max()))
        ax.plot(xs, ys, drawstyle="steps-post", color="0.25", linewidth=1.1, zorder=1)
        # Numbers on the front's points, and a key beside the panel: long labels never collide.
        # Neighbours on the front are the points that crowd each other, so consecutive numbers
        # sit on different sides of their points.
        for n, (_, row) in enumerate(front.iterrows(), start=1):
            ax.annotate(
                str(n),
                (row["time_s"], row["value"]),
                xytext=LABEL_OFFSETS[(n - 1) % len(LABEL_OFFSETS)],
                textcoords="offset points",
                fontsize=8,
                fontweight="bold",
                zorder=4,
            )
            ax.text(
                1.03,
                1.0 - (n - 1) * KEY_LINE,
                f"{n}  {row['label']}\n     {seconds(row['time_s'])}, {row['value']:.2g}",
                transform=ax.transAxes,
                fontsize=7.5,
                va="top",
                color="0.1",
            )
        if len(front):
            ax.text(1.03, 1.0 + KEY_LINE / 2, "Pareto front:", transform=ax.transAxes, fontsize=8, fontweight="bold")

    return draw


LABEL_OFFSETS = ((5, 4), (-12, -12), (5, -12), (-12, 4))  # points: right-up, left-down, right-down, left-up


def front_grid(points: pd.DataFrame, measures: list[Measure], style: MethodStyle) -> sns.FacetGrid:
    """Time per example against each measure, a panel per workload, its Pareto front keyed beside it."""
    return measure_grid(
        points,
        measures,
        _draw_tradeoff(style),
        xlabel="median time per example (s, log)",
        height=4.2,
        aspect=(6.0 + KEY_WIDTH) / 4.2,  # the panel, then its Pareto-front key
        measures_across=points["panel"].nunique() > 2,  # many panels: grow downwards, not sideways
    )


def tradeoff_figure(df: pd.DataFrame, style: MethodStyle) -> Rendered:
    title = "Speed vs fidelity: which method and setting is most faithful for the time you have?"
    caption = (
        "One point per cell (method config). x: median time per example (call median ÷ batch size; log). "
        "Top row: error against the same method's converged reference (e.g. IG with many steps, a finer "
        "occlusion grid, many more samples) — tells which *setting* of a method is accurate enough; methods "
        "without a reference are absent there. Bottom row: deletion AUC (target probability as the most "
        "attributed features are removed first) — comparable across methods. Black-edged points and the "
        "staircase form the Pareto front: the best value reachable within a time budget."
    )
    points = tradeoff_table(df)
    if points.empty:
        return Rendered("tradeoff", title, caption, skipped="no ok cell has a reference error or a deletion AUC")
    theme()
    grid = front_grid(points, [REFERENCE_ERROR, DELETION], style)
    front_handles = [
        Line2D([], [], linestyle="", marker="o", color="0.6", markeredgecolor=FRONT_EDGE, markersize=9),
        Line2D([], [], color="0.25", linewidth=1.1),
    ]
    front_handles[0].set_label("on the Pareto front")
    front_handles[1].set_label("front: best within a time budget")
    methods = sorted(points["method"].unique())
    legend_right(grid.figure, [*method_handles(methods, style), *front_handles], "method")
    shown = df["cell_key"].isin(points["cell_key"]) & df["file"].isin(points["file"])
    footnote(grid.figure, not_plotted_note(df, shown))
    return Rendered("tradeoff", title, caption, grid.figure)


def front_members(points: pd.DataFrame) -> pd.DataFrame:
    """The Pareto front as a table, for the HTML page and pareto.csv (empty when nothing was plotted)."""
    columns = ["panel", "metric", "method", "config", "cell_key", "time_s", "value"]
    if points.empty:
        points = pd.DataFrame(columns=[*columns, "on_front"]).astype({"on_front": bool})
    front = points[points["on_front"]].sort_values(["panel", "metric", "time_s"], ascending=[True, False, True])
    out = front[columns].copy()
    return out.rename(columns={"metric": "fidelity", "time_s": "median_s_per_example"})


# --- 1b. ground truth: speed vs localisation ---------------------------------------------

RELEVANCE_MASS = Measure(
    "fid_relevance_mass",
    "relevance mass accuracy\n(share of positive attribution\ninside the object's mask; higher is better)",
    False,
)


def localisation_table(df: pd.DataFrame) -> pd.DataFrame:
    """Points of the localisation trade-off: cells with a relevance mass accuracy, `on_front` marked
    (the front of higher-is-better values)."""
    ok = df[df["status"] == "ok"]
    long = melt(ok, [RELEVANCE_MASS])
    if long.empty:
        return long
    long = long[np.isfinite(long[TIME_PER_EXAMPLE.column]) & (long[TIME_PER_EXAMPLE.column] > 0)].copy()
    long["time_s"] = long[TIME_PER_EXAMPLE.column]
    long["on_front"] = False
    for _, group in long.groupby("panel", sort=False):
        long.loc[group.index, "on_front"] = pareto_front(group, "time_s", "value", lower_is_better=False)
    return long.reset_index(drop=True)


def localisation_figure(df: pd.DataFrame, style: MethodStyle) -> Rendered:
    title = "Speed vs localisation: does the map point at the object the label comes from?"
    caption = (
        "Workloads with a ground-truth mask of the class-defining object (the shapes task). One point per cell; "
        "x: median time per example (log); y: relevance mass accuracy, the share of the map's positive "
        "attribution that falls inside the mask (1 = all of it; a uniform map scores the mask's area share). "
        "Black-edged points and the staircase form the Pareto front: the best localisation reachable within a "
        "time budget."
    )
    points = localisation_table(df)
    if points.empty:
        return Rendered("localisation", title, caption, skipped="no ok cell has a relevance mass accuracy")
    theme()
    grid = front_grid(points, [RELEVANCE_MASS], style)
    methods = sorted(points["method"].unique())
    legend_right(grid.figure, method_handles(methods, style), "method")
    with_masks = df[df["workload"].isin(points["workload"])]  # other workloads have no mask: not "missing"
    shown = with_masks["cell_key"].isin(points["cell_key"]) & with_masks["file"].isin(points["file"])
    footnote(grid.figure, not_plotted_note(with_masks, shown))
    return Rendered("localisation", title, caption, grid.figure)


# --- 2. IntegratedGradients: steps, rules, internal batching ------------------------------


def _ig_cells(df: pd.DataFrame) -> pd.DataFrame:
    """Plain IG cells: ok, fp32, contiguous (execution options are compared in the trade-off)."""
    ig = df[(df["method"] == "IntegratedGradients") & (df["status"] == "ok")]
    return ig[(ig["precision"] == "fp32") & (ig["memory_format"] == "contiguous")].copy()


def _layer(
    plot: Callable[..., object],
    hue: str,
    hue_order: list,
    palette: object,
    style: str,
    style_order: list,
    **look: object,
) -> Callable[..., None]:
    """A FacetGrid.map_dataframe function drawing `plot` (a seaborn axes-level function)."""

    def draw(data: pd.DataFrame, **_: object) -> None:
        plot(
            data=data,
            x="x",
            y="value",
            hue=hue,
            hue_order=hue_order,
            palette=palette,
            style=style,
            style_order=style_order,
            ax=plt.gca(),
            **look,
        )

    return draw


def _number(label: str) -> int:
    return int(label.split()[-1] if label.split()[-1].isdigit() else label.split()[0])


def ig_steps_figure(df: pd.DataFrame) -> Rendered:
    title = "IntegratedGradients: time and error vs n_steps, per integration rule"
    caption = (
        "Plain IG cells (fp32, contiguous, no internal batching). Time grows with the steps; the error against "
        "the converged reference and the completeness error (convergence delta) say how many steps each "
        "rule needs. Line style: batch size."
    )
    ig = _ig_cells(df)
    if "knob_internal_batch_size" in ig.columns:
        ig = ig[ig["knob_internal_batch_size"].isna()]
    if "knob_n_steps" in ig.columns:  # panels with one n_steps value have no curve to show
        ig = ig[ig.groupby("panel")["knob_n_steps"].transform("nunique") > 1]
    if ig.empty:
        return Rendered("ig_steps", title, caption, skipped="no panel has plain IG cells at two or more n_steps")
    ig["x"] = ig["knob_n_steps"].astype(float)
    ig["integration rule"] = ig["knob_method"].astype(str)
    ig["batch"] = "batch " + ig["batch_size"].astype(str)
    long = melt(ig, [TIME_PER_CALL, REFERENCE_ERROR, COMPLETENESS])
    rules = sorted(long["integration rule"].unique())
    theme()
    grid = measure_grid(
        long,
        [TIME_PER_CALL, REFERENCE_ERROR, COMPLETENESS],
        _layer(
            sns.lineplot,
            "integration rule",
            rules,
            "colorblind",
            "batch",
            sorted(long["batch"].unique(), key=_number),
            markers=True,
            markersize=7,
            errorbar=None,
            sort=True,
        ),
        xlabel="n_steps (log2)",
        xticks=sorted(long["x"].unique()),
    )
    lift_legend(grid, "")
    return Rendered("ig_steps", title, caption, grid.figure)


def ig_internal_batch_figure(df: pd.DataFrame) -> Rendered:
    title = "IntegratedGradients: peak memory and time vs internal_batch_size"
    caption = (
        "Rows pushed through the model per call: internal_batch_size when set, else n_steps × batch size "
        "(all at once). Smaller chunks cap peak memory at the cost of more, smaller model calls."
    )
    ig = _ig_cells(df)
    if "knob_internal_batch_size" not in ig.columns or ig["knob_internal_batch_size"].notna().sum() == 0:
        return Rendered("ig_internal_batch", title, caption, skipped="no IG cell sets internal_batch_size")
    ig = ig[ig.groupby("panel")["knob_internal_batch_size"].transform("count") > 0]
    ibs = pd.to_numeric(ig["knob_internal_batch_size"], errors="coerce")
    ig["x"] = ibs.fillna(ig["knob_n_steps"].astype(float) * ig["batch_size"])
    ig["internal batching"] = np.where(ibs.notna(), "internal_batch_size set", "unset: all rows in one call")
    ig["n_steps"] = ig["knob_n_steps"].astype(int).astype(str) + " steps"
    long = melt(ig, [PEAK_MIB, TIME_PER_CALL])
    steps = sorted(long["n_steps"].unique(), key=_number)
    theme()
    grid = measure_grid(
        long,
        [PEAK_MIB, TIME_PER_CALL],
        _layer(
            sns.scatterplot,
            "n_steps",
            steps,
            "viridis",
            "internal batching",
            sorted(long["internal batching"].unique()),
            s=70,
        ),
        xlabel="rows per model call (log2)",
        xticks=sorted(long["x"].unique()),
    )
    lift_legend(grid, "")
    return Rendered("ig_internal_batch", title, caption, grid.figure)


# --- 3. batch size ------------------------------------------------------------------------


def batch_size_figure(df: pd.DataFrame, style: MethodStyle) -> Rendered:
    title = "Batch size: time per call, time per example and peak memory, per method"
    caption = (
        "Every method config measured at two or more batch sizes (same knobs, precision and memory format). "
        "Falling time per example means batching pays; peak memory shows what it costs."
    )
    ok = df[df["status"] == "ok"].copy()
    ok["series"] = (ok["method"].astype(str) + " " + ok["config_no_batch"]).str.strip()
    sizes = ok.groupby(["panel", "series"])["batch_size"].transform("nunique")
    ok = ok[sizes > 1]
    if ok.empty:
        return Rendered("batch_size", title, caption, skipped="no method config was measured at two batch sizes")
    ok["x"] = ok["batch_size"].astype(float)
    series = sorted(ok["series"].unique())
    method_of = dict(zip(ok["series"], ok["method"], strict=False))
    palette = {s: style.palette[method_of[s]] for s in series}
    long = melt(ok, [TIME_PER_CALL, TIME_PER_EXAMPLE, PEAK_MIB])
    theme()

    draw = _layer(sns.lineplot, "series", series, palette, "series", series, markers=True, markersize=7, errorbar=None)
    grid = measure_grid(
        long,
        [TIME_PER_CALL, TIME_PER_EXAMPLE, PEAK_MIB],
        draw,
        xlabel="batch size (log2)",
        xticks=sorted(long["x"].unique()),
        height=3.0,
    )
    lift_legend(grid, "method config")
    return Rendered("batch_size", title, caption, grid.figure)


# --- 4. efficiency --------------------------------------------------------------------------


def efficiency_figure(df: pd.DataFrame, style: MethodStyle) -> Rendered:
    title = "Efficiency: measured time vs the hardware limit"
    bases = sorted(set(df["efficiency_basis"].dropna())) if "efficiency_basis" in df else []
    caption = (
        "efficiency = limit ÷ measured median. The limit is the method's forward and backward rows times the "
        "model's best per-row time over batch sizes up to the rows the method puts in one model call (same "
        "device, precision and memory format), a backward to a layer timed as such for layer methods. "
        "1 = as fast as the hardware runs the model; below 1 = overhead (Python, small calls, extra work). "
        f"Above {SUSPECT_ABOVE} (crosses) the limit was measured wrong: suspect, not fast. One point per config."
        + (f" Basis: {', '.join(bases)}." if bases else "")
    )
    ok = df[(df["status"] == "ok") & np.isfinite(pd.to_numeric(df["efficiency"], errors="coerce"))].copy()
    ok = ok[ok["efficiency"] > 0]
    if ok.empty:
        return Rendered(
            "efficiency", title, caption, skipped="no ok cell has an efficiency (cost model or calibration)"
        )
    ok["suspect"] = ok["efficiency"] > SUSPECT_ABOVE
    methods = sorted(ok["method"].unique())
    panels = sorted(ok["panel"].unique())
    theme()
    grid = sns.catplot(
        data=ok,
        kind="strip",
        x="efficiency",
        y="method",
        order=methods,
        hue="method",
        hue_order=methods,
        palette=style.palette,
        col="panel",
        col_order=panels,
        col_wrap=min(len(panels), 3),
        jitter=0.15,
        size=7,
        alpha=0.8,
        legend=False,
        height=max(3.0, 0.32 * len(methods) + 1.2),
        aspect=max(0.9, 4.5 / max(3.0, 0.32 * len(methods) + 1.2)),
        log_scale=(True, False),
        sharex=False,
    )
    for ax, panel in zip(grid.axes.flat, panels, strict=False):
        suspect = ok[ok["suspect"] & (ok["panel"] == panel)]
        if not suspect.empty:  # crossed out, so no one reads them as fast
            ax.scatter(
                suspect["efficiency"],
                [methods.index(m) for m in suspect["method"]],
                marker="x",
                color="crimson",
                s=50,
                label=f"suspect (> {SUSPECT_ABOVE})",
                zorder=3,
            )
            ax.legend(loc="lower right", fontsize="small")
        ax.axvline(1.0, color="0.3", linestyle="--", linewidth=1)
        ax.axvspan(SUSPECT_ABOVE, max(ok["efficiency"].max(), SUSPECT_ABOVE) * 1.2, color="crimson", alpha=0.06)
        ax.set_title(panel, fontweight="bold")
        ax.set_xlabel("efficiency\n(limit ÷ measured median; log)")
        ax.set_ylabel("")
        ax.grid(True, axis="x", which="both", alpha=0.4)
    grid.tight_layout()
    return Rendered("efficiency", title, caption, grid.figure)


def save(rendered: Rendered, folder: str, dpi: int = 110) -> str:
    """Write the figure as <folder>/<name>.png and close it; returns the file name."""
    assert rendered.figure is not None
    name = f"{rendered.name}.png"
    rendered.figure.savefig(f"{folder}/{name}", dpi=dpi, bbox_inches="tight")
    plt.close(rendered.figure)
    return name
