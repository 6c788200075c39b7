"""The hardware limit a cell is held against: the model's BEST per-sample pass times.

Efficiency = (the cell's passes x the model's best per-sample time for each kind of pass) /
the cell's measured median. "Best" is over batch sizes (powers of two, the rows per call, the cell's own)
up to the rows the method pushes through the model in one call, on the same device,
precision and memory format, so a method that batches its rows well reads about 1 and one
that cannot (Python overhead, small calls) reads less. Above 1 means the limit was measured
wrong (noise, a cold or thrashed calibration), never that the method beat the model.

Kinds of pass (`PASS_KINDS`): a forward under no_grad; forward + backward to the inputs;
forward + backward from the output down to a layer's output only (layer methods: their
gradient is taken w.r.t. the layer, autograd never goes below it); forward + backward from a
layer's output to the inputs (neuron methods). Which kind a method's backward rows use is
registry metadata (`MethodSpec.backward_reach`), not a branch on its name.

Robustness (one poisoned calibration once made every batch-1 cell of a run read 5x):
every (kind, batch) is warmed up until two consecutive calls agree, then rounds run all of
them interleaved (order rotated each round, so drift spreads over all), until every median
is stable (a stopping rule with a cap); spread, repeats and the batch where the best was
found are recorded. The search itself (`search_best`) takes the timer as an argument, so its
choices are tested with scripted timings.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from attrib_core.devices import check_device
from attrib_core.measure import synchronized
from attrib_core.workloads.packed import packed_view

if TYPE_CHECKING:
    from attrib_core.run import PreparedRun

FORWARD = "forward"
FORWARD_BACKWARD = "forward_backward"
TO_LAYER = "forward_backward_to_layer"
FROM_LAYER = "forward_backward_from_layer"
PASS_KINDS = (FORWARD, FORWARD_BACKWARD, TO_LAYER, FROM_LAYER)
# MethodSpec.backward_reach -> the kind of pass its backward rows are timed as
KIND_OF_REACH = {"inputs": FORWARD_BACKWARD, "to_layer": TO_LAYER, "from_layer": FROM_LAYER}
BASIS = "best batch"


@dataclass(frozen=True)
class SearchRule:
    """When the search warms up enough, stops repeating, and which batch sizes it can afford.

    `budget_s` bounds the whole search (the seconds spent inside timed calls, warm-up
    included), never the length of one call: the rows one call of the cell makes are
    always timed, however slow, because a limit taken below them reads far above 1 where
    large batches pay off (a slow CPU read 10.6 with the limit taken at batch 1 for a
    50-row call). Other sizes join while the budget allows.
    """

    min_repeats: int = 3
    max_repeats: int = 12  # the cap: recorded as not stable if reached
    tolerance: float = 0.03  # every median moved less than this (relative) since the last round
    min_warmup: int = 2
    max_warmup: int = 8
    warmup_tolerance: float = 0.10  # two consecutive warm-up calls within this: warm
    budget_s: float = 60.0  # seconds of timed calls for the whole search

    def __post_init__(self) -> None:
        for name in ("min_repeats", "max_repeats", "min_warmup", "max_warmup"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SearchRule: {name}={value!r} is not valid; needs an integer >= 1")
        if self.max_repeats < self.min_repeats or self.max_warmup < self.min_warmup:
            raise ValueError(f"SearchRule: a maximum below its minimum in {self}")
        for name in ("tolerance", "warmup_tolerance", "budget_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"SearchRule: {name}={value!r} is not valid; needs a number > 0")


def candidate_batches(rows_per_call: int, own_batch: int) -> list[int]:
    """Powers of two up to the rows one model call of the cell sees, those rows themselves, and the
    cell's own batch. The rows per call must be there: a method running 48 rows a call can beat
    every power of two below it, and a limit without 48 then reads above 1 (tuned IG, 1.17)."""
    if isinstance(rows_per_call, bool) or not isinstance(rows_per_call, int) or rows_per_call < 1:
        raise ValueError(f"rows_per_call={rows_per_call!r} is not valid; needs an integer >= 1")
    powers = [2**k for k in range(rows_per_call.bit_length()) if 2**k <= rows_per_call]
    return sorted({*powers, rows_per_call, min(own_batch, rows_per_call)})


class _Clock:
    """The search's spending: the seconds its timed calls returned (so scripted timers test it)."""

    def __init__(self, time_call: Callable[[str, int], float]) -> None:
        self.time_call, self.spent_s = time_call, 0.0

    def __call__(self, kind: str, batch: int) -> float:
        seconds = self.time_call(kind, batch)
        self.spent_s += seconds
        return seconds


