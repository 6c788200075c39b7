"""Measuring one cell: timing rounds, then one memory pass and one fidelity pass.

Plain functions over pytest-benchmark's fixture; the suite and its conftest only wire
them to pytest. A cell that raises is recorded as failed with its message and the sweep
goes on.
"""

from __future__ import annotations

import json
import math
import statistics
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from attrib_core import fidelity, limit, measure, schema
from attrib_core.analysis.render.gallery import GROUND_TRUTH_IMAGE, GROUND_TRUTH_MASK, SERIES_INPUT
from attrib_core.cache import cache_dir, stable_hash
from attrib_core.fidelity.references import model_digest
from attrib_core.fidelity.scores import broadcast_to_inputs
from attrib_core.fileio import atomic_write
from attrib_core.run import NotApplicable, PreparedRun, RunConfig, prepare
from attrib_core.suite.faults import faulty, slowed_down
from attrib_core.suite.progress import RunProgress
from attrib_core.suite.rounds import EnoughRounds, RoundRule, RoundStopper
from attrib_core.sweep import Preset, cell_key
from attrib_core.workloads import load_workload

T = TypeVar("T")

PASS_REPEATS, PASS_REPEAT_S = 3, 0.05  # timings of a limit pass before each round: at most, within
MAP_SIDE = 112  # gallery maps are pooled to at most this many pixels a side
RANDOM_WEIGHTS = "not meaningful: random weights"


class NonFiniteAttributions(RuntimeError):
    """The method returned NaN or Inf: the cell fails rather than reporting a time."""


@dataclass
class CellOutcome:
    key: str
    status: str
    extra_info: dict[str, Any]
    median_s: float | None = None
    peak_bytes: int | None = None
    map: np.ndarray | None = field(default=None, repr=False)
    # for the sweep's later passes: the timed call, and how many rounds each later block times
    repeat: Callable[[], Any] | None = field(default=None, repr=False)
    block_rounds: int = 0


def meaningful_fidelity(records: dict[str, dict[str, Any]], weights: str) -> dict[str, dict[str, Any]]:
    """Fidelity of an untrained network describes nothing a user cares about: on weights
    "random" every metric's status becomes "not_meaningful" (its value stays in the record,
    the results table leaves it out). Time and memory are kept as measured."""
    if weights != "random":
        return records
    return {name: {**record, "status": "not_meaningful", "reason": RANDOM_WEIGHTS} for name, record in records.items()}


