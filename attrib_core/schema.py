"""The results format: one versioned writer and reader (torch-free).

A results file is pytest-benchmark JSON (so `pytest-benchmark compare` reads it) with
attrib-bench's own parts in `machine_info.attrib_bench` (run) and in each record's
`extra_info` (cell). The suite writes through `run_block`, `cell_identity`, `record_group`,
`record_params`, `failed_record` and `document`; every reader goes through `read`, which
validates and brings older versions up to the current one. Change the format only here, bump
`SCHEMA_VERSION` and say what changed in `FORMAT_HISTORY`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict

SCHEMA_VERSION = 2
FORMAT_HISTORY = {
    1: "2026-11-28. machine_info.attrib_bench = {schema_version, preset, preset_sha256, devices, environment}; "
    "each record's extra_info = {schema_version, cell_key, cell, status, error, resolved_knobs, passes, calibration, "
    "memory, fidelity, weights, threads, phase_s, timing}; records have group None and params {'cell': RunConfig} "
    "(pytest-benchmark wrote UNSERIALIZABLE[...] for them).",
    2: "2026-11-29. Files are assembled from a per-cell journal: machine_info.attrib_bench.run = {started, "
    "finished, complete, journal, resumed: [{at, cells_before}]}; records have group '<workload>/<method>' and "
    "params {'cell_key': '<cell key>'}; cells without timing rounds (failed, not applicable) move from "
    "`benchmarks` to machine_info.attrib_bench.untimed, so `pytest-benchmark compare` reads the file; "
    "commit_info is taken once, at the start of the run, and the file name's commit is that commit. Version-1 "
    "files are read as version 2 with run = {}, groups and params filled in and untimed records moved. "
    "The run dict also carries `code` (commit, uncommitted-changes hash), `shard` {index, of, sweep_id, ...} "
    "for a shard of a sweep, and `merged` {shards: [...]} for a merged run (additions, same version).",
}
STATUSES = ("ok", "failed", "not_applicable", "incomplete")
CELL_FIELDS = ("workload", "method", "device", "batch_size", "precision", "memory_format", "knobs", "seed")


class ResultsError(ValueError):
    """A results file that cannot be read as attrib-bench output; the message names the file."""


class CellIdentity(TypedDict):
    """The fields of a cell key, as stored in `extra_info.cell`."""

    workload: str
    method: str
    device: str
    batch_size: int
    precision: str
    memory_format: str
    knobs: dict[str, Any]
    seed: int


class RunBlock(TypedDict, total=False):
    """`machine_info.attrib_bench`."""

    schema_version: int
    preset: str
    preset_sha256: str
    devices: list[str]
    environment: dict[str, Any]
    run: dict[str, Any]


# --- writing --------------------------------------------------------------------------------


def now_utc() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def run_block(
    preset: str, preset_sha256: str, devices: Sequence[str], environment: Mapping[str, Any], **run: Any
) -> RunBlock:
    """What a run records about itself (goes into machine_info.attrib_bench)."""
    return RunBlock(
        schema_version=SCHEMA_VERSION,
        preset=preset,
        preset_sha256=preset_sha256,
        devices=list(devices),
        environment=dict(environment),
        run=dict(run),
    )


def cell_identity(**fields: Any) -> CellIdentity:
    missing = [name for name in CELL_FIELDS if name not in fields]
    if missing:
        raise ValueError(f"a cell needs {', '.join(CELL_FIELDS)}; missing: {', '.join(missing)}")
    return CellIdentity(**{name: fields[name] for name in CELL_FIELDS})


def jsonable_knobs(knobs: Mapping[str, Any]) -> dict[str, Any]:
    """Knob values as JSON holds them (tuples, such as window shapes, become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in knobs.items()}


def cell_record(config: Any) -> CellIdentity:
    """The identifying part of a record, from a RunConfig (anything with its fields): the cell key's fields."""
    fields = {name: getattr(config, name) for name in CELL_FIELDS if name != "knobs"}
    return cell_identity(**fields, knobs=jsonable_knobs(config.knobs))


def record_group(cell: Mapping[str, Any]) -> str:
    """pytest-benchmark's group: one table per workload and method in `pytest-benchmark compare`."""
    return f"{cell['workload']}/{cell['method']}"


def record_params(cell_key: str) -> dict[str, str]:  # as pytest's parametrize of `cell_key` gives
    """pytest-benchmark's params, kept JSON-serialisable: the cell key stands for the RunConfig."""
    return {"cell_key": cell_key}


