"""The one way to run an attribution: (method, workload, device, batch, knobs, options, seed).

`prepare` does everything that is not the attribution itself (validation, model placement,
batch building, Captum object construction) so that a benchmark times only the call.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from attrib_core import inject
from attrib_core.devices import check_device
from attrib_core.methods import METHODS, CostInput, MethodSpec, Passes, get_method
from attrib_core.workloads import Workload, load_workload, observed_spec, workload_spec
from attrib_core.workloads.applicability import unsupported_reason

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
MEMORY_FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


class NotApplicable(ValueError):
    """The method cannot run on this workload (a cell records it as not applicable, with the reason)."""


class FrozenKnobs(dict):
    """Knob values that hash, so RunConfig stays hashable (lists become tuples)."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in self.items())))


@dataclass(frozen=True)
class RunConfig:
    """One cell: the complete, hashable description of an attribution run."""

    method: str
    workload: str
    device: str = "cpu"
    batch_size: int = 1
    knobs: Mapping[str, Any] = field(default_factory=dict)
    precision: str = "fp32"
    memory_format: str = "contiguous"
    seed: int = 0
    with_delta: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "knobs", FrozenKnobs(self.knobs))


@dataclass
class AttributionResult:
    attributions: torch.Tensor  # fp32, on the CPU
    delta: torch.Tensor | None  # Captum's convergence delta, when asked for and supported


def check_precision(precision: str, device: torch.device) -> torch.dtype | None:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    dtype = PRECISIONS[precision]
    if dtype is not None and not torch.amp.is_autocast_available(device.type):
        raise ValueError(f"precision {precision!r} (autocast) is not available on {device.type}")
    return dtype


class AutocastForward(nn.Module):
    """Runs the wrapped model under autocast and hands Captum fp32 outputs.

    A module (not a function) so DeepLift and GuidedBackprop still find the model's ReLUs,
    and layer hooks on the wrapped model's submodules still fire.
    """

    def __init__(self, model: nn.Module, device_type: str, dtype: torch.dtype) -> None:
        super().__init__()
        self.model = model
        self.device_type = device_type
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=self.dtype):
            return self.model(x).float()


_PLACED: dict[tuple[int, str, str], tuple[Workload, nn.Module]] = {}


def placed_model(workload_name: str, device: str, memory_format: str) -> nn.Module:
    """A copy of the workload's model on `device`, in `memory_format`; cached per sweep (and
    per definition: a plug-in redeclared with other arguments is a new workload object)."""
    workload = load_workload(workload_name)
    key = (id(workload), device, memory_format)
    if key not in _PLACED:
        model = workload.model
        if device != "cpu" or memory_format != "contiguous":
            model = copy.deepcopy(model).to(device=device, memory_format=MEMORY_FORMATS[memory_format])
        _PLACED[key] = (workload, model.eval())
    return _PLACED[key][1]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


@dataclass
class PreparedRun:
    """A ready-to-call attribution; calling it again repeats the same computation."""

    config: RunConfig
    spec: MethodSpec
    workload: Workload
    knobs: dict[str, Any]
    attributor: Any
    model: nn.Module  # what Captum calls (the placed model, or its autocast wrapper)
    workload_model: nn.Module  # the placed model itself
    inputs: torch.Tensor
    kwargs: dict[str, Any]
    injected_model_slowdown: float = 1.0  # > 1: the model was slowed on purpose (attrib_core/inject.py)
    injected_method_slowdown: float = 1.0  # > 1: the whole attribute call was slowed on purpose

    @property
    def passes(self) -> Passes:
        return self.spec.cost(
            CostInput(
                batch_size=self.config.batch_size,
                knobs=self.knobs,
                input_shape=tuple(self.workload.inputs.shape[1:]),
                n_features=self.workload.n_features,
                with_delta=self.kwargs.get("return_convergence_delta", False),
                layer_shape=self.workload.layer_shape if self.spec.layer_units_are_features else (),
            )
        )

    def __call__(self) -> AttributionResult:
        if self.spec.stochastic:  # reseeding costs ~0.2 ms, a fifth of a small model's call: only where it matters
            seed_everything(self.config.seed)
        out = self.attributor.attribute(self.inputs, **self.kwargs)
        delta = None
        if self.kwargs.get("return_convergence_delta"):
            out, delta = out
        if self.spec.postprocess is not None:
            out = self.spec.postprocess(out, self.inputs, self.knobs)
        return AttributionResult(
            attributions=out.detach().float().cpu(),
            delta=None if delta is None else delta.detach().float().cpu(),
        )


