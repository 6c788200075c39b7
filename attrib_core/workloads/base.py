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
from attrib_core.fileio import atomic_save
from attrib_core.registry import Registry
from attrib_core.workloads.traits import Traits


@dataclass(frozen=True)
class Workload:
    """Everything a method needs to run on one model: the workload contract (plug-ins return
    one, or a mapping with the same content; see `plugins`). Tensors live on the CPU; inputs
    are fp32, or integer token ids (then the baseline is a token id tensor too, and the layer
    is typically the embedding)."""

    name: str
    model: nn.Module
    inputs: torch.Tensor  # (N, ...) real, preprocessed examples (fp32, or int64 token ids)
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
    # What the model's outputs are, so fidelity curves score them with the right link:
    # "logits" (softmax over classes), "single_logit" (sigmoid) or "regression" (raw);
    # attrib_core.fidelity.scores.OUTPUT_LINKS. A one-output model must not stay "logits".
    output_kind: str = "logits"
    # Knobs of fidelity's high-accuracy reference per method, where the default (the finest
    # setting) is too costly, e.g. {"Occlusion": {"sliding_window_shapes": ..., "strides": ...}}.
    reference_knobs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    masks: torch.Tensor | None = None  # (N, 1, H, W) bool: pixels that carry the label (ground-truth tasks)

    @property
    def is_image(self) -> bool:
        return self.inputs.dim() == 4

    @property
    def is_token_ids(self) -> bool:
        """Integer inputs (token ids): no gradient and no path between two of them."""
        return not self.inputs.is_floating_point()

    @property
    def layer(self) -> nn.Module:
        return self.model.get_submodule(self.layer_name)

    @functools.cached_property
    def layer_shape(self) -> tuple[int, ...]:
        """One example's output shape at the layer (no batch dimension); () without a layer or
        for a layer whose output is not one tensor. Layer perturbation methods treat each unit
        of it as a feature, so it sets their cost."""
        if not self.layer_name:
            return ()
        seen: list[tuple[int, ...]] = []

        def record(module: nn.Module, args: Any, out: Any) -> None:
            seen.append(tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else ())

        handle = self.layer.register_forward_hook(record)
        try:
            with torch.no_grad():
                self.model(self.inputs[:1])
        finally:
            handle.remove()
        return seen[0]

    @property
    def n_features(self) -> int:
        return int(self.feature_mask.max().item()) + 1

    def batch_examples(self, batch_size: int) -> torch.Tensor:
        """Which examples `batch(batch_size)` holds: the first ones, cycling if needed."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        return torch.arange(batch_size) % len(self.inputs)

    def batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first `batch_size` examples, cycling through the real inputs if needed."""
        idx = self.batch_examples(batch_size)
        return self.inputs[idx].clone(), self.targets[idx].clone()

    def batch_masks(self, batch_size: int) -> torch.Tensor | None:
        """The ground-truth masks of `batch(batch_size)`'s examples, or None without masks."""
        if self.masks is None:
            return None
        return self.masks[torch.arange(batch_size) % len(self.masks)]


@dataclass(frozen=True, eq=False)
class WorkloadSpec:
    """A workload's static metadata, known without building it, and the factory that builds it.

    `traits` decide which methods apply; `method_defaults` resolve into cell keys. `source` is
    "builtin", "torchvision", "huggingface" or "plugin"; `definition` is what a plug-in was declared with
    (two declarations are the same workload when it is equal); `origin` says where it was
    declared, for error messages.
    """

    name: str
    description: str
    build: Callable[[], Workload]
    traits: Traits
    method_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # NoiseTunnel's noise in the workload's input units (Knob.workload_default): SmoothGrad's
    # paper finds 10-20% of the input range works; Captum's 1.0 is the whole range of [0, 1].
    noise_stdevs: float | None = None
    source: str = "builtin"
    definition: Mapping[str, Any] = field(default_factory=dict)
    origin: str = ""

    @property
    def is_image(self) -> bool:
        return self.traits.is_image


WORKLOADS: Registry[WorkloadSpec] = Registry("workload")


def register_workload(
    name: str,
    description: str,
    is_image: bool | None = None,
    *,
    input_kind: str | None = None,
    layer: str | None = None,
    spatial_layer: bool | None = None,
    method_defaults: Mapping[str, Mapping[str, Any]] | None = None,
    rule_limits: Mapping[str, str] | None = None,
    not_applicable: Mapping[str, str] | None = None,
    noise_stdevs: float | None = None,
    generates_text: bool = False,
) -> Callable:
    """Decorator registering a built-in workload factory with its static metadata.

    `is_image` is shorthand for input_kind "image" / "features". What is left out (None) is
    unknown: no method is ruled out for it until the run observes the built model, so declare
    `input_kind` ("tokens" for integer ids) and `layer` ("" for none) to keep "all" tidy.
    """
    kind = input_kind or {True: "image", False: "features", None: None}[is_image]
    if spatial_layer is None and kind not in (None, "image"):
        spatial_layer = False  # only an image model's layer has an (N, C, H, W) map
    elif spatial_layer is None and layer is not None:
        spatial_layer = bool(layer) and kind == "image"
    traits = Traits(
        input_kind=kind,
        layer_name=layer,
        spatial_layer=spatial_layer,
        rule_limits=dict(rule_limits or {}),
        not_applicable=dict(not_applicable or {}),
        generates_text=generates_text,
    )

    def decorate(build: Callable[[], Workload]) -> Callable[[], Workload]:
        spec = WorkloadSpec(name, description, build, traits, dict(method_defaults or {}), noise_stdevs=noise_stdevs)
        WORKLOADS.register(name, spec)
        return build

    return decorate


def patch_mask(height: int, width: int, patch: int) -> torch.Tensor:
    """(1, 1, H, W) mask giving each patch x patch square its own feature id."""
    rows = torch.arange(height) // patch
    cols = torch.arange(width) // patch
    n_cols = (width + patch - 1) // patch
    return (rows[:, None] * n_cols + cols[None, :])[None, None]


def trained_tokenizer(tag: str, recipe_key: dict, train: Callable[[], Any]) -> Any:
    """A `tokenizers.Tokenizer` trained once for this exact recipe and cached as JSON: the trainers
    break frequency ties in a different order in each process, so a tokenizer trained afresh per
    process would give each process another vocabulary, and so other model weights."""
    from tokenizers import Tokenizer

    path = cache_dir() / f"{tag}-tokenizer-{stable_hash(recipe_key)}.json"
    if path.is_file():
        return Tokenizer.from_file(str(path))
    tokenizer = train()
    atomic_save(path, lambda tmp: tokenizer.save(str(tmp)))
    return tokenizer


def trained_weights(model: nn.Module, tag: str, recipe_key: dict, train: Callable[[nn.Module], None]) -> str:
    """Load cached weights for this exact recipe, or train once and cache; return the label."""
    key = stable_hash(recipe_key)
    path = cache_dir() / f"{tag}-{key}.pt"
    if path.is_file():
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        model.eval()
    else:
        train(model)
        atomic_save(path, lambda tmp: torch.save(model.state_dict(), tmp))
    return f"trained:{key}"
