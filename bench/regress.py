"""Regression check: run the CI preset and compare each cell with the committed baseline.

    python -m bench.regress                       run preset ci, compare with results/baselines/ci/
    python -m bench.regress --update-baseline     run it and record the results as the new baseline
    python -m bench.regress --compare BASE NEW    compare results files or folders; runs nothing
    python -m bench.regress -- --inject-slowdown IntegratedGradients=2    pytest arguments after --

The preset runs in --processes separate pytest processes (default 2), each writing its own
ordinary results file into results/regress/<time>/; their rounds are pooled per cell. Two
processes, because on a shared machine one process's cell is now and then slowed as a
whole, and a second, independent measurement is the cheapest cure (see the README's
numbers). A baseline is a folder of such files (with their machine info), or one file.

Exit status: 0 no regression; 1 a cell regressed or failed; 2 bad input (a missing or
corrupt baseline, no cell in common, a threshold that does not parse, a run that wrote no
results). A baseline is written only with --update-baseline, and only from runs whose
cells all passed. The decision rule and its thresholds live in attrib_core/regression.py.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from attrib_core.regression import (
    FAILING,
    NORMALISATIONS,
    OK,
    STATISTICS,
    Comparison,
    RegressionInputError,
    Thresholds,
    compare,
)
from attrib_core.results import ResultsError, load_results, results_files

REPO = Path(__file__).resolve().parent.parent
BASELINE_DIR = REPO / "results" / "baselines"
RUN_DIR = REPO / "results" / "regress"
EXIT_OK, EXIT_REGRESSED, EXIT_BAD_INPUT = 0, 1, 2
PYTEST_RECORDED = (0, 1)  # 1: some cells failed, and the results file records them


class RegressError(Exception):
    """Bad input or a run that produced nothing to compare: exit 2 with this message."""


# --- command line -----------------------------------------------------------------------


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def build_parser() -> argparse.ArgumentParser:
    defaults = Thresholds()
    parser = argparse.ArgumentParser(
        prog="python -m bench.regress",
        description="Run a preset and compare it with a baseline; exit 1 when a cell regressed.",
        epilog="Arguments after -- go to pytest (e.g. -- --inject-slowdown IntegratedGradients=2 -k digits).",
    )
    parser.add_argument("--preset", default="ci", help="preset name or TOML path (default: ci)")
    parser.add_argument(
        "--baseline", type=Path, help="baseline folder or results file (default: results/baselines/<preset>/)"
    )
    parser.add_argument("--update-baseline", action="store_true", help="run, then record the runs as the baseline")
    parser.add_argument(
        "--compare", nargs=2, type=Path, metavar=("BASE", "NEW"), help="compare files or folders; run nothing"
    )
    parser.add_argument("--processes", type=int, default=2, help="pytest processes whose rounds are pooled (default 2)")
    parser.add_argument("--results-dir", type=Path, default=RUN_DIR, help="runs go to a new folder in here")
    group = parser.add_argument_group("thresholds (see attrib_core/regression.py)")
    group.add_argument(
        "--time-factor",
        type=_number,
        default=defaults.time_factor,
        help=f"normalised ratio (of --statistic) a slowdown must exceed (default {defaults.time_factor})",
    )
    group.add_argument(
        "--alpha",
        type=_number,
        default=defaults.alpha,
        help=f"Mann-Whitney U significance level (default {defaults.alpha})",
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
        "--normalisation",
        choices=NORMALISATIONS,
        default=defaults.normalisation,
        help=f"how a uniformly slower machine is cancelled out (default {defaults.normalisation})",
    )
    group.add_argument(
        "--statistic",
        choices=STATISTICS,
        default=defaults.statistic,
        help=f"each cell's time over its pooled rounds, for the factor (default {defaults.statistic})",
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
        "time_factor": args.time_factor,
        "alpha": args.alpha,
        "memory_factor": args.memory_factor,
        "memory_slack_bytes": args.memory_slack_bytes,
        "fidelity_tolerance": args.fidelity_tolerance,
        "normalisation": args.normalisation,
        "statistic": args.statistic,
    }
    try:
        return Thresholds(**options)
    except ValueError as exc:
        name = str(exc).split("=", 1)[0]
        parser.error(f"{exc} (--{name.replace('_', '-')})" if name in options else str(exc))
        raise  # unreachable: parser.error exits


# --- running, reading, recording ----------------------------------------------------------


def preset_name(preset: str) -> str:
    """The name a preset's baseline is filed under: its TOML `name`, or the name given."""
    path = Path(preset)
    if path.suffix != ".toml":
        return preset
    try:
        return str(tomllib.loads(path.read_text()).get("name", path.stem))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return path.stem  # pytest will report the preset's own problem