def prepare(config: RunConfig) -> PreparedRun:
    """Validate a config and build everything the attribution call needs."""
    spec = get_method(config.method)
    workload = load_workload(config.workload)
    device = check_device(config.device)
    dtype = check_precision(config.precision, device)
    if config.memory_format not in MEMORY_FORMATS:
        raise ValueError(f"unknown memory_format {config.memory_format!r}; valid: {', '.join(MEMORY_FORMATS)}")
    if config.memory_format == "channels_last" and not workload.is_image:
        raise ValueError(
            f"memory_format 'channels_last' needs 4-d image inputs; {workload.name!r} is not an image "
            "(valid for it: contiguous)"
        )
    reason = unsupported_reason(spec, observed_spec(config.workload))  # the built model's traits decide
    if reason:
        raise NotApplicable(reason)
    batch = config.batch_size
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise ValueError(f"{spec.name}: batch_size={config.batch_size!r} is not valid; needs an integer >= 1")
    if batch < spec.min_batch_size:
        raise NotApplicable(
            f"{spec.name} needs batch_size >= {spec.min_batch_size} (it works across the examples of a batch); "
            f"this cell has {batch}"
        )
    if len(workload.background) < spec.min_background:
        raise NotApplicable(
            f"{spec.name} needs a background of >= {spec.min_background} examples and workload "
            f"{workload.name!r} has {len(workload.background)}; give the factory's 'background' (K, ...) examples"
        )
    if spec.max_features is not None and workload.n_features > spec.max_features:
        raise NotApplicable(
            f"{spec.name} needs a feature mask of <= {spec.max_features} groups (its cost grows as n * n!) and "
            f"workload {workload.name!r} has {workload.n_features}; use ShapleyValueSampling, or a workload whose "
            "feature_mask has fewer groups"
        )
    if config.with_delta and not spec.supports_delta:
        with_delta = ", ".join(m.name for m in METHODS if m.supports_delta)
        raise ValueError(f"{spec.name} has no convergence delta; methods with one: {with_delta}")
    knobs = spec.resolve_knobs(spec.workload_defaults(workload_spec(config.workload)), config.knobs)
    knobs = spec.concrete_knobs(knobs, tuple(workload.inputs.shape[1:]))

    base = placed_model(workload.name, str(device), config.memory_format)
    model = base if dtype is None else AutocastForward(base, device.type, dtype)
    model, slowdown = inject.wrap(model, spec.name)  # a test of the regression checks, from the environment
    layer = base.get_submodule(workload.layer_name) if spec.needs_layer else None

    inputs, targets = workload.batch(config.batch_size)
    inputs = inputs.to(device=device, memory_format=MEMORY_FORMATS[config.memory_format])
    kwargs: dict[str, Any] = spec.attribute_kwargs(knobs)
    if spec.takes_target:
        kwargs["target"] = targets.to(device)
    if spec.kind == "neuron":
        kwargs["neuron_selector"] = workload.neuron
    if spec.baselines == "single":
        kwargs["baselines"] = workload.baseline.to(device)
    elif spec.baselines == "background":
        n = knobs.get("n_baselines", len(workload.background))
        kwargs["baselines"] = workload.background[:n].to(device)
    if spec.uses_feature_mask:
        kwargs["feature_mask"] = workload.feature_mask.to(device)
    if config.with_delta:
        kwargs["return_convergence_delta"] = True
    attributor = spec.build(model, layer)
    method_slowdown = inject.factor_for(spec.name, variable=inject.METHOD_ENV_VAR)
    if method_slowdown != 1.0:  # a test of the regression checks: the method's own call got slower
        attributor.attribute = inject.slowed_call(attributor.attribute, method_slowdown, device)
    return PreparedRun(
        config, spec, workload, knobs, attributor, model, base, inputs, kwargs, slowdown, method_slowdown
    )


def run_attribution(method: str, workload: str, **options: Any) -> AttributionResult:
    """Convenience: prepare and call once. Options are RunConfig's fields."""
    return prepare(RunConfig(method, workload, **options))()
