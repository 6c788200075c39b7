"""The torchvision zoo: `torchvision:<model>` for torchvision's classification models.

Each model gets its default weights through torchvision's own loader (its cache, or a
download when online). Offline with nothing cached it falls back, with one warning, to a
seeded random initialisation recorded as weights "random", whose fidelity is not reported
as if it meant something. Inputs are the scikit-image photos through the weights' own
preprocessing (`weights.transforms()`: metadata, no download). Each family has a default
layer for layer methods (the last feature stage, the usual Grad-CAM target) that a preset
overrides with `layer = "..."`, and declares the activation modules it uses, so the methods
whose backward rules do not cover them are known without building the model
(tests/test_zoo.py checks the declarations against the models).

Preset arguments: `image_size` (default: the weights' crop size) and `weights` ("DEFAULT",
a member of the model's weights enum such as "IMAGENET1K_V2", or "random").
"""

from __future__ import annotations

import dataclasses
import urllib.error
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from attrib_core.workloads.base import Workload, WorkloadSpec, patch_mask
from attrib_core.workloads.builtin import photos
from attrib_core.workloads.plugins import check_contract, declared_traits, knob_tuples
from attrib_core.workloads.traits import Traits, rule_limits_from_modules

ARGS = ("image_size", "weights")


@dataclass(frozen=True)
class Family:
    """What a family of torchvision models shares: its default layer and activation modules."""

    prefixes: tuple[str, ...]
    layer: str
    spatial_layer: bool
    activations: tuple[str, ...]  # activation module types its models use
    without_lrp_rule: tuple[str, ...] = ()  # its leaf module types that Captum's LRP has no rule for
    distinct_relus: bool = False  # reuses ReLU modules; rebuilt with one per use (same outputs)
    image_size_arg: bool = False  # the constructor takes image_size (ViT): pretrained weights fix it


FAMILIES = {
    "resnet": Family(("resnet", "resnext", "wide_resnet"), "layer4", True, ("ReLU",), distinct_relus=True),
    "mobilenet_v3": Family(
        ("mobilenet_v3_",), "features", True, ("Hardsigmoid", "Hardswish", "ReLU"), ("Hardsigmoid", "Hardswish")
    ),
    "efficientnet": Family(
        ("efficientnet_",), "features", True, ("SiLU", "Sigmoid"), ("SiLU", "Sigmoid", "StochasticDepth")
    ),
    "convnext": Family(
        ("convnext_",),
        "features",
        True,
        ("GELU",),
        ("Flatten", "GELU", "LayerNorm", "LayerNorm2d", "Permute", "StochasticDepth"),
    ),
    "vit": Family(
        ("vit_",),
        "encoder.layers",
        False,
        ("GELU", "MultiheadAttention"),
        ("GELU", "LayerNorm", "NonDynamicallyQuantizableLinear"),
        image_size_arg=True,
    ),
}


def classification_models() -> list[str]:
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def family_of(model_name: str) -> Family | None:
    for family in FAMILIES.values():
        if model_name.startswith(family.prefixes):
            return family
    return None


def zoo_traits(model_name: str) -> Traits:
    """Static traits of a zoo model; a model outside the families leaves its layer and rule
    limits unknown (the run observes them)."""
    family = family_of(model_name)
    if family is None:
        return Traits(input_kind="image", layer_name="", spatial_layer=False, rule_limits={})
    return Traits(
        input_kind="image",
        layer_name=family.layer,
        spatial_layer=family.spatial_layer,
        rule_limits=rule_limits_from_modules(
            set(family.activations), reused={}, leaf_types=set(family.without_lrp_rule)
        ),
    )


def _weights_enum(model_name: str) -> Any:
    import torchvision

    return torchvision.models.get_model_weights(model_name)


def _chosen_weights(model_name: str, choice: str, origin: str) -> Any:
    enum = _weights_enum(model_name)
    if choice == "DEFAULT":
        return enum.DEFAULT
    if choice == "random":
        return None
    try:
        return enum[choice]
    except KeyError:
        valid = ", ".join(["DEFAULT", "random", *(w.name for w in enum)])
        raise ValueError(f"{origin}: weights {choice!r} for {model_name}; valid: {valid}") from None


