"""Fidelity metrics: pure functions of (model, inputs, attributions, target, baselines).

They return tensors, so tests and notebooks can call them on any model; the records a
benchmark cell stores are built from them in `attrib_core.fidelity.evaluate`. Also the options of
the whole fidelity pass, which every part of it reads.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from captum.metrics import sensitivity_max
from scipy.stats import spearmanr
from torch import nn

from attrib_core.fidelity.noise import CaptumSampleCursor, ExampleNoise
from attrib_core.methods import IG_METHODS
from attrib_core.workloads.packed import example_rows

# --- options ----------------------------------------------------------------------------

# What the fidelity pass explains and scores: the workload's labels, or the model's own
# top class (then a misclassified example is judged on the class the model chose).
TARGETS = ("label", "predicted")
RANDOM_WEIGHTS_CHOICES = ("measure", "skip")  # fidelity on weights "random": computed and set aside, or not computed
# Where insertion starts: the workload's baseline, or the input blurred (Petsiuk et al.
# 2018, RISE), which keeps low frequencies so the curve does not start off-distribution.
INSERTION_STARTS = ("baseline", "blur")
# Noise draws per example for infidelity. On digits_cnn (IG-32, batch 8) 10 draws let the
# 30-seed ranges of IG and of a random-noise map overlap; 50 keep them apart with a margin
# (see experiments/fidelity/proof.py and docs/metrics.md).
INFIDELITY_SAMPLES = 50


@dataclass(frozen=True)
class FidelityOptions:
    """Every setting of the fidelity pass, with defaults sized for the small workloads."""

    top_k_fraction: float = 0.1  # share of elements compared by top-k overlap
    reference_steps: int = 1024  # path-integral references: integration points
    reference_rule: str = "gausslegendre"
    reference_sample_factor: int = 10  # sampling references: this many times the cell's samples
    rows_per_attribution_call: int = 64  # rows per chunk of reference and sensitivity attribution calls
    reference_seed: int | None = None  # None: the cell's seed
    occlusion_reference: Mapping[str, Any] | None = None  # overrides Workload.reference_knobs / the finest
    use_cache: bool = True
    target: str = "label"  # the class explained and scored: one of TARGETS
    curve_steps: int = 20  # points on the deletion / insertion curves, after the start
    insertion_start: str = "baseline"  # what insertion starts from: one of INSERTION_STARTS
    blur_kernel_size: int = 11  # insertion_start="blur": Petsiuk et al.'s (RISE) kernel, capped to the image
    blur_sigma: float = 5.0  # in pixels
    rows_per_forward: int = 256  # rows per forward of the curves and infidelity
    stability_seeds: int = 3  # seeds compared, the cell's own included
    infidelity_samples: int = INFIDELITY_SAMPLES
    infidelity_noise_std: float = 0.01  # in input units
    infidelity_normalize: bool = True  # headline value: the optimally rescaled one (scale >= 0); both are recorded
    sensitivity_samples: int = 10
    sensitivity_radius: float = 0.02  # L-infinity radius, in input units
    # On weights "random" every metric is marked not meaningful. "measure" computes it anyway (the raw
    # values say how a method converges, which needs no training); "skip" spends no time on it.
    random_weights: str = "measure"
    # Sanity checks (attrib_core/fidelity/sanity.py): at most this many randomisation steps (layer
    # groups, output side first; each costs one attribution call per variant), ROAD's removed
    # fractions and imputation noise, and the workloads they run on (empty: every workload).
    randomisation_steps: int = 8
    road_steps: int = 9
    road_noise_std: float = 0.01  # in input units, as Rong et al. and Quantus
    sanity_workloads: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        positive_ints = (
            "reference_steps",
            "reference_sample_factor",
            "rows_per_attribution_call",
            "curve_steps",
            "rows_per_forward",
            "infidelity_samples",
            "sensitivity_samples",
            "blur_kernel_size",
            "randomisation_steps",
            "road_steps",
        )
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"fidelity option {name}={value!r} is not valid; expected an integer >= 1")
        if not isinstance(self.stability_seeds, int) or self.stability_seeds < 2:
            raise ValueError(f"fidelity option stability_seeds={self.stability_seeds!r} is not valid; expected >= 2")
        if not 0 < self.top_k_fraction <= 1:
            raise ValueError(
                f"fidelity option top_k_fraction={self.top_k_fraction!r} is not valid; expected 0 < k <= 1"
            )
        if self.reference_rule not in IG_METHODS:
            raise ValueError(
                f"fidelity option reference_rule={self.reference_rule!r} is not valid; one of {', '.join(IG_METHODS)}"
            )
        for name, choices in (
            ("target", TARGETS),
            ("insertion_start", INSERTION_STARTS),
            ("random_weights", RANDOM_WEIGHTS_CHOICES),
        ):
            if getattr(self, name) not in choices:
                raise ValueError(
                    f"fidelity option {name}={getattr(self, name)!r} is not valid; one of {', '.join(choices)}"
                )
        if self.blur_kernel_size % 2 == 0:
            raise ValueError(f"fidelity option blur_kernel_size={self.blur_kernel_size!r} is not valid; expected odd")
        for name in ("infidelity_noise_std", "sensitivity_radius", "blur_sigma"):
            if not getattr(self, name) > 0:
                raise ValueError(f"fidelity option {name}={getattr(self, name)!r} is not valid; expected > 0")
        if not self.road_noise_std >= 0:
            raise ValueError(f"fidelity option road_noise_std={self.road_noise_std!r} is not valid; expected >= 0")
        workloads = self.sanity_workloads
        if isinstance(workloads, str) or not all(isinstance(name, str) for name in workloads):
            raise ValueError(
                f"fidelity option sanity_workloads={workloads!r} is not valid; expected a list of workload names"
            )
        object.__setattr__(self, "sanity_workloads", tuple(workloads))

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> FidelityOptions:
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise ValueError(f"unknown fidelity option(s) {', '.join(map(repr, unknown))}; valid: {', '.join(valid)}")
        return cls(**options)


# --- shared helpers ---------------------------------------------------------------------


def check_attributions(attributions: torch.Tensor, inputs: torch.Tensor, kind: str = "feature") -> None:
    """Raise ValueError for attributions that cannot belong to `inputs` or are not finite.

    Feature and neuron attributions have the inputs' shape; layer attributions have the
    layer's shape, so only their batch dimension is checked.
    """
    if not isinstance(attributions, torch.Tensor):
        raise ValueError(f"attributions must be a tensor, got {type(attributions).__name__}")
    if kind == "layer":
        if attributions.dim() == 0 or attributions.shape[0] != inputs.shape[0]:
            raise ValueError(
                f"layer attributions of shape {tuple(attributions.shape)} do not match inputs of shape "
                f"{tuple(inputs.shape)}: batch dimensions differ"
            )
    elif attributions.shape != inputs.shape:
        raise ValueError(
            f"attributions of shape {tuple(attributions.shape)} do not match inputs of shape {tuple(inputs.shape)}"
        )
    bad = int((~torch.isfinite(attributions)).sum())
    if bad:
        raise ValueError(f"attributions contain {bad} NaN or Inf value(s) out of {attributions.numel()}")


def _target_index(target: Any, n: int, device: torch.device) -> torch.Tensor:
    """(N,) class indices from an int, a sequence or a tensor."""
    if target is None:
        raise ValueError("target is required: the class whose score is explained")
    index = torch.as_tensor(target, device=device).long().reshape(-1)
    if index.numel() == 1:
        index = index.expand(n)
    if index.numel() != n:
        raise ValueError(f"target has {index.numel()} entries; expected 1 or one per example ({n})")
    return index


def _forward(model: nn.Module, inputs: torch.Tensor, rows_per_forward: int | None = None) -> torch.Tensor:
    """(N, K) outputs in chunks of `rows_per_forward` rows, without building a graph; (N,) becomes (N, 1)."""
    step = rows_per_forward or len(inputs)
    if step >= len(inputs):  # one call: the rows are the examples as they come (or as example_rows says)
        with torch.no_grad():
            out = model(inputs).float()
        return out[:, None] if out.dim() == 1 else out
    chunks = []
    with torch.no_grad():
        for i in range(0, len(inputs), step):
            with example_rows(i):  # a chunk that starts mid-batch
                chunks.append(model(inputs[i : i + step]).float())
    out = torch.cat(chunks)
    return out[:, None] if out.dim() == 1 else out


# --- output links: what a curve scores --------------------------------------------------


class OutputLinkError(ValueError):
    """The model's outputs cannot be scored with the declared link (e.g. softmax over one output)."""


