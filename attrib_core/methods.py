"""Method registry: each Captum method declared once, with its knobs and its cost model.

A spec says which Captum class to build, what kind of attribution it is, which knobs it
takes (defaults and valid values) and how many forward / backward passes one call makes.
Passes are counted in samples (rows through the model), so they compare across batch
sizes and batching knobs: `internal_batch_size` changes how rows are grouped, not how many.
Backward passes of layer methods run only from the output down to the layer, and those of
neuron methods from the layer down to the inputs; the cost model counts them as rows all
the same, and `backward_reach` says which partial pass each row is timed as.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import captum.attr as ca
import torch
from torch import nn

from attrib_core.registry import Registry

IG_METHODS = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")
NT_TYPES = ("smoothgrad", "smoothgrad_sq", "vargrad")


class KnobError(ValueError):
    """A knob name or value that a method does not accept."""


AUTO = "auto"


@dataclass(frozen=True)
class Knob:
    """A tunable argument: its default and what values are valid."""

    name: str
    default: Any
    doc: str
    type: Literal["int", "float", "bool", "choice", "shape"] = "int"
    minimum: float | None = None
    choices: tuple[Any, ...] = ()
    optional: bool = False  # None is a valid value (e.g. "no internal batching")
    abbreviation: str = ""  # short name in plot labels (results records carry it: `knob_labels`)
    batching: bool = False  # only groups rows into calls: changes speed and memory, never the value
    workload_default: str | None = None  # a Workload attribute that supplies the default (input scale)
    auto: bool = False  # "auto" is valid: the value follows from the input's shape when the call is prepared

    @property
    def label(self) -> str:
        return self.abbreviation or self.name

    def describe(self) -> str:
        if self.type == "choice":
            valid = "one of " + ", ".join(map(repr, self.choices))
        elif self.type == "bool":
            valid = "True or False"
        elif self.type == "shape":
            valid = "a tuple of positive integers"
        else:
            valid = f"{'an integer' if self.type == 'int' else 'a number'} >= {self.minimum}"
        return (
            valid
            + (" or None" if self.optional else "")
            + (' or "auto" (from the input\'s shape)' if self.auto else "")
        )

    def validate(self, method: str, value: Any) -> Any:
        """Return the value (shapes as tuples) or raise KnobError naming it and the valid range."""
        if value is None and self.optional:
            return None
        if value == AUTO and self.auto:
            return AUTO
        ok = False
        if self.type == "int":
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= self.minimum
        elif self.type == "float":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= self.minimum
        elif self.type == "bool":
            ok = isinstance(value, bool)
        elif self.type == "choice":
            ok = value in self.choices
        elif self.type == "shape":
            ok = isinstance(value, (tuple, list)) and all(isinstance(v, int) and v >= 1 for v in value)
            value = tuple(value) if ok else value
        if not ok:
            raise KnobError(f"{method}: {self.name}={value!r} is not valid; expected {self.describe()}")
        return value


@dataclass(frozen=True)
class Passes:
    """Rows pushed through the model by one `attribute` call."""

    forward: int
    backward: int


@dataclass(frozen=True)
class CostInput:
    """What a cost model may depend on."""

    batch_size: int
    knobs: Mapping[str, Any]
    input_shape: tuple[int, ...]  # one example, no batch dimension
    n_features: int  # groups in the workload's feature mask
    with_delta: bool


CostModel = Callable[[CostInput], Passes]


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
    backward_rules: Literal["deeplift", "guided_relu"] | None = None  # modules whose backward it overrides
    interpolates_inputs: bool = False  # scales the inputs themselves (LayerConductance), so needs float inputs
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

    def concrete_knobs(self, knobs: Mapping[str, Any], input_shape: tuple[int, ...]) -> dict[str, Any]:
        """The knobs with every "auto" value taken from one example's shape, checked against it."""
        if not any(k.auto for k in self.knobs):
            return dict(knobs)
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

    def build(self, model: nn.Module, layer: nn.Module | None) -> Any:
        if self.inner_class is not None:
            return self.captum_class(self.inner_class(model))
        if self.kind == "feature":
            return self.captum_class(model)
        return self.captum_class(model, layer)

    @property
    def needs_float_inputs(self) -> bool:
        """Gradients with respect to the inputs (or points between inputs and baselines): not
        defined for integer token ids, where only layer methods on the embedding and
        perturbation methods apply."""
        return (
            (self.kind == "feature" and self.family == "gradient") or self.kind == "neuron" or self.interpolates_inputs
        )

    def attribute_kwargs(self, knobs: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in knobs.items() if k not in self.runner_knobs}