def gallery_map(attributions: torch.Tensor, inputs: torch.Tensor | None = None) -> np.ndarray:
    """First example's map, channels summed (a volume's middle depth slice), pooled to at most
    MAP_SIDE a side, fp16.

    For token ids (integer `inputs`) one score per token: layer attributions to the
    embedding are summed over its dimensions, as the fidelity curves do.
    """
    per_token = broadcast_to_inputs(attributions, inputs.cpu()) if inputs is not None else None
    if per_token is not None and not inputs.is_floating_point():
        attributions = per_token
    first = attributions[0]
    series = inputs is not None and inputs.is_floating_point() and inputs.dim() == 3
    if first.dim() == 4:  # a volume's (C, D, H, W): the middle depth slice
        first = first[:, first.shape[1] // 2]
    if series and first.dim() == 2 and first.shape != inputs.shape[1:] and first.shape == inputs.shape[:0:-1]:
        first = first.sum(1)  # a sequence layer's (T, D) output (a Transformer layer's) over a (D, T) series
    elif first.dim() == 3 or (series and first.dim() == 2):  # channels summed: an image's (H, W), a series' (T,)
        first = first.sum(0)
    if first.dim() == 2 and max(first.shape) > MAP_SIDE:
        first = torch.nn.functional.adaptive_avg_pool2d(first[None, None], MAP_SIDE)[0, 0]
    return first.numpy().astype(np.float16)


def ground_truth_arrays(workloads: set[str]) -> dict[str, np.ndarray]:
    """What the gallery draws the maps beside or on: for image workloads, the first example's
    image (H, W, C; pooled like the maps to at most MAP_SIDE a side), the input every map is of,
    and with it the mask (H, W) where the workload has one, to outline where the label lives;
    for series, the first example (C, T), whose lines the attributions colour."""
    out = {}
    for name in sorted(workloads):
        workload = load_workload(name)
        if workload.inputs.is_floating_point() and workload.inputs.dim() == 3:
            out[SERIES_INPUT + name] = workload.inputs[0].numpy().astype(np.float16)
        if not workload.is_image or workload.inputs.dim() != 4:
            continue
        image = workload.inputs[0].float()
        if max(image.shape[1:]) > MAP_SIDE and workload.masks is None:  # a mask keeps the image's own size
            image = torch.nn.functional.adaptive_avg_pool2d(image[None], MAP_SIDE)[0]
        out[GROUND_TRUTH_IMAGE + name] = image.permute(1, 2, 0).numpy().astype(np.float16)
        if workload.masks is not None:
            out[GROUND_TRUTH_MASK + name] = workload.masks[0, 0].numpy().astype(bool)
    return out


LIMIT_CACHE_VERSION = 1  # bump when the limit's search changes
LIMIT_MACHINE_KEYS = ("cpu_model", "cpu_flags", "torch_cpu_capability", "torch_version", "gpus")


class CalibrationCache:
    """The limit each cell is held against (attrib_core.limit), searched once per (workload,
    device, precision, memory format, kinds of pass, batch sizes searched) and kept on disk for
    later runs on the same machine and environment. What the search finds is the best batch of
    each kind of pass; the efficiency itself uses the passes timed again beside each cell's
    rounds (LimitPairing), so a cached search never lends a cell another moment's load."""

    def __init__(self, rule: limit.SearchRule | None = None, on_disk: bool = True) -> None:
        self._cache: dict[tuple, dict[str, Any]] = {}
        self.rule = rule or limit.SearchRule()
        self.on_disk = on_disk  # kept across runs on this machine (attrib_core.cache); the pairing is always fresh

    def get(self, prepared: PreparedRun, max_rows: int) -> dict[str, Any]:
        """`max_rows`: the most rows the cell's method pushed through the model in one call."""
        c = prepared.config
        kinds = limit.pass_kinds(prepared)
        batches = tuple(limit.candidate_batches(max_rows, c.batch_size))
        key = (c.workload, c.device, c.precision, c.memory_format, kinds, batches)
        if key not in self._cache:
            path = self._disk_path(prepared, key) if self.on_disk else None
            self._cache[key] = self._from_disk(path) or self._calibrate(prepared, path, kinds, max_rows)
        return self._cache[key]

    def _disk_path(self, prepared: PreparedRun, key: tuple) -> Path:
        """Named by everything the limit's search depends on: the cell's model (its weights), inputs,
        execution options and batches, the search rule, and this machine and environment."""
        env = measure.environment()
        machine = {name: env.get(name) for name in LIMIT_MACHINE_KEYS}
        digest = stable_hash(
            {
                "cell": [str(part) for part in key],
                "model": model_digest(prepared.workload_model),
                "architecture": repr(prepared.workload_model),  # what the weights alone do not pin
                "inputs": list(prepared.inputs.shape[1:]),
                "layer": prepared.workload.layer_name,
                "threads": torch.get_num_threads(),
                "rule": asdict(self.rule),
                "machine": machine,
                "version": LIMIT_CACHE_VERSION,
            },
            length=24,
        )
        return cache_dir() / "limits" / f"{digest}.json"

    def _from_disk(self, path: Path | None) -> dict[str, Any] | None:
        if path is None:
            return None
        try:
            found = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return {**found, "cached": str(path)}

    def _calibrate(self, prepared: PreparedRun, path: Path | None, kinds: tuple, max_rows: int) -> dict[str, Any]:
        found = limit.calibrate_limit(limit.pass_timer(prepared), kinds, max_rows, self.rule)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, json.dumps(found))
        return found

    def pairing(self, prepared: PreparedRun, calibration: dict[str, Any]) -> LimitPairing:
        """The limit's passes at their best batch, warmed up, ready to be timed between the
        cell's timed rounds."""
        timer = limit.pass_timer(prepared)
        best = calibration["best_batch_size"]
        for kind, batch in best.items():  # warm the passes' new batches
            limit.warm_up(timer, kind, batch, self.rule)
        return LimitPairing(timer, dict(best))


