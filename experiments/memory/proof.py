"""Can a cell's first call stand in for the separate memory call? Its peak against a later call's.

Reading peak memory from each cell's first (untimed) call would save one call per cell. That
holds only if the first call allocates what later calls do: a one-time allocation (hooks set
up once, a buffer built lazily) would show in the first call alone. On this machine it does
not hold (docs/measurements/first-answer.md), so the suite keeps its separate memory call.

    python -m experiments.memory.proof --preset smoke --out experiments/memory/out

For every CPU cell of the preset: prepare it, read the first call's peak (as the suite does), then
the peak of a second, separate call (as the suite did before). Writes summary.json and summary.md
with the ratio per cell; exits 1 if any cell's two peaks differ by more than 1%.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from attrib_core import measure
from attrib_core.run import NotApplicable, prepare
from attrib_core.sweep import PRESET_DIR, cell_key, load_preset

TOLERANCE = 0.01  # allocations are deterministic for a given call: any real difference is a one-time buffer


def measure_cell(config) -> dict:
    prepared = prepare(config)
    call = measure.synchronized(prepared, config.device)
    first = measure.peak_memory(call, config.device)
    later = measure.peak_memory(call, config.device)
    ratio = first.peak_bytes / later.peak_bytes if later.peak_bytes else float("nan")
    return {"first_call_peak_bytes": first.peak_bytes, "later_call_peak_bytes": later.peak_bytes, "ratio": ratio}


def write_summary(preset: str, rows: dict[str, dict], out: Path) -> dict[str, dict]:
    """summary.json and summary.md, the cells whose peaks differ first; returns those cells."""
    measured = {k: r for k, r in rows.items() if "ratio" in r}
    off = {k: r for k, r in measured.items() if abs(r["ratio"] - 1) > TOLERANCE}
    summary = {"preset": preset, "cells": len(rows), "measured": len(measured), "differ": len(off), "rows": rows}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    ordered = {**off, **{k: r for k, r in measured.items() if k not in off}}
    lines = [
        f"# First-call peak vs a later call's peak: preset `{preset}`",
        "",
        f"{len(measured)} cells measured, {len(off)} differ by more than {TOLERANCE:.0%} (listed first); "
        f"{len(rows) - len(measured)} not measured (the method does not apply).",
        "",
        "| cell | first call (bytes) | later call (bytes) | first / later |",
        "|---|---|---|---|",
        *(
            f"| {k} | {r['first_call_peak_bytes']} | {r['later_call_peak_bytes']} | {r['ratio']:.4f} |"
            for k, r in ordered.items()
        ),
    ]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print(lines[2])
    return off


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="smoke")
    parser.add_argument("--out", type=Path, default=Path("experiments/memory/out"))
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    rows = {}
    for config in load_preset(args.preset, PRESET_DIR).cells(("cpu",)):
        key = cell_key(config)
        try:
            rows[key] = measure_cell(config)
        except (NotApplicable, RuntimeError, ValueError) as exc:  # a cell the suite records as failed
            rows[key] = {"skipped": f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"}
        print(key, rows[key], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    off = write_summary(args.preset, rows, args.out)
    return 1 if off else 0


if __name__ == "__main__":
    sys.exit(main())
