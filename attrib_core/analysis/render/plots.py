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
from scipy import stats

from attrib_core.analysis.pareto import pareto_front, staircase
from attrib_core.analysis.render.style import MethodStyle
from attrib_core.analysis.results import EXAMPLES_PREFIX, SUSPECT_ABOVE
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


ROUNDS_IQR = "rounds_iqr"  # a time: the cell's rounds, first to third quartile
EXAMPLES_MEAN_CI = "examples_mean_ci"  # a fidelity value: the 95% interval of its mean over the cell's examples


@dataclass(frozen=True)
class Measure:
    """A plotted quantity: its column, axis label (with unit and statistic), scale, factor,
    direction, and the spread drawn around it as error bars (None: a single reading)."""

    column: str
    label: str
    log: bool = True
    factor: float = 1.0
    lower_is_better: bool = True
    spread: str | None = None
    limits: tuple[float, float] | None = None  # the values it can take: error bars stop there

    def bounds(self, df: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
        """(low, high) of each row's error bar in the plotted unit; NaN where there is none."""
        nothing = pd.Series(np.nan, index=df.index)
        if self.spread == ROUNDS_IQR and {"q1_s", "q3_s"} <= set(df.columns):
            per = df["batch_size"].astype(float) if self.column == "per_sample_median_s" else 1.0
            return df["q1_s"] / per * self.factor, df["q3_s"] / per * self.factor
        examples = EXAMPLES_PREFIX + self.column.removeprefix("fid_")
        if self.spread == EXAMPLES_MEAN_CI and examples in df.columns:
            half = df[examples].map(lambda v: mean_interval(_finite_values(v))) * self.factor
            centre = pd.to_numeric(df[self.column], errors="coerce") * self.factor
            low, high = self.limits or (-np.inf, np.inf)
            return (centre - half).clip(lower=low), (centre + half).clip(upper=high)
        return nothing, nothing


def mean_interval(values: np.ndarray, level: float = 0.95) -> float:
    """Half-width of the Student-t interval of the mean of `values` (NaN below two values)."""
    if len(values) < 2:
        return np.nan
    return float(stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))


def _finite_values(values: object) -> np.ndarray:
    if not isinstance(values, (tuple, list)):
        return np.array([])
    array = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype=float)
    return array[np.isfinite(array)]


ROUNDS = "median of rounds; bars: IQR"
EXAMPLES = "mean over examples; bars: 95% CI"
TIME_PER_EXAMPLE = Measure("per_sample_median_s", f"time per example (s)\n{ROUNDS}", spread=ROUNDS_IQR)
TIME_PER_CALL = Measure("median_s", f"time per call (s)\n{ROUNDS}", spread=ROUNDS_IQR)
PEAK_MIB = Measure("peak_bytes", "peak memory (MiB)\none profiled call", factor=1 / MIB)

# The own-reference error: each method against its own converged reference (IG with many steps,
# a finer occlusion grid...), so two methods' values are errors against different maps. It ranks
# one method's settings, never methods against each other: no cross-method front is drawn on it.
REFERENCE_ERROR = Measure(
    "fid_reference_error",
    "error against the method's own converged\nreference (not comparable between methods;\n"
    f"relative L2, lower is better)\n{EXAMPLES}",
    spread=EXAMPLES_MEAN_CI,
)
# Fidelity axes on which methods may be ranked against each other (same workload, same score,
# same baseline for every method): the trade-off figure draws their Pareto fronts.
DELETION = Measure(
    "fid_deletion",
    "deletion AUC, comparable across methods\n(target probability as top features\nare removed; lower is better)\n"
    + EXAMPLES,
    False,
    spread=EXAMPLES_MEAN_CI,
    limits=(0.0, 1.0),
)
INSERTION = Measure(
    "fid_insertion",
    "insertion AUC, comparable across methods\n(target probability as top features\nare inserted; higher is better)\n"
    + EXAMPLES,
    False,
    lower_is_better=False,
    spread=EXAMPLES_MEAN_CI,
    limits=(0.0, 1.0),
)
COMPARABLE = [DELETION, INSERTION]
COMPLETENESS = Measure(
    "fid_completeness",
    f"completeness error\n(|Σ attr − ΔF| / |ΔF|; lower is better)\n{EXAMPLES}",
    spread=EXAMPLES_MEAN_CI,
)


