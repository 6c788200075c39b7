"""Does the regression check work? Detection and false-alarm rates, measured.

Records a baseline of the CI preset, then runs it N times (default 10) with no injection
and with one method made 2x and 1.25x slower (`--inject-slowdown`), interleaved so that
drift in the machine hits every kind of run alike. Each run is what `bench.regress` does:
--processes pytest processes (default 2) whose rounds are pooled. Each run is compared with
the baseline under the default rule and under alternatives (one process only, the median
instead of the minimum, other normalisations), so the choice of rule is measured too:

    python -m bench.regress_proof                     N=10, IntegratedGradients, 2x and 1.25x
    python -m bench.regress_proof --evaluate-only     re-score the runs already in --work-dir

A run "detects" an injection when every cell of the slowed method is flagged; "really xF"
is the slowdown the injection actually caused (the slowed cells' time over their median
in identical runs; the spin-wait also slows the call itself, so F exceeds the nominal
factor). A false alarm is any cell flagged (time, memory, fidelity or failure) in an
identical rerun, or any other cell in an injected run; the goal is <= 5% of the cells.
It also prints the normalised time ratio's 95th percentile and maximum over identical
reruns: the noise that the time factor must clear.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from attrib_core.analysis.regression import Comparison, Thresholds, compare
from attrib_core.analysis.results import results_files
from bench.regress import REPO, RegressError, read_runs, run_processes

# (label, processes used: "all" or 1, threshold changes): the default rule first
VARIANTS = (
    ("default: min, run-median", "all", {}),
    ("median, run-median", "all", {"statistic": "median"}),
    ("min, calibration", "all", {"normalisation": "calibration"}),
    ("min, none", "all", {"normalisation": "none"}),
    ("1 process: min, run-median", 1, {}),
    ("1 process: median, run-median", 1, {"statistic": "median"}),
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.regress_proof", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="runs of each kind (default 10)")
    parser.add_argument("--method", default="IntegratedGradients", help="the method slowed down")
    parser.add_argument("--factors", type=float, nargs="+", default=[2.0, 1.25], help="injected slowdowns")
    parser.add_argument("--preset", default="ci")
    parser.add_argument("--processes", type=int, default=2, help="pytest processes per run, as bench.regress")
    parser.add_argument("--work-dir", type=Path, default=REPO / "results" / "regress_proof")
    parser.add_argument("--evaluate-only", action="store_true", help="score the runs in --work-dir; run nothing")
    parser.add_argument("--time-factor", type=float, default=Thresholds().time_factor)
    parser.add_argument("--alpha", type=float, default=Thresholds().alpha)
    args = parser.parse_args(argv)
    if args.runs < 1 or args.processes < 1 or any(f <= 1 for f in args.factors):
        parser.error(f"--runs {args.runs} and --processes {args.processes} must be >= 1, --factors {args.factors} > 1")
    return args


def kind_dir(work: Path, factor: float) -> Path:
    return work / ("identical" if factor == 1 else f"x{factor:g}")


def record_runs(args: argparse.Namespace) -> None:
    started = time.monotonic()
    run_processes(args.preset, args.processes, args.work_dir / "baseline", quiet=True)
    print(f"baseline recorded ({time.monotonic() - started:.0f} s)", flush=True)
    for i in range(args.runs):
        for factor in (1.0, *args.factors):
            inject = [] if factor == 1 else ["--inject-slowdown", f"{args.method}={factor:g}"]
            files = run_processes(args.preset, args.processes, kind_dir(args.work_dir, factor), inject, quiet=True)
            print(f"run {i + 1}/{args.runs} x{factor:g}: {files[0].parent.name} ({time.monotonic() - started:.0f} s)")


def runs_in(folder: Path, processes: int | str) -> list[pd.DataFrame]:
    """Each run (a subfolder of results files) as a table, of its first `processes` files."""
    runs = []
    for run in sorted(p for p in folder.glob("*") if p.is_dir()):
        files = results_files(run)
        if files:
            runs.append(read_runs(files if processes == "all" else files[:processes], str(run)))
    return runs


def flagged(comparison: Comparison) -> set[str]:
    return {c.cell_key for c in comparison.failing}


def timed_cells(comparison: Comparison) -> dict[str, float]:
    return {c.cell_key: c.ratio for c in comparison.checks if c.kind == "time" and c.ratio is not None}


def score(args: argparse.Namespace, label: str, processes: int | str, thresholds: Thresholds) -> dict:
    """Detections and false alarms of one rule over the runs in the work dir."""
    baselines = runs_in(args.work_dir / "baseline", processes)
    if not baselines:
        raise RegressError(f"no baseline run in {args.work_dir / 'baseline'}; run without --evaluate-only first")
    base = baselines[-1]
    slowed = set(base.loc[base["method"] == args.method, "cell_key"])
    if not slowed:
        raise RegressError(f"the preset has no {args.method} cell; methods: {', '.join(sorted(set(base['method'])))}")
    out: dict = {"rule": label, "cells": base["cell_key"].nunique(), "slowed_cells": len(slowed)}
    identical = runs_in(kind_dir(args.work_dir, 1.0), processes)
    for factor in (1.0, *args.factors):
        runs = identical if factor == 1 else runs_in(kind_dir(args.work_dir, factor), processes)
        detected = slowed_flagged = false_alarms = checked = 0
        ratios: list[float] = []
        kinds: dict[str, int] = {}
        for run in runs:
            comparison = compare(base, run, thresholds)
            hits = flagged(comparison)
            others = {c.cell_key for c in comparison.checks} - (slowed if factor != 1 else set())
            if factor != 1:
                detected += slowed <= hits
                slowed_flagged += len(slowed & hits)
            else:
                ratios += list(timed_cells(comparison).values())
            false_alarms += len(hits & others)
            checked += len(others)
            for check in comparison.failing:
                if check.cell_key in others:
                    kinds[check.kind] = kinds.get(check.kind, 0) + 1
        out[f"x{factor:g}"] = {
            "runs": len(runs),
            "detected_runs": detected if factor != 1 else None,
            "slowed_cells_flagged": slowed_flagged if factor != 1 else None,
            "false_alarms": false_alarms,
            "cells_checked": checked,
            "false_alarm_kinds": kinds,
        }
        if factor != 1:  # what the injection really did: slowed cells' time over their identical-run time
            effective = [
                _statistic(run, key, thresholds.statistic) / _typical(identical, key, thresholds.statistic)
                for run in runs
                for key in slowed
            ]
            out[f"x{factor:g}"]["effective_factor"] = float(np.median(effective)) if effective else None
        if factor == 1 and ratios:  # the noise a time factor has to stay above
            out["identical_ratio"] = {f"p{q}": float(np.percentile(ratios, q)) for q in (50, 95, 99)}
            out["identical_ratio"]["max"] = float(np.max(ratios))
    return out


def _statistic(run: pd.DataFrame, key: str, statistic: str) -> float:
    pooled = np.concatenate([np.asarray(s, dtype=float) for s in run.loc[run["cell_key"] == key, "samples_s"]])
    return float(np.min(pooled) if statistic == "min" else np.median(pooled))


def _typical(runs: list[pd.DataFrame], key: str, statistic: str) -> float:
    return float(np.median([_statistic(run, key, statistic) for run in runs])) if runs else float("nan")


def print_scores(scores: list[dict], args: argparse.Namespace, thresholds: Thresholds) -> None:
    print(
        f"\n{args.method} slowed in {scores[0]['slowed_cells']} of {scores[0]['cells']} cells; "
        f"time factor {thresholds.time_factor}, alpha {thresholds.alpha}"
    )
    factors = [f"x{f:g}" for f in args.factors]
    header = ["rule", *(f"{f} detected" for f in factors), "false alarms (identical)"]
    header += ["false alarms (other cells, injected runs)", "identical ratio p95 / max"]
    rows = []
    for s in scores:
        injected = [s[f] for f in factors]
        other_alarms = sum(i["false_alarms"] for i in injected)
        other_checked = sum(i["cells_checked"] for i in injected)
        same = s["x1"]
        noise = s.get("identical_ratio", {})
        rows.append(
            [
                s["rule"],
                *(
                    f"{i['detected_runs']}/{i['runs']} runs ({i['slowed_cells_flagged']} cells; "
                    f"really x{i['effective_factor']:.2f})"
                    for i in injected
                ),
                f"{same['false_alarms']}/{same['cells_checked']} ({_pct(same)}) {same['false_alarm_kinds'] or ''}",
                f"{other_alarms}/{other_checked}",
                f"{noise.get('p95', float('nan')):.3f} / {noise.get('max', float('nan')):.3f}",
            ]
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _pct(entry: dict) -> str:
    return f"{entry['false_alarms'] / entry['cells_checked']:.1%}" if entry["cells_checked"] else "n/a"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    try:
        if not args.evaluate_only:
            if args.work_dir.exists() and any(args.work_dir.rglob("*.json")):
                raise RegressError(f"{args.work_dir} already holds runs: remove it, or pass --evaluate-only")
            record_runs(args)
        chosen = Thresholds(time_factor=args.time_factor, alpha=args.alpha)
        scores = [score(args, label, n, replace(chosen, **changes)) for label, n, changes in VARIANTS]
    except (RegressError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_scores(scores, args, chosen)
    summary = args.work_dir / "summary.json"
    summary.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "scores": scores}, indent=2))
    print(f"\n{time.monotonic() - started:.0f} s; summary: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
