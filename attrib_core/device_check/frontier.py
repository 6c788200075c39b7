"""The out-of-memory frontier: peak memory and speed of one method as its batching knob doubles,
up to the first out-of-memory (on the CPU, the dry run's cap: "over_dry_run_cap") or the time
allowed, with tune's memory model's prediction beside each reading and the largest setting that
fits a stated memory budget.

The model is fitted as tune fits it (attrib_core/tune/memory.py): a line through the two smallest
settings of a batching knob, or through the one smallest setting of a knob that is not a batching
knob (GradientShap's n_samples), so the table shows how far tune's prediction carries.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from attrib_core import measure
from attrib_core.device_check.oom import DryRunMemoryCapExceeded, capped_peak, is_out_of_memory
from attrib_core.device_check.steps import release_device_memory
from attrib_core.methods import CostInput, get_method
from attrib_core.run import PreparedRun, RunConfig, prepare
from attrib_core.tune.memory import PREDICTION_MARGIN, MemoryModel, chunk_rows, fit, held_bytes_per_row

# the next setting's expected time, as a multiple of the last one's: a batching knob keeps the call's
# work (only the chunks grow), any other knob doubles it
NEXT_POINT_FACTOR = {"batching": 1.2, "work": 2.5}
STOPPING = ("out_of_memory", "over_dry_run_cap", "failed")  # a point with one of these ends the search


@dataclass(frozen=True)
class FrontierTarget:
    """One method on one workload, with `knob` doubled from `start` to at most `stop`."""

    method: str
    workload: str
    knob: str
    start: int
    stop: int
    batch_size: int
    knobs: Mapping[str, Any] = field(default_factory=dict)  # the others, held fixed
    precision: str = "fp32"

    def values(self) -> list[int]:
        if not 1 <= self.start <= self.stop:
            raise ValueError(
                f"{self.method}: {self.knob} from {self.start} to {self.stop} is not a range; needs 1 <= start <= stop"
            )
        out, value = [], self.start
        while value <= self.stop:
            out.append(value)
            value *= 2
        return out


def rows(prepared: PreparedRun) -> tuple[int, int]:
    """(rows in the model's largest single call, rows of the whole call), as tune counts them."""
    cost = CostInput(
        prepared.config.batch_size,
        prepared.knobs,
        tuple(prepared.workload.inputs.shape[1:]),
        prepared.workload.n_features,
        False,
    )
    passes = prepared.spec.cost(cost)
    return chunk_rows(prepared.spec, prepared.knobs, cost), max(passes.forward, passes.backward)


def measure_point(prepared: PreparedRun, device: str, cap_bytes: int | None, repeats: int) -> dict[str, Any]:
    """Peak memory of one call (its own pass), then the median of `repeats` synchronised calls."""
    reading = capped_peak(prepared, device, cap_bytes)
    call = measure.synchronized(prepared, device)
    times_s = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times_s.append(time.perf_counter() - started)
    median_s = statistics.median(times_s)
    return {"peak_bytes": reading.peak_bytes, "memory_method": reading.method, "median_s": median_s}


def search_frontier(
    target: FrontierTarget,
    device: str,
    budget_bytes: int,
    allowance_s: float,
    cap_bytes: int | None = None,
    repeats: int = 3,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Measure each doubled setting until one does not fit, the values run out, or the next would
    not finish within `allowance_s`; then fit tune's model and find the largest setting within
    `budget_bytes`."""
    started = clock()
    points: list[dict[str, Any]] = []
    stopped_by = "last value"
    last_s = 0.0
    held = None
    factor = NEXT_POINT_FACTOR["batching" if target.knob in get_method(target.method).batching_knobs else "work"]
    for value in target.values():
        if points and clock() - started + factor * last_s > allowance_s:
            stopped_by = "time"
            break
        point_started = clock()
        config = RunConfig(
            target.method,
            target.workload,
            device,
            target.batch_size,
            {**target.knobs, target.knob: value},
            precision=target.precision,
        )
        prepared = prepare(config)
        chunk, total = rows(prepared)
        held = held_bytes_per_row(prepared.spec, prepared.workload.inputs[0])
        point: dict[str, Any] = {target.knob: value, "chunk_rows": chunk, "total_rows": total}
        try:
            point.update(status="ok", **measure_point(prepared, device, cap_bytes, repeats))
            point["rows_per_s"] = total / point["median_s"] if point["median_s"] > 0 else None
        except Exception as exc:  # the points before it are kept; another error fails the step
            if is_out_of_memory(exc):
                status = "over_dry_run_cap" if isinstance(exc, DryRunMemoryCapExceeded) else "out_of_memory"
            else:
                status = "failed"
            point.update(status=status, error=f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}")
            stopped_by = status
        finally:
            del prepared
        last_s = clock() - point_started
        points.append(point)
        if stopped_by in STOPPING:
            release_device_memory()
            break
    model = _tune_model(target, points, held or 0.0)
    for point in points:
        point["predicted_bytes"] = model.predict(point["chunk_rows"], point["total_rows"]) if model else None
        point["predicted_fits"] = model.fits(point["chunk_rows"], point["total_rows"], budget_bytes) if model else None
        point["fits_budget"] = point["status"] == "ok" and point["peak_bytes"] <= budget_bytes
    fitting = [p for p in points if p["fits_budget"]]
    largest = max(fitting, key=lambda p: p[target.knob]) if fitting else None
    measured = [p["peak_bytes"] for p in points if p["status"] == "ok"]
    failed = [p for p in points if p["status"] == "failed"]
    return {
        "problems": [f"{target.knob}={p[target.knob]}: {p['error']}" for p in failed],
        "method": target.method,
        "workload": target.workload,
        "device": device,
        "batch_size": target.batch_size,
        "precision": target.precision,
        "knob": target.knob,
        "fixed_knobs": dict(target.knobs),
        "budget_bytes": budget_bytes,
        "dry_run_cap_bytes": cap_bytes,
        "prediction_margin": PREDICTION_MARGIN,
        "memory_model": None if model is None else model.__dict__,
        "points": points,
        "stopped_by": stopped_by,
        "peaks_non_decreasing": all(a <= b for a, b in itertools.pairwise(measured)),
        "largest_fitting": None
        if largest is None
        else {
            target.knob: largest[target.knob],
            "peak_bytes": largest["peak_bytes"],
            "median_s": largest["median_s"],
            "rows_per_s": largest["rows_per_s"],
        },
    }


def _tune_model(target: FrontierTarget, points: list[dict[str, Any]], held: float) -> MemoryModel | None:
    measured = [p for p in points if p["status"] == "ok"]
    if not measured:
        return None
    probes = measured[:2] if target.knob in get_method(target.method).batching_knobs else measured[:1]
    return fit([(p["chunk_rows"], p["total_rows"], p["peak_bytes"]) for p in probes], held)
