"""attrib_core.fidelity.randomisation: which layers a step randomises, in which order, seeded, and
that the trained model comes back untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models import resnet18

from attrib_core.fidelity.randomisation import (
    layer_groups,
    not_randomised,
    random_other_classes,
    randomise,
    randomised_models,
    randomised_runs,
)
from attrib_core.models.small import DigitsCNN
from attrib_core.run import RunConfig, prepare

pytestmark = pytest.mark.usefixtures("one_thread")

DIGITS_STEPS = ["fc2", "fc1", "conv2", "conv1"]


def trained_digits() -> nn.Module:
    """An untrained DigitsCNN stands in for a trained one: its initial seed (1000) is none a test randomises with."""
    torch.manual_seed(1000)
    return DigitsCNN().eval()


def same(a: nn.Module, b: nn.Module, prefix: str) -> bool:
    """Whether every parameter under `prefix` is bit-identical in the two models."""
    theirs = dict(b.named_parameters())
    return all(torch.equal(p, theirs[name]) for name, p in a.named_parameters() if name.startswith(prefix))


def test_groups_run_from_the_output_side_and_cover_every_parameter() -> None:
    model = trained_digits()
    groups = layer_groups(model, 8)
    assert [g.label for g in groups] == DIGITS_STEPS
    assert not_randomised(model, groups) == []
    net = resnet18(weights=None)
    labels = [g.label for g in layer_groups(net, 8)]
    assert labels == ["fc", "layer4", "layer3", "layer2", "layer1", "bn1", "conv1"]
    layer4 = layer_groups(net, 8)[1].module_names
    assert layer4[0] == "layer4.1.bn2" and layer4[-1] == "layer4.0.conv1"  # inside a group, output side first too


def test_more_children_than_steps_share_steps() -> None:
    net = resnet18(weights=None)
    groups = layer_groups(net, 3)
    assert [g.label for g in groups] == ["fc..layer3", "layer2..layer1", "bn1..conv1"]
    assert not_randomised(net, groups) == []
    with pytest.raises(ValueError, match="randomisation steps 0 is not valid"):
        layer_groups(net, 0)


def test_a_wrapper_is_looked_through() -> None:
    wrapped = nn.Sequential(trained_digits())
    assert [g.label for g in layer_groups(wrapped, 8)] == [f"0.{name}" for name in DIGITS_STEPS]


def test_randomise_is_seeded_and_leaves_the_global_rng_alone() -> None:
    first, second = trained_digits(), trained_digits()
    group = layer_groups(first, 8)[0]
    torch.manual_seed(123)
    randomise(first, group, seed=5)
    after = torch.rand(3)
    torch.manual_seed(123)
    expected = torch.rand(3)
    assert torch.equal(after, expected)  # the draws happened under a forked RNG
    randomise(second, group, seed=5)
    assert same(first, second, "")  # the same seed re-draws the same weights
    assert not same(first, trained_digits(), "fc2") and same(first, trained_digits(), "fc1")


@pytest.mark.parametrize("order", ["cascading", "independent"])
def test_each_step_randomises_what_its_order_says(order: str) -> None:
    trained = trained_digits()
    groups = layer_groups(trained, 8)
    for step, (group, model) in enumerate(randomised_models(trained, groups, order, seed=7)):
        for index, name in enumerate(DIGITS_STEPS):
            randomised = index == step or (order == "cascading" and index < step)
            assert same(model, trained, name) != randomised, (order, group.label, name)
    with pytest.raises(ValueError, match="unknown randomisation order 'bottom_up'; valid: cascading, independent"):
        next(randomised_models(trained, groups, "bottom_up", 0))


def test_the_trained_model_is_restored_after_a_run() -> None:
    prepared = prepare(RunConfig("Saliency", "digits_cnn", batch_size=4))
    before = {name: value.clone() for name, value in prepared.workload_model.state_dict().items()}
    first = prepared().attributions
    groups = layer_groups(prepared.workload_model, 8)
    for order in ("cascading", "independent"):
        maps = [result.attributions for _, result in randomised_runs(prepared, groups, order, seed=0)]
        assert not any(torch.equal(m, first) for m in maps)  # the randomised models did answer differently
    after = prepared.workload_model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(prepared().attributions, first)  # the cell's own Captum object still explains the trained model


def test_random_other_classes_never_pick_the_target() -> None:
    targets = torch.arange(10).repeat(200)
    others = random_other_classes(targets, 10, seed=3)
    assert not (others == targets).any() and others.min() >= 0 and others.max() <= 9
    assert torch.equal(others, random_other_classes(targets, 10, seed=3))
    assert not torch.equal(others, random_other_classes(targets, 10, seed=4))
    # uniform over the 9 others: 200 draws per label miss one with probability 9 (8/9)^200 < 1e-9
    for label in range(10):
        assert set(others[targets == label].tolist()) == set(range(10)) - {label}
    with pytest.raises(ValueError, match="needs >= 2 classes; the model has 1"):
        random_other_classes(targets, 1, seed=0)
