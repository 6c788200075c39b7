"""Localisation: does an attribution point at the pixels the label lives in?

Fidelity metrics ask whether a map agrees with the model; these ask whether it agrees with a
ground-truth mask of the class-defining object (CLEVR-XAI, Arras et al. 2022; Quantus'
localisation metrics). Pure functions of a pixel map and a mask, cheap enough for every cell.

Attributions are first reduced to one signed value per pixel (channels summed, as the
gallery shows them). Ties are split evenly: where several pixels share the maximum, or the
k-th largest value, each tied pixel counts with equal weight. So a uniform map scores the
mask's area share on every metric, a map that is positive exactly on the mask scores 1,
and a map concentrated off the mask scores 0. Each function returns one value per example,
NaN where the metric is undefined (an empty mask; no positive attribution for mass accuracy).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

TOP_K_FRACTION = 0.04  # top-k intersection's k as a share of the pixels: below the smallest shapes mask


def pixel_maps(attributions: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C, H, W) or (N, H, W) attributions and masks -> (N, H*W) float64 maps, (N, H*W) bool masks."""
    attr = attributions.detach().to("cpu", torch.float64)
    mask = masks.detach().to("cpu").bool()
    if attr.dim() == 4:
        attr = attr.sum(1)
    if mask.dim() == 4:
        if mask.shape[1] != 1:
            raise ValueError(f"masks must have one channel, got shape {tuple(masks.shape)}")
        mask = mask[:, 0]
    if attr.dim() != 3 or attr.shape != mask.shape:
        raise ValueError(
            f"attributions of shape {tuple(attributions.shape)} do not match masks of shape {tuple(masks.shape)}; "
            "expected (N, C, H, W) or (N, H, W) attributions over the masks' (N, 1, H, W) or (N, H, W) pixels"
        )
    return attr.reshape(len(attr), -1), mask.reshape(len(mask), -1)


def _undefined_where_empty(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.any(dim=1), scores, torch.full_like(scores, float("nan")))


def pointing_game(attributions: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """1 where the map's maximum lies inside the mask, else 0; tied maxima share the point."""
    attr, mask = pixel_maps(attributions, masks)
    at_max = attr == attr.max(dim=1, keepdim=True).values
    scores = (at_max & mask).sum(1).double() / at_max.sum(1).double()
    return _undefined_where_empty(scores, mask)


def relevance_mass_accuracy(attributions: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Share of the positive attribution that falls inside the mask (NaN if none is positive)."""
    attr, mask = pixel_maps(attributions, masks)
    positive = attr.clamp(min=0)
    total = positive.sum(1)
    inside = (positive * mask).sum(1)
    scores = torch.where(total > 0, inside / total.clamp(min=torch.finfo(torch.float64).tiny), float("nan"))
    return _undefined_where_empty(scores, mask)


def _top_k_share(attr: torch.Tensor, mask: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Share of the k highest pixels that lie in the mask; pixels tied at the k-th value count in part."""
    ranked = attr.sort(dim=1, descending=True).values
    kth = ranked.gather(1, (k - 1).clamp(min=0)[:, None])
    above, tied = attr > kth, attr == kth
    n_above = above.sum(1).double()
    tied_in_mask = (tied & mask).sum(1).double() / tied.sum(1).double()
    hits = (above & mask).sum(1).double() + (k.double() - n_above) * tied_in_mask
    return hits / k.double()


def relevance_rank_accuracy(attributions: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Of the K highest-ranked pixels, K the mask's size, the share inside the mask."""
    attr, mask = pixel_maps(attributions, masks)
    k = mask.sum(1).clamp(min=1)
    return _undefined_where_empty(_top_k_share(attr, mask, k), mask)


def top_k_intersection(
    attributions: torch.Tensor, masks: torch.Tensor, k_fraction: float = TOP_K_FRACTION
) -> torch.Tensor:
    """Of the k highest-ranked pixels, k a fixed share of the image, the share inside the mask."""
    if not 0 < k_fraction <= 1:
        raise ValueError(f"k_fraction={k_fraction!r} is not valid; expected 0 < k_fraction <= 1")
    attr, mask = pixel_maps(attributions, masks)
    k = torch.full((len(attr),), max(1, round(k_fraction * attr.shape[1])), dtype=torch.long)
    return _undefined_where_empty(_top_k_share(attr, mask, k), mask)


LOCALISATION_METRICS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "pointing_game": pointing_game,
    "relevance_mass": relevance_mass_accuracy,
    "relevance_rank": relevance_rank_accuracy,
    "top_k_intersection": top_k_intersection,
}
