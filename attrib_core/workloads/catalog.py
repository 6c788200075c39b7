"""The workload catalog: names and references -> specs -> built workloads, once per process.

A name is a registered workload (the built-ins register when imported), or a reference that is
resolved and registered on first use: `torchvision:<model>` (zoo.py), `hf:<id or folder>` (hf.py) or a user's plug-in
(`file.py:factory`, `package.module:factory`, an entry point; plugins.py). This module is the
only one that knows every kind, so the contract (base.py), the plug-in loader and the zoo need
not know each other.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from attrib_core.registry import UnknownNameError
from attrib_core.workloads.base import WORKLOADS, Workload, WorkloadSpec
from attrib_core.workloads.hf import hf_spec
from attrib_core.workloads.plugins import check_declared, parse_reference, plugin_spec, unknown_workload_message
from attrib_core.workloads.traits import Traits, observe_traits
from attrib_core.workloads.zoo import zoo_spec


def resolve_reference(
    reference: str,
    *,
    key: str | None = None,
    base_dir: Path | None = None,
    origin: str = "",
    args: Mapping[str, Any] | None = None,
    declared: Mapping[str, Any] | None = None,
) -> WorkloadSpec:
    """Register (or reuse) the spec that `reference` names, under `key` (default: the reference
    itself). A plug-in declared again with another definition replaces the earlier one."""
    key = key or reference
    ref = parse_reference(reference, base_dir)
    if ref is None:
        raise UnknownNameError(unknown_workload_message(reference))
    declared = dict(declared or {})
    args = dict(args or {})
    check_declared(declared, origin or f"workload {key!r}")
    definition = {"reference": ref.describe(), "args": args, "declared": declared}
    existing = WORKLOADS.get(key) if key in WORKLOADS else None
    if existing is not None:
        if existing.source == "builtin":
            raise ValueError(f"{origin or key}: {key!r} is a built-in workload; give the plug-in another name")
        if existing.definition == definition:
            return existing
    origin = origin or f"workload {key!r}"
    if ref.kind == "torchvision":
        spec = zoo_spec(key, ref.target, args, declared, origin, definition)
    elif ref.kind == "huggingface":
        spec = hf_spec(key, ref.target, args, declared, origin, definition)
    else:
        spec = plugin_spec(key, ref, args, declared, origin, definition)
    if existing is None:
        WORKLOADS.register(key, spec)
    else:
        WORKLOADS.replace(key, spec)
    return spec


def check_workloads(names: list[str]) -> None:
    """Build every torchvision / plug-in workload now and check its contract (raising
    WorkloadContractError naming the preset key), so a broken plug-in stops the run before
    its first cell. Built-ins are built lazily, by the first cell that needs them."""
    for name in names:
        if workload_spec(name).source != "builtin":
            load_workload(name)


_BUILT: dict[int, tuple[WorkloadSpec, Workload]] = {}


def workload_spec(name: str) -> WorkloadSpec:
    """The registered spec, or a `torchvision:` / plug-in reference resolved and registered now
    (importing nothing from the user and building nothing)."""
    if name not in WORKLOADS:
        resolve_reference(name)
    return WORKLOADS.get(name)


def load_workload(name: str) -> Workload:
    """Build (once per process and definition) the named workload."""
    spec = workload_spec(name)
    if id(spec) not in _BUILT:
        _BUILT[id(spec)] = (spec, spec.build())
    return _BUILT[id(spec)][1]


def is_built(name: str) -> bool:
    """Whether load_workload(name) would return at once (without training or downloading)."""
    try:
        return id(workload_spec(name)) in _BUILT
    except Exception:  # an unknown name is not built
        return False


@functools.cache
def _observed(spec_id: int) -> Traits:
    spec, workload = _BUILT[spec_id]
    return observe_traits(workload, spec.traits.not_applicable)


def observed_spec(name: str) -> WorkloadSpec:
    """The spec with the traits observed on the built model (what prepare() trusts)."""
    spec = workload_spec(name)
    load_workload(name)
    return dataclasses.replace(spec, traits=_observed(id(spec)))
