"""What tune hands back: records of an ordinary results file, its summary, and a Captum snippet.

Every configuration tried becomes a record in the one results schema (attrib_core.schema),
so report and compare read a tune run like any bench run. Search records carry the suffix
`-search` on their cell key (they were timed a few calls each, under the race); the final
comparison's records (default, each step of the path, tuned: timed round-robin in one
window) carry the plain key, plus `-threads=N` / `-compiled` where those execution options
differ from the run's. The tune summary sits in machine_info.attrib_bench.run["tune"].
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from pytest_benchmark.stats import Stats

from attrib_core import limit, measure, schema
from attrib_core.methods import MethodSpec, get_method
from attrib_core.sweep import cell_key
from attrib_core.tune.final import gain_shares
from attrib_core.tune.measurer import Measurer
from attrib_core.tune.records import Candidate, MethodTuning
from attrib_core.tune.request import TuneRequest
from attrib_core.workloads import load_workload

RANDOM_WEIGHTS = "not meaningful: random weights (the error still measures convergence to the reference)"


def tune_key(cand: Candidate, default_threads: int) -> str:
    key = cell_key(cand.config)
    if cand.threads != default_threads:
        key += f"-threads={cand.threads}"
    if cand.compiled:
        key += "-compiled"
    return key if cand.phase == "final" else key + "-search"


TUNE_PAIRED_ROUNDS = 2  # the call first, then last: default's and tuned's efficiency from one window


class Calibrations:
    """The limit (attrib_core.limit: the model's best per-sample pass times over batch sizes up to
    the rows one call makes) per final configuration, for the efficiency column. A compiled
    configuration is held against its compiled model's passes: torch.compile makes the model
    itself faster (shapes_resnet18 forward at 64 rows: 1.69 against 1.89 ms a row), so against
    the eager model's passes a compiled cell read 1.14, above what marks a limit as wrong.

    `paired=True` (default and tuned) then times the call and the limit's passes alternately
    (limit.paired_rounds), as the bench does, so that efficiency compares two figures from one
    window. Without it, the final comparison's median met a limit measured minutes later: the
    tuned shapes_resnet18 Occlusion call took 2.09 s there against 1.70 s in its race, and read 0.79."""

    def __init__(self, measurer: Measurer) -> None:
        self.measurer = measurer
        self.cache: dict[tuple, dict[str, Any]] = {}

    def get(self, cand: Candidate, paired: bool = False) -> dict[str, Any]:
        c = cand.config
        key = (c.workload, c.method, str(c.knobs), c.batch_size, c.device, c.precision, c.memory_format)
        key += (cand.threads, cand.compiled)  # what the call runs on: both change the limit
        if key not in self.cache:
            run = self.measurer.prepared(cand)
            with measure.threads_for(cand.threads):
                self.cache[key] = limit.measure_limit(run, measure.synchronized(run, c.device))
        if paired and (key, "paired") not in self.cache:
            self.cache[(key, "paired")] = {**self.cache[key], "paired": self._paired(cand, self.cache[key])}
        return self.cache[(key, "paired") if paired else key]

    def _paired(self, cand: Candidate, calibration: Mapping[str, Any]) -> dict[str, Any]:
        best = calibration["best_batch_size"]
        with measure.threads_for(cand.threads):
            timer = limit.pass_timer(self.measurer.prepared(cand))
            for kind, batch in best.items():  # this timer's batches are new: warm them as the search did
                limit.warm_up(timer, kind, batch, limit.SearchRule())
            return limit.paired_rounds(lambda: self.measurer.call(cand)[0], timer, best, TUNE_PAIRED_ROUNDS)


def record(
    cand: Candidate,
    spec: MethodSpec,
    weights: str,
    default_threads: int,
    role: str,
    calibration: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """One results-file record for a configuration tried."""
    key = tune_key(cand, default_threads)
    config = cand.config
    cell = schema.cell_record(config)
    fidelity = {}
    if cand.quality is not None:
        fidelity["reference_error"] = {
            "status": "ok" if weights != "random" else "not_meaningful",
            "value": cand.quality.rel_error,
            "spearman": cand.quality.spearman,
            "lower_is_better": True,
            "reason": None if weights != "random" else RANDOM_WEIGHTS,
            "time_s": None,
            "target": "label",
        }
    extra: dict[str, Any] = {
        "schema_version": schema.SCHEMA_VERSION,
        "cell_key": key,
        "cell": cell,
        "status": cand.status,
        "error": cand.error,
        "method_kind": spec.kind,
        "method_family": spec.family,
        "resolved_knobs": schema.jsonable_knobs(config.knobs),
        "knob_labels": {name: spec.knob_labels[name] for name in config.knobs},
        "weights": weights,
        "passes": cand.passes,
        "threads": cand.threads,
        "calibration": dict(calibration) if calibration else None,
        "memory": {
            "peak_bytes": cand.peak_bytes,
            "method": measure.CPU_METHOD if config.device == "cpu" else measure.CUDA_METHOD,
        }
        if cand.peak_bytes is not None
        else None,
        "fidelity": fidelity,
        "timing": {"rounds": len(cand.times_s), "warmup_rounds": 1},
        "tune": {
            "phase": cand.phase,
            "role": role,
            "compiled": cand.compiled,
            "compile_s": cand.compile_s,
            "first_call_s": cand.first_call_s,
            "predicted_peak_bytes": cand.predicted_peak_bytes,
            "predicted_s": cand.predicted_s,
            "meets_target": cand.meets_target,
            "same_result_distance": cand.same_result_distance,
        },
    }
    stats = None
    if cand.times_s:
        collected = Stats()
        for t in cand.times_s:
            collected.update(t)
        stats = {**collected.as_dict(), "data": list(cand.times_s)}
    name = f"tune[{key}]"
    return {
        "group": schema.record_group(cell),
        "name": name,
        "fullname": f"attrib_core.tune::{name}",
        "params": schema.record_params(key),
        "param": key,
        "extra_info": extra,
        "options": {},
        "stats": stats,
    }


def method_records(
    tuning: MethodTuning, finals: Sequence[tuple[str, Candidate]], measurer: Measurer, default_threads: int
) -> list[dict[str, Any]]:
    """Search records (every configuration run) and the final comparison's (with calibration)."""
    spec = get_method(tuning.method)
    weights = load_workload(tuning.default.config.workload).weights
    calibrations = Calibrations(measurer)
    out = []
    for cand in tuning.tried:
        out.append(record(cand, spec, weights, default_threads, "search", None))
    last = len(finals) - 1
    for index, (axis, cand) in enumerate(finals):
        role = "default" if index == 0 else "tuned" if index == last else f"path:{axis}"
        calibration = calibrations.get(cand, paired=role in ("default", "tuned"))
        out.append(record(cand, spec, weights, default_threads, role, calibration))
    return out


