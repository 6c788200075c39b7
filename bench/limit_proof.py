"""Proof of the limit: single-pass cells of a preset (and LayerGradCam's) should read about 1.

    python -m bench.limit_proof                       run them (standard preset, CPU) and print the table
    python -m bench.limit_proof results/FILE.json     the table of a run already made

A single-pass method pushes one row per example through the model once (Saliency,
InputXGradient, GuidedBackprop, LayerGradCam, ...), so its time is the model's own pass plus
the method's overhead: efficiency should lie in [0.8, 1.05]. Prints one markdown row per cell
and the cells outside that range; exit 1 if any is. `overhead_ms` is the cell's time minus the
limit (paired rounds): a fixed per-call cost (Captum's Python) shows as the same few tenths of a
millisecond on every model, which pulls a 1 ms model's efficiency down and a 50 ms one's not.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from attrib_core.analysis.results import (
    SINGLE_PASS_RANGE,
    efficiency_warnings,
    load_results,
    measured_s,
    results_files,
)
from attrib_core.analysis.tables import to_markdown

REPO = Path(__file__).resolve().parent.parent
SINGLE_PASS = ("Saliency", "InputXGradient", "GuidedBackprop", "LayerGradCam", "LayerGradientXActivation")
SINGLE_PASS += ("LayerActivation", "NeuronGradient")
SELECTION = "cpu and (" + " or ".join(SINGLE_PASS) + ") and not NoiseTunnel"
COLUMNS = ["cell_key", "median_s", "calib_paired_median_s", "limit_s", "efficiency", "calib_backward_kind"]
COLUMNS += ["calib_best_batch_size"]


def run_cells(preset: str, folder: Path) -> Path:
    """Run the preset's single-pass cells into `folder`; the results file it wrote."""
    command = [sys.executable, "-m", "pytest", "bench", "-p", "no:cacheprovider", "-q", f"--preset={preset}"]
    subprocess.run([*command, "-k", SELECTION, f"--results-dir={folder}"], cwd=REPO, check=False)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", type=Path, help="results files (default: run the cells now)")
    parser.add_argument("--preset", default="standard")
    args = parser.parse_args(argv)
    if args.files:
        missing = [str(p) for p in args.files if not p.is_file()]
        if missing:
            print(f"limit_proof: no such results file: {', '.join(missing)}", file=sys.stderr)
            return 2
        paths = args.files
    else:
        paths = [run_cells(args.preset, Path(tempfile.mkdtemp(prefix="limit_proof_")))]
    markdown, warnings = table(paths)
    print(markdown)
    low, high = SINGLE_PASS_RANGE
    print(f"{len(warnings)} single-pass cell(s) outside [{low}, {high}]")
    for line in warnings:
        print(f"  {line}")
    return 1 if warnings else 0


if __name__ == "__main__":
    raise SystemExit(main())
