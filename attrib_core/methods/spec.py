"""The method spec and its registry: what a method is, how it is built and which knobs it takes.

Backward passes of layer methods run only from the output down to the layer, and those of
neuron methods from the layer down to the inputs; the cost model counts them as rows all the
same, and `backward_reach` says which partial pass each row is timed as.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import captum.attr as ca
import torch
from torch import nn

from attrib_core.methods.costs import CostModel
from attrib_core.methods.knobs import Knob, KnobError
from attrib_core.methods.windows import WINDOW_KNOBS, concrete_window, input_knobs, shape_occlusion_window
from attrib_core.registry import Registry


@dataclass(frozen=True)
class MethodSpec:
    name: str
    captum_class: type
    kind: Literal["feature", "layer", "neuron"]
    family: Literal["gradient", "perturbation"]
    cost: CostModel
    knobs: tuple[Knob, ...] = ()
    baselines: Literal["none", "single", "background"] = "none"
    takes_target: bool = True
    uses_feature_mask: bool = False
    supports_delta: bool = False
    has_completeness: bool = False  # sum(attr) ~ F(x) - F(baseline) by construction
    stochastic: bool = False  # output depends on the seed
    inner_class: type | None = None  # NoiseTunnel wraps this method
    min_batch_size: int = 1
    min_background: int = 1  # rows of the workload's background set the method needs
    runner_knobs: frozenset[str] = frozenset()  # knobs used by the runner, not passed to captum
    postprocess: Callable[[torch.Tensor, torch.Tensor, Mapping[str, Any]], torch.Tensor] | None = None
    needs_spatial_layer: bool = False  # e.g. GradCAM averages gradients over a conv layer's map
    # Modules whose backward it overrides: DeepLift's rules, guided ReLUs, or LRP's rules (one per module type)
    backward_rules: Literal["deeplift", "guided_relu", "lrp"] | None = None
    takes_layer: bool = False  # a feature method built on the workload's layer too (GuidedGradCam)
    layer_units_are_features: bool = False  # perturbs each unit of the layer's output: cost needs its shape
    max_features: int | None = None  # its cost grows too fast past this many feature-mask groups (ShapleyValues)
    interpolates_inputs: bool = False  # scales the inputs themselves (LayerConductance), so needs float inputs
    sets_input_grad: bool = False  # Captum marks the inputs requires_grad (LayerDeepLiftShap), so needs float inputs
    # How far its backward rows go, so the limit times the right pass (attrib_core.limit):
    # "inputs" (the whole model), "to_layer" (output down to the layer's output: layer methods'
    # gradients w.r.t. the layer), "from_layer" (a neuron of the layer down to the inputs).
    backward_reach: Literal["inputs", "to_layer", "from_layer"] = "inputs"
    check: Callable[[str, Mapping[str, Any]], None] | None = None
    description: str = ""
    defaults_note: str = field(default="")
    # How fidelity's high-accuracy reference is made (attrib_core.fidelity.references):
    # "path" (the converged path integral), "occlusion" (a finer window), "more_samples"
    # (the same estimator with more of `sample_knob`), or None (no reference).
    reference: Literal["path", "occlusion", "more_samples"] | None = None
    sample_knob: str | None = None

    @property
    def knob_names(self) -> list[str]:
        return [k.name for k in self.knobs]

    @property
    def batching_knobs(self) -> list[str]:
        return [k.name for k in self.knobs if k.batching]

    @property
    def knob_labels(self) -> dict[str, str]:
        return {k.name: k.label for k in self.knobs}

    def workload_defaults(self, workload: Any) -> dict[str, Any]:
        """Knob defaults a workload supplies: scaled to its inputs, then its own per-method values."""
        scaled = {k.name: getattr(workload, k.workload_default, None) for k in self.knobs if k.workload_default}
        scaled = {name: value for name, value in scaled.items() if value is not None}
        return {**scaled, **(workload.method_defaults.get(self.name) or {})}

    def concrete_knobs(
        self, knobs: Mapping[str, Any], input_shape: tuple[int, ...], input_shapes: tuple[tuple[int, ...], ...] = ()
    ) -> dict[str, Any]:
        """The knobs with every "auto" value taken from one example's shape, checked against it.
        With several inputs (`input_shapes`), a shape-dependent knob gets one value per input."""
        if not any(k.auto for k in self.knobs):
            return dict(knobs)
        if input_shapes:
            per_input = [self.concrete_knobs(input_knobs(knobs, i), shape) for i, shape in enumerate(input_shapes)]
            return {
                name: tuple(each[name] for each in per_input) if name in WINDOW_KNOBS else value
                for name, value in per_input[0].items()
            }
        concrete = concrete_window(knobs, input_shape)
        for name in ("sliding_window_shapes", "strides"):
            if name in concrete and len(concrete[name]) != len(input_shape):
                raise KnobError(
                    f"{self.name}: {name}={concrete[name]} has {len(concrete[name])} entries, but one example has "
                    f"shape {input_shape}: give {len(input_shape)} (one per input dimension), or leave it out for "
                    f"the default from the input's shape, {shape_occlusion_window(input_shape)[name]}"
                )
        return concrete

    def resolve_knobs(self, *layers: Mapping[str, Any] | None) -> dict[str, Any]:
        """Defaults, overridden by each mapping in turn (workload defaults, then the user's)."""
        by_name = {k.name: k for k in self.knobs}
        merged: dict[str, Any] = {k.name: k.default for k in self.knobs}
        for layer in layers:
            for name, value in (layer or {}).items():
                if name not in by_name:
                    valid = ", ".join(by_name) or "none"
                    raise KnobError(f"unknown knob {name!r} for {self.name}; valid knobs: {valid}")
                merged[name] = value
        resolved = {name: by_name[name].validate(self.name, value) for name, value in merged.items()}
        if self.check:
            self.check(self.name, resolved)
        return resolved

    @property
    def needs_layer(self) -> bool:
        return self.kind != "feature" or self.takes_layer

    def build(self, model: nn.Module, layer: nn.Module | None) -> Any:
        if self.inner_class is not None:
            return self.captum_class(self.inner_class(model))
        if not self.needs_layer:
            return self.captum_class(model)
        return self.captum_class(model, layer)

    @property
    def needs_float_inputs(self) -> bool:
        """Gradients with respect to the inputs (or points between inputs and baselines): not
        defined for integer token ids, where only layer methods on the embedding and
        perturbation methods (neuron ones included) apply."""
        return (self.kind != "layer" and self.family == "gradient") or self.interpolates_inputs or self.sets_input_grad

    def attribute_kwargs(self, knobs: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in knobs.items() if k not in self.runner_knobs}


METHODS: Registry[MethodSpec] = Registry("method")


def register_method(spec: MethodSpec) -> MethodSpec:
    return METHODS.register(spec.name, spec)


def get_method(name: str) -> MethodSpec:
    return METHODS.get(name)


def upsample_to_input(attributions: torch.Tensor, inputs: torch.Tensor, knobs: Mapping[str, Any]) -> torch.Tensor:
    """GradCAM maps are layer-sized; the Captum tutorial upsamples them to the input's size."""
    if not knobs["interpolate"]:
        return attributions
    return ca.LayerAttribution.interpolate(attributions, tuple(inputs.shape[2:]))
