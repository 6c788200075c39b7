"""attrib_core.workloads.zoo: `torchvision:<model>` specs (static, nothing built), their
declared traits against the real module trees, and one small model built and run."""

from __future__ import annotations

import urllib.error
import warnings

import pytest
import torch
import torchvision

from attrib_core.methods import METHODS, get_method
from attrib_core.models.resnet import distinct_relus
from attrib_core.run import NotApplicable, RunConfig, prepare
from attrib_core.workloads import WORKLOADS, load_workload, observed_spec, workload_spec
from attrib_core.workloads.applicability import applies_to, unsupported_reason
from attrib_core.workloads.builtin import photos
from attrib_core.workloads.catalog import resolve_reference
from attrib_core.workloads.traits import scan_model
from attrib_core.workloads.zoo import FAMILIES, family_of, load_zoo_model, zoo_traits

pytestmark = pytest.mark.usefixtures("one_thread")

ZOO = ("resnet18", "resnet50", "mobilenet_v3_small", "efficientnet_b0", "convnext_tiny", "vit_b_16")
RULE_METHODS = ("DeepLift", "DeepLiftShap", "GuidedBackprop")


def small(model: str, key: str, **declared) -> str:
    """A zoo model at 32x32 with random weights (no download attempt): fast enough for a test."""
    resolve_reference(f"torchvision:{model}", key=key, args={"image_size": 32, "weights": "random"}, declared=declared)
    return key


@pytest.mark.parametrize("model", ZOO)
def test_declared_traits_match_the_model(model):
    """The static traits (what validation trusts) against the module tree, built on the meta
    device: no memory, no weights. ResNets are checked after the ReLU-per-use fix."""
    family = family_of(model)
    with torch.device("meta"):
        net = torchvision.models.get_model(model, weights=None)
        if family.distinct_relus:
            net = distinct_relus(net)
        limits, spatial = scan_model(net, torch.zeros(1, 3, 224, 224), family.layer)
    declared = zoo_traits(model)
    assert declared.rule_limits == limits
    assert declared.spatial_layer == spatial
    assert declared.layer_name == family.layer


def test_resnets_reuse_relus_until_fixed():
    with torch.device("meta"):
        limits, _ = scan_model(torchvision.models.resnet50(), torch.zeros(1, 3, 224, 224))
    assert "'layer1.0.relu' (ReLU, 3 calls)" in limits["deeplift"]  # Bottleneck calls its ReLU three times
    assert "GuidedBackprop needs one module per use" in limits["guided_relu"]


def test_distinct_relus_keeps_a_bottleneck_resnets_outputs():
    torch.manual_seed(0)
    net = torchvision.models.resnet50(weights=None).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = net(x)
        after = distinct_relus(net).eval()(x)
    torch.testing.assert_close(after, before)


def test_which_methods_apply_is_known_without_building_anything():
    applies = {}
    for model in ZOO:
        spec = workload_spec(f"torchvision:{model}")
        assert spec.source == "torchvision" and spec.is_image
        applies[model] = {m.name for m in METHODS if applies_to(m, spec)}
    assert set(RULE_METHODS) <= applies["resnet18"] and set(RULE_METHODS) <= applies["resnet50"]
    for model in ("mobilenet_v3_small", "efficientnet_b0", "convnext_tiny", "vit_b_16"):
        assert not set(RULE_METHODS) & applies[model], model
    assert "LayerGradCam" not in applies["vit_b_16"] and "LayerGradCam" in applies["convnext_tiny"]
    reason = unsupported_reason(get_method("LayerGradCam"), workload_spec("torchvision:vit_b_16"))
    assert "layer 'encoder.layers' has no (N, C, ...) map of the input's rank" in reason
    reason = unsupported_reason(get_method("DeepLift"), workload_spec("torchvision:efficientnet_b0"))
    assert "uses SiLU, for which Captum's DeepLift has no rule" in reason
    assert all("IntegratedGradients" in methods for methods in applies.values())


def test_preprocessing_and_method_defaults_follow_the_weights_and_the_size():
    spec = workload_spec("torchvision:vit_b_16")
    assert spec.method_defaults["Occlusion"] == {"sliding_window_shapes": (3, 15, 15), "strides": (3, 8, 8)}
    spec = WORKLOADS.get(small("mobilenet_v3_small", "zoo_mnv3_32"))
    assert spec.method_defaults["Occlusion"] == {"sliding_window_shapes": (3, 2, 2), "strides": (3, 1, 1)}
    w = load_workload("zoo_mnv3_32")
    transforms = torchvision.models.MobileNet_V3_Small_Weights.DEFAULT.transforms(crop_size=32, resize_size=37)
    torch.testing.assert_close(w.inputs, photos(transforms))  # the family's own preprocessing, at 32 pixels
    assert w.inputs.shape == (4, 3, 32, 32) and w.weights == "random"
    assert w.info["weights_note"].startswith("random initialisation")


def test_offline_default_weights_fall_back_to_random_with_a_warning(monkeypatch):
    real = torchvision.models.get_model

    def offline(name, weights=None, **kwargs):
        if weights is not None:
            raise urllib.error.URLError("no network")
        return real(name, weights=None, **kwargs)

    monkeypatch.setattr(torchvision.models, "get_model", offline)
    with pytest.warns(UserWarning, match=r"torchvision:mobilenet_v3_small: IMAGENET1K_V1 weights are not cached"):
        model, label = load_zoo_model("mobilenet_v3_small", "DEFAULT", 32)
    assert label == "random"
    again, _ = load_zoo_model("mobilenet_v3_small", "DEFAULT", 32, seed=0)
    torch.testing.assert_close(next(model.parameters()), next(again.parameters()))  # seeded


def test_a_vit_at_another_size_cannot_use_its_weights():
    with pytest.warns(UserWarning, match=r"IMAGENET1K_V1 weights fit 224x224 inputs, not image_size=32"):
        _, label = load_zoo_model("vit_b_16", "DEFAULT", 32)
    assert label == "random"


def test_cells_run_and_inapplicable_methods_are_refused_with_the_reason():
    key = small("mobilenet_v3_small", "zoo_mnv3_run")
    for method in ("Saliency", "LayerGradCam", "NeuronGradient"):
        result = prepare(RunConfig(method, key))()
        assert torch.isfinite(result.attributions).all()
    with pytest.raises(NotApplicable, match=r"DeepLift does not apply to workload 'zoo_mnv3_run': .*Hardswish"):
        prepare(RunConfig("DeepLift", key))
    assert observed_spec(key).traits == WORKLOADS.get(key).traits


def test_the_preset_overrides_the_default_layer():
    key = small("mobilenet_v3_small", "zoo_mnv3_layer", layer="features.3")
    assert WORKLOADS.get(key).traits.spatial_layer is None  # another layer: the run observes it
    w = load_workload(key)
    assert w.layer_name == "features.3" and len(w.neuron) == 3
    assert observed_spec(key).traits.spatial_layer is True
    attributions = prepare(RunConfig("LayerGradCam", key, knobs={"interpolate": False}))().attributions
    assert attributions.shape[:2] == (1, 1) and attributions.shape[2] < 32


def test_other_classification_models_resolve_with_unknown_traits():
    spec = workload_spec("torchvision:squeezenet1_0")
    assert family_of("squeezenet1_0") is None and spec.traits.layer_name == ""
    assert set(FAMILIES) == {"resnet", "mobilenet_v3", "efficientnet", "convnext", "vit"}


def test_an_explicit_random_choice_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_zoo_model("mobilenet_v3_small", "random", 32)  # asked for: nothing to warn about
