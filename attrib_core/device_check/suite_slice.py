"""A GPU-sized slice of the `full` preset, run through the ordinary suite (`attrib-bench bench`) so
its results land as a normal results file, with a deliberate out-of-memory cell first: the cells
after it show that the suite records the failure and goes on.

The dry run's slice is a few digits_cnn cells on the CPU and has no out-of-memory cell: the CPU
has no allocator limit, and the suite does not know the dry run's cap.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attrib_core import schema
from attrib_core.device_check.probes import run_logged
from attrib_core.sweep import cell_key, load_preset

OOM_ERROR = "OutOfMemoryError"


@dataclass(frozen=True)
class OomSizing:
    """An IntegratedGradients call with every row in one model call, sized to need `factor` times
    the memory given: rows = factor x memory / bytes per row, as a batch times a power-of-two n_steps."""

    workload: str
    per_row_bytes: float  # peak bytes per row of one fp32 IG call on this workload (measured, see below)
    batch_size: int
    factor: float = 2.0

    def n_steps(self, memory_bytes: int) -> int:
        rows = self.factor * memory_bytes / self.per_row_bytes
        return 2 ** math.ceil(math.log2(max(1.0, rows / self.batch_size)))

    def knobs(self, memory_bytes: int) -> dict[str, Any]:
        return {"n_steps": self.n_steps(memory_bytes), "internal_batch_size": None}


# resnet18 fp32 IG: 22.4 MB per row (tune/memory.py's probes); digits_cnn fp32 IG: 7409664 B at 256 rows
RESNET18_OOM = OomSizing("resnet18", 22.4e6, 16)
DIGITS_OOM = OomSizing("digits_cnn", 7409664 / 256, 4)

TIMING = """[timing]
min_rounds = {min_rounds}
max_rounds = {max_rounds}
max_time_s = {max_time_s}
warmup_rounds = 1
"""


def gpu_slice(device_memory_bytes: int) -> str:
    """The slice of `full` for an ~8 minute check: every method once on resnet18; IG at 64, 256 and
    1024 steps; batches 1, 16 and 256 in fp32, bf16 and fp16; after one cell sized to run out of memory."""
    oom = RESNET18_OOM.n_steps(device_memory_bytes)
    return (
        'name = "device-check"\n'
        'description = "device check: a GPU-sized slice of full, after one deliberate out-of-memory cell"\n'
        + TIMING.format(min_rounds=3, max_rounds=10, max_time_s=0.3)
        + f"""
[fidelity]
metrics = ["completeness"]
options = {{ random_weights = "skip" }}

# sized to need twice the device's memory in one model call: it must fail, and the cells after it run
[[sweep]]
workload = "resnet18"
method = "IntegratedGradients"
device = ["cuda"]
batch_size = [{RESNET18_OOM.batch_size}]
[sweep.knobs]
n_steps = [{oom}]

[[sweep]]
workload = "resnet18"
method = "all"
device = ["cuda"]
batch_size = [4]

[[sweep]]
workload = "resnet18"
method = "IntegratedGradients"
device = ["cuda"]
batch_size = [16]
[sweep.knobs]
n_steps = [64, 256, 1024]
internal_batch_size = [256]

[[sweep]]
workload = "resnet18"
method = ["Saliency", "LayerGradCam", "IntegratedGradients", "DeepLift"]
device = ["cuda"]
batch_size = [1, 16, 256]
precision = ["fp32", "bf16", "fp16"]
[sweep.knobs]
n_steps = [32]
internal_batch_size = [256]
"""
    )


def dry_slice() -> str:
    """The same path on the CPU in seconds: two methods on digits_cnn, two batches, fp32 and bf16."""
    return (
        'name = "device-check-dry"\n'
        'description = "device check, dry run on the CPU: a few digits_cnn cells"\n'
        + TIMING.format(min_rounds=2, max_rounds=2, max_time_s=0.01)
        + """threads = 1

[fidelity]
metrics = ["completeness"]

[[sweep]]
workload = "digits_cnn"
method = ["Saliency", "IntegratedGradients"]
device = ["cpu"]
batch_size = [2, 4]
precision = ["fp32", "bf16"]
[sweep.knobs]
n_steps = [8]
"""
    )


def run_slice(preset_text: str, device: str, out: Path, timeout_s: float, oom_first: bool) -> dict[str, Any]:
    """Write the preset, run the suite on it in a subprocess, and read back its results file."""
    presets = out / "presets"
    presets.mkdir(parents=True, exist_ok=True)
    preset_path = presets / ("device-check.toml" if device != "cpu" else "device-check-dry.toml")
    preset_path.write_text(preset_text, encoding="utf-8")
    results_dir = out / "results"
    log = out / "logs" / "suite_slice.log"
    command = [
        sys.executable,
        "-m",
        "attrib_core",
        "bench",
        f"--preset={preset_path}",
        f"--results-dir={results_dir}",
        "--no-isolate",
        "-q",
    ]
    order = [cell_key(config) for config in load_preset(preset_path).cells((device.split(":")[0],))]
    code = run_logged(command, log, timeout_s)
    found: dict[str, Any] = {
        "command": " ".join(command[1:]),
        "exit_status": code,
        "preset": str(preset_path),
        "log": str(log),
        "cells_in_preset": len(order),
    }
    results = sorted(results_dir.glob(f"*_{load_preset(preset_path).name}*.json"), key=lambda p: p.stat().st_mtime)
    found["complete"] = code is not None  # cut at its time: what it measured is kept, the rest is listed as not run
    problems = [] if code in (0, 1, None) else [f"the suite exited with status {code}; see {log}"]
    if not results:
        return {**found, "problems": [*problems, f"no results file in {results_dir}; see {log}"]}
    found["results_file"] = str(results[-1])
    found.update(read_slice(schema.read(results[-1]), order, oom_first))
    return {**found, "problems": problems + found.pop("problems")}


def read_slice(data: dict[str, Any], order: list[str], oom_first: bool) -> dict[str, Any]:
    """Counts by status, the failed cells, and whether the out-of-memory cell failed as it should
    while the cells after it ran."""
    records = {r["extra_info"]["cell_key"]: r["extra_info"] for r in schema.records(data)}
    statuses = [records[key]["status"] if key in records else "not run" for key in order]
    counts = {status: statuses.count(status) for status in dict.fromkeys(statuses)}
    failed = {key: records[key].get("error") for key in order if key in records and records[key]["status"] == "failed"}
    problems = []
    found: dict[str, Any] = {"counts": counts, "failed_cells": failed}
    if oom_first and order:
        oom_key, after = order[0], statuses[1:]
        error = (records.get(oom_key) or {}).get("error") or ""
        found["deliberate_oom"] = {
            "cell": oom_key,
            "status": statuses[0],
            "error": error,
            "cells_after_it_ok": after.count("ok"),
        }
        if statuses[0] != "failed" or OOM_ERROR not in error:
            problems.append(
                f"the deliberate out-of-memory cell {oom_key} was {statuses[0]!r}, not failed with {OOM_ERROR}"
            )
        if "ok" not in after:
            problems.append("no cell after the out-of-memory cell ran ok")
        failed.pop(oom_key, None)
    if failed:
        problems.append(f"{len(failed)} cell(s) failed: {', '.join(failed)}")
    return {**found, "problems": problems}
