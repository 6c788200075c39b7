"""One side's long-lived timing process in an A/B session (attrib_core/ab/session.py starts it).

Run as a script with cwd and PYTHONPATH set to the side's source tree, so `attrib_core`
is that side's code (a worktree of a revision, or the working tree). JSON lines in on
stdin, one JSON line out on stdout per request; everything else (warnings, logs) goes
to stderr, so the protocol stays clean.

Requests ({"op": ...}), each answered {"ok": true, ...} or {"ok": false, "error": str}:
  list     {"preset", "set": {field: value}, "match_fields": [...]}  -> {"cells": [...], "environment", ...}
           the preset's cells with the side's settings applied; "match_key" is the cell key with
           the fields either side sets replaced by "*", so the two sides' cells can be paired
  time     {"key", "rounds"}   -> {"samples_s": [...]} (the cell is prepared and warmed up on
           its first request, then kept: later blocks time the call only)
  estimate {"key"}             -> {"call_s": median of a few warm calls, "info": the cell's info}
  profile  {"key"}             -> {"info": {calibration, memory, fidelity}} (once per side)
  quit
It only uses the core's stable API (run.prepare, measure.synchronized, sweep.load_preset,
bench.cells' record helpers) and says which one is missing when a side's code lacks it.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

# Started by path, so this folder is first on sys.path: drop it, the side's tree decides the imports.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

WARM_CALLS = 3  # timed calls after warm-up, for the block-size estimate
RUN_FIELDS = ("device", "batch_size", "precision", "memory_format")  # RunConfig fields a side may set
PROCESS_FIELDS = ("threads",)


class MissingAPI(RuntimeError):
    """The side's attrib_core lacks something this worker needs."""


def _need(module: str, *names: str):
    """Import `names` from the side's `module`, or say which is missing and where it was looked for."""
    try:
        mod = __import__(module, fromlist=list(names) or ["__name__"])
    except ImportError as exc:
        raise MissingAPI(f"the side's code has no module {module} ({exc}); looked in {sys.path[:3]}") from None
    missing = [n for n in names if not hasattr(mod, n)]
    if missing:
        raise MissingAPI(f"the side's {module} ({getattr(mod, '__file__', '?')}) lacks {', '.join(missing)}")
    return [getattr(mod, n) for n in names] if names else mod


def _need_moved(modules: tuple[str, ...], *names: str):
    """`_need` from the first of `modules` the side's code has: a module that moved between
    revisions (the suite into attrib_core.suite, the presets into attrib_core) is found on both sides."""
    for module in modules[:-1]:
        try:
            return _need(module, *names)
        except MissingAPI:
            continue
    return _need(modules[-1], *names)


SUITE_CELLS = ("attrib_core.suite.cells", "bench.cells")  # the newer layout first
CELL_RECORD = ("attrib_core.schema", "bench.cells")
PRESETS = ("attrib_core.sweep", "bench")