def zoo_spec(
    key: str, model_name: str, args: Mapping[str, Any], declared: Mapping[str, Any], origin: str, definition: dict
) -> WorkloadSpec:
    """The spec of `torchvision:<model_name>`: static metadata only, nothing built."""
    known = classification_models()
    if model_name not in known:
        valid = ", ".join(known)
        raise ValueError(f"{origin}: unknown torchvision classification model {model_name!r}; valid: {valid}")
    unknown = sorted(set(args) - set(ARGS))
    if unknown:
        valid = ", ".join(ARGS)
        raise ValueError(f"{origin}: unknown argument {unknown[0]!r} for torchvision:{model_name}; valid: {valid}")
    choice = str(args.get("weights", "DEFAULT"))
    weights = _chosen_weights(model_name, choice, origin)
    preset = (weights or _weights_enum(model_name).DEFAULT).transforms()
    size = int(args.get("image_size", preset.crop_size[0]))
    if size < 16:
        raise ValueError(f"{origin}: image_size={size} is too small; use 16 or more")
    defaults = {
        "Occlusion": {  # the Captum tutorial's 15x15 window at stride 8 on 224x224, scaled
            "sliding_window_shapes": (3, max(1, round(15 * size / 224)), max(1, round(15 * size / 224))),
            "strides": (3, max(1, round(8 * size / 224)), max(1, round(8 * size / 224))),
        },
    }
    # 15% of the normalised pixel range (1 / std): SmoothGrad's recommended noise
    noise_stdevs = round(0.15 / (sum(preset.std) / len(preset.std)), 2)
    method_defaults = {**defaults, **knob_tuples(declared.get("method_defaults", {}))}

    def build() -> Workload:
        return build_zoo_workload(key, model_name, choice, size, declared, origin, method_defaults)

    return WorkloadSpec(
        name=key,
        description=declared.get("description", f"torchvision {model_name} on scikit-image photos, {size}x{size}"),
        build=build,
        traits=declared_traits(declared, zoo_traits(model_name)),
        method_defaults=method_defaults,
        noise_stdevs=noise_stdevs,
        source="torchvision",
        definition=definition,
        origin=origin,
    )


def load_zoo_model(model_name: str, choice: str, size: int, seed: int = 0) -> tuple[nn.Module, str]:
    """(model, weights label): torchvision's loader for the chosen weights, else (offline, nothing
    cached, or a ViT at a size its weights do not fit) a seeded random initialisation, with a warning."""
    import torchvision

    family = family_of(model_name)
    weights = _chosen_weights(model_name, choice, f"torchvision:{model_name}")
    extra = {"image_size": size} if family is not None and family.image_size_arg else {}
    why = ""
    if weights is not None and extra and size != weights.transforms().crop_size[0]:
        crop = weights.transforms().crop_size[0]
        why = f"its {weights.name} weights fit {crop}x{crop} inputs, not image_size={size}"
    elif weights is not None:
        try:
            model = torchvision.models.get_model(model_name, weights=weights, progress=False)
            return model.eval(), weights.name.lower()
        except (urllib.error.URLError, OSError, RuntimeError) as exc:
            why = f"{weights.name} weights are not cached and cannot be downloaded ({exc})"
    if weights is not None:
        warnings.warn(
            f"torchvision:{model_name}: {why}; using a seeded random initialisation, recorded as weights='random' "
            "(its fidelity is marked not meaningful). Put the weights file in torchvision's cache "
            "($TORCH_HOME/hub/checkpoints) to use them.",
            stacklevel=2,
        )
    torch.manual_seed(seed)
    return torchvision.models.get_model(model_name, weights=None, **extra).eval(), "random"


def build_zoo_workload(
    key: str,
    model_name: str,
    choice: str,
    size: int,
    declared: Mapping[str, Any],
    origin: str,
    method_defaults: Mapping[str, Mapping[str, Any]],
) -> Workload:
    from attrib_core.models.resnet import distinct_relus

    family = family_of(model_name) or Family((), "", False, ())
    model, label = load_zoo_model(model_name, choice, size)
    if family.distinct_relus:
        model = distinct_relus(model).eval()
    transforms = (_chosen_weights(model_name, choice, origin) or _weights_enum(model_name).DEFAULT).transforms
    preset = transforms()  # the family's preprocessing, scaled to image_size
    preprocess = transforms(crop_size=size, resize_size=round(size * preset.resize_size[0] / preset.crop_size[0]))
    inputs = photos(preprocess)
    with torch.no_grad():
        targets = model(inputs).argmax(1)  # explain the predicted class, as the Captum tutorial does
    generator = torch.Generator().manual_seed(0)
    shape = (3, size, size)
    background = torch.cat([torch.zeros(1, *shape), 0.5 * torch.randn(3, *shape, generator=generator)])
    linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    workload = Workload(
        name=key,
        model=model,
        inputs=inputs,
        targets=targets,
        baseline=torch.zeros(1, *shape),  # the mean image, after normalisation
        background=background,
        feature_mask=patch_mask(size, size, max(1, size // 14)),
        layer_name=declared.get("layer", family.layer),
        neuron=tuple(declared["neuron"]) if "neuron" in declared else None,
        output_name=linears[-1] if linears else "",
        weights=label,
        description=declared.get("description", f"torchvision {model_name} ({label}) on scikit-image photos"),
        method_defaults=method_defaults,
        info={
            "torchvision_model": model_name,
            "image_size": size,
            "preprocessing": repr(preprocess),
            **({"weights_note": "random initialisation: fidelity not meaningful"} if label == "random" else {}),
            **({"relu": "distinct module per use (DeepLift-safe), same outputs"} if family.distinct_relus else {}),
        },
    )
    return dataclasses.replace(check_contract(workload, origin, declared), method_defaults=method_defaults)
