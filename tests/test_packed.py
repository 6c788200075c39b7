"""Models with several inputs and additional_forward_args: Captum gets the tuple and the extra
arguments as a user passes them, and the harness's one-tensor view calls the same model."""

from __future__ import annotations

import captum.attr as ca
import pytest
import torch
from torch import nn

from attrib_core.fidelity.scores import _forward, infidelity_score, perturbation_curve
from attrib_core.methods import get_method
from attrib_core.run import NotApplicable, RunConfig, prepare
from attrib_core.workloads.catalog import resolve_reference
from attrib_core.workloads.packed import InputLayout, PackedForward, example_rows
from attrib_core.workloads.plugins import WorkloadContractError
from tests import REPO
from tests.passes import counted_passes

SEVERAL = REPO / "examples" / "kinds" / "several.py"


class Scaled(nn.Module):
    """out = (a.sum + b.sum) * scale per example: which example's scale a row gets is visible."""

    def forward(self, a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        total = a.flatten(1).sum(1) + b.flatten(1).sum(1)
        return torch.stack([total * scale, -total * scale], dim=1)


def _scaled() -> tuple[PackedForward, tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
    torch.manual_seed(0)
    a, b = torch.randn(3, 2, 5), torch.randn(3, 4)
    scale = torch.tensor([1.0, 10.0, 100.0])
    layout = InputLayout(((2, 5), (4,)))
    return PackedForward(Scaled(), layout, (scale,), 3), (a, b), scale


def test_a_layout_packs_several_inputs_into_rows_and_back():
    layout = InputLayout(((2, 5), (4,)))
    a, b = torch.randn(3, 2, 5), torch.randn(3, 4)
    packed = layout.pack((a, b))
    assert packed.shape == (3, 14)
    back = layout.unpack(packed)
    assert torch.equal(back[0], a) and torch.equal(back[1], b)
    single = InputLayout(((2, 5),))
    assert single.pack(a) is a and single.unpack(a) is a  # one input stays as it is


def test_per_example_arguments_follow_their_rows_in_every_order_the_harness_uses():
    model, (a, b), scale = _scaled()
    packed = model.layout.pack((a, b))
    direct = Scaled()(a, b, scale)
    assert torch.equal(model(packed), direct)
    repeated = packed.repeat(4, 1)  # the batch repeated in blocks: curves, the limit
    assert torch.equal(model(repeated), direct.repeat(4, 1))
    order = torch.tensor([2, 2, 0, 1, 0])
    with example_rows(order):  # infidelity's rows: named explicitly
        assert torch.equal(model(packed[order]), direct[order])
    chunked = _forward(model, repeated, rows_per_forward=5)  # chunks that start mid-batch
    assert torch.equal(chunked, direct.repeat(4, 1))


def test_infidelity_gives_each_draw_its_own_examples_arguments():
    model, (a, b), _ = _scaled()
    packed = model.layout.pack((a, b))
    attributions = torch.ones_like(packed)
    target = torch.zeros(3, dtype=torch.long)
    whole = infidelity_score(model, packed, attributions, target, n_samples=4, seed=1)
    chunked = infidelity_score(model, packed, attributions, target, n_samples=4, seed=1, rows_per_forward=3)
    assert torch.equal(whole.scale, chunked.scale)
    # the model is linear in the inputs with slope scale_i: the fitted scale is each example's own
    assert torch.allclose(whole.scale, torch.tensor([1.0, 10.0, 100.0], dtype=torch.float64), rtol=1e-4)


def test_a_deletion_curve_removes_groups_of_every_input():
    model, (a, b), _ = _scaled()
    packed = model.layout.pack((a, b))
    curve = perturbation_curve(
        model, packed, packed.abs(), torch.zeros(3, dtype=torch.long), torch.zeros(1, 14), mode="deletion"
    )
    assert curve.n_groups == 14 and curve.scores.shape == (3, 15)


@pytest.fixture(scope="module")
def several() -> str:
    resolve_reference(f"{SEVERAL}:make", key="several_inputs_test")
    return "several_inputs_test"


def test_the_timed_call_is_captums_call_on_the_tuple_with_the_extra_arguments(several):
    prepared = prepare(RunConfig("IntegratedGradients", several, batch_size=4, knobs={"n_steps": 16}))
    call_inputs = prepared.layout.unpack(prepared.inputs)
    assert isinstance(call_inputs, tuple) and [t.shape for t in call_inputs] == [(4, 2, 64), (4, 4)]
    valid = prepared.kwargs["additional_forward_args"][0]
    assert valid.shape == (4, 64) and not valid.all()  # per-example masks of different lengths
    ours = prepared().attributions
    model = prepared.workload_model.model
    direct = ca.IntegratedGradients(model).attribute(
        call_inputs,
        baselines=(torch.zeros(1, 2, 64), torch.zeros(1, 4)),
        target=prepared.kwargs["target"],
        additional_forward_args=(valid,),
        n_steps=16,
    )
    assert torch.equal(ours, prepared.layout.pack(direct))
    # IG's completeness holds through the packed view: the harness's model is the user's model
    total = ours.sum(1)
    outputs = prepared.model(prepared.inputs).gather(1, prepared.kwargs["target"][:, None])[:, 0]
    base = prepared.model(torch.zeros_like(prepared.inputs)).gather(1, prepared.kwargs["target"][:, None])[:, 0]
    assert torch.allclose(total, outputs - base, atol=0.05 * (outputs - base).abs().max().item())


def test_occlusion_gets_one_window_per_input_and_its_cost_model_counts_them(several):
    prepared = prepare(RunConfig("Occlusion", several, batch_size=2))
    windows = prepared.knobs["sliding_window_shapes"]
    assert windows == ((2, 4), (1,))  # a series' 1/16 and one static feature at a time
    with counted_passes(prepared) as counts:
        prepared()
    # (64 - 4) / 2 + 1 = 31 series windows, 4 feature windows, one unoccluded forward: per example
    assert counts["forward"] == prepared.passes.forward == 2 * (1 + 31 + 4)


def test_a_neuron_of_a_layer_that_sees_one_input_is_not_applicable_with_the_reason(several):
    with pytest.raises(NotApplicable, match=r"layer 'conv' does not depend on input\(s\) \[1\]"):
        prepare(RunConfig("NeuronGradient", several, batch_size=2))


def test_feature_masks_number_on_across_inputs_so_no_group_spans_two(several):
    prepared = prepare(RunConfig("FeatureAblation", several, batch_size=2))
    series_mask, static_mask = prepared.kwargs["feature_mask"]
    assert series_mask.max() + 1 == static_mask.min() and static_mask.unique().numel() == 4
    assert prepared.passes.forward == 2 * (1 + prepared.workload.n_features)
    assert get_method("FeatureAblation").uses_feature_mask


def test_a_baseline_for_the_wrong_inputs_is_one_line_naming_the_shapes(tmp_path):
    factory = tmp_path / "bad.py"
    factory.write_text(
        "import torch\n"
        f"import sys; sys.path.insert(0, {str(SEVERAL.parent)!r})\n"
        "from several import make as good\n"
        "def make():\n"
        "    made = good()\n"
        "    made['baseline'] = (torch.zeros(1, 2, 64),)\n"
        "    return made\n"
    )
    resolve_reference(f"{factory}:make", key="several_bad_baseline")
    with pytest.raises(WorkloadContractError, match=r"baseline has shapes \[\(1, 2, 64\)\].*\(1, 2, 64\), \(1, 4\)"):
        prepare(RunConfig("Saliency", "several_bad_baseline"))


def test_token_ids_with_their_attention_masks_reach_captum_as_the_user_passes_them():
    resolve_reference(f"{SEVERAL.parent / 'padded_tokens.py'}:make", key="padded_tokens_test")
    prepared = prepare(RunConfig("LayerIntegratedGradients", "padded_tokens_test", batch_size=8, knobs={"n_steps": 8}))
    assert prepared.layout is not None and not prepared.layout.several  # one input: the ids stay ids
    assert not prepared.inputs.is_floating_point()
    (mask,) = prepared.kwargs["additional_forward_args"]
    assert mask.shape == (8, 16) and len(mask.sum(1).unique()) > 1
    model = prepared.workload_model.model
    direct = ca.LayerIntegratedGradients(model, model.embedding).attribute(
        prepared.inputs,
        baselines=prepared.kwargs["baselines"],
        target=prepared.kwargs["target"],
        additional_forward_args=(mask,),
        n_steps=8,
    )
    ours = prepared().attributions
    assert torch.equal(ours, direct)
    assert (ours.abs().sum(2)[mask == 0] == 0).all()  # padded positions are masked out: no attribution
