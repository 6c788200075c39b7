"""`python -m attrib_core.analysis.compare A B [C ...] [--out DIR]`: how much faster is B than A, cell by cell?

Each argument is a results file, a folder (its newest file) or a machine name found in
results/ (its newest file); append `@cpu` or `@cuda` to compare one device of a run with
another device of another run (laptop@cpu gpubox@cuda). Cells are matched by cell_key, so
runs of different presets compare on their intersection. Speedup = median_A / median_B
(> 1: B is faster), with a percentile bootstrap confidence interval over the raw rounds
(samples_s) of both sides, so noise is not read as a difference. Runs with different
torch / captum versions or presets are compared all the same, under a loud warning.
"""

from __future__ import annotations

import argparse
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from attrib_core import formatting
from attrib_core.analysis.output import staged
from attrib_core.analysis.plots import legend_right, method_handles, theme
from attrib_core.analysis.results import ResultsError, load_results
from attrib_core.analysis.runs import RESULTS_DIR, file_machine, resolve_run
from attrib_core.analysis.style import method_style
from attrib_core.analysis.tables import to_markdown

DEVICES = ("cpu", "cuda")
ONE_SIDED_SHOWN = 30  # printed; the files list them all
DEFAULT_THRESHOLD = 1.05  # a change smaller than 5% is not called faster or slower
SOFTWARE = (("torch_version", "torch"), ("captum_version", "captum"), ("cuda_version", "CUDA (torch build)"))


COMMON_COLUMNS = [
    "cell",
    "workload",
    "method",
    "baseline",
    "other",
    "median_A_ms",
    "median_B_ms",
    "rounds_A",
    "rounds_B",
    "speedup",
    "ci_low",
    "ci_high",
    "verdict",
]


@dataclass
class Run:
    """One side of a comparison: what the user typed, the file it resolved to, its cells."""

    arg: str
    path: Path
    device: str | None
    cells: pd.DataFrame
    label: str = ""


def split_device(arg: str) -> tuple[str, str | None]:
    name, at, device = arg.rpartition("@")
    if at and device in DEVICES and name:
        return name, device
    return arg, None


def load_run(arg: str, folder: Path) -> Run:
    name, device = split_device(arg)
    path = resolve_run(name, folder)
    everything = load_results([path])
    if everything.empty:
        raise ResultsError(f"{path}: no benchmark records to compare")
    cells = everything if device is None else everything[everything["device"] == device]
    if cells.empty:
        raise ResultsError(f"{path}: no cells on device {device!r}; it has: {', '.join(everything['device'].unique())}")
    return Run(arg, path, device, cells.assign(match_key=cells["cell_key"]))


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
        run.label = f"{letter} ({name}{'@' + run.device if run.device else ''})"


def bootstrap_ratio(
    a: np.ndarray, b: np.ndarray, rng: np.random.Generator, resamples: int, confidence: float
) -> tuple[float, float]:
    """Percentile bootstrap interval of median(a) / median(b), resampling each side's rounds."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    medians_a = np.median(a[rng.integers(0, len(a), size=(resamples, len(a)))], axis=1)
    medians_b = np.median(b[rng.integers(0, len(b), size=(resamples, len(b)))], axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(medians_a / medians_b, [tail, 1 - tail])
    return float(low), float(high)


def verdict(speedup: float, low: float, high: float, threshold: float = 1.0) -> str:
    """faster / slower only when the interval excludes 1 and the ratio is past the threshold
    factor (as asv does), so small but "significant" wobbles are not called changes."""
    if low > 1 and speedup >= threshold:
        return "faster"
    if high < 1 and speedup <= 1 / threshold:
        return "slower"
    return "same within noise"


def _samples(value: object) -> np.ndarray | None:
    if isinstance(value, (list, tuple, np.ndarray)) and len(value) > 0:
        samples = np.asarray(value, dtype=float)
        return samples if np.all(np.isfinite(samples)) else None
    return None


def compare_pair(
    base: Run,
    other: Run,
    *,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    threshold: float = DEFAULT_THRESHOLD,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(common cells with speedup and CI, cells found on one side only)."""
    a = base.cells.set_index("match_key")
    b = other.cells.set_index("match_key")
    rows = []
    a = a[~a.index.duplicated()]
    b = b[~b.index.duplicated()]
    for key in [k for k in a.index if k in b.index]:
        ra, rb = a.loc[key], b.loc[key]
        row = {
            "cell": key,
            "workload": ra["workload"],
            "method": ra["method"],
            "baseline": base.label,
            "other": other.label,
            "median_A_ms": ra["median_s"] * 1e3,
            "median_B_ms": rb["median_s"] * 1e3,
            "rounds_A": ra["rounds"],
            "rounds_B": rb["rounds"],
        }
        samples_a, samples_b = _samples(ra["samples_s"]), _samples(rb["samples_s"])
        failed = [side for side, r in (("A", ra), ("B", rb)) if r["status"] != "ok"]
        if failed or samples_a is None or samples_b is None:
            row.update(speedup=np.nan, ci_low=np.nan, ci_high=np.nan)
            row["verdict"] = f"failed on {' and '.join(failed)}" if failed else "no raw rounds"
        else:
            rng = np.random.default_rng([seed, zlib.crc32(str(key).encode())])  # per cell: order-independent
            low, high = bootstrap_ratio(samples_a, samples_b, rng, resamples, confidence)
            speedup = ra["median_s"] / rb["median_s"]
            row.update(speedup=speedup, ci_low=low, ci_high=high, verdict=verdict(speedup, low, high, threshold))
        rows.append(row)
    common = pd.DataFrame(rows, columns=COMMON_COLUMNS)
    one_sided = pd.DataFrame(
        [{"cell": k, "only in": base.label} for k in a.index if k not in b.index]
        + [{"cell": k, "only in": other.label} for k in b.index if k not in a.index],
        columns=["cell", "only in"],
    )
    return common, one_sided


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