@dataclass(frozen=True)
class OutputLink:
    """How a model's raw outputs become the score a deletion / insertion curve follows."""

    score: str  # the score, in words, for the record
    apply: Callable[[torch.Tensor], torch.Tensor]  # (N, K) outputs -> (N, K) scores
    min_outputs: int  # fewer output columns make the link meaningless
    has_classes: bool  # outputs are competing classes, so the top one is a predicted class


# Declared per workload (Workload.output_kind). Softmax over a single output is 1 whatever
# the input, so "logits" refuses one-output models instead of reporting AUC 1.0.
OUTPUT_LINKS: dict[str, OutputLink] = {
    "logits": OutputLink("softmax probability of the target class", lambda z: z.softmax(dim=1), 2, True),
    "single_logit": OutputLink("sigmoid of the target output (binary logit)", torch.sigmoid, 1, False),
    "multi_label": OutputLink("sigmoid of the target label's logit (labels do not compete)", torch.sigmoid, 1, False),
    "regression": OutputLink("raw target output (no link; the AUC is in output units)", lambda z: z, 1, False),
}


def output_link(name: str) -> OutputLink:
    if name not in OUTPUT_LINKS:
        raise ValueError(f"unknown output kind {name!r}; valid: {', '.join(OUTPUT_LINKS)}")
    return OUTPUT_LINKS[name]