def failed_record(name: str, fullname: str, cell_key: str, extra_info: Mapping[str, Any]) -> dict[str, Any]:
    """A record for a cell with no timing rounds (failed or not applicable before timing)."""
    return {
        "group": record_group(extra_info["cell"]),
        "name": name,
        "fullname": fullname,
        "params": record_params(cell_key),
        "param": cell_key,
        "extra_info": dict(extra_info),
        "options": {},
        "stats": None,
    }


def document(
    machine_info: Mapping[str, Any],
    commit_info: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    pytest_benchmark_version: str,
) -> dict[str, Any]:
    """A complete results file, in pytest-benchmark's layout; cells with no rounds go to
    machine_info.attrib_bench.untimed (pytest-benchmark's readers need stats in every record)."""
    machine_info = {**machine_info, "attrib_bench": dict(machine_info["attrib_bench"])}
    machine_info["attrib_bench"]["untimed"] = [dict(r) for r in records if not r.get("stats")]
    return {
        "machine_info": machine_info,
        "commit_info": dict(commit_info),
        "benchmarks": [dict(r) for r in records if r.get("stats")],
        "datetime": now_utc(),
        "version": pytest_benchmark_version,
    }


def dumps(data: Any) -> str:
    """JSON text; NaN and Inf (not JSON) become null."""
    return json.dumps(_finite(data), indent=1, default=str)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


# --- reading --------------------------------------------------------------------------------


def read(path: str | Path) -> dict[str, Any]:
    """A results file, validated and upgraded to SCHEMA_VERSION; ResultsError names what is wrong."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such results file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: cannot be read ({exc})") from None
    if not text.strip():
        raise ResultsError(f"{path}: empty file (a run killed before it finished? its .journal.jsonl can be resumed)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}: not valid JSON, truncated or corrupt ({exc})") from None
    return validate(data, path)


def validate(data: Any, path: Path) -> dict[str, Any]:
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list) or "machine_info" not in data:
        raise ResultsError(f"{path}: not pytest-benchmark output (no 'benchmarks' list / 'machine_info')")
    meta = data["machine_info"].get("attrib_bench") if isinstance(data["machine_info"], dict) else None
    if not isinstance(meta, dict):
        raise ResultsError(f"{path}: pytest-benchmark output, but not from attrib-bench (no machine_info.attrib_bench)")
    version = meta.get("schema_version")
    if not isinstance(version, int) or version not in FORMAT_HISTORY:
        newer = isinstance(version, int) and version > SCHEMA_VERSION
        hint = "; it was written by a newer attrib-bench: upgrade to read it" if newer else ""
        raise ResultsError(
            f"{path}: schema version {version!r} is not supported; supported: {sorted(FORMAT_HISTORY)}{hint}"
        )
    if not isinstance(meta.get("untimed", []), list):
        raise ResultsError(f"{path}: machine_info.attrib_bench.untimed is not a list")
    for index, record in enumerate([*data["benchmarks"], *meta.get("untimed", [])]):
        extra = record.get("extra_info") if isinstance(record, dict) else None
        if not isinstance(extra, dict) or "cell" not in extra or "cell_key" not in extra:
            name = record.get("name") if isinstance(record, dict) else record
            raise ResultsError(f"{path}: record #{index} ({name!r}) has no attrib-bench cell in extra_info")
        if extra.get("status", "incomplete") not in STATUSES:
            raise ResultsError(
                f"{path}: record {extra['cell_key']!r} has status {extra['status']!r}; valid: {STATUSES}"
            )
    if version < SCHEMA_VERSION:
        data = _upgrade_from_1(data)
    return data


def _upgrade_from_1(data: dict[str, Any]) -> dict[str, Any]:
    meta = data["machine_info"]["attrib_bench"]
    meta.setdefault("run", {})
    meta["schema_version_read_from"] = meta["schema_version"]
    meta["schema_version"] = SCHEMA_VERSION
    for record in data["benchmarks"]:
        extra = record["extra_info"]
        record["group"] = record.get("group") or record_group(extra["cell"])
        record["params"] = record_params(extra["cell_key"])
    meta["untimed"] = [r for r in data["benchmarks"] if not r.get("stats")]
    data["benchmarks"] = [r for r in data["benchmarks"] if r.get("stats")]
    return data


def records(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every cell of a (read) results file: timed ones, then those without rounds."""
    return [*data["benchmarks"], *data["machine_info"]["attrib_bench"].get("untimed", [])]
