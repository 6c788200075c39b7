"""leaderboard.html: per workload, every method configuration of each machine's newest run, with
its time, memory, fidelity, localisation and sanity results; sortable, filterable.

A row is one cell on one machine. It ranks nothing by itself: sorting a column ranks by that
column, and each header names its statistic, unit and direction. Failed cells stay, with their
status, so a method that did not run is not mistaken for one that was not tried.
"""

from __future__ import annotations

import pandas as pd

from attrib_core.analysis.render import sanity
from attrib_core.analysis.render.dashboard import metrics
from attrib_core.analysis.render.dashboard.layout import Page, Value, mib, ms, number, slug, text
from attrib_core.analysis.render.dashboard.store import Store
from attrib_core.analysis.render.style import add_labels

FIXED_HEADERS = [
    "machine",
    "method",
    "settings",
    "device",
    "batch size",
    "status",
    "median time per example (ms)",
    "median time per call (ms)",
    "IQR of time per call (ms)",
    "peak memory (MiB)",
]
FAILS = f"sanity checks failed (Spearman >= {sanity.SANITY_THRESHOLD:g})"


def newest_cells(store: Store) -> pd.DataFrame:
    newest = store.newest_runs()
    frames = [add_labels(store.cells_of([path])) for path in newest["path"]]
    return pd.concat(frames, ignore_index=True)


def sanity_fails(cells: pd.DataFrame) -> dict[tuple, str]:
    """(file, workload, device, label) -> the checks the cell fails ('-' none), for cells with a sanity record."""
    out = {}
    for file, run in cells.groupby("file"):
        table = sanity.sanity_table(run)
        for _, row in table.iterrows():
            out[(file, row["workload"], row["device"], row["method"])] = row["fails"]
    return out


def sanity_key(cell: pd.Series) -> tuple:
    return (cell["file"], cell["workload"], cell["device"], cell["label"])


def rows_of(cells: pd.DataFrame, columns: list[metrics.MetricColumn], fails: dict) -> list[list[Value]]:
    rows = []
    for _, cell in cells.sort_values(["per_sample_median_s", "machine"], na_position="last").iterrows():
        row = [
            text(cell["machine"]),
            text(cell["method"]),
            text(cell["config"] or "default"),
            text(cell["device"]),
            number(cell["batch_size"]),
            text(cell["status"]),
            ms(cell["per_sample_median_s"]),
            ms(cell["median_s"]),
            ms(cell["iqr_s"]),
            mib(cell["peak_bytes"]),
            *(number(cell.get(m.column)) for m in columns),
        ]
        if fails is not None:
            row.append(text(fails.get(sanity_key(cell), "not checked")))
        rows.append(row)
    return rows


def build(store: Store) -> Page:
    cells = newest_cells(store)
    page = Page("leaderboard.html", "Leaderboard: methods per workload")
    page.paragraph(
        "Each machine's newest run; one row per cell and machine. Click a header to sort by it (again to reverse), "
        "type in a table's filter box to keep the rows that contain the text. Fidelity, localisation and sanity "
        "values are each cell's mean over its examples; cells with random weights have none. Rows start sorted by "
        "median time per example."
    )
    fails = sanity_fails(cells)
    workloads = sorted(cells["workload"].dropna().unique())
    page.paragraph("Workloads: " + ", ".join(workloads) + ".")
    for workload in workloads:
        mine = cells[cells["workload"] == workload]
        columns = [
            *metrics.fidelity_columns(mine),
            *metrics.localisation_columns(mine),
            *metrics.sanity_columns(mine),
        ]
        with_sanity = any(sanity_key(cell) in fails for _, cell in mine.iterrows())
        headers = [*FIXED_HEADERS, *(m.header for m in columns), *([FAILS] if with_sanity else [])]
        page.heading(f"{workload} ({mine['method'].nunique()} methods, {len(mine)} rows)", anchor=f"w-{slug(workload)}")
        page.table(headers, rows_of(mine, columns, fails if with_sanity else None), f"leaderboard of {workload}", True)
    return page
