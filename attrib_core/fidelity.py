"""Fidelity: how faithful an attribution is, recorded beside what it cost.

Two layers. Pure metric functions of (model, inputs, attributions, target, baselines) that
return tensors, so tests and notebooks can call them on any model. And `evaluate_fidelity`,
which a benchmark cell calls once, outside its timed rounds, and which returns JSON-able
records (floats, None, strings) with each metric's own compute time, so a report can show
what checking fidelity costs next to what the attribution costs.

A metric that does not apply to a method says so (status "not_applicable" and a reason);
it never reports a silent zero.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import captum
import torch
from captum.metrics import infidelity, sensitivity_max
from scipy.stats import spearmanr
from torch import nn

from attrib_core.cache import cache_dir, stable_hash
from attrib_core.methods import IG_METHODS
from attrib_core.run import AttributionResult, PreparedRun, RunConfig, prepare

DEFAULT_METRICS = ("completeness", "reference_error", "deletion", "insertion")
OPT_IN_METRICS = ("stability", "infidelity", "sensitivity")  # extra attribution calls or many forwards
METRICS = DEFAULT_METRICS + OPT_IN_METRICS

REFERENCE_VERSION = 1  # bump when the way references are computed changes

# Knobs that only group rows into calls: they change speed and memory, not the value, so
# references set them for speed and leave them out of the cache key.
BATCHING_KNOBS = ("internal_batch_size", "perturbations_per_eval", "nt_samples_batch_size")

# The finest occlusion (a one-element window at stride 1) is one forward per input element:
# 150 528 on a 224x224 RGB image. There the reference is coarser, hence an approximation.
OCCLUSION_REFERENCE: dict[str, dict[str, tuple[int, ...]]] = {
    "resnet18": {"sliding_window_shapes": (3, 4, 4), "strides": (3, 2, 2)},
}


# --- options ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FidelityOptions:
    """Every setting of the fidelity pass, with defaults sized for the small workloads."""

    top_k_fraction: float = 0.1  # share of elements compared by top-k overlap
    reference_steps: int = 1024  # path-integral references: integration points
    reference_rule: str = "gausslegendre"
    reference_sample_factor: int = 10  # sampling references: this many times the cell's samples
    rows_per_attribution_call: int = 64  # rows per chunk of reference and sensitivity attribution calls
    reference_seed: int | None = None  # None: the cell's seed
    occlusion_reference: Mapping[str, Any] | None = None  # overrides OCCLUSION_REFERENCE / the finest
    use_cache: bool = True
    curve_steps: int = 20  # points on the deletion / insertion curves, after the start
    rows_per_forward: int = 256  # rows per forward of the curves and infidelity
    stability_seeds: int = 3  # seeds compared, the cell's own included
    infidelity_samples: int = 10
    infidelity_noise_std: float = 0.01  # in input units
    infidelity_normalize: bool = True  # rescale attributions optimally first (scale-free)
    sensitivity_samples: int = 10
    sensitivity_radius: float = 0.02  # L-infinity radius, in input units

    def __post_init__(self) -> None:
        positive_ints = (
            "reference_steps",
            "reference_sample_factor",
            "rows_per_attribution_call",
            "curve_steps",
            "rows_per_forward",
            "infidelity_samples",
            "sensitivity_samples",
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
        for name in ("infidelity_noise_std", "sensitivity_radius"):
            if not getattr(self, name) > 0:
                raise ValueError(f"fidelity option {name}={getattr(self, name)!r} is not valid; expected > 0")

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
    """Logits in chunks of `rows_per_forward` rows, without building a graph."""
    step = rows_per_forward or len(inputs)
    with torch.no_grad():
        return torch.cat([model(inputs[i : i + step]).float() for i in range(0, len(inputs), step)])


def target_scores(
    model: nn.Module,
    inputs: torch.Tensor,
    target: Any,
    *,
    probabilities: bool = False,
    rows_per_forward: int | None = None,
) -> torch.Tensor:
    """(N,) the explained score: the target's logit (what Captum attributes) or its softmax probability."""
    logits = _forward(model, inputs, rows_per_forward)
    if probabilities:
        logits = logits.softmax(dim=1)
    return logits.gather(1, _target_index(target, len(inputs), logits.device)[:, None]).squeeze(1)


