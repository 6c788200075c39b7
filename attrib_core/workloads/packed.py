"""Models that take several input tensors, or extra arguments: one tensor for the harness.

Captum attributes a tuple of inputs and passes `additional_forward_args` on to the model; the
timed call does exactly that (`run.prepare` unpacks). Everything else in the harness (fidelity
curves, noise, the hardware limit, memory, tune) handles one (N, ...) tensor. So such a
workload stores its inputs packed: one input stays as it is; several are flattened per example
and concatenated, (N, P). Its model is a `PackedForward`, which unpacks a batch of rows and
calls the user's model with them and the rows' additional arguments.

An additional argument that is a tensor with one row per example follows its example. Row r
of a call is example r % B of the B examples the model was bound to: a prefix of the batch, or
the batch repeated in blocks, the order the curves and the limit use. A caller that orders rows
otherwise (infidelity's draws, a chunk that starts mid-batch) says which examples they are with
`example_rows`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

_ROWS: ContextVar[torch.Tensor | int | None] = ContextVar("attrib_bench_example_rows", default=None)


@contextmanager
def example_rows(rows: torch.Tensor | int) -> Iterator[None]:
    """Within this block, a packed model's row r is example `rows[r]` (a tensor), or example
    (rows + r) % B (an int: the offset of a chunk of a batch repeated in blocks)."""
    token = _ROWS.set(rows)
    try:
        yield
    finally:
        _ROWS.reset(token)


@dataclass(frozen=True)
class InputLayout:
    """The per-example shapes of a model's input tensors, and how they pack into one."""

    shapes: tuple[tuple[int, ...], ...]

    @property
    def several(self) -> bool:
        return len(self.shapes) > 1

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(math.prod(shape) for shape in self.shapes)

    def pack(self, tensors: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """(N, ...) per input -> one tensor: the input itself, or (N, P) rows of every input flattened."""
        if isinstance(tensors, torch.Tensor):
            return tensors
        if not self.several:
            return tensors[0]
        return torch.cat([t.reshape(len(t), -1) for t in tensors], dim=1)

    def unpack(self, packed: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """The inverse of `pack`: views of `packed`, one (N, *shape) per input."""
        if not self.several:
            return packed
        parts = torch.split(packed, self.sizes, dim=1)
        return tuple(part.reshape(len(packed), *shape) for part, shape in zip(parts, self.shapes, strict=True))


def per_example(value: Any, n_examples: int) -> bool:
    """An additional argument that holds one row per example (and so follows its example)."""
    return isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == n_examples


class PackedForward(nn.Module):
    """model(*unpack(rows), *additional_forward_args): the user's model, called with one tensor.

    `get_submodule` looks inside the user's model, so layer names stay the user's own ("" is
    the user's model itself: what Captum calls, and where hooks on "the model" belong).
    """

    def __init__(
        self,
        model: nn.Module,
        layout: InputLayout,
        additional_forward_args: tuple[Any, ...] = (),
        n_examples: int = 0,
    ) -> None:
        super().__init__()
        self.model = model
        self.layout = layout
        self.additional_forward_args = tuple(additional_forward_args)
        self.n_examples = n_examples

    def get_submodule(self, target: str) -> nn.Module:
        return self.model.get_submodule(target)

    @property
    def follows_examples(self) -> bool:
        return any(per_example(arg, self.n_examples) for arg in self.additional_forward_args)

    def rows_of(self, index: torch.Tensor) -> tuple[Any, ...]:
        """The additional arguments of examples `index`, for a call on those rows."""
        return tuple(
            arg[index.to(arg.device)] if per_example(arg, self.n_examples) else arg
            for arg in self.additional_forward_args
        )

    def bound(self, index: torch.Tensor, model: nn.Module | None = None) -> PackedForward:
        """The same model for a batch of examples `index` (and, optionally, another wrapper of the
        user's model: autocast, a placed copy)."""
        return PackedForward(model or self.model, self.layout, self.rows_of(index), len(index))

    def to(self, *args: Any, **kwargs: Any) -> PackedForward:
        moved = super().to(*args, **kwargs)
        device = next((a for a in args if isinstance(a, (str, torch.device))), kwargs.get("device"))
        if device is not None:
            moved.additional_forward_args = tuple(
                arg.to(device) if isinstance(arg, torch.Tensor) else arg for arg in self.additional_forward_args
            )
        return moved

    def _extra_for(self, n_rows: int) -> tuple[Any, ...]:
        if not self.follows_examples:
            return self.additional_forward_args
        rows = _ROWS.get()
        if isinstance(rows, torch.Tensor):
            if len(rows) != n_rows:
                raise ValueError(f"example_rows names {len(rows)} examples for a call on {n_rows} rows")
            return self.rows_of(rows)
        return self.rows_of(((rows or 0) + torch.arange(n_rows)) % self.n_examples)

    def forward(self, packed: torch.Tensor) -> Any:
        return self.model(*_as_tuple(self.layout.unpack(packed)), *self._extra_for(len(packed)))


def packed_view(model: nn.Module) -> PackedForward | None:
    """The packing wrapper of a workload's model, or None for a plain one-tensor model."""
    return model if isinstance(model, PackedForward) else None


def inputs_the_layer_ignores(model: PackedForward, layer: nn.Module, example: torch.Tensor) -> list[int]:
    """Indices of the inputs `layer`'s output does not depend on, for one packed example: Captum's
    neuron methods differentiate the neuron with respect to every input, and fail on these."""
    leaves = [part.detach().clone().requires_grad_(True) for part in _as_tuple(model.layout.unpack(example))]
    seen: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda module, args, out: seen.append(out))
    try:
        with example_rows(0):
            model.model(*leaves, *model._extra_for(len(example)))
    finally:
        handle.remove()
    if not seen or not isinstance(seen[0], torch.Tensor) or not seen[0].requires_grad:
        return list(range(len(leaves)))
    grads = torch.autograd.grad(seen[0].sum(), leaves, allow_unused=True)
    return [i for i, grad in enumerate(grads) if grad is None]


def _as_tuple(value: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return value if isinstance(value, tuple) else (value,)
