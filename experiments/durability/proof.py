"""Proof that a killed sweep loses no finished cell and resumes to the same cell set.

    python -m experiments.durability.proof                 smoke preset, 10 kills at random moments
    python -m experiments.durability.proof --kills 3 --preset ci --seed 1

1. One uninterrupted run of the preset: the reference cell set and statuses.
2. A second run, SIGKILLed (the whole process group, as the OOM killer or a CI timeout
   would) at a random moment, then resumed with --resume; killed again at a random moment
   of the resumed run, and so on `--kills` times; the last resume runs to the end. After
   every kill the journal must still hold every cell it held before (nothing finished is
   lost); at the end the results file must hold exactly the reference cell set, with the
   same statuses.
3. The cost of durability: the time to append and fsync one journal line, measured on
   the finished run's own records.
Prints a table and exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from attrib_core import journal, schema
from attrib_core.analysis.results import load_results
from attrib_core.formatting import seconds
from attrib_core.suite import suite_command
from bench import REPO


def bench_command(preset: str, out: Path, *extra: str) -> list[str]:
    pytest = suite_command("-q")
    return [*pytest, f"--preset={preset}", f"--results-dir={out}", "--machine-name=proof", *extra]


def finished_keys(out: Path) -> set[str]:
    """Cells safe on disk: in the journal, or (once the run completed and removed its journal)
    in the results file."""
    found = list(out.glob(f"*{journal.SUFFIX}"))
    if found:
        return journal.read(found[0]).done_keys()
    files = list(out.glob("*.json"))
    return set(cells_of(out)) if files else set()


def cells_of(out: Path) -> dict[str, str]:
    df = load_results(sorted(out.glob("*.json")))
    return dict(zip(df["cell_key"], df["status"], strict=True))


def run_to_end(preset: str, out: Path, *extra: str) -> float:
    started = time.perf_counter()
    subprocess.run(bench_command(preset, out, *extra), cwd=REPO, capture_output=True, check=False)
    return time.perf_counter() - started


def kill_at(preset: str, out: Path, after_s: float, *extra: str) -> bool:
    """Start a run, SIGKILL its process group after `after_s`; False if it finished first."""
    proc = subprocess.Popen(
        bench_command(preset, out, *extra),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        proc.wait(timeout=after_s)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def journal_append_cost(records: list[dict], folder: Path, repeats: int = 200) -> list[float]:
    """Seconds to append + fsync one cell line, for real records, `repeats` times."""
    path = folder / f"cost{journal.SUFFIX}"
    log = journal.Journal.create(path, {"results_name": "cost.json"})
    times = []
    for i in range(repeats):
        record = records[i % len(records)]
        started = time.perf_counter()
        log.add_cell(record, None)
        times.append(time.perf_counter() - started)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.durability.proof", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="smoke")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--startup-s", type=float, default=8.0, help="no kill before this (imports, model loads)")
    parser.add_argument("--work-dir", type=Path, default=None, help="keep the runs here (default: a temp folder)")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="durability-"))
    reference_dir, killed_dir = work / "uninterrupted", work / "killed"

    wall_s = run_to_end(args.preset, reference_dir)
    reference = cells_of(reference_dir)
    print(f"uninterrupted: {len(reference)} cells in {wall_s:.0f} s -> {reference_dir}")

    failures, rows, held = [], [], set()
    for kill in range(1, args.kills + 1):
        # after start-up (imports, model loads: no cell can finish before), somewhere in what is
        # left of the sweep: a resumed run has less to do
        remaining = 1 - len(held) / len(reference)
        after = args.startup_s + rng.uniform(0, 0.7 * wall_s * remaining)
        extra = ("--resume",) if kill > 1 else ()
        killed = kill_at(args.preset, killed_dir, after, *extra)
        now = finished_keys(killed_dir)
        lost = held - now
        rows.append((kill, after, killed, len(held), len(now), len(lost)))
        if lost:
            failures.append(f"kill {kill}: {len(lost)} finished cells lost, e.g. {sorted(lost)[0]}")
        held = now
        if not killed:
            print(f"kill {kill}: the run finished before {after:.1f} s; no more kills")
            break
    if list(killed_dir.glob(f"*{journal.SUFFIX}")):
        run_to_end(args.preset, killed_dir, "--resume")
    resumed = cells_of(killed_dir)

    print(f"\n{'kill':>4}  {'at_s':>6}  {'killed':>6}  {'cells_before':>12}  {'cells_after':>11}  {'lost':>4}")
    for kill, after, killed, before, now, lost in rows:
        print(f"{kill:>4}  {after:>6.1f}  {killed!s:>6}  {before:>12}  {now:>11}  {lost:>4}")
    if set(resumed) != set(reference):
        missing, extra = set(reference) - set(resumed), set(resumed) - set(reference)
        failures.append(f"cell sets differ: {len(missing)} missing, {len(extra)} extra")
    differing = [k for k in set(reference) & set(resumed) if reference[k] != resumed[k]]
    if differing:
        failures.append(f"{len(differing)} cells changed status, e.g. {differing[0]}")
    data = json.loads(next(killed_dir.glob("*.json")).read_text())
    resumes = data["machine_info"]["attrib_bench"]["run"]["resumed"]
    print(f"\nresumed run: {len(resumed)} cells (reference {len(reference)}), resumed {len(resumes)} times")

    records = schema.records(schema.read(next(reference_dir.glob("*.json"))))
    with tempfile.TemporaryDirectory(dir=work) as folder:
        costs = journal_append_cost(records, Path(folder))
    sizes = [len(json.dumps(r)) for r in records]
    print(
        f"journal append + fsync per cell: median {seconds(statistics.median(costs))}, "
        f"p90 {seconds(sorted(costs)[int(0.9 * len(costs))])}, over {len(costs)} appends; "
        f"record size median {statistics.median(sizes) / 1024:.1f} KiB"
    )
    for failure in failures:
        print(f"FAILED: {failure}")
    print("all checks passed" if not failures else f"{len(failures)} checks failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
