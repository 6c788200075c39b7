"""Fidelity: how faithful an attribution is, recorded beside what it cost.

Three modules: pure metric functions that return tensors (`fidelity_metrics`), cached
high-accuracy references (`fidelity_references`), and here `evaluate_fidelity`, which a
benchmark cell calls once, outside its timed rounds, and which returns JSON-able
records (floats, None, strings) with each metric's own compute time, so a report can show
what checking fidelity costs next to what the attribution costs.

A metric that does not apply to a method says so (status "not_applicable" and a reason);
it never reports a silent zero.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from attrib_core.fidelity_metrics import (
    FidelityOptions,
    broadcast_to_inputs,
    check_attributions,
    completeness_error,
    infidelity_score,
    perturbation_curve,
    reference_error,
    seed_spread,
    sensitivity_score,
)
from attrib_core.fidelity_references import REFERENCES, reference_attributions
from attrib_core.localisation import LOCALISATION_METRICS
from attrib_core.measure import synchronize
from attrib_core.run import AttributionResult, PreparedRun

DEFAULT_METRICS = ("completeness", "reference_error", "deletion", "insertion")
OPT_IN_METRICS = ("stability", "infidelity", "sensitivity")  # extra attribution calls or many forwards
METRICS = DEFAULT_METRICS + OPT_IN_METRICS + tuple(LOCALISATION_METRICS)  # localisation: workloads with masks

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
        return _record(_mean(scores), _floats(scores), "every example's mask is empty or its map has no positive value")

    return metric


METRIC_FUNCTIONS: dict[str, Callable[[_Cell], dict[str, Any]]] = {
    "completeness": _completeness,
    "reference_error": _reference_error,
    "deletion": _curve("deletion"),
    "insertion": _curve("insertion"),
    "stability": _stability,
    "infidelity": _infidelity,
    "sensitivity": _sensitivity,
    **{name: _localisation(name) for name in LOCALISATION_METRICS},
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
        synchronize(device)
        start = time.perf_counter()
        record = METRIC_FUNCTIONS[name](cell)
        synchronize(device)
        record["time_s"] = time.perf_counter() - start
        records[name] = record
    return records