@dataclass
class LimitPairing:
    """The limit's passes timed once before each of the cell's timed rounds (pytest-benchmark's
    untimed `setup`), so the limit and the cell come from the same window, round by round,
    without calling the cell again: load that comes and goes on a shared machine hits both."""

    timer: Any
    best_batch: dict[str, int]
    passes_s: dict[str, list[float]] = field(default_factory=dict)

    def time_passes(self) -> None:
        """Each pass's median of up to PASS_REPEATS timings (within PASS_REPEAT_S): the first pass after
        a long call of the cell can read cold, and a single sub-millisecond timing is noisy."""
        for kind, batch in self.best_batch.items():
            times = [self.timer(kind, batch)]
            while len(times) < PASS_REPEATS and sum(times) < PASS_REPEAT_S:
                times.append(self.timer(kind, batch))
            self.passes_s.setdefault(kind, []).append(statistics.median(times))

    def record(self, cell_median_s: float, rounds: int) -> dict[str, Any]:
        return {
            "rounds": rounds,
            "cell_median_s": cell_median_s,
            **{
                f"{kind}_s_per_sample": statistics.median(times) / self.best_batch[kind]
                for kind, times in self.passes_s.items()
            },
            "best_batch_size": dict(self.best_batch),
            "interleaved": "before each timed round of the cell, each pass timed (median of up to 3)",
        }


def block_rounds(rounds: int, passes: int) -> int:
    """Rounds of each later pass's block: the first pass's rounds shared out, at least one."""
    return max(1, math.ceil(rounds / passes))


