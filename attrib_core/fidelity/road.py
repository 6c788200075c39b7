"""ROAD, remove and debias (Rong et al., ICML 2022): a perturbation curve without retraining, whose
removed pixels are filled in by noisy linear imputation instead of a constant.

Replacing pixels by a baseline leaves a pattern of holes the model can read (the mask's shape
leaks the ranking), so deletion partly measures the model's reaction to holes. ROAD fills each
removed pixel with the weighted mean of its 8 neighbours (direct neighbours 1/6, diagonal 1/12,
weights renormalised at the border), solved jointly for all removed pixels as one sparse linear
system per image (neighbours that are also removed are unknowns), then adds Gaussian noise.

Pixels are ranked by the map summed over channels (signed): most relevant first (MoRF, a faithful
map makes the score fall fast: low area) or least relevant first (LeRF: high area). Images only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.sparse import csc_matrix
from scipy.sparse.linalg import spsolve
from torch import nn

from attrib_core.fidelity.noise import example_digest, sample_seed
from attrib_core.fidelity.scores import _target_index, broadcast_to_inputs, linked_scores
from attrib_core.workloads.packed import example_rows

ROAD_ORDERS = ("morf", "lerf")
NEIGHBOUR_WEIGHTS = (
    ((0, 1), 1 / 6),
    ((0, -1), 1 / 6),
    ((1, 0), 1 / 6),
    ((-1, 0), 1 / 6),
    ((1, 1), 1 / 12),
    ((1, -1), 1 / 12),
    ((-1, 1), 1 / 12),
    ((-1, -1), 1 / 12),
)


def linear_imputation(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """(C, H, W) `image` with the pixels where (H, W) `removed` is True replaced by the solution of
    x_i = sum_j w_ij x_j / sum_j w_ij over each removed pixel's in-image neighbours j."""
    channels, height, width = image.shape
    if removed.shape != (height, width):
        raise ValueError(f"removed mask of shape {removed.shape} does not match the image's {(height, width)}")
    if removed.all():
        raise ValueError("every pixel is removed: nothing is left to impute from")
    out = image.astype(np.float64, copy=True)
    ys, xs = np.nonzero(removed)
    if len(ys) == 0:
        return out
    unknown = np.full((height, width), -1)
    unknown[ys, xs] = np.arange(len(ys))
    diagonal = np.zeros(len(ys))
    rows, cols, values = [], [], []
    rhs = np.zeros((len(ys), channels))
    for (dy, dx), weight in NEIGHBOUR_WEIGHTS:
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
        ids, ny, nx = np.nonzero(inside)[0], ny[inside], nx[inside]
        diagonal[ids] += weight
        neighbour = unknown[ny, nx]
        is_unknown = neighbour >= 0
        rows.append(ids[is_unknown])
        cols.append(neighbour[is_unknown])
        values.append(np.full(int(is_unknown.sum()), -weight))
        rhs[ids[~is_unknown]] += weight * image[:, ny[~is_unknown], nx[~is_unknown]].T
    n = len(ys)
    rows.append(np.arange(n))
    cols.append(np.arange(n))
    values.append(diagonal)
    system = csc_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    solution = spsolve(system, rhs).reshape(n, channels)
    out[:, ys, xs] = solution.T
    return out


def noisy_linear_imputation(
    image: np.ndarray, removed: np.ndarray, noise_std: float, generator: np.random.Generator
) -> np.ndarray:
    """Linear imputation plus N(0, noise_std^2) noise on the imputed values (ROAD's debiasing)."""
    out = linear_imputation(image, removed)
    if noise_std > 0:
        out[:, removed] += noise_std * generator.standard_normal((image.shape[0], int(removed.sum())))
    return out


def road_fractions(steps: int) -> list[float]:
    """`steps` shares of the pixels removed, evenly spaced strictly between 0 and 1."""
    return [k / (steps + 1) for k in range(1, steps + 1)]


