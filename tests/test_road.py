"""attrib_core.fidelity.road: noisy linear imputation and the ROAD curve."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from attrib_core.fidelity.road import linear_imputation, noisy_linear_imputation, road_curve, road_fractions

pytestmark = pytest.mark.usefixtures("one_thread")


def ramp(height: int = 9, width: int = 11) -> np.ndarray:
    """(2, H, W): two planes a*y + b*x + c. Symmetric neighbour weights average a plane to its centre value."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    return np.stack([0.3 * y - 0.2 * x + 1.0, -0.1 * y + 0.05 * x])


def test_linear_imputation_reproduces_a_plane_inside_the_image() -> None:
    image = ramp()
    removed = np.zeros(image.shape[1:], dtype=bool)
    removed[2:7, 3:8] = True  # a block whose every pixel has all 8 neighbours inside the image
    removed[4, 1] = True
    imputed = linear_imputation(image, removed)
    # the plane solves every equation and the system is nonsingular: equal up to the solver's rounding
    assert np.allclose(imputed, image, rtol=0, atol=1e-12)
    assert np.array_equal(imputed[:, ~removed], image[:, ~removed])  # known pixels are kept as they are


def test_linear_imputation_fills_a_hole_with_its_rim_value() -> None:
    image = np.zeros((1, 6, 6))
    image[0, 0, :] = image[0, -1, :] = image[0, :, 0] = image[0, :, -1] = 2.5
    removed = np.zeros((6, 6), dtype=bool)
    removed[1:5, 1:5] = True
    assert np.allclose(linear_imputation(image, removed), 2.5, rtol=0, atol=1e-12)  # constant = harmonic


def test_imputation_refuses_what_it_cannot_solve() -> None:
    with pytest.raises(ValueError, match="every pixel is removed"):
        linear_imputation(np.zeros((1, 3, 3)), np.ones((3, 3), dtype=bool))
    with pytest.raises(ValueError, match=r"removed mask of shape \(2, 2\) does not match the image's \(3, 3\)"):
        linear_imputation(np.zeros((1, 3, 3)), np.ones((2, 2), dtype=bool))


def test_noise_has_the_stated_spread_and_only_on_removed_pixels() -> None:
    image = ramp(40, 40)
    removed = np.zeros((40, 40), dtype=bool)
    removed[5:35, 5:35] = True
    noisy = noisy_linear_imputation(image, removed, 0.5, np.random.default_rng(0))
    noise = (noisy - linear_imputation(image, removed))[:, removed]
    # 1800 draws: the sample std's standard error is 0.5 / sqrt(2 * 1800) < 0.009; allow 5 of them
    assert noise.std() == pytest.approx(0.5, abs=0.045)
    assert abs(noise.mean()) < 5 * 0.5 / math.sqrt(noise.size)
    assert np.array_equal(noisy[:, ~removed], image[:, ~removed])


class MeanOfPixels(nn.Module):
    """Two logits: the mean of the marked pixels (class 0) and 0.5 (class 1)."""

    def __init__(self, marked: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("marked", marked.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = (x[:, 0] * self.marked).sum(dim=(1, 2)) / self.marked.sum()
        return torch.stack([score, torch.full_like(score, 0.5)], dim=1)


def test_morf_removes_the_top_pixels_and_lerf_the_bottom_ones() -> None:
    side = 10
    marked = torch.zeros(side, side)
    marked[4:6, 4:6] = 1.0  # 4 of 100 pixels carry the class
    inputs = torch.zeros(1, 1, side, side)
    inputs[0, 0, 4:6, 4:6] = 1.0  # bright where it matters, dark elsewhere
    model = MeanOfPixels(marked)
    attributions = marked[None, None].clone()
    kwargs = {"fractions": [0.04], "noise_std": 0.0, "link": "regression"}
    morf = road_curve(model, inputs, attributions, 0, order="morf", **kwargs)
    lerf = road_curve(model, inputs, attributions, 0, order="lerf", **kwargs)
    # MoRF removes exactly the 4 marked pixels; surrounded by dark ones, each is imputed to ~0
    assert morf.scores[0, 0].item() < 0.5 and morf.correct[0, 0].item() == 0.0
    # LeRF removes 4 dark, unmarked pixels (the top-left ones, by the stable ranking): the score stays 1
    assert lerf.scores[0, 0].item() == pytest.approx(1.0) and lerf.correct[0, 0].item() == 1.0


def test_curve_area_is_the_mean_height_and_noise_does_not_depend_on_the_batch() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 6 * 6, 3)).eval()
    inputs = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    attributions = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    fractions = road_fractions(4)
    assert fractions == [0.2, 0.4, 0.6, 0.8]
    batch = road_curve(model, inputs, attributions, torch.tensor([0, 1, 2]), fractions=fractions, seed=5)
    alone = road_curve(model, inputs[1:2], attributions[1:2], torch.tensor([1]), fractions=fractions, seed=5)
    assert torch.allclose(batch.scores[1], alone.scores[0], rtol=0, atol=1e-6)
    area = torch.trapezoid(batch.scores, batch.fractions, dim=1) / 0.6
    assert torch.allclose(batch.auc, area)
    assert ((batch.auc >= batch.scores.min(dim=1).values) & (batch.auc <= batch.scores.max(dim=1).values)).all()


def test_road_refuses_inputs_it_cannot_impute() -> None:
    model = nn.Linear(4, 2)
    with pytest.raises(ValueError, match=r"ROAD needs image inputs \(N, C, H, W\)"):
        road_curve(model, torch.rand(2, 4), torch.rand(2, 4), 0)
    conv = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    with pytest.raises(ValueError, match=r"ROAD fractions \[1.0\] are not valid"):
        road_curve(conv, torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4), 0, fractions=[1.0])
    with pytest.raises(ValueError, match="unknown ROAD order 'random'; valid: morf, lerf"):
        road_curve(conv, torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4), 0, order="random")