def theme() -> None:
    sns.set_theme(**THEME)


# --- shared helpers ---------------------------------------------------------------------


def melt(df: pd.DataFrame, measures: list[Measure]) -> pd.DataFrame:
    """Long format: one row per (cell, measure) with `measure` (its label), `value` and its error
    bar's `low` and `high` (NaN where the measure has no spread)."""
    frames = []
    for m in measures:
        if m.column not in df.columns:
            continue
        part = df[df[m.column].notna()].copy()
        part["value"] = pd.to_numeric(part[m.column], errors="coerce") * m.factor
        part["low"], part["high"] = m.bounds(part)
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
    notes: dict[tuple[str, str], str] | None = None,
) -> sns.FacetGrid:
    """One facet per (measure, panel): measures in rows and panels in columns, or the other
    way round with `measures_across` (many panels then grow the figure downwards, not
    sideways). Each panel keeps one x axis; `draw(data=...)` fills each facet. An empty facet
    says why: its entry in `notes` (measure label, panel), else that no cell measured it."""
    notes = notes or {}
    present = set(long["measure"]) | {label for label, _ in notes}
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
        if not ax.has_data():  # no values: say why, and leave no made-up scale on the y axis
            why = notes.get((measure.label, panel), NOT_MEASURED)
            ax.text(0.5, 0.5, why, transform=ax.transAxes, ha="center", va="center", color="0.35", wrap=True)
            ax.yaxis.set_major_locator(NullLocator())
            ax.yaxis.set_minor_locator(NullLocator())
    grid.tight_layout()
    return grid


NOT_MEASURED = "no cell measured this"


def not_meaningful_notes(df: pd.DataFrame, measures: list[Measure]) -> dict[tuple[str, str], str]:
    """(measure label, panel) -> why a panel shows no value that was measured: the cells recorded
    it as not meaningful (random weights: an untrained network has nothing to be faithful to)."""
    notes = {}
    for m in measures:
        status = f"{m.column}_status"
        if status not in df.columns:
            continue
        for panel, cells in df.groupby("panel", sort=False):
            if cells[m.column].notna().any() or not (cells[status] == "not_meaningful").any():
                continue
            random = (cells.loc[cells[status] == "not_meaningful", "weights"].astype(str) == "random").all()
            why = "random weights: an untrained network" if random else "see the cells' fidelity records"
            notes[(m.label, str(panel))] = f"measured, but not meaningful\n({why})"
    return notes


def error_bars(ax: plt.Axes, data: pd.DataFrame, colour: object, *, x: str = "x", y: str = "value") -> None:
    """The rows' spread as error bars: `low`/`high` around y, and `x_low`/`x_high` around x where
    the table has them. Rows without a spread get none."""
    xs, ys = data[x].to_numpy(dtype=float), data[y].to_numpy(dtype=float)

    def around(centre: np.ndarray, frame: pd.DataFrame, low: str, high: str) -> np.ndarray | None:
        if low not in frame.columns:
            return None
        lo, hi = frame[low].to_numpy(dtype=float), frame[high].to_numpy(dtype=float)
        bars = np.vstack([centre - lo, hi - centre])
        return None if not np.isfinite(bars).any() else np.where(np.isfinite(bars), np.maximum(bars, 0), 0)

    yerr, xerr = around(ys, data, "low", "high"), around(xs, data, "x_low", "x_high")
    if yerr is None and xerr is None:
        return
    ax.errorbar(xs, ys, yerr=yerr, xerr=xerr, fmt="none", ecolor=colour, elinewidth=0.9, alpha=0.4, zorder=1)


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