def summary(
    tuning: MethodTuning, finals: Sequence[tuple[str, Candidate]], default_threads: int, workload_layer: str
) -> dict[str, Any]:
    """The tune run's answer for one method (machine_info.attrib_bench.run['tune'][method])."""
    default, tuned = finals[0][1], finals[-1][1]
    front = tuning.pareto_front()
    notes = list(tuning.notes)
    if len(finals) > 1 and tuned.median_s >= default.median_s:
        notes.append(
            f"the final comparison found the tuned setting no faster than Captum's default ({tuned.median_s:.3g} s "
            f"against {default.median_s:.3g} s, {len(tuned.times_s)} interleaved calls each): the race's gain did "
            "not hold, so keep the default here or rerun on a quieter machine"
        )
    return {
        "method": tuning.method,
        "target": tuning.target_text,
        "target_bound": tuning.target_bound,
        "reference_resolution": tuning.reference_resolution,
        "default_key": tune_key(default, default_threads),
        "tuned_key": tune_key(tuned, default_threads),
        "path": [{"axis": axis, "key": tune_key(c, default_threads)} for axis, c in finals],
        "speedup": default.median_s / tuned.median_s,
        "gain_shares": gain_shares(finals),
        "pareto_front": [
            {"key": tune_key(c, default_threads), "time_s": c.time_estimate_s, "rel_error": c.quality.rel_error}
            for c in front
        ],
        "pruned": [p.record() for p in tuning.pruned],
        "tried": len(tuning.tried),
        "search_s": tuning.search_s,
        "compile": _compile_note(tuning),
        "memory_models": tuning.memory_models,
        "notes": notes,
        "snippet": snippet(tuned, workload_layer),
    }


