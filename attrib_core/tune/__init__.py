"""Tune: the fastest setting of a method that meets a fidelity target within a memory budget.

The search must cost less than it saves, so it is staged and pruned:

1. Before anything runs: every input is checked (unknown method or knob, a budget below one
   forward pass of the model, a target no setting reaches: the most accurate setting of the
   default's chain is tried first and the error names the best it reached).
2. Fidelity: settings (steps x rule, samples, window) are walked per rule from cheap to dear
   in cost-model order; a chain stops at its first setting that meets the target (more
   passes cannot be faster), and a setting whose predicted time exceeds the best found is
   never run. The winner is the one with the fewest predicted passes.
3. Speed, one axis at a time from that setting: batching knob, memory format, precision,
   threads, torch.compile. Each axis is a successive-halving race (one timed call each, the
   faster half gets more calls, ...). Batching values are walked in order (time against chunk
   size is U-shaped) and the walk stops once one is clearly slower than the best so far. A
   configuration whose predicted peak memory (the measured per-row slope, tune.memory) exceeds
   the budget is never run; one whose error misses the target (bf16 can) is dropped after its
   first call, except that an option that only reorders the sums (batching, layout, threads,
   compile) meets a default-relative target by giving the same output (judge_same_result).
   When one call takes SCREEN_ABOVE_S or more (resnet18 Occlusion: 20-30 s), racing whole calls
   would spend the budget on two axes, so each axis is ranked first by its model passes timed
   at the candidate's chunk size (tune.screen), and only the neighbour ranked first gets a
   whole call, which must meet the target and beat the current one.
4. Final: default, each step of the path and the tuned setting are timed interleaved in one
   window, so the speedup and the share of it from each axis are measured under one load.

Every configuration tried becomes a record of an ordinary results file (tune.output).

Where each part lives: request (the checks of step 1), search (the shared state and the order of
stages), fidelity_stage, speed_stage (races and screening), final (step 4 and the entry point),
records (Candidate, Pruned, MethodTuning), measurer, space, memory, screen, output.
"""

from attrib_core.methods import KnobError, MethodSpec
from attrib_core.tune.final import final_comparison, gain_shares, tune
from attrib_core.tune.memory import MemoryBudgetError
from attrib_core.tune.records import Candidate, MethodTuning, Pruned
from attrib_core.tune.request import (
    FidelityTarget,
    Quality,
    TargetUnreachable,
    TuneError,
    TuneRequest,
    check_budget,
    check_request,
)
from attrib_core.tune.search import Search

__all__ = [
    "Candidate",
    "FidelityTarget",
    "KnobError",
    "MemoryBudgetError",
    "MethodSpec",
    "MethodTuning",
    "Pruned",
    "Quality",
    "Search",
    "TargetUnreachable",
    "TuneError",
    "TuneRequest",
    "check_budget",
    "check_request",
    "final_comparison",
    "gain_shares",
    "tune",
]
