"""The one way to run an attribution: (method, workload, device, batch, knobs, options, seed).

`prepare` does everything that is not the attribution itself (validation, model placement,
batch building, Captum object construction) so that a benchmark times only the call.
"""

from __future__ import annotations

import copy
import dataclasses
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
from attrib_core.workloads.packed import InputLayout, inputs_the_layer_ignores, packed_view

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

    def forward(self, *args: Any) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=self.dtype):
            return self.model(*args).float()


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
    model: nn.Module  # the model on one tensor of `inputs` rows: what fidelity and the limit call
    workload_model: nn.Module  # the placed model itself
    inputs: torch.Tensor  # the batch; several inputs packed (workloads.packed)
    kwargs: dict[str, Any]  # Captum's, as the user would pass them (tuples for several inputs)
    injected_model_slowdown: float = 1.0  # > 1: the model was slowed on purpose (attrib_core/inject.py)
    injected_method_slowdown: float = 1.0  # > 1: the whole attribute call was slowed on purpose

    @property
    def layout(self) -> InputLayout | None:
        packed = packed_view(self.workload_model)
        return packed.layout if packed is not None else None

    @property
    def passes(self) -> Passes:
        layout = self.layout
        return self.spec.cost(
            CostInput(
                batch_size=self.config.batch_size,
                knobs=self.knobs,
                input_shape=tuple(self.workload.inputs.shape[1:]),
                n_features=self.workload.n_features,
                with_delta=self.kwargs.get("return_convergence_delta", False),
                input_shapes=layout.shapes if layout is not None and layout.several else (),
                layer_shape=self.workload.layer_shape if self.spec.layer_units_are_features else (),
            )
        )

    def attribute(self, inputs: torch.Tensor, **kwargs: Any) -> Any:
        """Captum's call on a batch of (packed) rows, as the user makes it: several inputs go in as
        their tuple and come back packed; layer-sized maps are post-processed as the method says."""
        layout = self.layout
        call_inputs = layout.unpack(inputs) if layout is not None else inputs
        out = self.attributor.attribute(call_inputs, **kwargs)
        delta = None
        if kwargs.get("return_convergence_delta"):
            out, delta = out
        if isinstance(out, tuple):
            out = layout.pack(out) if layout is not None else out[0]
        elif self.spec.postprocess is not None:
            first = call_inputs[0] if isinstance(call_inputs, tuple) else call_inputs
            out = self.spec.postprocess(out, first, self.knobs)
        return out if delta is None else (out, delta)

    def __call__(self) -> AttributionResult:
        if self.spec.stochastic:  # reseeding costs ~0.2 ms, a fifth of a small model's call: only where it matters
            seed_everything(self.config.seed)
        out = self.attribute(self.inputs, **self.kwargs)
        delta = None
        if self.kwargs.get("return_convergence_delta"):
            out, delta = out
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
    base = placed_model(workload.name, str(device), config.memory_format)
    packed = packed_view(base)
    several = packed.layout.shapes if packed is not None and packed.layout.several else ()
    knobs = spec.concrete_knobs(knobs, tuple(workload.inputs.shape[1:]), several)

    model = packed.model if packed is not None else base  # Captum calls the user's model itself
    model = model if dtype is None else AutocastForward(model, device.type, dtype)
    model, slowdown = inject.wrap(model, spec.name)  # a test of the regression checks, from the environment
    layer = base.get_submodule(workload.layer_name) if spec.needs_layer else None
    if spec.kind == "neuron" and several:
        _check_neuron_sees_every_input(spec, workload)

    inputs, targets = workload.batch(config.batch_size)
    inputs = inputs.to(device=device, memory_format=MEMORY_FORMATS[config.memory_format])
    unpack = packed.layout.unpack if packed is not None else (lambda tensor: tensor)
    kwargs: dict[str, Any] = spec.attribute_kwargs(knobs)
    if spec.takes_target:
        kwargs["target"] = targets.to(device)
    if spec.kind == "neuron":
        kwargs["neuron_selector"] = workload.neuron
    if spec.baselines == "single":
        kwargs["baselines"] = unpack(workload.baseline.to(device))
    elif spec.baselines == "background":
        n = knobs.get("n_baselines", len(workload.background))
        kwargs["baselines"] = unpack(workload.background[:n].to(device))
    if spec.uses_feature_mask:
        kwargs["feature_mask"] = unpack(workload.feature_mask.to(device))
    harness_model = model
    if packed is not None:
        harness_model = packed.bound(workload.batch_examples(config.batch_size), model)
        if harness_model.additional_forward_args:
            kwargs["additional_forward_args"] = harness_model.additional_forward_args
    if config.with_delta:
        kwargs["return_convergence_delta"] = True
    attributor = spec.build(model, layer)
    method_slowdown = inject.factor_for(spec.name, variable=inject.METHOD_ENV_VAR)
    if method_slowdown != 1.0:  # a test of the regression checks: the method's own call got slower
        attributor.attribute = inject.slowed_call(attributor.attribute, method_slowdown, device)
    return PreparedRun(
        config, spec, workload, knobs, attributor, harness_model, base, inputs, kwargs, slowdown, method_slowdown
    )


_IGNORED_INPUTS: dict[tuple[int, str], list[int]] = {}


def _check_neuron_sees_every_input(spec: MethodSpec, workload: Workload) -> None:
    key = (id(workload), workload.layer_name)
    if key not in _IGNORED_INPUTS:
        packed = packed_view(workload.model)
        _IGNORED_INPUTS[key] = inputs_the_layer_ignores(packed, workload.layer, workload.inputs[:1])
    ignored = _IGNORED_INPUTS[key]
    if ignored:
        raise NotApplicable(
            f"{spec.name} differentiates the neuron with respect to every input, and layer "
            f"{workload.layer_name!r} does not depend on input(s) {ignored} of workload {workload.name!r} "
            "(Captum raises); declare a layer that sees every input"
        )


def on_model(prepared: PreparedRun, base: nn.Module) -> PreparedRun:
    """The same run (method, knobs, inputs, targets, baselines, seed) on `base`, another copy of the
    placed model (the sanity checks' randomised ones): Captum gets the user's model in it and the
    harness the packed one, as `prepare` builds them, without injected slowdowns."""
    packed = packed_view(base)
    model = packed.model if packed is not None else base
    dtype = PRECISIONS[prepared.config.precision]
    model = model if dtype is None else AutocastForward(model, prepared.inputs.device.type, dtype)
    harness_model = model
    if packed is not None:
        harness_model = packed.bound(torch.arange(prepared.config.batch_size) % len(prepared.workload.inputs), model)
    layer = base.get_submodule(prepared.workload.layer_name) if prepared.spec.kind != "feature" else None
    attributor = prepared.spec.build(model, layer)
    return dataclasses.replace(prepared, attributor=attributor, model=harness_model, workload_model=base)


def run_attribution(method: str, workload: str, **options: Any) -> AttributionResult:
    """Convenience: prepare and call once. Options are RunConfig's fields."""
    return prepare(RunConfig(method, workload, **options))()
