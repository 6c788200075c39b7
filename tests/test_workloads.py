"""attrib_core.workloads and attrib_core.models: real data, trained models, resnet18 loading."""

from __future__ import annotations

import copy
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18

from attrib_core.models.resnet import CHECKPOINT_ENV, distinct_relus, load_resnet18
from attrib_core.models.small import accuracy
from attrib_core.workloads import WORKLOADS, load_workload, observed_spec, patch_mask
from attrib_core.workloads.builtin import IMAGENET_MEAN, IMAGENET_STD, breast_cancer_split, digits_split
from attrib_core.workloads.traits import scan_model

pytestmark = pytest.mark.usefixtures("one_thread")


# --- the small, trained workloads -------------------------------------------------------


def test_digits_cnn_is_accurate_on_the_full_held_out_split(digits):
    _, x_test, _, y_test = digits_split()
    assert len(y_test) == 450 == digits.info["n_test"]
    recomputed = accuracy(digits.model, x_test, y_test)
    assert recomputed == digits.info["held_out_accuracy"]
    assert recomputed >= 0.95


def test_tabular_mlp_is_accurate_on_its_held_out_split(tabular):
    _, x_test, _, y_test = breast_cancer_split()
    recomputed = accuracy(tabular.model, x_test, y_test)
    assert recomputed == tabular.info["held_out_accuracy"]
    assert recomputed >= 0.93


def test_small_workloads_explain_real_held_out_examples(digits, tabular):
    _, x_digits, _, y_digits = digits_split()
    assert torch.equal(digits.inputs, torch.as_tensor(x_digits[:64]))
    assert torch.equal(digits.targets, torch.as_tensor(y_digits[:64]))
    _, x_tabular, _, y_tabular = breast_cancer_split()
    assert torch.equal(tabular.inputs, torch.as_tensor(x_tabular[:64]))
    assert torch.equal(tabular.targets, torch.as_tensor(y_tabular[:64]))
    assert digits.weights.startswith("trained:") and tabular.weights.startswith("trained:")


@pytest.mark.parametrize("name", ["digits_cnn", "tabular_mlp", "resnet18"])
def test_workload_pieces_fit_together(name, request):
    w = request.getfixturevalue({"digits_cnn": "digits", "tabular_mlp": "tabular", "resnet18": "resnet"}[name])
    example_shape = w.inputs.shape[1:]
    assert w.inputs.dtype == torch.float32 and w.inputs.device.type == "cpu"
    assert w.targets.shape == (len(w.inputs),)
    assert w.baseline.shape == (1, *example_shape)
    assert w.background.shape[1:] == example_shape
    assert w.feature_mask.dtype == torch.long
    # one mask for every example, broadcast over channels where it has a 1 (resnet18's 16x16 patches)
    assert w.feature_mask.shape[0] == 1
    assert all(m in (1, e) for m, e in zip(w.feature_mask.shape[1:], example_shape, strict=True))
    assert torch.equal(w.feature_mask.unique(), torch.arange(w.n_features))  # ids 0..n-1, none unused
    assert not w.model.training
    assert isinstance(w.model.get_submodule(w.output_name), nn.Linear)
    layer_out = []
    handle = w.layer.register_forward_hook(lambda module, args, out: layer_out.append(out))
    with torch.no_grad():
        w.model(w.inputs[:1])
    handle.remove()
    assert len(w.neuron) == layer_out[0].dim() - 1
    assert all(0 <= i < size for i, size in zip(w.neuron, layer_out[0].shape[1:], strict=True))


def test_channels_last_is_refused_where_inputs_are_not_images(tabular):
    from attrib_core.run import RunConfig, prepare

    with pytest.raises(ValueError, match=r"channels_last.*not an image"):
        prepare(RunConfig("Saliency", "tabular_mlp", memory_format="channels_last"))
    assert prepare(RunConfig("Saliency", "digits_cnn", memory_format="channels_last")).inputs.is_contiguous(
        memory_format=torch.channels_last
    )


@pytest.mark.parametrize("name", ["digits_cnn", "tabular_mlp", "resnet18"])
def test_static_traits_match_the_built_model(name, request):
    """What a preset's validation trusts (declared, nothing built) is what the run observes."""
    request.getfixturevalue({"digits_cnn": "digits", "tabular_mlp": "tabular", "resnet18": "resnet"}[name])
    declared, observed = WORKLOADS.get(name).traits, observed_spec(name).traits
    assert declared == observed
    assert observed.rule_limits == {}  # resnet18 too: its ReLUs are one module per use


