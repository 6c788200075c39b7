"""Results files -> one tidy pandas DataFrame (the format itself is attrib_core.schema).

One row per cell and run. Report, compare and regress all read through `load_results`,
which validates what it reads and names the file when something is wrong. Failed cells are
kept (status "failed", timing columns empty), never dropped. Needs pandas, not torch.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from attrib_core import schema
from attrib_core.schema import ResultsError

TIME_STATS = ("min", "max", "mean", "median", "stddev", "iqr", "q1", "q3")
IDENTITY = ("workload", "method", "device", "batch_size", "precision", "memory_format", "seed")


def results_files(folder: str | Path) -> list[Path]:
    """Results JSON files in a folder (not recursive), oldest name first."""
    return sorted(p for p in Path(folder).glob("*.json") if p.is_file())


def read_json(path: str | Path) -> dict[str, Any]:
    """A results file, validated and upgraded to the current schema (see attrib_core.schema)."""
    return schema.read(path)


def machine_columns(data: dict[str, Any], path: Path) -> dict[str, Any]:
    info = data["machine_info"]
    meta = info["attrib_bench"]
    env = meta.get("environment", {})
    gpus = env.get("gpus") or []
    commit = data.get("commit_info") or {}
    ab = meta.get("ab") or {}
    return {
        "file": path.name,
        "path": str(path),
        "ab_session": ab.get("session"),  # A/B side files (bench/ab): pairing needs one session
        "ab_side": ab.get("side"),
        "ab_label": ab.get("label"),
        "run_datetime": data.get("datetime"),
        "preset": meta.get("preset"),
        "preset_sha256": meta.get("preset_sha256"),
        "machine": machine_label(env),
        "cpu_model": env.get("cpu_model"),
        "gpu_name": gpus[0]["name"] if gpus else None,
        "torch_version": env.get("torch_version"),
        "captum_version": env.get("captum_version"),
        "cuda_version": env.get("torch_cuda_version"),
        "commit": (commit.get("id") or "")[:12] or None,
        "commit_time": commit.get("time"),  # orders a history by commit, not by when it was run
        "commit_dirty": commit.get("dirty"),
    }


def machine_label(env: dict[str, Any]) -> str:
    gpus = env.get("gpus") or []
    if gpus:
        return gpus[0]["name"]
    cores = env.get("cpu_logical_cores")
    return f"{env.get('cpu_model') or 'unknown CPU'}" + (f" ({cores} cores)" if cores else "")


def record_row(record: dict[str, Any], path: Path) -> dict[str, Any]:
    """Flatten one benchmark record. Timing columns are in seconds (`_s`)."""
    extra = record.get("extra_info") or {}
    if "cell" not in extra or "cell_key" not in extra:
        raise ResultsError(f"{path}: record {record.get('name')!r} has no attrib-bench cell in extra_info")
    cell = extra["cell"]
    row: dict[str, Any] = {"cell_key": extra["cell_key"], **{k: cell.get(k) for k in IDENTITY}}
    for name, value in (extra.get("resolved_knobs") or cell.get("knobs") or {}).items():
        row[f"knob_{name}"] = tuple(value) if isinstance(value, list) else value
    row.update(
        status=extra.get("status", "incomplete"),
        error=extra.get("error"),
        method_kind=extra.get("method_kind"),
        method_family=extra.get("method_family"),
        weights=extra.get("weights"),
        threads=extra.get("threads"),
        knob_labels=extra.get("knob_labels") or {},  # short knob names for labels (from the registry)
        injected_slowdown=extra.get("injected_slowdown", 1.0),  # fault injection (tests of checks), 1 = none
    )
    tokens = extra.get("example_tokens")  # text workloads: the words under the first example's map
    row["example_tokens"] = tuple(tokens) if tokens is not None else None
    stats = record.get("stats") or {}
    for name in TIME_STATS:
        row[f"{name}_s"] = stats.get(name)
    row["rounds"] = stats.get("rounds")
    row["samples_s"] = stats.get("data")
    row["blocks"] = timing_blocks(extra, stats, path)
    passes = extra.get("passes") or {}
    row["passes_forward"] = passes.get("forward")
    row["passes_backward"] = passes.get("backward")
    calibration = extra.get("calibration") or {}
    row["calib_forward_s_per_sample"] = calibration.get("forward_s_per_sample")
    row["calib_forward_backward_s_per_sample"] = calibration.get("forward_backward_s_per_sample")
    memory = extra.get("memory") or {}
    row["peak_bytes"] = memory.get("peak_bytes")
    row["memory_method"] = memory.get("method")
    for metric, result in (extra.get("fidelity") or {}).items():
        if isinstance(result, dict):
            # "not_meaningful" (random weights): the status is shown, the value is left out of every table
            row[f"fid_{metric}"] = result.get("value") if result.get("status") != "not_meaningful" else None
            row[f"fid_{metric}_status"] = result.get("status")
            row[f"fid_{metric}_time_s"] = result.get("time_s")
            # v1 files recorded the direction only for curves and scores; the rest are errors
            row[f"fid_{metric}_lower_is_better"] = result.get("lower_is_better", True)
    return row


def timing_blocks(extra: dict[str, Any], stats: dict[str, Any], path: Path) -> list[tuple]:
    """(pair, position, process, rounds_s) per block of consecutive rounds (see
    attrib_core.analysis.timing_rule); a record without `blocks` is one block run by its file."""
    blocks = extra.get("blocks")
    if blocks:
        return [
            (b.get("pair"), b.get("position"), str(b.get("process")), np.asarray(b.get("samples_s") or [], dtype=float))
            for b in blocks
        ]
    data = stats.get("data")
    return [(None, None, path.name, np.asarray(data, dtype=float))] if data else []


def efficiency(df: pd.DataFrame) -> pd.Series:
    """Cost-model bound over measured median: how close a cell runs to the model's own speed.

    bound = backward rows x per-sample forward+backward time + the remaining forward rows x
    per-sample forward time (no_grad), both calibrated on the same device and batch size in
    the same run. Above 1 means the method pushes more rows per model call than the
    calibration batch did (IG's steps, for instance), so batching beat the model's own speed.
    """
    only_forward = df["passes_forward"] - df["passes_backward"]
    bound = (
        df["passes_backward"] * df["calib_forward_backward_s_per_sample"]
        + only_forward * df["calib_forward_s_per_sample"]
    )
    return bound / df["median_s"]


def load_results(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One tidy row per (file, cell); raises ResultsError naming the first bad file."""
    rows: list[dict[str, Any]] = []
    for path in map(Path, paths):
        data = read_json(path)
        machine = machine_columns(data, path)
        rows.extend({**machine, **record_row(record, path)} for record in schema.records(data))
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    scalar_times = [c for c in df.columns if c.endswith("_s") and c != "samples_s"]
    numeric = [*scalar_times, "peak_bytes", "passes_forward", "passes_backward"]
    df[numeric] = df[numeric].apply(pd.to_numeric, errors="coerce")
    df["efficiency"] = efficiency(df)
    df["per_sample_median_s"] = df["median_s"] / df["batch_size"]
    return df
