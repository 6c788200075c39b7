"""attrib_core.methods: every registered method runs, matches Captum, and costs what it says."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import captum.attr as ca
import numpy as np
import pytest
import torch
from torch import nn

from attrib_core.methods import (
    IG_METHODS,
    METHODS,
    UNREGISTERED,
    CostInput,
    KnobError,
    Passes,
    get_method,
    occlusion_windows,
)
from attrib_core.run import NotApplicable, RunConfig, prepare, run_attribution
from attrib_core.workloads import WORKLOADS, Workload, load_workload, observed_spec
from attrib_core.workloads.applicability import applies_to
from tests.passes import measured_passes
from tests.torch_fixtures import (
    FEW_FEATURE_GROUPS,
    FEW_FEATURES,
    RESNET_CHEAP_METHODS,
    SMALL_WORKLOADS,
    TENSOR_METHODS,
    layer_output_shape,
    small_knobs,
)

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.usefixtures("one_thread")]

# checked against Workload.is_image in test_workloads.py
IMAGE_WORKLOADS = ("digits_cnn", "resnet18", "shapes_resnet18")
ALL_METHODS = METHODS.names()


def expected_shape(method: str, workload: Workload, inputs: torch.Tensor, knobs: dict) -> tuple[int, ...]:
    spec = get_method(method)
    if spec.kind in ("feature", "neuron"):
        return tuple(inputs.shape)
    if method == "LayerGradCam":
        # GradCAM sums the layer's channels into one map, upsampled to the input's size.
        spatial = inputs.shape[2:] if knobs.get("interpolate", True) else layer_output_shape(workload, inputs)[2:]
        return (inputs.shape[0], 1, *spatial)
    return layer_output_shape(workload, inputs)


def applies(method: str, workload: str) -> bool:
    if method not in TENSOR_METHODS:  # an LLM wrapper: these are no causal LMs
        return False
    return not (get_method(method).needs_spatial_layer and workload not in IMAGE_WORKLOADS)


def too_many_features(method: str, workload: str) -> bool:
    """Known only once the workload is built (its feature mask), so prepare() decides it."""
    limit = get_method(method).max_features
    return limit is not None and load_workload(workload).n_features > limit


# --- every method runs ------------------------------------------------------------------


@pytest.mark.parametrize("workload", SMALL_WORKLOADS)
@pytest.mark.parametrize("method", ALL_METHODS)
def test_every_method_runs_with_the_right_shape(method, workload):
    spec = get_method(method)
    w = load_workload(workload)
    assert applies_to(spec, WORKLOADS.get(workload)) == applies(method, workload)  # static: nothing built
    assert applies_to(spec, observed_spec(workload)) == applies(method, workload)  # observed on the model
    batch_size = max(2, spec.min_batch_size)
    config = RunConfig(method, workload, batch_size=batch_size, knobs=small_knobs(method))
    if not applies_to(spec, WORKLOADS.get(workload)):
        with pytest.raises(NotApplicable, match=rf"{method}.*{workload}"):
            prepare(config)
        return
    if too_many_features(method, workload):
        limit, n_features = spec.max_features, w.n_features
        with pytest.raises(
            NotApplicable, match=rf"{method} needs a feature mask of <= {limit} groups.*has {n_features}"
        ):
            prepare(config)
        config = RunConfig(method, FEW_FEATURES, batch_size=batch_size, knobs=small_knobs(method))
        w = load_workload(FEW_FEATURES)
    prepared = prepare(config)
    result = prepared()
    assert result.attributions.dtype == torch.float32
    assert result.attributions.device.type == "cpu"
    assert tuple(result.attributions.shape) == expected_shape(method, w, prepared.inputs, prepared.knobs)
    assert torch.isfinite(result.attributions).all()
    assert result.delta is None


@pytest.mark.parametrize("method", RESNET_CHEAP_METHODS)
def test_cheap_methods_run_on_resnet18(method, resnet):
    assert applies_to(get_method(method), observed_spec("resnet18"))
    prepared = prepare(RunConfig(method, "resnet18", batch_size=1))
    result = prepared()
    assert tuple(result.attributions.shape) == expected_shape(method, resnet, prepared.inputs, prepared.knobs)
    assert torch.isfinite(result.attributions).all()


def test_layer_gradcam_without_interpolation_has_the_layer_map_shape(digits):
    result = run_attribution("LayerGradCam", "digits_cnn", batch_size=3, knobs={"interpolate": False})
    batch, _, height, width = layer_output_shape(digits, digits.batch(3)[0])
    assert tuple(result.attributions.shape) == (batch, 1, height, width)


# --- our attributions are Captum's ------------------------------------------------------


def _layer(w: Workload) -> nn.Module:
    return w.layer


def _neuron(w: Workload) -> tuple[int, ...]:
    return w.neuron


def _occlusion_window(w: Workload) -> dict:
    if w.name == "digits_cnn":
        return {"sliding_window_shapes": (1, 2, 2), "strides": (1, 1, 1)}
    return {"sliding_window_shapes": (1,), "strides": (1,)}


# Each entry calls Captum directly, spelling out the arguments the runner should pass.
DIRECT: dict[str, Callable] = {
    "IntegratedGradients": lambda m, w, x, t: ca.IntegratedGradients(m).attribute(
        x, baselines=w.baseline, target=t, n_steps=4, method="gausslegendre"
    ),
    "Occlusion": lambda m, w, x, t: ca.Occlusion(m).attribute(
        x, baselines=w.baseline, target=t, perturbations_per_eval=1, **_occlusion_window(w)
    ),
    "GradientShap": lambda m, w, x, t: ca.GradientShap(m).attribute(
        x, baselines=w.background, target=t, n_samples=3, stdevs=0.0
    ),
    "NoiseTunnel-Saliency": lambda m, w, x, t: ca.NoiseTunnel(ca.Saliency(m)).attribute(
        x, nt_type="smoothgrad", nt_samples=3, stdevs=WORKLOADS.get(w.name).noise_stdevs, target=t
    ),
    "NoiseTunnel-IntegratedGradients": lambda m, w, x, t: ca.NoiseTunnel(ca.IntegratedGradients(m)).attribute(
        x,
        nt_type="smoothgrad",
        nt_samples=2,
        stdevs=WORKLOADS.get(w.name).noise_stdevs,
        baselines=w.baseline,
        target=t,
        n_steps=3,
    ),
    "DeepLiftShap": lambda m, w, x, t: ca.DeepLiftShap(m).attribute(x, baselines=w.background[:2], target=t),
    "LayerGradCam": lambda m, w, x, t: ca.LayerAttribution.interpolate(
        ca.LayerGradCam(m, _layer(w)).attribute(x, target=t, relu_attributions=False), tuple(x.shape[2:])
    ),
    "LayerIntegratedGradients": lambda m, w, x, t: ca.LayerIntegratedGradients(m, _layer(w)).attribute(
        x, baselines=w.baseline, target=t, n_steps=4, method="gausslegendre"
    ),
    "NeuronConductance": lambda m, w, x, t: ca.NeuronConductance(m, _layer(w)).attribute(
        x, neuron_selector=_neuron(w), baselines=w.baseline, target=t, n_steps=4, method="riemann_trapezoid"
    ),  # Captum's own default rule for NeuronConductance, which the registry follows
    "FeatureAblation": lambda m, w, x, t: ca.FeatureAblation(m).attribute(
        x, baselines=w.baseline, target=t, feature_mask=w.feature_mask, perturbations_per_eval=1
    ),
    "KernelShap": lambda m, w, x, t: ca.KernelShap(m).attribute(
        x, baselines=w.baseline, target=t, feature_mask=w.feature_mask, n_samples=20
    ),
    "Deconvolution": lambda m, w, x, t: ca.Deconvolution(m).attribute(x, target=t),
    "GuidedGradCam": lambda m, w, x, t: ca.GuidedGradCam(m, _layer(w)).attribute(
        x, target=t, interpolate_mode="nearest"
    ),
    "LRP": lambda m, w, x, t: ca.LRP(m).attribute(x, target=t),
    "ShapleyValues": lambda m, w, x, t: ca.ShapleyValues(m).attribute(
        x, baselines=w.baseline, target=t, feature_mask=w.feature_mask, perturbations_per_eval=1
    ),
    "InternalInfluence": lambda m, w, x, t: ca.InternalInfluence(m, _layer(w)).attribute(
        x, baselines=w.baseline, target=t, n_steps=4, method="gausslegendre"
    ),
    "LayerDeepLift": lambda m, w, x, t: ca.LayerDeepLift(m, _layer(w)).attribute(x, baselines=w.baseline, target=t),
    "LayerDeepLiftShap": lambda m, w, x, t: ca.LayerDeepLiftShap(m, _layer(w)).attribute(
        x, baselines=w.background[:2], target=t
    ),
    "LayerGradientShap": lambda m, w, x, t: ca.LayerGradientShap(m, _layer(w)).attribute(
        x, baselines=w.background, n_samples=3, stdevs=0.0, target=t
    ),
    "LayerLRP": lambda m, w, x, t: ca.LayerLRP(m, _layer(w)).attribute(x, target=t),
    "LayerFeatureAblation": lambda m, w, x, t: ca.LayerFeatureAblation(m, _layer(w)).attribute(x, target=t),
    "NeuronDeepLift": lambda m, w, x, t: ca.NeuronDeepLift(m, _layer(w)).attribute(
        x, neuron_selector=_neuron(w), baselines=w.baseline
    ),
    "NeuronDeepLiftShap": lambda m, w, x, t: ca.NeuronDeepLiftShap(m, _layer(w)).attribute(
        x, neuron_selector=_neuron(w), baselines=w.background[:2]
    ),
    "NeuronGradientShap": lambda m, w, x, t: ca.NeuronGradientShap(m, _layer(w)).attribute(
        x, neuron_selector=_neuron(w), baselines=w.background, n_samples=3, stdevs=0.0
    ),
    "NeuronGuidedBackprop": lambda m, w, x, t: ca.NeuronGuidedBackprop(m, _layer(w)).attribute(
        x, neuron_selector=_neuron(w)
    ),
    "NeuronDeconvolution": lambda m, w, x, t: ca.NeuronDeconvolution(m, _layer(w)).attribute(
        x, neuron_selector=_neuron(w)
    ),
    "NeuronFeatureAblation": lambda m, w, x, t: ca.NeuronFeatureAblation(m, _layer(w)).attribute(
        x, neuron_selector=_neuron(w), baselines=w.baseline, feature_mask=w.feature_mask, perturbations_per_eval=1
    ),
}

EQUIVALENCE_CASES = [
    ("IntegratedGradients", "digits_cnn", 3),
    ("IntegratedGradients", "tabular_mlp", 3),
    ("Occlusion", "digits_cnn", 2),
    ("Occlusion", "tabular_mlp", 3),
    ("GradientShap", "digits_cnn", 3),
    ("GradientShap", "tabular_mlp", 3),
    ("NoiseTunnel-Saliency", "digits_cnn", 3),
    ("NoiseTunnel-IntegratedGradients", "tabular_mlp", 2),
    ("DeepLiftShap", "digits_cnn", 2),
    ("LayerGradCam", "digits_cnn", 3),
    ("LayerIntegratedGradients", "digits_cnn", 3),
    ("LayerIntegratedGradients", "tabular_mlp", 3),
    ("NeuronConductance", "digits_cnn", 8),  # the first examples' neuron loses the max-pool: all zero
    ("NeuronConductance", "tabular_mlp", 3),
    ("FeatureAblation", "digits_cnn", 2),
    ("FeatureAblation", "tabular_mlp", 3),
    ("KernelShap", "tabular_mlp", 1),
    ("KernelShap", "tabular_mlp", 2),
    ("KernelShap", "digits_cnn", 1),
    ("Deconvolution", "digits_cnn", 3),
    ("Deconvolution", "tabular_mlp", 3),
    ("GuidedGradCam", "digits_cnn", 3),
    ("LRP", "digits_cnn", 3),
    ("LRP", "tabular_mlp", 3),
    ("ShapleyValues", FEW_FEATURES, 1),
    ("ShapleyValues", FEW_FEATURES, 3),
    ("InternalInfluence", "digits_cnn", 3),
    ("InternalInfluence", "tabular_mlp", 3),
    ("LayerDeepLift", "digits_cnn", 3),
    ("LayerDeepLift", "tabular_mlp", 3),
    ("LayerDeepLiftShap", "digits_cnn", 2),
    ("LayerDeepLiftShap", "tabular_mlp", 3),
    ("LayerGradientShap", "digits_cnn", 3),
    ("LayerGradientShap", "tabular_mlp", 3),
    ("LayerLRP", "digits_cnn", 3),
    ("LayerLRP", "tabular_mlp", 3),
    ("LayerFeatureAblation", "digits_cnn", 2),
    ("LayerFeatureAblation", "tabular_mlp", 3),
    ("NeuronDeepLift", "digits_cnn", 3),
    ("NeuronDeepLift", "tabular_mlp", 3),
    ("NeuronDeepLiftShap", "digits_cnn", 2),
    ("NeuronDeepLiftShap", "tabular_mlp", 3),
    ("NeuronGradientShap", "digits_cnn", 3),
    ("NeuronGradientShap", "tabular_mlp", 3),
    ("NeuronGuidedBackprop", "digits_cnn", 3),
    ("NeuronGuidedBackprop", "tabular_mlp", 3),
    ("NeuronDeconvolution", "digits_cnn", 3),
    ("NeuronDeconvolution", "tabular_mlp", 3),
    ("NeuronFeatureAblation", "digits_cnn", 2),
    ("NeuronFeatureAblation", "tabular_mlp", 3),
]


@pytest.mark.parametrize(("method", "workload", "batch_size"), EQUIVALENCE_CASES)
def test_attributions_equal_a_direct_captum_call(method, workload, batch_size):
    seed = 7
    ours = run_attribution(method, workload, batch_size=batch_size, knobs=small_knobs(method), seed=seed)
    w = load_workload(workload)
    inputs, targets = w.batch(batch_size)
    # The runner places inputs in contiguous format: digits' (N, 1, 8, 8) batch has channels_last-like
    # strides, with which convolutions take another kernel and round differently in the last bit.
    inputs = inputs.to(memory_format=torch.contiguous_format)
    # The runner seeds every generator Captum draws from (GradientShap uses NumPy's).
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    direct = DIRECT[method](w.model, w, inputs, targets).detach()
    assert ours.attributions.abs().sum() > 0, "a trivial all-zero attribution would prove nothing"
    assert torch.equal(ours.attributions, direct)


# --- closed forms -----------------------------------------------------------------------

CAPTUM_TRAPEZOID = (
    "Captum 0.9 bug: riemann_trapezoid puts n points on [0, 1] (spacing 1/(n-1)) but weights them 1/n "
    "(halved at the ends), so the weights sum to (n-1)/n and IG on a linear model is (n-1)/n of the exact value"
)


@pytest.mark.parametrize(
    "rule",
    [
        pytest.param(rule, marks=pytest.mark.xfail(strict=True, raises=AssertionError, reason=CAPTUM_TRAPEZOID))
        if rule == "riemann_trapezoid"
        else rule
        for rule in IG_METHODS
    ],
)
def test_integrated_gradients_on_a_linear_model_is_input_minus_baseline_times_weight(rule):
    spec = get_method("IntegratedGradients")
    torch.manual_seed(0)
    linear = nn.Linear(6, 3)
    inputs, baseline = torch.randn(4, 6), torch.randn(1, 6)
    targets = torch.tensor([0, 2, 1, 2])
    attributor = spec.build(linear, None)
    kwargs = spec.attribute_kwargs(spec.resolve_knobs({"n_steps": 3, "method": rule}))
    attributions = attributor.attribute(inputs, baselines=baseline, target=targets, **kwargs)
    expected = (inputs - baseline) * linear.weight.detach()[targets]
    torch.testing.assert_close(attributions, expected, rtol=1e-5, atol=1e-6)


def test_integrated_gradients_completeness_error_shrinks_with_n_steps(digits):
    batch_size = 8
    inputs, targets = digits.batch(batch_size)
    with torch.no_grad():
        at_input = digits.model(inputs)[torch.arange(batch_size), targets]
        at_baseline = digits.model(digits.baseline)[0, targets]
    gap = at_input - at_baseline

    errors, deltas = {}, {}
    for n_steps in (8, 64):
        knobs = {"n_steps": n_steps, "method": "gausslegendre"}
        result = run_attribution(
            "IntegratedGradients", "digits_cnn", batch_size=batch_size, knobs=knobs, with_delta=True
        )
        errors[n_steps] = result.attributions.sum(dim=(1, 2, 3)) - gap
        deltas[n_steps] = result.delta
        assert result.delta.shape == (batch_size,)

    assert errors[64].abs().max() < errors[8].abs().max()
    assert (errors[64].abs() < 0.01 * gap.abs()).all()
    # Captum's delta is exactly this completeness error (up to float rounding).
    for n_steps in errors:
        torch.testing.assert_close(deltas[n_steps], errors[n_steps], rtol=0, atol=1e-4)


def test_with_delta_returns_captums_delta(digits):
    knobs = {"n_steps": 8}
    result = run_attribution("IntegratedGradients", "digits_cnn", batch_size=3, knobs=knobs, with_delta=True)
    inputs, targets = digits.batch(3)
    inputs = inputs.to(memory_format=torch.contiguous_format)
    attributions, delta = ca.IntegratedGradients(digits.model).attribute(
        inputs, baselines=digits.baseline, target=targets, n_steps=8, return_convergence_delta=True
    )
    assert torch.equal(result.attributions, attributions.detach())
    assert torch.equal(result.delta, delta.detach())


def _delta_rows(method: str, batch_size: int, knobs: dict) -> int:
    """Captum returns one delta per example, and per baseline draw for the *Shap methods."""
    if method.endswith("GradientShap"):
        return batch_size * knobs["n_samples"]
    if method.endswith("DeepLiftShap"):
        return batch_size * knobs["n_baselines"]
    return batch_size


@pytest.mark.parametrize("method", [m.name for m in METHODS if m.supports_delta])
def test_every_delta_method_returns_its_deltas(method):
    knobs = small_knobs(method)
    result = run_attribution(method, "tabular_mlp", batch_size=3, knobs=knobs, with_delta=True)
    assert result.delta is not None
    assert result.delta.shape == (_delta_rows(method, 3, knobs),)
    assert torch.isfinite(result.delta).all()


@pytest.mark.parametrize(
    "method", [m.name for m in METHODS if m.has_completeness and m.baselines == "single" and m.stochastic is False]
)
def test_completeness_delta_is_the_attribution_sum_minus_the_output_gap(method, tabular):
    """sum(attributions) ~ F(x) - F(baseline), at the input or (layer methods) at the layer."""
    batch_size = 4
    inputs, targets = tabular.batch(batch_size)
    with torch.no_grad():
        gap = tabular.model(inputs)[torch.arange(batch_size), targets] - tabular.model(tabular.baseline)[0, targets]
    knobs = {"n_steps": 64} if "n_steps" in get_method(method).knob_names else {}
    result = run_attribution(method, "tabular_mlp", batch_size=batch_size, knobs=knobs, with_delta=True)
    torch.testing.assert_close(result.delta, result.attributions.sum(dim=1) - gap, rtol=0, atol=1e-4)
    assert (result.delta.abs() < 0.01 * gap.abs()).all()


# --- cost models ------------------------------------------------------------------------


def _cost_cases():
    for workload in SMALL_WORKLOADS:
        for spec in METHODS:
            if not applies(spec.name, workload) or too_many_features(spec.name, workload):
                continue
            name, knobs = spec.name, small_knobs(spec.name)
            min_batch = spec.min_batch_size
            yield pytest.param(workload, name, min_batch, knobs, False, id=f"{workload}-{name}-b{min_batch}")
            yield pytest.param(workload, name, 3, knobs, False, id=f"{workload}-{name}-b3")
            if "internal_batch_size" in spec.knob_names:
                for batch, size in ((3, 1), (2, 5), (2, 64)):
                    yield pytest.param(
                        workload, name, batch, {**knobs, "internal_batch_size": size}, False,
                        id=f"{workload}-{name}-b{batch}-ibs{size}",
                    )  # fmt: skip
            if "perturbations_per_eval" in spec.knob_names:
                yield pytest.param(
                    workload, name, 3, {**knobs, "perturbations_per_eval": 4}, False, id=f"{workload}-{name}-b3-ppe4"
                )
            if "nt_samples_batch_size" in spec.knob_names:
                yield pytest.param(
                    workload, name, 3, {**knobs, "nt_samples_batch_size": 2}, False, id=f"{workload}-{name}-b3-ntb2"
                )
            if spec.supports_delta:
                yield pytest.param(workload, name, 3, knobs, True, id=f"{workload}-{name}-b3-delta")
                if "internal_batch_size" in spec.knob_names:
                    yield pytest.param(
                        workload, name, 2, {**knobs, "internal_batch_size": 3}, True,
                        id=f"{workload}-{name}-b2-ibs3-delta",
                    )  # fmt: skip
        clipped = {"sliding_window_shapes": (1, 3, 3), "strides": (1, 2, 2)}
        if workload == "tabular_mlp":
            clipped = {"sliding_window_shapes": (4,), "strides": (4,)}
        yield pytest.param(workload, "Occlusion", 2, clipped, False, id=f"{workload}-Occlusion-clipped")
    for spec in METHODS:
        if spec.max_features is not None:
            for batch, knobs in ((1, {}), (3, {}), (3, {"perturbations_per_eval": 4})):
                name = f"{FEW_FEATURES}-{spec.name}-b{batch}" + ("-ppe4" if knobs else "")
                yield pytest.param(FEW_FEATURES, spec.name, batch, knobs, False, id=name)


@pytest.mark.parametrize(("workload", "method", "batch_size", "knobs", "with_delta"), list(_cost_cases()))
def test_cost_model_equals_counted_model_rows(workload, method, batch_size, knobs, with_delta):
    prepared = prepare(RunConfig(method, workload, batch_size=batch_size, knobs=knobs, with_delta=with_delta))
    assert measured_passes(prepared) == prepared.passes


def test_every_method_has_cost_cases():
    covered = {param.values[1] for param in _cost_cases()}
    assert covered == set(TENSOR_METHODS)  # the LLM wrappers' cost cases: tests/test_llm.py


def test_cost_scales_with_batch_and_knobs():
    spec = get_method("IntegratedGradients")

    def cost(batch_size, n_steps, with_delta=False):
        knobs = spec.resolve_knobs({"n_steps": n_steps})
        return spec.cost(CostInput(batch_size, knobs, (1, 8, 8), 64, with_delta))

    assert cost(2, 10) == Passes(20, 20)
    assert cost(4, 10) == Passes(40, 40)
    assert cost(2, 10, with_delta=True) == Passes(24, 20)


OCCLUSION_SHAPES = [
    ((1, 8, 8), (1, 2, 2), (1, 1, 1), 49),  # windows fit exactly
    ((1, 8, 8), (1, 3, 3), (1, 2, 2), 16),  # (8-3)/2 = 2.5: a fourth, clipped window per axis
    ((30,), (4,), (4,), 8),  # 26/4 = 6.5: 8 positions, the last one clipped
    ((2, 7, 5), (1, 3, 2), (1, 2, 2), 2 * 3 * 3),  # clipped on both spatial axes
]


@pytest.mark.parametrize(("input_shape", "window", "stride", "expected"), OCCLUSION_SHAPES)
def test_occlusion_windows_match_captum(input_shape, window, stride, expected):
    assert occlusion_windows(input_shape, window, stride) == expected
    rows = []

    def forward(x):
        rows.append(x.shape[0])
        return x.flatten(1).sum(1, keepdim=True)

    ca.Occlusion(forward).attribute(torch.ones(1, *input_shape), sliding_window_shapes=window, strides=stride, target=0)
    assert sum(rows) == 1 + expected  # the unoccluded input, then one row per window


# --- knobs ------------------------------------------------------------------------------


def test_resolve_knobs_layers_defaults_workload_then_user(digits):
    spec = get_method("Occlusion")
    assert spec.resolve_knobs() == {"sliding_window_shapes": "auto", "strides": "auto", "perturbations_per_eval": 1}
    workload_defaults = digits.method_defaults["Occlusion"]
    resolved = spec.resolve_knobs(workload_defaults, {"strides": [1, 2, 2]})
    assert resolved == {"sliding_window_shapes": (1, 2, 2), "strides": (1, 2, 2), "perturbations_per_eval": 1}


def test_prepare_resolves_workload_defaults(digits):
    prepared = prepare(RunConfig("Occlusion", "digits_cnn"))
    assert prepared.knobs["sliding_window_shapes"] == digits.method_defaults["Occlusion"]["sliding_window_shapes"]


@pytest.mark.parametrize(
    ("method", "knobs", "match"),
    [
        ("IntegratedGradients", {"n_steps": 0}, r"n_steps=0 is not valid; expected an integer >= 1"),
        ("IntegratedGradients", {"n_steps": True}, r"n_steps=True is not valid"),
        ("IntegratedGradients", {"n_steps": 2.0}, r"n_steps=2\.0 is not valid"),
        ("IntegratedGradients", {"method": "simpson"}, r"method='simpson'.*'riemann_left'.*'gausslegendre'"),
        ("IntegratedGradients", {"internal_batch_size": 0}, r"internal_batch_size=0.*>= 1 or None"),
        ("IntegratedGradients", {"method": "riemann_left", "n_steps": 1}, r"n_steps=1.*riemann_left.*>= 2"),
        ("GradientShap", {"stdevs": -0.1}, r"stdevs=-0\.1.*>= 0\.0"),
        ("Saliency", {"abs": 1}, r"abs=1.*True or False"),
        ("NoiseTunnel-Saliency", {"nt_type": "mean"}, r"nt_type='mean'.*'smoothgrad', 'smoothgrad_sq', 'vargrad'"),
        ("Occlusion", {"sliding_window_shapes": (0, 2)}, r"sliding_window_shapes=\(0, 2\).*positive integers"),
        ("Occlusion", {"sliding_window_shapes": (1, 2, 2), "strides": (1, 1)}, r"same length"),
        ("Saliency", {"n_steps": 4}, r"unknown knob 'n_steps' for Saliency; valid knobs: abs"),
        ("InputXGradient", {"n_steps": 4}, r"unknown knob 'n_steps' for InputXGradient; valid knobs: none"),
    ],
)
def test_bad_knobs_name_the_value_and_the_valid_range(method, knobs, match):
    with pytest.raises(KnobError, match=match):
        get_method(method).resolve_knobs(knobs)


def test_gausslegendre_accepts_one_step():
    assert get_method("IntegratedGradients").resolve_knobs({"n_steps": 1})["n_steps"] == 1


def test_runner_knobs_are_not_passed_to_captum():
    gradcam = get_method("LayerGradCam")
    assert "interpolate" not in gradcam.attribute_kwargs(gradcam.resolve_knobs())
    shap = get_method("DeepLiftShap")
    assert shap.attribute_kwargs(shap.resolve_knobs({"n_baselines": 2})) == {}


def test_specs_are_consistent():
    for spec in METHODS:
        assert spec.kind in ("feature", "layer", "neuron")
        assert spec.family in ("gradient", "perturbation")
        assert len(set(spec.knob_names)) == len(spec.knob_names), spec.name
        assert spec.runner_knobs <= set(spec.knob_names), spec.name
        assert not spec.has_completeness or spec.supports_delta, spec.name
        if spec.family == "perturbation":
            assert spec.cost(CostInput(2, spec.resolve_knobs(), (30,), 30, False)).backward == 0, spec.name
        spec.resolve_knobs()  # the defaults are valid


# --- the registry covers captum.attr ----------------------------------------------------


def _registered_captum_names() -> set[str]:
    """Every class a registered method builds: its own, and the LLM wrapper around it."""
    wrappers = {spec.wrapper.__name__ for spec in METHODS if getattr(spec, "wrapper", None) is not None}
    return {spec.captum_class.__name__ for spec in METHODS} | wrappers


def test_every_captum_attr_name_is_registered_or_listed_with_a_reason_never_both():
    """A class a new Captum adds fails this until it is registered or listed in UNREGISTERED. The
    LLM wrappers may be registered by the LLM workloads module: then their entry must go."""
    registered = _registered_captum_names()
    names = set(ca.__all__)
    neither = sorted(names - registered - set(UNREGISTERED))
    both = sorted(registered & set(UNREGISTERED))
    assert not neither, f"register these or list them with a reason in UNREGISTERED: {neither}"
    assert not both, f"registered and listed: remove them from UNREGISTERED: {both}"
    assert set(UNREGISTERED) <= names, f"listed but not in captum.attr: {sorted(set(UNREGISTERED) - names)}"
    assert all(len(reason) > 20 for reason in UNREGISTERED.values())


def test_a_registered_class_is_what_captum_attr_exports():
    for spec in METHODS:
        assert getattr(ca, spec.captum_class.__name__) is spec.captum_class, spec.name


def test_the_llm_wrappers_are_registered_and_the_remote_one_needs_a_server():
    for name in ("LLMAttribution", "LLMGradientAttribution"):
        assert name in _registered_captum_names() and name not in UNREGISTERED  # attrib_core/methods/llm.py
    assert "remote LLM inference server" in UNREGISTERED["RemoteLLMAttribution"]


def test_layer_feature_permutation_is_listed_because_captum_selects_the_target_twice(tabular):
    """When this fails, Captum has fixed it: register LayerFeaturePermutation and drop its entry."""
    inputs, targets = tabular.batch(4)
    permutation = ca.LayerFeaturePermutation(tabular.model, tabular.layer)
    with pytest.raises(AssertionError, match="Output must be 2D to select tensor of targets"):
        permutation.attribute(inputs, target=targets)
    assert tuple(permutation.attribute(inputs).shape) == (8, 32)  # no target: twice the batch's rows


def test_layer_feature_ablation_has_no_perturbations_per_eval_because_captum_drops_the_targets(tabular):
    """Captum runs the perturbed copies with the batch's targets unrepeated; when this fails, add the knob."""
    inputs, targets = tabular.batch(3)
    with pytest.raises(AssertionError, match=r"Tensor target dimension torch.Size\(\[3\]\) is not valid"):
        ca.LayerFeatureAblation(tabular.model, tabular.layer).attribute(
            inputs, target=targets, perturbations_per_eval=2
        )
    assert "perturbations_per_eval" not in get_method("LayerFeatureAblation").knob_names