def test_patch_mask_gives_each_patch_its_own_id():
    mask = patch_mask(4, 6, 2)
    assert mask.shape == (1, 1, 4, 6)
    assert mask[0, 0].tolist() == [[0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2], [3, 3, 4, 4, 5, 5], [3, 3, 4, 4, 5, 5]]
    assert patch_mask(5, 5, 2).max() == 8  # clipped last patches get ids too


def test_load_workload_is_cached(digits):
    assert load_workload("digits_cnn") is digits


# --- batches ----------------------------------------------------------------------------


def test_batch_takes_the_first_real_examples(tabular):
    inputs, targets = tabular.batch(6)
    assert torch.equal(inputs, tabular.inputs[:6])
    assert torch.equal(targets, tabular.targets[:6])


def test_batch_larger_than_the_inputs_wraps_around(tabular):
    n = len(tabular.inputs)
    inputs, targets = tabular.batch(n + 3)
    assert torch.equal(inputs[:n], tabular.inputs)
    assert torch.equal(inputs[n:], tabular.inputs[:3])
    assert torch.equal(targets[n:], tabular.targets[:3])


def test_batch_is_deterministic_and_a_copy(digits):
    first, _ = digits.batch(5)
    first.add_(1.0)
    second, _ = digits.batch(5)
    assert torch.equal(second, digits.inputs[:5])
    assert torch.equal(second, digits.batch(5)[0])


@pytest.mark.parametrize("size", [0, -3, 1.5])
def test_batch_rejects_a_bad_size(tabular, size):
    with pytest.raises(ValueError, match=rf"batch_size must be a positive integer, got {size!r}"):
        tabular.batch(size)


# --- resnet18 ---------------------------------------------------------------------------


def _cached_imagenet_weights() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(ResNet18_Weights.IMAGENET1K_V1.url).name


def test_resnet18_loads_offline_with_one_warning_and_labels_its_weights(monkeypatch):
    monkeypatch.delenv(CHECKPOINT_ENV, raising=False)
    was_cached = _cached_imagenet_weights().is_file()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, label = load_resnet18()
    ours = [w for w in caught if "resnet18" in str(w.message)]
    if label == "imagenet1k_v1":  # cached, or downloaded just now
        assert _cached_imagenet_weights().is_file()
        assert ours == []
    else:
        assert not was_cached, "the weights were cached but the loader fell back to random ones"
        assert label == "random"
        assert len(ours) == 1, [str(w.message) for w in ours]
        assert issubclass(ours[0].category, UserWarning)
        assert "random" in str(ours[0].message) and CHECKPOINT_ENV in str(ours[0].message)
        torch.manual_seed(0)  # the fallback is the seeded initialisation, so reruns agree
        expected = resnet18(weights=None).state_dict()
        assert all(torch.equal(value, expected[key]) for key, value in model.state_dict().items())
    assert not model.training


def test_resnet18_explains_the_tutorial_cat(resnet):
    import skimage.data
    from torchvision.transforms import functional

    assert resnet.inputs.shape == (4, 3, 224, 224)
    assert resnet.info["photos"][0] == "chelsea"
    cat = functional.to_tensor(functional.center_crop(functional.resize(
        functional.to_pil_image(skimage.data.chelsea()), 224), 224))  # fmt: skip
    expected = functional.normalize(cat, IMAGENET_MEAN, IMAGENET_STD)
    torch.testing.assert_close(resnet.inputs[0], expected)
    with torch.no_grad():
        assert torch.equal(resnet.targets, resnet.model(resnet.inputs).argmax(1))


def _relu_calls(model: nn.Module, inputs: torch.Tensor) -> dict[str, int]:
    calls: dict[str, int] = {}
    handles = [
        module.register_forward_hook(lambda m, a, o, name=name: calls.__setitem__(name, calls.get(name, 0) + 1))
        for name, module in model.named_modules()
        if isinstance(module, nn.ReLU)
    ]
    with torch.no_grad():
        model(inputs)
    for handle in handles:
        handle.remove()
    return calls


