"""index.html: the newest run of each machine in the store, and a sortable table of its cells.

"Newest" is by when the run finished (the file's `datetime`), so a run of an old commit made
today is today's. Failed cells are rows with their error, never dropped.
"""

from __future__ import annotations

import pandas as pd

from attrib_core.analysis.render.dashboard import metrics
from attrib_core.analysis.render.dashboard.layout import Page, Value, mib, missing, ms, number, text
from attrib_core.analysis.render.dashboard.store import Store
from attrib_core.analysis.render.style import add_labels


def when(value: object) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if isinstance(value, pd.Timestamp) and not pd.isna(value) else "-"


def commit_text(run: pd.Series) -> str:
    if missing(run["commit"]):
        return "-"
    return f"{run['commit']}{' (uncommitted changes)' if run['commit_dirty'] else ''}"


def overview_rows(store: Store) -> list[list[Value]]:
    counts = store.runs.groupby("machine")["file"].count()
    return [
        [
            text(run["machine"]),
            text(run["preset"]),
            Value(when(run["run_time"]), run["run_time"].timestamp() if not pd.isna(run["run_time"]) else None),
            text(commit_text(run)),
            text(run["cpu_model"]),
            text(run["gpu_name"], "none"),
            text(run["torch_version"]),
            number(run["ok"]),
            number(run["failed"]),
            number(run["not_applicable"]),
            number(counts[run["machine"]]),
        ]
        for _, run in store.newest_runs().iterrows()
    ]


OVERVIEW = [
    "machine",
    "preset",
    "finished (UTC)",
    "commit",
    "CPU",
    "GPU",
    "torch",
    "cells ok (count)",
    "cells failed (count)",
    "cells not applicable (count)",
    "runs in the store (count)",
]


def cell_rows(cells: pd.DataFrame, fidelity: list[metrics.MetricColumn]) -> list[list[Value]]:
    rows = []
    for _, cell in cells.sort_values(["workload", "method", "config", "batch_size"]).iterrows():
        rows.append(
            [
                text(cell["workload"]),
                text(cell["method"]),
                text(cell["config"] or "default"),
                text(cell["device"]),
                number(cell["batch_size"]),
                text(cell["status"]),
                ms(cell["median_s"]),
                ms(cell["iqr_s"]),
                ms(cell["min_s"]),
                number(cell["rounds"]),
                mib(cell["peak_bytes"]),
                *(number(cell.get(m.column)) for m in fidelity),
                text(cell["error"], ""),
            ]
        )
    return rows


def build(store: Store) -> Page:
    newest = store.newest_runs()
    page = Page("index.html", f"attrib-bench dashboard: the newest run of {len(newest)} machine(s)")
    page.paragraph(
        f"{len(store.runs)} run(s) in the store from {len(newest)} machine(s). One row per machine: its newest run "
        "(by when it finished). The other pages: Hardware sets the machines side by side, History follows each "
        "cell over commits, Trade-off and Leaderboard rank the methods."
    )
    page.table(OVERVIEW, overview_rows(store), "newest run per machine")
    for _, run in newest.iterrows():
        cells = add_labels(store.cells_of([run["path"]]))
        page.heading(f"{run['machine']}: {run['preset']}, {when(run['run_time'])}", anchor=f"m-{run['machine']}")
        page.facts(
            [
                ("file", run["path"]),
                ("preset", run["preset"]),
                ("finished", when(run["run_time"])),
                ("commit", commit_text(run)),
                ("CPU", text(run["cpu_model"]).text),
                ("GPU", text(run["gpu_name"], "none").text),
                ("torch / captum", f"{run['torch_version']} / {run['captum_version']}"),
                ("cells", f"{run['ok']} ok, {run['failed']} failed, {run['not_applicable']} not applicable"),
            ]
        )
        fidelity = metrics.key_fidelity_columns(cells)
        headers = [
            "workload",
            "method",
            "settings",
            "device",
            "batch size",
            "status",
            "median time per call (ms)",
            "IQR of time per call (ms)",
            "min time per call (ms)",
            "rounds (count)",
            "peak memory (MiB)",
            *(m.header for m in fidelity),
            "error",
        ]
        page.table(headers, cell_rows(cells, fidelity), f"cells of {run['machine']}", filterable=True)
    if store.skipped:
        page.heading("Files skipped")
        page.bullets(store.skipped)
    return page