def search_best(
    time_call: Callable[[str, int], float],
    kinds: Sequence[str],
    batch_sizes: Sequence[int],
    rule: SearchRule = SearchRule(),
    required: Sequence[int] = (),
) -> dict[str, Any]:
    """Best per-sample time of each kind over `batch_sizes`, timed by `time_call(kind, batch)`.

    The largest size and `required` are always searched. They are warmed up first (largest
    first); the other sizes follow in increasing order while their predicted cost (warm-up
    and `min_repeats` rounds at the slowest per-sample time seen) fits in `rule.budget_s`
    beside the rounds the kept sizes need; those left out are recorded as `skipped_batches`.
    Then rounds time every (kind, batch) once, in an order rotated each round, until after
    at least `min_repeats` rounds no median moved more than `tolerance` since the round
    before, `max_repeats` rounds ran, or the next round would overrun the budget (at least
    one round always runs; `budget_exhausted` says the budget ended it).
    """
    if not kinds or not batch_sizes:
        raise ValueError(f"search_best needs kinds and batch sizes; got {list(kinds)} and {list(batch_sizes)}")
    unknown = [k for k in kinds if k not in PASS_KINDS]
    if unknown:
        raise ValueError(f"unknown pass kind(s) {unknown}; valid: {', '.join(PASS_KINDS)}")
    clock = _Clock(time_call)
    must = sorted({max(batch_sizes), *(b for b in required if b in batch_sizes)}, reverse=True)
    optional = sorted(set(batch_sizes) - set(must))
    sizes, skipped, warmup_calls = [], [], 0
    per_sample_seen = dict.fromkeys(kinds, 0.0)  # the slowest per-sample time of each kind so far
    round_s = 0.0  # what one round over the kept sizes costs, from their last warm-up calls
    for batch in must + optional:
        if batch in optional:
            one_call = sum(per_sample_seen[kind] * batch for kind in kinds)
            predicted = one_call * (rule.min_warmup + rule.min_repeats)
            if clock.spent_s + (round_s * rule.min_repeats) + predicted > rule.budget_s:
                skipped.append(batch)
                continue
        for kind in kinds:
            calls, last_s = warm_up(clock, kind, batch, rule, over_budget=lambda: clock.spent_s > rule.budget_s)
            warmup_calls += calls
            round_s += last_s
            per_sample_seen[kind] = max(per_sample_seen[kind], last_s / batch)
        sizes.append(batch)
    sizes.sort()
    pairs = [(kind, batch) for batch in sizes for kind in kinds]
    samples: dict[tuple[str, int], list[float]] = {pair: [] for pair in pairs}
    previous: dict[tuple[str, int], float] | None = None
    stable = exhausted = False
    for round_index in range(rule.max_repeats):
        if round_index > 0 and clock.spent_s + round_s > rule.budget_s:
            exhausted = True
            break
        shift = round_index % len(pairs)
        before = clock.spent_s
        for pair in pairs[shift:] + pairs[:shift]:
            samples[pair].append(clock(*pair))
        round_s = clock.spent_s - before
        medians = {pair: statistics.median(times) for pair, times in samples.items()}
        if round_index + 1 >= rule.min_repeats and previous is not None:
            moved = max(abs(medians[p] - previous[p]) / previous[p] if previous[p] > 0 else 0.0 for p in pairs)
            if moved <= rule.tolerance:
                stable = True
                break
        previous = medians
    summary = _summary(samples, kinds, sizes, warmup_calls, stable)
    return {**summary, "skipped_batches": skipped, "budget_exhausted": exhausted, "search_s": clock.spent_s}


def warm_up(
    time_call: Callable[[str, int], float],
    kind: str,
    batch: int,
    rule: SearchRule,
    over_budget: Callable[[], bool] = lambda: False,
) -> tuple[int, float]:
    """Call until two consecutive calls agree within `warmup_tolerance` (at least `min_warmup`),
    or, once `over_budget()`, as soon as `min_warmup` calls ran."""
    times: list[float] = []
    while len(times) < rule.max_warmup:
        times.append(time_call(kind, batch))
        if len(times) < max(rule.min_warmup, 2):
            continue
        before, last = times[-2], times[-1]
        if before > 0 and abs(last - before) / before <= rule.warmup_tolerance:
            break
        if over_budget():
            break
    return len(times), times[-1]


def _summary(
    samples: dict[tuple[str, int], list[float]],
    kinds: Sequence[str],
    sizes: list[int],
    warmup_calls: int,
    stable: bool,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "basis": BASIS,
        "batch_sizes": sizes,
        "repeats": len(next(iter(samples.values()))),
        "stable": stable,
        "warmup_calls": warmup_calls,
        "best_batch_size": {},
        "spread": {},
        "per_batch_s_per_sample": {},
    }
    for kind in kinds:
        per_sample = {batch: statistics.median(samples[(kind, batch)]) / batch for batch in sizes}
        best = min(per_sample, key=per_sample.__getitem__)
        times = samples[(kind, best)]
        median = statistics.median(times)
        out[f"{kind}_s_per_sample"] = per_sample[best]
        out["best_batch_size"][kind] = best
        out["spread"][kind] = (max(times) - min(times)) / median if median > 0 else 0.0
        out["per_batch_s_per_sample"][kind] = {str(b): s for b, s in per_sample.items()}
    return out


