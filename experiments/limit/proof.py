"""Proof of the limit: single-pass cells of a preset (and LayerGradCam's) should read about 1.

    python -m experiments.limit.proof                       run them (standard preset, CPU) and print the table
    python -m experiments.limit.proof results/FILE.json     the table of a run already made
    python -m experiments.limit.proof --slow-cpu            resnet18's IG and single-pass cells on one thread
                                                      with the oldest x86 kernels (calls of seconds)

With --slow-cpu the check is the one that holds for every cell, single-pass or not: no
efficiency above SUSPECT_ABOVE (no method beats its model's own passes; above it, the limit
was taken at batches that do not match the cell's calls).

A single-pass method pushes one row per example through the model once (Saliency,
InputXGradient, GuidedBackprop, LayerGradCam, ...), so its time is the model's own pass plus
the method's overhead: efficiency should lie in [0.8, 1.05]. Prints one markdown row per cell
and the cells outside that range; exit 1 if any is. `overhead_ms` is the cell's time minus the
limit (paired rounds): a fixed per-call cost (Captum's Python) shows as the same few tenths of a
millisecond on every model, which pulls a 1 ms model's efficiency down and a 50 ms one's not.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from attrib_core.analysis.results import (
    SINGLE_PASS_RANGE,
    SUSPECT_ABOVE,
    efficiency_warnings,
    load_results,
    measured_s,
    results_files,
)
from attrib_core.analysis.tables import to_markdown
from attrib_core.suite import suite_command
from attrib_core.sweep import PRESET_DIR
from bench import REPO

SINGLE_PASS = ("Saliency", "InputXGradient", "GuidedBackprop", "LayerGradCam", "LayerGradientXActivation")
SINGLE_PASS += ("LayerActivation", "NeuronGradient")
SELECTION = "cpu and (" + " or ".join(SINGLE_PASS) + ") and not NoiseTunnel"
SLOW_SELECTION = "cpu and not shapes_resnet18 and resnet18 and (" + " or ".join((*SINGLE_PASS, "IntegratedGradients"))
SLOW_SELECTION += ") and not NoiseTunnel"
SLOW_CPU = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "OMP_NUM_THREADS": "1"}
COLUMNS = ["cell_key", "median_s", "calib_paired_median_s", "limit_s", "efficiency", "calib_backward_kind"]
COLUMNS += ["calib_best_batch_size"]
SLOW_COLUMNS = ["cell_key", "calib_paired_median_s", "limit_s", "efficiency", "calib_best_batch_size"]
SLOW_COLUMNS += ["calib_rows_per_call", "calib_budget_exhausted"]


def run_cells(preset: str, folder: Path, selection: str = SELECTION, env: dict[str, str] | None = None) -> Path:
    """Run the preset's selected cells into `folder`; the results file it wrote."""
    command = suite_command("-q", f"--preset={preset}")
    environment = {**os.environ, **(env or {})}
    subprocess.run([*command, "-k", selection, f"--results-dir={folder}"], cwd=REPO, check=False, env=environment)
    files = results_files(folder)
    if not files:
        raise SystemExit(f"limit_proof: the run of preset {preset!r} wrote no results file in {folder}")
    return files[-1]


def table(paths: list[Path]) -> tuple[str, list[str]]:
    df = load_results(paths)
    cells = df[(df["status"] == "ok") & (df["passes_forward"] == df["batch_size"])]
    cells = cells.assign(overhead_ms=(measured_s(cells) - cells["limit_s"]) * 1e3)
    shown = cells[[*COLUMNS, "overhead_ms", "efficiency_basis", "efficiency_suspect"]].sort_values("cell_key")
    return to_markdown(shown), efficiency_warnings(df)


def slow_cpu_preset(preset: str, folder: Path) -> Path:
    """The preset on one thread, its fidelity metrics left out: the same cells, timed and
    calibrated the same way (fidelity runs after both), without hours of reference passes
    on slow kernels. The suite sets torch's threads from the preset, so one thread is said there."""
    source = Path(preset) if Path(preset).is_file() else PRESET_DIR / f"{preset}.toml"
    text, count = re.subn(r"(?ms)^metrics\s*=\s*\[.*?\]", "metrics = []", source.read_text(), count=1)
    if not count:
        text = text + "\n[fidelity]\nmetrics = []\n"
    text, count = re.subn(r"(?m)^\[timing\]\s*$", "[timing]\nthreads = 1", text, count=1)
    if not count:
        text = text + "\n[timing]\nthreads = 1\n"
    path = folder / source.name
    path.write_text(text)
    return path


def slow_cpu_table(paths: list[Path]) -> tuple[str, list[str]]:
    """Every ok cell with its limit's batches; the cells above SUSPECT_ABOVE, named."""
    df = load_results(paths)
    cells = df[df["status"] == "ok"].sort_values("cell_key")
    suspect = cells[cells["efficiency"] > SUSPECT_ABOVE]
    lines = [
        f"efficiency {e:.2f} > {SUSPECT_ABOVE}: {k}"
        for k, e in zip(suspect["cell_key"], suspect["efficiency"], strict=True)
    ]
    failed = df[df["status"] == "failed"]
    lines += [f"failed: {k}" for k in failed["cell_key"]]
    return to_markdown(cells[SLOW_COLUMNS]), lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", type=Path, help="results files (default: run the cells now)")
    parser.add_argument("--preset", default="standard")
    parser.add_argument("--slow-cpu", action="store_true", help="IG and single-pass resnet18 cells, slow kernels")
    args = parser.parse_args(argv)
    if args.files:
        missing = [str(p) for p in args.files if not p.is_file()]
        if missing:
            print(f"limit_proof: no such results file: {', '.join(missing)}", file=sys.stderr)
            return 2
        paths = args.files
    elif args.slow_cpu:
        folder = Path(tempfile.mkdtemp(prefix="limit_proof_slow_"))
        paths = [run_cells(str(slow_cpu_preset(args.preset, folder)), folder, SLOW_SELECTION, SLOW_CPU)]
    else:
        paths = [run_cells(args.preset, Path(tempfile.mkdtemp(prefix="limit_proof_")))]
    if args.slow_cpu:
        markdown, problems = slow_cpu_table(paths)
        print(markdown)
        print(f"{len(problems)} cell(s) suspect or failed")
        for line in problems:
            print(f"  {line}")
        return 1 if problems else 0
    markdown, warnings = table(paths)
    print(markdown)
    low, high = SINGLE_PASS_RANGE
    print(f"{len(warnings)} single-pass cell(s) outside [{low}, {high}]")
    for line in warnings:
        print(f"  {line}")
    return 1 if warnings else 0


if __name__ == "__main__":
    raise SystemExit(main())
