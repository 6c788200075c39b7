"""The records a search keeps: each configuration tried, each one pruned unrun, and the answer."""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from attrib_core.run import RunConfig
from attrib_core.sweep import cell_key
from attrib_core.tune.request import Quality

# --- one configuration ---------------------------------------------------------------------


@dataclass
class Candidate:
    """One configuration tried, and everything measured on it."""

    config: RunConfig
    threads: int
    compiled: bool = False
    phase: str = ""
    times_s: list[float] = field(default_factory=list)
    first_call_s: float | None = None
    quality: Quality | None = None
    meets_target: bool = False
    peak_bytes: int | None = None
    predicted_peak_bytes: int | None = None
    predicted_s: float | None = None  # a whole call predicted from its model passes (speed_stage.screen), if screened
    same_result_distance: float | None = None  # on a same-math axis: its output's distance from the setting it changed
    attributions: torch.Tensor | None = field(default=None, repr=False, compare=False)  # first output, while needed
    passes: dict[str, int] | None = None
    status: str = "ok"
    error: str | None = None

    @property
    def identity(self) -> tuple:
        return (self.config, self.threads, self.compiled)

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s) if self.times_s else math.inf

    @property
    def time_estimate_s(self) -> float:
        """The median of timed calls, else the first call's time (fidelity settings run once; it includes warm-up)."""
        if self.times_s:
            return self.median_s
        return self.first_call_s if self.first_call_s is not None else math.inf

    @property
    def compile_s(self) -> float | None:
        if not self.compiled or self.first_call_s is None or not self.times_s:
            return None
        return max(0.0, self.first_call_s - self.median_s)

    def with_(self, phase: str, threads: int | None = None, compiled: bool | None = None, **config: Any) -> Candidate:
        knobs = config.pop("knobs", None)
        new_config = dataclasses.replace(self.config, **config)
        if knobs is not None:
            new_config = dataclasses.replace(new_config, knobs={**self.config.knobs, **knobs})
        return Candidate(
            new_config,
            self.threads if threads is None else threads,
            self.compiled if compiled is None else compiled,
            phase=phase,
        )


# --- the search ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pruned:
    """A configuration the search chose not to run, and why (written to the results file beside those run)."""

    cell_key: str
    reason: str
    threads: int | None = None
    compiled: bool | None = None
    predicted_s: float | None = None
    predicted_peak_bytes: int | None = None
    budget_bytes: int | None = None

    @classmethod
    def of(cls, cand: Candidate, reason: str, **predictions: Any) -> Pruned:
        return cls(cell_key(cand.config), reason, cand.threads, cand.compiled, **predictions)

    def record(self) -> dict[str, Any]:
        """The results file's entry: the fields that apply to this kind of pruning."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass
class MethodTuning:
    """What tune found for one method."""

    method: str
    default: Candidate
    tuned: Candidate
    path: list[tuple[str, Candidate]]  # (axis changed, configuration after it), default first
    tried: list[Candidate]  # every configuration run, in order
    pruned: list[Pruned]  # configurations never run: over the memory budget or predicted too slow
    target_bound: float
    target_text: str
    search_s: float
    notes: list[str]
    memory_models: dict[str, dict[str, float]]
    reference_resolution: float | None = None  # the reference's own estimated error, where estimated

    def pareto_front(self) -> list[Candidate]:
        """Configurations no other beats on both time and error (time: median, or a fidelity setting's one call)."""
        pts = [c for c in self.tried if c.status == "ok" and c.quality is not None and c.first_call_s is not None]
        pts.sort(key=lambda c: (c.time_estimate_s, c.quality.rel_error))
        front, best = [], math.inf
        for c in pts:
            if c.quality.rel_error < best:
                front.append(c)
                best = c.quality.rel_error
        return front


def knob_text(knobs: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in knobs.items() if v is not None)


def exec_text(cand: Candidate) -> str:
    config = cand.config
    batching = " ".join(
        f"{k}={config.knobs[k]}" for k in ("internal_batch_size", "perturbations_per_eval") if k in config.knobs
    )
    return (
        f"[{batching} {config.precision} {config.memory_format} threads={cand.threads}"
        f"{' compiled' if cand.compiled else ''}]"
    )


def quality_text(cand: Candidate) -> str:
    if cand.quality is None:
        return f"failed ({cand.error})"
    verdict = "meets" if cand.meets_target else "misses"
    return f"error {cand.quality.rel_error:.3g}, spearman {cand.quality.spearman:.3f} ({verdict} the target)"