# --- the model's passes, as timed calls -------------------------------------------------------


def rows(tensor: torch.Tensor, batch: int) -> torch.Tensor:
    """`batch` rows of `tensor`, cycling through its rows (values barely matter to the time)."""
    return tensor[torch.arange(batch, device=tensor.device) % tensor.shape[0]]


def _selected(out: torch.Tensor, target: torch.Tensor | int | None) -> torch.Tensor:
    """The target logits summed: what gradient methods differentiate."""
    if target is None:
        return out.sum()
    if isinstance(target, int):
        return out[:, target].sum()
    return out.gather(1, target.reshape(-1, 1).expand(out.shape[0], 1)).sum()


@contextmanager
def captured_output(layer: nn.Module, detach: bool) -> Iterator[list[torch.Tensor]]:
    """The layer's output of each forward while inside; with `detach` it is replaced by a leaf
    that requires grad, so a gradient w.r.t. it never goes below the layer (as when a layer
    method's hook hands Captum the layer's output to differentiate)."""
    seen: list[torch.Tensor] = []

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> Any:
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"layer {type(layer).__name__} returns {type(output).__name__}, not one tensor")
        if detach:
            output = output.detach().requires_grad_(True)
        seen.append(output)
        return output if detach else None

    handle = layer.register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def pass_call(
    kind: str,
    model: nn.Module,
    inputs: torch.Tensor,
    target: torch.Tensor | int | None,
    layer: nn.Module | None = None,
) -> Callable[[], Any]:
    """One pass of `kind` over `inputs`, as a call that returns what it differentiated to (its
    gradient), so tests can check it. Parameters' .grad are never touched."""
    if kind in (TO_LAYER, FROM_LAYER) and layer is None:
        raise ValueError(f"pass kind {kind!r} needs the workload's layer; none given")
    parameters = [p for p in model.parameters() if p.requires_grad]
    floating = inputs.is_floating_point()

    def forward() -> Any:
        with torch.no_grad():
            return model(inputs)

    def forward_backward() -> Any:
        if not floating:  # token ids have no gradient: differentiate the parameters
            return torch.autograd.grad(_selected(model(inputs), target), parameters)
        leaf = inputs.detach().requires_grad_(True)
        return torch.autograd.grad(_selected(model(leaf), target), leaf)

    def to_layer() -> Any:
        with captured_output(layer, detach=True) as seen:
            out = model(inputs)
        return torch.autograd.grad(_selected(out, target), seen)

    def from_layer() -> Any:
        leaf = inputs.detach().requires_grad_(True)
        with captured_output(layer, detach=False) as seen:
            model(leaf)
        return torch.autograd.grad(seen[-1].sum(), leaf)

    calls = {FORWARD: forward, FORWARD_BACKWARD: forward_backward, TO_LAYER: to_layer, FROM_LAYER: from_layer}
    if kind not in calls:
        raise ValueError(f"unknown pass kind {kind!r}; valid: {', '.join(PASS_KINDS)}")
    return calls[kind]


@contextmanager
def rows_per_call(model: nn.Module) -> Iterator[list[int]]:
    """Rows (first dimension of the first input) of each model call made while inside: how a
    method groups its rows into calls, read off the prepared run rather than modelled."""
    seen: list[int] = []
    packed = packed_view(model)
    model = packed.model if packed is not None else model  # Captum calls the user's model itself

    def hook(_module: nn.Module, args: tuple, _output: Any) -> None:
        # a forward (post) hook sees the arguments as the pre-hooks left them: DeepLift's
        # pre-hook joins inputs and baselines into one call of 2B rows
        first = args[0] if args else None
        if isinstance(first, torch.Tensor) and first.dim() > 0:
            seen.append(int(first.shape[0]))

    handle = model.register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


