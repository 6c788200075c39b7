"""Presets: TOML files that declare a sweep (workloads x methods x knobs x devices x batches).

A preset has top-level settings and `[[sweep]]` groups. In a group every axis is a list
of choices and the group expands to their product; `method = "all"` means every method
that applies to the workload. Each resulting cell has a stable key, used as the pytest id,
the JSON record's `cell_key` and the report's row label.
"""

from __future__ import annotations

import hashlib
import itertools
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attrib_core.fidelity import DEFAULT_METRICS, check_metric_names
from attrib_core.fidelity.scores import FidelityOptions
from attrib_core.formatting import knob_value
from attrib_core.methods import METHODS, get_method
from attrib_core.names import ALLOWED, is_safe_name
from attrib_core.registry import UnknownNameError
from attrib_core.run import MEMORY_FORMATS, PRECISIONS, FrozenKnobs, RunConfig
from attrib_core.workloads import WORKLOADS, workload_spec
from attrib_core.workloads.applicability import applies_to
from attrib_core.workloads.catalog import resolve_reference
from attrib_core.workloads.plugins import TABLE_KEYS

PRESET_DIR = Path(__file__).resolve().parent / "presets"  # the presets that ship: smoke, standard, ...
DEVICES = ("cpu", "cuda")
AXES = ("workload", "method", "device", "batch_size", "precision", "memory_format")
TOP_LEVEL = {"name", "description", "timing", "fidelity", "isolation", "sweep", "seed", "workloads"}
TIMING_KEYS = {"min_rounds", "max_rounds", "max_time_s", "target_halfwidth", "warmup_rounds", "threads", "passes"}
FIDELITY_KEYS = {"metrics", "options"}
ISOLATION_KEYS = {"enabled", "cell_timeout_s", "cell_memory_gib"}


class PresetError(ValueError):
    """A preset that cannot be used; the message names the file and the bad key."""


@dataclass(frozen=True)
class Timing:
    min_rounds: int = 5
    max_rounds: int = 50
    max_time_s: float = 1.0  # time budget for the measured rounds of one cell
    # Rounds stop once the 95% interval of their geometric mean is within +-2% of it (after
    # min_rounds; attrib_core/suite/rounds.py). min_rounds = max_rounds gives a fixed count.
    target_halfwidth: float = 0.02
    warmup_rounds: int = 1
    threads: int | None = None  # None: torch's default
    # Passes over the sweep: after the first (every cell measured, in file order), each later
    # pass times every cell again for a block of rounds, in a shuffled order, so the drift of
    # the machine lands between blocks and one run carries its own between-run variation
    # (`compare` of one run against one run gives intervals). 1: no later passes.
    passes: int = 2


@dataclass(frozen=True)
class Isolation:
    """Each cell in its own process, cut at a wall-time and a memory limit (see attrib_core/suite/isolate.py)."""

    enabled: bool = False
    cell_timeout_s: float = 1800.0
    cell_memory_gib: float | None = None  # None: no limit beyond the machine's


# key -> (what a valid value is, check); bool is not accepted where a number is meant
_INT = ("an integer >= {}", lambda v, lo: isinstance(v, int) and not isinstance(v, bool) and v >= lo)
_NUMBER = ("a number > {}", lambda v, lo: isinstance(v, (int, float)) and not isinstance(v, bool) and v > lo)
SETTING_TYPES: dict[str, tuple[tuple[str, Any], Any]] = {
    "min_rounds": (_INT, 1),
    "max_rounds": (_INT, 1),
    "max_time_s": (_NUMBER, 0),
    "target_halfwidth": (_NUMBER, 0),
    "warmup_rounds": (_INT, 0),
    "threads": (_INT, 1),
    "passes": (_INT, 1),
    "cell_timeout_s": (_NUMBER, 0),
    "cell_memory_gib": (_NUMBER, 0),
    "seed": (_INT, 0),
}


