"""`python -m attrib_core.analysis.render.report [FILES or FOLDERS ...] [--out DIR]`: figures, tables and one HTML page.

Reads results through attrib_core.analysis.results and never runs a model (no torch needed). With
no argument it reads the newest results file in results/; a folder stands for its newest
file. Everything is rendered into a temporary folder and moved into place at the end, so
bad input or a crash leaves no half-written report behind.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from attrib_core.analysis.render import gallery, html, plots, sanity, tuned
from attrib_core.analysis.render.output import staged
from attrib_core.analysis.render.style import add_labels, method_style
from attrib_core.analysis.results import ResultsError, load_results
from attrib_core.analysis.runs import RESULTS_DIR, resolve_paths
from attrib_core.analysis.tables import NOISY, noisy_cells, summary_table, to_markdown

REPORT_DIR = RESULTS_DIR / "report"


def default_out(paths: list[Path]) -> Path:
    """results/report/<stem of the (first) results file>[+N more]."""
    stem = paths[0].stem + (f"+{len(paths) - 1}more" if len(paths) > 1 else "")
    return REPORT_DIR / stem


def run_info(df: pd.DataFrame) -> pd.DataFrame:
    """One row per results file: where, what and with which software it ran."""
    rows = []
    for name, cells in df.groupby("file", sort=False):
        first = cells.iloc[0]
        rows.append(
            {
                "file": name,
                "machine": first["machine"],
                "preset": first["preset"],
                "run (UTC)": first["run_datetime"],
                "commit": f"{first['commit']}{' (dirty)' if first['commit_dirty'] else ''}",
                "torch": first["torch_version"],
                "captum": first["captum_version"],
                "cells": len(cells),
                "failed": int((cells["status"] == "failed").sum()),
                "not applicable": int((cells["status"] == "not_applicable").sum()),
                "weights": ", ".join(sorted(f"{w}={k}" for w, k in _weights(cells).items())),
            }
        )
    return pd.DataFrame(rows)


def _weights(cells: pd.DataFrame) -> dict[str, str]:
    known = cells.dropna(subset=["weights"])
    return {str(w): ",".join(sorted(set(map(str, g["weights"])))) for w, g in known.groupby("workload")}


def warnings(df: pd.DataFrame) -> list[str]:
    """Things a reader must know before trusting the numbers."""
    out = []
    random = sorted(df.loc[df["weights"].astype(str) == "random", "workload"].unique())
    if random:
        out.append(
            f"Workload(s) {', '.join(random)} ran with randomly initialised weights (the pretrained file was not "
            "available): times are representative, fidelity values describe an untrained network."
        )
    noisy = noisy_cells(df)
    if len(noisy):
        out.append(
            f"{len(noisy)} cell(s) have an IQR above {NOISY:.0%} of their median (a busy machine?): "
            f"{', '.join(noisy['cell_key'])}. Their times are not to be trusted; re-run them on a quiet machine."
        )
    for column, what in (("torch_version", "torch"), ("captum_version", "captum"), ("preset_sha256", "preset")):
        if df[column].nunique(dropna=False) > 1:
            out.append(f"The files differ in {what}: {', '.join(map(str, df[column].unique()))}.")
    return out


def render_steps(
    df: pd.DataFrame, paths: list[Path], tuned_answer: tuple[plots.Rendered, pd.DataFrame]
) -> list[Callable[[], list[plots.Rendered]]]:
    style = method_style(df["method"])
    return [
        lambda: [plots.tradeoff_figure(df, style)],
        lambda: [plots.reference_error_figure(df, style)],
        lambda: [plots.localisation_figure(df, style)],
        lambda: [sanity.sanity_figure(df, style)],
        lambda: [plots.ig_steps_figure(df)],
        lambda: [plots.ig_internal_batch_figure(df)],
        lambda: [plots.batch_size_figure(df, style)],
        lambda: [plots.efficiency_figure(df, style)],
        lambda: [tuned_answer[0]],
        lambda: gallery.gallery_figures(df, paths, style),
    ]


def build(paths: list[Path], out: Path, log: Callable[[str], None] = print) -> list[Path]:
    """Read, render and write the report; returns the files written to `out`."""
    df = load_results(paths)
    if df.empty:
        raise ResultsError(f"{', '.join(map(str, paths))}: no benchmark records to report")
    df = add_labels(df)
    tuned_answer = tuned.tuned_report(df)  # the figure and the table, from the one table read above
    with staged(out) as scratch:
        sections = []
        for step in render_steps(df, paths, tuned_answer):
            for rendered in step():
                section = html.Section(rendered.title, rendered.caption)
                if rendered.figure is None:
                    log(f"  skipped {rendered.name}: {rendered.skipped}")
                    section.note = f"Not drawn: {rendered.skipped}."
                else:
                    name = plots.save(rendered, str(scratch))
                    section.image = scratch / name
                    log(f"  wrote {name}  ({rendered.title})")
                # fronts across methods on comparable metrics only; the own-reference error has none
                if rendered.name == "tradeoff" and rendered.figure is not None:  # no points (e.g. random weights)
                    front = plots.front_members(plots.tradeoff_table(df))
                    front.to_csv(scratch / "pareto.csv", index=False)
                    section.tables.append(front)
                if rendered.name == "sanity" and rendered.figure is not None:
                    table = sanity.sanity_table(df)
                    table.to_csv(scratch / "sanity.csv", index=False)
                    section.tables.append(table.round(3))
                if rendered.name == "tuned" and rendered.figure is not None:  # a tune run: default against tuned
                    table = tuned_answer[1]
                    table.to_csv(scratch / "tuned.csv", index=False)
                    section.tables.append(table.round(4))
                sections.append(section)
        summary = summary_table(df)
        summary.to_csv(scratch / "summary.csv", index=False)
        (scratch / "summary.md").write_text(to_markdown(summary))
        log(f"  wrote summary.csv, summary.md  ({len(summary)} cells)")
        failed = summary[~summary["status"].isin(["ok", "not_applicable"])][["cell_key", "error"]]
        not_applicable = summary[summary["status"] == "not_applicable"][["cell_key", "error"]]
        sections.append(html.Section("Summary: every cell", "Times in ms, memory in MiB.", tables=[summary]))
        if len(failed):
            sections.append(html.Section(f"Failed cells ({len(failed)})", tables=[failed]))
        if len(not_applicable):
            reason = "Methods that cannot run on the workload's model, with the reason."
            sections.append(html.Section(f"Not applicable ({len(not_applicable)})", reason, tables=[not_applicable]))
        info = run_info(df)
        files = sorted(p.name for p in scratch.iterdir())
        title = "attrib-bench report: " + ", ".join(info["file"])
        (scratch / "report.html").write_text(html.page(title, info, warnings(df), sections, files))
        log("  wrote report.html (self-contained)")
        names = sorted(p.name for p in scratch.iterdir())
    return [out / name for name in names]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="attrib-bench report", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "inputs", nargs="*", help="results JSON files or folders (a folder means its newest file); default: results/"
    )
    parser.add_argument("--out", type=Path, help="output folder (default: results/report/<results file stem>/)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    try:
        paths = resolve_paths(args.inputs)
        if not args.inputs:
            print(f"report: no file given; reading the newest in {RESULTS_DIR}: {paths[0].name}")
        else:
            print(f"report: reading {', '.join(map(str, paths))}")
        out = args.out or default_out(paths)
        written = build(paths, out)
    except ResultsError as exc:
        print(f"report: error: {exc}", file=sys.stderr)
        return 2
    print(f"report: {len(written)} files in {out} ({time.perf_counter() - started:.1f} s); open {out / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
