"""Cost models: how many rows one `attribute` call pushes through the model, forward and
backward, as a function of the knobs, the batch and the shapes involved.

Rows, not calls: `internal_batch_size` and `perturbations_per_eval` change how rows are
grouped into calls, not how many there are. tests/test_methods.py checks every model against
rows counted with hooks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from attrib_core.methods.windows import concrete_window, input_knobs, occlusion_windows


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
    layer_shape: tuple[int, ...] = ()  # one example's output of the workload's layer (layer perturbation methods)
    input_shapes: tuple[tuple[int, ...], ...] = ()  # several inputs: one example's shape per input


CostModel = Callable[[CostInput], Passes]


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


def occlusion(c: CostInput) -> Passes:
    """One forward of the batch, then one per window position; several inputs are occluded one
    input at a time (each with its own window), so their positions add up."""
    if not c.input_shapes:
        knobs = concrete_window(c.knobs, c.input_shape)
        windows = occlusion_windows(c.input_shape, knobs["sliding_window_shapes"], knobs["strides"])
        return Passes(c.batch_size * (1 + windows), 0)
    windows = 0
    for i, shape in enumerate(c.input_shapes):
        knobs = concrete_window(input_knobs(c.knobs, i), shape)
        windows += occlusion_windows(shape, knobs["sliding_window_shapes"], knobs["strides"])
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


def guided_gradcam(c: CostInput) -> Passes:
    """GradCAM's pass (output down to the layer), then guided backprop's (down to the inputs)."""
    return Passes(2 * c.batch_size, 2 * c.batch_size)


def lrp(c: CostInput) -> Passes:
    """One forward records each layer's activations, then a forward and a backward propagate
    relevance under the rules; the delta reuses the first forward's output."""
    return Passes(2 * c.batch_size, c.batch_size)


def all_orderings(c: CostInput) -> Passes:
    """ShapleyValues adds the features back in every one of the n! orderings, n rows each."""
    n = c.n_features
    return Passes(c.batch_size * (1 + n * math.factorial(n)), 0)


def layer_ablation(c: CostInput) -> Passes:
    """Every unit of the layer's output is a feature: one forward finds the layer's output, then
    the unperturbed batch and one batch per unit run through the whole model, the layer's
    output replaced."""
    return Passes(c.batch_size * (2 + math.prod(c.layer_shape)), 0)


def layer_gradient_shap(c: CostInput) -> Passes:
    """GradientShap in layer space: each random point's gradient, and the layer's value at the
    inputs and at the baselines it scales."""
    rows = c.batch_size * c.knobs["n_samples"]
    return Passes(3 * rows + (2 * rows if c.with_delta else 0), rows)