def _typed(path: Path, where: str, table: Mapping[str, Any]) -> dict[str, Any]:
    """The table's values, each checked against SETTING_TYPES (the key and the bad value named)."""
    for key, value in table.items():
        if key == "enabled":
            if not isinstance(value, bool):
                raise PresetError(f"{path}: {where} {key} = {value!r} must be true or false")
            continue
        (what, ok), lower = SETTING_TYPES[key]
        if not ok(value, lower):
            raise PresetError(f"{path}: {where} {key} = {value!r} must be {what.format(lower)}")
    return dict(table)


@dataclass(frozen=True)
class Preset:
    name: str
    path: Path
    description: str
    timing: Timing
    fidelity_metrics: tuple[str, ...]
    fidelity_options: Mapping[str, Any]
    groups: tuple[Mapping[str, Any], ...]
    seed: int = 0
    sha256: str = ""
    isolation: Isolation = Isolation()

    def cells(self, devices: tuple[str, ...]) -> list[RunConfig]:
        """All cells on the given (available) devices, in file order, without duplicates."""
        seen: dict[str, RunConfig] = {}
        for group in self.groups:
            for config in _expand(group, self.seed):
                if config.device in devices:
                    seen.setdefault(cell_key(config), config)
        return list(seen.values())

    def devices_requested(self) -> set[str]:
        return {d for group in self.groups for d in group["device"]}

    def workload_names(self) -> list[str]:
        """Every workload the preset's groups name, in file order."""
        return list(dict.fromkeys(w for group in self.groups for w in group["workload"]))


def cell_key(config: RunConfig) -> str:
    """Stable, readable, -k friendly: workload-method-device-bN-precision-format[-knob=value...].

    Cells carry fully resolved knobs, so a default spelled out and a default left implicit
    give one key; knobs set to None ("not used", e.g. no internal batching) are left out.
    """
    knobs = "-".join(f"{k}={knob_value(v)}" for k, v in sorted(config.knobs.items()) if v is not None)
    parts = [config.workload, config.method, config.device, f"b{config.batch_size}", config.precision]
    parts.append(config.memory_format)
    return "-".join(parts) + (f"-{knobs}" if knobs else "")


def preset_names(preset_dir: Path) -> list[str]:
    return sorted(p.stem for p in preset_dir.glob("*.toml"))


