"""Runs a search's configurations: prepared runs cached, threads set per call, quality scored."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

import torch

from attrib_core import measure
from attrib_core.fidelity.scores import reference_error
from attrib_core.run import PreparedRun, prepare
from attrib_core.tune.records import Candidate
from attrib_core.tune.request import Quality
from attrib_core.tune.screen import probe

# --- measuring -----------------------------------------------------------------------------


class Measurer:
    """Runs configurations: prepared runs cached, threads set per call, quality against one reference."""

    def __init__(self, reference: torch.Tensor | None, clock: Callable[[], float] = time.perf_counter) -> None:
        self.reference = reference
        self.clock = clock
        self._prepared: dict[tuple, PreparedRun] = {}
        self.compile_failures: dict[tuple, str] = {}

    def prepared(self, cand: Candidate) -> PreparedRun:
        key = (cand.config, cand.compiled)
        if key not in self._prepared:
            run = prepare(cand.config)
            if cand.compiled:
                run = _compiled(run)
            self._prepared[key] = run
        return self._prepared[key]

    def call(self, cand: Candidate) -> tuple[float, torch.Tensor]:
        run = self.prepared(cand)
        with measure.threads_for(cand.threads):
            call = measure.synchronized(run, cand.config.device)
            start = self.clock()
            result = call()
            return self.clock() - start, result.attributions

    def first(self, cand: Candidate) -> None:
        """The first call: warms up (and compiles), gives the attributions that quality is scored on."""
        if cand.first_call_s is not None or cand.status != "ok":
            return
        try:
            cand.passes = dataclasses.asdict(self.prepared(cand).passes)
            cand.first_call_s, attributions = self.call(cand)
        except Exception as exc:  # a configuration that breaks (torch.compile under Captum's hooks) is recorded
            cand.status, cand.error = "failed", f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
            return
        if not torch.isfinite(attributions).all():
            cand.status, cand.error = "failed", "attributions contain NaN or Inf"
            return
        if self.reference is None:
            self.reference = attributions  # no reference recipe: the default's own output is the yardstick
        agreement = reference_error(attributions, self.reference)
        cand.quality = Quality(_nanmean(agreement.rel_l2), _nanmean(agreement.spearman))
        cand.attributions = attributions

    def timed(self, cand: Candidate, calls: int) -> None:
        self.first(cand)
        for _ in range(calls):
            if cand.status != "ok":
                return
            cand.times_s.append(self.call(cand)[0])

    def predict(self, cand: Candidate, chunk: int, budget_s: float) -> float:
        """The model-pass time of one whole call, its passes timed at `chunk` rows (tune.screen)."""
        with measure.threads_for(cand.threads):
            return probe(self.prepared(cand), chunk, budget_s, self.clock)["predicted_s"]

    def memory(self, cand: Candidate) -> int:
        run = self.prepared(cand)
        with measure.threads_for(cand.threads):
            cand.peak_bytes = measure.peak_memory(run, cand.config.device).peak_bytes
        return cand.peak_bytes


def _nanmean(values: torch.Tensor) -> float:
    finite = values[torch.isfinite(values)]
    return float(finite.mean()) if len(finite) else math.nan


def relative_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b||, averaged over examples: the rel_error measure, between any two outputs."""
    return _nanmean(reference_error(a, b).rel_l2)


def _compiled(run: PreparedRun) -> PreparedRun:
    """The same run through torch.compile'd model; Captum's attributor is rebuilt around it."""
    compiled = torch.compile(run.model)
    layer = run.workload_model.get_submodule(run.workload.layer_name) if run.spec.kind != "feature" else None
    return dataclasses.replace(run, model=compiled, attributor=run.spec.build(compiled, layer))
