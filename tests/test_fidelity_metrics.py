"""Issue 17's four points: sign-aware infidelity, noise that batching cannot move, the output
link of deletion / insertion, and the target and baseline a record states."""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings

import pytest
import torch
from captum.attr import IntegratedGradients, Saliency
from captum.metrics import infidelity
from torch import nn

from attrib_core.fidelity import evaluate_fidelity
from attrib_core.fidelity.noise import CaptumSampleCursor, ExampleNoise
from attrib_core.fidelity.scores import (
    FidelityOptions,
    Infidelity,
    OutputLinkError,
    blurred,
    infidelity_score,
    perturbation_curve,
    sensitivity_score,
)
from attrib_core.run import AttributionResult, PreparedRun, RunConfig, prepare
from attrib_core.sweep import PresetError, load_preset
from tests.numerics import forward_error_bound

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: tiny models, shared cores

N_FEATURES = 8


@pytest.fixture(autouse=True)
def _quiet_captum():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")
        yield


def linear_model(n_outputs: int = 3) -> nn.Linear:
    model = nn.Linear(N_FEATURES, n_outputs)
    with torch.no_grad():
        model.weight.copy_(torch.linspace(-2.0, 2.5, N_FEATURES * n_outputs).reshape(n_outputs, N_FEATURES))
        model.bias.fill_(0.1)
    return model.eval()


def linear_inputs(n: int = 4) -> torch.Tensor:
    return torch.rand(n, N_FEATURES, generator=torch.Generator().manual_seed(0)) + 0.5


def digits_ig(batch_size: int, n_steps: int = 8) -> tuple[PreparedRun, AttributionResult]:
    config = RunConfig("IntegratedGradients", "digits_cnn", batch_size=batch_size, knobs={"n_steps": n_steps})
    prepared = prepare(config)
    return prepared, prepared()


# --- 1. infidelity sees the sign ---------------------------------------------------------


def test_infidelity_closed_forms_on_a_linear_model():
    """F(x) = w.x + b: F(x) - F(x - I) = w.I, so the gradient map w has infidelity 0."""
    model, inputs = linear_model(), linear_inputs()
    target = torch.tensor([0, 1, 2, 0])
    gradient = model.weight.detach()[target]
    exact = infidelity_score(model, inputs, gradient, target, n_samples=16, noise_std=0.1)
    assert exact.normalized.abs().max() < 1e-10 and exact.unnormalized.abs().max() < 1e-10
    assert torch.allclose(exact.scale, torch.ones(4, dtype=torch.float64))

    doubled = infidelity_score(model, inputs, 2 * gradient, target, n_samples=16, noise_std=0.1)
    assert doubled.normalized.abs().max() < 1e-10  # the optimal scale, 1/2, undoes the doubling
    assert torch.allclose(doubled.scale, torch.full((4,), 0.5, dtype=torch.float64))
    assert torch.all(doubled.unnormalized > 0)  # E[(w.I)^2] > 0

    negated = infidelity_score(model, inputs, -gradient, target, n_samples=16, noise_std=0.1)
    zero = infidelity_score(model, inputs, torch.zeros_like(gradient), target, n_samples=16, noise_std=0.1)
    assert torch.allclose(negated.scale, -torch.ones(4, dtype=torch.float64))
    assert torch.equal(negated.normalized, zero.normalized)  # scale restricted to >= 0: scores as the zero map
    assert torch.all(negated.normalized > 1e-4) and torch.all(negated.unnormalized > negated.normalized)