def load_preset(name_or_path: str | Path, preset_dir: Path | None = None) -> Preset:
    """A preset by name (`<preset_dir>/<name>.toml`, the suite passes its own folder) or any
    TOML file by path. The core knows no folder of presets itself."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        if not is_safe_name(str(name_or_path)):  # a name, not a path: it must not reach outside preset_dir
            raise PresetError(
                f"preset {str(name_or_path)!r} is neither a .toml file nor a name; a name allows {ALLOWED}"
            )
        known = preset_names(preset_dir) if preset_dir is not None else []
        path = (preset_dir or Path()) / f"{name_or_path}.toml"
        if not path.is_file():
            valid = ", ".join(known) if known else "none: give a path to a .toml file"
            raise PresetError(f"unknown preset {str(name_or_path)!r}; known: {valid}")
    if not path.is_file():
        raise PresetError(f"preset file {str(path)!r} does not exist")
    raw_bytes = path.read_bytes()
    try:
        raw = tomllib.loads(raw_bytes.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PresetError(f"{path}: not valid TOML: {exc}") from None
    _only(path, "top level", raw, TOP_LEVEL)
    for table_name in ("timing", "fidelity", "isolation"):
        if not isinstance(raw.get(table_name, {}), dict):
            raise PresetError(f"{path}: {table_name} must be a table ([{table_name}]), got {raw[table_name]!r}")
    timing = raw.get("timing", {})
    _only(path, "[timing]", timing, TIMING_KEYS)
    timing = _typed(path, "[timing]", timing)
    if timing.get("max_rounds", Timing.max_rounds) < timing.get("min_rounds", Timing.min_rounds):
        raise PresetError(f"{path}: [timing] max_rounds = {timing['max_rounds']} is below min_rounds")
    fidelity = raw.get("fidelity", {})
    _only(path, "[fidelity]", fidelity, FIDELITY_KEYS)
    metrics = fidelity.get("metrics", list(DEFAULT_METRICS))
    if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
        raise PresetError(f"{path}: [fidelity] metrics = {metrics!r} must be a list of metric names")
    isolation = raw.get("isolation", {})
    _only(path, "[isolation]", isolation, ISOLATION_KEYS)
    isolation = _typed(path, "[isolation]", isolation)
    if "seed" in raw:
        _typed(path, "top level", {"seed": raw["seed"]})
    for key in ("name", "description"):
        if key in raw and not isinstance(raw[key], str):
            raise PresetError(f"{path}: {key} = {raw[key]!r} must be a string")
    name = raw.get("name", path.stem)
    if not is_safe_name(name):  # it names the results files and the baseline folder
        where = "name" if "name" in raw else "the file name (no `name = ...` in it)"
        raise PresetError(
            f"{path}: the preset's name {name!r}, from {where}, cannot be part of a file name; allowed: {ALLOWED}"
        )
    groups = raw.get("sweep")
    if not groups or not isinstance(groups, list):
        raise PresetError(f"{path}: needs at least one [[sweep]] group")
    declared = declare_workloads(path, raw.get("workloads", {}))
    preset = Preset(
        name=name,
        path=path,
        description=str(raw.get("description", "")),
        timing=Timing(**timing),
        fidelity_metrics=tuple(fidelity.get("metrics", DEFAULT_METRICS)),
        fidelity_options=fidelity.get("options", {}),
        groups=tuple(_normalise_group(path, i, g, declared) for i, g in enumerate(groups)),
        seed=int(raw.get("seed", 0)),
        sha256=hashlib.sha256(raw_bytes).hexdigest(),
        isolation=Isolation(**isolation),
    )
    try:  # check fidelity settings and expand every cell (knobs resolve) before anything runs
        check_metric_names(preset.fidelity_metrics)
        FidelityOptions.from_mapping(preset.fidelity_options)
        preset.cells(DEVICES)
    except PresetError as exc:
        raise PresetError(f"{path}: {exc}") from None
    except (ValueError, UnknownNameError) as exc:
        raise PresetError(f"{path}: {exc}") from None
    return preset


def _only(path: Path, where: str, table: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise PresetError(f"{path}: unknown key {unknown[0]!r} in {where}; valid: {', '.join(sorted(allowed))}")


def declare_workloads(path: Path, tables: Mapping[str, Any]) -> set[str]:
    """Register each `[workloads.<name>]` table: its factory reference, arguments and static
    metadata. Nothing is imported or built here; the run checks the contract before its first cell."""
    for name, table in tables.items():
        where = f"[workloads.{name}]"
        if not isinstance(table, Mapping):
            raise PresetError(f"{path}: {where} must be a table with a factory, got {table!r}")
        _only(path, where, table, set(TABLE_KEYS))
        if "factory" not in table:
            raise PresetError(f'{path}: {where} needs factory = "..." (e.g. "path/to/file.py:make_workload")')
        declared = {k: v for k, v in table.items() if k not in ("factory", "args")}
        try:
            resolve_reference(
                str(table["factory"]),
                key=name,
                base_dir=path.parent,
                origin=f"{where} in {path}",
                args=table.get("args", {}),
                declared=declared,
            )
        except (ValueError, UnknownNameError) as exc:
            message = str(exc)
            raise PresetError(message if str(path) in message else f"{path}: {where}: {message}") from None
    return set(tables)


def _check_workload(path: Path, where: str, name: Any, declared: set[str]) -> None:
    """A built-in, a table of this preset, or a reference (`torchvision:...`, `file.py:factory`,
    `module:factory`, an entry point) registered now; relative files are taken from the preset's folder."""
    if not isinstance(name, str):
        raise PresetError(f"{path}: {where}: workload {name!r} must be a string")
    if name in declared or (name in WORKLOADS and WORKLOADS.get(name).source == "builtin"):
        return
    try:
        resolve_reference(name, base_dir=path.parent, origin=f"workload {name!r} in {path}")
    except (ValueError, UnknownNameError) as exc:
        raise PresetError(f"{path}: {where}: {exc}") from None


