"""tradeoff.html: the report's speed-fidelity, localisation and sanity figures for each machine's
newest run, with the Pareto front and the sanity checks as tables.

The figures are the report's own (attrib_core.analysis.render.plots and .sanity), drawn with one
method colour per method across all machines. A figure that cannot be drawn says why. The
figures place medians; the front's table gives each point's IQR beside it, so the spread behind
a place on the front is one glance away.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from attrib_core.analysis.render import plots, sanity
from attrib_core.analysis.render.dashboard.index_page import when
from attrib_core.analysis.render.dashboard.layout import Page, Value, ms, number, slug, text
from attrib_core.analysis.render.dashboard.store import Store
from attrib_core.analysis.render.style import MethodStyle, add_labels, method_style

FRONT_HEADERS = [
    "panel (workload · device)",
    "fidelity axis",
    "method",
    "settings",
    "median time per example (ms)",
    "IQR of time per call / batch size (ms)",
    "fidelity value (mean over examples)",
]
TEXT_COLUMNS = ("workload", "device", "method", "fails")
SANITY_HEADERS = {
    "workload": "workload",
    "device": "device",
    "method": "method",
    "cascading (mean over steps)": "cascading randomisation (Spearman, mean over steps; lower is better)",
    "cascading, all randomised": "cascading, all layers randomised (Spearman; lower is better)",
    "independent (mean)": "independent randomisation (Spearman, mean over steps; lower is better)",
    "random logit": "random logit (Spearman; lower is better)",
    "ROAD MoRF (lower better)": "ROAD MoRF (area, mean over examples; lower is better)",
    "ROAD LeRF (higher better)": "ROAD LeRF (area, mean over examples; higher is better)",
    "median_ms": "median time per call (ms)",
    "sanity_checks_s": "sanity checks' time (s, sum over checks)",
    "fails": f"checks failed (Spearman >= {sanity.SANITY_THRESHOLD:g})",
}


def front_rows(df: pd.DataFrame) -> list[list[Value]]:
    points = plots.tradeoff_table(df)
    front = plots.front_members(points)
    iqr = df.set_index("cell_key")["iqr_s"] / df.set_index("cell_key")["batch_size"]
    return [
        [
            text(row["panel"]),
            text(row["fidelity"].removeprefix("fid_")),
            text(row["method"]),
            text(row["config"] or "default"),
            ms(row["median_s_per_example"]),
            ms(iqr.get(row["cell_key"])),
            number(row["value"]),
        ]
        for _, row in front.iterrows()
    ]


def sanity_rows(table: pd.DataFrame) -> list[list[Value]]:
    rows = []
    for _, row in table.iterrows():
        rows.append([number(row.get(c)) if c not in TEXT_COLUMNS else text(row.get(c)) for c in SANITY_HEADERS])
    return rows


def one_run(page: Page, folder: Path, run: pd.Series, cells: pd.DataFrame, style: MethodStyle) -> None:
    stem = slug(run["machine"])
    page.heading(f"{run['machine']}: {run['preset']}, {when(run['run_time'])}", anchor=f"m-{stem}")
    df = add_labels(cells)
    drawn = page.figure(plots.tradeoff_figure(df, style), folder, f"tradeoff_{stem}")
    if drawn:
        page.paragraph("Pareto front (the points with black edges):")
        page.table(FRONT_HEADERS, front_rows(df), f"Pareto front of {run['machine']}", filterable=True)
    page.figure(plots.localisation_figure(df, style), folder, f"localisation_{stem}")
    if page.figure(sanity.sanity_figure(df, style), folder, f"sanity_{stem}"):
        table = sanity.sanity_table(df)
        page.table(list(SANITY_HEADERS.values()), sanity_rows(table), f"sanity of {run['machine']}", filterable=True)


def build(store: Store, folder: Path) -> Page:
    newest = store.newest_runs()
    page = Page("tradeoff.html", "Trade-off: speed against fidelity, localisation and sanity")
    page.paragraph(
        "For the newest run of each machine: which method and setting gives the most faithful (and sane) "
        "attribution for the time it takes. Points are cells at their median time per example; the tables give "
        "the spread (IQR) of the front's points. Cells with random weights are drawn for time only."
    )
    style = method_style(store.cells["method"])
    for _, run in newest.iterrows():
        one_run(page, folder, run, store.cells_of([run["path"]]), style)
    return page