def timed_points(df: pd.DataFrame, measures: list[Measure]) -> pd.DataFrame:
    """Ok cells in long format with `time_s` (median per example) and its IQR (`x_low`, `x_high`)
    beside each measure's value; rows without a positive time are dropped."""
    ok = df[df["status"] == "ok"]
    long = melt(ok, measures)
    if long.empty:
        return long
    long = long[np.isfinite(long[TIME_PER_EXAMPLE.column]) & (long[TIME_PER_EXAMPLE.column] > 0)].copy()
    long["time_s"] = long[TIME_PER_EXAMPLE.column]
    long["x_low"], long["x_high"] = TIME_PER_EXAMPLE.bounds(long)
    return long


def mark_fronts(long: pd.DataFrame, measures: list[Measure], by: list[str]) -> pd.DataFrame:
    """`on_front`: the Pareto front of time against each measure (in its direction), per `by` group."""
    long["on_front"] = False
    lower = {m.label: m.lower_is_better for m in measures}
    for (label, *_), group in long.groupby(["measure", *by], sort=False):
        long.loc[group.index, "on_front"] = pareto_front(group, "time_s", "value", lower_is_better=lower[label])
    return long.reset_index(drop=True)


def tradeoff_table(df: pd.DataFrame) -> pd.DataFrame:
    """Points of the trade-off figure: the fidelity metrics comparable across methods, with
    `on_front` marking the cross-method Pareto front per metric and panel. The own-reference
    error is never here: it is drawn per method (`reference_error_table`)."""
    long = timed_points(df, COMPARABLE)
    return long if long.empty else mark_fronts(long, COMPARABLE, ["panel"])


def _scatter(ax: plt.Axes, data: pd.DataFrame, style: MethodStyle, *, size: float, alpha: float, edge: str) -> None:
    sns.scatterplot(
        data=data,
        x="time_s",
        y="value",
        hue="method",
        style="method",
        palette=style.palette,
        markers=style.markers,
        s=size,
        alpha=alpha,
        edgecolor=edge,
        linewidth=1.2 if edge == FRONT_EDGE else 0.4,
        legend=False,
        ax=ax,
        zorder=3 if edge == FRONT_EDGE else 2,
    )


def _method_bars(ax: plt.Axes, data: pd.DataFrame, style: MethodStyle) -> None:
    for method, part in data.groupby("method", sort=True):
        error_bars(ax, part, style.palette.get(str(method), "0.5"), x="time_s")


def _draw_tradeoff(style: MethodStyle) -> Callable[..., None]:
    def draw(data: pd.DataFrame, **_: object) -> None:
        ax = plt.gca()
        _method_bars(ax, data, style)
        for front, size, alpha in ((False, 45, 0.55), (True, 110, 1.0)):
            part = data[data["on_front"] == front]
            if not part.empty:
                _scatter(ax, part, style, size=size, alpha=alpha, edge=FRONT_EDGE if front else "white")
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
TIME_AXIS = f"time per example (s, log; {ROUNDS})"


def front_grid(
    points: pd.DataFrame, measures: list[Measure], style: MethodStyle, notes: dict | None = None
) -> sns.FacetGrid:
    """Time per example against each measure, a panel per workload, its Pareto front keyed beside it."""
    return measure_grid(
        points,
        measures,
        _draw_tradeoff(style),
        xlabel=TIME_AXIS,
        height=4.2,
        aspect=(6.0 + KEY_WIDTH) / 4.2,  # the panel, then its Pareto-front key
        measures_across=points["panel"].nunique() > 2,  # many panels: grow downwards, not sideways
        notes=notes,
    )


