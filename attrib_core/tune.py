"""Tune: the fastest setting of a method that meets a fidelity target within a memory budget.

The search must cost less than it saves, so it is staged and pruned:

1. Before anything runs: every input is checked (unknown method or knob, a budget below one
   forward pass of the model, a target no setting reaches: the most accurate setting of the
   default's chain is tried first and the error names the best it reached).
2. Fidelity: settings (steps x rule, samples, window) are walked per rule from cheap to dear
   in cost-model order; a chain stops at its first setting that meets the target (more
   passes cannot be faster), and a setting whose predicted time exceeds the best found is
   never run. The winner is the one with the fewest predicted passes.
3. Speed, one axis at a time from that setting: batching knob, memory format, precision,
   threads, torch.compile. Each axis is a successive-halving race (one timed call each, the
   faster half gets more calls, ...). Batching values are walked in order (time against chunk
   size is U-shaped) and the walk stops once one is clearly slower than the best so far. A
   configuration whose predicted peak memory (the measured per-row slope, tune_memory) exceeds
   the budget is never run; one whose error misses the target (bf16 can) is dropped after its
   first call, except that an option that only reorders the sums (batching, layout, threads,
   compile) meets a default-relative target by giving the same output (judge_same_result).
   When one call takes SCREEN_ABOVE_S or more (resnet18 Occlusion: 20-30 s), racing whole calls
   would spend the budget on two axes, so each axis is ranked first by its model passes timed
   at the candidate's chunk size (tune_screen), and only the neighbour ranked first gets a
   whole call, which must meet the target and beat the current one.
4. Final: default, each step of the path and the tuned setting are timed interleaved in one
   window, so the speedup and the share of it from each axis are measured under one load.

Every configuration tried becomes a record of an ordinary results file (tune_output).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from attrib_core import measure, tune_screen
from attrib_core.applicability import unsupported_reason
from attrib_core.fidelity_metrics import FidelityOptions, reference_error
from attrib_core.fidelity_references import reference_attributions
from attrib_core.methods import CostInput, KnobError, MethodSpec, get_method
from attrib_core.run import MEMORY_FORMATS, PRECISIONS, NotApplicable, PreparedRun, RunConfig, prepare
from attrib_core.sweep import cell_key
from attrib_core.tune_memory import PREDICTION_MARGIN, PROBE_VALUES, MemoryBudgetError, MemoryModel, chunk_rows, fit
from attrib_core.tune_space import MethodSpace, batching_values, fidelity_settings, probe_knobs, valid_settings
from attrib_core.workloads import load_workload, workload_spec

SPEED_AXES = ("batching", "memory_format", "precision", "threads", "compile")
SAME_MATH_AXES = ("batching", "memory_format", "threads", "compile")  # change how it is computed, not what
# Relative L2 distance under which a same-math option's output is the same attribution as the setting it
# changes. Measured here (IG, 50 steps): another fp32 reduction order (channels_last, torch.compile) moves
# resnet18's attributions by 5.6e-5 and shapes_resnet18's by 2.9e-5 to 4.9e-5, thread count and chunking
# by < 1e-7; bf16's rounding alone is 3.9e-3, and a hook that breaks the gradient moves them by O(1).
SAME_RESULT_TOLERANCE = 1e-3
# A bound within this factor of the reference's own estimated error is too fine to judge against it:
# the estimate is rough (on resnet18 IG, 512 steps were 9.0e-5 from 256 and 1.1e-4 from 1024).
RESOLUTION_MARGIN = 2.0
PRECISIONS_BY_DEVICE = {"cpu": ("fp32", "bf16"), "cuda": ("fp32", "bf16", "fp16")}
FINAL_RACE_CALLS = 3  # calls each of the last two in a race get before the faster one wins
COMPILE_RESERVE_S = 60.0  # try torch.compile only with this much of the time budget left (compiling takes long)
FIDELITY_BUDGET_SHARE = 0.5  # the fidelity stage stops at half the time budget, leaving the rest to the speed axes
EXTRAPOLATION_MARGIN = 4.0  # cut a chain only when its extrapolated cost is this many times the best found
MIN_CHAIN_POINTS = 3  # settings of a chain measured before its convergence rate is trusted
BATCHING_TURN = 1.15  # a batching value this much slower than the axis's best so far: the curve has turned
SCREEN_ABOVE_S = 5.0  # calls this long are ranked by their model passes first (tune_screen), one whole call per axis
PROBE_SHARE = 0.1  # a probe may spend this share of one whole call of the current setting, per kind of pass


class TuneError(ValueError):
    """Bad input to tune, reported before any search runs."""


class TargetUnreachable(TuneError):
    """No setting meets the fidelity target; the message names the best one reached."""


# --- the fidelity target ------------------------------------------------------------------


@dataclass(frozen=True)
class Quality:
    """Agreement of one configuration's attributions with the reference (mean over examples)."""

    rel_error: float  # ||a - ref|| / ||ref||
    spearman: float


@dataclass(frozen=True)
class TargetKind:
    field: str
    lower_is_better: bool
    label: str


TARGET_KINDS = {
    "max_error": TargetKind("rel_error", True, "relative L2 error against the reference"),
    "min_spearman": TargetKind("spearman", False, "Spearman rank correlation with the reference"),
}


