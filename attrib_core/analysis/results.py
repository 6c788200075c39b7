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
OLD_BASIS = "own batch (old file)"
SUSPECT_ABOVE = 1.05  # efficiency above this is a measurement problem, not a fast method
SINGLE_PASS_RANGE = (0.8, 1.05)  # where a single-pass method's efficiency should lie
EXAMPLES_PREFIX = "examples_"  # + metric: a fidelity value's per-example values (ok records only)
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
        "ab_session": ab.get("session"),  # A/B side files (attrib_core/ab): pairing needs one session
        "ab_side": ab.get("side"),
        "ab_label": ab.get("label"),
        # what attrib_core.noise found around the run (load, governor, busy neighbours)
        "noise_warnings": tuple((meta.get("noise") or {}).get("warnings") or ()),
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
        # a tune run's answer per method (attrib_core.tune.output), so tables need not read the file again
        "tune_summary": _tune_summary(meta),
    }


def _tune_summary(meta: dict[str, Any]) -> dict[str, Any] | None:
    tune = (meta.get("run") or {}).get("tune")
    return {k: v for k, v in tune.items() if k != "request"} if tune else None


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
    tune = extra.get("tune") or {}  # a configuration a tune run tried: which stage, which role
    row.update(tune_phase=tune.get("phase"), tune_role=tune.get("role"), tune_first_call_s=tune.get("first_call_s"))
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
    row.update(limit_columns(extra.get("calibration") or {}, passes))
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
            row[f"fid_{metric}_raw"] = result.get("value")  # kept whatever the weights: tune's distance
            per_example = result.get("per_example") if result.get("status") == "ok" else None
            # the spread behind the value, for the figures' error bars: outside fid_*, which
            # regression and history read as metrics; a tuple, so cells stay hashable
            row[f"{EXAMPLES_PREFIX}{metric}"] = tuple(per_example) if isinstance(per_example, list) else None
    row["similarity_curves"] = similarity_curves(extra.get("fidelity") or {})
    return row


