"""Predicting a long call from its model passes, so tune can rank candidates without running them.

On a 2-core CPU one resnet18 Occlusion call takes 20-30 s, and racing every candidate of every
speed axis with whole calls spent a 3-minute budget on batching and memory format alone. Most of such
a call is its model passes: the cost model's rows, pushed through the model in chunks of the
batching knob's size. Timing a pass at that chunk size, under the candidate's precision,
memory format and threads, takes a fraction of one call and predicts it:

    predicted = backward rows x (forward+backward time per row at the chunk)
              + the other forward rows x (forward time per row at the chunk)

the same sum the efficiency limit makes (analysis.results.limit_s), with the chunk's per-row
time instead of the best batch's. It leaves out the method's own work (building perturbed
inputs, hooks); Search.screen adds that, measured on the current setting's call, per model
call. It ranks settings rather than timing them: a candidate it ranks first still gets a whole
call, which checks its error (no probe can tell that bf16 loses the signal) and its time.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from attrib_core import limit
from attrib_core.methods import Passes

if TYPE_CHECKING:
    from attrib_core.run import PreparedRun

PROBE_CALLS = 4  # passes timed per kind at most: the first is a warm-up, the median of the rest counts


def seconds_per_row(call: Callable[[], Any], rows: int, budget_s: float, clock: Callable[[], float]) -> float:
    """Per-row time of a pass at `rows`: a warm-up, then timed passes until PROBE_CALLS or until
    `budget_s` is spent (one at least). A first pass that alone overruns the budget is the answer,
    warm-up and all (256 rows of resnet18 take 8 s a pass; the warm-up is a small part of that)."""
    times: list[float] = []
    while len(times) < PROBE_CALLS and (len(times) < 2 or sum(times) < budget_s):
        start = clock()
        call()
        times.append(clock() - start)
        if len(times) == 1 and times[0] >= budget_s:
            return times[0] / rows
    return statistics.median(times[1:]) / rows


def predicted_call_s(passes: Passes, per_row: dict[str, float], backward_kind: str | None) -> float:
    """The call's model time: backward rows at the backward pass's per-row time, the remaining
    forward-only rows at the forward's."""
    backward = passes.backward * per_row[backward_kind] if passes.backward and backward_kind else 0.0
    return backward + max(passes.forward - passes.backward, 0) * per_row.get(limit.FORWARD, 0.0)


def probe(
    run: PreparedRun, chunk: int, budget_s: float, clock: Callable[[], float] = time.perf_counter
) -> dict[str, Any]:
    """Time `run`'s kinds of pass at `chunk` rows (as its method calls the model: precision, memory
    format, layer) and predict one whole call of it. The caller sets the threads."""
    timer = limit.pass_timer(run)
    kinds = limit.pass_kinds(run)
    per_row = {kind: seconds_per_row(timer.call(kind, chunk), chunk, budget_s / len(kinds), clock) for kind in kinds}
    backward_kind = kinds[1] if len(kinds) > 1 else None
    return {
        "chunk_rows": chunk,
        "s_per_row": per_row,
        "predicted_s": predicted_call_s(run.passes, per_row, backward_kind),
    }
