"""The workload contract (`Workload`), its registry, and helpers every workload shares.

Workloads are built lazily and cached per process: a sweep loads each model once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from attrib_core.cache import cache_dir, stable_hash
from attrib_core.registry import Registry


@dataclass(frozen=True)
class Workload:
    """Everything a method needs to run on one model. Tensors live on the CPU in fp32."""

    name: str
    model: nn.Module
    inputs: torch.Tensor  # (N, ...) real, preprocessed examples
    targets: torch.Tensor  # (N,) class explained for each example
    baseline: torch.Tensor  # (1, ...) the reference input ("absence of signal")
    background: torch.Tensor  # (K, ...) baseline distribution for the *Shap methods
    feature_mask: torch.Tensor  # (1, ...) integer groups for perturbation methods
    layer_name: str  # dotted path of the layer for layer / neuron methods
    neuron: tuple[int, ...]  # index into the layer's output (no batch dimension)
    output_name: str  # the final module; its backward hook counts backward passes
    weights: str  # e.g. "imagenet1k_v1", "trained:<hash>", "random"
    description: str
    method_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    info: Mapping[str, Any] = field(default_factory=dict)
    masks: torch.Tensor | None = None  # (N, 1, H, W) bool: pixels that carry the label (ground-truth tasks)

    @property
    def is_image(self) -> bool:
        return self.inputs.dim() == 4

    @property
    def layer(self) -> nn.Module:
        return self.model.get_submodule(self.layer_name)

    @property
    def n_features(self) -> int:
        return int(self.feature_mask.max().item()) + 1

    def batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first `batch_size` examples, cycling through the real inputs if needed."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        idx = torch.arange(batch_size) % len(self.inputs)
        return self.inputs[idx].clone(), self.targets[idx].clone()

    def batch_masks(self, batch_size: int) -> torch.Tensor | None:
        """The ground-truth masks of `batch(batch_size)`'s examples, or None without masks."""
        if self.masks is None:
            return None
        return self.masks[torch.arange(batch_size) % len(self.masks)]


@dataclass(frozen=True)
class WorkloadSpec:
    name: str
    description: str
    is_image: bool
    build: Callable[[], Workload]


WORKLOADS: Registry[WorkloadSpec] = Registry("workload")


def register_workload(name: str, description: str, is_image: bool) -> Callable:
    def decorate(build: Callable[[], Workload]) -> Callable[[], Workload]:
        WORKLOADS.register(name, WorkloadSpec(name, description, is_image, build))
        return build

    return decorate


@functools.cache
def load_workload(name: str) -> Workload:
    """Build (once per process) the named workload."""
    return WORKLOADS.get(name).build()


def smoothgrad_noise(stdevs: float) -> dict[str, dict[str, float]]:
    """NoiseTunnel's noise scaled to the workload's inputs: SmoothGrad's paper finds 10-20%
    of the input range works; Captum's default (1.0) is the whole range of a [0, 1] image."""
    return {name: {"stdevs": stdevs} for name in ("NoiseTunnel-Saliency", "NoiseTunnel-IntegratedGradients")}


def patch_mask(height: int, width: int, patch: int) -> torch.Tensor:
    """(1, 1, H, W) mask giving each patch x patch square its own feature id."""
    rows = torch.arange(height) // patch
    cols = torch.arange(width) // patch
    n_cols = (width + patch - 1) // patch
    return (rows[:, None] * n_cols + cols[None, :])[None, None]


def trained_weights(model: nn.Module, tag: str, recipe_key: dict, train: Callable[[nn.Module], None]) -> str:
    """Load cached weights for this exact recipe, or train once and cache; return the label."""
    key = stable_hash(recipe_key)
    path = cache_dir() / f"{tag}-{key}.pt"
    if path.is_file():
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        model.eval()
    else:
        train(model)
        tmp = path.with_suffix(".tmp")
        torch.save(model.state_dict(), tmp)
        tmp.replace(path)
    return f"trained:{key}"
