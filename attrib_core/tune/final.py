"""The final comparison (default, each step of the path and the tuned setting, interleaved), and the
entry point that runs check, search and comparison per method."""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from attrib_core.fidelity.references import reference_attributions
from attrib_core.fidelity.scores import FidelityOptions
from attrib_core.run import NotApplicable, RunConfig, prepare
from attrib_core.tune.measurer import Measurer, relative_distance
from attrib_core.tune.records import Candidate, MethodTuning
from attrib_core.tune.request import TuneError, TuneRequest, check_budget, check_request
from attrib_core.tune.search import Search
from attrib_core.tune.space import MethodSpace


def distinct_path(path: Sequence[tuple[str, Candidate]]) -> list[tuple[str, Candidate]]:
    """The path without steps that changed nothing (an axis whose race the current setting won)."""
    out: list[tuple[str, Candidate]] = []
    for axis, cand in path:
        if out and out[-1][1].identity == cand.identity:
            continue
        out.append((axis, cand))
    return out


def final_comparison(tuning: MethodTuning, measurer: Measurer, rounds: int) -> list[tuple[str, Candidate]]:
    """Default, each distinct step of the path and the tuned setting, timed round-robin in one window,
    the order reversed every other round: load that grows through a window (resnet18 Occlusion's
    rounds here went 16.5, 18.8, 26.2 s for the tuned setting) then hits the first and the last alike,
    where a fixed order charged it to the tuned setting, always timed last."""
    steps = distinct_path(tuning.path)
    finals = [(axis, dataclasses.replace(cand, phase="final", times_s=[])) for axis, cand in steps]
    for index in range(rounds):
        for _, cand in finals if index % 2 == 0 else reversed(finals):
            cand.times_s.append(measurer.call(cand)[0])
    for axis, cand in finals:
        if axis == "default" or cand.identity == finals[-1][1].identity:
            measurer.memory(cand)
    return finals


def gain_shares(finals: Sequence[tuple[str, Candidate]]) -> dict[str, float]:
    """Each axis's share of the total speedup, in log time along the measured path (sums to 1)."""
    total = math.log(finals[0][1].median_s / finals[-1][1].median_s) if len(finals) > 1 else 0.0
    shares: dict[str, float] = {}
    for (_, before), (axis, after) in itertools.pairwise(finals):
        step = math.log(before.median_s / after.median_s)
        shares[axis] = shares.get(axis, 0.0) + (step / total if total else 0.0)
    return shares


@dataclass(frozen=True)
class TuneReference:
    """What errors are measured against, and how far that can be trusted."""

    attributions: torch.Tensor | None  # None: no recipe, the default's own output becomes the yardstick
    note: str
    resolution: float | None = None  # the reference's own estimated error (path methods); None: not estimated


def reference_for(default: RunConfig, reference_steps: int) -> TuneReference:
    """The method's high-accuracy reference (cached on disk) and, for a path integral, its own error.

    That error is estimated as its distance to the same rule at half the steps (both cached). It
    matters: on resnet18 with random weights, 512 and 1024 Gauss-Legendre steps differ by 1.1e-4,
    more than Captum's default's error against the 512-step reference (9.6e-5)."""
    prepared = prepare(default)
    reference = reference_attributions(prepared, FidelityOptions(reference_steps=reference_steps))
    if reference is None:
        return TuneReference(
            None, f"no reference recipe for {default.method}: errors are against Captum's default output"
        )
    origin = "cached" if reference.cached else f"computed in {reference.compute_s:.1f} s"
    note, resolution = f"{reference.note} ({origin})", None
    if prepared.spec.reference == "path" and reference_steps >= 2:
        coarser = reference_attributions(prepared, FidelityOptions(reference_steps=reference_steps // 2))
        resolution = relative_distance(coarser.attributions, reference.attributions)
        note += f"; its own error is about {resolution:.2g} (its distance to {reference_steps // 2} steps)"
    return TuneReference(reference.attributions, note, resolution)


def tune(
    request: TuneRequest, log: Callable[[str], None] = print, spaces: Mapping[str, MethodSpace] | None = None
) -> list[tuple[MethodTuning, list[tuple[str, Candidate]], Measurer]]:
    """Check everything (unless `spaces` are already checked), then search each method and compare
    default with tuned in one window."""
    if spaces is None:
        spaces = check_request(request)
        check_budget(request)
    out = []
    for name, space in spaces.items():
        started = time.perf_counter()
        default_config = RunConfig(
            name, request.workload, request.device, request.batch_size, space.default_knobs, seed=request.seed
        )
        try:
            reference = reference_for(default_config, request.reference_steps)
        except NotApplicable as exc:
            raise TuneError(str(exc)) from None
        log(f"  {name}: reference: {reference.note}")
        measurer = Measurer(reference.attributions)
        search = Search(request, space, measurer, log=log, reference_resolution=reference.resolution)
        search.notes.append(f"reference: {reference.note}")
        tuning = search.run()
        finals = final_comparison(tuning, measurer, request.final_rounds)
        log(
            f"  {name}: search {tuning.search_s:.0f} s, {len(tuning.tried)} configurations run, "
            f"{len(tuning.pruned)} pruned; with the final comparison {time.perf_counter() - started:.0f} s"
        )
        out.append((tuning, finals, measurer))
    return out
