"""attrib_core.run: validation, determinism, no leaked state, precision and memory format."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from attrib_core.devices import available_devices
from attrib_core.methods import METHODS, KnobError, get_method
from attrib_core.registry import UnknownNameError
from attrib_core.run import (
    PRECISIONS,
    AutocastForward,
    NotApplicable,
    RunConfig,
    placed_model,
    prepare,
    run_attribution,
)
from tests.numerics import relative_error, rounding_bound
from tests.torch_fixtures import FEW_FEATURES, SMALL_WORKLOADS, TENSOR_METHODS, small_knobs

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.usefixtures("one_thread")]

STOCHASTIC = [m.name for m in METHODS if m.stochastic and m.name in TENSOR_METHODS]
DETERMINISTIC = [m.name for m in METHODS if not m.stochastic and m.name in TENSOR_METHODS]


def _batch_for(method: str) -> int:
    # FeaturePermutation swaps rows within the batch: with 2 rows every seed gives the same swap.
    return 4 if method == "FeaturePermutation" else max(2, get_method(method).min_batch_size)


def _workload_for(method: str) -> str:
    spec = get_method(method)
    if spec.needs_spatial_layer:
        return "digits_cnn"
    return FEW_FEATURES if spec.max_features is not None else "tabular_mlp"


# --- determinism ------------------------------------------------------------------------


@pytest.mark.parametrize("method", TENSOR_METHODS)
def test_same_config_and_seed_give_identical_attributions(method):
    config = RunConfig(method, _workload_for(method), batch_size=_batch_for(method), knobs=small_knobs(method), seed=3)
    first = prepare(config)()
    second = prepare(config)()
    assert torch.equal(first.attributions, second.attributions)


@pytest.mark.parametrize("method", STOCHASTIC)
def test_a_different_seed_changes_a_stochastic_method(method):
    options = {"batch_size": _batch_for(method), "knobs": small_knobs(method)}
    seed_0 = run_attribution(method, _workload_for(method), seed=0, **options)
    seed_1 = run_attribution(method, _workload_for(method), seed=1, **options)
    assert not torch.equal(seed_0.attributions, seed_1.attributions)


@pytest.mark.parametrize("method", DETERMINISTIC)
def test_a_different_seed_does_not_change_a_deterministic_method(method):
    """The `stochastic` flag is right: methods without it ignore the seed."""
    options = {"batch_size": _batch_for(method), "knobs": small_knobs(method)}
    seed_0 = run_attribution(method, _workload_for(method), seed=0, **options)
    seed_1 = run_attribution(method, _workload_for(method), seed=1, **options)
    assert torch.equal(seed_0.attributions, seed_1.attributions)


@pytest.mark.parametrize("method", ["GradientShap", "KernelShap", "NoiseTunnel-Saliency"])
def test_a_prepared_run_repeats_whatever_the_global_generators_did_in_between(method):
    prepared = prepare(RunConfig(method, "tabular_mlp", batch_size=2, knobs=small_knobs(method), seed=5))
    first = prepared()
    torch.rand(10)
    np.random.rand(10)  # GradientShap draws its path points from NumPy's global generator
    assert torch.equal(prepared().attributions, first.attributions)


def test_run_attribution_is_prepare_then_call():
    config = RunConfig("GradientShap", "digits_cnn", batch_size=2, knobs={"n_samples": 3}, seed=11)
    direct = run_attribution("GradientShap", "digits_cnn", batch_size=2, knobs={"n_samples": 3}, seed=11)
    assert torch.equal(prepare(config)().attributions, direct.attributions)


# --- no state leaks ---------------------------------------------------------------------


def _hooks(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) + len(m._backward_pre_hooks)
        for m in model.modules()
    )


LEAK_CASES = [
    (method.name, FEW_FEATURES if method.max_features is not None else workload)
    for workload in SMALL_WORKLOADS
    for method in METHODS
    if method.name in TENSOR_METHODS and not (method.needs_spatial_layer and workload == "tabular_mlp")
]


@pytest.mark.parametrize(("method", "workload"), LEAK_CASES)
def test_a_run_leaves_no_gradients_hooks_or_training_mode(method, workload):
    prepared = prepare(RunConfig(method, workload, batch_size=_batch_for(method), knobs=small_knobs(method)))
    inputs_before = prepared.workload.inputs.clone()
    prepared()
    model = prepared.workload_model
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())  # Captum must not switch them off either
    assert _hooks(model) == 0
    assert torch.equal(prepared.workload.inputs, inputs_before)
    assert prepared.workload.inputs.grad is None and not prepared.workload.inputs.requires_grad


# --- options ----------------------------------------------------------------------------


def test_delta_only_when_asked():
    assert run_attribution("IntegratedGradients", "tabular_mlp", knobs={"n_steps": 4}).delta is None
    delta = run_attribution("IntegratedGradients", "tabular_mlp", knobs={"n_steps": 4}, with_delta=True).delta
    assert delta is not None and delta.shape == (1,)


def test_prepare_passes_the_resolved_knobs_and_workload_pieces(digits):
    prepared = prepare(RunConfig("DeepLiftShap", "digits_cnn", batch_size=2, knobs={"n_baselines": 3}))
    assert torch.equal(prepared.kwargs["baselines"], digits.background[:3])
    assert torch.equal(prepared.kwargs["target"], digits.targets[:2])
    assert "n_baselines" not in prepared.kwargs
    neuron = prepare(RunConfig("NeuronGradient", "digits_cnn"))
    assert neuron.kwargs == {"neuron_selector": digits.neuron}
    ablation = prepare(RunConfig("FeatureAblation", "digits_cnn"))
    assert torch.equal(ablation.kwargs["feature_mask"], digits.feature_mask)
    assert torch.equal(ablation.kwargs["baselines"], digits.baseline)


def test_available_devices_lists_cpu_first():
    devices = available_devices()
    assert devices[0] == "cpu"
    assert ("cuda" in devices) == torch.cuda.is_available()


@pytest.mark.parametrize(
    ("method", "knobs"),
    [
        ("IntegratedGradients", {"n_steps": 8}),
        ("Saliency", {}),
        ("DeepLift", {}),
        ("Occlusion", {}),
        ("LayerGradCam", {}),
        ("LayerIntegratedGradients", {"n_steps": 4}),
        ("NeuronIntegratedGradients", {"n_steps": 4}),
    ],
)
@pytest.mark.parametrize(("precision", "memory_format"), [("bf16", "contiguous"), ("fp32", "channels_last")])
def test_precision_and_memory_format_give_close_fp32_attributions(method, knobs, precision, memory_format):
    """Both runs are held to the float64 attribution, within what rounding in their dtype explains
    on this model (tests/numerics.py): bf16 keeps ~3 significant digits, fp32 in channels_last
    sums in another order. A broken wrapper or layout moves the maps by far more."""
    options = {"batch_size": 4, "knobs": knobs}
    contiguous = prepare(RunConfig(method, "digits_cnn", **options))
    result = run_attribution(method, "digits_cnn", precision=precision, memory_format=memory_format, **options)
    attributions = result.attributions
    assert attributions.dtype == torch.float32
    assert torch.isfinite(attributions).all()
    reference, bound = rounding_bound(contiguous, PRECISIONS[precision] or torch.float32)
    assert attributions.shape == reference.shape
    assert relative_error(attributions, reference) <= bound
    assert relative_error(contiguous().attributions, reference) <= bound


def test_bf16_wraps_the_model_in_autocast_and_keeps_layer_hooks_on_the_real_model(digits):
    prepared = prepare(RunConfig("LayerGradCam", "digits_cnn", precision="bf16"))
    assert isinstance(prepared.model, AutocastForward)
    assert prepared.model.model is prepared.workload_model
    assert prepared.attributor.layer is prepared.workload_model.conv2


def test_channels_last_uses_a_copy_and_leaves_the_workload_model_alone(digits):
    prepared = prepare(RunConfig("Saliency", "digits_cnn", memory_format="channels_last", batch_size=2))
    assert prepared.workload_model is not digits.model
    assert prepared.workload_model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert prepared.inputs.is_contiguous(memory_format=torch.channels_last)
    assert digits.model.conv2.weight.is_contiguous()
    assert not digits.model.conv2.weight.is_contiguous(memory_format=torch.channels_last)
    assert placed_model("digits_cnn", "cpu", "contiguous") is digits.model


# --- bad input --------------------------------------------------------------------------

BAD_CONFIGS = [
    pytest.param(
        {"method": "IGG"}, UnknownNameError, r"unknown method 'IGG'; known: .*IntegratedGradients", id="method"
    ),
    pytest.param(
        {"workload": "mnist"}, UnknownNameError, r"unknown workload 'mnist'; known: .*digits_cnn.*tabular_mlp",
        id="workload",
    ),
    pytest.param(
        {"knobs": {"steps": 4}}, KnobError,
        r"unknown knob 'steps' for IntegratedGradients; valid knobs: n_steps, method, internal_batch_size", id="knob",
    ),
    pytest.param({"device": "tpu"}, ValueError, r"unknown device 'tpu'; valid: cpu, cuda, cuda:N", id="device"),
    pytest.param(
        {"knobs": {"n_steps": 0}}, KnobError, r"IntegratedGradients: n_steps=0 is not valid; expected an integer >= 1",
        id="n_steps-0",
    ),
    pytest.param(
        {"knobs": {"n_steps": 1, "method": "riemann_trapezoid"}}, KnobError,
        r"n_steps=1 is too small for method='riemann_trapezoid'; riemann rules need n_steps >= 2", id="trapezoid-1",
    ),
    pytest.param(
        {"knobs": {"method": "simpson"}}, KnobError,
        r"method='simpson' is not valid; expected one of 'riemann_left', .*'gausslegendre'", id="rule",
    ),
    pytest.param({"batch_size": 0}, ValueError, r"batch_size=0 is not valid; needs an integer >= 1", id="batch-0"),
    pytest.param(
        {"batch_size": -2}, ValueError, r"batch_size=-2 is not valid; needs an integer >= 1", id="batch-negative"
    ),
    pytest.param({"batch_size": 2.0}, ValueError, r"batch_size=2\.0 is not valid", id="batch-float"),
    pytest.param(
        {"batch_size": True}, ValueError, r"batch_size=True is not valid", id="batch-bool",
    ),
    pytest.param(
        {"method": "FeaturePermutation", "batch_size": 1}, NotApplicable,
        r"FeaturePermutation needs batch_size >= 2 \(it works across the examples of a batch\); this cell has 1",
        id="permutation-batch-1",
    ),
    pytest.param(
        {"method": "LayerGradCam", "workload": "tabular_mlp"}, ValueError,
        r"LayerGradCam needs a convolutional layer; workload 'tabular_mlp' has no spatial input", id="gradcam-tabular",
    ),
    pytest.param(
        {"workload": "tabular_mlp", "memory_format": "channels_last"}, ValueError,
        r"memory_format 'channels_last' needs 4-d image inputs; 'tabular_mlp' is not an image",
        id="channels-last-tabular",
    ),
    pytest.param(
        {"memory_format": "nhwc"}, ValueError, r"unknown memory_format 'nhwc'; valid: contiguous, channels_last",
        id="memory-format",
    ),
    pytest.param({"precision": "fp8"}, ValueError, r"unknown precision 'fp8'; valid: fp32, bf16, fp16", id="precision"),
    pytest.param(
        {"method": "Saliency", "with_delta": True}, ValueError,
        r"Saliency has no convergence delta; methods with one: IntegratedGradients, .*DeepLift, .*LayerLRP", id="delta",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("overrides", "error", "match"), BAD_CONFIGS)
def test_bad_input_names_the_value_and_the_valid_choices(overrides, error, match):
    config = {"method": "IntegratedGradients", "workload": "digits_cnn", **overrides}
    with pytest.raises(error, match=match):
        prepare(RunConfig(**config))


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_without_cuda_is_refused(device):
    with pytest.raises(
        ValueError, match=rf"device '{device}' requested but CUDA is not available here; available: cpu"
    ):
        prepare(RunConfig("Saliency", "digits_cnn", device=device))


@pytest.mark.parametrize(
    ("overrides", "valid"),
    [
        pytest.param({"method": "LayerGradCam", "workload": "tabular_mlp"}, "digits_cnn", id="gradcam-tabular"),
        pytest.param(
            {"workload": "tabular_mlp", "memory_format": "channels_last"}, "contiguous", id="channels-last-tabular"
        ),
    ],
)
def test_unsupported_combinations_list_the_valid_choices(overrides, valid):
    with pytest.raises(ValueError) as caught:
        prepare(RunConfig(**{"method": "IntegratedGradients", "workload": "digits_cnn", **overrides}))
    assert valid in str(caught.value)


def test_run_config_is_hashable():
    config = RunConfig("IntegratedGradients", "digits_cnn", knobs={"n_steps": 4})
    assert hash(config) == hash(RunConfig("IntegratedGradients", "digits_cnn", knobs={"n_steps": 4}))
