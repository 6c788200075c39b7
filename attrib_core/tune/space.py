"""What `tune` searches for one method: its fidelity settings and its speed axes.

Built from the method registry (a knob's `batching` flag says it only groups rows into
calls), so a new method gets a search space without a line here unless it has a new kind of
fidelity knob. Fidelity knobs change the value (steps, integration rule, samples, window);
speed axes never do in exact arithmetic (batching, memory format, threads, compile) except
precision, whose error is checked like any fidelity knob's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from attrib_core.methods import IG_METHODS, KnobError, MethodSpec

# integration rules tried; riemann_left / right are first-order like middle but biased, so left out
RULES_TRIED = ("gausslegendre", "riemann_trapezoid", "riemann_middle")
STEP_LADDER = (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128)
EXECUTION_AXES = ("precision", "memory_format", "threads", "compile")


def _steps(default: int) -> list[int]:
    """Fewer steps than the default (that is where time is saved), the default, and a little more."""
    return sorted({s for s in STEP_LADDER if s <= max(64, default)} | {default})


def _samples(default: int) -> list[int]:
    return sorted({2**i for i in range(int(math.log2(max(default, 1))) + 2)} | {default})


def _rules(default: str) -> list[str]:
    return list(dict.fromkeys([default, *RULES_TRIED]))


# fidelity knob name -> the values tried, from its (resolved) default; knobs not here keep their value
FIDELITY_LADDERS: dict[str, Callable[[Any], list[Any]]] = {
    "n_steps": _steps,
    "method": _rules,
    "n_samples": _samples,
    "nt_samples": _samples,
}
# paired knobs searched together: the occlusion window and its stride, scaled by the same factor
WINDOW_KNOBS = ("sliding_window_shapes", "strides")
WINDOW_SCALES = (1, 2)  # 2: a window twice as wide at twice the stride, about 4x fewer windows on an image


def _scaled_window(knobs: Mapping[str, Any], factor: int, input_shape: Sequence[int]) -> dict[str, tuple[int, ...]]:
    """The window and stride scaled on every dimension the window does not already cover."""
    window, stride = knobs["sliding_window_shapes"], knobs["strides"]
    scaled_w = tuple(w if w >= d else min(d, w * factor) for w, d in zip(window, input_shape, strict=True))
    scaled_s = tuple(s if w >= d else s * factor for s, w, d in zip(stride, window, input_shape, strict=True))
    return {"sliding_window_shapes": scaled_w, "strides": scaled_s}


@dataclass(frozen=True)
class MethodSpace:
    """The settings tune tries for one method."""

    spec: MethodSpec
    default_knobs: dict[str, Any]  # Captum's defaults, the workload's, then the user's fixed knobs
    fixed: frozenset[str]  # knobs the user fixed: never searched
    fidelity_settings: list[dict[str, Any]]  # full knob dicts, batching knobs at their defaults
    chain_knobs: tuple[str, ...]  # choice knobs: settings with equal values form one cheap-to-dear chain
    precisions: tuple[str, ...]
    memory_formats: tuple[str, ...]
    threads: tuple[int, ...]
    compile: bool
    notes: list[str] = field(default_factory=list)

    def chain_key(self, knobs: Mapping[str, Any]) -> tuple:
        return tuple(knobs[k] for k in self.chain_knobs)


def parse_knob_value(text: str) -> Any:
    """A knob value from the command line: None, true/false, an int, a float, a shape (3x15x15 or 3,15,15) or a word."""
    lowered = text.strip().lower()
    if lowered == "none":
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    for separator in ("x", ","):
        parts = lowered.split(separator)
        if len(parts) > 1 and all(p.strip().isdigit() for p in parts):
            return tuple(int(p) for p in parts)
    try:
        return int(lowered)
    except ValueError:
        pass
    try:
        return float(lowered)
    except ValueError:
        return text.strip()


def parse_fixed(items: Sequence[str]) -> dict[str, Any]:
    """`name=value` pairs (the CLI's --fix) as a dict; a malformed one is an error naming it."""
    fixed = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise KnobError(f"--fix {item!r}: expected NAME=VALUE, e.g. n_steps=16 or sliding_window_shapes=3x15x15")
        fixed[name.strip()] = parse_knob_value(value)
    return fixed


def fidelity_settings(
    spec: MethodSpec, default_knobs: Mapping[str, Any], fixed: frozenset[str], input_shape: Sequence[int]
) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """Every combination of the method's searched fidelity knobs (batching knobs at their default)."""
    axes: list[list[dict[str, Any]]] = []
    chain: list[str] = []
    for knob in spec.knobs:
        name = knob.name
        if name in fixed or knob.batching or name not in FIDELITY_LADDERS:
            continue
        if name == "method" and default_knobs[name] not in IG_METHODS:
            continue
        axes.append([{name: v} for v in FIDELITY_LADDERS[name](default_knobs[name])])
        if knob.type == "choice":
            chain.append(name)
    if all(k in spec.knob_names for k in WINDOW_KNOBS) and not fixed & set(WINDOW_KNOBS):
        scaled = [_scaled_window(default_knobs, f, input_shape) for f in WINDOW_SCALES]
        axes.append([dict(s) for s in dict.fromkeys(tuple(s.items()) for s in scaled)])
    settings = [dict(default_knobs)]
    for axis in axes:
        settings = [{**s, **value} for s in settings for value in axis]
    unique = {tuple(sorted((k, v) for k, v in s.items())): s for s in settings}
    return list(unique.values()), tuple(chain)


def valid_settings(spec: MethodSpec, settings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop combinations the method refuses (e.g. a Riemann rule with one step)."""
    kept = []
    for knobs in settings:
        try:
            spec.resolve_knobs(knobs)
        except KnobError:
            continue
        kept.append(knobs)
    return kept


def batching_values(spec: MethodSpec, knobs: Mapping[str, Any], batch_size: int, total_rows: int) -> list[Any]:
    """Values of the method's batching knob worth timing: all rows in one call, then halvings of it.

    Captum's FAQ says "the largest feasible"; the largest is usually fastest, but not always
    on a CPU whose caches a smaller chunk fits, so a few halvings are timed too (memory
    permitting: the memory model prunes the rest before they run).
    """
    if not spec.batching_knobs:
        return []
    name = spec.batching_knobs[0]
    if name == "internal_batch_size":
        sizes = [total_rows // 2**i for i in range(4) if total_rows // 2**i >= 2 * batch_size]
        return [None, *sizes[1:]]
    if name == "perturbations_per_eval":
        evaluations = max(1, total_rows // batch_size - 1)  # the first forward is the unperturbed input
        return sorted({min(evaluations, v) for v in (1, 4, 16, 64, 256)})
    if name == "nt_samples_batch_size":
        samples = knobs.get("nt_samples", 1)
        return [None, *[samples // 2**i for i in range(1, 3) if samples // 2**i >= 1]]
    raise KnobError(f"{spec.name}: tune has no rule for the batching knob {name!r}")


# fidelity knobs set small for the memory probes: memory per row does not depend on them, time does
PROBE_SETTINGS: dict[str, Callable[[Any, Sequence[int]], Any]] = {
    "n_steps": lambda value, shape: min(value, 4),
    "nt_samples": lambda value, shape: min(value, 4),
    "n_samples": lambda value, shape: min(value, 4),
    "sliding_window_shapes": lambda value, shape: tuple(max(1, math.ceil(d / 2)) for d in shape),
    "strides": lambda value, shape: tuple(max(1, math.ceil(d / 2)) for d in shape),
}


def probe_knobs(spec: MethodSpec, knobs: Mapping[str, Any], input_shape: Sequence[int]) -> dict[str, Any]:
    """The method's knobs made cheap for a memory probe (few steps, a few large windows)."""
    probe = {k: PROBE_SETTINGS[k](v, input_shape) if k in PROBE_SETTINGS else v for k, v in knobs.items()}
    return spec.resolve_knobs(probe)