@dataclass(frozen=True)
class RoadCurve:
    fractions: torch.Tensor  # (S,) share of pixels removed
    scores: torch.Tensor  # (N, S) the target's score under the output link
    correct: torch.Tensor  # (N, S) 1 where the model still predicts the target
    auc: torch.Tensor  # (N,) area under `scores` over the fractions, divided by their span
    accuracy_auc: torch.Tensor  # (N,) the same for `correct`


def _normalised_area(values: torch.Tensor, fractions: torch.Tensor) -> torch.Tensor:
    if len(fractions) == 1:
        return values[:, 0]
    return torch.trapezoid(values, fractions, dim=1) / (fractions[-1] - fractions[0])


def road_curve(
    model: nn.Module,
    inputs: torch.Tensor,
    attributions: torch.Tensor,
    target: Any,
    *,
    order: str = "morf",
    fractions: list[float] | None = None,
    noise_std: float = 0.01,
    seed: int = 0,
    link: str = "logits",
    rows_per_forward: int = 256,
) -> RoadCurve:
    """The target's score as pixels are removed and imputed, in the map's `order`.

    k = floor(fraction x H x W) pixels go at each fraction (Quantus' count). An example's noise at
    step s comes from its own generator, seeded by (seed, order, the example's values, s) as in
    `noise.ExampleNoise`, so batch size and rows_per_forward cannot change it.
    """
    if order not in ROAD_ORDERS:
        raise ValueError(f"unknown ROAD order {order!r}; valid: {', '.join(ROAD_ORDERS)}")
    if inputs.dim() != 4 or not inputs.is_floating_point():
        raise ValueError(
            f"ROAD needs image inputs (N, C, H, W); got {inputs.dtype} inputs of shape {tuple(inputs.shape)}"
        )
    fractions = road_fractions(9) if fractions is None else list(fractions)
    if not fractions or not all(0 < f < 1 for f in fractions):
        raise ValueError(f"ROAD fractions {fractions!r} are not valid; expected values strictly between 0 and 1")
    attr = broadcast_to_inputs(attributions.to(inputs.device), inputs)
    if attr is None:
        raise ValueError(
            f"attributions of shape {tuple(attributions.shape)} do not match inputs of shape {tuple(inputs.shape)}"
        )
    n, _, height, width = inputs.shape
    pixel_scores = attr.detach().double().sum(dim=1).reshape(n, -1).cpu()
    ranking = torch.argsort(pixel_scores, dim=1, descending=order == "morf", stable=True).numpy()
    images = inputs.detach().cpu().double().numpy()
    index = _target_index(target, n, inputs.device)
    digests = [example_digest(x) for x in inputs]
    perturbed = []
    for step, fraction in enumerate(fractions):
        k = math.floor(height * width * fraction + 1e-9)  # 0.29 * 100 is 28.999...
        for i in range(n):
            removed = np.zeros(height * width, dtype=bool)
            removed[ranking[i, :k]] = True
            generator = np.random.default_rng(sample_seed(seed, f"road_{order}", digests[i], step))
            perturbed.append(noisy_linear_imputation(images[i], removed.reshape(height, width), noise_std, generator))
    batch = torch.as_tensor(np.stack(perturbed), dtype=inputs.dtype, device=inputs.device)
    targets = index.repeat(len(fractions))
    scores, correct = [], []
    with torch.no_grad():
        for start in range(0, len(batch), rows_per_forward):
            with example_rows(start):  # rows are the batch repeated once per fraction
                outputs = model(batch[start : start + rows_per_forward]).float()
            outputs = outputs[:, None] if outputs.dim() == 1 else outputs
            chunk_targets = targets[start : start + rows_per_forward, None]
            scores.append(linked_scores(outputs, link).gather(1, chunk_targets)[:, 0])
            correct.append((outputs.argmax(dim=1, keepdim=True) == chunk_targets)[:, 0])
    score_grid = torch.cat(scores).double().cpu().reshape(len(fractions), n).T
    correct_grid = torch.cat(correct).double().cpu().reshape(len(fractions), n).T
    steps = torch.tensor(fractions, dtype=torch.float64)
    return RoadCurve(
        steps, score_grid, correct_grid, _normalised_area(score_grid, steps), _normalised_area(correct_grid, steps)
    )