def linked_scores(outputs: torch.Tensor, link: str) -> torch.Tensor:
    """(N, K) scores of `outputs` under `link`; OutputLinkError when the link does not fit them."""
    spec = output_link(link)
    outputs = outputs[:, None] if outputs.dim() == 1 else outputs
    if outputs.shape[1] < spec.min_outputs:
        raise OutputLinkError(
            f"output kind {link!r} ({spec.score}) needs >= {spec.min_outputs} outputs, but the model has "
            f"{outputs.shape[1]}: softmax over one output is 1 for every input. Declare the workload's "
            "output_kind: 'single_logit' (sigmoid) or 'regression' (raw output)"
        )
    return spec.apply(outputs.float())


def target_scores(
    model: nn.Module,
    inputs: torch.Tensor,
    target: Any,
    *,
    link: str | None = None,
    rows_per_forward: int | None = None,
) -> torch.Tensor:
    """(N,) the explained score: the target's raw output (what Captum attributes), or under `link`."""
    outputs = _forward(model, inputs, rows_per_forward)
    if link is not None:
        outputs = linked_scores(outputs, link)
    return outputs.gather(1, _target_index(target, len(inputs), outputs.device)[:, None]).squeeze(1)


def predicted_targets(model: nn.Module, inputs: torch.Tensor, rows_per_forward: int | None = None) -> torch.Tensor:
    """(N,) the model's top output per example (its predicted class)."""
    return _forward(model, inputs, rows_per_forward).argmax(dim=1)


