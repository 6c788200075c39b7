"""Fidelity references: a high-accuracy attribution per cell, computed once, cached on disk.

Keyed by everything that changes the result (weights, inputs, targets, baselines, knobs,
Captum's version), so a changed model or input invalidates it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import captum
import torch
from torch import nn

from attrib_core.cache import cache_dir, stable_hash
from attrib_core.fidelity.scores import FidelityOptions
from attrib_core.fileio import atomic_save
from attrib_core.measure import synchronize
from attrib_core.methods import MethodSpec
from attrib_core.run import PreparedRun, RunConfig, prepare

REFERENCE_VERSION = 1  # bump when the way references are computed changes

# Batching knobs (Knob.batching) only group rows into calls: they change speed and memory,
# not the value, so references set them for speed and leave them out of the cache key.
# The finest occlusion (a one-element window at stride 1) is one forward per input element:
# 150 528 on a 224x224 RGB image; a workload can declare a coarser reference window
# (Workload.reference_knobs["Occlusion"]), which is then recorded as an approximation.


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
    layout = prepared.layout
    if layout is not None and layout.several:
        ones = tuple((1,) * len(shape) for shape in layout.shapes)
        finest = {"sliding_window_shapes": ones, "strides": ones}
    else:
        dims = prepared.inputs.dim() - 1
        finest = {"sliding_window_shapes": (1,) * dims, "strides": (1,) * dims}
    chosen = prepared.workload.reference_knobs.get("Occlusion", finest)
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
        f"{options.reference_rule} with {options.reference_steps} steps: the path integral, finely sampled "
        "(its own error is small, not zero)"
    ),
)

RECIPES: dict[str, Callable[[MethodSpec], ReferenceRecipe]] = {  # MethodSpec.reference -> its recipe
    "path": lambda spec: PATH_REFERENCE,
    "occlusion": lambda spec: ReferenceRecipe(_occlusion_knobs, _occlusion_note, _occlusion_approximate),
    "more_samples": lambda spec: _more_samples(spec.sample_knob),
}


def recipe_for(spec: MethodSpec) -> ReferenceRecipe | None:
    return RECIPES[spec.reference](spec) if spec.reference is not None else None


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


def tensor_digest(tensor: torch.Tensor | tuple[Any, ...] | None) -> str | None:
    """Hash of a tensor's dtype, shape and bytes: changes whenever any value changes. A tuple
    (several inputs, additional arguments) hashes its items in order."""
    if tensor is None:
        return None
    if isinstance(tensor, (tuple, list)):
        items = (tensor_digest(t) if isinstance(t, torch.Tensor) else repr(t) for t in tensor)
        return hashlib.sha256("|".join(items).encode()).hexdigest()
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
        "additional_forward_args": tensor_digest(kwargs.get("additional_forward_args")),
        "knobs": {k: v for k, v in sorted(knobs.items()) if k not in prepared.spec.batching_knobs},
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
    recipe = recipe_for(prepared.spec)
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
    synchronize(device)
    start = time.perf_counter()
    attributions = ref_run().attributions
    synchronize(device)
    compute_s = time.perf_counter() - start
    if options.use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {"attributions": attributions, "payload": json.dumps(payload, default=str)}
        atomic_save(path, lambda tmp: torch.save(entry, tmp))
    return Reference(attributions, key, path, public_knobs, False, compute_s, note, approximate)
