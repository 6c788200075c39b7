"""The metric registry and `evaluate_fidelity`, which a benchmark cell calls once, outside its timed
rounds, and which returns JSON-able records (floats, None, strings) with each metric's own compute
time, so a report can show what checking fidelity costs next to what the attribution costs.

A metric that does not apply to a method says so (status "not_applicable" and a reason); it never
reports a silent zero. Records also say what was scored: the target (label or predicted class), the
output link, and the baseline a curve removed to or started from.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from attrib_core.fidelity.localisation import LOCALISATION_METRICS
from attrib_core.fidelity.references import recipe_for, reference_attributions
from attrib_core.fidelity.sanity import SANITY_METRICS
from attrib_core.fidelity.scores import (
    OUTPUT_LINKS,
    FidelityOptions,
    OutputLinkError,
    blurred,
    broadcast_to_inputs,
    check_attributions,
    completeness_error,
    infidelity_score,
    perturbation_curve,
    predicted_targets,
    reference_error,
    seed_spread,
    sensitivity_score,
)
from attrib_core.measure import synchronize
from attrib_core.registry import Registry
from attrib_core.run import AttributionResult, PreparedRun
from attrib_core.workloads.packed import packed_view

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
    extra.setdefault("lower_is_better", True)  # errors and spreads; curves and scores say otherwise
    return {"status": "ok", "value": value, "per_example": per_example, "reason": reason, **extra}


def not_applicable(reason: str) -> dict[str, Any]:
    return {"status": "not_applicable", "value": None, "per_example": None, "reason": reason}


def _standard_error_of_mean(per_example_se: torch.Tensor) -> float | None:
    """Standard error of the mean over examples, from each example's own (independent noise)."""
    finite = per_example_se[torch.isfinite(per_example_se)]
    return float(finite.pow(2).sum().sqrt() / len(finite)) if len(finite) else None


# --- what the fidelity pass explains: the labels or the model's own prediction ----------


Targeted = tuple[PreparedRun, AttributionResult, dict[str, Any]]  # the cell to score, and what its record says


def _label_targets(prepared: PreparedRun, result: AttributionResult, options: FidelityOptions) -> Targeted:
    return prepared, result, {"target": "label"}


def _predicted_targets(prepared: PreparedRun, result: AttributionResult, options: FidelityOptions) -> Targeted:
    """Explain the model's top class; the attribution is recomputed only where it differs from the label."""
    if not OUTPUT_LINKS[prepared.workload.output_kind].has_classes:
        note = (
            f"output kind {prepared.workload.output_kind!r} has no predicted class to pick; "
            "the workload's targets are used"
        )
        return prepared, result, {"target": "label", "target_note": note}
    labels = prepared.kwargs["target"]
    predicted = predicted_targets(prepared.model, prepared.inputs, options.rows_per_forward).to(labels.device)
    changed = int((predicted != labels).sum())
    note = "every prediction equals its label, so the cell's own attributions are used"
    synchronize(labels.device)
    start = time.perf_counter()
    if changed:
        prepared = dataclasses.replace(prepared, kwargs={**prepared.kwargs, "target": predicted})
        result = prepared()
        note = (
            f"{changed} of {len(labels)} examples are predicted differently from their label; the attributions "
            "were recomputed for the predicted class (the timed call explains the label)"
        )
    synchronize(labels.device)
    recompute_s = time.perf_counter() - start
    return (
        prepared,
        result,
        {"target": "predicted", "targets_changed": changed, "target_note": note, "target_recompute_s": recompute_s},
    )


TARGET_CHOICES: dict[str, Callable[[PreparedRun, AttributionResult, FidelityOptions], Targeted]] = {
    "label": _label_targets,
    "predicted": _predicted_targets,
}


# --- where deletion removes to and insertion starts from ---------------------------------


def _workload_baseline(prepared: PreparedRun, options: FidelityOptions) -> tuple[torch.Tensor, dict[str, Any]]:
    baseline = prepared.workload.baseline
    flat = baseline.reshape(-1)
    constant = float(flat[0]) if len(flat) and bool((flat == flat[0]).all()) else None
    description = "the workload's baseline" + (f" (every element {constant:g})" if constant is not None else "")
    return baseline, {"source": "baseline", "description": description, "constant": constant}


def _blurred_inputs(prepared: PreparedRun, options: FidelityOptions) -> tuple[torch.Tensor, dict[str, Any]]:
    start, kernel_size = blurred(prepared.inputs, options.blur_kernel_size, options.blur_sigma)
    description = f"the input Gaussian-blurred (kernel {kernel_size}, sigma {options.blur_sigma:g} pixels)"
    record = {"source": "blur", "description": description, "kernel_size": kernel_size, "sigma": options.blur_sigma}
    return start, record