def _compile_note(tuning: MethodTuning) -> dict[str, Any]:
    compiled = [c for c in tuning.tried if c.compiled]
    if not compiled:
        return {"tried": False, "works": None, "compile_s": None, "first_call_s": None, "error": None}
    c = compiled[0]
    return {
        "tried": True,
        "works": c.status == "ok",
        "compile_s": c.compile_s,  # None when the budget left no timed call after the compiling first call
        "first_call_s": c.first_call_s,
        "error": c.error,
        "meets_target": c.meets_target,
        "rel_error": c.quality.rel_error if c.quality is not None else None,
        "same_result_distance": c.same_result_distance,  # its output against the eager setting it came from
    }


def document(
    request: TuneRequest,
    results: Sequence[tuple[MethodTuning, Sequence[tuple[str, Candidate]], Measurer]],
    machine_info: Mapping[str, Any],
    commit_info: Mapping[str, Any],
    pytest_benchmark_version: str,
    run: Mapping[str, Any],
) -> dict[str, Any]:
    """The complete results file of a tune run."""
    default_threads = torch.get_num_threads()
    workload = load_workload(request.workload)
    records, summaries = [], {}
    for tuning, finals, measurer in results:
        records.extend(method_records(tuning, finals, measurer, default_threads))
        summaries[tuning.method] = summary(tuning, finals, default_threads, workload.layer_name)
    request_block = {
        "workload": request.workload,
        "methods": list(request.methods),
        "target": dataclasses.asdict(request.target),
        "batch_size": request.batch_size,
        "device": request.device,
        "memory_budget_bytes": request.memory_budget_bytes,
        "time_budget_s": request.time_budget_s,
        "fixed": schema.jsonable_knobs(request.fixed),
        "compile": request.compile,
        "reference_steps": request.reference_steps,
        "final_rounds": request.final_rounds,
    }
    block = schema.run_block(
        "tune", "", [request.device], measure.environment(), **run, tune={"request": request_block, **summaries}
    )
    return schema.document({**machine_info, "attrib_bench": block}, commit_info, records, pytest_benchmark_version)


# --- the snippet ---------------------------------------------------------------------------

SNIPPET_ARGS = {"inputs": "inputs", "target": "target", "baselines": "baselines", "feature_mask": "feature_mask"}


def snippet(cand: Candidate, layer_name: str = "") -> str:
    """A paste-able Captum call with the chosen arguments (model, inputs, target, baselines are the user's)."""
    config = cand.config
    spec = get_method(config.method)
    device = config.device.split(":")[0]
    lines = ["import torch", f"from captum.attr import {_imports(spec)}", ""]
    lines.append("# model, inputs, target" + (", baselines" if spec.baselines != "none" else "") + ": yours")
    lines.append(f"torch.set_num_threads({cand.threads})")
    lines.append("model = model.eval()")
    if config.memory_format == "channels_last":
        lines.append("model = model.to(memory_format=torch.channels_last)")
        lines.append("inputs = inputs.to(memory_format=torch.channels_last)")
    forward = "model"
    if cand.compiled:
        lines.append("model = torch.compile(model)  # the first call compiles (seconds to minutes)")
    if config.precision != "fp32":
        dtype = {"bf16": "torch.bfloat16", "fp16": "torch.float16"}[config.precision]
        lines += [
            "",
            "",
            "def forward(x):",
            f'    with torch.autocast("{device}", dtype={dtype}):',
            "        return model(x).float()",
            "",
            "",
        ]
        forward = "forward"
    lines.append(f"explainer = {_constructor(spec, forward, layer_name)}")
    args = [f"{k}={v!r}" for k, v in spec.attribute_kwargs(config.knobs).items() if v is not None]
    call_args = ["inputs"]
    if spec.takes_target:
        call_args.append("target=target")
    if spec.baselines != "none":
        call_args.append("baselines=baselines")
    if spec.uses_feature_mask:
        call_args.append("feature_mask=feature_mask")
    lines.append(f"attributions = explainer.attribute({', '.join(call_args + args)})")
    return "\n".join(lines) + "\n"


def _imports(spec: MethodSpec) -> str:
    names = [spec.captum_class.__name__]
    if spec.inner_class is not None:
        names.append(spec.inner_class.__name__)
    return ", ".join(sorted(set(names)))


def _constructor(spec: MethodSpec, forward: str, layer_name: str) -> str:
    if spec.inner_class is not None:
        return f"{spec.captum_class.__name__}({spec.inner_class.__name__}({forward}))"
    if spec.kind == "feature":
        return f"{spec.captum_class.__name__}({forward})"
    return f"{spec.captum_class.__name__}({forward}, model.get_submodule({layer_name!r}))"