class Worker:
    def __init__(self) -> None:
        self.cells: dict[str, object] = {}  # key -> RunConfig
        self.prepared: dict[str, tuple] = {}  # key -> (call, prepared, info, first result)
        self.preset = None

    # --- ops ------------------------------------------------------------------------------
    def op_list(self, req: dict) -> dict:
        import dataclasses

        (load_preset, cell_key) = _need("attrib_core.sweep", "load_preset", "cell_key")
        (environment, set_threads) = _need("attrib_core.measure", "environment", "set_threads")
        (available_devices,) = _need("attrib_core.devices", "available_devices")
        (preset_dir,) = _need_moved(PRESETS, "PRESET_DIR")
        settings = dict(req.get("set") or {})
        unknown = sorted(set(settings) - set(RUN_FIELDS) - set(PROCESS_FIELDS))
        if unknown:
            valid = ", ".join(RUN_FIELDS + PROCESS_FIELDS)
            raise ValueError(f"cannot set {', '.join(unknown)} on a side; valid settings: {valid}")
        self.preset = load_preset(req["preset"], preset_dir)
        env = environment()
        threads = int(settings.get("threads") or self.preset.timing.threads or env["cpu_physical_cores"] or 1)
        set_threads(threads)
        devices = tuple(available_devices())
        (cell_record,) = _need_moved(CELL_RECORD, "cell_record")
        cells = []
        for config in self.preset.cells(devices):
            run_settings = {k: v for k, v in settings.items() if k in RUN_FIELDS}
            config = dataclasses.replace(config, **run_settings)
            wildcards = {f: "*" for f in req.get("match_fields", []) if f in RUN_FIELDS}
            key = cell_key(config)
            self.cells[key] = config
            cells.append(
                {
                    "key": key,
                    "match_key": cell_key(dataclasses.replace(config, **wildcards)),
                    "cell": cell_record(config),
                }
            )
        return {
            "cells": cells,
            "environment": {**environment(), "threads_set": threads},
            "preset": {"name": self.preset.name, "sha256": self.preset.sha256, "timing": vars(self.preset.timing)},
            "devices": list(devices),
            "attrib_core": sys.modules["attrib_core"].__file__,
        }

    def _prepared(self, key: str) -> tuple:
        if key in self.prepared:
            return self.prepared[key]
        if key not in self.cells:
            raise ValueError(f"unknown cell {key!r}; this side has {len(self.cells)} cells (op 'list' first)")
        from dataclasses import asdict

        import torch

        (prepare,) = _need("attrib_core.run", "prepare")
        (synchronized, synchronize) = _need("attrib_core.measure", "synchronized", "synchronize")
        (cell_record,) = _need_moved(CELL_RECORD, "cell_record")
        config = self.cells[key]
        prepared = prepare(config)
        info = {
            "cell_key": key,
            "cell": cell_record(config),
            "method_kind": prepared.spec.kind,
            "method_family": prepared.spec.family,
            "resolved_knobs": {k: list(v) if isinstance(v, tuple) else v for k, v in prepared.knobs.items()},
            "knob_labels": {n: prepared.spec.knob_labels[n] for n in prepared.knobs if n in prepared.spec.knob_labels},
            "weights": prepared.workload.weights,
            "passes": asdict(prepared.passes),
            "threads": torch.get_num_threads(),
        }
        for field in ("injected_model_slowdown", "injected_method_slowdown"):
            if getattr(prepared, field, 1.0) != 1.0:
                info[field] = getattr(prepared, field)
        call = synchronized(prepared, config.device)
        synchronize(config.device)
        first = call()
        if not torch.isfinite(first.attributions).all():
            raise ValueError(f"{key}: attributions contain NaN or Inf")
        for _ in range(max(1, self.preset.timing.warmup_rounds)):
            call()
        self.prepared[key] = (call, prepared, info, first)
        return self.prepared[key]

    def op_estimate(self, req: dict) -> dict:
        """Prepare and warm up the cell; with "calls" > 0 (default 3) also time that many calls."""
        call, _, info, _ = self._prepared(req["key"])
        samples = self._time(call, int(req.get("calls", WARM_CALLS)))
        return {"call_s": sorted(samples)[len(samples) // 2] if samples else None, "info": info}

    def op_time(self, req: dict) -> dict:
        call = self._prepared(req["key"])[0]
        return {"samples_s": self._time(call, int(req["rounds"]))}

    @staticmethod
    def _time(call, rounds: int) -> list[float]:
        samples = []
        clock = time.perf_counter
        for _ in range(rounds):
            started = clock()
            call()
            samples.append(clock() - started)
        return samples

    def op_profile(self, req: dict) -> dict:
        from dataclasses import asdict

        call, prepared, _, first = self._prepared(req["key"])
        (peak_memory,) = _need("attrib_core.measure", "peak_memory")
        (evaluate_fidelity,) = _need("attrib_core.fidelity", "evaluate_fidelity")
        (calibration_cache, meaningful_fidelity) = _need_moved(SUITE_CELLS, "CalibrationCache", "meaningful_fidelity")
        if not hasattr(self, "calibrations"):
            self.calibrations = calibration_cache()
        info = {"calibration": self._calibration(call, prepared)}
        info["memory"] = asdict(peak_memory(prepared, prepared.config.device))
        records = evaluate_fidelity(
            prepared, first, metrics=self.preset.fidelity_metrics, **self.preset.fidelity_options
        )
        info["fidelity"] = meaningful_fidelity(records, prepared.workload.weights)
        return {"info": info}

    def _calibration(self, call, prepared) -> dict:
        """The side's own calibration: the limit over batch sizes up to the rows one call makes
        (CalibrationCache.get(prepared, max_rows)), or, in code from before the limit, the
        calibration at the cell's own batch (get(prepared))."""
        import inspect

        get = self.calibrations.get
        if len(inspect.signature(get).parameters) < 2:
            return get(prepared)
        (rows_per_call,) = _need("attrib_core.limit", "rows_per_call")
        with rows_per_call(prepared.workload_model) as rows:
            call()
        return get(prepared, max(rows, default=prepared.config.batch_size))


def main() -> int:
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything printed (by Python or C code) goes to stderr, not into the protocol
    sys.stdout = sys.stderr
    worker = Worker()
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            op = req.get("op")
            if op == "quit":
                out.write(json.dumps({"ok": True}) + "\n")
                return 0
            handler = getattr(worker, f"op_{op}", None)
            if handler is None:
                raise ValueError(f"unknown op {op!r}; valid: list, estimate, time, profile, quit")
            reply = {"ok": True, **handler(req)}
        except Exception as exc:  # answered, not raised: the driver decides (a failing cell is recorded)
            traceback.print_exc(file=sys.stderr)
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "missing_api": isinstance(exc, MissingAPI)}
        out.write(json.dumps(reply, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