CURVE_STARTS: dict[str, Callable[[PreparedRun, FidelityOptions], tuple[torch.Tensor, dict[str, Any]]]] = {
    "baseline": _workload_baseline,
    "blur": _blurred_inputs,
}


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
        attr = broadcast_to_inputs(self.attributions, self.prepared.inputs)
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
    packed = packed_view(prepared.model)
    if background and packed is not None and packed.follows_examples:
        return not_applicable(
            "F(background) would need each example's additional_forward_args on every background row; "
            "completeness against a background set is not defined here"
        )
    baselines = prepared.kwargs["baselines"]
    result = completeness_error(
        prepared.model,
        prepared.inputs,
        cell.attributions,
        cell.target,
        prepared.layout.pack(baselines) if prepared.layout is not None else baselines,
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
    if recipe_for(spec) is None:
        return not_applicable(f"{spec.name} declares no high-accuracy reference (MethodSpec.reference)")
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
        prepared, options = cell.prepared, cell.options
        start = options.insertion_start if mode == "insertion" else "baseline"
        try:
            baselines, baseline_record = CURVE_STARTS[start](prepared, options)
        except ValueError as error:
            return not_applicable(f"{mode} from {start!r}: {error}")
        link = prepared.workload.output_kind
        try:
            curve = perturbation_curve(
                prepared.model,
                prepared.inputs,
                attr,
                cell.target,
                baselines,
                prepared.workload.feature_mask,
                mode=mode,
                n_steps=options.curve_steps,
                rows_per_forward=options.rows_per_forward,
                link=link,
            )
        except OutputLinkError as error:
            return not_applicable(f"workload {prepared.workload.name!r}: {error}")
        if prepared.spec.baselines == "background":
            baseline_record["method_baselines"] = (
                f"{prepared.spec.name} attributes against a background set of {len(prepared.kwargs['baselines'])} "
                "examples, not this baseline: the curve does not test the method's own reference"
            )
        return _record(
            _mean(curve.auc),
            _floats(curve.auc),
            lower_is_better=mode == "deletion",
            fractions=_floats(curve.fractions),
            mean_curve=_floats(curve.scores.mean(dim=0)),
            n_groups=curve.n_groups,
            output_kind=link,
            score=OUTPUT_LINKS[link].score,
            baseline=baseline_record,
            note=(
                "feature-mask groups ranked by summed signed attribution, highest first; "
                f"{'removed to' if mode == 'deletion' else 'inserted into'} {baseline_record['description']}"
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


def _noise_not_applicable(cell: _Cell) -> dict[str, Any] | None:
    """Gaussian or uniform noise on token ids is no input at all."""
    if cell.prepared.inputs.is_floating_point():
        return None
    name = cell.prepared.workload.name
    return not_applicable(f"inputs of {name!r} are token ids: adding noise to them has no meaning")


def _infidelity(cell: _Cell) -> dict[str, Any]:
    if skipped := _noise_not_applicable(cell):
        return skipped
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
        seed=prepared.config.seed,
        rows_per_forward=options.rows_per_forward,
    )
    normalized = {
        "value": _mean(scores.normalized),
        "per_example": _floats(scores.normalized),
        "standard_error": _standard_error_of_mean(scores.normalized_se),
        "per_example_standard_error": _floats(scores.normalized_se),
        "note": "the map rescaled by its optimal scale restricted to >= 0 (Captum's normalize=True lets it go "
        "negative, which scores a negated map as the map itself); a map pointing the wrong way scores as zero",
    }
    unnormalized = {
        "value": _mean(scores.unnormalized),
        "per_example": _floats(scores.unnormalized),
        "standard_error": _standard_error_of_mean(scores.unnormalized_se),
        "per_example_standard_error": _floats(scores.unnormalized_se),
        "note": "Captum's normalize=False: the map as it is; depends on its scale",
    }
    headline = normalized if options.infidelity_normalize else unnormalized
    return _record(
        headline["value"],
        headline["per_example"],
        lower_is_better=True,
        value_is="normalized" if options.infidelity_normalize else "unnormalized",
        standard_error=headline["standard_error"],
        normalized=normalized,
        unnormalized=unnormalized,
        scale_per_example=_floats(scores.scale),
        n_samples=options.infidelity_samples,
        noise_std=options.infidelity_noise_std,
        noise="Gaussian, each example's draws seeded by (cell seed, the example's values, draw index): "
        "batch size and rows per forward do not change them",
        note="standard errors are over the noise draws, the fitted scale taken as fixed",
    )


def _sensitivity(cell: _Cell) -> dict[str, Any]:
    if skipped := _noise_not_applicable(cell):
        return skipped
    prepared, options = cell.prepared, cell.options
    spec = prepared.spec

    def explain(inputs: torch.Tensor | tuple[torch.Tensor], **kwargs: Any) -> Any:
        # Captum passes the unperturbed inputs as a 1-tuple and expects a tuple back
        x = inputs[0] if isinstance(inputs, tuple) else inputs
        out = prepared.attribute(x, **kwargs)
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
        note="max over samples of ||attr(x + e) - attr(x)|| / ||attr(x)||, e uniform in an L-infinity ball, "
        "each example's draws seeded by (cell seed, the example's values, draw index)"
        + ("; includes the method's own sampling noise, which does depend on batching" if spec.stochastic else ""),
    )


def _localisation(name: str) -> Callable[[_Cell], dict[str, Any]]:
    """Agreement of the input-space map with the workload's ground-truth masks (see localisation.py)."""

    def metric(cell: _Cell) -> dict[str, Any]:
        workload = cell.prepared.workload
        masks = workload.batch_masks(cell.prepared.config.batch_size)
        if masks is None:
            return not_applicable(f"workload {workload.name!r} has no ground-truth masks; {name} needs them")
        attr, reason = cell.input_space()
        if attr is None:
            return not_applicable(reason or "")
        scores = LOCALISATION_METRICS[name](attr, masks)
        undefined = "every example's mask is empty or its map has no positive value"
        return _record(_mean(scores), _floats(scores), undefined, lower_is_better=False)  # 1 is a perfect map

    return metric


@dataclass(frozen=True)
class Metric:
    """A fidelity metric: how its record for a cell is computed, and whether a preset that names
    no metrics gets it (the cheap ones)."""

    name: str
    evaluate: Callable[[_Cell], dict[str, Any]]
    default: bool = False


METRIC_REGISTRY: Registry[Metric] = Registry("fidelity metric")
for _metric in (  # one entry adds a metric
    Metric("completeness", _completeness, default=True),
    Metric("reference_error", _reference_error, default=True),
    Metric("deletion", _curve("deletion"), default=True),
    Metric("insertion", _curve("insertion"), default=True),
    Metric("stability", _stability),  # extra attribution calls
    Metric("infidelity", _infidelity),  # many forwards
    Metric("sensitivity", _sensitivity),  # many attribution calls
    *(Metric(name, _localisation(name)) for name in LOCALISATION_METRICS),  # workloads with masks
    *(Metric(name, check) for name, check in SANITY_METRICS.items()),  # an attribution call per layer group
):
    METRIC_REGISTRY.register(_metric.name, _metric)
DEFAULT_METRICS = tuple(m.name for m in METRIC_REGISTRY if m.default)
METRICS = tuple(METRIC_REGISTRY.names())


def check_metric_names(metrics: str | Iterable[str]) -> tuple[str, ...]:
    names = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    for name in names:
        if name not in METRIC_REGISTRY:
            raise ValueError(
                f"unknown fidelity metric {name!r}; valid: {', '.join(METRICS)} (default: {', '.join(DEFAULT_METRICS)})"
            )
    return names


def evaluate_fidelity(
    prepared: PreparedRun,
    result: AttributionResult,
    metrics: str | Iterable[str] | None = None,
    on_metric: Callable[[str], None] | None = None,
    **options: Any,
) -> dict[str, dict[str, Any]]:
    """Each requested metric's JSON-able record for one cell, with its own compute time.

    Call once per cell, outside the timed rounds. Every record has status ("ok" or
    "not_applicable"), value (the mean over examples, or None), per_example, reason,
    time_s and target ("label", "predicted", or None for methods that explain no class),
    plus metric-specific fields. Options are FidelityOptions' fields; with
    target="predicted" the attributions are recomputed for the predicted class where it
    differs from the label (that time is `target_recompute_s`, not in any metric's time_s).
    """
    names = check_metric_names(DEFAULT_METRICS if metrics is None else metrics)
    settings = FidelityOptions.from_mapping(options)
    check_attributions(result.attributions, prepared.inputs, prepared.spec.kind)
    device = prepared.inputs.device
    target: dict[str, Any] = {"target": None}  # methods that explain no class (layer activations, neurons)
    if "target" in prepared.kwargs:
        prepared, result, target = TARGET_CHOICES[settings.target](prepared, result, settings)
    cell = _Cell(prepared, result, settings, result.attributions.to(device))
    records: dict[str, dict[str, Any]] = {}
    for name in names:
        if on_metric is not None:  # a progress display: the metric now running
            on_metric(name)
        synchronize(device)
        start = time.perf_counter()
        record = METRIC_REGISTRY.get(name).evaluate(cell)
        synchronize(device)
        record["time_s"] = time.perf_counter() - start
        record.update(target)
        records[name] = record
    return records
