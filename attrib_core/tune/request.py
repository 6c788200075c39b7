"""What a tune run is asked for, and every check of it before any model call."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from attrib_core import measure
from attrib_core.methods import KnobError, get_method
from attrib_core.run import MEMORY_FORMATS, PRECISIONS
from attrib_core.tune.memory import MemoryBudgetError
from attrib_core.tune.space import MethodSpace, fidelity_settings, valid_settings
from attrib_core.workloads import load_workload, workload_spec
from attrib_core.workloads.applicability import unsupported_reason

PRECISIONS_BY_DEVICE = {"cpu": ("fp32", "bf16"), "cuda": ("fp32", "bf16", "fp16")}


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
        workload = load_workload(request.workload)
        input_shape = tuple(workload.inputs.shape[1:])
        default_knobs = spec.concrete_knobs(
            spec.resolve_knobs(spec.workload_defaults(wspec), request.fixed), input_shape
        )
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
