"""`attrib-bench device-check [--budget-s S] [--out DIR] [--dry-run]`: prove the harness on this
machine's GPU within a time budget, in one command.

It runs the repository's CUDA tests, checks the timer against CUDA events and peak memory against a
known allocation, runs a GPU-sized slice of the `full` preset through the suite (a normal results
file, after one deliberate out-of-memory cell), makes one deliberate out-of-memory and then runs on,
and measures the out-of-memory frontier of each batching knob beside tune's memory model. Each
finished step is one line of DIR/<UTC time>/journal.jsonl, so a kill keeps what was measured; the
end writes summary.json and summary.md there (`--summarise DIR/<UTC time>` writes them for a run
that was killed). A step starts only if the budget left can hold its estimate; the summary names
what was skipped.

--dry-run takes the same path on the CPU with tiny workloads and an imposed memory cap standing in
for the device's memory (labelled so in every line): for testing the check, never a GPU result.

Exit status: 0 every step ran as expected (skipped steps are listed, not failed); 1 a step failed,
the deliberate out-of-memory did not happen, or the run was stopped before its last step; 2 bad
input (no CUDA without --dry-run, a bad budget or step name); 3 an internal error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from attrib_core.exits import BadInputError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="attrib-bench device-check", description=__doc__.split("\n\n")[0])
    p.add_argument("--budget-s", type=float, default=480.0, help="wall-time budget of the whole check (default 480)")
    p.add_argument("--out", default="results/device-check", help="a folder; each run writes a new <UTC time>/ in it")
    p.add_argument("--device", default="cuda", help="the CUDA device to check (default cuda)")
    p.add_argument("--dry-run", action="store_true", help="the same path on the CPU, tiny sizes, an imposed memory cap")
    p.add_argument("--memory-budget", help="the frontier's stated budget, e.g. 16GiB (default 16GiB; dry run 1MiB)")
    p.add_argument("--dry-cap", help="dry run: the memory cap standing in for the device's memory (default 4MiB)")
    p.add_argument("--only", help="comma-separated step names to run (default: all); --list shows them")
    p.add_argument("--list", action="store_true", help="print the steps with their estimates and exit")
    p.add_argument(
        "--summarise",
        metavar="RUN_DIR",
        help="write the summary of an earlier run from its journal alone (a run that was killed) and exit",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    from attrib_core import measure
    from attrib_core.device_check import plan
    from attrib_core.device_check.oom import DRY_RUN_LABEL
    from attrib_core.device_check.steps import JOURNAL_NAME, Budget, StepJournal, run_steps
    from attrib_core.devices import check_device
    from attrib_core.fileio import new_run_dir
    from attrib_core.tune.memory import MemoryBudgetError, parse_bytes

    if args.summarise:
        return write_summary(Path(args.summarise))
    if not args.budget_s > 0:
        raise BadInputError(f"--budget-s {args.budget_s!r} is not valid; needs a number of seconds > 0")
    device = "cpu" if args.dry_run else args.device
    if args.list:  # no device needed: the plan for a GPU can be read on a laptop
        for step in plan.steps(plan.Settings(device, Path(args.out), 0, None)):
            print(f"{step.name:<32} about {step.estimate_s:.0f} s")
        return 0
    if not args.dry_run:
        if not device.startswith("cuda"):
            raise BadInputError(f"--device {device!r} is not a CUDA device; valid: cuda, cuda:N (or --dry-run)")
        try:
            check_device(device)
        except ValueError as exc:
            raise BadInputError(f"{exc} (for the CPU stand-in run use --dry-run)") from None
    try:
        default_budget = plan.DRY_BUDGET_BYTES if args.dry_run else plan.GPU_BUDGET_BYTES
        memory_budget = parse_bytes(args.memory_budget) if args.memory_budget else default_budget
        cap = (parse_bytes(args.dry_cap) if args.dry_cap else plan.DRY_CAP_BYTES) if args.dry_run else None
    except MemoryBudgetError as exc:
        raise BadInputError(str(exc)) from None
    if args.dry_cap and not args.dry_run:
        raise BadInputError("--dry-cap is for --dry-run only; on a GPU the device's own memory is the limit")

    settings = plan.Settings(device, Path(args.out), memory_budget, cap)
    listed = plan.steps(settings)
    if args.only:
        wanted = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = [name for name in wanted if name not in {step.name for step in listed}]
        if unknown:
            raise BadInputError(f"--only: unknown step(s) {unknown}; valid: {', '.join(s.name for s in listed)}")
        listed = [step for step in listed if step.name in wanted]

    budget = Budget(args.budget_s)
    run_dir = new_run_dir(Path(args.out))
    settings = plan.Settings(device, run_dir, memory_budget, cap, settings.cuda_test_paths)
    listed = [step for step in plan.steps(settings) if step.name in {s.name for s in listed}]
    journal = StepJournal(run_dir / JOURNAL_NAME)
    environment = measure.environment()
    header = {
        "mode": "dry run on the CPU (not a GPU result)" if args.dry_run else "GPU",
        "device": device,
        "device_name": "cpu" if args.dry_run else environment["gpus"][int(device.partition(":")[2] or 0)]["name"],
        "budget_s": args.budget_s,
        "memory_budget_bytes": memory_budget,
        "dry_run_cap_bytes": cap,
        "cap_note": f"{DRY_RUN_LABEL}: a cap of {cap} B" if cap is not None else None,
        "steps": [step.name for step in listed],
        "environment": environment,
    }
    journal.append({"header": header})
    print(f"device check ({header['mode']}) -> {run_dir}")

    def show(line: dict) -> None:
        note = line.get("error") or line.get("reason") or ""
        print(f"  {line['step']:<32} {line['status']:<8} {note[:120]}", flush=True)

    run_steps(listed, budget, journal, on_line=show)
    return write_summary(run_dir)


def write_summary(run_dir: Path) -> int:
    """summary.json and summary.md of `run_dir` from its journal; the check's exit status."""
    from attrib_core.device_check.steps import JOURNAL_NAME, StepJournal
    from attrib_core.device_check.summary import render, summarise
    from attrib_core.fileio import atomic_write

    journal = StepJournal(run_dir / JOURNAL_NAME)
    lines = journal.read()
    if not any("header" in line for line in lines):
        raise BadInputError(f"{journal.path}: no device-check journal there (a run folder holds {JOURNAL_NAME})")
    summary = summarise(lines)
    atomic_write(run_dir / "summary.json", json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
    text = render(summary, lines)
    atomic_write(run_dir / "summary.md", text)
    print(text)
    return summary["exit_status"]


if __name__ == "__main__":
    sys.exit(main())
