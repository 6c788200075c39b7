"""`python -m attrib_core.analysis.render.compare A B [C ...] [--out DIR]`: how much faster is B than A, cell by cell?

Each argument is one SIDE: a results file, several files joined by `+` (runs of one
version in separate processes), a folder (all its results files: a folder of runs), or a
machine name found in results/ (its newest file); append `@cpu` or `@cuda` to compare one
device of a side with another device of another side (laptop@cpu gpubox@cuda). Cells are
matched by cell_key, so runs of different presets compare on their intersection.
Speedup = A / B (> 1: B is faster); its interval, p-value and verdict come from the one
timing rule (attrib_core.analysis.timing_rule, shared with `regress`): blocks of rounds
(one per process, or A/B blocks) are the units, so between-run variation is in the
interval; Holm over all cells. One single-pass file per side is "undetermined": a single run
cannot show how much the next one would differ (a run of several passes over its sweep can).
Runs with different torch / captum versions or presets are compared all the same, under a
loud warning.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from attrib_core import formatting
from attrib_core.analysis.render import html
from attrib_core.analysis.render.output import staged
from attrib_core.analysis.render.plots import legend_right, method_handles, theme
from attrib_core.analysis.render.style import method_style
from attrib_core.analysis.results import ResultsError, load_results, results_files
from attrib_core.analysis.runs import RESULTS_DIR, file_machine, resolve_run
from attrib_core.analysis.tables import to_markdown
from attrib_core.analysis.timing_rule import STATISTICS, RuleSettings, TimingInputError, TimingResult, compare_timing

DEVICES = ("cpu", "cuda")
ONE_SIDED_SHOWN = 30  # printed; the files list them all
DEFAULT_THRESHOLD = RuleSettings().min_effect  # the rule's minimal effect: smaller is not called a change
VERDICT_WORDS = {"slower": "slower", "faster": "faster", "same": "same within noise", "undetermined": "undetermined"}
SOFTWARE = (("torch_version", "torch"), ("captum_version", "captum"), ("cuda_version", "CUDA (torch build)"))


COMMON_COLUMNS = [
    "cell",
    "workload",
    "method",
    "baseline",
    "other",
    "A_ms",
    "B_ms",
    "time_ratio",
    "rounds_A",
    "rounds_B",
    "units_A",
    "units_B",
    "speedup",
    "ci_low",
    "ci_high",
    "p_holm",
    "verdict",
    "note",
]


@dataclass
class Run:
    """One side of a comparison: what the user typed, the files it resolved to, their cells."""

    arg: str
    path: Path  # the first file; `paths` has them all
    device: str | None
    cells: pd.DataFrame
    label: str = ""
    paths: list[Path] = field(default_factory=list)


def split_device(arg: str) -> tuple[str, str | None]:
    name, at, device = arg.rpartition("@")
    if at and device in DEVICES and name:
        return name, device
    return arg, None


def side_paths(name: str, folder: Path) -> list[Path]:
    """`a.json+b.json` -> both; a folder -> all its results files; else a file or a machine name."""
    if "+" in name:
        return [p for part in name.split("+") for p in side_paths(part, folder)]
    path = Path(name)
    if path.is_dir():
        files = results_files(path)
        if not files:
            raise ResultsError(f"{path}: no results files (*.json) in this folder; run `nox -s bench` first")
        return files
    return [resolve_run(name, folder)]


def load_run(arg: str, folder: Path) -> Run:
    name, device = split_device(arg)
    paths = side_paths(name, folder)
    everything = load_results(paths)
    shown = paths[0] if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1} more)"
    if everything.empty:
        raise ResultsError(f"{shown}: no benchmark records to compare")
    cells = everything if device is None else everything[everything["device"] == device]
    if cells.empty:
        devices = ", ".join(everything["device"].unique())
        raise ResultsError(f"{shown}: no cells on device {device!r}; it has: {devices}")
    return Run(arg, paths[0], device, cells.assign(match_key=cells["cell_key"]), paths=paths)


def match_across_devices(runs: list[Run]) -> None:
    """When any run names its device (A@cpu B@cuda), match cells with the device left out of
    the key; every run must then have one device, or the pairing would be ambiguous."""
    if all(run.device is None for run in runs):
        return
    for run in runs:
        devices = sorted(run.cells["device"].unique())
        if len(devices) > 1:
            raise ResultsError(
                f"{run.path}: has cells on {', '.join(devices)}; name one ({run.arg}@{devices[0]}) "
                "when comparing across devices"
            )
        keys = [
            key.replace(f"-{device}-b{batch}-", f"-*-b{batch}-", 1)
            for key, device, batch in zip(
                run.cells["cell_key"], run.cells["device"], run.cells["batch_size"], strict=True
            )
        ]
        run.cells = run.cells.assign(match_key=keys)


def label_runs(runs: list[Run]) -> None:
    """A, B, C ... plus the machine name (the file stem when a machine appears twice)."""
    machines = [file_machine(r.path) for r in runs]
    for letter, run, machine in zip("ABCDEFGHIJKLMNOPQRSTUVWXYZ", runs, machines, strict=False):
        name = machine if machines.count(machine) == 1 else run.path.stem
        runs_note = f", {len(run.paths)} runs" if len(run.paths) > 1 else ""
        run.label = f"{letter} ({name}{runs_note}{'@' + run.device if run.device else ''})"


def compare_pair(
    base: Run, other: Run, settings: RuleSettings | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, TimingResult | None]:
    """(common cells with speedup, interval and verdict from the timing rule, cells found on
    one side only, the rule's result). TimingInputError when the sides share no cell or a
    timed cell has no raw rounds."""
    a, b = base.cells, other.cells
    timing = compare_timing(a, b, settings, key_column="match_key")
    first_a = a[~a["match_key"].duplicated()].set_index("match_key")
    first_b = b[~b["match_key"].duplicated()].set_index("match_key")
    rounds_a, rounds_b = a.groupby("match_key")["rounds"].sum(), b.groupby("match_key")["rounds"].sum()
    rows = []
    for key in [k for k in first_a.index if k in first_b.index]:
        ra = first_a.loc[key]
        row = {
            "cell": key,
            "workload": ra["workload"],
            "method": ra["method"],
            "baseline": base.label,
            "other": other.label,
            "rounds_A": rounds_a.get(key),
            "rounds_B": rounds_b.get(key),
        }
        failed = [side for side, df in (("A", a), ("B", b)) if (df.loc[df["match_key"] == key, "status"] != "ok").any()]
        cell = timing.cells.get(key)
        if failed or cell is None:
            row.update(speedup=np.nan, ci_low=np.nan, ci_high=np.nan, A_ms=np.nan, B_ms=np.nan, time_ratio=np.nan)
            row["verdict"] = f"failed on {' and '.join(failed)}" if failed else "not timed"
        else:
            row.update(
                A_ms=cell.base_s * 1e3,
                B_ms=cell.new_s * 1e3,
                time_ratio=cell.base_s / cell.new_s,  # descriptive only: no interval, no verdict
                units_A=cell.units_base,
                units_B=cell.units_new,
                # the rule's ratio is B / A (> 1: B slower); undetermined cells get none
                speedup=1 / cell.ratio if cell.verdict != "undetermined" else np.nan,
                ci_low=1 / cell.high,
                ci_high=1 / cell.low,
                p_holm=cell.p_adjusted,
                verdict=VERDICT_WORDS[cell.verdict],
                note=cell.note,
            )
        rows.append(row)
    common = pd.DataFrame(rows, columns=COMMON_COLUMNS)
    one_sided = pd.DataFrame(
        [{"cell": k, "only in": base.label} for k in first_a.index if k not in first_b.index]
        + [{"cell": k, "only in": other.label} for k in first_b.index if k not in first_a.index],
        columns=["cell", "only in"],
    )
    return common, one_sided, timing


def differences(runs: list[Run]) -> list[str]:
    """Loud notes: software or preset differences that make ratios mean more than hardware."""
    notes = []
    for column, what in (*SOFTWARE, ("preset_sha256", "preset (file hash)")):
        values = {r.label: r.cells[column].iloc[0] for r in runs}
        if len({str(v) for v in values.values()}) > 1:
            shown = ", ".join(
                f"{label}: {str(v)[:16] if column == 'preset_sha256' else v}" for label, v in values.items()
            )
            notes.append(f"{what} differs ({shown}); ratios mix hardware with software/sweep changes")
    for workload in sorted(set.intersection(*(set(r.cells["workload"]) for r in runs))):
        weights = {
            r.label: ",".join(sorted(set(r.cells.loc[r.cells["workload"] == workload, "weights"].dropna().astype(str))))
            for r in runs
        }
        if len(set(weights.values())) > 1:
            shown = "; ".join(f"{label}: {w or 'unknown'}" for label, w in weights.items())
            notes.append(f"{workload} ran with different model weights ({shown})")
    return notes


def summary_line(common: pd.DataFrame, base: str, other: str, timing: TimingResult | None = None) -> str:
    timed = common[common["verdict"].isin(VERDICT_WORDS.values())]
    if timed.empty:
        return f"{other} vs {base}: no common cell with timings on both sides"
    counts = timed["verdict"].value_counts()
    line = (
        f"{other} vs {base}: {len(timed)} common cells ({counts.get('faster', 0)} faster, "
        f"{counts.get('slower', 0)} slower, {counts.get('same within noise', 0)} same within noise, "
        f"{counts.get('undetermined', 0)} undetermined)"
    )
    level = timing.run_level if timing is not None else None
    if level is None or level.verdict == "undetermined":
        note = level.note if level is not None else ""
        return line + f"; all cells together: undetermined ({note})"
    return (
        line + f"; all cells together (geometric mean): speedup {1 / level.ratio:.3f}x "
        f"[{1 / level.high:.3f}, {1 / level.low:.3f}], {VERDICT_WORDS[level.verdict]}"
    )


RATIO_TICKS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 0.67, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2, 5, 10, 20, 50, 100)


def ratio_limits(low: pd.Series, high: pd.Series) -> tuple[float, float]:
    """Log-symmetric limits around 1 that hold every interval, at least 0.8x-1.25x."""
    span = max(float(np.nanmax(np.abs(np.log(pd.concat([low, high]))))) * 1.15, np.log(1.25))
    return float(np.exp(-span)), float(np.exp(span))


def spaced_ticks(lower: float, upper: float, most: int = 7) -> list[float]:
    """Ratio ticks inside [lower, upper], 1 first, then outward, never closer than 1/`most` of
    the (log) axis, so labels such as 0.9x 1x 1.1x do not run together on a wide axis."""
    gap = np.log(upper / lower) / most
    chosen = [1.0]
    for tick in sorted((t for t in RATIO_TICKS if lower <= t <= upper), key=lambda t: abs(np.log(t))):
        if all(abs(np.log(tick / c)) >= gap for c in chosen):
            chosen.append(tick)
    return sorted(chosen)


def speedup_figure(common: pd.DataFrame, confidence: float, statistic: str = "min") -> Figure | None:
    """Forest plot: one row per decided cell, speedup with its interval, one panel per comparison."""
    ok = common.dropna(subset=["speedup", "ci_low", "ci_high"]).sort_values(["workload", "method", "cell"])
    if ok.empty:  # undetermined cells have no interval, and are not drawn as if they had a verdict
        return None
    style = method_style(ok["method"])
    cells = list(dict.fromkeys(ok["cell"]))
    pairs = list(dict.fromkeys(ok["other"]))
    label_width = 0.058 * max(map(len, cells))  # inches for the y tick labels at fontsize 7
    theme()
    fig, axes = plt.subplots(
        1,
        len(pairs),
        figsize=(label_width + 5.0 * len(pairs), 0.24 * len(cells) + 1.8),
        sharey=True,
        squeeze=False,
    )
    lower, upper = ratio_limits(ok["ci_low"], ok["ci_high"])
    for ax, other in zip(axes.flat, pairs, strict=True):
        part = ok[ok["other"] == other].set_index("cell").reindex(cells).dropna(subset=["speedup"])
        y = [cells.index(c) for c in part.index]
        errors = np.vstack([part["speedup"] - part["ci_low"], part["ci_high"] - part["speedup"]])
        ax.errorbar(part["speedup"], y, xerr=errors, fmt="none", ecolor="0.55", elinewidth=1.2, capsize=2)
        sns.scatterplot(
            x=part["speedup"].to_numpy(),
            y=y,
            hue=part["method"].to_numpy(),
            style=part["method"].to_numpy(),
            palette=style.palette,
            markers=style.markers,
            s=45,
            legend=False,
            ax=ax,
            zorder=3,
        )
        ax.axvline(1.0, color="0.2", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlim(lower, upper)
        ax.xaxis.set_major_locator(FixedLocator(spaced_ticks(lower, upper)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_title(f"{other} vs {part['baseline'].iloc[0]}", fontweight="bold")
        ax.set_xlabel(
            f"speedup = A / {other.split()[0]}, from each block's {statistic} round (log)\n"
            f"> 1: {other.split()[0]} faster; bars: {confidence:.0%} interval over runs or passes"
        )
    axes[0, 0].set_yticks(range(len(cells)), cells, fontsize=7)
    axes[0, 0].set_ylim(len(cells) - 0.5, -0.5)
    legend_right(fig, method_handles(sorted(ok["method"].unique()), style), "method")
    fig.tight_layout()
    return fig


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="attrib-bench compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="RUN", help="results file, folder or machine name [@cpu|@cuda]")
    parser.add_argument("--out", type=Path, help="output folder (default: results/report/compare_<A>_vs_<B>/)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where machine names are looked up")
    parser.add_argument(
        "--alpha",
        type=float,
        default=RuleSettings().alpha,
        help=f"family-wise error rate over all cells (Holm); intervals at 1 - alpha (default {RuleSettings().alpha})",
    )
    parser.add_argument(
        "--min-effect",
        "--threshold",
        dest="min_effect",
        type=float,
        default=DEFAULT_THRESHOLD,
        help=f"smallest factor called faster/slower, besides Holm's test (default {DEFAULT_THRESHOLD})",
    )
    parser.add_argument(
        "--statistic",
        choices=tuple(STATISTICS),
        default=RuleSettings().statistic,
        help=f"each block's time over its rounds (default {RuleSettings().statistic})",
    )
    args = parser.parse_args(argv)
    if len(args.runs) < 2:
        parser.error(f"need at least two runs to compare, got {len(args.runs)}: {' '.join(args.runs)}")
    try:
        args.settings = RuleSettings(alpha=args.alpha, min_effect=args.min_effect, statistic=args.statistic)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def compact(common: pd.DataFrame, several: bool) -> pd.DataFrame:
    """The comparison in few, narrow columns: the cell's settings without its workload and
    method (those head each group), times in human units, the speedup with its interval."""
    rows = []
    for _, row in common.iterrows():
        prefix = f"{row['workload']}-{row['method']}-"
        settings = row["cell"].removeprefix(prefix)
        if pd.isna(row["speedup"]):
            speedup = "-"
        else:
            speedup = f"{row['speedup']:.2f}x [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"
        rows.append(
            {
                "workload · method": f"{row['workload']} · {row['method']}",
                "settings": settings,
                **({"other": row["other"]} if several else {}),
                "A": formatting.seconds(row["A_ms"] / 1e3),
                "B" if not several else "other": formatting.seconds(row["B_ms"] / 1e3),
                "speedup [CI]": speedup,
                "verdict": row["verdict"],
            }
        )
    return pd.DataFrame(rows)


def printable(common: pd.DataFrame, several: bool) -> str:
    """The comparison as text, one block per workload and method, so lines stay short."""
    table = compact(common, several)
    if table.empty:
        return "(no common cells)"
    lines = []
    columns = [c for c in table.columns if c != "workload · method"]
    widths = {c: max(len(c), int(table[c].astype(str).str.len().max())) for c in columns}
    header = "  ".join(f"{c:<{widths[c]}}" for c in columns)
    for group, part in table.groupby("workload · method", sort=False):
        lines += ["", str(group), "  " + header]
        for _, row in part.iterrows():
            lines.append("  " + "  ".join(f"{row[c]!s:<{widths[c]}}" for c in columns).rstrip())
    return "\n".join(lines)


def how_read(statistic: str, alpha: float, min_effect: float) -> str:
    """How the A, B, speedup and verdict columns were computed, in words, for compare.md and compare.html."""
    return (
        f"A and B: the median over each side's blocks of rounds of each block's {statistic} round. "
        f"Speedup = A / other, from the same {statistic} rounds: paired by A/B group within one A/B "
        f"session, Welch on runs (or a run's passes over its sweep) otherwise; {1 - alpha:.0%} interval "
        f"over those units, so it includes run-to-run variation; faster/slower needs Holm's adjusted p < "
        f"{alpha:g} over all cells and a factor of at least {min_effect:g} "
        "(attrib_core/analysis/timing_rule.py). An undetermined cell (one single-pass run per side) gets no "
        "speedup: compare.csv's time_ratio is A / B as measured, with no interval."
    )


def page_table(common: pd.DataFrame, several: bool) -> pd.DataFrame:
    """compact()'s columns with times and speedups kept as numbers, so the page sorts them as numbers
    (html shows `_ms` columns in human units); an undecided speedup is left empty."""
    table = pd.DataFrame(
        {
            "workload · method": common["workload"] + " · " + common["method"],
            "settings": [
                c.removeprefix(f"{w}-{m}-")
                for c, w, m in zip(*map(common.get, ("cell", "workload", "method")), strict=True)
            ],
            **({"other": common["other"]} if several else {}),
            "A_ms": common["A_ms"],
            ("other_ms" if several else "B_ms"): common["B_ms"],
            "speedup": common["speedup"],
            "interval": [
                "" if pd.isna(low) else f"[{low:.2f}, {high:.2f}]"
                for low, high in zip(common["ci_low"], common["ci_high"], strict=True)
            ],
            "verdict": common["verdict"],
        }
    )
    return table.reset_index(drop=True)


def page_sections(
    common: pd.DataFrame, one_sided: pd.DataFrame, several: bool, rule: str, figure: Path | None
) -> list[html.Section]:
    """compare.html's sections: the speedups (figure and table), then the cells on one side only."""
    title = "Speedup per cell" if figure is not None else "Times per cell (no speedup decided: nothing drawn)"
    sections = [html.Section(title, rule, image=figure, tables=[page_table(common, several)])]
    if len(one_sided):
        sections.append(html.Section(f"Cells on one side only ({len(one_sided)})", tables=[one_sided]))
    return sections


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        runs = [load_run(arg, args.results_dir) for arg in args.runs]
        match_across_devices(runs)
    except ResultsError as exc:
        print(f"compare: error: {exc}", file=sys.stderr)
        return 2
    label_runs(runs)
    for run in runs:
        files = f"{run.path}" if len(run.paths) < 2 else f"{len(run.paths)} files: {', '.join(map(str, run.paths))}"
        print(f"compare: {run.label} = {files} ({run.cells['match_key'].nunique()} cells)")
    notes = differences(runs)
    if notes:
        bar = "!" * 100
        print(f"\n{bar}\n!!! WARNING: these runs differ in more than hardware:")
        for note in notes:
            print(f"!!!   {note}")
        print(f"{bar}\n")
    try:
        results = [compare_pair(runs[0], other, args.settings) for other in runs[1:]]
    except TimingInputError as exc:
        print(f"compare: error: {exc}", file=sys.stderr)
        return 2
    common = pd.concat([c for c, _, _ in results], ignore_index=True)
    one_sided = pd.concat([o for _, o, _ in results], ignore_index=True).drop_duplicates()
    lines = [
        summary_line(c, runs[0].label, other.label, timing)
        for (c, _, timing), other in zip(results, runs[1:], strict=True)
    ]
    for (_, _, timing), other in zip(results, runs[1:], strict=True):
        for warning in timing.warnings:
            print(f"compare: {other.label} vs {runs[0].label}: {warning}")
    print(printable(common, several=len(runs) > 2))
    if len(one_sided):
        print(f"\n{len(one_sided)} cell(s) on one side only (not compared):")
        for _, row in one_sided.head(ONE_SIDED_SHOWN).iterrows():
            print(f"  only in {row['only in']}: {row['cell']}")
        if len(one_sided) > ONE_SIDED_SHOWN:
            print(f"  ... and {len(one_sided) - ONE_SIDED_SHOWN} more: see one_sided.csv / compare.md")
    print()
    for line in lines:
        print(line)
    out = args.out or RESULTS_DIR / "report" / ("compare_" + "_vs_".join(r.path.stem for r in runs[:2]))
    with staged(out) as scratch:
        common.to_csv(scratch / "compare.csv", index=False)
        one_sided.to_csv(scratch / "one_sided.csv", index=False)
        parts = ["# attrib-bench comparison", ""]
        parts += [f"- {run.label}: " + ", ".join(f"`{p.name}`" for p in run.paths) for run in runs]
        parts += ["", *[f"**WARNING: {n}**" for n in notes], "", *lines, ""]
        rule = how_read(args.statistic, args.alpha, args.min_effect)
        parts += [rule, ""]
        parts += [to_markdown(compact(common, several=len(runs) > 2)), ""]
        if len(one_sided):
            parts += ["## Cells on one side only", "", to_markdown(one_sided)]
        (scratch / "compare.md").write_text("\n".join(parts))
        figure = speedup_figure(common, 1 - args.alpha, args.statistic)
        if figure is not None:
            figure.savefig(scratch / "speedup.png", dpi=110, bbox_inches="tight")
            plt.close(figure)
        sections = page_sections(common, one_sided, len(runs) > 2, rule, scratch / "speedup.png" if figure else None)
        intro = pd.DataFrame([{"side": r.label, "files": ", ".join(p.name for p in r.paths)} for r in runs])
        files = sorted(p.name for p in scratch.iterdir())
        title = "attrib-bench comparison: " + " vs ".join(r.path.stem for r in runs)
        (scratch / "compare.html").write_text(html.page(title, intro, [*notes, *lines], sections, files))
    wrote = f"compare.csv, compare.md, compare.html, one_sided.csv{', speedup.png' if figure else ''}"
    print(f"\ncompare: wrote {wrote} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
