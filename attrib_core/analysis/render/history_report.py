"""`attrib-bench history FOLDER... [--out DIR]`: the history page: every cell over commits, steps marked.

Reads every results file of the folders (a history store, see docs/history.md) through
attrib_core.analysis.results, detects steps per cell and metric (attrib_core.analysis.steps)
and writes one offline page: history.html (figures embedded), history.md, a PNG per metric,
steps.csv (every step) and series.csv (every series examined, with its noise). No torch.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from attrib_core.analysis.history import Metric, commit_axis, history_steps, load_history, metrics_of, step_label
from attrib_core.analysis.render import html, plots
from attrib_core.analysis.render.history_plots import history_figure
from attrib_core.analysis.render.output import staged
from attrib_core.analysis.results import ResultsError
from attrib_core.analysis.runs import RESULTS_DIR
from attrib_core.analysis.steps import MIN_SEGMENT, PENALTY_PER_LOG_N, StepError
from attrib_core.analysis.tables import to_markdown

DEFAULT_OUT = RESULTS_DIR / "history-report"
STEP_COLUMNS = ["workload", "method", "cell_key", "metric", "commit", "commit_time", "change", "in_force", "machine"]


def readable_steps(steps: pd.DataFrame, log_metrics: set[str]) -> pd.DataFrame:
    """Steps for people: a 'change' column with size and interval, newest first."""
    if steps.empty:
        return pd.DataFrame(columns=STEP_COLUMNS)
    out = steps.copy()
    out["change"] = [step_label(row, row["metric"] in log_metrics) for _, row in out.iterrows()]
    out["commit_time"] = out["commit_time"].astype(str)
    return out.sort_values(["commit_time", "cell_key"], ascending=[False, True])[STEP_COLUMNS]


def choose_metrics(available: list[Metric], names: list[str] | None) -> list[Metric]:
    """The metrics asked for (all when none); ResultsError naming an unknown one and the valid choices."""
    if not names:
        return available
    by_name = {m.name: m for m in available}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ResultsError(f"unknown metric {unknown[0]!r}; valid for these results: {', '.join(by_name)}")
    return [by_name[n] for n in names]


def warnings(df: pd.DataFrame, axis: pd.DataFrame) -> list[str]:
    out = []
    if len(axis) < 2 * MIN_SEGMENT:
        out.append(f"Only {len(axis)} commit(s): a step needs {MIN_SEGMENT} commits on each side; none can be found.")
    unnormalised = sorted(df.loc[df["run_factor"].isna(), "file"].unique())
    if unnormalised:
        out.append(f"{len(unnormalised)} run(s) had too few timed cells to normalise: {', '.join(unnormalised)}.")
    if df["machine"].nunique() > 1:
        out.append(f"Several machines ({', '.join(df['machine'].unique())}): each has its own series and steps.")
    return out


def build(
    inputs: list[Path],
    out: Path,
    per_log_n: float = PENALTY_PER_LOG_N,
    min_segment: int = MIN_SEGMENT,
    metric_names: list[str] | None = None,
    log: Callable[[str], None] = print,
) -> list[Path]:
    df = load_history(inputs)
    metrics = choose_metrics(metrics_of(df), metric_names)
    steps, series = history_steps(df, metrics, per_log_n=per_log_n, min_segment=min_segment)
    axis = commit_axis(df)
    readable = readable_steps(steps, {m.name for m in metrics if m.log})
    with staged(out) as scratch:
        sections, md = [], ["# attrib-bench history", ""]
        md.append(f"{len(axis)} commits, {df['file'].nunique()} runs, {len(readable)} step(s) detected.\n")
        md += [to_markdown(readable), ""]
        for metric in metrics:
            rendered = history_figure(df, metric, steps)
            section = html.Section(rendered.title, rendered.caption)
            if rendered.figure is None:
                section.note = f"Not drawn: {rendered.skipped}."
            else:
                name = plots.save(rendered, str(scratch))
                section.image = scratch / name
                md += [f"## {rendered.title}", "", rendered.caption, "", f"![{rendered.title}]({name})", ""]
                log(f"  wrote {name}")
            mine = readable[readable["metric"] == metric.name]
            if len(mine):
                section.tables.append(mine)
            sections.append(section)
        sections.append(html.Section("Series examined", "noise: the sigma a step had to clear.", tables=[series]))
        steps.to_csv(scratch / "steps.csv", index=False)
        series.to_csv(scratch / "series.csv", index=False)
        (scratch / "history.md").write_text("\n".join(md) + "\n")
        intro = axis.assign(commit_time=axis["commit_time"].astype(str))
        files = sorted(p.name for p in scratch.iterdir())
        title = f"attrib-bench history: {len(axis)} commits, {len(readable)} step(s)"
        (scratch / "history.html").write_text(html.page(title, intro, warnings(df, axis), sections, files))
        log(f"  wrote history.html, history.md, steps.csv ({len(steps)} steps), series.csv ({len(series)} series)")
        names = sorted(p.name for p in scratch.iterdir())
    return [out / name for name in names]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="attrib-bench history", description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", type=Path, help="history folders (every results file in them) or files")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument(
        "--penalty",
        type=float,
        default=PENALTY_PER_LOG_N,
        help=f"penalty per step, in units of ln(commits) (default {PENALTY_PER_LOG_N}; higher = fewer steps)",
    )
    parser.add_argument(
        "--min-segment",
        type=int,
        default=MIN_SEGMENT,
        help=f"commits a level must last to count (default {MIN_SEGMENT})",
    )
    parser.add_argument(
        "--metrics",
        type=lambda text: [m.strip() for m in text.split(",") if m.strip()],
        help="comma-separated: time, time_raw, memory and the fidelity metrics present (default: all)",
    )
    args = parser.parse_args(argv)
    if args.penalty <= 0 or args.min_segment < 1:
        parser.error(f"--penalty {args.penalty} must be > 0 and --min-segment {args.min_segment} >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    try:
        print(f"history: reading {', '.join(map(str, args.inputs))}")
        written = build(args.inputs, args.out, args.penalty, args.min_segment, args.metrics)
    except (ResultsError, StepError) as exc:
        print(f"history: error: {exc}", file=sys.stderr)
        return 2
    took = time.perf_counter() - started
    print(f"history: {len(written)} files in {args.out} ({took:.1f} s); open {args.out / 'history.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