def _broadcast_to_inputs(attributions: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor | None:
    """Attributions in input space (a one-channel map counts for every channel), or None."""
    if attributions.shape == inputs.shape:
        return attributions
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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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


@dataclass(frozen=True)
class Curve:
    fractions: torch.Tensor  # (S+1,) share of feature groups removed (deletion) or inserted
    scores: torch.Tensor  # (N, S+1) softmax probability of the target
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
) -> Curve:
    """Target probability as feature groups go, most attributed first.

    Deletion replaces groups of `inputs` by the baseline (a faithful attribution makes the
    curve fall fast: low AUC); insertion starts from the baseline and puts groups back
    (high AUC). Groups come from `feature_mask` (None: every element alone); a group's
    score is the sum of its signed attributions. The S+1 perturbed copies of the batch are
    stacked and evaluated `rows_per_forward` rows at a time, not one call per step.
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"unknown curve mode {mode!r}; valid: deletion, insertion")
    attr = _broadcast_to_inputs(attributions.to(inputs.device), inputs)
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
            probs = model(stacked.reshape(-1, *inputs.shape[1:])).float().softmax(dim=1)
            chunks.append(probs.reshape(len(k), n, -1).gather(2, index.view(1, n, 1).expand(len(k), n, 1))[..., 0])
    scores = torch.cat(chunks).T.double().cpu()
    fractions = torch.tensor(counts, dtype=torch.float64) / n_groups
    return Curve(fractions, scores, torch.trapezoid(scores, fractions, dim=1), n_groups)


# --- Captum's infidelity and sensitivity ------------------------------------------------


def infidelity_score(
    model: nn.Module,
    inputs: torch.Tensor,
    attributions: torch.Tensor,
    target: Any,
    *,
    n_samples: int = 10,
    noise_std: float = 0.01,
    normalize: bool = True,
    seed: int = 0,
    rows_per_forward: int | None = None,
) -> torch.Tensor:
    """(N,) Captum's infidelity under Gaussian noise of `noise_std`, drawn from a seeded generator."""
    attr = _broadcast_to_inputs(attributions.to(inputs.device), inputs)
    if attr is None:
        raise ValueError(
            f"attributions of shape {tuple(attributions.shape)} do not match inputs of shape {tuple(inputs.shape)}"
        )
    generator = torch.Generator(device=inputs.device).manual_seed(seed)

    def perturb(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype) * noise_std
        return noise, x - noise

    n = len(inputs)
    rows = min(max(rows_per_forward or n * n_samples, n), n * n_samples)
    scores = infidelity(
        model,
        perturb,
        inputs,
        attr.contiguous(),
        target=_target_index(target, n, inputs.device),
        n_perturb_samples=n_samples,
        max_examples_per_batch=rows,
        normalize=normalize,
    )
    return scores.detach().double().cpu()


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
    under uniform noise in an L-infinity ball of `radius`. Costs n_samples attribution calls' worth."""
    generator = torch.Generator(device=inputs.device).manual_seed(seed)

    def perturb(x: torch.Tensor, r: float) -> torch.Tensor:
        noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return x + (2 * noise - 1) * r

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


# --- references: computed once, cached on disk ------------------------------------------


@dataclass(frozen=True)
class ReferenceRecipe:
    """How to turn a cell's knobs into its reference's knobs, and what the reference is."""

    knobs: Callable[[Mapping[str, Any], PreparedRun, FidelityOptions], dict[str, Any]]
    note: Callable[[Mapping[str, Any], PreparedRun, FidelityOptions], str]
    approximate: Callable[[PreparedRun, FidelityOptions], bool] = lambda prepared, options: False


def _path_knobs(knobs: Mapping[str, Any], prepared: PreparedRun, options: FidelityOptions) -> dict[str, Any]:
    return {**knobs, "n_steps": options.reference_steps, "method": options.reference_rule}


def _more_samples(knob: str) -> ReferenceRecipe:
    def knobs_for(knobs: Mapping[str, Any], prepared: PreparedRun, options: FidelityOptions) -> dict[str, Any]:
        return {**knobs, knob: knobs[knob] * options.reference_sample_factor}

    def note(knobs: Mapping[str, Any], prepared: PreparedRun, options: FidelityOptions) -> str:
        return (
            f"same estimator with {options.reference_sample_factor}x {knob} ({knobs[knob]}); its own sampling "
            "error is smaller, not zero; other knobs as the cell's"
        )

    return ReferenceRecipe(knobs_for, note, lambda prepared, options: True)


