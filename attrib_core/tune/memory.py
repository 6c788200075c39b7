"""Predicting a configuration's peak memory before running it, so tune never runs one over budget.

Peak memory of an attribution call is, to a good approximation, a fixed part plus a
per-row part times the rows the model sees in one call (the chunk that `internal_batch_size`,
`perturbations_per_eval` or `nt_samples_batch_size` sets), plus the whole call's inputs and
gradients (every row's, kept until the end). Two cheap probes at different chunk sizes give
the slope; on resnet18 fp32 IG measured 99.0 MB at 4 rows and 367.6 MB at 16 (22.4 MB/row,
linear to 64 rows), so the line is a sound predictor there. Probes are taken per
(precision, memory format): bf16 activations are about half the size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from attrib_core.methods import CostInput, MethodSpec

# safety margin on predictions: a configuration is run only if predicted * margin <= budget
PREDICTION_MARGIN = 1.10


class MemoryBudgetError(ValueError):
    """A memory budget too small for anything to run."""


def chunk_rows(spec: MethodSpec, knobs: Mapping[str, Any], cost: CostInput) -> int:
    """Rows in the model's largest single call for these knobs (Captum's chunking)."""
    passes = spec.cost(cost)
    rows = max(passes.forward, passes.backward) if not spec.batching_knobs else None
    for name in spec.batching_knobs:
        rows = CHUNKS[name](knobs, cost, passes.backward or passes.forward)
    return max(1, int(rows if rows is not None else cost.batch_size))


def _internal_batch(knobs: Mapping[str, Any], cost: CostInput, total: int) -> int:
    ibs = knobs.get("internal_batch_size")
    return total if ibs is None else min(ibs, total)


def _perturbations(knobs: Mapping[str, Any], cost: CostInput, total: int) -> int:
    return min(total, cost.batch_size * knobs.get("perturbations_per_eval", 1))


def _noise_batch(knobs: Mapping[str, Any], cost: CostInput, total: int) -> int:
    per_sample = total // max(1, knobs.get("nt_samples", 1))  # rows one noisy copy needs (IG: its path)
    nt_batch = knobs.get("nt_samples_batch_size") or knobs.get("nt_samples", 1)
    return per_sample * nt_batch


# batching knob -> the rows per model call it leads to (given the whole call's rows)
CHUNKS: dict[str, Callable[[Mapping[str, Any], CostInput, int], int]] = {
    "internal_batch_size": _internal_batch,
    "perturbations_per_eval": _perturbations,
    "nt_samples_batch_size": _noise_batch,
}


@dataclass(frozen=True)
class MemoryModel:
    """peak_bytes ~ fixed_bytes + per_row_bytes * chunk rows + held_bytes_per_row * all rows."""

    fixed_bytes: float
    per_row_bytes: float
    held_bytes_per_row: float  # inputs and gradients of every row, kept for the whole call

    def predict(self, chunk: int, total_rows: int) -> int:
        return int(self.fixed_bytes + self.per_row_bytes * chunk + self.held_bytes_per_row * total_rows)

    def fits(self, chunk: int, total_rows: int, budget_bytes: int | None) -> bool:
        return budget_bytes is None or self.predict(chunk, total_rows) * PREDICTION_MARGIN <= budget_bytes


def held_bytes_per_row(spec: MethodSpec, example: torch.Tensor) -> float:
    """Bytes each row of the whole call holds until its end: a gradient method keeps the scaled
    inputs and their gradients (two copies of one example); a perturbation method nothing."""
    per_row = example.numel() * example.element_size()
    return 2.0 * per_row if spec.family == "gradient" else 0.0


def fit(probes: list[tuple[int, int, int]], held_bytes_per_row: float) -> MemoryModel:
    """A line through measured (chunk rows, total rows, peak bytes) probes.

    The whole call's held bytes are taken from the input size (not fitted), so two probes
    at different chunk sizes determine the slope; with one probe (a method with no batching
    knob) the slope is the probe's own bytes per row, which over-predicts: safe for a budget.
    """
    adjusted = [(chunk, peak - held_bytes_per_row * total) for chunk, total, peak in probes]
    if len(adjusted) == 1 or len({c for c, _ in adjusted}) == 1:
        chunk, peak = adjusted[0]
        return MemoryModel(0.0, max(peak, 0.0) / chunk, held_bytes_per_row)
    (c1, p1), (c2, p2) = sorted(adjusted)[0], sorted(adjusted)[-1]
    slope = max(0.0, (p2 - p1) / (c2 - c1))
    return MemoryModel(max(0.0, p1 - slope * c1), slope, held_bytes_per_row)


def parse_bytes(text: str) -> int:
    """'2GiB', '512MiB', '1.5GB', '1000000' -> bytes; an error names the accepted units."""
    units = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "kib": 1024, "mib": 1024**2, "gib": 1024**3}
    stripped = text.strip().lower().replace(" ", "")
    number = stripped.rstrip("kmgib")
    unit = stripped[len(number) :]
    try:
        value = float(number)
    except ValueError:
        value = math.nan
    if unit not in units or not math.isfinite(value) or value <= 0:
        raise MemoryBudgetError(
            f"memory budget {text!r} is not a size; use a positive number with one of: B, kB, MB, GB, KiB, MiB, GiB"
        )
    return int(value * units[unit])


# batching knob -> two values giving a small and a 4x larger chunk at this batch size (the probes)
PROBE_VALUES: dict[str, Callable[[int], tuple[Any, ...]]] = {
    "internal_batch_size": lambda batch: (batch, 4 * batch),
    "perturbations_per_eval": lambda batch: (1, 4),
    "nt_samples_batch_size": lambda batch: (1, 4),
}