@dataclass(frozen=True)
class FidelityTarget:
    """`value` None means "no worse than Captum's default", measured in the same run; `tolerance`
    widens that bound by a relative amount (fp32 sums in a different order differ by ~1e-6)."""

    kind: str = "max_error"
    value: float | None = None
    tolerance: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in TARGET_KINDS:
            raise TuneError(f"unknown fidelity target {self.kind!r}; valid: {', '.join(TARGET_KINDS)}")
        if self.value is not None and (not math.isfinite(self.value) or self.value < 0):
            raise TuneError(f"fidelity target {self.kind}={self.value!r} is not valid; expected a number >= 0")
        if not 0 <= self.tolerance < 1:
            raise TuneError(f"error tolerance {self.tolerance!r} is not valid; expected 0 <= tolerance < 1")

    def bound(self, default: Quality) -> float:
        if self.value is not None:
            return self.value
        base = getattr(default, TARGET_KINDS[self.kind].field)
        return base * (1 + self.tolerance) if TARGET_KINDS[self.kind].lower_is_better else base * (1 - self.tolerance)

    def meets(self, quality: Quality | None, bound: float) -> bool:
        if quality is None:
            return False
        value = getattr(quality, TARGET_KINDS[self.kind].field)
        if not math.isfinite(value):
            return False
        return value <= bound if TARGET_KINDS[self.kind].lower_is_better else value >= bound

    def describe(self, bound: float) -> str:
        kind = TARGET_KINDS[self.kind]
        relation = "<=" if kind.lower_is_better else ">="
        origin = "" if self.value is not None else f" (Captum's default, tolerance {self.tolerance:g})"
        return f"{kind.label} {relation} {bound:.4g}{origin}"


# --- the request ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TuneRequest:
    workload: str
    methods: tuple[str, ...]
    target: FidelityTarget = FidelityTarget()
    batch_size: int = 1
    device: str = "cpu"
    memory_budget_bytes: int | None = None
    time_budget_s: float = 180.0  # per method, search only (the final comparison comes on top)
    fixed: Mapping[str, Any] = field(default_factory=dict)  # knobs held at a value (e.g. the tutorial's window)
    precisions: tuple[str, ...] | None = None  # None: every precision autocast offers on the device
    memory_formats: tuple[str, ...] | None = None
    threads: tuple[int, ...] | None = None  # None: 1 and the current count
    compile: bool = True
    reference_steps: int = 512
    final_rounds: int = 3
    seed: int = 0


# --- one configuration ---------------------------------------------------------------------


@dataclass
class Candidate:
    """One configuration tried, and everything measured on it."""

    config: RunConfig
    threads: int
    compiled: bool = False
    phase: str = ""
    times_s: list[float] = field(default_factory=list)
    first_call_s: float | None = None
    quality: Quality | None = None
    meets_target: bool = False
    peak_bytes: int | None = None
    predicted_peak_bytes: int | None = None
    predicted_s: float | None = None  # a whole call predicted from its model passes (Search.screen), if screened
    same_result_distance: float | None = None  # on a same-math axis: its output's distance from the setting it changed
    attributions: torch.Tensor | None = field(default=None, repr=False, compare=False)  # first output, while needed
    passes: dict[str, int] | None = None
    status: str = "ok"
    error: str | None = None

    @property
    def identity(self) -> tuple:
        return (self.config, self.threads, self.compiled)

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s) if self.times_s else math.inf

    @property
    def time_estimate_s(self) -> float:
        """The median of timed calls, else the first call's time (fidelity settings run once; it includes warm-up)."""
        if self.times_s:
            return self.median_s
        return self.first_call_s if self.first_call_s is not None else math.inf

    @property
    def compile_s(self) -> float | None:
        if not self.compiled or self.first_call_s is None or not self.times_s:
            return None
        return max(0.0, self.first_call_s - self.median_s)

    def with_(self, phase: str, threads: int | None = None, compiled: bool | None = None, **config: Any) -> Candidate:
        knobs = config.pop("knobs", None)
        new_config = dataclasses.replace(self.config, **config)
        if knobs is not None:
            new_config = dataclasses.replace(new_config, knobs={**self.config.knobs, **knobs})
        return Candidate(
            new_config,
            self.threads if threads is None else threads,
            self.compiled if compiled is None else compiled,
            phase=phase,
        )


# --- measuring -----------------------------------------------------------------------------


