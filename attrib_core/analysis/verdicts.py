"""Regression verdicts as a user reads them: results files in, a table and an exit status out.

Torch-free, so `attrib-bench regress --compare BASE NEW` works from an installed wheel; the
launcher that runs the benchmark (attrib_core/ab/regress.py) prints through the same functions.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from attrib_core import formatting
from attrib_core.analysis.regression import FAILING, OK, Comparison, Thresholds, compare
from attrib_core.analysis.render.comment import render_comment, side_label
from attrib_core.analysis.results import ResultsError, load_results, results_files
from attrib_core.analysis.timing_rule import STATISTICS
from attrib_core.exits import EXIT_FAILED, EXIT_OK
from attrib_core.fileio import atomic_write


class RegressError(Exception):
    """Bad input or a run that produced nothing to compare: exit 2 with this message."""


# --- command line -----------------------------------------------------------------------


def run_files(path: Path, what: str) -> list[Path]:
    """A results file, the results files in a folder (a baseline of several processes), or
    several of either joined by `+` (one side of an A/B session: `A1_x.json+A2_x.json`)."""
    if "+" in str(path) and not path.exists():
        return [p for part in str(path).split("+") for p in run_files(Path(part), what)]
    if path.is_dir():
        files = results_files(path)
        if not files:
            raise RegressError(f"{what}: the folder {path} holds no results files (*.json)")
        return files
    if not path.is_file():
        raise RegressError(f"{what}: no such file or folder: {path}")
    return [path]


def read_runs(paths: Sequence[Path], what: str) -> pd.DataFrame:
    """Results files as one table; a missing, corrupt or empty file is a RegressError."""
    try:
        df = load_results(paths)
    except ResultsError as exc:
        raise RegressError(f"{what}: {exc}") from None
    if df.empty:
        raise RegressError(f"{what}: {', '.join(map(str, paths))} holds no cells")
    return df


# --- printing -----------------------------------------------------------------------------


def _fmt(kind: str, value: float | None) -> str:
    if kind == "time":
        return formatting.seconds(value)
    if kind == "memory":
        return formatting.size_bytes(value)
    return formatting.MISSING if value is None or math.isnan(value) else f"{value:.4g}"


def _ratio(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.2f}"


def _interval(check) -> str:
    if check.kind != "time" or check.ci_low is None:
        return "-"
    return f"[{check.ci_low:.2f}, {check.ci_high:.2f}]"


def format_table(comparison: Comparison) -> str:
    """Time for every cell (and the run-level member); memory, fidelity and status rows only where not ok."""
    shown = [c for c in comparison.checks if c.kind == "time" or c.verdict != OK]
    header = ("cell", "check", "baseline", "now", "ratio", "interval", "p (Holm)", "verdict")
    rows = [
        (
            c.cell_key,
            c.kind,
            _fmt(c.kind, c.baseline),
            _fmt(c.kind, c.now),
            _ratio(c.ratio),
            _interval(c),
            "-" if c.p_adjusted is None else f"{c.p_adjusted:.2g}",
            (c.verdict.upper() if c.verdict in FAILING else c.verdict) + (f" ({c.note})" if c.note else ""),
        )
        for c in shown
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        left = [value.ljust(width) for value, width in zip(row[:2], widths, strict=False)]
        right = [value.rjust(width) for value, width in zip(row[2:-1], widths[2:], strict=False)]
        lines.append("  ".join([*left, *right, row[-1]]))
    return "\n".join(lines)


def format_summary(comparison: Comparison, th: Thresholds) -> str:
    verdicts = comparison.cell_verdicts()
    counts = pd.Series(list(verdicts.values())).value_counts()
    hidden = [c for c in comparison.checks if c.kind != "time" and c.verdict == OK]
    design = comparison.timing.design if comparison.timing is not None else "none timed"
    return "\n".join(
        [
            f"{len(verdicts)} cells: " + ", ".join(f"{n} {v}" for v, n in counts.items()),
            f"time ({design}; blocks of rounds are the units, {th.statistic} round per block): regressed when "
            f"Holm's adjusted p < {th.alpha} over all cells + the run-level member and ratio >= {th.min_effect}; "
            "interval: unadjusted, over blocks (between-run variation included)",
            f"memory: regressed above baseline x {th.memory_factor} + {th.memory_slack_bytes:.0f} bytes; "
            f"fidelity: worse by more than {th.fidelity_tolerance:.0%} + {th.fidelity_slack}; "
            f"{len(hidden)} memory/fidelity values within bounds (not listed)",
        ]
    )


def format_warnings(comparison: Comparison, th: Thresholds) -> list[str]:
    lines = []
    if comparison.environment_changes:
        changed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in _env_items(comparison))
        lines += [
            "!" * 78,
            f"WARNING: the two sides differ in their environment: {changed}.",
            "Peak memory and fidelity are not comparable across machines or versions: their changes are",
            "listed as 'changed'. Times decide unless the hardware or the thread count differs.",
            "!" * 78,
        ]
    timing = comparison.timing
    if timing is not None:
        undetermined = [c for c in timing.cells.values() if c.verdict == "undetermined"]
        if undetermined:
            lines.append(f"WARNING: time undetermined for {len(undetermined)} cells: {undetermined[0].note}")
    lines += [f"note: {w}" for w in comparison.warnings]
    return lines


def _env_items(comparison: Comparison):
    for key, (before, after) in comparison.environment_changes.items():
        yield key, before, after


def report(
    comparison: Comparison,
    th: Thresholds,
    base: Path,
    new: Path,
    comment_md: Path | None = None,
    names: tuple[str, str] | None = None,
) -> int:
    """Print the verdicts; write them as a pull-request comment too when asked (on a regression
    as well: the comment is written before the exit status is returned), its sides called `names`."""
    print(f"baseline: {base}\nnew run:  {new}")
    for line in format_warnings(comparison, th):
        print(line)
    print(format_table(comparison))
    print(format_summary(comparison, th))
    if comment_md is not None:
        atomic_write(comment_md, render_comment(comparison, th, *(names or (str(base), str(new)))))
        print(f"pull-request comment (markdown): {comment_md}")
    failing = comparison.failing
    if failing:
        cells = sorted({c.cell_key for c in failing})
        print(f"REGRESSION in {len(cells)} cells: {', '.join(cells)}")
        return EXIT_FAILED
    print("no regression")
    return EXIT_OK


def compare_files(base_path: Path, new_path: Path, th: Thresholds, comment_md: Path | None = None) -> int:
    """Compare two existing results files or folders; nothing runs."""
    base = read_runs(run_files(base_path, "baseline"), "baseline")
    new = read_runs(run_files(new_path, "new run"), "new run")
    return report(
        compare(base, new, th), th, base_path, new_path, comment_md, side_names(base, new, base_path, new_path)
    )


def side_names(base: pd.DataFrame, new: pd.DataFrame, base_path: Path, new_path: Path) -> tuple[str, str]:
    """The sides' names in a comment: an A/B session's labels, or the paths given."""
    return side_label(base, str(base_path)), side_label(new, str(new_path))


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def build_parser(run_dir: Path = Path("results") / "regress") -> argparse.ArgumentParser:
    defaults = Thresholds()
    parser = argparse.ArgumentParser(
        prog="attrib-bench regress",
        description="Run a preset and compare it with a baseline; exit 1 when a cell regressed.",
        epilog="Arguments after -- go to pytest (e.g. -- --inject-slowdown IntegratedGradients=2 -k digits).",
    )
    parser.add_argument("--preset", default="ci", help="preset name or TOML path (default: ci)")
    parser.add_argument(
        "--baseline", type=Path, help="baseline folder or results file (default: results/baselines/<preset>/)"
    )
    parser.add_argument("--update-baseline", action="store_true", help="run, then record the runs as the baseline")
    parser.add_argument(
        "--compare",
        nargs=2,
        type=Path,
        metavar=("BASE", "NEW"),
        help="compare files or folders (several joined by +); run nothing",
    )
    parser.add_argument(
        "--processes", type=int, default=2, help="pytest processes per run, one block each (2 per side at least)"
    )
    parser.add_argument("--results-dir", type=Path, default=run_dir, help="runs go to a new folder in here")
    parser.add_argument(
        "--comment-md",
        type=Path,
        metavar="FILE",
        help="also write the verdicts as a pull-request comment in markdown (on a regression too)",
    )
    group = parser.add_argument_group("thresholds (see attrib_core/regression.py)")
    group.add_argument(
        "--min-effect",
        type=_number,
        default=defaults.min_effect,
        help=f"smallest time ratio called a regression or an improvement (default {defaults.min_effect})",
    )
    group.add_argument(
        "--alpha",
        type=_number,
        default=defaults.alpha,
        help=f"family-wise error rate over all cells' times + the run-level check, Holm (default {defaults.alpha})",
    )
    group.add_argument(
        "--memory-factor",
        type=_number,
        default=defaults.memory_factor,
        help=f"peak-bytes ratio allowed, plus --memory-slack-bytes (default {defaults.memory_factor})",
    )
    group.add_argument(
        "--memory-slack-bytes",
        type=_number,
        default=defaults.memory_slack_bytes,
        help=f"peak bytes allowed on top of the factor (default {defaults.memory_slack_bytes})",
    )
    group.add_argument(
        "--fidelity-tolerance",
        type=_number,
        default=defaults.fidelity_tolerance,
        help=f"relative worsening of a fidelity metric allowed, plus {defaults.fidelity_slack} "
        f"(default {defaults.fidelity_tolerance})",
    )
    group.add_argument(
        "--statistic",
        choices=tuple(STATISTICS),
        default=defaults.statistic,
        help=f"each block's time over its rounds (default {defaults.statistic}: interference only adds time)",
    )
    return parser


def split_pytest_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Our arguments, and pytest's: everything after the first `--`."""
    argv = list(argv)
    if "--" in argv:
        at = argv.index("--")
        return argv[:at], argv[at + 1 :]
    return argv, []


def thresholds_from(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Thresholds:
    options = {
        "min_effect": args.min_effect,
        "alpha": args.alpha,
        "memory_factor": args.memory_factor,
        "memory_slack_bytes": args.memory_slack_bytes,
        "fidelity_tolerance": args.fidelity_tolerance,
        "statistic": args.statistic,
    }
    try:
        return Thresholds(**options)
    except ValueError as exc:
        name = str(exc).split("=", 1)[0]
        parser.error(f"{exc} (--{name.replace('_', '-')})" if name in options else str(exc))
        raise  # unreachable: parser.error exits


# --- running, reading, recording ----------------------------------------------------------