def front_handles() -> list[Line2D]:
    member = Line2D([], [], linestyle="", marker="o", color="0.6", markeredgecolor=FRONT_EDGE, markersize=9)
    member.set_label("on the Pareto front")
    line = Line2D([], [], color="0.25", linewidth=1.1)
    line.set_label("front: best within a time budget")
    return [member, line]


def tradeoff_figure(df: pd.DataFrame, style: MethodStyle) -> Rendered:
    title = "Speed vs fidelity: which method and setting is most faithful for the time you have?"
    caption = (
        "One point per cell (method config), on the fidelity metrics that rank methods against each other "
        "(the same score and baseline for every method of a workload). x: time per example (the median of "
        "the rounds ÷ batch size; log), bars: the rounds' IQR. y: deletion AUC (target probability as the most "
        "attributed features are removed first; lower is better) and insertion AUC (as they are inserted into "
        "the baseline; higher is better), each the mean over the cell's examples, bars: "
        "the 95% interval of that mean (Student t; none for a single example). Every method saw the same "
        "examples, so two methods' comparison is paired: "
        "overlapping bars can still hide a difference that is consistent example by example; bars apart do "
        "separate them. Black-edged points and the staircase form the Pareto front: the best value reachable "
        "within a time budget. The error against each method's own "
        "converged reference is not comparable between methods and has a figure of its own."
    )
    points = tradeoff_table(df)
    notes = not_meaningful_notes(df[df["status"] == "ok"], COMPARABLE)
    if points.empty:
        return Rendered("tradeoff", title, caption, skipped="no ok cell has a deletion or insertion AUC")
    theme()
    grid = front_grid(points, COMPARABLE, style, notes)
    methods = sorted(points["method"].unique())
    legend_right(grid.figure, [*method_handles(methods, style), *front_handles()], "method")
    shown = df["cell_key"].isin(points["cell_key"]) & df["file"].isin(points["file"])
    footnote(grid.figure, not_plotted_note(df, shown))
    return Rendered("tradeoff", title, caption, grid.figure)


def front_members(points: pd.DataFrame) -> pd.DataFrame:
    """The Pareto front as a table, for the HTML page and pareto.csv (empty when nothing was plotted).
    Takes `tradeoff_table`'s points: fronts across methods on comparable metrics only."""
    columns = ["panel", "metric", "method", "config", "cell_key", "time_s", "value"]
    if points.empty:
        points = pd.DataFrame(columns=[*columns, "on_front"]).astype({"on_front": bool})
    front = points[points["on_front"]].sort_values(["panel", "metric", "time_s"], ascending=[True, False, True])
    out = front[columns].copy()
    return out.rename(columns={"metric": "fidelity", "time_s": "median_s_per_example"})


# --- 1a. each method against its own reference ----------------------------------------------


def reference_error_table(df: pd.DataFrame) -> pd.DataFrame:
    """Points of the own-reference figure, `on_front` marking each method's own front (its settings
    that no other setting of the same method beats): fronts never cross methods here."""
    long = timed_points(df, [REFERENCE_ERROR])
    return long if long.empty else mark_fronts(long, [REFERENCE_ERROR], ["panel", "method"])


def _draw_per_method(style: MethodStyle) -> Callable[..., None]:
    def draw(data: pd.DataFrame, **_: object) -> None:
        ax = plt.gca()
        _method_bars(ax, data, style)
        _scatter(ax, data, style, size=55, alpha=0.9, edge="white")
        for method, part in data[data["on_front"]].groupby("method", sort=True):
            ordered = part.sort_values("time_s")
            colour = style.palette.get(str(method), "0.5")
            ax.plot(ordered["time_s"], ordered["value"], color=colour, linewidth=1.3, zorder=2)

    return draw