class Measurer:
    """Runs configurations: prepared runs cached, threads set per call, quality against one reference."""

    def __init__(self, reference: torch.Tensor | None, clock: Callable[[], float] = time.perf_counter) -> None:
        self.reference = reference
        self.clock = clock
        self._prepared: dict[tuple, PreparedRun] = {}
        self.compile_failures: dict[tuple, str] = {}

    def prepared(self, cand: Candidate) -> PreparedRun:
        key = (cand.config, cand.compiled)
        if key not in self._prepared:
            run = prepare(cand.config)
            if cand.compiled:
                run = _compiled(run)
            self._prepared[key] = run
        return self._prepared[key]

    def call(self, cand: Candidate) -> tuple[float, torch.Tensor]:
        run = self.prepared(cand)
        with measure.threads_for(cand.threads):
            call = measure.synchronized(run, cand.config.device)
            start = self.clock()
            result = call()
            return self.clock() - start, result.attributions

    def first(self, cand: Candidate) -> None:
        """The first call: warms up (and compiles), gives the attributions that quality is scored on."""
        if cand.first_call_s is not None or cand.status != "ok":
            return
        try:
            cand.passes = dataclasses.asdict(self.prepared(cand).passes)
            cand.first_call_s, attributions = self.call(cand)
        except Exception as exc:  # a configuration that breaks (torch.compile under Captum's hooks) is recorded
            cand.status, cand.error = "failed", f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
            return
        if not torch.isfinite(attributions).all():
            cand.status, cand.error = "failed", "attributions contain NaN or Inf"
            return
        if self.reference is None:
            self.reference = attributions  # no reference recipe: the default's own output is the yardstick
        agreement = reference_error(attributions, self.reference)
        cand.quality = Quality(_nanmean(agreement.rel_l2), _nanmean(agreement.spearman))
        cand.attributions = attributions

    def timed(self, cand: Candidate, calls: int) -> None:
        self.first(cand)
        for _ in range(calls):
            if cand.status != "ok":
                return
            cand.times_s.append(self.call(cand)[0])

    def predict(self, cand: Candidate, chunk: int, budget_s: float) -> float:
        """The model-pass time of one whole call, its passes timed at `chunk` rows (tune_screen)."""
        with measure.threads_for(cand.threads):
            return tune_screen.probe(self.prepared(cand), chunk, budget_s, self.clock)["predicted_s"]

    def memory(self, cand: Candidate) -> int:
        run = self.prepared(cand)
        with measure.threads_for(cand.threads):
            cand.peak_bytes = measure.peak_memory(run, cand.config.device).peak_bytes
        return cand.peak_bytes


def _nanmean(values: torch.Tensor) -> float:
    finite = values[torch.isfinite(values)]
    return float(finite.mean()) if len(finite) else math.nan


