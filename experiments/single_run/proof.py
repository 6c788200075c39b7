"""Proof that one run per side is enough for `compare`: single runs made in passes over their
sweep give verdicts that stay quiet on identical code and find a real difference with its size.

    python -m experiments.single_run.proof                       smoke preset's cells, 3 passes
    python -m experiments.single_run.proof --passes 2 --repeats 4 --out experiments/single_run/out

Runs, interleaved on this machine (A = threads 1, B = threads 2, the same cells):
A1, B1, A2, B2, ... (`--repeats` of each). Then:
1. A/A: every pair of A runs compared by the one timing rule (attrib_core.analysis.timing_rule),
   one file per side; the share of cells called slower or faster must be at most 5%.
2. threads: each B run against the A run before it; the run-level speedup with its interval,
   and how many cells are found faster, against the speedup seen in the medians.
Writes summary.json and a markdown table beside the runs; exits 1 if the A/A share is above 5%.
Timing only: fidelity is off, so the runs are short.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np

from attrib_core.analysis import timing_rule
from attrib_core.analysis.results import load_results
from attrib_core.suite import suite_command
from attrib_core.sweep import PRESET_DIR

A_A_LIMIT = 0.05  # the share of cells an A/A comparison may call different


def preset_text(base: str, passes: int, threads: int) -> str:
    """The base preset's sweeps with `passes` and `threads` set, fidelity off."""
    source = tomllib.loads((PRESET_DIR / f"{base}.toml").read_text())
    timing = {**source.get("timing", {}), "passes": passes, "threads": threads}
    lines = [f'name = "single-run-t{threads}"', "[timing]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in timing.items()]
    lines += ["[fidelity]", "metrics = []"]
    for group in source["sweep"]:
        lines.append("[[sweep]]")
        knobs = group.get("knobs", {})
        lines += [f"{k} = {json.dumps(v)}" for k, v in group.items() if k != "knobs"]
        if knobs:
            lines.append("[sweep.knobs]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in knobs.items()]
    return "\n".join(lines) + "\n"


def run(preset: Path, out: Path, label: str) -> Path:
    before = set(out.glob("*.json"))
    command = [*suite_command("-q"), f"--preset={preset}", f"--results-dir={out}", f"--machine-name={label}"]
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        sys.exit(f"the run {label} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    (written,) = set(out.glob("*.json")) - before
    return written


def verdicts(a: Path, b: Path) -> timing_rule.TimingResult:
    return timing_rule.compare_timing(load_results([a]), load_results([b]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="smoke", help="a shipped preset whose cells are used (default smoke)")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side (default 3)")
    parser.add_argument("--out", type=Path, default=Path("experiments/single_run/out"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    presets = {}
    for threads in (1, 2):
        presets[threads] = args.out / f"single-run-t{threads}.toml"
        presets[threads].write_text(preset_text(args.preset, args.passes, threads))
    runs: dict[int, list[Path]] = {1: [], 2: []}
    for i in range(args.repeats):
        for threads in (1, 2):
            runs[threads].append(run(presets[threads], args.out, f"t{threads}-run{i + 1}"))
            print(f"ran threads={threads} #{i + 1}: {runs[threads][-1].name}", flush=True)

    a_a = []
    for a, b in itertools.combinations(runs[1], 2):
        result = verdicts(a, b)
        called = [key for key, c in result.cells.items() if c.verdict in (timing_rule.SLOWER, timing_rule.FASTER)]
        a_a.append(
            {
                "A": a.name,
                "B": b.name,
                "cells": len(result.cells),
                "different": len(called),
                "which": called,
                "run_level": result.run_level.verdict,
                "run_level_ratio": result.run_level.ratio,
            }
        )
    threads = []
    for a, b in zip(runs[1], runs[2], strict=True):
        result = verdicts(a, b)
        cells = list(result.cells.values())
        faster = sum(c.verdict == timing_rule.FASTER for c in cells)
        slower = sum(c.verdict == timing_rule.SLOWER for c in cells)
        level = result.run_level
        medians = np.exp(np.mean([np.log(c.base_s / c.new_s) for c in cells]))
        threads.append(
            {
                "A": a.name,
                "B": b.name,
                "cells": len(cells),
                "faster": faster,
                "slower": slower,
                "speedup": 1 / level.ratio,
                "interval": [1 / level.high, 1 / level.low],
                "run_level": level.verdict,
                "speedup_of_the_times": float(medians),
            }
        )
    share = sum(r["different"] for r in a_a) / max(sum(r["cells"] for r in a_a), 1)
    summary = {
        "preset": args.preset,
        "passes": args.passes,
        "repeats": args.repeats,
        "a_a": a_a,
        "a_a_share_called_different": share,
        "threads": threads,
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    rows = ["| comparison | cells | called different | run level |", "|---|---|---|---|"]
    rows += [
        f"| A/A {r['A'][:24]} vs {r['B'][:24]} | {r['cells']} | {r['different']} | {r['run_level']} "
        f"({1 / r['run_level_ratio']:.3f}x) |"
        for r in a_a
    ]
    rows += [
        f"| threads 2 vs 1: {r['B'][:24]} | {r['cells']} | {r['faster']} faster, {r['slower']} slower | "
        f"{r['run_level']}: {r['speedup']:.2f}x [{r['interval'][0]:.2f}, {r['interval'][1]:.2f}] "
        f"(times: {r['speedup_of_the_times']:.2f}x) |"
        for r in threads
    ]
    (args.out / "summary.md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))
    print(f"A/A: {share:.1%} of cells called different (limit {A_A_LIMIT:.0%})")
    return 0 if share <= A_A_LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