def reference_error_figure(df: pd.DataFrame, style: MethodStyle) -> Rendered:
    title = "Each method against its own converged reference: what a more accurate setting costs"
    caption = (
        "One point per cell; one curve per method, through the settings of that method that no other setting "
        "of it beats on both time and error. y: relative L2 error of the map against the same method's "
        "converged reference (e.g. IG with many steps, a finer occlusion grid, many more samples), mean over "
        "the cell's examples, bars: the 95% interval of that mean. Each method has its own reference, "
        "so the values rank a method's settings, never two methods: no front is drawn across methods. "
        "x: time per example (median of the "
        "rounds ÷ batch size; log), bars: the rounds' IQR. Methods without a reference are absent."
    )
    points = reference_error_table(df)
    notes = not_meaningful_notes(df[df["status"] == "ok"], [REFERENCE_ERROR])
    if points.empty:
        return Rendered("reference_error", title, caption, skipped="no ok cell has an own-reference error")
    theme()
    grid = measure_grid(
        points,
        [REFERENCE_ERROR],
        _draw_per_method(style),
        xlabel=TIME_AXIS,
        height=4.2,
        aspect=1.45,
        measures_across=points["panel"].nunique() > 3,
        notes=notes,
    )
    methods = sorted(points["method"].unique())
    curve = Line2D([], [], color="0.4", linewidth=1.3, label="the method's own front\n(its settings only)")
    legend_right(grid.figure, [*method_handles(methods, style), curve], "method")
    return Rendered("reference_error", title, caption, grid.figure)


# --- 1b. ground truth: speed vs localisation ---------------------------------------------

RELEVANCE_MASS = Measure(
    "fid_relevance_mass",
    "relevance mass accuracy\n(share of positive attribution\ninside the object's mask; higher is better)\n" + EXAMPLES,
    False,
    lower_is_better=False,
    spread=EXAMPLES_MEAN_CI,
    limits=(0.0, 1.0),
)


def localisation_table(df: pd.DataFrame) -> pd.DataFrame:
    """Points of the localisation trade-off: cells with a relevance mass accuracy, `on_front` marked
    (the front of higher-is-better values)."""
    long = timed_points(df, [RELEVANCE_MASS])
    return long if long.empty else mark_fronts(long, [RELEVANCE_MASS], ["panel"])


def localisation_figure(df: pd.DataFrame, style: MethodStyle) -> Rendered:
    title = "Speed vs localisation: does the map point at the object the label comes from?"
    caption = (
        "Workloads with a ground-truth mask of the class-defining object (the shapes task). One point per cell; "
        "x: time per example (median of the rounds ÷ batch size; log), bars: the rounds' IQR; y: relevance mass "
        "accuracy, the share of the map's positive attribution that falls inside the mask (1 = all of it; a "
        "uniform map scores the mask's area share), mean over the cell's examples, bars: the 95% interval "
        "of that mean. "
        "Black-edged points and the staircase form the Pareto front: the best localisation reachable within a "
        "time budget."
    )
    points = localisation_table(df)
    if points.empty:
        return Rendered("localisation", title, caption, skipped="no ok cell has a relevance mass accuracy")
    theme()
    grid = front_grid(points, [RELEVANCE_MASS], style)
    methods = sorted(points["method"].unique())
    legend_right(grid.figure, [*method_handles(methods, style), *front_handles()], "method")
    with_masks = df[df["workload"].isin(points["workload"])]  # other workloads have no mask: not "missing"
    shown = with_masks["cell_key"].isin(points["cell_key"]) & with_masks["file"].isin(points["file"])
    footnote(grid.figure, not_plotted_note(with_masks, shown))
    return Rendered("localisation", title, caption, grid.figure)


# --- 2. IntegratedGradients: steps, rules, internal batching ------------------------------


def _ig_cells(df: pd.DataFrame) -> pd.DataFrame:
    """Plain IG cells: ok, fp32, contiguous (execution options are compared in the trade-off)."""
    ig = df[(df["method"] == "IntegratedGradients") & (df["status"] == "ok")]
    return ig[(ig["precision"] == "fp32") & (ig["memory_format"] == "contiguous")].copy()


LINE_STYLES = ("-", "--", ":", "-.")