def summary_line(common: pd.DataFrame, base: str, other: str) -> str:
    ok = common.dropna(subset=["speedup"])
    if ok.empty:
        return f"{other} vs {base}: no common cell with timings on both sides"
    geomean = float(np.exp(np.log(ok["speedup"]).mean()))
    counts = ok["verdict"].value_counts()
    return (
        f"{other} vs {base}: geometric-mean speedup {geomean:.3f}x over {len(ok)} common cells "
        f"({counts.get('faster', 0)} faster, {counts.get('slower', 0)} slower, "
        f"{counts.get('same within noise', 0)} same within noise)"
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


def speedup_figure(common: pd.DataFrame, confidence: float) -> Figure | None:
    """Forest plot: one row per common cell, speedup with its CI, one panel per comparison."""
    ok = common.dropna(subset=["speedup"]).sort_values(["workload", "method", "cell"])
    if ok.empty:
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
            f"speedup = median A / median {other.split()[0]} (log)\n"
            f"> 1: {other.split()[0]} faster; bars: {confidence:.0%} bootstrap CI"
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
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--confidence", type=float, default=0.95, help="confidence level (default 0.95)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help=f"smallest factor called faster/slower, besides a CI that excludes 1 (default {DEFAULT_THRESHOLD})",
    )
    args = parser.parse_args(argv)
    if len(args.runs) < 2:
        parser.error(f"need at least two runs to compare, got {len(args.runs)}: {' '.join(args.runs)}")
    if not 0 < args.confidence < 1:
        parser.error(f"--confidence {args.confidence} is not valid; expected 0 < c < 1")
    if args.threshold < 1:
        parser.error(f"--threshold {args.threshold} is not valid; expected a factor >= 1")
    if args.resamples < 100:
        parser.error(f"--resamples {args.resamples} is not valid; expected >= 100")
    return args


def compact(common: pd.DataFrame, several: bool) -> pd.DataFrame:
    """The comparison in few, narrow columns: the cell's settings without its workload and
    method (those head each group), times in human units, the speedup with its interval."""
    rows = []
    for _, row in common.iterrows():
        prefix = f"{row['workload']}-{row['method']}-"
        settings = row["cell"].removeprefix(prefix)
        speedup = (
            "-" if pd.isna(row["speedup"]) else f"{row['speedup']:.2f}x [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"
        )
        rows.append(
            {
                "workload · method": f"{row['workload']} · {row['method']}",
                "settings": settings,
                **({"other": row["other"]} if several else {}),
                "A": formatting.seconds(row["median_A_ms"] / 1e3),
                "B" if not several else "other": formatting.seconds(row["median_B_ms"] / 1e3),
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
        print(f"compare: {run.label} = {run.path} ({len(run.cells)} cells)")
    notes = differences(runs)
    if notes:
        bar = "!" * 100
        print(f"\n{bar}\n!!! WARNING: these runs differ in more than hardware:")
        for note in notes:
            print(f"!!!   {note}")
        print(f"{bar}\n")
    results = [
        compare_pair(
            runs[0],
            other,
            resamples=args.resamples,
            confidence=args.confidence,
            seed=args.seed,
            threshold=args.threshold,
        )
        for other in runs[1:]
    ]
    common = pd.concat([c for c, _ in results], ignore_index=True)
    one_sided = pd.concat([o for _, o in results], ignore_index=True).drop_duplicates()
    lines = [summary_line(c, runs[0].label, other.label) for (c, _), other in zip(results, runs[1:], strict=True)]
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
        parts += [f"- {run.label}: `{run.path.name}`" for run in runs]
        parts += ["", *[f"**WARNING: {n}**" for n in notes], "", *lines, ""]
        parts += [
            f"Speedup = median A / median other; {args.confidence:.0%} bootstrap CI over the raw rounds, "
            f"{args.resamples} resamples; faster/slower needs a CI that excludes 1 and a factor of at least "
            f"{args.threshold:g}. The CI covers noise within each run, not drift between runs.",
            "",
        ]
        parts += [to_markdown(compact(common, several=len(runs) > 2)), ""]
        if len(one_sided):
            parts += ["## Cells on one side only", "", to_markdown(one_sided)]
        (scratch / "compare.md").write_text("\n".join(parts))
        figure = speedup_figure(common, args.confidence)
        if figure is not None:
            figure.savefig(scratch / "speedup.png", dpi=110, bbox_inches="tight")
            plt.close(figure)
    print(f"\ncompare: wrote compare.csv, compare.md, one_sided.csv{', speedup.png' if figure else ''} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
