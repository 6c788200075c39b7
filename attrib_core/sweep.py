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
from attrib_core.fidelity_metrics import FidelityOptions
from attrib_core.methods import METHODS, get_method
from attrib_core.registry import UnknownNameError
from attrib_core.run import MEMORY_FORMATS, PRECISIONS, FrozenKnobs, RunConfig
from attrib_core.workloads import WORKLOADS

PRESET_DIR = Path(__file__).resolve().parent.parent / "bench" / "presets"
DEVICES = ("cpu", "cuda")
AXES = ("workload", "method", "device", "batch_size", "precision", "memory_format")
TOP_LEVEL = {"name", "description", "timing", "fidelity", "sweep", "seed"}
TIMING_KEYS = {"min_rounds", "max_rounds", "max_time_s", "warmup_rounds", "threads"}
FIDELITY_KEYS = {"metrics", "options"}


class PresetError(ValueError):
    """A preset that cannot be used; the message names the file and the bad key."""


@dataclass(frozen=True)
class Timing:
    min_rounds: int = 5
    max_rounds: int = 50
    max_time_s: float = 1.0  # time budget for the measured rounds of one cell
    warmup_rounds: int = 1
    threads: int | None = None  # None: torch's default


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


def cell_key(config: RunConfig) -> str:
    """Stable, readable, -k friendly: workload-method-device-bN-precision-format[-knob=value...].

    Cells carry fully resolved knobs, so a default spelled out and a default left implicit
    give one key; knobs set to None ("not used", e.g. no internal batching) are left out.
    """
    knobs = "-".join(f"{k}={_fmt(v)}" for k, v in sorted(config.knobs.items()) if v is not None)
    parts = [config.workload, config.method, config.device, f"b{config.batch_size}", config.precision]
    parts.append(config.memory_format)
    return "-".join(parts) + (f"-{knobs}" if knobs else "")


def _fmt(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return "x".join(map(str, value))
    return str(value)


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def load_preset(name_or_path: str | Path) -> Preset:
    """A bundled preset by name (bench/presets/<name>.toml) or any TOML file by path."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = PRESET_DIR / f"{name_or_path}.toml"
        if not path.is_file():
            raise PresetError(f"unknown preset {str(name_or_path)!r}; known: {', '.join(preset_names())}")
    if not path.is_file():
        raise PresetError(f"preset file {str(path)!r} does not exist")
    raw_bytes = path.read_bytes()
    try:
        raw = tomllib.loads(raw_bytes.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PresetError(f"{path}: not valid TOML: {exc}") from None
    _only(path, "top level", raw, TOP_LEVEL)
    timing = raw.get("timing", {})
    _only(path, "[timing]", timing, TIMING_KEYS)
    fidelity = raw.get("fidelity", {})
    _only(path, "[fidelity]", fidelity, FIDELITY_KEYS)
    groups = raw.get("sweep")
    if not groups or not isinstance(groups, list):
        raise PresetError(f"{path}: needs at least one [[sweep]] group")
    preset = Preset(
        name=str(raw.get("name", path.stem)),
        path=path,
        description=str(raw.get("description", "")),
        timing=Timing(**timing),
        fidelity_metrics=tuple(fidelity.get("metrics", DEFAULT_METRICS)),
        fidelity_options=fidelity.get("options", {}),
        groups=tuple(_normalise_group(path, i, g) for i, g in enumerate(groups)),
        seed=int(raw.get("seed", 0)),
        sha256=hashlib.sha256(raw_bytes).hexdigest(),
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


def _normalise_group(path: Path, index: int, group: Mapping[str, Any]) -> dict[str, Any]:
    where = f"[[sweep]] #{index + 1}"
    _only(path, where, group, {*AXES, "knobs"})
    defaults = {"device": ["cpu"], "batch_size": [1], "precision": ["fp32"], "memory_format": ["contiguous"]}
    out: dict[str, Any] = {}
    for axis in AXES:
        value = group.get(axis, defaults.get(axis))
        if value is None:
            raise PresetError(f"{path}: {where} needs {axis!r}")
        out[axis] = value if isinstance(value, list) else [value]
    checks = {"workload": WORKLOADS.names(), "device": DEVICES, "precision": PRECISIONS}
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
    from attrib_core.workloads import load_workload

    knob_names = list(group["knobs"])
    for workload in group["workload"]:
        applicable = [m for m in METHODS.names() if get_method(m).applies_to(load_workload(workload))]
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
                resolved = spec.resolve_knobs(load_workload(workload).method_defaults.get(name), chosen)
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