@dataclass(frozen=True)
class Series:
    """How a line figure tells its series apart: colour by `hue`, marker and dash by `style`."""

    hue: str
    colours: dict[str, object]
    style: str
    styles: list[str]
    connect: bool = True  # False: markers only (points that are no curve)

    def look(self, value: str) -> tuple[str, str]:
        i = self.styles.index(value)
        return MARKERS[i % len(MARKERS)], LINE_STYLES[i % len(LINE_STYLES)] if self.connect else "none"

    def draw(self, data: pd.DataFrame, **_: object) -> None:
        """Each series' points in x order, the measure's spread as error bars (FacetGrid.map_dataframe)."""
        ax = plt.gca()
        for (hue, style), part in data.groupby([self.hue, self.style], sort=True):
            part = part.sort_values("x")
            marker, line = self.look(str(style))
            centre = part["value"].to_numpy(dtype=float)
            bars = np.vstack([centre - part["low"].to_numpy(dtype=float), part["high"].to_numpy(dtype=float) - centre])
            ax.errorbar(
                part["x"],
                centre,
                yerr=np.where(np.isfinite(bars), np.maximum(bars, 0), 0) if np.isfinite(bars).any() else None,
                color=self.colours[str(hue)],
                marker=marker,
                linestyle=line,
                markersize=6,
                linewidth=1.4,
                elinewidth=0.9,
                capsize=2.5,
            )

    def handles(self, hue_title: str, style_title: str) -> list[Line2D]:
        heading = {"linestyle": "", "marker": ""}
        out = [Line2D([], [], **heading, label=hue_title)]
        out += [Line2D([], [], color=c, linewidth=2, label=str(h)) for h, c in self.colours.items()]
        out.append(Line2D([], [], **heading, label=style_title))
        for value in self.styles:
            marker, line = self.look(value)
            out.append(Line2D([], [], color="0.3", marker=marker, linestyle=line, label=value))
        return out


MARKERS = ("o", "X", "s", "^", "D", "v", "P")


def _number(label: str) -> int:
    return int(label.split()[-1] if label.split()[-1].isdigit() else label.split()[0])


