"""The speed stage: one axis at a time, a successive-halving race among a setting and its neighbours.

Batching values are walked in order (time against chunk size is U-shaped) and the walk stops once
one is clearly slower than the best so far. When one call takes SCREEN_ABOVE_S or more, racing
whole calls would spend the budget on two axes, so the axis's neighbours are first ranked by their
model passes (tune.screen) and only the one ranked first gets a whole call."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from attrib_core.sweep import cell_key
from attrib_core.tune.measurer import relative_distance
from attrib_core.tune.memory import chunk_rows
from attrib_core.tune.records import Candidate, Pruned, exec_text, quality_text
from attrib_core.tune.space import batching_values

if TYPE_CHECKING:
    from attrib_core.run import RunConfig
    from attrib_core.tune.search import Search

SPEED_AXES = ("batching", "memory_format", "precision", "threads", "compile")
SAME_MATH_AXES = ("batching", "memory_format", "threads", "compile")  # change how it is computed, not what
# Relative L2 distance under which a same-math option's output is the same attribution as the setting it
# changes. Measured here (IG, 50 steps): another fp32 reduction order (channels_last, torch.compile) moves
# resnet18's attributions by 5.6e-5 and shapes_resnet18's by 2.9e-5 to 4.9e-5, thread count and chunking
# by < 1e-7; bf16's rounding alone is 3.9e-3, and a hook that breaks the gradient moves them by O(1).
SAME_RESULT_TOLERANCE = 1e-3
FINAL_RACE_CALLS = 3  # calls each of the last two in a race get before the faster one wins
COMPILE_RESERVE_S = 60.0  # try torch.compile only with this much of the time budget left (compiling takes long)
BATCHING_TURN = 1.15  # a batching value this much slower than the axis's best so far: the curve has turned
SCREEN_ABOVE_S = 5.0  # calls this long are ranked by their model passes first (tune.screen), one whole call per axis
PROBE_SHARE = 0.1  # a probe may spend this share of one whole call of the current setting, per kind of pass


def axis_candidates(search: Search, axis: str, current: Candidate) -> list[Candidate]:
    config = current.config
    if axis == "batching":
        if not search.spec.batching_knobs:
            return []
        name = search.spec.batching_knobs[0]
        if name in search.space.fixed:
            return []
        values = batching_values(search.spec, config.knobs, config.batch_size, search.total_rows(config))
        return [current.with_(axis, knobs={name: v}) for v in values if v != config.knobs[name]]
    if axis == "memory_format":
        return [current.with_(axis, memory_format=f) for f in search.space.memory_formats if f != config.memory_format]
    if axis == "precision":
        return [current.with_(axis, precision=p) for p in search.space.precisions if p != config.precision]
    if axis == "threads":
        return [current.with_(axis, threads=t) for t in search.space.threads if t != current.threads]
    if axis == "compile":
        if not search.space.compile or current.compiled:
            return []
        remaining = search.request.time_budget_s - search.elapsed_s()
        if remaining < COMPILE_RESERVE_S:
            search.notes.append(
                f"torch.compile not tried: {remaining:.0f} s of the time budget left, under the "
                f"{COMPILE_RESERVE_S:g} s a compile of a model this size can take"
            )
            return []
        return [current.with_(axis, compiled=True)]
    raise ValueError(f"unknown speed axis {axis!r}; valid: {', '.join(SPEED_AXES)}")


def race(search: Search, axis: str, current: Candidate) -> Candidate:
    """Successive halving among the current configuration and its neighbours on one axis; for long
    calls, only the neighbour its model passes rank first gets a whole call (`screen`)."""
    pool = [current]
    candidates = axis_candidates(search, axis, current)
    screened = screens(current)
    if screened:
        candidates = screen(search, axis, current, candidates)
    for index, cand in enumerate(candidates):
        if search.out_of_time(current.time_estimate_s):
            break
        if not search.within_budget(cand, f"{axis} axis"):
            continue
        cand = search.run_first(cand)
        if cand.status != "ok":
            search.log(f"    {axis} {exec_text(cand)}: failed: {cand.error}")
            if cand.compiled:
                search.notes.append(f"torch.compile does not work here: {cand.error}")
            continue
        if cand.predicted_s is not None:
            search.log(
                f"    {axis} {exec_text(cand)}: predicted {cand.predicted_s:.3g} s, took {cand.first_call_s:.3g} s"
            )
        if axis in SAME_MATH_AXES:
            judge_same_result(search, axis, cand, current)
        if not cand.meets_target:
            distance = cand.same_result_distance
            apart = "" if distance is None else f"; {distance:.2g} from the current output"
            search.log(f"    {axis} {exec_text(cand)}: misses the target ({quality_text(cand)}{apart})")
            continue
        pool.append(cand)
        if axis == "batching" and not screened and batching_turned(search, cand, pool, candidates[index + 1 :]):
            break
    # round one ranks by the first call, already made to check the error (on eager code its warm-up is
    # small); a compiled candidate's first call is its compile, so it gets one timed call instead
    for cand in pool:
        if cand.compiled and not cand.times_s and not search.out_of_time(current.time_estimate_s):
            search.measurer.timed(cand, 1)
    pool = sorted((c for c in pool if c.status == "ok"), key=lambda c: c.time_estimate_s)
    if len(pool) > 1:
        log_race(search, axis, "first call", pool)
    while len(pool) > 1 and not screened and not search.out_of_time(0):
        pool = pool[: max(2, math.ceil(len(pool) / 2))]  # the faster half races on with more calls
        calls = FINAL_RACE_CALLS if len(pool) <= 2 else 1
        for cand in pool:
            missing = calls - len(cand.times_s)
            if missing > 0 and not search.out_of_time(missing * cand.time_estimate_s):
                search.measurer.timed(cand, missing)
        pool = sorted((c for c in pool if c.status == "ok"), key=lambda c: c.time_estimate_s)
        log_race(search, axis, f"{calls} timed call{'s' if calls > 1 else ''}", pool)
        if calls >= FINAL_RACE_CALLS:
            break
    winner = pool[0] if pool else current
    search.release_outputs(keep=winner)
    return winner


def judge_same_result(search: Search, axis: str, cand: Candidate, current: Candidate) -> None:
    """Hold an option that changes only how the attribution is computed to computing the same one.

    Against a target relative to Captum's default, its error against the reference cannot judge it:
    the reference was computed along the default's kernel path and shares its rounding, so another
    fp32 order reads worse by up to its own distance from the default. On resnet18 IG that distance
    (5.6e-5 for channels_last) is most of the default's error (9.6e-5), and channels_last read 1.2e-4,
    over the bound. So there it meets the target when its output is the current setting's to within
    SAME_RESULT_TOLERANCE. A number the user gave (--max-error, --min-spearman) is held literally."""
    if cand.attributions is None or current.attributions is None:
        return
    distance = relative_distance(cand.attributions, current.attributions)
    cand.same_result_distance = distance
    if cand.meets_target or search.request.target.value is not None or not distance <= SAME_RESULT_TOLERANCE:
        return
    cand.meets_target = True
    search.log(f"    {axis} {exec_text(cand)}: same attribution as the current setting to {distance:.2g}")
    if not search.request.target.meets(current.quality, search.bound):
        return  # the current setting was admitted this way already, and noted
    search.notes.append(
        f"{axis} {exec_text(cand)}: error {cand.quality.rel_error:.3g} against the reference, over the "
        f"bound {search.bound:.4g}, but its output is {exec_text(current)}'s to {distance:.2g} (relative L2, "
        f"under {SAME_RESULT_TOLERANCE:g}): the same attribution summed in another fp32 order, so it counts "
        "as meeting the target"
    )


def batching_turned(search: Search, cand: Candidate, pool: Sequence[Candidate], rest: Sequence[Candidate]) -> bool:
    """Whether the walk along the batching values can stop at `cand` (values come in order, so
    once one is BATCHING_TURN slower than the best so far, the ones past it are slower still).

    Saves the slowest calls of the axis: on resnet18 Occlusion, 64 and 256 perturbations per eval
    took 30 and 40 s against 19 s at 4. The values not run are listed as pruned."""
    ratio = cand.time_estimate_s / min(c.time_estimate_s for c in pool if c is not cand)
    if not rest or ratio <= BATCHING_TURN:
        return False
    prune_past_turn(search, f"{exec_text(cand)} took {ratio:.2f}x the best so far", rest)
    return True


def prune_past_turn(search: Search, what: str, rest: Sequence[Candidate]) -> None:
    search.log(f"    batching: {what}; {len(rest)} value(s) past it not run")
    for skipped in rest:
        search.pruned.append(
            Pruned(
                cell_key(skipped.config),
                f"batching values past a slower one not run: {what} (over {BATCHING_TURN}x), so the axis had turned",
            )
        )


def log_race(search: Search, axis: str, what: str, pool: Sequence[Candidate]) -> None:
    times = ", ".join(f"{exec_text(c)} {c.time_estimate_s:.3g} s" for c in pool)
    search.log(f"    {axis} race ({what} each): {times}")


# --- screening long calls by their model passes ---------------------------------------------


def screens(current: Candidate) -> bool:
    """Whether a whole call is long enough that probing its passes first pays (tune.screen)."""
    return current.time_estimate_s >= SCREEN_ABOVE_S


def pass_time_s(search: Search, cand: Candidate, current: Candidate) -> float:
    """The model-pass time of one whole call of `cand` (tune.screen), probed once per configuration."""
    cand = search.candidate(cand)
    if cand.identity not in search.passes_s:
        chunk = chunk_rows(search.spec, cand.config.knobs, search.cost_input(cand.config))
        search.passes_s[cand.identity] = search.measurer.predict(cand, chunk, PROBE_SHARE * current.time_estimate_s)
    return search.passes_s[cand.identity]


def model_calls(search: Search, config: RunConfig) -> int:
    chunk = chunk_rows(search.spec, config.knobs, search.cost_input(config))
    return max(1, math.ceil(search.total_rows(config) / chunk))


def screen(search: Search, axis: str, current: Candidate, candidates: Sequence[Candidate]) -> list[Candidate]:
    """The axis's neighbours worth a whole call: the one predicted fastest, if it beats the current
    setting's prediction. Compiled candidates are not probed (a probe would compile); those over the
    memory budget, or whose probe breaks, are left for the race to run and record. The rest are
    listed as pruned, with predictions.

    A prediction is the candidate's model passes plus what the passes leave out (Captum building
    perturbed inputs, hooks, Python), measured on the current setting's call and charged per model
    call, since batching changes how many calls there are. Without it, resnet18 Occlusion's passes
    ranked 1 perturbation per eval (19.9 s) ahead of 4 and 16 (21.9, 21.8 s), while its call took
    25.5 s: 5.6 s, 7.7 ms per model call, outside the passes."""
    try:
        current_passes = pass_time_s(search, current, current)
    except Exception as exc:  # a probe that breaks: fall back to whole calls, and say so
        search.notes.append(f"{axis}: model passes could not be timed ({type(exc).__name__}: {exc}); whole calls raced")
        return list(candidates)
    per_call = max(0.0, current.time_estimate_s - current_passes) / model_calls(search, current.config)

    def whole_call_s(cand: Candidate) -> float:
        return pass_time_s(search, cand, current) + per_call * model_calls(search, cand.config)

    baseline = whole_call_s(current)
    probed: list[Candidate] = []
    unprobed: list[Candidate] = []
    for index, cand in enumerate(candidates):
        if cand.compiled or not search.fits(cand):
            unprobed.append(cand)
            continue
        if search.out_of_time(PROBE_SHARE * current.time_estimate_s):
            break
        best_so_far = min([baseline] + [c.predicted_s for c in probed])
        cand = search.candidate(cand)
        try:
            cand.predicted_s = whole_call_s(cand)
        except Exception:  # its whole call will record why it fails
            unprobed.append(cand)
            continue
        probed.append(cand)
        ratio = cand.predicted_s / best_so_far
        rest = candidates[index + 1 :]
        if axis == "batching" and rest and ratio > BATCHING_TURN:
            prune_past_turn(search, f"{exec_text(cand)} is predicted {ratio:.2f}x the best so far", rest)
            break
    probed.sort(key=lambda c: c.predicted_s)
    keep = probed[:1] if probed and probed[0].predicted_s < baseline else []
    if probed:
        search.log(
            f"    {axis} predicted from model passes (+ {per_call * 1e3:.3g} ms a model call outside them): "
            f"{exec_text(current)} {baseline:.3g} s (current), "
            + ", ".join(f"{exec_text(c)} {c.predicted_s:.3g} s" for c in probed)
        )
    for cand in probed[len(keep) :]:
        search.pruned.append(
            Pruned.of(
                cand,
                f"ranked out by its model passes: predicted {cand.predicted_s:.3g} s a call, against "
                f"{(keep[0].predicted_s if keep else baseline):.3g} s for {exec_text(keep[0] if keep else current)}",
                predicted_s=cand.predicted_s,
            )
        )
    return keep + unprobed