def _relative_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b||, averaged over examples: the rel_error measure, between any two outputs."""
    return _nanmean(reference_error(a, b).rel_l2)


def _compiled(run: PreparedRun) -> PreparedRun:
    """The same run through torch.compile'd model; Captum's attributor is rebuilt around it."""
    compiled = torch.compile(run.model)
    layer = run.workload_model.get_submodule(run.workload.layer_name) if run.spec.kind != "feature" else None
    return dataclasses.replace(run, model=compiled, attributor=run.spec.build(compiled, layer))


# --- the search ----------------------------------------------------------------------------


@dataclass
class MethodTuning:
    """What tune found for one method."""

    method: str
    default: Candidate
    tuned: Candidate
    path: list[tuple[str, Candidate]]  # (axis changed, configuration after it), default first
    tried: list[Candidate]  # every configuration run, in order
    pruned: list[dict[str, Any]]  # configurations never run: over the memory budget or predicted too slow
    target_bound: float
    target_text: str
    search_s: float
    notes: list[str]
    memory_models: dict[str, dict[str, float]]
    reference_resolution: float | None = None  # the reference's own estimated error, where estimated

    def pareto_front(self) -> list[Candidate]:
        """Configurations no other beats on both time and error (time: median, or a fidelity setting's one call)."""
        pts = [c for c in self.tried if c.status == "ok" and c.quality is not None and c.first_call_s is not None]
        pts.sort(key=lambda c: (c.time_estimate_s, c.quality.rel_error))
        front, best = [], math.inf
        for c in pts:
            if c.quality.rel_error < best:
                front.append(c)
                best = c.quality.rel_error
        return front


def check_request(request: TuneRequest) -> dict[str, MethodSpace]:
    """Every input check, before any model call: raises TuneError / KnobError naming what is valid."""
    if not request.methods:
        raise TuneError("no method to tune; name one or more with --method")
    wspec = workload_spec(request.workload)  # unknown workload: names the known ones
    device = request.device.split(":")[0]
    valid_precisions = PRECISIONS_BY_DEVICE.get(device, ("fp32",))
    precisions = request.precisions or valid_precisions
    for p in precisions:
        if p not in PRECISIONS or p not in valid_precisions:
            raise TuneError(f"precision {p!r} is not available on {device}; valid: {', '.join(valid_precisions)}")
    valid_formats = tuple(MEMORY_FORMATS) if wspec.is_image else ("contiguous",)
    formats = request.memory_formats or valid_formats
    for f in formats:
        if f not in valid_formats:
            raise TuneError(
                f"memory format {f!r} is not valid for {request.workload!r}; valid: {', '.join(valid_formats)}"
            )
    threads = request.threads or tuple(sorted({1, torch.get_num_threads()}))
    for t in threads:
        if isinstance(t, bool) or not isinstance(t, int) or t < 1:
            raise TuneError(f"threads {t!r} is not valid; expected integers >= 1")
    if request.time_budget_s <= 0:
        raise TuneError(f"time budget {request.time_budget_s!r} s is not valid; expected a positive number of seconds")
    if request.batch_size < 1:
        raise TuneError(f"batch size {request.batch_size!r} is not valid; expected an integer >= 1")
    spaces = {}
    for name in request.methods:
        spec = get_method(name)  # unknown method: names the known ones
        reason = unsupported_reason(spec, wspec)
        if reason:
            raise TuneError(reason)
        unknown = [k for k in request.fixed if k not in spec.knob_names]
        if unknown:
            raise KnobError(
                f"unknown knob {unknown[0]!r} for {spec.name}; valid knobs: {', '.join(spec.knob_names) or 'none'}"
            )
        default_knobs = spec.resolve_knobs(spec.workload_defaults(wspec), request.fixed)
        workload = load_workload(request.workload)
        input_shape = tuple(workload.inputs.shape[1:])
        settings, chain = fidelity_settings(spec, default_knobs, frozenset(request.fixed), input_shape)
        spaces[name] = MethodSpace(
            spec,
            default_knobs,
            frozenset(request.fixed),
            valid_settings(spec, settings),
            chain,
            tuple(precisions),
            tuple(formats),
            tuple(threads),
            request.compile,
        )
    return spaces


def one_pass_bytes(workload: str, batch_size: int, device: str) -> int:
    """Peak memory of one plain forward pass of the workload's model: no attribution fits in less."""
    loaded = load_workload(workload)
    inputs = loaded.batch(batch_size)[0].to(device)
    model = loaded.model.to(device)

    def forward() -> None:
        with torch.no_grad():
            model(inputs)

    return measure.peak_memory(forward, device).peak_bytes


def check_budget(request: TuneRequest) -> int | None:
    """A budget below one forward pass of the model is refused (before any search)."""
    if request.memory_budget_bytes is None:
        return None
    needed = one_pass_bytes(request.workload, request.batch_size, request.device)
    if request.memory_budget_bytes < needed:
        raise MemoryBudgetError(
            f"memory budget {request.memory_budget_bytes} bytes ({request.memory_budget_bytes / 2**20:.1f} MiB) is "
            f"smaller than one forward pass of {request.workload!r} at batch {request.batch_size} "
            f"({needed} bytes, {needed / 2**20:.1f} MiB); no attribution can run in it"
        )
    return needed


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
        self.pruned: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.memory_models: dict[tuple[str, str], MemoryModel] = {}
        self._passes_s: dict[tuple, float] = {}  # configuration -> model-pass time of one whole call (screening)
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
        return CostInput(config.batch_size, config.knobs, self.input_shape, self.workload.n_features, False)

    def units(self, config: RunConfig) -> float:
        """Cost-model work of a call: a backward pass counts as two forwards."""
        passes = self.spec.cost(self.cost_input(config))
        return passes.forward + 2 * passes.backward

    def total_rows(self, config: RunConfig) -> int:
        passes = self.spec.cost(self.cost_input(config))
        return max(passes.forward, passes.backward)

    # --- memory ------------------------------------------------------------------------------

    def held_bytes_per_row(self) -> float:
        row = self.workload.inputs[:1]
        per_row = row.numel() * row.element_size()
        return 2.0 * per_row if self.spec.family == "gradient" else 0.0  # scaled inputs and their gradients

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
            {
                "cell_key": cell_key(cand.config),
                "threads": cand.threads,
                "compiled": cand.compiled,
                "reason": f"over the memory budget ({why})",
                "predicted_peak_bytes": cand.predicted_peak_bytes,
                "budget_bytes": budget,
            }
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
            f"(the most accurate setting tried: {_knob_text(dearest)}); relax --max-error / --min-spearman"
        )

    def _same_setting(self, a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
        """Equal fidelity knobs (batching knobs aside)."""
        batching = set(self.spec.batching_knobs)
        return {k: v for k, v in a.items() if k not in batching} == {k: v for k, v in b.items() if k not in batching}

    def _better(self, a: Quality, b: Quality) -> bool:
        kind = TARGET_KINDS[self.request.target.kind]
        va, vb = getattr(a, kind.field), getattr(b, kind.field)
        return va < vb if kind.lower_is_better else va > vb

    def seconds_per_unit(self, reference: Candidate) -> float:
        return reference.time_estimate_s / max(self.units(reference.config), 1)

    def fidelity_stage(self, default: Candidate) -> Candidate:
        """The setting with the fewest predicted passes that meets the target (chains walked cheap to dear)."""
        per_unit = self.seconds_per_unit(default)
        best = None
        if default.meets_target:  # over the budget, the default's setting counts with a chunk that fits
            fitting = default if self.fits(default) else self.fitting_batching(default.config.knobs)
            best = self.run_first(fitting) if fitting is not None else None
        met = [c for c in self.tried if c.meets_target and self.fits(c)]  # e.g. check_reachable's probe
        if best is None and met:
            best = min(met, key=lambda c: self.units(c.config))
        chains: dict[tuple, list[dict[str, Any]]] = {}
        for knobs in sorted(self.space.fidelity_settings, key=lambda k: self.units(self._config(k))):
            chains.setdefault(self.space.chain_key(knobs), []).append(knobs)
        for chain in chains.values():
            history: list[tuple[float, float]] = []  # (cost units, error) measured along the chain
            for knobs in chain:
                if best is not None and self._same_setting(knobs, best.config.knobs):
                    continue  # the default's own setting, already measured
                needed = (
                    units_needed(history, self.bound)
                    if TARGET_KINDS[self.request.target.kind].lower_is_better
                    else None
                )
                if best is not None and needed is not None and needed > EXTRAPOLATION_MARGIN * self.units(best.config):
                    self.pruned.append(
                        {
                            "cell_key": cell_key(self._config(knobs)),
                            "reason": f"its chain converges too slowly: the error's power law through the chain's "
                            f"settings so far reaches the target at ~{needed:.0f} cost units, the best so far costs "
                            f"{self.units(best.config):.0f} (this setting and the chain's dearer ones not run)",
                        }
                    )
                    break
                predicted_s = self.units(self._config(knobs)) * per_unit
                if best is not None and self.units(self._config(knobs)) >= self.units(best.config):
                    self.pruned.append(
                        {
                            "cell_key": cell_key(self._config(knobs)),
                            "reason": "predicted slower than the best setting already meeting the target "
                            f"({predicted_s:.3g} s by the cost model)",
                        }
                    )
                    break  # the rest of this chain costs more still
                if self.out_of_time(predicted_s, FIDELITY_BUDGET_SHARE, "fidelity stage"):
                    break
                cand = self.fitting_batching(knobs)
                if cand is None:
                    continue
                cand = self.run_first(cand)
                self.log(f"    fidelity {_knob_text(knobs)}: {_quality_text(cand)}")
                if cand.quality is not None:
                    history.append((self.units(cand.config), cand.quality.rel_error))
                if cand.meets_target:
                    best = cand if best is None or self.units(cand.config) < self.units(best.config) else best
                    break  # the chain's dearer settings cannot be faster
        assert best is not None  # the default meets a "default" target; check_reachable vouched for others
        self.release_outputs(keep=best)
        return best

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

    def axis_candidates(self, axis: str, current: Candidate) -> list[Candidate]:
        config = current.config
        if axis == "batching":
            if not self.spec.batching_knobs:
                return []
            name = self.spec.batching_knobs[0]
            if name in self.space.fixed:
                return []
            values = batching_values(self.spec, config.knobs, config.batch_size, self.total_rows(config))
            return [current.with_(axis, knobs={name: v}) for v in values if v != config.knobs[name]]
        if axis == "memory_format":
            return [
                current.with_(axis, memory_format=f) for f in self.space.memory_formats if f != config.memory_format
            ]
        if axis == "precision":
            return [current.with_(axis, precision=p) for p in self.space.precisions if p != config.precision]
        if axis == "threads":
            return [current.with_(axis, threads=t) for t in self.space.threads if t != current.threads]
        if axis == "compile":
            if not self.space.compile or current.compiled:
                return []
            remaining = self.request.time_budget_s - self.elapsed_s()
            if remaining < COMPILE_RESERVE_S:
                self.notes.append(
                    f"torch.compile not tried: {remaining:.0f} s of the time budget left, under the "
                    f"{COMPILE_RESERVE_S:g} s a compile of a model this size can take"
                )
                return []
            return [current.with_(axis, compiled=True)]
        raise ValueError(f"unknown speed axis {axis!r}; valid: {', '.join(SPEED_AXES)}")

    def race(self, axis: str, current: Candidate) -> Candidate:
        """Successive halving among the current configuration and its neighbours on one axis; for long
        calls, only the neighbour its model passes rank first gets a whole call (`screen`)."""
        pool = [current]
        candidates = self.axis_candidates(axis, current)
        screened = self.screens(current)
        if screened:
            candidates = self.screen(axis, current, candidates)
        for index, cand in enumerate(candidates):
            if self.out_of_time(current.time_estimate_s):
                break
            if not self.within_budget(cand, f"{axis} axis"):
                continue
            cand = self.run_first(cand)
            if cand.status != "ok":
                self.log(f"    {axis} {_exec_text(cand)}: failed: {cand.error}")
                if cand.compiled:
                    self.notes.append(f"torch.compile does not work here: {cand.error}")
                continue
            if cand.predicted_s is not None:
                self.log(
                    f"    {axis} {_exec_text(cand)}: predicted {cand.predicted_s:.3g} s, took {cand.first_call_s:.3g} s"
                )
            if axis in SAME_MATH_AXES:
                self.judge_same_result(axis, cand, current)
            if not cand.meets_target:
                distance = cand.same_result_distance
                apart = "" if distance is None else f"; {distance:.2g} from the current output"
                self.log(f"    {axis} {_exec_text(cand)}: misses the target ({_quality_text(cand)}{apart})")
                continue
            pool.append(cand)
            if axis == "batching" and not screened and self.batching_turned(cand, pool, candidates[index + 1 :]):
                break
        # round one ranks by the first call, already made to check the error (on eager code its warm-up is
        # small); a compiled candidate's first call is its compile, so it gets one timed call instead
        for cand in pool:
            if cand.compiled and not cand.times_s and not self.out_of_time(current.time_estimate_s):
                self.measurer.timed(cand, 1)
        pool = sorted((c for c in pool if c.status == "ok"), key=lambda c: c.time_estimate_s)
        if len(pool) > 1:
            self._log_race(axis, "first call", pool)
        while len(pool) > 1 and not screened and not self.out_of_time(0):
            pool = pool[: max(2, math.ceil(len(pool) / 2))]  # the faster half races on with more calls
            calls = FINAL_RACE_CALLS if len(pool) <= 2 else 1
            for cand in pool:
                missing = calls - len(cand.times_s)
                if missing > 0 and not self.out_of_time(missing * cand.time_estimate_s):
                    self.measurer.timed(cand, missing)
            pool = sorted((c for c in pool if c.status == "ok"), key=lambda c: c.time_estimate_s)
            self._log_race(axis, f"{calls} timed call{'s' if calls > 1 else ''}", pool)
            if calls >= FINAL_RACE_CALLS:
                break
        winner = pool[0] if pool else current
        self.release_outputs(keep=winner)
        return winner

    def judge_same_result(self, axis: str, cand: Candidate, current: Candidate) -> None:
        """Hold an option that changes only how the attribution is computed to computing the same one.

        Against a target relative to Captum's default, its error against the reference cannot judge it:
        the reference was computed along the default's kernel path and shares its rounding, so another
        fp32 order reads worse by up to its own distance from the default. On resnet18 IG that distance
        (5.6e-5 for channels_last) is most of the default's error (9.6e-5), and channels_last read 1.2e-4,
        over the bound. So there it meets the target when its output is the current setting's to within
        SAME_RESULT_TOLERANCE. A number the user gave (--max-error, --min-spearman) is held literally."""
        if cand.attributions is None or current.attributions is None:
            return
        distance = _relative_distance(cand.attributions, current.attributions)
        cand.same_result_distance = distance
        if cand.meets_target or self.request.target.value is not None or not distance <= SAME_RESULT_TOLERANCE:
            return
        cand.meets_target = True
        self.log(f"    {axis} {_exec_text(cand)}: same attribution as the current setting to {distance:.2g}")
        if not self.request.target.meets(current.quality, self.bound):
            return  # the current setting was admitted this way already, and noted
        self.notes.append(
            f"{axis} {_exec_text(cand)}: error {cand.quality.rel_error:.3g} against the reference, over the "
            f"bound {self.bound:.4g}, but its output is {_exec_text(current)}'s to {distance:.2g} (relative L2, "
            f"under {SAME_RESULT_TOLERANCE:g}): the same attribution summed in another fp32 order, so it counts "
            "as meeting the target"
        )

    def release_outputs(self, keep: Candidate) -> None:
        """Drop stored outputs except `keep`'s (the next axis compares against it): large batches add up."""
        for cand in self.tried:
            if cand is not keep:
                cand.attributions = None

    def batching_turned(self, cand: Candidate, pool: Sequence[Candidate], rest: Sequence[Candidate]) -> bool:
        """Whether the walk along the batching values can stop at `cand` (values come in order, so
        once one is BATCHING_TURN slower than the best so far, the ones past it are slower still).

        Saves the slowest calls of the axis: on resnet18 Occlusion, 64 and 256 perturbations per eval
        took 30 and 40 s against 19 s at 4. The values not run are listed as pruned."""
        ratio = cand.time_estimate_s / min(c.time_estimate_s for c in pool if c is not cand)
        if not rest or ratio <= BATCHING_TURN:
            return False
        self._prune_past_turn(f"{_exec_text(cand)} took {ratio:.2f}x the best so far", rest)
        return True

    def _prune_past_turn(self, what: str, rest: Sequence[Candidate]) -> None:
        self.log(f"    batching: {what}; {len(rest)} value(s) past it not run")
        for skipped in rest:
            self.pruned.append(
                {
                    "cell_key": cell_key(skipped.config),
                    "reason": f"batching values past a slower one not run: {what} (over {BATCHING_TURN}x), "
                    "so the axis had turned",
                }
            )

    # --- screening long calls by their model passes ---------------------------------------------

    def screens(self, current: Candidate) -> bool:
        """Whether a whole call is long enough that probing its passes first pays (tune_screen)."""
        return current.time_estimate_s >= SCREEN_ABOVE_S

    def passes_s(self, cand: Candidate, current: Candidate) -> float:
        """The model-pass time of one whole call of `cand` (tune_screen), probed once per configuration."""
        cand = self.candidate(cand)
        if cand.identity not in self._passes_s:
            chunk = chunk_rows(self.spec, cand.config.knobs, self.cost_input(cand.config))
            self._passes_s[cand.identity] = self.measurer.predict(cand, chunk, PROBE_SHARE * current.time_estimate_s)
        return self._passes_s[cand.identity]

    def model_calls(self, config: RunConfig) -> int:
        chunk = chunk_rows(self.spec, config.knobs, self.cost_input(config))
        return max(1, math.ceil(self.total_rows(config) / chunk))

    def screen(self, axis: str, current: Candidate, candidates: Sequence[Candidate]) -> list[Candidate]:
        """The axis's neighbours worth a whole call: the one predicted fastest, if it beats the current
        setting's prediction. Compiled candidates are not probed (a probe would compile); those over the
        memory budget, or whose probe breaks, are left for the race to run and record. The rest are
        listed as pruned, with predictions.

        A prediction is the candidate's model passes plus what the passes leave out (Captum building
        perturbed inputs, hooks, Python), measured on the current setting's call and charged per model
        call, since batching changes how many calls there are. Without it, resnet18 Occlusion's passes
        ranked 1 perturbation per eval (19.9 s) ahead of 4 and 16 (21.9, 21.8 s), while its call took
        25.5 s: 5.6 s, 7.7 ms per model call, outside the passes."""
        try:
            current_passes = self.passes_s(current, current)
        except Exception as exc:  # a probe that breaks: fall back to whole calls, and say so
            self.notes.append(
                f"{axis}: model passes could not be timed ({type(exc).__name__}: {exc}); whole calls raced"
            )
            return list(candidates)
        per_call = max(0.0, current.time_estimate_s - current_passes) / self.model_calls(current.config)

        def whole_call_s(cand: Candidate) -> float:
            return self.passes_s(cand, current) + per_call * self.model_calls(cand.config)

        baseline = whole_call_s(current)
        probed: list[Candidate] = []
        unprobed: list[Candidate] = []
        for index, cand in enumerate(candidates):
            if cand.compiled or not self.fits(cand):
                unprobed.append(cand)
                continue
            if self.out_of_time(PROBE_SHARE * current.time_estimate_s):
                break
            best_so_far = min([baseline] + [c.predicted_s for c in probed])
            cand = self.candidate(cand)
            try:
                cand.predicted_s = whole_call_s(cand)
            except Exception:  # its whole call will record why it fails
                unprobed.append(cand)
                continue
            probed.append(cand)
            ratio = cand.predicted_s / best_so_far
            rest = candidates[index + 1 :]
            if axis == "batching" and rest and ratio > BATCHING_TURN:
                self._prune_past_turn(f"{_exec_text(cand)} is predicted {ratio:.2f}x the best so far", rest)
                break
        probed.sort(key=lambda c: c.predicted_s)
        keep = probed[:1] if probed and probed[0].predicted_s < baseline else []
        if probed:
            self.log(
                f"    {axis} predicted from model passes (+ {per_call * 1e3:.3g} ms a model call outside them): "
                f"{_exec_text(current)} {baseline:.3g} s (current), "
                + ", ".join(f"{_exec_text(c)} {c.predicted_s:.3g} s" for c in probed)
            )
        for cand in probed[len(keep) :]:
            self.pruned.append(
                {
                    "cell_key": cell_key(cand.config),
                    "threads": cand.threads,
                    "compiled": cand.compiled,
                    "reason": f"ranked out by its model passes: predicted {cand.predicted_s:.3g} s a call, against "
                    f"{(keep[0].predicted_s if keep else baseline):.3g} s for "
                    f"{_exec_text(keep[0] if keep else current)}",
                    "predicted_s": cand.predicted_s,
                }
            )
        return keep + unprobed

    def _log_race(self, axis: str, what: str, pool: Sequence[Candidate]) -> None:
        times = ", ".join(f"{_exec_text(c)} {c.time_estimate_s:.3g} s" for c in pool)
        self.log(f"    {axis} race ({what} each): {times}")

    def run(self) -> MethodTuning:
        self.log(f"  {self.spec.name}: Captum's default {_knob_text(self.space.default_knobs)}")
        default = self.measure_default()
        self.log(f"    default: {default.time_estimate_s:.3g} s (first call), {_quality_text(default)}")
        self.check_reachable(default)
        path: list[tuple[str, Candidate]] = [("default", default)]
        current = self.fidelity_stage(default)
        path.append(("fewer steps", current))
        for axis in SPEED_AXES:
            if self.out_of_time(0):
                break
            current = self.race(axis, current)
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


def units_needed(history: Sequence[tuple[float, float]], bound: float) -> float | None:
    """Cost at which a chain's error reaches `bound`, extrapolating error ~ cost^-p from its first to its
    last point (three at least: a rate read off the two cheapest settings alone misjudges Gauss-Legendre,
    which stalls at a few steps and then falls); None while the error does not fall steadily (on a ReLU
    network's kinked path it can jump around), so only a chain converging steadily but too slowly is cut."""
    if len(history) < MIN_CHAIN_POINTS or bound <= 0:
        return None
    errors = [e for _, e in history]
    if any(later >= earlier for earlier, later in itertools.pairwise(errors)):
        return None
    (u1, e1), (u2, e2) = history[0], history[-1]
    if not (u2 > u1 and 0 < e2 < e1) or e2 <= bound:
        return None
    rate = math.log(e1 / e2) / math.log(u2 / u1)
    return u2 * (e2 / bound) ** (1 / rate)


def _knob_text(knobs: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in knobs.items() if v is not None)


def _exec_text(cand: Candidate) -> str:
    config = cand.config
    batching = " ".join(
        f"{k}={config.knobs[k]}" for k in ("internal_batch_size", "perturbations_per_eval") if k in config.knobs
    )
    return (
        f"[{batching} {config.precision} {config.memory_format} threads={cand.threads}"
        f"{' compiled' if cand.compiled else ''}]"
    )


def _quality_text(cand: Candidate) -> str:
    if cand.quality is None:
        return f"failed ({cand.error})"
    verdict = "meets" if cand.meets_target else "misses"
    return f"error {cand.quality.rel_error:.3g}, spearman {cand.quality.spearman:.3f} ({verdict} the target)"


# --- the final comparison ------------------------------------------------------------------


def distinct_path(path: Sequence[tuple[str, Candidate]]) -> list[tuple[str, Candidate]]:
    """The path without steps that changed nothing (an axis whose race the current setting won)."""
    out: list[tuple[str, Candidate]] = []
    for axis, cand in path:
        if out and out[-1][1].identity == cand.identity:
            continue
        out.append((axis, cand))
    return out


def final_comparison(tuning: MethodTuning, measurer: Measurer, rounds: int) -> list[tuple[str, Candidate]]:
    """Default, each distinct step of the path and the tuned setting, timed round-robin in one window,
    the order reversed every other round: load that grows through a window (resnet18 Occlusion's
    rounds here went 16.5, 18.8, 26.2 s for the tuned setting) then hits the first and the last alike,
    where a fixed order charged it to the tuned setting, always timed last."""
    steps = distinct_path(tuning.path)
    finals = [(axis, dataclasses.replace(cand, phase="final", times_s=[])) for axis, cand in steps]
    for index in range(rounds):
        for _, cand in finals if index % 2 == 0 else reversed(finals):
            cand.times_s.append(measurer.call(cand)[0])
    for axis, cand in finals:
        if axis == "default" or cand.identity == finals[-1][1].identity:
            measurer.memory(cand)
    return finals


def gain_shares(finals: Sequence[tuple[str, Candidate]]) -> dict[str, float]:
    """Each axis's share of the total speedup, in log time along the measured path (sums to 1)."""
    total = math.log(finals[0][1].median_s / finals[-1][1].median_s) if len(finals) > 1 else 0.0
    shares: dict[str, float] = {}
    for (_, before), (axis, after) in itertools.pairwise(finals):
        step = math.log(before.median_s / after.median_s)
        shares[axis] = shares.get(axis, 0.0) + (step / total if total else 0.0)
    return shares


@dataclass(frozen=True)
class TuneReference:
    """What errors are measured against, and how far that can be trusted."""

    attributions: torch.Tensor | None  # None: no recipe, the default's own output becomes the yardstick
    note: str
    resolution: float | None = None  # the reference's own estimated error (path methods); None: not estimated


def reference_for(default: RunConfig, reference_steps: int) -> TuneReference:
    """The method's high-accuracy reference (cached on disk) and, for a path integral, its own error.

    That error is estimated as its distance to the same rule at half the steps (both cached). It
    matters: on resnet18 with random weights, 512 and 1024 Gauss-Legendre steps differ by 1.1e-4,
    more than Captum's default's error against the 512-step reference (9.6e-5)."""
    prepared = prepare(default)
    reference = reference_attributions(prepared, FidelityOptions(reference_steps=reference_steps))
    if reference is None:
        return TuneReference(
            None, f"no reference recipe for {default.method}: errors are against Captum's default output"
        )
    origin = "cached" if reference.cached else f"computed in {reference.compute_s:.1f} s"
    note, resolution = f"{reference.note} ({origin})", None
    if prepared.spec.reference == "path" and reference_steps >= 2:
        coarser = reference_attributions(prepared, FidelityOptions(reference_steps=reference_steps // 2))
        resolution = _relative_distance(coarser.attributions, reference.attributions)
        note += f"; its own error is about {resolution:.2g} (its distance to {reference_steps // 2} steps)"
    return TuneReference(reference.attributions, note, resolution)


def tune(
    request: TuneRequest, log: Callable[[str], None] = print, spaces: Mapping[str, MethodSpace] | None = None
) -> list[tuple[MethodTuning, list[tuple[str, Candidate]], Measurer]]:
    """Check everything (unless `spaces` are already checked), then search each method and compare
    default with tuned in one window."""
    if spaces is None:
        spaces = check_request(request)
        check_budget(request)
    out = []
    for name, space in spaces.items():
        started = time.perf_counter()
        default_config = RunConfig(
            name, request.workload, request.device, request.batch_size, space.default_knobs, seed=request.seed
        )
        try:
            reference = reference_for(default_config, request.reference_steps)
        except NotApplicable as exc:
            raise TuneError(str(exc)) from None
        log(f"  {name}: reference: {reference.note}")
        measurer = Measurer(reference.attributions)
        search = Search(request, space, measurer, log=log, reference_resolution=reference.resolution)
        search.notes.append(f"reference: {reference.note}")
        tuning = search.run()
        finals = final_comparison(tuning, measurer, request.final_rounds)
        log(
            f"  {name}: search {tuning.search_s:.0f} s, {len(tuning.tried)} configurations run, "
            f"{len(tuning.pruned)} pruned; with the final comparison {time.perf_counter() - started:.0f} s"
        )
        out.append((tuning, finals, measurer))
    return out


__all__ = [
    "Candidate",
    "FidelityTarget",
    "KnobError",
    "MemoryBudgetError",
    "MethodSpec",
    "MethodTuning",
    "Quality",
    "Search",
    "TargetUnreachable",
    "TuneError",
    "TuneRequest",
    "check_request",
    "final_comparison",
    "gain_shares",
    "tune",
]