METHODS: Registry[MethodSpec] = Registry("method")


def register_method(spec: MethodSpec) -> MethodSpec:
    return METHODS.register(spec.name, spec)


def get_method(name: str) -> MethodSpec:
    return METHODS.get(name)


# --- knobs shared by several methods ----------------------------------------------------


def _integration_knobs(n_steps: int = 50, method: str = "gausslegendre") -> tuple[Knob, ...]:
    """Defaults follow Captum's own for each method."""
    return (
        Knob("n_steps", n_steps, "points on the path from baseline to input", minimum=1, abbreviation="steps"),
        Knob("method", method, "integration rule", type="choice", choices=IG_METHODS, abbreviation="rule"),
        Knob(
            "internal_batch_size",
            None,
            "rows per forward/backward chunk (memory vs speed)",
            minimum=1,
            optional=True,
            abbreviation="ibs",
            batching=True,
        ),
    )


def _check_integration(method: str, knobs: Mapping[str, Any]) -> None:
    if knobs["method"].startswith("riemann") and knobs["n_steps"] < 2:
        raise KnobError(
            f"{method}: n_steps={knobs['n_steps']} is too small for method={knobs['method']!r}; "
            "riemann rules need n_steps >= 2 (gausslegendre accepts 1)"
        )


PERTURBATIONS_PER_EVAL = Knob(
    "perturbations_per_eval",
    1,
    "perturbed copies evaluated in one forward call (memory vs speed)",
    minimum=1,
    abbreviation="ppe",
    batching=True,
)


# --- cost models ------------------------------------------------------------------------


def _delta(c: CostInput) -> int:
    """Convergence delta evaluates the model once on the inputs and once on the baselines."""
    return 2 * c.batch_size if c.with_delta else 0


def one_pass(c: CostInput) -> Passes:
    return Passes(c.batch_size, c.batch_size)


def forward_only(c: CostInput) -> Passes:
    return Passes(c.batch_size, 0)


def path_integral(c: CostInput) -> Passes:
    rows = c.batch_size * c.knobs["n_steps"]
    return Passes(rows + _delta(c), rows)


def layer_path_integral(c: CostInput) -> Passes:
    """The path runs in layer space: one extra forward of inputs and baselines finds its ends."""
    plain = path_integral(c)
    return Passes(plain.forward + 2 * c.batch_size, plain.backward)