def time_block(call: Callable[[], Any], rounds: int) -> list[float]:
    """`rounds` timed calls (the call synchronises its device), as pytest-benchmark times a round."""
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def measure_cell(
    config: RunConfig,
    benchmark: Any,
    preset: Preset,
    calibrations: CalibrationCache,
    slowdown: float = 1.0,
    fault: str | None = None,
    progress: RunProgress | None = None,
) -> CellOutcome:
    """Time, profile and score one cell; never raises for a failing method.

    `slowdown` > 1 and `fault` inject faults (see attrib_core/suite/faults.py) and are recorded in the cell.
    """
    key = cell_key(config)
    info: dict[str, Any] = {
        "schema_version": schema.SCHEMA_VERSION,
        "cell_key": key,
        "cell": schema.cell_record(config),
    }
    benchmark.group = schema.record_group(info["cell"])
    info["status"] = "incomplete"  # stays so if the run is interrupted (Ctrl-C) part-way through the cell
    if slowdown != 1.0:
        info["injected_slowdown"] = slowdown
    if fault is not None:
        info["injected_fault"] = fault
    benchmark.extra_info.update(info)
    phases = Phases(progress)
    info["phase_s"] = phases.seconds  # where a cell's wall time goes: measurement vs the rest
    try:
        with phases("prepare"):
            prepared = prepare(config)
            info.update(
                method_kind=prepared.spec.kind,
                method_family=prepared.spec.family,
                resolved_knobs=schema.jsonable_knobs(prepared.knobs),
                knob_labels={name: prepared.spec.knob_labels[name] for name in prepared.knobs},
                weights=prepared.workload.weights,
                passes={
                    **asdict(prepared.passes),
                    "backward_kind": limit.KIND_OF_REACH[prepared.spec.backward_reach],
                },
                threads=torch.get_num_threads(),
            )
            if "example_tokens" in prepared.workload.info:  # the words under the gallery's per-token map
                info["example_tokens"] = list(prepared.workload.info["example_tokens"])
            call = measure.synchronized(prepared, config.device)
            if slowdown != 1.0:
                call = slowed_down(call, slowdown)
            if fault is not None:
                call = faulty(call, fault)
        with phases("first_call"), limit.rows_per_call(prepared.workload_model) as call_rows:
            result = call()
            if not torch.isfinite(result.attributions).all():
                raise NonFiniteAttributions(f"{key}: attributions contain NaN or Inf")
        with phases("calibration"):
            info["calibration"] = calibrations.get(prepared, max(call_rows, default=config.batch_size))
            pairing = calibrations.pairing(prepared, info["calibration"])
        with phases("timing"):
            rule = RoundRule.of(preset.timing)
            warmup = preset.timing.warmup_rounds
            stopper = RoundStopper(rule, lambda: benchmark.stats.stats.data, pairing.time_passes)
            counted = counting(call, rule.max_rounds + warmup, progress, phases.seconds["first_call"])
            with suppress(EnoughRounds):  # ended early: the rounds timed so far are in benchmark.stats
                benchmark.pedantic(counted, setup=stopper, rounds=rule.max_rounds, warmup_rounds=warmup, iterations=1)
            samples = list(benchmark.stats.stats.data)
            rounds = len(samples)
            info["timing"] = {"rounds": rounds, "warmup_rounds": warmup, **stopper.record(samples)}
            paired = pairing.record(benchmark.stats.stats.median, rounds)  # a copy: the calibration is shared
            info["calibration"] = {**info["calibration"], "paired": paired}
            if preset.timing.passes > 1:  # the first pass's rounds are its first block; later passes add theirs
                info["blocks"] = [{"pass": 1, "samples_s": samples}]
        with phases("memory"):
            reading = measure.peak_memory(prepared, config.device)
            info["memory"] = asdict(reading)
        with phases("fidelity"):
            if prepared.workload.weights == "random" and preset.fidelity_options.get("random_weights") == "skip":
                info["fidelity"] = {
                    name: {"status": "not_meaningful", "reason": f"{RANDOM_WEIGHTS}; not computed", "value": None}
                    for name in preset.fidelity_metrics
                }
            else:
                records = fidelity.evaluate_fidelity(
                    prepared,
                    result,
                    metrics=preset.fidelity_metrics,
                    on_metric=progress.set_detail if progress is not None else None,
                    **preset.fidelity_options,
                )
                info["fidelity"] = meaningful_fidelity(records, prepared.workload.weights)
        info["status"] = "ok"
        info["error"] = None
        benchmark.extra_info.update(info)
        first_map = gallery_map(result.attributions, prepared.inputs)
        later = block_rounds(rounds, preset.timing.passes) if preset.timing.passes > 1 else 0
        return CellOutcome(key, "ok", info, benchmark.stats.stats.median, reading.peak_bytes, first_map, call, later)
    except Exception as exc:  # recorded, not raised: one bad cell must not stop the sweep
        if isinstance(exc, torch.cuda.OutOfMemoryError):
            torch.cuda.empty_cache()
        status = "not_applicable" if isinstance(exc, NotApplicable) else "failed"
        info["status"] = status
        info["error"] = f"{phases.current}: {type(exc).__name__}: {exc}"
        if status == "failed":
            info["traceback"] = traceback.format_exc(limit=6)
        benchmark.extra_info.update(info)
        return CellOutcome(key, status, info)


COUNT_ROUNDS_ABOVE_S = 0.05  # count rounds only where a microsecond per call is below 0.002%


def counting(
    call: Callable[[], Any], calls: int, progress: RunProgress | None, first_call_s: float
) -> Callable[[], Any]:
    """`call`, telling the progress display which of the `calls` timed calls is running. The count
    costs about a microsecond inside each timed call, so only calls long enough for it to vanish
    are counted; shorter ones finish their rounds within seconds anyway."""
    if progress is None or first_call_s < COUNT_ROUNDS_ABOVE_S:
        return call
    made = 0

    def counted() -> Any:
        nonlocal made
        made += 1
        progress.set_detail(f"{made} of at most {calls}")
        return call()

    return counted


class Phases:
    """Times named phases of a cell and remembers which one is running (for error messages and
    the progress display)."""

    def __init__(self, progress: RunProgress | None = None) -> None:
        self.current = "prepare"
        self.seconds: dict[str, float] = {}
        self.progress = progress

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.current = name
        if self.progress is not None:
            self.progress.set_phase(name)
        started = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - started