def default_baseline(preset: str) -> Path:
    return BASELINE_DIR / preset_name(preset)


def new_run_dir(results_dir: Path) -> Path:
    """results_dir/<UTC time>[-n]/: one folder per regression run, never an existing one."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    folder, n = results_dir / stamp, 1
    while folder.exists():
        n += 1
        folder = results_dir / f"{stamp}-{n}"
    return folder


def run_processes(
    preset: str, processes: int, results_dir: Path, pytest_args: Sequence[str] = (), quiet: bool = False
) -> list[Path]:
    """The preset, run in `processes` pytest processes one after another, into a new folder."""
    folder = new_run_dir(results_dir)
    return [run_preset(preset, folder, pytest_args, quiet) for _ in range(processes)]


def run_preset(
    preset: str, results_dir: Path, pytest_args: Sequence[str] = (), quiet: bool = False, python: str = sys.executable
) -> Path:
    """Run the preset's cells in a pytest subprocess; return the results file it wrote."""
    results_dir.mkdir(parents=True, exist_ok=True)
    before = set(results_files(results_dir))
    command = [python, "-m", "pytest", "bench", "-p", "no:cacheprovider", f"--preset={preset}"]
    command += [f"--results-dir={results_dir}", *pytest_args]
    if not quiet:
        print("running:", " ".join(command), flush=True)
    done = subprocess.run(command, cwd=REPO, capture_output=quiet, text=True)
    written = sorted(set(results_files(results_dir)) - before, key=lambda p: p.stat().st_mtime)
    if done.returncode not in PYTEST_RECORDED or not written:
        tail = ("\n" + (done.stdout + done.stderr)[-3000:]) if quiet else ""
        raise RegressError(
            f"the benchmark run (pytest exit {done.returncode}) wrote no usable results file in {results_dir}{tail}"
        )
    return written[-1]


def run_files(path: Path, what: str) -> list[Path]:
    """A results file, or the results files in a folder (a baseline of several processes)."""
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


def record_baseline(results: Sequence[Path], baseline: Path) -> None:
    """Copy results files (cells and machine info) to the baseline: a folder, replaced as a
    whole, or a .json path for a single run. Only when every cell passed: a baseline with a
    failed cell would hide that cell's regressions."""
    df = read_runs(results, "new baseline")
    failed = sorted(set(df.loc[df["status"] != "ok", "cell_key"]))
    if failed:
        raise RegressError(
            f"not recording the baseline: {len(failed)} cells failed (e.g. {failed[0]}); {baseline} is unchanged"
        )
    if baseline.suffix == ".json":
        if len(results) != 1:
            raise RegressError(f"{baseline} is a file and holds one run, not {len(results)}: pass a folder")
        partial = baseline.with_name(baseline.name + ".partial")
        baseline.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(results[0], partial)
        os.replace(partial, baseline)
        return
    partial, old = baseline.with_name(baseline.name + ".partial"), baseline.with_name(baseline.name + ".old")
    for leftover in (partial, old):
        shutil.rmtree(leftover, ignore_errors=True)
    partial.mkdir(parents=True)
    for path in results:
        shutil.copyfile(path, partial / path.name)
    if baseline.exists():
        os.replace(baseline, old)
    os.replace(partial, baseline)
    shutil.rmtree(old, ignore_errors=True)


# --- printing -----------------------------------------------------------------------------


