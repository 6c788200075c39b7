"""Issue 10's proof for A/B verdicts: false alarms of A/A runs, power against made slowdowns,
real differences found with their size, and the wall time of an A/B session.

    python -m experiments.ab.proof collect     run the A/B sessions (skips those already done)
    python -m experiments.ab.proof analyse     apply the comparison rule; write ab-proof/ab_proof.md + .png here

`collect` freezes the code first: it makes one `git worktree` of HEAD and runs every session
from it, both sides on that tree, so edits made while it runs change nothing. Each session
goes to experiments/ab/ab-proof/runs/<name>/ (the results files, the driver's output, done.json with
the command and wall time); a session without done.json is run again. Sessions are taken
round-robin over the conditions, so a partial collection still covers each of them.

Conditions (preset ci, 11 cells, sides the same code unless stated):
  aa-NN           A/A, nothing changed
  all-F-NN        side B's model F times slower in every cell (ATTRIB_BENCH_INJECT_MODEL_SLOWDOWN=F)
  ig-F-NN         the same, IntegratedGradients cells only (their cells slow by F x the model's share)
  igcall-F-NN     IntegratedGradients' whole attribute call F times slower: the method's own code
                  got slower (ATTRIB_BENCH_INJECT_METHOD_SLOWDOWN), its cells exactly F
  threads-1v2     A threads=1, B threads=2 (a real difference)
  fp32vbf16       A fp32, B bf16 (a real difference)
  regress-wall    one `attrib-bench regress --base <code>` A/B run (what `nox -s regress` runs), timed
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from attrib_core.ab.regress import AB_QUADS
from bench import REPO

OUT = REPO / "experiments" / "ab" / "ab-proof"
RUNS = OUT / "runs"
FACTORS = ("1.05", "1.1", "1.25", "2")
REPEATS = 10
INJECT = "ATTRIB_BENCH_INJECT_MODEL_SLOWDOWN"
INJECT_METHOD = "ATTRIB_BENCH_INJECT_METHOD_SLOWDOWN"
QUADS = AB_QUADS  # what `nox -s regress` uses; --quads trades session time for power
SESSION_ARGS = ("--preset", "ci", "--workers", "2", "--block-s", "0.025", "--no-profile")


def conditions() -> dict[str, list[str]]:
    """Condition name -> the bench.ab arguments of one of its sessions."""
    out: dict[str, list[str]] = {"aa": []}
    for factor in FACTORS:
        out[f"all-{factor}"] = ["--candidate-env", f"{INJECT}={factor}"]
    for factor in FACTORS:
        out[f"ig-{factor}"] = ["--candidate-env", f"{INJECT}=IntegratedGradients={factor}"]
    for factor in FACTORS:
        out[f"igcall-{factor}"] = ["--candidate-env", f"{INJECT_METHOD}=IntegratedGradients={factor}"]
    return out


REAL = {
    "threads-1v2": ["--base-set", "threads=1", "--candidate-set", "threads=2"],
    "fp32vbf16": ["--base-set", "precision=fp32", "--candidate-set", "precision=bf16"],
}


PRIORITY = ("aa", "all-1.1", "all-2", "igcall-1.1", "igcall-2", "ig-1.1", "ig-2")  # the targets: alarms, 1.10x, 2x


def planned_sessions() -> list[tuple[str, list[str]]]:
    """(session name, arguments): the real differences, then round-robin over the conditions
    with targets (PRIORITY), then over the others; a partial collection covers the targets first."""
    sessions = list(REAL.items())
    every = conditions()
    for group in (PRIORITY, [c for c in every if c not in PRIORITY]):
        for i in range(1, REPEATS + 1):
            sessions += [(f"{name}-{i:02d}", every[name]) for name in group]
    return sessions


REGRESS_WALL = "regress-wall"  # one `attrib-bench regress --base <code>` A/B run, for its wall time


def frozen_tree() -> tuple[Path, str]:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
    sha = commit.stdout.strip()
    tree = Path(tempfile.gettempdir()) / f"attrib-bench-ab-proof-{sha[:12]}"
    if not (tree / "bench" / "ab.py").exists():
        shutil.rmtree(tree, ignore_errors=True)
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), sha], cwd=REPO, check=True)
    return tree, sha


def collect(only: Sequence[str] = (), runs: Path = RUNS, quads: int = QUADS) -> int:
    tree, sha = frozen_tree()
    print(f"code: {sha[:12]} (frozen in {tree}), {quads} quads per cell", flush=True)
    quad_args = ["--quads", str(quads)]
    regress = [
        sys.executable,
        "-m",
        "attrib_core.ab.regress",
        "--base",
        sha,
        *quad_args,
    ]  # what `nox -s regress` runs on a PR
    plan = planned_sessions()
    plan.insert(len(REAL), (REGRESS_WALL, None))  # early: a partial collection still has its wall time
    for name, args in plan:
        if only and not any(name.startswith(o) for o in only):
            continue
        folder = runs / name
        if (folder / "done.json").exists():
            continue
        shutil.rmtree(folder, ignore_errors=True)  # a session cut short is run again from scratch
        folder.mkdir(parents=True)
        runner = "attrib_core.ab.session" if (tree / "attrib_core" / "ab" / "session.py").exists() else "bench.ab"
        command = [sys.executable, "-m", runner, *SESSION_ARGS, *quad_args, *args] if args is not None else regress
        command += ["--results-dir", str(folder)]
        started = time.monotonic()
        load_before = os.getloadavg()
        with open(folder / "output.txt", "w") as log:
            done = subprocess.run(command, cwd=tree, stdout=log, stderr=subprocess.STDOUT)
        wall_s = time.monotonic() - started
        if done.returncode not in (0, 1):
            print(f"{name}: bench.ab exit {done.returncode}; see {folder / 'output.txt'}", flush=True)
            continue
        record = {
            "command": command,
            "code": sha,
            "wall_s": wall_s,
            "load_before": load_before,
            "load_after": os.getloadavg(),
            "exit": done.returncode,
        }
        (folder / "done.json").write_text(json.dumps(record, indent=1))
        print(f"{name}: {wall_s:.0f} s, load {load_before[0]:.1f} -> {record['load_after'][0]:.1f}", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.ab.proof", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="phase", required=True)
    c = sub.add_parser("collect", help="run the A/B sessions not done yet")
    c.add_argument("--only", action="append", default=[], help="only sessions whose name starts with this")
    c.add_argument("--quads", type=int, default=QUADS, help=f"ABBA quads per cell (default {QUADS}, as regress)")
    a = sub.add_parser("analyse", help="verdicts, table and figure from the collected sessions")
    for phase in (c, a):  # a second collection (another machine, another day) beside the first
        phase.add_argument("--out", type=Path, default=OUT, help="the proof folder (default experiments/ab/ab-proof)")
    args = parser.parse_args(argv)
    args.out = args.out.resolve()  # sessions run in the frozen tree: a relative folder would land there
    if args.phase == "collect":
        if args.quads < 3:
            parser.error(f"--quads {args.quads}: the paired rule needs at least 3 quads")
        return collect(args.only, args.out / "runs", args.quads)
    from experiments.ab.analysis import analyse

    return analyse(args.out / "runs", args.out)


if __name__ == "__main__":
    sys.exit(main())