class PassTimer:
    """Times one pass of a kind at a batch size: `timer(kind, batch) -> seconds`.

    `inputs` and `target` are the cell's own batch; larger batches cycle through its rows,
    in the same memory format. `model` is what the method calls (the autocast wrapper under
    bf16), so precision matches. Each (kind, batch)'s inputs are built once and kept.
    """

    def __init__(
        self,
        model: nn.Module,
        inputs: torch.Tensor,
        target: torch.Tensor | int | None,
        device: str | torch.device,
        layer: nn.Module | None = None,
        memory_format: torch.memory_format = torch.contiguous_format,
    ) -> None:
        self.device = check_device(device)
        self.model, self.layer, self.memory_format = model, layer, memory_format
        self.inputs = inputs.detach().to(self.device)
        self.target = target.to(self.device) if isinstance(target, torch.Tensor) else target
        self._calls: dict[tuple[str, int], Callable[[], Any]] = {}

    def call(self, kind: str, batch: int) -> Callable[[], Any]:
        if (kind, batch) not in self._calls:
            batch_x = rows(self.inputs, batch)
            if batch_x.dim() == 4:
                batch_x = batch_x.contiguous(memory_format=self.memory_format)
            target = self.target
            batch_target = rows(target, batch) if isinstance(target, torch.Tensor) and target.dim() else target
            fn = pass_call(kind, self.model, batch_x, batch_target, self.layer)
            self._calls[(kind, batch)] = synchronized(fn, self.device)
        return self._calls[(kind, batch)]

    def __call__(self, kind: str, batch: int) -> float:
        fn = self.call(kind, batch)
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start


def calibrate_limit(
    timer: PassTimer, kinds: Sequence[str], max_rows: int, rule: SearchRule = SearchRule()
) -> dict[str, Any]:
    """The model's best per-sample time of each kind over batch sizes up to `max_rows`."""
    gc.collect()  # garbage of the cell before (gigabytes, sometimes) is freed now, not mid-round
    started = time.perf_counter()
    own_batch = min(timer.inputs.shape[0], max_rows)
    result = search_best(timer, kinds, candidate_batches(max_rows, own_batch), rule, required=(own_batch,))
    return {
        **result,
        "rows_per_call": max_rows,
        "backward_to": "inputs" if timer.inputs.is_floating_point() else "parameters (integer inputs)",
        "batch_size": timer.inputs.shape[0],
        "device": str(timer.device),
        "calibration_s": time.perf_counter() - started,
    }


def paired_rounds(
    time_cell: Callable[[], float],
    time_pass: Callable[[str, int], float],
    best_batch: dict[str, int],
    rounds: int,
) -> dict[str, Any]:
    """The cell's call and the limit's passes (each kind at its best batch), timed in
    alternation (cell first in even rounds, last in odd ones), so load that comes and goes on
    a shared machine hits both alike. The limit found by the search minutes earlier can be
    off by the load of that moment; these are medians from the same window as the cell's."""
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"paired_rounds: rounds={rounds!r} is not valid; needs an integer >= 1")
    cell_s: list[float] = []
    passes_s: dict[str, list[float]] = {kind: [] for kind in best_batch}
    for index in range(rounds):
        if index % 2 == 0:
            cell_s.append(time_cell())
        for kind, batch in best_batch.items():
            passes_s[kind].append(time_pass(kind, batch))
        if index % 2 == 1:
            cell_s.append(time_cell())
    return {
        "rounds": rounds,
        "cell_median_s": statistics.median(cell_s),
        **{f"{kind}_s_per_sample": statistics.median(times) / best_batch[kind] for kind, times in passes_s.items()},
        "best_batch_size": dict(best_batch),
    }


def pass_timer(prepared: PreparedRun) -> PassTimer:
    """Times the model's passes as this cell's method calls it (device, precision, memory
    format, its layer), on batches made from the cell's own inputs."""
    c = prepared.config
    target = prepared.kwargs.get("target")
    if target is None:
        target = prepared.workload.batch(c.batch_size)[1].to(prepared.inputs.device)
    layer_name = prepared.workload.layer_name
    layer = prepared.workload_model.get_submodule(layer_name) if layer_name else None
    from attrib_core.run import MEMORY_FORMATS  # run imports inject, not limit: no cycle, but keep limit light

    memory_format = MEMORY_FORMATS[c.memory_format]
    return PassTimer(prepared.model, prepared.inputs, target, c.device, layer, memory_format)


def pass_kinds(prepared: PreparedRun) -> tuple[str, ...]:
    """The kinds of pass the cell's cost model counts: the forward (always: its forward-only
    rows, and regression's calibration normalisation reads it), and its backward rows timed as
    the pass its method's backward really makes (registry: backward_reach)."""
    if prepared.passes.backward == 0:
        return (FORWARD,)
    return (FORWARD, KIND_OF_REACH[prepared.spec.backward_reach])


def measure_limit(prepared: PreparedRun, call: Callable[[], Any], rule: SearchRule = SearchRule()) -> dict[str, Any]:
    """The limit for a prepared run on its own: one call read for its rows per model call,
    then the search. For callers outside a benchmark run (tune)."""
    with rows_per_call(prepared.workload_model) as rows:
        call()
    return calibrate_limit(
        pass_timer(prepared), pass_kinds(prepared), max(rows, default=prepared.config.batch_size), rule
    )