def test_shapley_values_split_the_output_gap_exactly_between_the_groups():
    """Efficiency: each of the n! orderings telescopes to F(x) - F(baseline), so their mean does.
    float32 rounding: n differences per ordering and a sum over n! orderings, each off by at most
    eps * |F|, bound the error by (n + n!) * eps * max|F| (726 * 1.2e-7 ~ 1e-4 relative)."""
    workload = load_workload(FEW_FEATURES)
    batch_size = 4
    result = run_attribution("ShapleyValues", FEW_FEATURES, batch_size=batch_size)
    inputs, targets = workload.batch(batch_size)
    with torch.no_grad():
        at_input = workload.model(inputs)[torch.arange(batch_size), targets]
        at_baseline = workload.model(workload.baseline)[0, targets]
    first_of_group = [int((workload.feature_mask[0] == g).nonzero()[0]) for g in range(FEW_FEATURE_GROUPS)]
    per_group = result.attributions[:, first_of_group]
    n = FEW_FEATURE_GROUPS
    scale = torch.maximum(at_input.abs(), at_baseline.abs()).max()
    bound = (n + math.factorial(n)) * torch.finfo(torch.float32).eps * scale
    torch.testing.assert_close(per_group.sum(dim=1), at_input - at_baseline, rtol=0, atol=float(bound))
    # every input of a group carries the group's value
    assert torch.equal(result.attributions, per_group[:, workload.feature_mask[0]])


def test_shapley_values_name_the_feature_limit_and_the_alternative(tabular):
    with pytest.raises(NotApplicable, match=r"<= 6 groups.*'tabular_mlp' has 30; use ShapleyValueSampling"):
        prepare(RunConfig("ShapleyValues", "tabular_mlp"))


def test_guided_gradcam_is_guided_backprop_times_the_upsampled_gradcam(digits):
    """Its definition, from the two registered methods it combines (GradCAM's positive part only):
    exact, the same float products."""
    batch_size = 3
    ours = run_attribution("GuidedGradCam", "digits_cnn", batch_size=batch_size).attributions
    guided = run_attribution("GuidedBackprop", "digits_cnn", batch_size=batch_size).attributions
    cam_knobs = {"interpolate": False, "relu_attributions": True}
    cam = run_attribution("LayerGradCam", "digits_cnn", batch_size=batch_size, knobs=cam_knobs)
    upsampled = ca.LayerAttribution.interpolate(cam.attributions, tuple(guided.shape[2:]), "nearest")
    assert ours.abs().sum() > 0
    assert torch.equal(ours, guided * upsampled)
