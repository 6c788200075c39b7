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

import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from attrib_core.analysis.regression import (
    RegressionInputError,
    compare,
)
from attrib_core.analysis.results import results_files
from attrib_core.analysis.verdicts import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    RegressError,
    build_parser,
    compare_files,
    read_runs,
    report,
    run_files,
    split_pytest_args,
    thresholds_from,
)
from attrib_core.formatting import timestamp

REPO = Path(__file__).resolve().parent.parent
BASELINE_DIR = REPO / "results" / "baselines"
RUN_DIR = REPO / "results" / "regress"
PYTEST_RECORDED = (0, 1)  # 1: some cells failed, and the results file records them


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
    stamp = timestamp(datetime.now(UTC))
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


# --- main ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    own, pytest_args = split_pytest_args(sys.argv[1:] if argv is None else argv)
    parser = build_parser(RUN_DIR)
    args = parser.parse_args(own)
    th = thresholds_from(args, parser)
    if args.compare and (args.update_baseline or pytest_args):
        parser.error("--compare runs nothing: it takes neither --update-baseline nor pytest arguments")
    if args.processes < 1:
        parser.error(f"--processes {args.processes} is not valid; needs an integer >= 1")
    try:
        if args.compare:
            return compare_files(*args.compare, th)
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