def test_infidelity_equals_captums_with_the_same_noise():
    """The per-draw computation is Captum's own, except that the scale may not go negative."""
    prepared, result = digits_ig(4)
    target = prepared.kwargs["target"]
    noise = ExampleNoise(prepared.inputs, 0, "infidelity")

    def captum_infidelity(attributions: torch.Tensor, normalize: bool) -> torch.Tensor:
        cursor = CaptumSampleCursor(prepared.inputs)

        def perturb(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            perturbation = noise.draw(cursor.pairs(x)) * 0.01
            return perturbation, x - perturbation

        return infidelity(
            prepared.model, perturb, prepared.inputs, attributions, target=target, n_perturb_samples=6,
            max_examples_per_batch=8, normalize=normalize,
        ).double()  # fmt: skip

    for attributions in (result.attributions, -result.attributions):
        ours = infidelity_score(prepared.model, prepared.inputs, attributions, target, n_samples=6, seed=0)
        assert torch.allclose(ours.unnormalized, captum_infidelity(attributions, False), rtol=1e-4)
        captum_normalized = captum_infidelity(attributions, True)
        positive = ours.scale >= 0
        assert torch.allclose(ours.normalized[positive], captum_normalized[positive], rtol=1e-4)
    # Captum's normalize=True scores the negated map exactly as the map: the sign is lost
    assert torch.allclose(captum_infidelity(-result.attributions, True), captum_infidelity(result.attributions, True))


def test_a_negated_ig_map_scores_worse_than_the_map_on_digits():
    prepared, result = digits_ig(8, n_steps=32)
    records = {
        label: evaluate_fidelity(prepared, AttributionResult(attributions, None), ["infidelity"])["infidelity"]
        for label, attributions in (("map", result.attributions), ("negated", -result.attributions))
    }
    ig, negated = records["map"], records["negated"]
    assert ig["value_is"] == "normalized" and ig["value"] == ig["normalized"]["value"]
    assert negated["value"] > ig["value"] + 2 * math.hypot(negated["standard_error"], ig["standard_error"])
    assert negated["unnormalized"]["value"] > ig["unnormalized"]["value"]
    assert all(scale < 0 for scale in negated["scale_per_example"])
    assert ig["n_samples"] == FidelityOptions().infidelity_samples
    unnormalized = evaluate_fidelity(prepared, result, ["infidelity"], infidelity_normalize=False)["infidelity"]
    assert unnormalized["value_is"] == "unnormalized" and unnormalized["value"] == ig["unnormalized"]["value"]


# --- 2. noise that batching cannot move, and its standard error ----------------------------


def test_each_example_gets_the_same_noise_draws_whatever_the_batch_and_grouping():
    """Exactly invariant: the draws are seeded by the example's content and the sample index."""
    small, large = digits_ig(8)[0], digits_ig(32)[0]
    pairs = [(example, sample) for example in range(8) for sample in range(10)]
    together = ExampleNoise(small.inputs, 0, "infidelity").draw(pairs)
    in_the_large_batch = ExampleNoise(large.inputs, 0, "infidelity").draw(pairs)
    in_chunks_of_7 = torch.cat(
        [ExampleNoise(small.inputs, 0, "infidelity").draw(pairs[i : i + 7]) for i in range(0, 80, 7)]
    )
    assert torch.equal(together, in_the_large_batch) and torch.equal(together, in_chunks_of_7)
    assert len({tuple(row.flatten()[:4].tolist()) for row in together}) == 80  # every pair its own draw


def test_infidelity_of_an_example_does_not_depend_on_batch_size_or_rows_per_forward():
    """With the draws fixed, only the order of float sums differs between groupings. In float64
    each logit is then within forward_error_bound x its magnitude (tests/numerics.py); a term
    a.I - (F(x) - F(x - I)) within twice that, and the mean of its square within 2 delta / rms + (delta / rms)^2
    of itself (relative), rms being the root of the unnormalised infidelity."""
    small, small_result = digits_ig(8)
    large, large_result = digits_ig(32)
    assert torch.equal(large.inputs[:8], small.inputs)
    model = copy.deepcopy(small.workload_model).double()

    def scores(prepared: PreparedRun, result: AttributionResult, rows: int) -> Infidelity:
        inputs, attributions = prepared.inputs.double(), result.attributions.double()
        target = prepared.kwargs["target"]
        return infidelity_score(model, inputs, attributions, target, n_samples=10, rows_per_forward=rows)

    reference = scores(small, small_result, 256)
    with torch.no_grad():
        largest_logit = model(small.inputs.double()).abs().amax(dim=1)
    delta = 2 * forward_error_bound(model, torch.float64) * 1.5 * largest_logit  # noise of 0.01 moves logits little
    rms = reference.unnormalized.sqrt()
    relative = 4 * (delta / rms + (delta / rms) ** 2)  # the fitted scale's own change at most doubles it
    others = [scores(small, small_result, rows) for rows in (40, 16, 7)]
    others.append(scores(large, large_result, 256))
    for other in others:
        for field in ("unnormalized", "normalized"):
            got, want = getattr(other, field)[:8], getattr(reference, field)
            assert ((got - want).abs() <= relative * want.abs()).all(), (field, (got - want).abs() / want.abs())
    assert len(set(reference.normalized.tolist())) == 8  # examples get different noise
    assert relative.max() < 1e-6  # the bound is tight enough to catch a change of noise or pairing


def test_sensitivity_of_an_example_does_not_depend_on_batch_size_or_chunking():
    """Float64 Saliency, so only the order of sums differs: each gradient is within e = 2 x
    forward_error_bound of itself (a forward and a backward), so a score |dPhi| / |Phi| within
    2e / score + e of itself (relative)."""
    model = copy.deepcopy(prepare(RunConfig("Saliency", "digits_cnn")).workload_model).double()
    saliency = Saliency(model)

    def scores(batch_size: int, rows: int) -> torch.Tensor:
        prepared = prepare(RunConfig("Saliency", "digits_cnn", batch_size=batch_size))
        return sensitivity_score(
            saliency.attribute, prepared.inputs.double(), {"target": prepared.kwargs["target"]},
            n_samples=6, radius=0.05, seed=3, rows_per_call=rows,
        )  # fmt: skip

    reference = scores(4, 24)
    gradient_error = 2 * forward_error_bound(model, torch.float64)
    relative = 2 * gradient_error / reference + gradient_error
    for other in (scores(4, 8), scores(8, 16)[:4]):
        assert ((other - reference).abs() <= relative * reference).all()
    assert torch.all(reference > 0) and relative.max() < 1e-6


def test_the_standard_error_is_the_spread_of_the_draws_over_root_n():
    model, inputs = linear_model(), linear_inputs()
    target = torch.tensor([0, 1, 2, 0])
    random_map = torch.randn(inputs.shape, generator=torch.Generator().manual_seed(1))
    scores = infidelity_score(model, inputs, random_map, target, n_samples=9, noise_std=0.1)
    noise = ExampleNoise(inputs, 0, "infidelity").draw([(0, j) for j in range(9)]) * 0.1
    terms = ((random_map[0] * noise).sum(dim=1) - noise @ model.weight.detach()[0]).double() ** 2
    assert scores.unnormalized[0].item() == pytest.approx(terms.mean().item(), rel=1e-5)
    assert scores.unnormalized_se[0].item() == pytest.approx((terms.std() / 3).item(), rel=1e-5)


# --- 3. the output link of deletion / insertion --------------------------------------------


def test_a_one_output_model_gets_its_link_or_a_clear_refusal():
    model, inputs = linear_model(n_outputs=1), linear_inputs()
    weights = model.weight.detach()[0].expand_as(inputs)
    target, baseline = torch.zeros(4, dtype=torch.long), torch.zeros(1, N_FEATURES)
    with pytest.raises(OutputLinkError, match=r"model has 1: softmax over one output .*'single_logit'.*'regression'"):
        perturbation_curve(model, inputs, weights * inputs, target, baseline)
    with torch.no_grad():
        logit, logit_at_baseline = model(inputs)[:, 0], model(baseline)[0, 0]
    sigmoid = perturbation_curve(model, inputs, weights * inputs, target, baseline, link="single_logit")
    assert torch.allclose(sigmoid.scores[:, 0], torch.sigmoid(logit).double())
    assert torch.allclose(sigmoid.scores[:, -1], torch.sigmoid(logit_at_baseline).double().expand(4))
    assert torch.all(sigmoid.auc < 0.99)
    raw = perturbation_curve(model, inputs, weights * inputs, target, baseline, link="regression")
    assert torch.allclose(raw.scores[:, 0], logit.double())
    with pytest.raises(
        ValueError, match=r"unknown output kind 'probit'; valid: logits, single_logit, multi_label, regression"
    ):
        perturbation_curve(model, inputs, weights * inputs, target, baseline, link="probit")


def one_output_run(output_kind: str | None) -> PreparedRun:
    """tabular_mlp's cell with its model swapped for a one-logit head."""
    prepared = prepare(RunConfig("IntegratedGradients", "tabular_mlp", batch_size=4, knobs={"n_steps": 4}))
    head = nn.Sequential(prepared.model, nn.Linear(2, 1)).eval()
    workload = prepared.workload
    if output_kind is not None:
        workload = dataclasses.replace(workload, output_kind=output_kind)
    kwargs = {**prepared.kwargs, "target": torch.zeros(4, dtype=torch.long)}
    return dataclasses.replace(
        prepared, model=head, workload_model=head, attributor=IntegratedGradients(head), kwargs=kwargs,
        workload=workload,
    )  # fmt: skip


def test_deletion_on_an_undeclared_one_output_model_is_refused_not_scored_one():
    prepared = one_output_run(None)
    records = evaluate_fidelity(prepared, prepared(), ["deletion", "insertion"])
    for record in records.values():
        assert record["status"] == "not_applicable" and record["value"] is None
        assert "softmax over one output" in record["reason"] and "output_kind" in record["reason"]
    declared = one_output_run("single_logit")
    deletion = evaluate_fidelity(declared, declared(), ["deletion"])["deletion"]
    assert deletion["status"] == "ok" and deletion["output_kind"] == "single_logit"
    assert deletion["score"].startswith("sigmoid") and 0 < deletion["value"] < 1
    predicted = evaluate_fidelity(declared, declared(), ["deletion"], target="predicted")["deletion"]
    assert predicted["target"] == "label" and "no predicted class" in predicted["target_note"]
    assert predicted["value"] == deletion["value"]


# --- 4. which target and which baseline ------------------------------------------------------


def test_predicted_target_recomputes_only_where_the_model_disagrees_with_the_label(digits):
    predicted = digits.model(digits.inputs[:40]).argmax(1)
    wrong = (predicted != digits.targets[:40]).nonzero().flatten().tolist()
    assert wrong == [38]  # the held-out digit the model gets wrong among the first 40
    prepared, result = digits_ig(40, n_steps=4)
    metrics = ["completeness", "deletion", "insertion"]
    by_label = evaluate_fidelity(prepared, result, metrics)
    by_prediction = evaluate_fidelity(prepared, result, metrics, target="predicted")
    assert by_label["deletion"]["target"] == "label"
    for name in metrics:
        record = by_prediction[name]
        assert record["target"] == "predicted" and record["targets_changed"] == 1, name
        pairs = zip(record["per_example"], by_label[name]["per_example"], strict=True)
        changed = [i for i, (a, b) in enumerate(pairs) if a != b]
        assert changed == [38], name
    # the same as a cell whose labels were the predictions in the first place
    relabelled = dataclasses.replace(prepared, kwargs={**prepared.kwargs, "target": predicted})
    same = evaluate_fidelity(relabelled, relabelled(), metrics)
    for name in metrics:
        assert by_prediction[name]["per_example"] == pytest.approx(same[name]["per_example"], rel=1e-6)


def test_curves_record_their_baseline_and_insertion_can_start_from_a_blur(digits):
    prepared, result = digits_ig(4)
    records = evaluate_fidelity(prepared, result, ["deletion", "insertion"], insertion_start="blur", blur_sigma=1.0)
    assert records["deletion"]["baseline"]["source"] == "baseline"
    assert records["deletion"]["baseline"]["constant"] == 0.0
    start = records["insertion"]["baseline"]
    assert start["source"] == "blur" and start["kernel_size"] == 11 and start["sigma"] == 1.0
    blurry, _ = blurred(prepared.inputs, 11, 1.0)
    with torch.no_grad():
        probability = digits.model(blurry).softmax(1).gather(1, prepared.kwargs["target"][:, None])
    assert records["insertion"]["mean_curve"][0] == pytest.approx(probability.mean().item(), rel=1e-5)
    assert blurred(torch.zeros(1, 3, 4, 4), 11, 5.0)[1] == 7  # reflect padding needs kernel <= 2 * side - 1

    tabular = prepare(RunConfig("Saliency", "tabular_mlp", batch_size=2))
    insertion = evaluate_fidelity(tabular, tabular(), ["insertion"], insertion_start="blur")["insertion"]
    assert insertion["status"] == "not_applicable" and "image inputs" in insertion["reason"]

    shap = prepare(RunConfig("GradientShap", "digits_cnn", batch_size=2, knobs={"n_samples": 2}))
    deletion = evaluate_fidelity(shap, shap(), ["deletion"])["deletion"]
    assert "background set of 8 examples" in deletion["baseline"]["method_baselines"]


def test_bad_target_and_start_options_name_the_choices():
    with pytest.raises(ValueError, match=r"target='prediction' is not valid; one of label, predicted"):
        FidelityOptions(target="prediction")
    with pytest.raises(ValueError, match=r"insertion_start='blurred' is not valid; one of baseline, blur"):
        FidelityOptions(insertion_start="blurred")
    with pytest.raises(ValueError, match=r"blur_kernel_size=4 is not valid; expected odd"):
        FidelityOptions(blur_kernel_size=4)


def test_a_preset_asks_for_the_predicted_target_in_its_fidelity_options(tmp_path):
    preset = """
name = "predicted"
[fidelity]
metrics = ["deletion"]
options = { target = "%s", insertion_start = "blur" }
[[sweep]]
workload = "digits_cnn"
method = "Saliency"
"""
    path = tmp_path / "predicted.toml"
    path.write_text(preset % "predicted")
    loaded = load_preset(path)
    assert loaded.fidelity_options == {"target": "predicted", "insertion_start": "blur"}
    assert FidelityOptions.from_mapping(loaded.fidelity_options).target == "predicted"
    path.write_text(preset % "argmax")
    with pytest.raises(PresetError, match=r"fidelity option target='argmax' is not valid; one of label"):
        load_preset(path)