def conductance(c: CostInput) -> Passes:
    """Conductance differences consecutive path points, so it evaluates n_steps + 1 of them.

    With internal_batch_size, Captum splits the points into chunks of s >= 2 that share
    their end point with the next chunk, so each chunk boundary is evaluated twice.
    """
    points = c.knobs["n_steps"] + 1
    ibs = c.knobs["internal_batch_size"]
    if ibs is not None:
        per_chunk = max(2, ibs // c.batch_size)
        if per_chunk < points:
            points += math.ceil((points - 1) / (per_chunk - 1)) - 1
    rows = c.batch_size * points
    return Passes(rows + _delta(c), rows)


def deeplift(c: CostInput) -> Passes:
    """Inputs and baselines go through the model together, in one batch of 2B rows."""
    return Passes(2 * c.batch_size + _delta(c), 2 * c.batch_size)


def deeplift_shap(c: CostInput) -> Passes:
    rows = 2 * c.batch_size * c.knobs["n_baselines"]
    return Passes(rows + (2 * c.batch_size * c.knobs["n_baselines"] if c.with_delta else 0), rows)


def gradient_shap(c: CostInput) -> Passes:
    rows = c.batch_size * c.knobs["n_samples"]
    return Passes(rows + (2 * rows if c.with_delta else 0), rows)


def noise_tunnel_saliency(c: CostInput) -> Passes:
    rows = c.batch_size * c.knobs["nt_samples"]
    return Passes(rows, rows)


def noise_tunnel_ig(c: CostInput) -> Passes:
    rows = c.batch_size * c.knobs["nt_samples"] * c.knobs["n_steps"]
    return Passes(rows, rows)


def occlusion_windows(input_shape: tuple[int, ...], window: tuple[int, ...], stride: tuple[int, ...]) -> int:
    """Window positions per example, as Captum places them (a last, clipped one included)."""
    return math.prod(math.ceil((d - w) / s) + 1 for d, w, s in zip(input_shape, window, stride, strict=True))


def shape_occlusion_window(input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Occlusion's window and stride for one example of `input_shape`, when none is given.

    Every channel is occluded together (as the Captum tutorial's (3, 15, 15) window on images),
    and the window spans a fixed share of each other dimension, moved by half its width:
    (F,) features and token ids one element; (C, T) series T/16 steps; (C, H, W) images 1/14 of
    the shorter side (the tutorial's 15 px on 224); (C, D, H, W) volumes 1/8 of the shortest
    side, since windows multiply over three dimensions there."""
    if len(input_shape) < 2:
        return {"sliding_window_shapes": (1,) * len(input_shape), "strides": (1,) * len(input_shape)}
    channels, spatial = input_shape[0], input_shape[1:]
    share = {1: 16, 2: 14}.get(len(spatial), 8)
    side = max(1, min(spatial) // share)
    stride = max(1, side // 2)
    return {
        "sliding_window_shapes": (channels, *(min(side, d) for d in spatial)),
        "strides": (channels, *(stride for _ in spatial)),
    }


def concrete_window(knobs: Mapping[str, Any], input_shape: tuple[int, ...]) -> dict[str, Any]:
    """The knobs with an "auto" window or stride replaced by the input shape's default."""
    auto = shape_occlusion_window(input_shape)
    return {k: auto[k] if v == AUTO and k in auto else v for k, v in knobs.items()}


def occlusion(c: CostInput) -> Passes:
    knobs = concrete_window(c.knobs, c.input_shape)
    windows = occlusion_windows(c.input_shape, knobs["sliding_window_shapes"], knobs["strides"])
    return Passes(c.batch_size * (1 + windows), 0)


def ablation(c: CostInput) -> Passes:
    return Passes(c.batch_size * (1 + c.n_features), 0)


def shapley_sampling(c: CostInput) -> Passes:
    return Passes(c.batch_size * (1 + c.knobs["n_samples"] * c.n_features), 0)


def surrogate(c: CostInput) -> Passes:
    """Lime / KernelShap: one row per sampled perturbation and example; with more than one
    example Captum first evaluates the whole batch once more."""
    initial = c.batch_size if c.batch_size > 1 else 0
    return Passes(c.batch_size * c.knobs["n_samples"] + initial, 0)


def upsample_to_input(attributions: torch.Tensor, inputs: torch.Tensor, knobs: Mapping[str, Any]) -> torch.Tensor:
    """GradCAM maps are layer-sized; the Captum tutorial upsamples them to the input's size."""
    if not knobs["interpolate"]:
        return attributions
    return ca.LayerAttribution.interpolate(attributions, tuple(inputs.shape[2:]))


def _check_occlusion(method: str, knobs: Mapping[str, Any]) -> None:
    if AUTO in (knobs["sliding_window_shapes"], knobs["strides"]):
        return
    if len(knobs["sliding_window_shapes"]) != len(knobs["strides"]):
        raise KnobError(
            f"{method}: sliding_window_shapes={knobs['sliding_window_shapes']} and "
            f"strides={knobs['strides']} must have the same length (one entry per input dimension)"
        )


# --- the registry -----------------------------------------------------------------------

IG_KNOBS = _integration_knobs()
NOISE_TUNNEL_KNOBS = (
    Knob("nt_type", "smoothgrad", "how noisy attributions are combined", type="choice", choices=NT_TYPES),
    Knob("nt_samples", 5, "noisy copies per example", minimum=1, abbreviation="nt"),
    Knob(
        "nt_samples_batch_size",
        None,
        "noisy copies per chunk",
        minimum=1,
        optional=True,
        abbreviation="nt_batch",
        batching=True,
    ),
    # Captum's default (1.0) is in input units; a workload scales it to its inputs (noise_stdevs)
    Knob("stdevs", 1.0, "noise standard deviation", type="float", minimum=0.0, workload_default="noise_stdevs"),
)

for spec in (
    # feature, gradient
    MethodSpec(
        "IntegratedGradients",
        ca.IntegratedGradients,
        "feature",
        "gradient",
        path_integral,
        IG_KNOBS,
        baselines="single",
        supports_delta=True,
        has_completeness=True,
        check=_check_integration,
        reference="path",
    ),
    MethodSpec(
        "Saliency",
        ca.Saliency,
        "feature",
        "gradient",
        one_pass,
        (Knob("abs", True, "absolute value of the gradient", type="bool"),),
    ),
    MethodSpec("InputXGradient", ca.InputXGradient, "feature", "gradient", one_pass),
    MethodSpec("GuidedBackprop", ca.GuidedBackprop, "feature", "gradient", one_pass, backward_rules="guided_relu"),
    MethodSpec(
        "DeepLift",
        ca.DeepLift,
        "feature",
        "gradient",
        deeplift,
        baselines="single",
        supports_delta=True,
        has_completeness=True,
        backward_rules="deeplift",
    ),
    MethodSpec(
        "DeepLiftShap",
        ca.DeepLiftShap,
        "feature",
        "gradient",
        deeplift_shap,
        (Knob("n_baselines", 4, "baselines drawn from the workload's background set", minimum=2),),
        baselines="background",
        min_background=2,  # Captum's DeepLiftShap refuses a single baseline (DeepLift is that case)
        supports_delta=True,
        has_completeness=True,
        runner_knobs=frozenset({"n_baselines"}),
        backward_rules="deeplift",
    ),
    MethodSpec(
        "GradientShap",
        ca.GradientShap,
        "feature",
        "gradient",
        gradient_shap,
        (
            Knob("n_samples", 5, "random points per example", minimum=1, abbreviation="samples"),
            Knob("stdevs", 0.0, "noise added to each sample", type="float", minimum=0.0),
        ),
        baselines="background",
        supports_delta=True,
        has_completeness=True,
        stochastic=True,
        reference="more_samples",
        sample_knob="n_samples",
    ),
    MethodSpec(
        "NoiseTunnel-Saliency",
        ca.NoiseTunnel,
        "feature",
        "gradient",
        noise_tunnel_saliency,
        NOISE_TUNNEL_KNOBS,
        inner_class=ca.Saliency,
        stochastic=True,
        reference="more_samples",
        sample_knob="nt_samples",
    ),
    MethodSpec(
        "NoiseTunnel-IntegratedGradients",
        ca.NoiseTunnel,
        "feature",
        "gradient",
        noise_tunnel_ig,
        NOISE_TUNNEL_KNOBS + IG_KNOBS,
        baselines="single",
        inner_class=ca.IntegratedGradients,
        stochastic=True,
        check=_check_integration,
        reference="more_samples",
        sample_knob="nt_samples",
    ),
    # feature, perturbation
    MethodSpec(
        "Occlusion",
        ca.Occlusion,
        "feature",
        "perturbation",
        occlusion,
        (
            Knob(
                "sliding_window_shapes",
                AUTO,
                "occluding patch, per input dimension",
                type="shape",
                abbreviation="window",
                auto=True,
            ),
            Knob(
                "strides",
                AUTO,
                "step between patches, per input dimension",
                type="shape",
                abbreviation="stride",
                auto=True,
            ),
            PERTURBATIONS_PER_EVAL,
        ),
        baselines="single",
        check=_check_occlusion,
        reference="occlusion",
    ),
    MethodSpec(
        "FeatureAblation",
        ca.FeatureAblation,
        "feature",
        "perturbation",
        ablation,
        (PERTURBATIONS_PER_EVAL,),
        baselines="single",
        uses_feature_mask=True,
    ),
    MethodSpec(
        "FeaturePermutation",
        ca.FeaturePermutation,
        "feature",
        "perturbation",
        ablation,
        (PERTURBATIONS_PER_EVAL,),
        uses_feature_mask=True,
        stochastic=True,
        min_batch_size=2,
    ),
    MethodSpec(
        "ShapleyValueSampling",
        ca.ShapleyValueSampling,
        "feature",
        "perturbation",
        shapley_sampling,
        (
            Knob("n_samples", 25, "feature permutations sampled", minimum=1, abbreviation="samples"),
            PERTURBATIONS_PER_EVAL,
        ),
        baselines="single",
        uses_feature_mask=True,
        stochastic=True,
        reference="more_samples",
        sample_knob="n_samples",
    ),
    MethodSpec(
        "KernelShap",
        ca.KernelShap,
        "feature",
        "perturbation",
        surrogate,
        (
            Knob("n_samples", 25, "coalitions sampled per example", minimum=1, abbreviation="samples"),
            PERTURBATIONS_PER_EVAL,
        ),
        baselines="single",
        uses_feature_mask=True,
        stochastic=True,
        reference="more_samples",
        sample_knob="n_samples",
    ),
    MethodSpec(
        "Lime",
        ca.Lime,
        "feature",
        "perturbation",
        surrogate,
        (
            Knob("n_samples", 50, "perturbations sampled per example", minimum=1, abbreviation="samples"),
            PERTURBATIONS_PER_EVAL,
        ),
        baselines="single",
        uses_feature_mask=True,
        stochastic=True,
        reference="more_samples",
        sample_knob="n_samples",
    ),
    # layer
    MethodSpec(
        "LayerGradCam",
        ca.LayerGradCam,
        "layer",
        "gradient",
        one_pass,
        (
            Knob("relu_attributions", False, "keep only positive evidence", type="bool"),
            Knob("interpolate", True, "upsample to the input size, as the Captum tutorial does", type="bool"),
        ),
        runner_knobs=frozenset({"interpolate"}),
        postprocess=upsample_to_input,
        needs_spatial_layer=True,
        backward_reach="to_layer",
    ),
    MethodSpec(
        "LayerIntegratedGradients",
        ca.LayerIntegratedGradients,
        "layer",
        "gradient",
        layer_path_integral,
        IG_KNOBS,
        baselines="single",
        supports_delta=True,
        has_completeness=True,
        check=_check_integration,
        reference="path",
        backward_reach="to_layer",
    ),
    MethodSpec(
        "LayerConductance",
        ca.LayerConductance,
        "layer",
        "gradient",
        conductance,
        IG_KNOBS,
        baselines="single",
        supports_delta=True,
        has_completeness=True,
        interpolates_inputs=True,
        check=_check_integration,
        reference="path",
        backward_reach="to_layer",
    ),
    MethodSpec(
        "LayerGradientXActivation",
        ca.LayerGradientXActivation,
        "layer",
        "gradient",
        one_pass,
        backward_reach="to_layer",
    ),
    MethodSpec("LayerActivation", ca.LayerActivation, "layer", "gradient", forward_only, takes_target=False),
    # neuron
    MethodSpec(
        "NeuronGradient",
        ca.NeuronGradient,
        "neuron",
        "gradient",
        one_pass,
        takes_target=False,
        backward_reach="from_layer",
    ),
    MethodSpec(
        "NeuronIntegratedGradients",
        ca.NeuronIntegratedGradients,
        "neuron",
        "gradient",
        path_integral,
        IG_KNOBS,
        baselines="single",
        takes_target=False,
        check=_check_integration,
        reference="path",
        backward_reach="from_layer",
    ),
    MethodSpec(
        "NeuronConductance",
        ca.NeuronConductance,
        "neuron",
        "gradient",
        path_integral,
        _integration_knobs(method="riemann_trapezoid"),
        baselines="single",
        check=_check_integration,
        reference="path",
    ),
):
    register_method(spec)

# Captum's LLM wrappers (LLMAttribution, LLMGradientAttribution) register from their own module
from attrib_core import llm_methods as _llm_methods  # noqa: E402, F401
