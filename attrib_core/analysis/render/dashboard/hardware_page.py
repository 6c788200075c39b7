"""hardware.html: every machine side by side, one row per cell, and each machine's speedup over a
reference machine that a <select> chooses (one table and figure precomputed per reference).

A machine's side is its runs at the commit of its newest run (several runs there, or a run of
several passes, are what lets the timing rule decide). Cells are matched with the device left
out of their key (`compare`'s cross-device match), so a GPU's cuda cells meet a laptop's cpu
cells; a machine that ran a cell on two devices is two columns, `machine@cpu` and
`machine@cuda`. Speedups, intervals and verdicts are `compare`'s pairs, i.e. the one timing
rule (attrib_core.analysis.timing_rule), unpaired design; Holm runs over the cells of each pair.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from attrib_core.analysis.render.compare import (
    Run,
    compare_pair,
    differences,
    match_across_devices,
    speedup_figure,
    summary_line,
)
from attrib_core.analysis.render.dashboard.layout import Page, Value, absent, missing, ms, number, slug, text
from attrib_core.analysis.render.dashboard.store import Store
from attrib_core.analysis.timing_rule import RuleSettings, TimingInputError, TimingResult
from attrib_core.exits import BadInputError

SETTINGS = RuleSettings()
CONFIDENCE = 1 - SETTINGS.alpha
NOT_RUN = "not run"


@dataclass
class Pair:
    """One machine against the reference: compare's table of common cells, or why there is none."""

    other: Run
    common: pd.DataFrame | None
    timing: TimingResult | None
    problem: str = ""


def current_paths(store: Store, machine: str) -> list[str]:
    """The machine's runs at the commit of its newest run (only the newest when no commit is recorded)."""
    runs = store.runs[store.runs["machine"] == machine].sort_values(["run_time", "file"])
    newest = runs.iloc[-1]
    if missing(newest["commit"]):
        return [newest["path"]]
    return list(runs.loc[runs["commit"] == newest["commit"], "path"])


def sides(store: Store) -> list[Run]:
    """One side per machine and device, each labelled `machine` (or `machine@device` if it has several)."""
    out = []
    for machine in store.machines:
        paths = current_paths(store, machine)
        cells = store.cells_of(paths)
        devices = sorted(cells["device"].dropna().unique())
        for device in devices:
            label = machine if len(devices) == 1 else f"{machine}@{device}"
            mine = cells[cells["device"] == device]
            out.append(Run(label, Path(paths[-1]), device, mine, label=label, paths=[Path(p) for p in paths]))
    match_across_devices(out)
    return out


def resolve_reference(runs: list[Run], asked: str | None) -> Run:
    """The side --reference names (a machine, or machine@device), case-insensitively; the first by default."""
    if asked is None:
        return runs[0]
    by_name: dict[str, Run] = {}
    by_machine: dict[str, list[Run]] = {}
    for run in runs:
        machine = run.label.split("@")[0]
        by_name[run.label.lower()] = by_name[f"{machine}@{run.device}".lower()] = run
        by_machine.setdefault(machine.lower(), []).append(run)
    wanted = asked.lower()
    if wanted in by_name:
        return by_name[wanted]
    if wanted in by_machine:
        candidates = by_machine[wanted]
        return next((r for r in candidates if r.device == "cpu"), candidates[0])
    valid = ", ".join(sorted({r.label.split("@")[0] for r in runs}))
    raise BadInputError(f"--reference {asked!r} is not a machine in the store; valid: {valid} (or machine@device)")


def code_differences(runs: list[Run]) -> list[str]:
    """A note when the sides ran different commits: a ratio then mixes hardware with code changes."""
    commits = {r.label: str(r.cells["commit"].iloc[0]) for r in runs}
    if len(set(commits.values())) < 2:
        return []
    shown = ", ".join(f"{label}: {commit}" for label, commit in commits.items())
    return [f"commit differs ({shown}); ratios mix hardware with code changes"]


def pair(reference: Run, other: Run) -> Pair:
    try:
        common, _, timing = compare_pair(reference, other, SETTINGS)
    except TimingInputError as exc:
        return Pair(other, None, None, str(exc))
    return Pair(other, common, timing)


def median_time(run: Run) -> dict[str, Value]:
    """Per matched cell: the median over the side's runs of each run's median time per call, or its status."""
    out = {}
    for key, cells in run.cells.groupby("match_key"):
        ok = cells[cells["status"] == "ok"]
        if len(ok):
            out[key] = ms(float(np.median(ok["median_s"].dropna())) if ok["median_s"].notna().any() else None)
        else:
            out[key] = absent(str(cells["status"].iloc[0]).replace("_", " "))
    return out


def speedup_value(row: pd.Series | None) -> tuple[Value, Value]:
    if row is None:
        return absent(NOT_RUN), absent(NOT_RUN)
    verdict = Value(str(row["verdict"]))
    if pd.isna(row["speedup"]):
        return absent("-"), verdict
    return Value(f"{row['speedup']:.2f}x [{row['ci_low']:.2f}, {row['ci_high']:.2f}]", float(row["speedup"])), verdict


