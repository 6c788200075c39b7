"""The search for one method: the state its stages share, the default it starts from, and the order
of its stages (fidelity_stage, then speed_stage per axis)."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch

from attrib_core.methods import CostInput
from attrib_core.run import RunConfig
from attrib_core.sweep import cell_key
from attrib_core.tune.fidelity_stage import fidelity_stage
from attrib_core.tune.measurer import Measurer
from attrib_core.tune.memory import (
    PREDICTION_MARGIN,
    PROBE_VALUES,
    MemoryModel,
    chunk_rows,
    fit,
    held_bytes_per_row,
)
from attrib_core.tune.records import Candidate, MethodTuning, Pruned, knob_text, quality_text
from attrib_core.tune.request import TARGET_KINDS, Quality, TargetUnreachable, TuneError, TuneRequest
from attrib_core.tune.space import MethodSpace, batching_values, probe_knobs
from attrib_core.tune.speed_stage import SPEED_AXES, race
from attrib_core.workloads import load_workload

# A bound within this factor of the reference's own estimated error is too fine to judge against it:
# the estimate is rough (on resnet18 IG, 512 steps were 9.0e-5 from 256 and 1.1e-4 from 1024).
RESOLUTION_MARGIN = 2.0


class Search:
    """The staged search for one method (see the module docstring)."""

    def __init__(
        self,
        request: TuneRequest,
        space: MethodSpace,
        measurer: Measurer | None = None,
        clock: Callable[[], float] = time.perf_counter,
        log: Callable[[str], None] = print,
        reference_resolution: float | None = None,
    ) -> None:
        self.request, self.space, self.spec = request, space, space.spec
        self.reference_resolution = reference_resolution
        self.clock, self.log = clock, log
        self.started = clock()
        self.workload = load_workload(request.workload)
        self.input_shape = tuple(self.workload.inputs.shape[1:])
        self.measurer = measurer
        self.tried: list[Candidate] = []
        self.by_identity: dict[tuple, Candidate] = {}
        self.pruned: list[Pruned] = []
        self.notes: list[str] = []
        self.memory_models: dict[tuple[str, str], MemoryModel] = {}
        self.passes_s: dict[tuple, float] = {}  # configuration -> model-pass time of one whole call (screen)
        self.default_threads = torch.get_num_threads()
        self.bound = math.inf if TARGET_KINDS[request.target.kind].lower_is_better else -math.inf  # until measured

    # --- bookkeeping -------------------------------------------------------------------------

    def elapsed_s(self) -> float:
        return self.clock() - self.started

    def candidate(self, cand: Candidate) -> Candidate:
        """The one Candidate per configuration (measurements accumulate on it)."""
        if cand.identity not in self.by_identity:
            self.by_identity[cand.identity] = cand
        return self.by_identity[cand.identity]

    def run_first(self, cand: Candidate) -> Candidate:
        cand = self.candidate(cand)
        if cand not in self.tried:
            self.tried.append(cand)
        self.measurer.first(cand)
        if cand.status == "ok" and cand.quality is not None:
            cand.meets_target = self.space_target_met(cand)
        return cand

    def space_target_met(self, cand: Candidate) -> bool:
        return self.request.target.meets(cand.quality, self.bound)

    def cost_input(self, config: RunConfig) -> CostInput:
        layer_shape = self.workload.layer_shape if self.spec.layer_units_are_features else ()
        return CostInput(
            config.batch_size, config.knobs, self.input_shape, self.workload.n_features, False, layer_shape
        )

    def units(self, config: RunConfig) -> float:
        """Cost-model work of a call: a backward pass counts as two forwards."""
        passes = self.spec.cost(self.cost_input(config))
        return passes.forward + 2 * passes.backward

    def total_rows(self, config: RunConfig) -> int:
        passes = self.spec.cost(self.cost_input(config))
        return max(passes.forward, passes.backward)

    # --- memory ------------------------------------------------------------------------------

    def held_bytes_per_row(self) -> float:
        return held_bytes_per_row(self.spec, self.workload.inputs[0])

    def memory_model(self, precision: str, memory_format: str) -> MemoryModel:
        """Fitted from two probes at small chunks (cheapest fidelity setting), once per precision and format."""
        key = (precision, memory_format)
        if key in self.memory_models:
            return self.memory_models[key]
        base = self._config(
            probe_knobs(self.spec, self.space.default_knobs, self.input_shape),
            precision=precision,
            memory_format=memory_format,
        )
        name = self.spec.batching_knobs[0] if self.spec.batching_knobs else None
        probes = []
        for value in PROBE_VALUES[name](base.batch_size) if name else (None,):
            config = base if value is None else dataclasses.replace(base, knobs={**base.knobs, name: value})
            peak = self.measurer.memory(Candidate(config, self.default_threads, phase="memory_probe"))
            probes.append((chunk_rows(self.spec, config.knobs, self.cost_input(config)), self.total_rows(config), peak))
        model = fit(probes, self.held_bytes_per_row())
        self.memory_models[key] = model
        self.log(
            f"    memory model {precision}/{memory_format}: {model.fixed_bytes / 2**20:.1f} MiB + "
            f"{model.per_row_bytes / 2**20:.2f} MiB per row per call (probes at chunks {[p[0] for p in probes]})"
        )
        return model

    def predicted_bytes(self, cand: Candidate) -> int:
        config = cand.config
        model = self.memory_model(config.precision, config.memory_format)
        return model.predict(chunk_rows(self.spec, config.knobs, self.cost_input(config)), self.total_rows(config))

    def fits(self, cand: Candidate) -> bool:
        budget = self.request.memory_budget_bytes
        return budget is None or self.predicted_bytes(cand) * PREDICTION_MARGIN <= budget

    def within_budget(self, cand: Candidate, why: str) -> bool:
        budget = self.request.memory_budget_bytes
        cand.predicted_peak_bytes = self.predicted_bytes(cand)
        if budget is None or cand.predicted_peak_bytes * PREDICTION_MARGIN <= budget:
            return True
        self.pruned.append(
            Pruned.of(
                cand,
                f"over the memory budget ({why})",
                predicted_peak_bytes=cand.predicted_peak_bytes,
                budget_bytes=budget,
            )
        )
        return False

    # --- configurations ----------------------------------------------------------------------

    def _config(self, knobs: Mapping[str, Any], **options: Any) -> RunConfig:
        return RunConfig(
            self.spec.name,
            self.request.workload,
            self.request.device,
            self.request.batch_size,
            dict(knobs),
            seed=self.request.seed,
            **options,
        )

    def fitting_batching(self, knobs: Mapping[str, Any]) -> Candidate | None:
        """The setting with the largest chunk of its batching knob that the memory model allows."""
        base = Candidate(self._config(knobs), self.default_threads, phase="fidelity")
        if not self.spec.batching_knobs or self.spec.batching_knobs[0] in self.space.fixed:
            return base if self.within_budget(base, "fidelity setting") else None
        name = self.spec.batching_knobs[0]
        values = batching_values(self.spec, base.config.knobs, base.config.batch_size, self.total_rows(base.config))
        default_value = self.space.default_knobs[name]
        ordered = [default_value] + [v for v in values if v != default_value] if default_value is not None else values
        for value in ordered:
            cand = base.with_("fidelity", knobs={name: value})
            if self.within_budget(cand, "fidelity setting, largest chunk that fits"):
                return cand
        return None

    # --- stages ------------------------------------------------------------------------------

    def measure_default(self) -> Candidate:
        default = Candidate(self._config(self.space.default_knobs), self.default_threads, phase="default")
        if not self.within_budget(default, "Captum's default"):
            self.notes.append(
                f"Captum's default needs about {default.predicted_peak_bytes / 2**20:.0f} MiB (predicted), over the "
                "budget: it is timed anyway as the baseline of the comparison"
            )
        default = self.run_first(default)
        if default.status != "ok":
            raise TuneError(f"{self.spec.name}: Captum's default configuration fails: {default.error}")
        self.bound = self.request.target.bound(default.quality)
        default.meets_target = self.space_target_met(default)
        self.check_resolution()
        return default  # its first call's time stands for it in the search; the final comparison times it

    def check_resolution(self) -> None:
        """Warn when the error bound is about as fine as the reference's own error: then a setting passes
        or misses by the reference's error as much as by its own."""
        resolution = self.reference_resolution
        if self.request.target.kind != "max_error" or resolution is None:
            return
        if self.bound >= RESOLUTION_MARGIN * resolution:
            return
        self.notes.append(
            f"the error bound {self.bound:.3g} is within {RESOLUTION_MARGIN:g}x of the reference's own error (about "
            f"{resolution:.2g}): errors this small cannot be told apart, so settings near the bound pass or miss "
            f"by chance; a bound of {RESOLUTION_MARGIN * resolution:.2g} or more (--max-error), or a finer reference "
            "(--reference-steps), measures what is meant"
        )
        self.log(f"    warning: {self.notes[-1]}")

    def check_reachable(self, default: Candidate) -> None:
        """With an explicit target the default may miss, try the most accurate setting of its chain first."""
        if default.meets_target:
            return
        chain = self.space.chain_key(default.config.knobs)
        same_chain = [k for k in self.space.fidelity_settings if self.space.chain_key(k) == chain]
        dearest = max(same_chain, key=lambda k: self.units(self._config(k)))
        best = default
        cand = self.fitting_batching(dearest)
        if cand is not None:
            cand = self.run_first(cand)
            if cand.quality is not None and cand.meets_target:
                return
            if cand.quality is not None and self._better(cand.quality, best.quality):
                best = cand
        kind = TARGET_KINDS[self.request.target.kind]
        reached = getattr(best.quality, kind.field)
        raise TargetUnreachable(
            f"{self.spec.name}: no configuration meets the fidelity target "
            f"({self.request.target.describe(self.bound)}); "
            f"best reached: {kind.field}={reached:.4g} with {cell_key(best.config)} "
            f"(the most accurate setting tried: {knob_text(dearest)}); relax --max-error / --min-spearman"
        )

    def _better(self, a: Quality, b: Quality) -> bool:
        kind = TARGET_KINDS[self.request.target.kind]
        va, vb = getattr(a, kind.field), getattr(b, kind.field)
        return va < vb if kind.lower_is_better else va > vb

    def seconds_per_unit(self, reference: Candidate) -> float:
        return reference.time_estimate_s / max(self.units(reference.config), 1)

    def out_of_time(self, predicted_s: float, share: float = 1.0, stage: str = "search") -> bool:
        """Whether a measurement predicted to take `predicted_s` would overrun `share` of the time budget."""
        if self.elapsed_s() + predicted_s <= share * self.request.time_budget_s:
            return False
        note = (
            f"{stage}: {share:.0%} of the {self.request.time_budget_s:g} s time budget reached after "
            f"{self.elapsed_s():.0f} s; {stage} stopped"
        )
        if note not in self.notes:
            self.notes.append(note)
        return True

    def release_outputs(self, keep: Candidate) -> None:
        """Drop stored outputs except `keep`'s (the next axis compares against it): large batches add up."""
        for cand in self.tried:
            if cand is not keep:
                cand.attributions = None

    def run(self) -> MethodTuning:
        self.log(f"  {self.spec.name}: Captum's default {knob_text(self.space.default_knobs)}")
        default = self.measure_default()
        self.log(f"    default: {default.time_estimate_s:.3g} s (first call), {quality_text(default)}")
        self.check_reachable(default)
        path: list[tuple[str, Candidate]] = [("default", default)]
        current = fidelity_stage(self, default)
        path.append(("fewer steps", current))
        for axis in SPEED_AXES:
            if self.out_of_time(0):
                break
            current = race(self, axis, current)
            path.append((axis, current))
        return MethodTuning(
            self.spec.name,
            default,
            current,
            path,
            self.tried,
            self.pruned,
            self.bound,
            self.request.target.describe(self.bound),
            self.elapsed_s(),
            self.notes,
            {f"{p}/{f}": dataclasses.asdict(m) for (p, f), m in self.memory_models.items()},
            self.reference_resolution,
        )