def _fmt(kind: str, value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if kind == "time":
        return f"{value * 1e3:.3g} ms" if value < 1 else f"{value:.3g} s"
    if kind == "memory":
        return f"{value / 2**10:.1f} KiB" if value < 2**20 else f"{value / 2**20:.2f} MiB"
    return f"{value:.4g}"


def _ratio(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.2f}"


def format_table(comparison: Comparison) -> str:
    """Time for every cell; memory, fidelity and status rows only where not ok."""
    shown = [c for c in comparison.checks if c.kind == "time" or c.verdict != OK]
    header = ("cell", "check", "baseline", "now", "ratio", "raw", "p", "verdict")
    rows = [
        (
            c.cell_key,
            c.kind,
            _fmt(c.kind, c.baseline),
            _fmt(c.kind, c.now),
            _ratio(c.ratio),
            _ratio(c.raw_ratio),
            "-" if c.p_value is None else f"{c.p_value:.2g}",
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
    scale = ""
    if comparison.time_scale is not None:
        scale = f" (new times / {comparison.time_scale:.3f}, the median over cells of now / baseline)"
    return "\n".join(
        [
            f"{len(verdicts)} cells: " + ", ".join(f"{n} {v}" for v, n in counts.items()),
            f"time ({th.statistic} over pooled rounds): regressed when Mann-Whitney U p < {th.alpha} "
            f"and normalised ratio > {th.time_factor}; "
            f"normalisation {comparison.normalisation}{scale}",
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
            f"WARNING: the baseline was measured elsewhere: {changed}.",
            "Raw times, peak memory and fidelity are not comparable across machines or versions:",
            "only normalised times decide; memory and fidelity changes are listed as 'changed'.",
            "Record a baseline on this machine with --update-baseline for a full check.",
            "!" * 78,
        ]
    scale = comparison.time_scale
    if scale is not None and not 1 / th.time_factor <= scale <= th.time_factor:
        lines.append(
            f"WARNING: this run is {scale:.2f}x the baseline's time overall. A slower (or busier) machine "
            "explains that; a slowdown shared by most cells would too, and run-median normalisation "
            "cannot see it: check the raw column."
        )
    lines += [f"note: {w}" for w in comparison.warnings]
    return lines


def _env_items(comparison: Comparison):
    for key, (before, after) in comparison.environment_changes.items():
        yield key, before, after


def report(comparison: Comparison, th: Thresholds, base: Path, new: Path) -> int:
    print(f"baseline: {base}\nnew run:  {new}")
    for line in format_warnings(comparison, th):
        print(line)
    print(format_table(comparison))
    print(format_summary(comparison, th))
    failing = comparison.failing
    if failing:
        cells = sorted({c.cell_key for c in failing})
        print(f"REGRESSION in {len(cells)} cells: {', '.join(cells)}")
        return EXIT_REGRESSED
    print("no regression")
    return EXIT_OK


# --- main ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    own, pytest_args = split_pytest_args(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(own)
    th = thresholds_from(args, parser)
    if args.compare and (args.update_baseline or pytest_args):
        parser.error("--compare runs nothing: it takes neither --update-baseline nor pytest arguments")
    if args.processes < 1:
        parser.error(f"--processes {args.processes} is not valid; needs an integer >= 1")
    try:
        if args.compare:
            base_path, new_path = args.compare
            base = read_runs(run_files(base_path, "baseline"), "baseline")
            new = read_runs(run_files(new_path, "new run"), "new run")
            return report(compare(base, new, th), th, base_path, new_path)
        baseline = args.baseline or default_baseline(args.preset)
        if args.update_baseline:
            results = run_processes(args.preset, args.processes, args.results_dir, pytest_args)
            previous = "replacing the previous one" if baseline.exists() else "the first one"
            record_baseline(results, baseline)
            print(f"baseline recorded: {baseline} ({previous}), from {len(results)} runs in {results[0].parent}")
            return EXIT_OK
        if not baseline.exists():
            raise RegressError(
                f"no baseline at {baseline}; record one on this machine with: "
                f"python -m bench.regress --preset {args.preset} --update-baseline"
            )
        base = read_runs(run_files(baseline, "baseline"), "baseline")  # before running: a bad baseline fails fast
        results = run_processes(args.preset, args.processes, args.results_dir, pytest_args)
        new = read_runs(results, "new run")
        return report(compare(base, new, th), th, baseline, results[0].parent)
    except (RegressError, RegressionInputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
