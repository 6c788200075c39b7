"""Model parameter randomisation (Adebayo et al. 2018): re-initialise the model's layers, output side
first, and recompute the map on each randomised model through the run layer.

A map that explains the model must change when the model's weights are destroyed; one that stays
the same explains the input (edges, say) rather than what the network learnt.

Layers are randomised in groups, so the number of attribution calls stays small on deep models:
the model's top-level children that hold parameters, in registration order (taken as the forward
order, true of torchvision's ResNets and of the models built here), output side first. A model
that wraps a single child is looked through. When there are more children than `max_steps`,
neighbouring children share a step. resnet18 gives 7 steps (fc, layer4, layer3, layer2, layer1,
bn1, conv1); digits_cnn 4 (fc2, fc1, conv2, conv1).

Each module is re-initialised by its own `reset_parameters` (the distribution its layer type
starts training from; BatchNorm also forgets its running statistics), after `torch.manual_seed`
with the cell's seed, under a forked RNG so nothing else's random state moves. Every module is
seeded alike, as Quantus does, so Quantus reproduces our randomised models exactly (its seed is
ours minus one: it seeds `seed + 1`); same-shaped layers therefore get the same random weights,
which leaves them as far from the trained ones as independent draws would.

The trained model is never touched: randomisation works on a deep copy, and the independent
variant restores the copy's trained state (a state_dict) before each step.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from attrib_core.run import AttributionResult, PreparedRun, on_model

ORDERS = ("cascading", "independent")


@dataclass(frozen=True)
class LayerGroup:
    """One randomisation step: a label and the resettable modules it re-initialises, output side first."""

    label: str
    module_names: tuple[str, ...]


def _has_own_state(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False)) or any(True for _ in module.buffers(recurse=False))


def _parameterised_children(model: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    children = [(f"{prefix}{name}", child) for name, child in model.named_children()]
    children = [(name, child) for name, child in children if any(True for _ in child.parameters())]
    if len(children) == 1 and not _has_own_state(model) and any(True for _ in children[0][1].children()):
        name, only = children[0]
        return _parameterised_children(only, f"{name}.")  # a wrapper: look through it
    return children


def resettable_modules(root: nn.Module, name: str) -> list[str]:
    """Names of the modules under `root` (named `name`) with `reset_parameters`, output side first."""
    found = [
        f"{name}.{sub}" if sub else name
        for sub, module in root.named_modules()
        if callable(getattr(module, "reset_parameters", None)) and _has_own_state(module)
    ]
    return found[::-1]


def layer_groups(model: nn.Module, max_steps: int) -> list[LayerGroup]:
    """The randomisation steps of `model`, output side first, at most `max_steps` of them."""
    if not isinstance(max_steps, int) or isinstance(max_steps, bool) or max_steps < 1:
        raise ValueError(f"randomisation steps {max_steps!r} is not valid; expected an integer >= 1")
    children = _parameterised_children(model)[::-1]
    if not children:
        raise ValueError(f"model {type(model).__name__} has no parameterised layer to randomise")
    groups = []
    for chunk in np.array_split(np.arange(len(children)), min(max_steps, len(children))):
        members = [children[i] for i in chunk]
        label = members[0][0] if len(members) == 1 else f"{members[0][0]}..{members[-1][0]}"
        names = tuple(n for member, module in members for n in resettable_modules(module, member))
        groups.append(LayerGroup(label, names))
    return groups


def not_randomised(model: nn.Module, groups: list[LayerGroup]) -> list[str]:
    """Parameters no step re-initialises (their module has no `reset_parameters`)."""
    covered = {name for group in groups for name in group.module_names}
    missing = []
    for name, _ in model.named_parameters():
        owner = name.rsplit(".", 1)[0] if "." in name else ""
        if not any(owner == c or owner.startswith(f"{c}.") for c in covered):
            missing.append(name)
    return missing


def randomise(model: nn.Module, group: LayerGroup, seed: int) -> None:
    """Re-initialise the group's modules of `model` in place, each after seeding with `seed`."""
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    modules = dict(model.named_modules())  # not get_submodule: a packing wrapper resolves names in the user's model
    with torch.no_grad(), torch.random.fork_rng(devices=devices):
        for name in group.module_names:
            torch.manual_seed(seed)
            modules[name].reset_parameters()


def randomised_models(
    model: nn.Module, groups: list[LayerGroup], order: str, seed: int
) -> Iterator[tuple[LayerGroup, nn.Module]]:
    """Each step's group and a copy of `model` with the groups so far (cascading) or that group only
    (independent) randomised. One copy serves every step: use it before asking for the next."""
    if order not in ORDERS:
        raise ValueError(f"unknown randomisation order {order!r}; valid: {', '.join(ORDERS)}")
    randomised = copy.deepcopy(model)
    trained = copy.deepcopy(randomised.state_dict())
    for group in groups:
        if order == "independent":
            randomised.load_state_dict(trained)
        randomise(randomised, group, seed)
        yield group, randomised


def randomised_runs(
    prepared: PreparedRun, groups: list[LayerGroup], order: str, seed: int
) -> Iterator[tuple[LayerGroup, AttributionResult]]:
    """Each step's group and the attributions of the same run on that step's randomised model.
    The prepared run's own model is left as it was."""
    for group, model in randomised_models(prepared.workload_model, groups, order, seed):
        yield group, on_model(prepared, model)()


def random_other_classes(targets: torch.Tensor, n_classes: int, seed: int) -> torch.Tensor:
    """(N,) a class other than each target, uniform over the other n_classes - 1, seeded.

    Draws index the remaining classes in order, as Quantus' RandomLogit does (with its seed = ours),
    so both explain the same random classes."""
    if n_classes < 2:
        raise ValueError(f"a random other class needs >= 2 classes; the model has {n_classes}")
    labels = targets.detach().cpu().long().reshape(-1)
    draws = torch.as_tensor(np.random.RandomState(seed).randint(0, n_classes - 1, len(labels)))
    return (draws + (draws >= labels).long()).to(targets.device)