def test_distinct_relus_give_the_stock_outputs_with_one_relu_module_per_use(resnet):
    torch.manual_seed(0)
    stock = resnet18(weights=None).eval()
    distinct = distinct_relus(copy.deepcopy(stock)).eval()
    inputs = torch.cat([resnet.inputs[:1], torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))])
    with torch.no_grad():
        assert torch.equal(distinct(inputs), stock(inputs))
    stock_calls = _relu_calls(stock, inputs[:1])
    assert any(count > 1 for count in stock_calls.values())  # the reuse distinct_relus exists to remove
    calls = _relu_calls(distinct, inputs[:1])
    assert set(calls.values()) == {1}
    assert len(calls) == sum(stock_calls.values())  # every use got its own module
    assert not any(m.inplace for m in distinct.modules() if isinstance(m, nn.ReLU))


def test_resnet18_workload_model_has_distinct_relus(resnet):
    calls = _relu_calls(resnet.model, resnet.inputs[:1])
    assert set(calls.values()) == {1}


@pytest.fixture(scope="module")
def resnet_checkpoint(tmp_path_factory) -> tuple[Path, dict]:
    torch.manual_seed(123)
    state = resnet18(weights=None).state_dict()
    path = tmp_path_factory.mktemp("weights") / "my-resnet18.pt"
    torch.save(state, path)
    return path, state


@pytest.mark.parametrize("via", ["argument", "environment"])
def test_resnet18_loads_a_checkpoint_and_labels_it(resnet_checkpoint, monkeypatch, via):
    path, state = resnet_checkpoint
    if via == "argument":
        monkeypatch.delenv(CHECKPOINT_ENV, raising=False)
        model, label = load_resnet18(path)
    else:
        monkeypatch.setenv(CHECKPOINT_ENV, str(path))
        model, label = load_resnet18()
    assert label == "checkpoint:my-resnet18.pt"
    assert not model.training
    loaded = model.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in state.items())


@pytest.mark.parametrize("via", ["argument", "environment"])
def test_a_missing_checkpoint_raises_naming_the_path(tmp_path, monkeypatch, via):
    missing = tmp_path / "nowhere" / "resnet.pt"
    if via == "argument":
        monkeypatch.delenv(CHECKPOINT_ENV, raising=False)
        with pytest.raises(FileNotFoundError, match=re.escape(f"resnet18 checkpoint '{missing}' does not exist")):
            load_resnet18(missing)
    else:
        monkeypatch.setenv(CHECKPOINT_ENV, str(missing))
        with pytest.raises(FileNotFoundError, match=re.escape(f"'{missing}'")):
            load_resnet18()


def test_small_model_training_is_reproducible():
    """Two trainings with the same recipe give the same weights (what the weight cache relies on)."""
    from attrib_core.models.small import TabularMLP, TrainingRecipe, train_classifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    recipe = TrainingRecipe(epochs=2, batch_size=16)
    weights = []
    for _ in range(2):
        torch.manual_seed(recipe.seed)
        model = train_classifier(TabularMLP(5, 2), x, y, recipe)
        assert not model.training and all(p.grad is None for p in model.parameters())
        weights.append(model.state_dict())
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])


# --- LRP's rules ------------------------------------------------------------------------


class _LinearTwice(nn.Module):
    """One Linear module called twice per forward pass, each ReLU its own module."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()
        self.out = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.relu2(self.fc(self.relu1(self.fc(x)))))


@pytest.mark.parametrize(
    ("model", "lrp_reason", "other_families"),
    [
        (nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)), None, set()),
        (
            nn.Sequential(nn.Linear(4, 4), nn.GELU(), nn.Linear(4, 2)),
            "uses GELU, for which",
            {"deeplift", "guided_relu"},
        ),
        (nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), "uses Flatten, for which Captum's LRP has no", set()),
        (_LinearTwice(), r"'fc' \(Linear, 2 calls\).*one activation per module", set()),
    ],
)
def test_lrp_needs_a_rule_for_every_leaf_module_each_used_once(model, lrp_reason, other_families):
    """DeepLift's reuse check stays on its own rule modules: a Linear called twice does not limit it."""
    limits, _ = scan_model(model, torch.zeros(1, 4))
    assert set(limits) - {"lrp"} == other_families
    if lrp_reason is None:
        assert "lrp" not in limits
    else:
        assert re.search(lrp_reason, limits["lrp"])