def _finest_occlusion_knobs(prepared: PreparedRun) -> tuple[dict[str, Any], bool]:
    """The occlusion config a reference uses, and whether it is coarser than the finest."""
    dims = prepared.inputs.dim() - 1
    finest = {"sliding_window_shapes": (1,) * dims, "strides": (1,) * dims}
    chosen = OCCLUSION_REFERENCE.get(prepared.workload.name, finest)
    return {k: tuple(v) for k, v in chosen.items()}, chosen != finest


def _occlusion_knobs(knobs: Mapping[str, Any], prepared: PreparedRun, options: FidelityOptions) -> dict[str, Any]:
    chosen = options.occlusion_reference or _finest_occlusion_knobs(prepared)[0]
    return {**knobs, **{k: tuple(v) for k, v in chosen.items()}}


def _occlusion_approximate(prepared: PreparedRun, options: FidelityOptions) -> bool:
    if options.occlusion_reference is not None:
        dims = prepared.inputs.dim() - 1
        return any(tuple(v) != (1,) * dims for v in options.occlusion_reference.values())
    return _finest_occlusion_knobs(prepared)[1]


def _occlusion_note(knobs: Mapping[str, Any], prepared: PreparedRun, options: FidelityOptions) -> str:
    ref = _occlusion_knobs(knobs, prepared, options)
    text = f"occlusion with window {ref['sliding_window_shapes']} stride {ref['strides']}"
    if _occlusion_approximate(prepared, options):
        return text + ": an approximation of the finest (one-element window, stride 1), chosen to bound its cost"
    return text + ": the finest setting (one element per window)"


PATH_REFERENCE = ReferenceRecipe(
    _path_knobs,
    lambda knobs, prepared, options: (
        f"{options.reference_rule} with {options.reference_steps} steps: the path integral, converged"
    ),
)

REFERENCES: dict[str, ReferenceRecipe] = {
    "IntegratedGradients": PATH_REFERENCE,
    "LayerIntegratedGradients": PATH_REFERENCE,
    "LayerConductance": PATH_REFERENCE,
    "NeuronIntegratedGradients": PATH_REFERENCE,
    "NeuronConductance": PATH_REFERENCE,
    "Occlusion": ReferenceRecipe(_occlusion_knobs, _occlusion_note, _occlusion_approximate),
    "GradientShap": _more_samples("n_samples"),
    "NoiseTunnel-Saliency": _more_samples("nt_samples"),
    "NoiseTunnel-IntegratedGradients": _more_samples("nt_samples"),
    "ShapleyValueSampling": _more_samples("n_samples"),
    "KernelShap": _more_samples("n_samples"),
    "Lime": _more_samples("n_samples"),
}


@dataclass(frozen=True)
class Reference:
    attributions: torch.Tensor  # fp32, CPU
    key: str
    path: Path
    knobs: dict[str, Any]
    cached: bool  # read from disk rather than computed now
    compute_s: float  # time spent computing it now (0 when cached)
    note: str
    approximate: bool  # a stand-in (sampled, or coarser than the finest setting), not a converged value


def tensor_digest(tensor: torch.Tensor | None) -> str | None:
    """Hash of a tensor's dtype, shape and bytes: changes whenever any value changes."""
    if tensor is None:
        return None
    t = tensor.detach().cpu().contiguous()
    digest = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def model_digest(model: nn.Module) -> str:
    """Hash of every parameter and buffer: labels like 'random' name weights, this pins them."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update((tensor_digest(tensor) or "").encode())
    return digest.hexdigest()


def reference_payload(prepared: PreparedRun, knobs: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """Everything the reference's value depends on; its stable hash is the cache key."""
    spec, workload, kwargs = prepared.spec, prepared.workload, prepared.kwargs
    return {
        "version": REFERENCE_VERSION,
        "captum": captum.__version__,
        "workload": workload.name,
        "weights": workload.weights,
        "model": model_digest(prepared.workload_model),
        "method": spec.name,
        "layer": workload.layer_name if spec.kind != "feature" else None,
        "neuron": list(workload.neuron) if spec.kind == "neuron" else None,
        "inputs": tensor_digest(prepared.inputs),
        "targets": tensor_digest(kwargs.get("target")),
        "baselines": tensor_digest(kwargs.get("baselines")),
        "feature_mask": tensor_digest(kwargs.get("feature_mask")),
        "knobs": {k: v for k, v in sorted(knobs.items()) if k not in BATCHING_KNOBS},
        "seed": seed if spec.stochastic else None,
    }