def _normalise_group(path: Path, index: int, group: Mapping[str, Any], declared: set[str]) -> dict[str, Any]:
    where = f"[[sweep]] #{index + 1}"
    _only(path, where, group, {*AXES, "knobs"})
    defaults = {"device": ["cpu"], "batch_size": [1], "precision": ["fp32"], "memory_format": ["contiguous"]}
    out: dict[str, Any] = {}
    for axis in AXES:
        value = group.get(axis, defaults.get(axis))
        if value is None:
            raise PresetError(f"{path}: {where} needs {axis!r}")
        out[axis] = value if isinstance(value, list) else [value]
    for value in out["workload"]:
        _check_workload(path, where, value, declared)
    checks = {"device": DEVICES, "precision": PRECISIONS}
    checks["memory_format"] = MEMORY_FORMATS
    for axis, valid in checks.items():
        for value in out[axis]:
            if value not in valid:
                raise PresetError(f"{path}: {where}: unknown {axis} {value!r}; valid: {', '.join(valid)}")
    for value in out["method"]:
        if value != "all" and value not in METHODS:
            raise PresetError(f"{path}: {where}: unknown method {value!r}; valid: all, {', '.join(METHODS.names())}")
    for value in out["batch_size"]:
        if not isinstance(value, int) or value < 1:
            raise PresetError(f"{path}: {where}: batch_size {value!r} must be a positive integer")
    knobs = group.get("knobs", {})
    for name, choices in knobs.items():
        if not isinstance(choices, list):
            raise PresetError(f"{path}: {where}: knob {name!r} must be a list of choices, got {choices!r}")
    out["knobs"] = {k: [tuple(v) if isinstance(v, list) else v for v in vs] for k, vs in knobs.items()}
    return out


def _expand(group: Mapping[str, Any], seed: int) -> Iterator[RunConfig]:
    """Each method takes the group's knobs it accepts; a knob no method accepts is an error."""
    knob_names = list(group["knobs"])
    for workload in group["workload"]:
        static = workload_spec(workload)  # static metadata: nothing is built or trained here
        applicable = [m for m in METHODS.names() if applies_to(get_method(m), static)]
        names = [n for m in group["method"] for n in (applicable if m == "all" else [m])]
        accepted_anywhere = {k for name in names for k in get_method(name).knob_names}
        for bad in (k for k in knob_names if k not in accepted_anywhere):
            valid = ", ".join(sorted(accepted_anywhere)) or "none"
            raise PresetError(f"unknown knob {bad!r} for {', '.join(names)}; valid knobs: {valid}")
        rest = itertools.product(group["device"], group["batch_size"], group["precision"], group["memory_format"])
        for (device, batch, precision, fmt), name in itertools.product(rest, names):
            spec = get_method(name)
            accepted = [k for k in knob_names if k in spec.knob_names]
            for values in itertools.product(*(group["knobs"][k] for k in accepted)):
                chosen = dict(zip(accepted, values, strict=True))
                resolved = spec.resolve_knobs(spec.workload_defaults(static), chosen)
                yield RunConfig(
                    method=name,
                    workload=workload,
                    device=device,
                    batch_size=batch,
                    knobs=FrozenKnobs(resolved),
                    precision=precision,
                    memory_format=fmt,
                    seed=seed,
                    with_delta=False,
                )
