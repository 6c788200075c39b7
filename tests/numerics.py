"""Bounds on floating-point differences, derived from a dtype's unit roundoff and the model's own
sensitivity to rounding, so a comparison holds on any CPU's kernels rather than on one machine's.

Two results computed in another precision, layout or batching differ by rounding: each
operation rounds its operands and its result (relative error at most the unit roundoff u of
its dtype), and an n-term sum in another order moves by at most gamma_n = n*u/(1-n*u) of the
sum of its terms' magnitudes. How far that carries to an attribution depends on the model (a
ReLU gate near zero, a cancelling sum). So the bound is measured on the model itself: the same
attribution in float64, with every rounding site of the compared arithmetic replaced by a
random relative error as large as that arithmetic allows (the probabilistic model of rounding
error); a platform's own rounding is one more such draw. The bound is `MARGIN` times the
largest of `DRAWS` draws: an approximation (a heavy tail can still exceed it), stated as such.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from attrib_core.run import PreparedRun

DRAWS = 16
MARGIN = 2.0
ROUNDING_SITES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)  # what autocast runs in the lower precision
ACCUMULATE = torch.float32  # CPU kernels for bf16 and fp16 accumulate in float32


def unit_roundoff(dtype: torch.dtype) -> float:
    """u: the largest relative error of rounding one number to `dtype` (half its epsilon)."""
    return torch.finfo(dtype).eps / 2


def sum_order_bound(n_terms: int, dtype: torch.dtype) -> float:
    """gamma_n: how far an n-term sum in `dtype`, in any order, can be from the exact sum,
    relative to the sum of the terms' magnitudes."""
    nu = n_terms * unit_roundoff(dtype)
    if nu >= 1:
        raise ValueError(f"{n_terms} terms in {dtype}: n*u = {nu:.3g} >= 1, no bound")
    return nu / (1 - nu)


def reduction_length(module: nn.Module) -> int:
    """Terms in each output's sum: input features of a Linear, channels x kernel of a Conv."""
    if isinstance(module, nn.Linear):
        return module.in_features
    kernel = 1
    for side in module.kernel_size:
        kernel *= side
    return module.in_channels // module.groups * kernel


def forward_error_bound(model: nn.Module, dtype: torch.dtype) -> float:
    """First-order bound on the relative error of a forward pass in `dtype` (relative to the
    magnitudes summed), whatever order each layer sums in: the sum over its layers of gamma
    over each one's reduction length, plus one rounding of each layer's operands and output."""
    sites = [m for m in model.modules() if isinstance(m, ROUNDING_SITES)]
    return sum(sum_order_bound(reduction_length(m), dtype) + 3 * unit_roundoff(dtype) for m in sites)


class _RelativeError(torch.autograd.Function):
    """x * (1 + d) forward and g * (1 + d') backward, d and d' uniform in [-amplitude, amplitude]:
    one rounding of a tensor and one of the gradient that flows back through it."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, amplitude: float, generator: torch.Generator) -> torch.Tensor:
        ctx.amplitude, ctx.generator = amplitude, generator
        return x * (1 + amplitude * (2 * torch.rand(x.shape, generator=generator, dtype=x.dtype) - 1))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        noise = 2 * torch.rand(grad.shape, generator=ctx.generator, dtype=grad.dtype) - 1
        return grad * (1 + ctx.amplitude * noise), None, None


@contextmanager
def emulated_rounding(model: nn.Module, dtype: torch.dtype, seed: int) -> Iterator[None]:
    """Every rounding site of `model` run in `dtype` gets a random relative error: weights,
    inputs and outputs of each conv and linear layer by u(dtype), outputs also by the float32
    accumulation's gamma over their reduction length; gradients likewise on the way back.
    Changes `model`'s weights in place: use it on a copy."""
    generator = torch.Generator().manual_seed(seed)
    operand = unit_roundoff(dtype)
    handles = []
    for module in model.modules():
        if not isinstance(module, ROUNDING_SITES):
            continue
        with torch.no_grad():
            for parameter in module.parameters():
                parameter.mul_(1 + operand * (2 * torch.rand(parameter.shape, generator=generator).double() - 1))
        result = operand + sum_order_bound(reduction_length(module), ACCUMULATE)

        def round_inputs(_module: nn.Module, args: tuple) -> tuple:
            return tuple(_RelativeError.apply(a, operand, generator) if torch.is_tensor(a) else a for a in args)

        def round_output(_module: nn.Module, _args: tuple, out: torch.Tensor, amplitude: float = result) -> Any:
            return _RelativeError.apply(out, amplitude, generator)

        handles.append(module.register_forward_pre_hook(round_inputs))
        handles.append(module.register_forward_hook(round_output))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def attribution_in_float64(prepared: PreparedRun, emulate: torch.dtype | None = None, seed: int = 0) -> torch.Tensor:
    """The prepared run's attribution on a float64 copy of its model, inputs and tensors;
    with `emulate`, under emulated rounding of that dtype (one draw per seed)."""
    model = copy.deepcopy(prepared.workload_model).to(torch.float64, memory_format=torch.contiguous_format)
    layer = model.get_submodule(prepared.workload.layer_name) if prepared.spec.kind != "feature" else None
    attributor = prepared.spec.build(model, layer)

    def wide(value: Any) -> Any:
        return value.double().contiguous() if torch.is_tensor(value) and value.is_floating_point() else value

    kwargs = {name: wide(value) for name, value in prepared.kwargs.items()}
    if emulate is None:
        return attributor.attribute(wide(prepared.inputs), **kwargs).detach()
    with emulated_rounding(model, emulate, seed):
        return attributor.attribute(wide(prepared.inputs), **kwargs).detach()


def relative_error(result: torch.Tensor, reference: torch.Tensor) -> float:
    """||result - reference|| / ||reference|| over the whole batch (float64)."""
    reference = reference.double()
    return float((result.double() - reference).norm() / reference.norm())


def rounding_bound(prepared: PreparedRun, dtype: torch.dtype) -> tuple[torch.Tensor, float]:
    """The float64 attribution and how far a run in `dtype` may be from it: MARGIN x the largest
    relative error of DRAWS emulated-rounding runs."""
    reference = attribution_in_float64(prepared)
    draws = [relative_error(attribution_in_float64(prepared, dtype, seed), reference) for seed in range(DRAWS)]
    return reference, MARGIN * max(draws)