def _batched_for_speed(knobs: Mapping[str, Any], batch_size: int, rows: int) -> dict[str, Any]:
    """Set the batching knobs the method has so each chunk is about `rows` rows."""
    rows = max(rows, 2 * batch_size)  # conductance needs two path points per chunk
    rows_per_noisy_copy = batch_size * knobs.get("n_steps", 1)  # NoiseTunnel-IG: a path per copy
    speed = {
        "internal_batch_size": rows,
        "perturbations_per_eval": max(1, rows // batch_size),
        "nt_samples_batch_size": max(1, rows // rows_per_noisy_copy),
    }
    return {**knobs, **{k: v for k, v in speed.items() if k in knobs}}


def reference_attributions(prepared: PreparedRun, options: FidelityOptions | None = None) -> Reference | None:
    """The cell's high-accuracy reference, from the disk cache or computed (and cached) now.

    None when the method has no reference recipe. The reference runs through `prepare` in
    fp32 on the cell's device, on exactly the cell's inputs, targets and baselines.
    """
    options = options or FidelityOptions()
    recipe = REFERENCES.get(prepared.spec.name)
    if recipe is None:
        return None
    seed = prepared.config.seed if options.reference_seed is None else options.reference_seed
    knobs = _batched_for_speed(
        recipe.knobs(prepared.knobs, prepared, options), len(prepared.inputs), options.rows_per_attribution_call
    )
    payload = reference_payload(prepared, knobs, seed)
    key = stable_hash(payload)
    path = cache_dir() / "references" / f"{prepared.spec.name}-{prepared.workload.name}-{key}.pt"
    note = recipe.note(prepared.knobs, prepared, options)
    approximate = recipe.approximate(prepared, options)
    public_knobs = json.loads(json.dumps(payload["knobs"], default=str))
    if options.use_cache and path.is_file():
        stored = torch.load(path, map_location="cpu", weights_only=True)
        return Reference(stored["attributions"], key, path, public_knobs, True, 0.0, note, approximate)

    config = prepared.config
    ref_run = prepare(
        RunConfig(prepared.spec.name, prepared.workload.name, config.device, config.batch_size, knobs, seed=seed)
    )
    ref_run.inputs = prepared.inputs.contiguous()
    for name in ("target", "baselines", "feature_mask", "neuron_selector"):
        if name in prepared.kwargs:
            ref_run.kwargs[name] = prepared.kwargs[name]
    device = prepared.inputs.device
    _sync(device)
    start = time.perf_counter()
    attributions = ref_run().attributions
    _sync(device)
    compute_s = time.perf_counter() - start
    if options.use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save({"attributions": attributions, "payload": json.dumps(payload, default=str)}, tmp)
        tmp.replace(path)
    return Reference(attributions, key, path, public_knobs, False, compute_s, note, approximate)


# --- evaluate_fidelity: the records a benchmark cell stores -----------------------------


def _floats(values: torch.Tensor | Iterable[float]) -> list[float | None]:
    """JSON-able list: NaN and Inf become None."""
    items = values.tolist() if isinstance(values, torch.Tensor) else list(values)
    return [float(v) if math.isfinite(v) else None for v in items]


def _mean(values: torch.Tensor) -> float | None:
    finite = values[torch.isfinite(values)]
    return float(finite.mean()) if len(finite) else None


def _record(value: float | None, per_example: list[float | None], undefined: str = "", **extra: Any) -> dict[str, Any]:
    """An "ok" record; when no example has a defined value, `undefined` says why value is None."""
    reason = (undefined or "undefined for every example") if value is None else None
    return {"status": "ok", "value": value, "per_example": per_example, "reason": reason, **extra}


def not_applicable(reason: str) -> dict[str, Any]:
    return {"status": "not_applicable", "value": None, "per_example": None, "reason": reason}


@dataclass
class _Cell:
    prepared: PreparedRun
    result: AttributionResult
    options: FidelityOptions
    attributions: torch.Tensor  # on the inputs' device

    @property
    def target(self) -> Any:
        return self.prepared.kwargs.get("target")

    def input_space(self) -> tuple[torch.Tensor | None, str | None]:
        """Attributions usable as input-space scores for the target, or why not."""
        spec = self.prepared.spec
        if spec.kind == "neuron":
            return None, f"{spec.name} explains neuron {self.prepared.workload.neuron}, not the target's score"
        if self.target is None:
            return None, f"{spec.name} explains no target class"
        attr = _broadcast_to_inputs(self.attributions, self.prepared.inputs)
        if attr is None:
            return None, (
                f"{spec.name} attributions of shape {tuple(self.attributions.shape)} live in layer space, "
                f"not the inputs' {tuple(self.prepared.inputs.shape)}"
            )
        return attr, None


def _completeness(cell: _Cell) -> dict[str, Any]:
    spec, prepared = cell.prepared.spec, cell.prepared
    if not spec.has_completeness:
        return not_applicable(f"{spec.name} has no completeness property (its attributions need not sum to dF)")
    if spec.postprocess is not None:
        return not_applicable(f"{spec.name} attributions are post-processed; their sum is not the output difference")
    background = spec.baselines == "background"
    result = completeness_error(
        prepared.model,
        prepared.inputs,
        cell.attributions,
        cell.target,
        prepared.kwargs["baselines"],
        baseline_distribution=background,
    )
    notes = []
    if spec.kind == "layer":
        notes.append(
            f"layer attributions at {prepared.workload.layer_name!r} summed and compared with the model's output "
            "difference, as Captum's convergence delta does"
        )
    if background:
        notes.append("baselines are a distribution; F(baseline) is their mean")
    if spec.stochastic:
        notes.append("holds in expectation over the random samples, so the error also measures sampling noise")
    extra: dict[str, Any] = {
        "absolute_per_example": _floats(result.absolute),
        "output_difference_per_example": _floats(result.output_difference),
        "note": "; ".join(notes) or None,
    }
    if cell.result.delta is not None:
        extra["captum_delta_abs"] = _floats(cell.result.delta.double().abs().reshape(-1))
    undefined = "F(x) - F(baseline) is ~0 for every example, so the relative error is undefined"
    return _record(_mean(result.relative), _floats(result.relative), undefined, **extra)


def _reference_error(cell: _Cell) -> dict[str, Any]:
    spec = cell.prepared.spec
    if spec.name not in REFERENCES:
        return not_applicable(f"no reference is defined for {spec.name}; references exist for: {', '.join(REFERENCES)}")
    reference = reference_attributions(cell.prepared, cell.options)
    assert reference is not None
    agreement = reference_error(
        cell.result.attributions, reference.attributions, top_k_fraction=cell.options.top_k_fraction
    )
    return _record(
        _mean(agreement.rel_l2),
        _floats(agreement.rel_l2),
        "the reference is zero for every example (e.g. a neuron that never fires), so relative error is undefined",
        spearman=_mean(agreement.spearman),
        spearman_per_example=_floats(agreement.spearman),
        top_k_overlap=_mean(agreement.top_k_overlap),
        top_k_overlap_per_example=_floats(agreement.top_k_overlap),
        top_k_fraction=cell.options.top_k_fraction,
        reference={
            "key": reference.key,
            "path": str(reference.path),
            "knobs": reference.knobs,
            "cached": reference.cached,
            "compute_s": reference.compute_s,
            "approximate": reference.approximate,
            "note": reference.note,
        },
    )


def _curve(mode: str) -> Callable[[_Cell], dict[str, Any]]:
    def metric(cell: _Cell) -> dict[str, Any]:
        attr, reason = cell.input_space()
        if attr is None:
            return not_applicable(reason or "")
        prepared = cell.prepared
        curve = perturbation_curve(
            prepared.model,
            prepared.inputs,
            attr,
            cell.target,
            prepared.workload.baseline,
            prepared.workload.feature_mask,
            mode=mode,
            n_steps=cell.options.curve_steps,
            rows_per_forward=cell.options.rows_per_forward,
        )
        return _record(
            _mean(curve.auc),
            _floats(curve.auc),
            lower_is_better=mode == "deletion",
            fractions=_floats(curve.fractions),
            mean_curve=_floats(curve.scores.mean(dim=0)),
            n_groups=curve.n_groups,
            score="softmax probability of the target",
            note=(
                "feature-mask groups ranked by summed signed attribution, highest first; "
                f"{'removed to' if mode == 'deletion' else 'inserted into'} the workload's baseline"
            ),
        )

    return metric


def _stability(cell: _Cell) -> dict[str, Any]:
    prepared = cell.prepared
    if not prepared.spec.stochastic:
        return not_applicable(f"{prepared.spec.name} is deterministic: its attributions do not depend on the seed")
    seeds = [prepared.config.seed + i for i in range(cell.options.stability_seeds)]
    runs = [cell.result.attributions]
    for seed in seeds[1:]:
        other = dataclasses.replace(prepared, config=dataclasses.replace(prepared.config, seed=seed))
        runs.append(other().attributions)
    spread = seed_spread(runs)
    return _record(
        _mean(spread.rel_l2),
        _floats(spread.rel_l2),
        spearman=_mean(spread.spearman),
        spearman_per_example=_floats(spread.spearman),
        seeds=seeds,
        note="mean pairwise relative L2 distance between seeds; the first seed's run is the cell's own",
    )


def _infidelity(cell: _Cell) -> dict[str, Any]:
    attr, reason = cell.input_space()
    if attr is None:
        return not_applicable(reason or "")
    options, prepared = cell.options, cell.prepared
    scores = infidelity_score(
        prepared.model,
        prepared.inputs,
        attr,
        cell.target,
        n_samples=options.infidelity_samples,
        noise_std=options.infidelity_noise_std,
        normalize=options.infidelity_normalize,
        seed=prepared.config.seed,
        rows_per_forward=options.rows_per_forward,
    )
    return _record(
        _mean(scores),
        _floats(scores),
        lower_is_better=True,
        n_samples=options.infidelity_samples,
        noise_std=options.infidelity_noise_std,
        normalize=options.infidelity_normalize,
    )


def _sensitivity(cell: _Cell) -> dict[str, Any]:
    prepared, options = cell.prepared, cell.options
    spec = prepared.spec

    def explain(inputs: torch.Tensor | tuple[torch.Tensor], **kwargs: Any) -> Any:
        # Captum passes the unperturbed inputs as a 1-tuple and expects a tuple back
        x = inputs[0] if isinstance(inputs, tuple) else inputs
        out = prepared.attributor.attribute(x, **kwargs)
        out = spec.postprocess(out, x, prepared.knobs) if spec.postprocess else out
        return (out,) if isinstance(inputs, tuple) else out

    kwargs = {k: v for k, v in prepared.kwargs.items() if k != "return_convergence_delta"}
    scores = sensitivity_score(
        explain,
        prepared.inputs,
        kwargs,
        n_samples=options.sensitivity_samples,
        radius=options.sensitivity_radius,
        seed=prepared.config.seed,
        rows_per_call=options.rows_per_attribution_call,
    )
    return _record(
        _mean(scores),
        _floats(scores),
        lower_is_better=True,
        n_samples=options.sensitivity_samples,
        radius=options.sensitivity_radius,
        note="max over samples of ||attr(x + e) - attr(x)|| / ||attr(x)||, e uniform in an L-infinity ball"
        + ("; includes the method's own sampling noise" if spec.stochastic else ""),
    )


METRIC_FUNCTIONS: dict[str, Callable[[_Cell], dict[str, Any]]] = {
    "completeness": _completeness,
    "reference_error": _reference_error,
    "deletion": _curve("deletion"),
    "insertion": _curve("insertion"),
    "stability": _stability,
    "infidelity": _infidelity,
    "sensitivity": _sensitivity,
}


def check_metric_names(metrics: str | Iterable[str]) -> tuple[str, ...]:
    names = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    for name in names:
        if name not in METRIC_FUNCTIONS:
            raise ValueError(
                f"unknown fidelity metric {name!r}; valid: {', '.join(METRICS)} (default: {', '.join(DEFAULT_METRICS)})"
            )
    return names


def evaluate_fidelity(
    prepared: PreparedRun, result: AttributionResult, metrics: str | Iterable[str] = DEFAULT_METRICS, **options: Any
) -> dict[str, dict[str, Any]]:
    """Each requested metric's JSON-able record for one cell, with its own compute time.

    Call once per cell, outside the timed rounds. Every record has status ("ok" or
    "not_applicable"), value (the mean over examples, or None), per_example, reason and
    time_s, plus metric-specific fields. Options are FidelityOptions' fields.
    """
    names = check_metric_names(metrics)
    settings = FidelityOptions.from_mapping(options)
    check_attributions(result.attributions, prepared.inputs, prepared.spec.kind)
    device = prepared.inputs.device
    cell = _Cell(prepared, result, settings, result.attributions.to(device))
    records: dict[str, dict[str, Any]] = {}
    for name in names:
        _sync(device)
        start = time.perf_counter()
        record = METRIC_FUNCTIONS[name](cell)
        _sync(device)
        record["time_s"] = time.perf_counter() - start
        records[name] = record
    return records
