"""The sanity checks as fidelity records: does the map depend on the model and on the class it
explains (model parameter randomisation, random logit; Adebayo et al. 2018, Sixt et al. 2020),
and does the model's score follow it when removed pixels are imputed rather than blanked (ROAD)?

Each function takes the fidelity pass's cell and returns a record in `evaluate`'s format; the
registry there lists them. Similarities are those of `similarity` (heat maps: |map|, channels
summed); the headline is the Spearman rank correlation, lower is better: a map that survives
the destruction of the model, or that is the same for another class, does not explain the model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from attrib_core.fidelity.randomisation import layer_groups, not_randomised, random_other_classes, randomised_runs
from attrib_core.fidelity.road import road_curve, road_fractions
from attrib_core.fidelity.scores import OUTPUT_LINKS, OutputLinkError, _forward
from attrib_core.fidelity.similarity import Similarity, map_similarity, mean_of

if TYPE_CHECKING:
    from attrib_core.fidelity.evaluate import _Cell


def _values(values: torch.Tensor) -> list[float | None]:
    return [float(v) if torch.isfinite(v) else None for v in values.double()]


def _ok(value: float | None, per_example: torch.Tensor, *, lower_is_better: bool, **extra: Any) -> dict[str, Any]:
    reason = "undefined for every example (constant maps)" if value is None else None
    return {
        "status": "ok",
        "value": value,
        "per_example": _values(per_example),
        "reason": reason,
        "lower_is_better": lower_is_better,
        **extra,
    }


def _skipped(reason: str) -> dict[str, Any]:
    return {"status": "not_applicable", "value": None, "per_example": None, "reason": reason}


def _outside_selection(cell: _Cell) -> str | None:
    chosen, name = cell.options.sanity_workloads, cell.prepared.workload.name
    if chosen and name not in chosen:
        return f"the preset runs the sanity checks on {', '.join(chosen)} only (fidelity option sanity_workloads)"
    return None


def _similarity_fields(steps: list[Similarity]) -> dict[str, list[float | None]]:
    return {measure: [mean_of(getattr(s, measure)) for s in steps] for measure in Similarity.measures()}


def _randomisation(order: str) -> Callable[[_Cell], dict[str, Any]]:
    def metric(cell: _Cell) -> dict[str, Any]:
        if skipped := _outside_selection(cell):
            return _skipped(skipped)
        prepared, options = cell.prepared, cell.options
        if prepared.spec.kind == "neuron" or cell.target is None:
            return _skipped(
                f"{prepared.spec.name} explains a unit inside the model, not its output: the layers above that unit "
                "cannot change its map, so randomising them from the output side tests nothing"
            )
        groups = layer_groups(prepared.workload_model, options.randomisation_steps)
        trained = cell.result.attributions
        steps = [
            map_similarity(trained, result.attributions, options.top_k_fraction)
            for _, result in randomised_runs(prepared, groups, order, prepared.config.seed)
        ]
        curves = _similarity_fields(steps)
        per_example = {  # the area under each similarity's curve over the steps, per example
            measure: torch.stack([getattr(s, measure) for s in steps]).nanmean(dim=0)
            for measure in Similarity.measures()
        }
        extra: dict[str, Any] = {}
        if order == "cascading":  # from the trained model (similarity 1) to the fully randomised one
            labels = ["trained", *(g.label for g in groups)]
            mean_curve = {measure: [1.0, *values] for measure, values in curves.items()}
            extra["at_full_randomisation"] = {measure: values[-1] for measure, values in curves.items()}
            summary = "the trained model's map against the map with the groups randomised so far, mean over steps"
        else:
            labels = [g.label for g in groups]
            mean_curve = curves
            summary = "the trained model's map against the map with one group randomised, mean over groups"
        stochastic = "; the method's own random draws reuse the cell's seed, so only the model differs"
        return _ok(
            mean_of(per_example["spearman_abs"]),
            per_example["spearman_abs"],
            lower_is_better=True,
            order=order,
            steps=labels,
            mean_curve=mean_curve,
            ssim=mean_of(per_example["ssim"]),
            top_k_overlap=mean_of(per_example["top_k_overlap"]),
            **extra,
            top_k_fraction=options.top_k_fraction,
            attribution_calls=len(groups),
            groups={g.label: list(g.module_names) for g in groups},
            not_randomised=not_randomised(prepared.workload_model, groups),
            seed=prepared.config.seed,
            note=f"Spearman of |map|: {summary}; each module re-initialised by its reset_parameters after "
            "torch.manual_seed(seed)" + (stochastic if prepared.spec.stochastic else ""),
        )

    return metric


def _random_logit(cell: _Cell) -> dict[str, Any]:
    if skipped := _outside_selection(cell):
        return _skipped(skipped)
    prepared = cell.prepared
    if prepared.spec.kind == "neuron" or cell.target is None:
        return _skipped(f"{prepared.spec.name} explains no target class, so there is no other class to explain")
    if not OUTPUT_LINKS[prepared.workload.output_kind].has_classes:
        return _skipped(f"output kind {prepared.workload.output_kind!r} has no competing classes to pick another from")
    n_classes = _forward(prepared.model, prepared.inputs[:1]).shape[1]
    targets = torch.as_tensor(cell.target, device=prepared.inputs.device).long().reshape(-1)
    targets = targets.expand(len(prepared.inputs)) if targets.numel() == 1 else targets
    others = random_other_classes(targets, n_classes, prepared.config.seed)
    other = dataclasses.replace(prepared, kwargs={**prepared.kwargs, "target": others})()
    similarity = map_similarity(cell.result.attributions, other.attributions, cell.options.top_k_fraction)
    return _ok(
        mean_of(similarity.spearman_abs),
        similarity.spearman_abs,
        lower_is_better=True,
        ssim=mean_of(similarity.ssim),
        ssim_per_example=_values(similarity.ssim),
        top_k_overlap=mean_of(similarity.top_k_overlap),
        top_k_overlap_per_example=_values(similarity.top_k_overlap),
        other_classes=others.tolist(),
        attribution_calls=1,
        note="Spearman of |map| between the map of the explained class and that of a random other class "
        "(uniform over the rest, seeded by the cell's seed)",
    )


def _road(order: str) -> Callable[[_Cell], dict[str, Any]]:
    def metric(cell: _Cell) -> dict[str, Any]:
        if skipped := _outside_selection(cell):
            return _skipped(skipped)
        prepared, options = cell.prepared, cell.options
        if prepared.inputs.dim() != 4 or not prepared.inputs.is_floating_point():
            return _skipped(
                "ROAD imputes a removed pixel from its neighbours on an image grid; inputs of "
                f"{prepared.workload.name!r} have shape {tuple(prepared.inputs.shape)}, not (N, C, H, W) images "
                "(deletion is the fallback)"
            )
        attr, reason = cell.input_space()
        if attr is None:
            return _skipped(reason or "")
        try:
            curve = road_curve(
                prepared.model,
                prepared.inputs,
                attr,
                cell.target,
                order=order,
                fractions=road_fractions(options.road_steps),
                noise_std=options.road_noise_std,
                seed=prepared.config.seed,
                link=prepared.workload.output_kind,
                rows_per_forward=options.rows_per_forward,
            )
        except OutputLinkError as error:
            return _skipped(f"workload {prepared.workload.name!r}: {error}")
        return _ok(
            mean_of(curve.auc),
            curve.auc,
            lower_is_better=order == "morf",
            order=order,
            fractions=_values(curve.fractions),
            mean_curve=_values(curve.scores.mean(dim=0)),
            accuracy_curve=_values(curve.correct.mean(dim=0)),
            accuracy_auc=mean_of(curve.accuracy_auc),
            score=OUTPUT_LINKS[prepared.workload.output_kind].score,
            noise_std=options.road_noise_std,
            note=f"pixels ranked by the map summed over channels, {'highest' if order == 'morf' else 'lowest'} first, "
            "replaced by noisy linear imputation; area under the score over the removed fractions, divided by "
            "their span",
        )

    return metric


SANITY_METRICS: dict[str, Callable[[_Cell], dict[str, Any]]] = {
    "randomisation_cascading": _randomisation("cascading"),
    "randomisation_independent": _randomisation("independent"),
    "random_logit": _random_logit,
    "road_morf": _road("morf"),
    "road_lerf": _road("lerf"),
}