def ig_steps_figure(df: pd.DataFrame) -> Rendered:
    title = "IntegratedGradients: time and error vs n_steps, per integration rule"
    caption = (
        "Plain IG cells (fp32, contiguous, no internal batching). Time per call: the median of the cell's "
        "rounds, bars: their IQR (a step up the curve inside the bars of its neighbour is noise, not cost). "
        "The error against IG's own converged reference and the completeness error (convergence delta): the "
        "mean over the cell's examples, bars: the 95% interval of that mean; they say how many steps each "
        "rule needs. A panel "
        "whose cells measured an error that means nothing (random weights) says so instead of a curve. "
        "Line style and marker: batch size."
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
    measures = [TIME_PER_CALL, REFERENCE_ERROR, COMPLETENESS]
    long = melt(ig, measures)
    rules = sorted(long["integration rule"].unique())
    series = Series(
        "integration rule",
        dict(zip(rules, sns.color_palette("colorblind", len(rules)), strict=True)),
        "batch",
        sorted(long["batch"].unique(), key=_number),
    )
    theme()
    grid = measure_grid(
        long,
        measures,
        series.draw,
        xlabel="n_steps (log2)",
        xticks=sorted(long["x"].unique()),
        notes=not_meaningful_notes(ig, measures),
    )
    legend_right(grid.figure, series.handles("integration rule", "batch"), "")
    return Rendered("ig_steps", title, caption, grid.figure)


def ig_internal_batch_figure(df: pd.DataFrame) -> Rendered:
    title = "IntegratedGradients: peak memory and time vs internal_batch_size"
    caption = (
        "Rows pushed through the model per call: internal_batch_size when set, else n_steps × batch size "
        "(all at once). Smaller chunks cap peak memory at the cost of more, smaller model calls. Peak memory: "
        "one profiled call (it repeats to the byte); time: the median of the rounds, bars: their IQR."
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
    series = Series(
        "n_steps",
        dict(zip(steps, sns.color_palette("viridis", len(steps)), strict=True)),
        "internal batching",
        sorted(long["internal batching"].unique()),
        connect=False,
    )
    theme()
    grid = measure_grid(
        long,
        [PEAK_MIB, TIME_PER_CALL],
        series.draw,
        xlabel="rows per model call (log2)",
        xticks=sorted(long["x"].unique()),
    )
    legend_right(grid.figure, series.handles("n_steps", "internal batching"), "")
    return Rendered("ig_internal_batch", title, caption, grid.figure)


# --- 3. batch size ------------------------------------------------------------------------


def batch_size_figure(df: pd.DataFrame, style: MethodStyle) -> Rendered:
    title = "Batch size: time per call, time per example and peak memory, per method"
    caption = (
        "Every method config measured at two or more batch sizes (same knobs, precision and memory format). "
        "Falling time per example means batching pays; peak memory shows what it costs. Times: the median of "
        "the cell's rounds (per example: ÷ batch size), bars: their IQR; peak memory: one profiled call."
    )
    ok = df[df["status"] == "ok"].copy()
    ok["series"] = (ok["method"].astype(str) + " " + ok["config_no_batch"]).str.strip()
    sizes = ok.groupby(["panel", "series"])["batch_size"].transform("nunique")
    ok = ok[sizes > 1]
    if ok.empty:
        return Rendered("batch_size", title, caption, skipped="no method config was measured at two batch sizes")
    ok["x"] = ok["batch_size"].astype(float)
    names = sorted(ok["series"].unique())
    method_of = dict(zip(ok["series"], ok["method"], strict=False))
    long = melt(ok, [TIME_PER_CALL, TIME_PER_EXAMPLE, PEAK_MIB])
    series = Series("series", {s: style.palette[method_of[s]] for s in names}, "series", names)
    theme()
    grid = measure_grid(
        long,
        [TIME_PER_CALL, TIME_PER_EXAMPLE, PEAK_MIB],
        series.draw,
        xlabel="batch size (log2)",
        xticks=sorted(long["x"].unique()),
        height=3.0,
    )
    handles = [
        Line2D([], [], color=series.colours[s], marker=series.look(s)[0], linestyle=series.look(s)[1], label=s)
        for s in names
    ]
    legend_right(grid.figure, handles, "method config")
    return Rendered("batch_size", title, caption, grid.figure)


# --- 4. efficiency --------------------------------------------------------------------------


def efficiency_table(df: pd.DataFrame) -> pd.DataFrame:
    """Ok cells with an efficiency, its error bar (`low`, `high`: the limit over the third and first
    quartile of the cell's rounds, i.e. the rounds' relative IQR; the limit's own spread is not in
    it) and `suspect` (above SUSPECT_ABOVE: the limit was measured wrong)."""
    ok = df[(df["status"] == "ok") & np.isfinite(pd.to_numeric(df["efficiency"], errors="coerce"))].copy()
    ok = ok[ok["efficiency"] > 0]
    ok["low"] = ok["efficiency"] * ok["median_s"] / ok["q3_s"]
    ok["high"] = ok["efficiency"] * ok["median_s"] / ok["q1_s"]
    ok["suspect"] = ok["efficiency"] > SUSPECT_ABOVE
    return ok


def _spread_rows(values: pd.Series, width: float = 0.5) -> np.ndarray:
    """Offsets within a method's row, in order of value: points side by side, never random jitter."""
    n = len(values)
    offsets = np.linspace(-width / 2, width / 2, n) if n > 1 else np.zeros(1)
    return offsets[np.argsort(np.argsort(values.to_numpy(), kind="stable"))]


def efficiency_figure(df: pd.DataFrame, style: MethodStyle) -> Rendered:
    title = "Efficiency: measured time vs the hardware limit"
    bases = sorted(set(df["efficiency_basis"].dropna())) if "efficiency_basis" in df else []
    caption = (
        "efficiency = limit ÷ measured median. The limit is the method's forward and backward rows times the "
        "model's best per-row time over batch sizes up to the rows the method puts in one model call (same "
        "device, precision and memory format), a backward to a layer timed as such for layer methods. "
        "1 = as fast as the hardware runs the model; below 1 = overhead (Python, small calls, extra work). "
        f"Above {SUSPECT_ABOVE} (crosses) the limit was measured wrong: suspect, not fast. One point per config; "
        "bars: the limit over the cell's rounds' IQR (the rounds' spread only; the limit's own is not in them)."
        + (f" Basis: {', '.join(bases)}." if bases else "")
    )
    ok = efficiency_table(df)
    if ok.empty:
        return Rendered(
            "efficiency", title, caption, skipped="no ok cell has an efficiency (cost model or calibration)"
        )
    methods = sorted(ok["method"].unique())
    panels = sorted(ok["panel"].unique())
    columns = min(len(panels), 3)
    rows = -(-len(panels) // columns)
    height = max(3.0, 0.32 * len(methods) + 1.2)
    theme()
    fig, axes = plt.subplots(rows, columns, figsize=(6.2 * columns, height * rows), squeeze=False)
    top = max(float(ok["high"].max(skipna=True) if ok["high"].notna().any() else 0), ok["efficiency"].max())
    for ax, panel in zip(axes.flat, panels, strict=False):
        cells = ok[ok["panel"] == panel].copy()
        cells["y"] = cells["method"].map(methods.index).astype(float)
        for _, part in cells.groupby("method", sort=True):
            cells.loc[part.index, "y"] += _spread_rows(part["efficiency"])
        for method, part in cells.groupby("method", sort=True):
            centre = part["efficiency"].to_numpy(dtype=float)
            xerr = np.vstack([centre - part["low"].to_numpy(dtype=float), part["high"].to_numpy(dtype=float) - centre])
            ax.errorbar(
                centre,
                part["y"],
                xerr=np.where(np.isfinite(xerr), np.maximum(xerr, 0), 0),
                fmt="o",
                color=style.palette.get(str(method), "0.5"),
                markersize=6,
                elinewidth=0.9,
                alpha=0.85,
                zorder=2,
            )
        suspect = cells[cells["suspect"]]
        if not suspect.empty:  # crossed out, so no one reads them as fast
            ax.scatter(
                suspect["efficiency"],
                suspect["y"],
                marker="x",
                color="crimson",
                s=50,
                label=f"suspect (> {SUSPECT_ABOVE})",
                zorder=3,
            )
            ax.legend(loc="lower right", fontsize="small")
        ax.axvline(1.0, color="0.3", linestyle="--", linewidth=1)
        ax.axvspan(SUSPECT_ABOVE, max(top, SUSPECT_ABOVE) * 1.2, color="crimson", alpha=0.06)
        ax.set_xscale("log")
        ax.set_yticks(range(len(methods)), methods, fontsize=8)
        ax.set_ylim(len(methods) - 0.5, -0.5)
        ax.set_title(panel, fontweight="bold")
        ax.set_xlabel("efficiency (limit ÷ median time; log)\nbars: the limit ÷ the rounds' IQR")
        ax.grid(True, axis="x", which="both", alpha=0.4)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return Rendered("efficiency", title, caption, fig)


def save(rendered: Rendered, folder: str, dpi: int = 110) -> str:
    """Write the figure as <folder>/<name>.png and close it; returns the file name."""
    assert rendered.figure is not None
    name = f"{rendered.name}.png"
    rendered.figure.savefig(f"{folder}/{name}", dpi=dpi, bbox_inches="tight")
    plt.close(rendered.figure)
    return name
