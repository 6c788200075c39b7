"""attrib_core.fidelity.similarity: the measures the sanity checks compare maps with."""

from __future__ import annotations

import math

import pytest
import torch

from attrib_core.fidelity.similarity import heat_maps, map_similarity, spearman_abs, ssim, top_k_overlap


def maps(n: int = 3, side: int = 8, channels: int = 3) -> torch.Tensor:
    return torch.randn(n, channels, side, side, generator=torch.Generator().manual_seed(0))


def test_heat_maps_sum_absolute_channels() -> None:
    a = torch.tensor([[[[1.0, -2.0]], [[-3.0, 4.0]]]])  # (1, 2, 1, 2)
    assert heat_maps(a).tolist() == [[[4.0, 6.0]]]
    flat = torch.tensor([[-1.0, 2.0]])
    assert heat_maps(flat).tolist() == [[1.0, 2.0]]


def test_a_map_is_fully_similar_to_itself_and_to_its_negation() -> None:
    a = maps()
    for b in (a, -a, 3.0 * a):  # sign and scale do not change a heat map's ranking or its [0, 1] scaling
        result = map_similarity(a, b, top_k_fraction=0.1)
        assert torch.allclose(result.spearman_abs, torch.ones(3, dtype=torch.float64))
        assert torch.allclose(result.ssim, torch.ones(3, dtype=torch.float64), atol=1e-12)
        assert torch.equal(result.top_k_overlap, torch.ones(3, dtype=torch.float64))


def test_reversed_ranking_correlates_minus_one_and_shares_no_top_pixel() -> None:
    a = torch.arange(1.0, 17.0).reshape(1, 4, 4)  # (N, H, W): no channel to sum
    b = 17.0 - a
    assert spearman_abs(a, b).item() == pytest.approx(-1.0)
    assert top_k_overlap(a, b, 0.25).item() == 0.0  # top 4 of a are 13..16, of b 1..4


def test_top_k_overlap_counts_shared_pixels() -> None:
    a = torch.tensor([[4.0, 3.0, 2.0, 1.0]])
    b = torch.tensor([[4.0, 1.0, 3.0, 2.0]])
    assert top_k_overlap(a, b, 0.5).item() == 0.5  # {0, 1} against {0, 2}
    with pytest.raises(ValueError, match="top-k fraction 0 is not valid"):
        top_k_overlap(a, b, 0)


def test_undefined_similarities_are_nan_not_zero() -> None:
    constant = torch.ones(1, 1, 8, 8)
    assert math.isnan(spearman_abs(constant, maps(1, channels=1)).item())
    assert math.isnan(ssim(torch.zeros(1, 1, 8, 8), maps(1, channels=1)).item())
    tiny = maps(2, side=2)
    assert torch.isnan(ssim(tiny, tiny)).all()  # SSIM's window needs a side of >= 3
    assert torch.isnan(ssim(torch.randn(2, 10), torch.randn(2, 10))).all()  # not a 2-D map


def test_ssim_window_fits_small_maps() -> None:
    a = maps(1, side=4, channels=1)  # window 3
    assert ssim(a, a).item() == pytest.approx(1.0)


def test_maps_of_different_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match=r"maps of shapes \(1, 4\) and \(1, 5\)"):
        map_similarity(torch.ones(1, 4), torch.ones(1, 5), 0.1)
