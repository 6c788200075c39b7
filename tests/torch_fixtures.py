"""Shared fixtures for the attrib_core tests (need torch): the workloads (loaded once) and small knobs.

The small knobs keep every method to a handful of model calls so the whole suite runs in
seconds on a laptop CPU; the benchmark presets, not the tests, use realistic settings.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from attrib_core.methods import METHODS
from attrib_core.workloads import Workload, load_workload
from attrib_core.workloads.catalog import resolve_reference

# Knobs that make each method cheap; methods not listed take none or use their defaults.
SMALL_KNOBS: dict[str, dict] = {
    "IntegratedGradients": {"n_steps": 4},
    "DeepLiftShap": {"n_baselines": 2},
    "GradientShap": {"n_samples": 3},
    "NoiseTunnel-Saliency": {"nt_samples": 3},
    "NoiseTunnel-IntegratedGradients": {"nt_samples": 2, "n_steps": 3},
    "ShapleyValueSampling": {"n_samples": 1},
    "KernelShap": {"n_samples": 20},
    "Lime": {"n_samples": 20},
    "LayerIntegratedGradients": {"n_steps": 4},
    "LayerConductance": {"n_steps": 4},
    "NeuronIntegratedGradients": {"n_steps": 4},
    "NeuronConductance": {"n_steps": 4},
    "InternalInfluence": {"n_steps": 4},
    "LayerDeepLiftShap": {"n_baselines": 2},
    "LayerGradientShap": {"n_samples": 3},
    "NeuronDeepLiftShap": {"n_baselines": 2},
    "NeuronGradientShap": {"n_samples": 3},
}

SMALL_WORKLOADS = ("digits_cnn", "tabular_mlp")
# Every method that runs on a tensor model; Captum's LLM wrappers need a causal LM with its
# tokenizer and are tested on one in tests/test_llm.py.
TENSOR_METHODS = tuple(m.name for m in METHODS if not getattr(m, "needs_generator", False))

# tabular_mlp with its 30 features in 5 groups of 6: few enough for ShapleyValues (n * n! rows)
FEW_FEATURES = "tabular_in_5_groups"
FEW_FEATURE_GROUPS = 5

# One backward pass (or one forward) per example: affordable on resnet18 on a CPU.
RESNET_CHEAP_METHODS = (
    "Saliency",
    "InputXGradient",
    "GuidedBackprop",
    "DeepLift",
    "LayerGradCam",
    "LayerGradientXActivation",
    "LayerActivation",
    "NeuronGradient",
    "Deconvolution",
    "GuidedGradCam",
    "LRP",
    "LayerLRP",
    "LayerDeepLift",
    "NeuronDeepLift",
    "NeuronGuidedBackprop",
    "NeuronDeconvolution",
)


def tabular_in_groups() -> dict:
    """The factory of FEW_FEATURES (a plug-in by module reference)."""
    tabular = load_workload("tabular_mlp")
    n_columns = tabular.inputs.shape[1]
    return {
        "model": tabular.model,
        "inputs": tabular.inputs,
        "targets": tabular.targets,
        "baseline": tabular.baseline,
        "background": tabular.background,
        "feature_mask": (torch.arange(n_columns) * FEW_FEATURE_GROUPS // n_columns)[None],
        "layer": tabular.layer_name,
        "neuron": tabular.neuron,
        "output": tabular.output_name,
        "weights": tabular.weights,
    }


resolve_reference(
    "tests.torch_fixtures:tabular_in_groups",
    key=FEW_FEATURES,
    declared={"input_kind": "features", "layer": "fc2"},
)


def small_knobs(method: str, **overrides) -> dict:
    return {**SMALL_KNOBS.get(method, {}), **overrides}


def layer_output_shape(workload: Workload, inputs: torch.Tensor) -> tuple[int, ...]:
    """Shape of the workload's explained layer's output for `inputs`."""
    seen: list[tuple[int, ...]] = []
    handle = workload.layer.register_forward_hook(lambda module, args, out: seen.append(tuple(out.shape)))
    try:
        with torch.no_grad():
            workload.model(inputs)
    finally:
        handle.remove()
    return seen[0]


@pytest.fixture
def one_thread():
    """Run a test on one intra-op thread: the models here are too small to gain from more, and
    on a shared 2-core machine a second spinning OpenMP thread makes them many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def digits() -> Workload:
    return load_workload("digits_cnn")


@pytest.fixture(scope="session")
def tabular() -> Workload:
    return load_workload("tabular_mlp")


@pytest.fixture(scope="session")
def resnet() -> Workload:
    # Offline with nothing cached, loading warns once that it falls back to random weights;
    # tests/test_workloads.py checks that warning, so other tests need not see it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return load_workload("resnet18")
