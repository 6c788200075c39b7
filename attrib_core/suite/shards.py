"""Split a preset's cells into N shards of about equal predicted cost (`--shard i/N`).

Every shard of a sweep runs this same computation on its own machine, so the assignment must
be a pure function of the preset, the code and (if given) a calibration file: no timing is
measured here. A cell's predicted cost is

    rows(cell) * flops_per_row(workload) * seconds_per_flop(workload)

- rows: the method's cost model (attrib_core.methods): forward rows + 2 x backward rows (a
  backward pass costs about two forwards) per `attribute` call;
- flops_per_row: one forward of one example under torch's FlopCounterMode (deterministic;
  it counts matmuls and convolutions, so Python overhead of a tiny model is not seen);
- seconds_per_flop: 1 without calibration (then costs are relative units, and each cell is
  taken to make `min_rounds + warmup_rounds + 2` calls); with a calibration results file
  (`--shard-calibration FILE`, e.g. an earlier run of the same preset on the same machine
  kind), the median over that workload's ok cells of median_s / (rows x flops_per_row),
  which folds in the real per-row overhead; workloads absent from it take the median of
  the others. Calibrated per-call seconds also decide how many timed rounds the preset's
  time budget allows (between min_rounds and max_rounds), as the suite will do.

The cells are then assigned greedily, longest predicted first, each to the shard with the
least predicted load so far (LPT; ties: the lower shard index, cells in key order).
"""

from __future__ import annotations

import hashlib
import re
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from attrib_core import schema
from attrib_core.methods import CostInput, get_method
from attrib_core.run import RunConfig
from attrib_core.sweep import Timing
from attrib_core.workloads import load_workload

SHARD_ARG = re.compile(r"^(\d+)/(\d+)$")
BACKWARD_PER_FORWARD = 2.0  # a backward pass costs about two forwards (the usual rule of thumb)


class ShardError(ValueError):
    """A bad --shard value or calibration file; the message names it."""


@dataclass(frozen=True)
class ShardSpec:
    index: int  # 1-based, as written on the command line
    of: int

    @property
    def label(self) -> str:
        return f"shard-{self.index}of{self.of}"


def parse_shard(text: str) -> ShardSpec:
    """'i/N' with 1 <= i <= N."""
    match = SHARD_ARG.match(text.strip())
    if not match:
        raise ShardError(f"--shard {text!r}: expected i/N, e.g. 2/3 (shard 2 of 3, counted from 1)")
    index, of = int(match.group(1)), int(match.group(2))
    if of < 1 or not 1 <= index <= of:
        raise ShardError(f"--shard {text!r}: i must be between 1 and N (N >= 1); valid here: 1/{of}..{of}/{of}")
    return ShardSpec(index, of)


@cache
def flops_per_row(workload_name: str) -> int:
    """Forward FLOPs of one example through the workload's model (at least 1)."""
    workload = load_workload(workload_name)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        workload.model(workload.inputs[:1])
    return max(1, int(counter.get_total_flops()))


def weighted_rows(config: RunConfig) -> float:
    """Forward rows + BACKWARD_PER_FORWARD x backward rows of one `attribute` call (cost model)."""
    spec = get_method(config.method)
    workload = load_workload(config.workload)
    if spec.max_features is not None and workload.n_features > spec.max_features:
        return 0.0  # prepare() records it not applicable, and its cost model would overflow (n * n!)
    passes = spec.cost(
        CostInput(
            batch_size=config.batch_size,
            knobs=dict(config.knobs),
            input_shape=tuple(workload.inputs.shape[1:]),
            n_features=workload.n_features,
            with_delta=config.with_delta,
            layer_shape=workload.layer_shape if spec.layer_units_are_features else (),
        )
    )
    return passes.forward + BACKWARD_PER_FORWARD * passes.backward


@dataclass(frozen=True)
class Calibration:
    """Seconds per FLOP-weighted row, per workload, from a results file (or none: relative units)."""

    seconds_per_unit: Mapping[str, float]
    source_sha256: str | None = None

    def factor(self, workload: str) -> float:
        if not self.seconds_per_unit:
            return 1.0
        if workload in self.seconds_per_unit:
            return self.seconds_per_unit[workload]
        return statistics.median(self.seconds_per_unit.values())

    @property
    def in_seconds(self) -> bool:
        return bool(self.seconds_per_unit)


NO_CALIBRATION = Calibration({})


def calibration_from(path: str | Path) -> Calibration:
    """Per-workload seconds per unit from an earlier run's ok cells (see the module docstring)."""
    data = schema.read(path)  # ResultsError names the file if it is not a results file
    ratios: dict[str, list[float]] = {}
    for record in data["benchmarks"]:
        extra, stats = record["extra_info"], record.get("stats") or {}
        passes, median_s = extra.get("passes"), stats.get("median")
        if extra.get("status") != "ok" or not passes or not median_s:
            continue
        workload = extra["cell"]["workload"]
        rows = passes["forward"] + BACKWARD_PER_FORWARD * passes["backward"]
        if rows > 0:
            ratios.setdefault(workload, []).append(median_s / (rows * flops_per_row(workload)))
    if not ratios:
        raise ShardError(f"--shard-calibration {path}: no ok cell with passes and timing to calibrate from")
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return Calibration({w: statistics.median(r) for w, r in sorted(ratios.items())}, digest)


def calls_per_cell(per_call: float, timing: Timing, calibration: Calibration) -> float:
    """Attribute calls one cell makes: warm-up, timed rounds, one memory and one fidelity pass."""
    rounds = timing.min_rounds
    if calibration.in_seconds and per_call > 0:
        rounds = min(timing.max_rounds, max(timing.min_rounds, timing.max_time_s / per_call))
    return timing.warmup_rounds + rounds + 2


def predicted_costs(
    cells: Mapping[str, RunConfig], timing: Timing, calibration: Calibration = NO_CALIBRATION
) -> dict[str, float]:
    """Cell key -> predicted cost (seconds if calibrated, else relative units)."""
    costs = {}
    for key, config in cells.items():
        per_call = weighted_rows(config) * flops_per_row(config.workload) * calibration.factor(config.workload)
        costs[key] = per_call * calls_per_cell(per_call, timing, calibration)
    return costs


def assign(costs: Mapping[str, float], n_shards: int) -> list[list[str]]:
    """Longest-processing-time-first: the cells of each shard (0-based list), deterministic."""
    if n_shards < 1:
        raise ShardError(f"number of shards {n_shards!r} must be >= 1")
    shards: list[list[str]] = [[] for _ in range(n_shards)]
    loads = [0.0] * n_shards
    for key in sorted(costs, key=lambda k: (-costs[k], k)):
        target = min(range(n_shards), key=lambda i: (loads[i], i))
        shards[target].append(key)
        loads[target] += costs[key]
    return shards


def shard_loads(costs: Mapping[str, float], shards: Iterable[Iterable[str]]) -> list[float]:
    return [sum(costs[k] for k in shard) for shard in shards]


def sweep_id(preset_sha256: str, commit: str | None, n_shards: int, calibration: Calibration) -> str:
    """The same for every shard of one sweep (no coordination needed), different if what decides
    the assignment differs: preset, code, number of shards, calibration."""
    text = "|".join([preset_sha256, commit or "nocommit", str(n_shards), calibration.source_sha256 or "flops"])
    return hashlib.sha256(text.encode()).hexdigest()[:10]
