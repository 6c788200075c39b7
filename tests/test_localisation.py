"""Localisation metrics on closed-form cases: a perfect map scores 1, a map off the mask 0,
a uniform map the mask's area share."""

from __future__ import annotations

import pytest
import torch

from attrib_core.fidelity.localisation import (
    LOCALISATION_METRICS,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    top_k_intersection,
)


def square_mask(size: int = 10, lo: int = 2, hi: int = 6) -> torch.Tensor:
    """(1, 1, size, size) mask of a (hi - lo)^2 square: 16 of 100 pixels by default."""
    mask = torch.zeros(1, 1, size, size, dtype=torch.bool)
    mask[..., lo:hi, lo:hi] = True
    return mask


def metric_with_k_inside_mask(name: str):
    """top-k intersection with k no larger than the mask, so a perfect map can score 1."""
    if name == "top_k_intersection":
        return lambda a, m: top_k_intersection(a, m, k_fraction=0.1)
    return LOCALISATION_METRICS[name]


@pytest.mark.parametrize("name", sorted(LOCALISATION_METRICS))
def test_perfect_map_scores_one(name: str) -> None:
    mask = square_mask()
    attributions = mask.float().expand(1, 3, 10, 10) * 0.5  # positive exactly on the mask, 3 channels
    assert metric_with_k_inside_mask(name)(attributions, mask).tolist() == [1.0]


@pytest.mark.parametrize("name", sorted(LOCALISATION_METRICS))
def test_map_off_the_mask_scores_zero(name: str) -> None:
    mask = square_mask()
    attributions = (~mask).float() * 0.7  # positive everywhere off the mask
    attributions[..., 3, 3] = -2.0  # negative evidence inside counts for nothing
    assert metric_with_k_inside_mask(name)(attributions, mask).tolist() == [0.0]


@pytest.mark.parametrize("name", sorted(LOCALISATION_METRICS))
def test_uniform_map_scores_area_share(name: str) -> None:
    mask = square_mask()
    scores = LOCALISATION_METRICS[name](torch.full((1, 3, 10, 10), 0.2), mask)
    assert scores.tolist() == pytest.approx([16 / 100])


def test_partial_maps_have_their_closed_forms() -> None:
    mask = square_mask()  # 16 pixels
    attributions = torch.zeros(1, 1, 10, 10)
    attributions[..., 2, 2:6] = 3.0  # 4 pixels inside at 3
    attributions[..., 9, 0:4] = 1.0  # 4 pixels outside at 1
    attributions[..., 9, 9] = -10.0  # negative: ignored by mass accuracy
    assert relevance_mass_accuracy(attributions, mask).item() == pytest.approx(12 / 16)
    assert pointing_game(attributions, mask).item() == 1.0
    # top 16 pixels: the 4 inside at 3, the 4 outside at 1, then 8 of the 91 zero-valued
    # pixels, 12 of which lie in the mask: 4 + 8 * 12 / 91 hits out of 16
    assert relevance_rank_accuracy(attributions, mask).item() == pytest.approx((4 + 8 * 12 / 91) / 16)
    # k = 4: exactly the 4 pixels inside at value 3
    assert top_k_intersection(attributions, mask, k_fraction=0.04).item() == 1.0


def test_each_example_is_scored_against_its_own_mask() -> None:
    masks = torch.cat([square_mask(), square_mask(lo=5, hi=9)])
    attributions = masks.float()
    attributions[1, 0, 0, 0] = 2.0  # the second map's maximum misses its mask
    assert pointing_game(attributions, masks).tolist() == [1.0, 0.0]


def test_undefined_cases_are_nan_not_zero() -> None:
    empty = torch.zeros(1, 1, 10, 10, dtype=torch.bool)
    for metric in LOCALISATION_METRICS.values():
        assert torch.isnan(metric(torch.rand(1, 1, 10, 10), empty)).all()
    all_negative = -torch.ones(1, 1, 10, 10)
    assert torch.isnan(relevance_mass_accuracy(all_negative, square_mask())).all()


def test_shape_mismatch_names_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(1, 3, 8, 8\).*\(1, 1, 10, 10\)"):
        pointing_game(torch.zeros(1, 3, 8, 8), square_mask())
    with pytest.raises(ValueError, match="k_fraction=0"):
        top_k_intersection(torch.zeros(1, 1, 10, 10), square_mask(), k_fraction=0)


# --- as fidelity metrics of a benchmark cell -----------------------------------------------


def test_workloads_without_masks_get_not_applicable_with_a_reason(one_thread) -> None:
    from attrib_core.fidelity import evaluate_fidelity
    from attrib_core.run import RunConfig, prepare

    prepared = prepare(RunConfig("Saliency", "digits_cnn", batch_size=2))
    records = evaluate_fidelity(prepared, prepared(), list(LOCALISATION_METRICS))
    for name, record in records.items():
        assert record["status"] == "not_applicable" and record["value"] is None
        assert "'digits_cnn' has no ground-truth masks" in record["reason"] and name in record["reason"]


@pytest.mark.slow
def test_cells_of_the_shapes_workload_score_each_example_against_its_mask(one_thread) -> None:
    from attrib_core.fidelity import evaluate_fidelity
    from attrib_core.run import RunConfig, prepare

    prepared = prepare(RunConfig("Saliency", "shapes_resnet18", batch_size=3))
    result = prepared()
    records = evaluate_fidelity(prepared, result, list(LOCALISATION_METRICS))
    masks = prepared.workload.masks[:3]
    for name, metric in LOCALISATION_METRICS.items():
        expected = metric(result.attributions, masks)
        assert records[name]["status"] == "ok"
        assert records[name]["per_example"] == pytest.approx(expected.tolist())
        assert records[name]["value"] == pytest.approx(expected.mean().item())
    neuron = prepare(RunConfig("NeuronGradient", "shapes_resnet18", batch_size=1))
    record = evaluate_fidelity(neuron, neuron(), ["relevance_mass"])["relevance_mass"]
    assert record["status"] == "not_applicable" and "neuron" in record["reason"]
