"""What decides which methods apply to a workload: declared up front, and observed on a built model.

A workload's spec declares its `Traits` so a preset expands into cells without building or
training anything. When a cell runs, the same traits are observed on the built model
(`observe_traits`), because a plug-in may declare them wrongly: the observed ones decide.

Two kinds of limit come from the model itself, not from its inputs:
- Captum's DeepLift (and DeepLiftShap) has backward rules for a fixed set of nonlinear
  modules (`SUPPORTED_NON_LINEAR`). Any other activation module (GELU, SiLU, Hardswish,
  attention...) silently keeps its plain gradient, which breaks DeepLift's summation to the
  output difference; and a rule module called twice in one forward pass makes Captum raise.
- GuidedBackprop overrides only `nn.ReLU` modules' backward, and needs one module per use.
- LRP (and LayerLRP) needs a propagation rule for every leaf module (`SUPPORTED_LAYERS_WITH_RULES`,
  `SUPPORTED_NON_LINEAR_LAYERS`) and raises on any other; each module keeps one activation, so
  a module called twice in one forward pass breaks it too.
Nonlinearities called as functions (`F.relu`) cannot be seen by either, nor by this check.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR
from captum.attr._core.lrp import SUPPORTED_LAYERS_WITH_RULES, SUPPORTED_NON_LINEAR_LAYERS
from torch import nn

from attrib_core.workloads.packed import packed_view

if TYPE_CHECKING:
    from attrib_core.workloads.base import Workload

INPUT_KINDS = ("image", "features", "series", "volume", "tokens", "several")
# What a model's outputs are, which decides how fidelity scores them (fidelity.scores.OUTPUT_LINKS):
# competing class logits, one binary logit, independent label logits, or continuous values.
OUTPUT_KINDS = ("logits", "single_logit", "multi_label", "regression")
RULE_FAMILIES = ("deeplift", "guided_relu", "lrp")  # backward rules a method may depend on
LRP_RULE_TYPES = frozenset(t.__name__ for t in (*SUPPORTED_LAYERS_WITH_RULES, *SUPPORTED_NON_LINEAR_LAYERS))


@dataclass(frozen=True)
class Traits:
    """input_kind: "features" (N, F), "series" (N, C, T), "image" (N, C, H, W), "volume"
    (N, C, D, H, W) floats, or "tokens" (integer ids, no gradient with respect to them).
    layer_name "" means no layer declared.
    rule_limits: rule family -> why that family's methods cannot run on this model.
    not_applicable: method name -> reason, declared by the workload itself.
    None means unknown: a plug-in that declares nothing gets every method in its cells, and
    the ones that cannot run are recorded as not applicable when the run observes the model."""

    input_kind: str | None  # None: not declared (a plug-in); nothing is ruled out until the run observes it
    layer_name: str | None = ""
    spatial_layer: bool | None = False  # the layer's output is a map of the input's rank: GradCAM pools it
    rule_limits: Mapping[str, str] = field(default_factory=dict)
    not_applicable: Mapping[str, str] = field(default_factory=dict)
    # a tensor view of a causal LM with its tokenizer (`.model`, `.tokenizer`): Captum's LLM wrappers apply
    generates_text: bool | None = False

    def __post_init__(self) -> None:
        if self.input_kind is not None and self.input_kind not in INPUT_KINDS:
            raise ValueError(f"unknown input_kind {self.input_kind!r}; valid: {', '.join(INPUT_KINDS)}")
        for family in self.rule_limits:
            if family not in RULE_FAMILIES:
                raise ValueError(f"unknown rule family {family!r}; valid: {', '.join(RULE_FAMILIES)}")

    @property
    def is_image(self) -> bool:
        return self.input_kind == "image"


def input_kind_of(inputs: torch.Tensor) -> str:
    """By the rank of a batch: (N, F) features, (N, C, T) series, (N, C, H, W) images,
    (N, C, D, H, W) volumes; integer inputs are token ids."""
    if not torch.is_floating_point(inputs):
        return "tokens"
    return {3: "series", 4: "image", 5: "volume"}.get(inputs.dim(), "features")


def _is_activation(module: nn.Module) -> bool:
    return type(module).__module__ == "torch.nn.modules.activation"


def rule_limits_from_modules(
    activation_types: set[str], reused: Mapping[str, tuple[str, int]], leaf_types: set[str] = frozenset()
) -> dict[str, str]:
    """Why DeepLift / GuidedBackprop / LRP cannot apply, from the activation module types a model
    uses, its leaf module types, and its leaf modules called more than once per forward pass
    (name -> (type, calls))."""
    supported = {t.__name__ for t in SUPPORTED_NON_LINEAR}
    limits: dict[str, str] = {}
    lrp_reused = dict(reused)
    reused = {name: item for name, item in reused.items() if item[0] in supported}

    def listed(items: Mapping[str, tuple[str, int]], limit: int = 3) -> str:
        shown = [f"{name!r} ({kind}, {calls} calls)" for name, (kind, calls) in sorted(items.items())]
        more = f" and {len(shown) - limit} more" if len(shown) > limit else ""
        return ", ".join(shown[:limit]) + more

    unsupported = sorted(activation_types - supported)
    if unsupported:
        limits["deeplift"] = (
            f"the model uses {', '.join(unsupported)}, for which Captum's DeepLift has no rule (it would keep "
            f"the plain gradient and break summation to the output difference); rules exist for "
            f"{', '.join(sorted(supported))}"
        )
    elif reused:
        limits["deeplift"] = (
            f"module(s) {listed(reused)} run more than once per forward pass; Captum's DeepLift needs one "
            "module per use (see attrib_core.models.resnet.distinct_relus)"
        )
    others = sorted(activation_types - {"ReLU"})
    reused_relus = {name: item for name, item in reused.items() if item[0] == "ReLU"}
    if others:
        limits["guided_relu"] = (
            f"GuidedBackprop overrides only nn.ReLU's backward; this model's {', '.join(others)} would keep plain "
            "gradients"
        )
    elif reused_relus:
        limits["guided_relu"] = (
            f"ReLU module(s) {listed(reused_relus)} run more than once per forward pass; GuidedBackprop needs one "
            "module per use"
        )
    no_rule = sorted(leaf_types - LRP_RULE_TYPES)
    if no_rule:
        limits["lrp"] = (
            f"the model uses {', '.join(no_rule)}, for which Captum's LRP has no propagation rule; rules exist for "
            f"{', '.join(sorted(LRP_RULE_TYPES))}"
        )
    elif lrp_reused:
        limits["lrp"] = (
            f"module(s) {listed(lrp_reused)} run more than once per forward pass; Captum's LRP keeps one "
            "activation per module"
        )
    return limits


def scan_model(
    model: nn.Module, example: torch.Tensor, layer_name: str = "", input_ranks: tuple[int, ...] = ()
) -> tuple[dict[str, str], bool]:
    """One forward pass of `example` (meta tensors work): rule limits, and whether the layer's
    output is spatial: a map of the rank of the example, or of one of `input_ranks` (the
    batched ranks of a packed model's several inputs)."""
    calls: Counter[str] = Counter()
    kinds: dict[str, str] = {}
    layer_out: list[object] = []
    handles = []
    activation_types = set()
    leaf_types = set()
    for name, module in model.named_modules():
        if _is_activation(module):
            activation_types.add(type(module).__name__)
        if not list(module.children()):
            leaf_types.add(type(module).__name__)
        if type(module) in SUPPORTED_NON_LINEAR or not list(module.children()):
            kinds[name] = type(module).__name__
            handles.append(module.register_forward_hook(lambda m, a, o, name=name: calls.update([name])))
    if layer_name:
        layer = model.get_submodule(layer_name)
        handles.append(layer.register_forward_hook(lambda m, a, o: layer_out.append(o)))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    reused = {name: (kinds[name], n) for name, n in calls.items() if n > 1}
    out = layer_out[0] if layer_out else None
    # a ConvNd keeps the input's rank: (N, C, T), (N, C, H, W), (N, C, D, H, W) maps GradCAM can pool
    spatial = isinstance(out, torch.Tensor) and out.dim() >= 3 and out.dim() in (example.dim(), *input_ranks)
    return rule_limits_from_modules(activation_types, reused, leaf_types), spatial


def is_generator(model: nn.Module) -> bool:
    """A tensor view of a Hugging Face causal LM that carries its tokenizer (`.model`, `.tokenizer`)."""
    inner = getattr(model, "model", None)
    return getattr(model, "tokenizer", None) is not None and callable(getattr(inner, "generate", None))


def observe_traits(workload: Workload, not_applicable: Mapping[str, str] | None = None) -> Traits:
    """The traits of a built workload, measured on its first example."""
    packed = packed_view(workload.model)
    several = packed is not None and packed.layout.several
    ranks = tuple(len(shape) + 1 for shape in packed.layout.shapes) if several else ()
    limits, spatial = scan_model(workload.model, workload.inputs[:1], workload.layer_name, ranks)
    return Traits(
        input_kind="several" if several else input_kind_of(workload.inputs),
        layer_name=workload.layer_name,
        spatial_layer=spatial,
        rule_limits=limits,
        not_applicable=dict(not_applicable or {}),
        generates_text=is_generator(workload.model),
    )
