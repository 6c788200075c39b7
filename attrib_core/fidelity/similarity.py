"""How alike two attribution maps are, the way the sanity checks compare them (Adebayo et al. 2018).

Maps are compared as heat maps: absolute values, an image's channels summed, so a map and its
negation count as the same explanation (the paper's "absolute value" variant; sign flips are
common after randomising a layer and say nothing about what the map points at). Three measures,
each one value per example:

- Spearman rank correlation of the heat maps (1: the same ranking of pixels);
- SSIM of the heat maps, each scaled to [0, 1] by its own maximum, for 2-D maps only;
- top-k overlap: the share of the k hottest pixels the two maps have in common.

Undefined values (a constant map, a map too small for SSIM's window) are NaN, never 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from skimage.metrics import structural_similarity

from attrib_core.fidelity.scores import _spearman_rows

SSIM_WINDOW = 7  # skimage's default; smaller maps use the largest odd window that fits (at least 3)


def heat_maps(attributions: torch.Tensor) -> torch.Tensor:
    """(N, ...) attributions -> float64 heat maps: |value|, channels summed for (N, C, H, W) images."""
    heat = attributions.detach().to("cpu", torch.float64).abs()
    return heat.sum(dim=1) if heat.dim() == 4 else heat


def _scaled_to_unit(rows: torch.Tensor) -> torch.Tensor:
    peak = rows.reshape(len(rows), -1).amax(dim=1).clamp_min(torch.finfo(torch.float64).tiny)
    return rows / peak.reshape(-1, *([1] * (rows.dim() - 1)))


def spearman_abs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N,) rank correlation of the two heat maps; NaN where either is constant."""
    return _spearman_rows(heat_maps(a), heat_maps(b))


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N,) SSIM of the two heat maps, each scaled to [0, 1] (data range 1); NaN for maps that are not
    2-D (H, W) with sides of at least 3, or where either map is all zero."""
    heat_a, heat_b = heat_maps(a), heat_maps(b)
    if heat_a.dim() != 3 or min(heat_a.shape[1:]) < 3:
        return torch.full((len(heat_a),), math.nan, dtype=torch.float64)
    side = min(heat_a.shape[1:])
    window = min(SSIM_WINDOW, side if side % 2 else side - 1)
    scaled_a, scaled_b = _scaled_to_unit(heat_a).numpy(), _scaled_to_unit(heat_b).numpy()
    out = []
    for x, y, raw_x, raw_y in zip(scaled_a, scaled_b, heat_a, heat_b, strict=True):
        defined = bool(raw_x.max() > 0 and raw_y.max() > 0)
        out.append(structural_similarity(x, y, win_size=window, data_range=1.0) if defined else math.nan)
    return torch.tensor(out, dtype=torch.float64)


def top_k_overlap(a: torch.Tensor, b: torch.Tensor, fraction: float) -> torch.Tensor:
    """(N,) the share of the k = fraction x pixels hottest pixels both heat maps hold (ties broken by position)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"top-k fraction {fraction!r} is not valid; expected 0 < fraction <= 1")
    flat_a = heat_maps(a).reshape(len(a), -1)
    flat_b = heat_maps(b).reshape(len(b), -1)
    k = max(1, round(fraction * flat_a.shape[1]))
    top_a = torch.zeros_like(flat_a, dtype=torch.bool).scatter_(1, flat_a.topk(k, dim=1).indices, True)
    top_b = torch.zeros_like(flat_b, dtype=torch.bool).scatter_(1, flat_b.topk(k, dim=1).indices, True)
    return (top_a & top_b).sum(dim=1).double() / k


@dataclass(frozen=True)
class Similarity:
    """Per-example similarity of two maps under each measure."""

    spearman_abs: torch.Tensor  # (N,)
    ssim: torch.Tensor  # (N,)
    top_k_overlap: torch.Tensor  # (N,)

    @staticmethod
    def measures() -> tuple[str, ...]:
        return ("spearman_abs", "ssim", "top_k_overlap")


def map_similarity(a: torch.Tensor, b: torch.Tensor, top_k_fraction: float) -> Similarity:
    """Every measure of how alike maps `a` and `b` (same shape) are."""
    if a.shape != b.shape:
        raise ValueError(f"maps of shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be compared")
    return Similarity(spearman_abs(a, b), ssim(a, b), top_k_overlap(a, b, top_k_fraction))


def mean_of(values: torch.Tensor) -> float | None:
    """Mean over the finite entries, or None when there are none."""
    finite = values[torch.isfinite(values)]
    return float(finite.mean()) if len(finite) else None
