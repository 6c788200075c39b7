"""Does step detection work? A real history of this repository, and synthetic histories.

    python -m experiments.history.proof record      rerun the ci preset at past commits (minutes of CPU)
    python -m experiments.history.proof evaluate    steps found in that history, and in identical reruns
    python -m experiments.history.proof synthetic   detection rate and false steps, 50 points, 10% step

record: one git worktree per commit under --worktrees, the `ci` preset run there with this
interpreter (old commits carry their own bench/ and attrib_core/, the results schema is the
same), `--inject-slowdown METHOD=FACTOR` from --inject-from onward; then the newest commit
rerun --noise-runs more times: identical code, so their spread is the between-run noise.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from attrib_core.analysis.history import TIME, TIME_RAW, history_steps, load_history, metrics_of, noise_between_runs
from attrib_core.analysis.steps import PENALTY_PER_LOG_N, Series, detect_steps
from attrib_core.suite import suite_command
from bench import REPO

# The ci preset exists from 9be10c6 on; 60b8ccb is the first commit that applies its thread
# count, so from there on the cells' times are comparable. Oldest first.
COMMITS = (
    "60b8ccb",
    "f4ce44d",
    "94032d2",
    "134e926",
    "b72315b",
    "ad555bb",
    "e88f3e1",
    "a2af966",
    "d845382",
    "3db5506",
)
INJECT_FROM = "ad555bb"
INJECT = "IntegratedGradients=1.5"
MACHINE = "amd-epyc-2c"


def git(*args: str, cwd: Path = REPO) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def run_ci(worktree: Path, out: Path, inject: list[str]) -> None:
    """The ci preset, run in `worktree` (its own code) by this interpreter; results into `out`."""
    command = suite_command("-q", "--preset", "ci")
    command += ["--results-dir", str(out), "--machine-name", MACHINE]
    for value in inject:
        command += ["--inject-slowdown", value]
    subprocess.run(command, cwd=worktree, check=True, stdout=subprocess.DEVNULL)


def record(args: argparse.Namespace) -> None:
    args.out = args.out.resolve()  # the runs' working folder is each commit's worktree
    args.out.mkdir(parents=True, exist_ok=True)
    if args.inject_from not in args.commits:
        sys.exit(f"--inject-from {args.inject_from!r} is not one of --commits: {', '.join(args.commits)}")
    started, injecting = time.monotonic(), False
    plan = [(c, 1) for c in args.commits]
    plan[-1] = (args.commits[-1], 1 + args.noise_runs)
    for commit, times in plan:
        injecting = injecting or commit == args.inject_from
        worktree = args.worktrees / commit
        if not worktree.exists():
            git("worktree", "add", "--detach", str(worktree), commit)
        try:
            for i in range(times):
                run_ci(worktree, args.out, args.inject if injecting else [])
                note = f" (injected {' '.join(args.inject)})" if injecting else ""
                label = f"{commit} run {i + 1}/{times}{note}"
                print(f"{label}: {time.monotonic() - started:.0f} s", flush=True)
        finally:
            git("worktree", "remove", "--force", str(worktree))
    for maps in args.out.glob("*.maps.npz"):
        maps.unlink()  # attribution maps (gallery only): not needed for a history, and large


def evaluate(args: argparse.Namespace) -> None:
    """Steps found per metric in each history folder; the between-run noise of the reruns."""
    pd.set_option("display.width", 200)
    for folder in args.folders:
        df = load_history([folder])
        steps, series = history_steps(df, metrics_of(df))
        slowed = df.loc[df["injected_slowdown"] > 1, ["cell_key", "commit_order"]]
        first = slowed.groupby("cell_key")["commit_order"].min()
        order = dict(zip(df["commit"], df["commit_order"], strict=True))
        steps["expected"] = [
            key in first.index and order[commit] == first[key] and metric in (TIME.name, TIME_RAW.name)
            for key, commit, metric in zip(steps["cell_key"], steps["commit"], steps["metric"], strict=True)
        ]
        n_commits, n_runs = df["commit"].nunique(), df["file"].nunique()
        print(f"\n== {folder}: {n_commits} commits, {n_runs} runs, injected cells {len(first)}")
        for key, at in first.items():
            commit = df.loc[df["commit_order"] == at, "commit"].iloc[0]
            factor = df.loc[df["cell_key"] == key, "injected_slowdown"].max()
            print(f"   injected x{factor:g} from commit {commit[:7]} (#{at}): {key}")
        for metric in (TIME, TIME_RAW):
            mine = steps[steps["metric"] == metric.name]
            found = mine[mine["expected"]]
            others, n_series = int((~mine["expected"]).sum()), int((series["metric"] == metric.name).sum())
            print(f"{metric.name:9s} injected steps {len(found)}/{len(first)}, other steps {others} of {n_series}")
            for _, row in mine.iterrows():
                print(
                    f"   {'expected' if row['expected'] else 'FALSE   '} {row['commit'][:7]} {row['size']:+.1%} "
                    f"[{row['low']:+.1%}, {row['high']:+.1%}] in force {row['in_force']}  {row['cell_key']}"
                )
            noise = noise_between_runs(df, metric)
            if len(noise):
                print(
                    f"   between-run noise (std of log, reruns of one commit): median {noise['noise'].median():.3f}, "
                    f"range {noise['noise'].min():.3f}-{noise['noise'].max():.3f} over {len(noise)} cells"
                )
        other = steps[~steps["metric"].isin([TIME.name, TIME_RAW.name])]
        n_other = int((~series["metric"].isin([TIME.name, TIME_RAW.name])).sum())
        print(f"memory and fidelity: {len(other)} steps over {n_other} series")


def synthetic_trial(rng: np.random.Generator, n: int, at: int, step: float, sigma: float, per_log_n: float):
    """One history of n single-run commits, log-normal noise sigma, a step of `step` at `at` (0: none)."""
    levels = np.where(np.arange(n) >= at, np.log1p(step), 0.0) if step else np.zeros(n)
    values = np.exp(levels + rng.normal(0.0, sigma, n))
    found, _ = detect_steps(Series([str(i) for i in range(n)], [np.array([v]) for v in values]), per_log_n=per_log_n)
    return found


def synthetic(args: argparse.Namespace) -> None:
    """Detection rate and false steps over --trials histories per noise level, and without a step."""
    rng = np.random.default_rng(args.seed)
    at = args.points // 2
    print(f"{args.trials} histories of {args.points} commits, a {args.step:.0%} step at commit {at}")
    print(f"penalty {args.penalty} x ln(n); noise: normal in log(time), sigma as listed")
    print("sigma   found(exact)  found(+-1)  false steps/history  noise-only: histories with a step")
    for sigma in args.sigmas:
        hits = exact = false = 0
        for _ in range(args.trials):
            found = synthetic_trial(rng, args.points, at, args.step, sigma, args.penalty)
            near = [s for s in found if abs(s.index - at) <= 1 and s.size > 0]
            hits += bool(near)
            exact += any(s.index == at for s in near)
            false += len(found) - min(len(near), 1)
        quiet = sum(bool(synthetic_trial(rng, args.points, 0, 0.0, sigma, args.penalty)) for _ in range(args.trials))
        print(
            f"{sigma:<7.3f} {exact / args.trials:>11.1%}  {hits / args.trials:>10.1%}  "
            f"{false / args.trials:>19.3f}  {quiet / args.trials:.1%}",
            flush=True,
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m experiments.history.proof", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="rerun the ci preset at past commits (about 40 s per run)")
    rec.add_argument("--commits", nargs="+", default=list(COMMITS), help="oldest first")
    rec.add_argument("--inject-from", default=INJECT_FROM, help="first commit run with --inject-slowdown")
    rec.add_argument("--inject", nargs="+", default=[INJECT], help="METHOD=FACTOR, each passed to --inject-slowdown")
    rec.add_argument("--noise-runs", type=int, default=4, help="extra identical runs of the newest commit")
    rec.add_argument("--worktrees", type=Path, default=Path("/tmp/attrib-history"))
    rec.add_argument("--out", type=Path, default=REPO / "experiments" / "history" / "history-proof")
    ev = sub.add_parser("evaluate", help="steps found in recorded histories")
    ev.add_argument("folders", nargs="*", type=Path, default=[REPO / "experiments" / "history" / "history-proof"])
    syn = sub.add_parser("synthetic", help="detection rate and false steps on synthetic histories")
    syn.add_argument("--trials", type=int, default=200)
    syn.add_argument("--points", type=int, default=50)
    syn.add_argument("--step", type=float, default=0.10, help="relative step size (default 0.10)")
    syn.add_argument("--sigmas", type=float, nargs="+", default=[0.02, 0.03, 0.05], help="noise: std of log(time)")
    syn.add_argument("--penalty", type=float, default=PENALTY_PER_LOG_N)
    syn.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    {"record": record, "evaluate": evaluate, "synthetic": synthetic}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