def broadcast_to_inputs(attributions: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor | None:
    """Attributions in input space (a one-channel map counts for every channel), or None.

    For token ids, attributions to an embedding-like layer, shaped (*inputs.shape, D...),
    sum over the trailing dimensions to one score per token.
    """
    if attributions.shape == inputs.shape:
        return attributions
    leading = attributions.shape[: inputs.dim()] == inputs.shape
    if not inputs.is_floating_point() and attributions.dim() > inputs.dim() and leading:
        return attributions.sum(dim=tuple(range(inputs.dim(), attributions.dim())))
    same_rank = attributions.dim() == inputs.dim() and attributions.shape[0] == inputs.shape[0]
    if same_rank and all(a in (1, i) for a, i in zip(attributions.shape, inputs.shape, strict=True)):
        return attributions.expand_as(inputs)
    return None


def _row_norms(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(len(x), -1).double().norm(dim=1)


def _spearman_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row Spearman rank correlation; NaN where a row is constant (undefined)."""
    a_rows = a.reshape(len(a), -1).double().cpu().numpy()
    b_rows = b.reshape(len(b), -1).double().cpu().numpy()
    out = []
    for x, y in zip(a_rows, b_rows, strict=True):
        constant = x.min() == x.max() or y.min() == y.max()
        out.append(math.nan if constant else float(spearmanr(x, y).statistic))
    return torch.tensor(out, dtype=torch.float64)


# --- completeness -----------------------------------------------------------------------


@dataclass(frozen=True)
class Completeness:
    relative: torch.Tensor  # (N,) |sum(attr) - dF| / |dF|; NaN where dF is ~0
    absolute: torch.Tensor  # (N,) |sum(attr) - dF|
    output_difference: torch.Tensor  # (N,) dF = F(x) - F(baseline)


def completeness_error(
    model: nn.Module,
    inputs: torch.Tensor,
    attributions: torch.Tensor,
    target: Any,
    baselines: torch.Tensor,
    *,
    baseline_distribution: bool = False,
) -> Completeness:
    """How far sum(attributions) is from F(x) - F(baseline), per example.

    F is the target's logit. Attributions may be in input or layer space: layer path
    methods sum to the same output difference. With `baseline_distribution` (the *Shap
    methods) the baselines are a distribution and F(baseline) is their mean.
    """
    n = len(inputs)
    if attributions.dim() == 0 or attributions.shape[0] != n:
        raise ValueError(
            f"attributions of shape {tuple(attributions.shape)} do not match inputs of shape {tuple(inputs.shape)}: "
            "batch dimensions differ"
        )
    f_x = target_scores(model, inputs, target)
    if baseline_distribution:
        index = _target_index(target, n, inputs.device)
        f_b = _forward(model, baselines)[:, index].mean(dim=0)  # (K, N) -> (N,)
    else:
        f_b = target_scores(model, torch.broadcast_to(baselines, inputs.shape), target)
    difference = (f_x - f_b).double().cpu()
    absolute = (attributions.reshape(n, -1).double().sum(dim=1).cpu() - difference).abs()
    scale = difference.abs()
    relative = torch.where(scale > 1e-12, absolute / scale.clamp_min(1e-12), torch.full_like(scale, math.nan))
    return Completeness(relative, absolute, difference)


# --- agreement with a reference, and across seeds ---------------------------------------


@dataclass(frozen=True)
class Agreement:
    rel_l2: torch.Tensor  # (N,) ||a - r|| / ||r||; NaN where the reference is zero
    spearman: torch.Tensor  # (N,) rank correlation of the signed values; NaN where undefined
    top_k_overlap: torch.Tensor  # (N,) shared share of the top-k elements by |value|


def reference_error(attributions: torch.Tensor, reference: torch.Tensor, *, top_k_fraction: float = 0.1) -> Agreement:
    """Per-example error of `attributions` against a high-accuracy `reference` of the same shape."""
    if attributions.shape != reference.shape:
        raise ValueError(
            f"attributions of shape {tuple(attributions.shape)} do not match the reference's {tuple(reference.shape)}"
        )
    if not 0 < top_k_fraction <= 1:
        raise ValueError(f"top_k_fraction={top_k_fraction!r} is not valid; expected 0 < k <= 1")
    a = attributions.detach().double().cpu()
    r = reference.detach().double().cpu()
    ref_norm = _row_norms(r)
    rel = torch.where(ref_norm > 0, _row_norms(a - r) / ref_norm.clamp_min(1e-300), torch.full_like(ref_norm, math.nan))
    flat_a, flat_r = a.reshape(len(a), -1).abs(), r.reshape(len(r), -1).abs()
    k = max(1, round(top_k_fraction * flat_a.shape[1]))
    top_a = torch.zeros_like(flat_a, dtype=torch.bool).scatter_(1, flat_a.topk(k, dim=1).indices, True)
    top_r = torch.zeros_like(flat_r, dtype=torch.bool).scatter_(1, flat_r.topk(k, dim=1).indices, True)
    overlap = (top_a & top_r).sum(dim=1).double() / k
    return Agreement(rel, _spearman_rows(a, r), overlap)


@dataclass(frozen=True)
class SeedSpread:
    rel_l2: torch.Tensor  # (N,) mean over pairs of ||a - b|| / mean(||a||, ||b||)
    spearman: torch.Tensor  # (N,) mean over pairs of the rank correlation


def seed_spread(attributions_by_seed: Sequence[torch.Tensor]) -> SeedSpread:
    """How much a stochastic method's attributions move when only the seed changes."""
    if len(attributions_by_seed) < 2:
        raise ValueError(f"seed_spread needs attributions from >= 2 seeds, got {len(attributions_by_seed)}")
    runs = [a.detach().double().cpu() for a in attributions_by_seed]
    distances, correlations = [], []
    for i in range(len(runs)):
        for j in range(i + 1, len(runs)):
            scale = (_row_norms(runs[i]) + _row_norms(runs[j])) / 2
            distances.append(_row_norms(runs[i] - runs[j]) / scale.clamp_min(1e-300))
            correlations.append(_spearman_rows(runs[i], runs[j]))
    return SeedSpread(torch.stack(distances).mean(dim=0), torch.stack(correlations).mean(dim=0))


# --- deletion / insertion curves --------------------------------------------------------


def blurred(inputs: torch.Tensor, kernel_size: int = 11, sigma: float = 5.0) -> tuple[torch.Tensor, int]:
    """(N, C, H, W) Gaussian-blurred copies of image `inputs` (insertion's start in RISE), and the
    kernel size used: `kernel_size` capped to the largest odd size the image's reflect padding allows."""
    from torchvision.transforms.functional import gaussian_blur

    if inputs.dim() != 4:
        raise ValueError(f"blur needs image inputs (N, C, H, W); got inputs of shape {tuple(inputs.shape)}")
    size = min(kernel_size, 2 * min(inputs.shape[-2:]) - 1)  # padding (size - 1) / 2 < the image's side
    with torch.no_grad():
        return gaussian_blur(inputs.float(), [size, size], [sigma, sigma]).to(inputs.dtype), size


@dataclass(frozen=True)
class Curve:
    fractions: torch.Tensor  # (S+1,) share of feature groups removed (deletion) or inserted
    scores: torch.Tensor  # (N, S+1) the target's score under the output link (softmax probability by default)
    auc: torch.Tensor  # (N,) area under the curve, x in [0, 1]
    n_groups: int


def perturbation_curve(
    model: nn.Module,
    inputs: torch.Tensor,
    attributions: torch.Tensor,
    target: Any,
    baselines: torch.Tensor,
    feature_mask: torch.Tensor | None = None,
    *,
    mode: str = "deletion",
    n_steps: int = 20,
    rows_per_forward: int = 256,
    link: str = "logits",
) -> Curve:
    """The target's score as feature groups go, most attributed first.

    Deletion replaces groups of `inputs` by the baseline (a faithful attribution makes the
    curve fall fast: low AUC); insertion starts from the baseline and puts groups back
    (high AUC). `baselines` broadcast to the inputs: one shared baseline, or one per example
    (a blurred copy, say). The score is the target's output under `link` (OUTPUT_LINKS);
    OutputLinkError when the link does not fit the model's outputs. Groups come from
    `feature_mask` (None: every element alone); a group's score is the sum of its signed
    attributions. The S+1 perturbed copies of the batch are
    stacked and evaluated `rows_per_forward` rows at a time, not one call per step.
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"unknown curve mode {mode!r}; valid: deletion, insertion")
    attr = broadcast_to_inputs(attributions.to(inputs.device), inputs)
    if attr is None:
        raise ValueError(
            f"attributions of shape {tuple(attributions.shape)} do not match inputs of shape {tuple(inputs.shape)}"
        )
    n = len(inputs)
    x = inputs.reshape(n, -1)
    base = torch.broadcast_to(baselines.to(inputs.device), inputs.shape).reshape(n, -1)
    if feature_mask is None:
        ids = torch.arange(x.shape[1], device=inputs.device).expand(n, -1)
    else:
        raw = torch.broadcast_to(feature_mask.to(inputs.device), inputs.shape).reshape(n, -1)
        _, ids = torch.unique(raw, return_inverse=True)  # group ids 0..G-1, none empty
    n_groups = int(ids.max()) + 1
    group_scores = torch.zeros(n, n_groups, dtype=torch.float64, device=inputs.device)
    group_scores.scatter_add_(1, ids, attr.reshape(n, -1).double())
    order = torch.argsort(group_scores, dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(n_groups, device=inputs.device).expand(n, -1))
    element_rank = rank.gather(1, ids)  # (N, D): when each element goes

    steps = min(n_steps, n_groups)
    counts = [round(s * n_groups / steps) for s in range(steps + 1)]
    index = _target_index(target, n, inputs.device)
    per_call = max(1, rows_per_forward // n)
    chunks = []
    with torch.no_grad():
        for start in range(0, len(counts), per_call):
            k = torch.tensor(counts[start : start + per_call], device=inputs.device)
            moved = element_rank[None] < k[:, None, None]  # (c, N, D)
            stacked = torch.where(moved, base, x) if mode == "deletion" else torch.where(moved, x, base)
            outputs = model(stacked.reshape(-1, *inputs.shape[1:]))
            probs = linked_scores(outputs, link)
            chunks.append(probs.reshape(len(k), n, -1).gather(2, index.view(1, n, 1).expand(len(k), n, 1))[..., 0])
    scores = torch.cat(chunks).T.double().cpu()
    fractions = torch.tensor(counts, dtype=torch.float64) / n_groups
    return Curve(fractions, scores, torch.trapezoid(scores, fractions, dim=1), n_groups)


# --- infidelity and sensitivity, with per-example noise ---------------------------------


@dataclass(frozen=True)
class Infidelity:
    """Infidelity per example, E[(a.I - (F(x) - F(x - I)))^2] over noise I, two ways.

    `unnormalized` is Captum's `normalize=False` value: it depends on the map's scale.
    `normalized` first rescales the map by the optimal scale restricted to >= 0: Captum's
    `normalize=True` lets the scale go negative, which scores a negated map exactly as the map
    itself. A map that points the wrong way gets scale 0 here and scores as the zero map does.
    Standard errors are over the noise draws (the fitted scale taken as fixed).
    """

    normalized: torch.Tensor  # (N,)
    normalized_se: torch.Tensor  # (N,)
    unnormalized: torch.Tensor  # (N,)
    unnormalized_se: torch.Tensor  # (N,)
    scale: torch.Tensor  # (N,) the unrestricted optimal scale (Captum's beta); negative: the map points the wrong way


def _mean_and_se(terms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) mean over samples and its standard error (NaN with one sample)."""
    se = terms.std(dim=1) / math.sqrt(terms.shape[1]) if terms.shape[1] > 1 else torch.full_like(terms[:, 0], math.nan)
    return terms.mean(dim=1), se


def infidelity_score(
    model: nn.Module,
    inputs: torch.Tensor,
    attributions: torch.Tensor,
    target: Any,
    *,
    n_samples: int = INFIDELITY_SAMPLES,
    noise_std: float = 0.01,
    seed: int = 0,
    rows_per_forward: int | None = None,
) -> Infidelity:
    """Infidelity under Gaussian noise of `noise_std`, each example's draws seeded by the example.

    Captum's `infidelity` computes the same expectation (tests check equality) but returns only
    the aggregate: the sign-restricted scale and the standard errors need the per-draw terms,
    so they are computed here. Noise comes from `ExampleNoise`: batch size and
    `rows_per_forward` group rows into forwards and cannot change any value.
    """
    attr = broadcast_to_inputs(attributions.to(inputs.device), inputs)
    if attr is None:
        raise ValueError(
            f"attributions of shape {tuple(attributions.shape)} do not match inputs of shape {tuple(inputs.shape)}"
        )
    n = len(inputs)
    index = _target_index(target, n, inputs.device)
    noise = ExampleNoise(inputs, seed, "infidelity", "normal")
    f_x = target_scores(model, inputs, index, rows_per_forward=rows_per_forward).double()
    pairs = [(example, sample) for example in range(n) for sample in range(n_samples)]
    step = rows_per_forward or len(pairs)
    dots, diffs = [], []
    with torch.no_grad():
        for start in range(0, len(pairs), step):
            chunk = pairs[start : start + step]
            rows = torch.tensor([example for example, _ in chunk], device=inputs.device)
            perturbation = noise.draw(chunk) * noise_std
            dots.append((attr[rows] * perturbation).reshape(len(chunk), -1).double().sum(dim=1))
            with example_rows(rows):
                perturbed = target_scores(model, inputs[rows] - perturbation, index[rows]).double()
            diffs.append(f_x[rows] - perturbed)
    a = torch.cat(dots).reshape(n, n_samples).cpu()  # a.I
    d = torch.cat(diffs).reshape(n, n_samples).cpu()  # F(x) - F(x - I)
    a_sq = (a * a).sum(dim=1)
    scale = torch.where(a_sq > 0, (a * d).sum(dim=1) / a_sq.clamp_min(1e-300), torch.zeros_like(a_sq))
    normalized, normalized_se = _mean_and_se((scale.clamp_min(0)[:, None] * a - d) ** 2)
    unnormalized, unnormalized_se = _mean_and_se((a - d) ** 2)
    return Infidelity(normalized, normalized_se, unnormalized, unnormalized_se, scale)


def sensitivity_score(
    explain: Callable[..., torch.Tensor],
    inputs: torch.Tensor,
    explain_kwargs: Mapping[str, Any] | None = None,
    *,
    n_samples: int = 10,
    radius: float = 0.02,
    seed: int = 0,
    rows_per_call: int | None = None,
) -> torch.Tensor:
    """(N,) Captum's sensitivity_max: the largest relative change of `explain(inputs, **explain_kwargs)`
    under uniform noise in an L-infinity ball of `radius`. Costs n_samples attribution calls' worth.
    Each example's draws are seeded by the example (`ExampleNoise`), so chunking cannot move them."""
    noise = ExampleNoise(inputs, seed, "sensitivity", "uniform")
    cursor = CaptumSampleCursor(inputs)

    def perturb(x: torch.Tensor, r: float) -> torch.Tensor:
        return x + (2 * noise.draw(cursor.pairs(x)) - 1) * r

    n = len(inputs)
    rows = min(max(rows_per_call or n * n_samples, n), n * n_samples)
    scores = sensitivity_max(
        explain,
        inputs,
        perturb_func=perturb,
        perturb_radius=radius,
        n_perturb_samples=n_samples,
        max_examples_per_batch=rows,
        **(explain_kwargs or {}),
    )
    return scores.detach().double().cpu()