def table_for(reference: Run, runs: list[Run], pairs: list[Pair]) -> tuple[list[str], list[list[Value]]]:
    ordered = [reference, *[r for r in runs if r is not reference]]
    times = {r.label: median_time(r) for r in ordered}
    identity = pd.concat([r.cells[["match_key", "workload", "method"]] for r in ordered]).drop_duplicates("match_key")
    identity = identity.sort_values(["workload", "method", "match_key"])
    by_pair = {p.other.label: (p.common.set_index("cell") if p.common is not None else None) for p in pairs}
    headers = ["workload", "method", "cell (device as *)"]
    headers += [f"{r.label}: median time per call (ms; median over {len(r.paths)} run(s))" for r in ordered]
    for p in pairs:
        name = p.other.label
        headers += [
            f"{name}: speedup over {reference.label} (min-time ratio, >1 faster; {CONFIDENCE:.0%} interval)",
            f"{name}: verdict (timing rule)",
        ]
    rows = []
    for _, cell in identity.iterrows():
        key = cell["match_key"]
        row = [text(cell["workload"]), text(cell["method"]), text(key)]
        row += [times[r.label].get(key, absent(NOT_RUN)) for r in ordered]
        for p in pairs:
            table = by_pair[p.other.label]
            found = table.loc[key] if table is not None and key in table.index else None
            if found is None and table is None and key in times[p.other.label] and key in times[reference.label]:
                row += [absent("-"), Value("not compared")]
            else:
                row += list(speedup_value(found))
        rows.append(row)
    return headers, rows


def notes_for(reference: Run, pairs: list[Pair]) -> list[str]:
    lines = []
    for p in pairs:
        if p.common is None:
            lines.append(f"{p.other.label} vs {reference.label}: not compared: {p.problem}")
            continue
        summary = summary_line(p.common, reference.label, p.other.label, p.timing)
        lines.append(summary)
        undetermined = p.common.loc[p.common["verdict"] == "undetermined", "note"].dropna().unique()
        fresh = [n for n in undetermined if n and n not in summary]
        lines += [f"{p.other.label} vs {reference.label}, undetermined cells: {n}" for n in fresh[:3]]
    return lines


def draw(pairs: list[Pair], folder: Path, stem: str) -> str | None:
    commons = [p.common for p in pairs if p.common is not None and len(p.common)]
    figure = speedup_figure(pd.concat(commons, ignore_index=True), CONFIDENCE, SETTINGS.statistic) if commons else None
    if figure is None:
        return None
    name = f"{stem}.png"
    figure.savefig(folder / name, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return name


def selector(runs: list[Run], chosen: Run) -> str:
    options = "".join(
        f'<option value="{html.escape(r.label)}"{" selected" if r is chosen else ""}>{html.escape(r.label)}</option>'
        for r in runs
    )
    return (
        '<p><label for="reference">reference machine: </label>'
        f'<select id="reference" class="reference">{options}</select></p>'
    )


def build(store: Store, folder: Path, reference: str | None = None) -> Page:
    runs = sides(store)
    chosen = resolve_reference(runs, reference)
    page = Page("hardware.html", f"Hardware: {len(runs)} machine(s) side by side")
    page.paragraph(
        "One row per cell, matched across machines with the device left out of its key (a GPU's cuda cell meets "
        "a CPU's cpu cell). Each machine's side is its runs at the commit of its newest run. Times: the median "
        "over those runs of each run's median time per call. Speedup over the reference and its verdict: the one "
        "timing rule (attrib_core/analysis/timing_rule.py, as `attrib-bench compare`), unpaired: each side's runs "
        f"(or a run's passes over its sweep) are the units, each unit's time its blocks' min rounds; the "
        f"{CONFIDENCE:.0%} interval includes run-to-run variation; faster/slower needs Holm's adjusted p < "
        f"{SETTINGS.alpha:g} over the pair's cells and a factor past {SETTINGS.min_effect:g}. One single-pass run per "
        "side is 'undetermined' (no speedup shown): one run cannot show how much the next would differ. "
        "'not run': the machine has no such cell."
    )
    page.table(
        ["machine", "device", "runs used (count)", "commit", "files"],
        [
            [
                text(r.label),
                text(r.device),
                number(len(r.paths)),
                text(r.cells["commit"].iloc[0]),
                text(", ".join(p.name for p in r.paths)),
            ]
            for r in runs
        ],
        "the runs each machine's side is made of",
    )
    for note in [*code_differences(runs), *differences(runs)] if len(runs) > 1 else []:
        page.warning(f"The machines differ in more than hardware: {note}.")
    if len(runs) == 1:
        page.warning(f"Only one machine in the store ({runs[0].label}): nothing to compare it with yet.")
    page.raw(selector(runs, chosen))
    for reference in runs:
        pairs = [pair(reference, other) for other in runs if other is not reference]
        hidden = "" if reference is chosen else " hidden"
        page.raw(f'<section data-reference="{html.escape(reference.label)}"{hidden}>')
        page.heading(f"Against {reference.label}", anchor=f"ref-{slug(reference.label)}")
        page.bullets(notes_for(reference, pairs))
        headers, rows = table_for(reference, runs, pairs)
        page.table(headers, rows, f"times and speedups against {reference.label}", filterable=True)
        if pairs:
            stem = f"hardware_{slug(reference.label)}"
            name = draw(pairs, folder, stem)
            if name is None:
                page.paragraph(
                    f"Speedup figure against {reference.label} not drawn: no cell was decided (see the lines above).",
                    "skipped",
                )
            else:
                page.raw(
                    f'<figure><img src="{name}" alt="speedup over {html.escape(reference.label)} per cell, with '
                    f'{CONFIDENCE:.0%} intervals"><figcaption>Speedup over {html.escape(reference.label)} per decided '
                    f"cell (log axis), bars: the {CONFIDENCE:.0%} interval over runs or passes; undetermined cells "
                    "are not drawn.</figcaption></figure>"
                )
        page.raw("</section>")
    return page
