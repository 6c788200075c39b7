"""Regression check: the candidate (the working tree) against a base, A/B on this machine.

    attrib-bench regress                       A/B: base = merge-base of HEAD and origin/main (or main)
    attrib-bench regress --base REV            A/B against REV (a pull request: --base origin/<base branch>)
    attrib-bench regress --candidate-env ATTRIB_BENCH_INJECT_MODEL_SLOWDOWN=1.1    a made slowdown (proof)
    attrib-bench regress --baseline DIR        history mode: run the preset, compare with committed files
    attrib-bench regress --update-baseline     history mode: run it and record the results as the baseline
    attrib-bench regress --compare BASE NEW    compare results files or folders; runs nothing
    attrib-bench regress ... --comment-md FILE  also write the verdicts as a pull-request comment (markdown)

A/B (the default): the base revision is checked out with `git worktree add --detach` into a
temporary folder and both sides run the preset (ci) in the same window, interleaved in ABBA
blocks across --workers processes per side (attrib_core/ab/session.py), so the machine's drift hits both
alike and nothing needs normalising. One results file per worker process goes to
results/regress/<UTC time>/. Time is decided by the one timing rule (paired by quad: Holm
over every cell plus the run as a whole); memory and fidelity by attrib_core/analysis/regression.py.

History mode (--baseline / --update-baseline): the preset runs in --processes pytest
processes (pytest arguments after --), compared with a committed folder of results files by
the same rule, unpaired (Welch over processes). For history, not for pull requests: another
day's machine state is in every ratio.

Exit status: 0 no regression; 1 a cell regressed or failed; 2 bad input (a revision that does
not exist, a missing or corrupt baseline, no cell in common, a threshold that does not parse,
a run that wrote no results), one line and nothing overwritten.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

from attrib_core.ab import session as ab
from attrib_core.ab import sides as ab_sides
from attrib_core.analysis.regression import (
    RegressionInputError,
    compare,
)
from attrib_core.analysis.results import results_files
from attrib_core.analysis.verdicts import (
    RegressError,
    build_parser,
    compare_files,
    read_runs,
    report,
    run_files,
    side_names,
    split_pytest_args,
    thresholds_from,
)
from attrib_core.exits import EXIT_BAD_INPUT, EXIT_OK
from attrib_core.fileio import new_run_dir
from attrib_core.names import check_name
from attrib_core.suite import suite_command

BASELINE_DIR = Path("results") / "baselines"  # in the repository the command runs in
RUN_DIR = Path("results") / "regress"
# 20 quads: the A/B proof (experiments/ab/proof.py, experiments/ab/ab-proof-q20) caught a 1.10x slowdown of one
# method in 2 of 11 cells in 10 runs of 10 (3 at 6 quads, 8 at 12), A/A clean; ci takes about a minute
AB_QUADS, AB_BLOCK_S = 20, 0.025
PYTEST_RECORDED = (0, 1)  # 1: some cells failed, and the results file records them


def preset_name(preset: str) -> str:
    """The name a preset's baseline is filed under: its TOML `name`, or the name given
    (UnsafeNameError if it could not be a folder's name)."""
    path = Path(preset)
    if path.suffix != ".toml":
        return check_name(preset, "preset name")
    try:
        name = tomllib.loads(path.read_text()).get("name", path.stem)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        name = path.stem  # pytest will report the preset's own problem
    return check_name(str(name), f"{path}: the preset's name")


def default_baseline(preset: str) -> Path:
    return BASELINE_DIR / preset_name(preset)


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
    command = suite_command(f"--preset={preset}", f"--results-dir={results_dir}", *pytest_args, python=python)
    if not quiet:
        print("running:", " ".join(command), flush=True)
    done = subprocess.run(command, capture_output=quiet, text=True)
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


def add_ab_arguments(parser) -> None:
    group = parser.add_argument_group("A/B mode (the default; see attrib_core/ab/session.py)")
    group.add_argument("--base", metavar="REV", help="base revision (default: merge-base of HEAD and origin/main)")
    group.add_argument(
        "--candidate-env", action="append", default=[], metavar="K=V", help="environment variable of the candidate"
    )
    group.add_argument("--workers", type=int, default=2, help="worker processes per side (default 2)")
    group.add_argument("--quads", type=int, default=AB_QUADS, help=f"ABBA quads per cell (default {AB_QUADS})")
    group.add_argument(
        "--block-s", type=float, default=AB_BLOCK_S, help=f"target seconds per block (default {AB_BLOCK_S})"
    )


def run_ab(args, th) -> int:
    """Base revision against the working tree, interleaved; report through the one rule."""
    base = ab_sides.SideSpec("A", "base", rev=args.base or ab_sides.default_base())
    candidate = ab_sides.SideSpec("B", "candidate", env=ab_sides.parse_pairs(args.candidate_env, "--candidate-env"))
    ab_sides.resolve_rev(base.rev)
    opts = ab.Options(args.preset, args.workers, args.quads, args.block_s, profile=True)
    session = ab.run_session(base, candidate, opts, args.results_dir)
    out_dir = session["out_dir"]
    files = {s: [p for p in session["files"] if p.name.startswith(s)] for s in "AB"}
    base_df = read_runs(files["A"], "base")
    new_df = read_runs(files["B"], "candidate")
    print(f"A/B session {session['id']}: A = {session['labels']['A']}; B = {session['labels']['B']}")
    for warning in session["noise"]["warnings"]:
        print(f"WARNING: {warning}")
    names = side_names(base_df, new_df, Path(session["labels"]["A"]), out_dir)
    code = report(compare(base_df, new_df, th), th, Path(session["labels"]["A"]), out_dir, args.comment_md, names)
    print(f"A/B session: {len(session['cells'])} cells, {session['blocks']} blocks, {session['wall_s']:.0f} s")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    own, pytest_args = split_pytest_args(sys.argv[1:] if argv is None else argv)
    parser = build_parser(RUN_DIR)
    parser.description = "Compare the working tree with a base revision, A/B on this machine; exit 1 on a regression."
    add_ab_arguments(parser)
    args = parser.parse_args(own)
    th = thresholds_from(args, parser)
    if args.compare and (args.update_baseline or pytest_args):
        parser.error("--compare runs nothing: it takes neither --update-baseline nor pytest arguments")
    if args.processes < 1:
        parser.error(f"--processes {args.processes} is not valid; needs an integer >= 1")
    history = args.baseline is not None or args.update_baseline
    if args.base is not None and (history or args.compare):
        parser.error("--base is the A/B mode: it takes neither --baseline, --update-baseline nor --compare")
    if not history and not args.compare and pytest_args:
        parser.error(
            "pytest arguments (after --) apply to the history mode (--baseline); A/B mode runs no pytest: "
            "use --candidate-env ATTRIB_BENCH_INJECT_MODEL_SLOWDOWN=... for a made slowdown"
        )
    for name in ("workers", "quads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} {getattr(args, name)} is not valid; needs an integer >= 1")
    if not args.block_s > 0:
        parser.error(f"--block-s {args.block_s} is not valid; needs a number > 0")
    if args.comment_md is not None and (args.comment_md.is_dir() or not args.comment_md.parent.is_dir()):
        parser.error(f"--comment-md {args.comment_md} is not valid; needs a file path in an existing folder")
    if args.comment_md is not None and args.update_baseline:
        parser.error("--comment-md writes verdicts: --update-baseline compares nothing")
    try:
        if args.compare:
            return compare_files(*args.compare, th, args.comment_md)
        if not history:
            return run_ab(args, th)
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
                f"attrib-bench regress --preset {args.preset} --update-baseline"
            )
        base = read_runs(run_files(baseline, "baseline"), "baseline")  # before running: a bad baseline fails fast
        results = run_processes(args.preset, args.processes, args.results_dir, pytest_args)
        new = read_runs(results, "new run")
        names = side_names(base, new, baseline, results[0].parent)
        return report(compare(base, new, th), th, baseline, results[0].parent, args.comment_md, names)
    except (RegressError, RegressionInputError, ab_sides.SideError, ab.WorkerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