def similarity_curves(fidelity: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
    """metric -> {"steps", "mean_curve"} for the ok records that follow a map through steps (the
    randomisation checks), for the report's sanity panel."""
    curves = {
        metric: {"steps": result["steps"], "mean_curve": result.get("mean_curve") or {}}
        for metric, result in fidelity.items()
        if isinstance(result, dict) and result.get("status") == "ok" and result.get("steps")
    }
    return curves or None


def timing_blocks(extra: dict[str, Any], stats: dict[str, Any], path: Path) -> list[tuple]:
    """(pair, position, process, rounds_s) per block of consecutive rounds (see
    attrib_core.analysis.timing_rule); a record without `blocks` is one block run by its file."""
    blocks = extra.get("blocks")
    if blocks:
        return [
            (
                b.get("pair"),
                b.get("position", b.get("pass")),
                # a pass over one run's sweep is a unit of its own (the file keeps runs apart)
                f"{path.name}:pass{b['pass']}" if "pass" in b else str(b.get("process")),
                np.asarray(b.get("samples_s") or [], dtype=float),
            )
            for b in blocks
        ]
    data = stats.get("data")
    return [(None, None, path.name, np.asarray(data, dtype=float))] if data else []


def limit_columns(calibration: dict[str, Any], passes: dict[str, Any]) -> dict[str, Any]:
    """The calibration a cell is held against, as columns (see attrib_core.limit).

    Files from before the limit was searched over batch sizes calibrated at the cell's own
    batch and timed every backward row as a full one: their basis says so, and their numbers
    are used as they are.
    """
    backward_kind = passes.get("backward_kind", "forward_backward") if passes.get("backward") else None
    new = "basis" in calibration
    paired = calibration.get("paired") or {}
    times = {**calibration, **paired}  # the paired rounds ran in the cell's own window: they win
    best = times.get("best_batch_size") or {}
    return {
        "calib_forward_s_per_sample": times.get("forward_s_per_sample"),
        "calib_forward_backward_s_per_sample": times.get("forward_backward_s_per_sample"),
        "calib_backward_kind": backward_kind,
        "calib_backward_s_per_sample": times.get(f"{backward_kind}_s_per_sample") if backward_kind else None,
        "calib_best_batch_size": best.get(backward_kind, best.get("forward")) if new else calibration.get("batch_size"),
        "calib_paired_median_s": paired.get("cell_median_s"),
        "calib_rows_per_call": calibration.get("rows_per_call"),
        "calib_stable": calibration.get("stable"),
        "calib_budget_exhausted": calibration.get("budget_exhausted"),
        "efficiency_basis": _basis(calibration, paired),
    }


def _basis(calibration: dict[str, Any], paired: dict[str, Any]) -> str | None:
    if not calibration:
        return None
    if "basis" not in calibration:
        return OLD_BASIS
    return calibration["basis"] + (", paired with the cell" if paired else "")


def limit_s(df: pd.DataFrame) -> pd.Series:
    """The model's own time for the rows one call of the cell makes, at its best batch size:
    backward rows x the per-sample time of the pass its backward makes (full, to a layer or
    from a layer) + the remaining forward-only rows x the per-sample forward time."""
    only_forward = df["passes_forward"] - df["passes_backward"]
    backward_part = df["passes_backward"] * df["calib_backward_s_per_sample"]
    forward_part = (only_forward * df["calib_forward_s_per_sample"]).where(only_forward != 0, 0.0)
    backward_part = backward_part.where(df["passes_backward"] != 0, 0.0)
    total = backward_part + forward_part
    return total.where(df["passes_forward"].notna() & (total > 0))


def efficiency(df: pd.DataFrame) -> pd.Series:
    """Limit time over measured median: how close a cell runs to the best the hardware does
    with this model. Where the run timed the cell's call and the limit's passes in alternation
    (`calibration.paired`), both come from those rounds, so load that came and went hit both.
    About 1 = as fast as the model's own passes at their best batch size; below 1 =
    overhead (Python, small calls, extra work). Above SUSPECT_ABOVE the limit was
    measured wrong (noise, a cold calibration): see `efficiency_suspect`, never read it as fast.
    """
    return limit_s(df) / measured_s(df)


def measured_s(df: pd.DataFrame) -> pd.Series:
    """The cell's time efficiency holds against the limit: the paired rounds' median where the
    run has them (same window as the limit's passes), else the benchmark's median."""
    return df["calib_paired_median_s"].fillna(df["median_s"]) if "calib_paired_median_s" in df else df["median_s"]


def efficiency_label(value: float | None) -> str:
    """An efficiency as people read it: 2 decimals, and "suspect" where the limit was measured wrong."""
    if value is None or pd.isna(value):
        return "-"
    return f"{value:.2f} suspect" if value > SUSPECT_ABOVE else f"{value:.2f}"


def efficiency_warnings(
    df: pd.DataFrame, low: float = SINGLE_PASS_RANGE[0], high: float = SINGLE_PASS_RANGE[1]
) -> list[str]:
    """The sanity check of the limit: a single-pass method (one row through the model per
    example: Saliency, InputXGradient, LayerGradCam...) should read about 1. One line per ok
    cell outside [low, high], naming it."""
    if df.empty or "efficiency" not in df:
        return []
    single = df[(df["status"] == "ok") & (df["passes_forward"] == df["batch_size"])]
    lines = []
    for _, row in single.iterrows():
        value = row["efficiency"]
        if pd.isna(value) or low <= value <= high:
            continue
        lines.append(
            f"efficiency {value:.2f} outside [{low}, {high}] for single-pass cell {row['cell_key']} "
            f"(basis: {row['efficiency_basis']})"
        )
    return lines


def load_results(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One tidy row per (file, cell); raises ResultsError naming the first bad file."""
    rows: list[dict[str, Any]] = []
    for path in map(Path, paths):
        data = read_json(path)
        machine = machine_columns(data, path)
        rows.extend({**machine, **record_row(record, path)} for record in schema.records(data))
    return tidy(rows)


def records_frame(records: Iterable[dict[str, Any]], label: str) -> pd.DataFrame:
    """The same table for cell records not written to any file (a run with --no-save)."""
    return tidy([record_row(record, Path(label)) for record in records])


def tidy(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows -> the table, with the derived columns (limit, efficiency, per-sample time)."""
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    scalar_times = [c for c in df.columns if c.endswith("_s") and c != "samples_s"]
    per_sample = [c for c in df.columns if c.startswith("calib_") and c.endswith("_s_per_sample")]
    numeric = [*scalar_times, *per_sample, "peak_bytes", "passes_forward", "passes_backward", "calib_best_batch_size"]
    df[numeric] = df[numeric].apply(pd.to_numeric, errors="coerce")
    df["limit_s"] = limit_s(df)
    df["efficiency"] = efficiency(df)
    df["efficiency_suspect"] = df["efficiency"] > SUSPECT_ABOVE
    df["per_sample_median_s"] = df["median_s"] / df["batch_size"]
    return df
