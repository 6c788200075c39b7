"""Knobs: the tunable arguments of a method, their defaults and valid values, and the knob
sets several methods share."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

IG_METHODS = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")
NT_TYPES = ("smoothgrad", "smoothgrad_sq", "vargrad")
AUTO = "auto"


class KnobError(ValueError):
    """A knob name or value that a method does not accept."""


@dataclass(frozen=True)
class Knob:
    """A tunable argument: its default and what values are valid."""

    name: str
    default: Any
    doc: str
    type: Literal["int", "float", "bool", "choice", "shape"] = "int"
    minimum: float | None = None
    choices: tuple[Any, ...] = ()
    optional: bool = False  # None is a valid value (e.g. "no internal batching")
    abbreviation: str = ""  # short name in plot labels (results records carry it: `knob_labels`)
    batching: bool = False  # only groups rows into calls: changes speed and memory, never the value
    workload_default: str | None = None  # a Workload attribute that supplies the default (input scale)
    auto: bool = False  # "auto" is valid: the value follows from the input's shape when the call is prepared

    @property
    def label(self) -> str:
        return self.abbreviation or self.name

    def describe(self) -> str:
        if self.type == "choice":
            valid = "one of " + ", ".join(map(repr, self.choices))
        elif self.type == "bool":
            valid = "True or False"
        elif self.type == "shape":
            valid = "a tuple of positive integers (a tuple of them per input, for several inputs)"
        else:
            valid = f"{'an integer' if self.type == 'int' else 'a number'} >= {self.minimum}"
        return (
            valid
            + (" or None" if self.optional else "")
            + (' or "auto" (from the input\'s shape)' if self.auto else "")
        )

    def validate(self, method: str, value: Any) -> Any:
        """Return the value (shapes as tuples) or raise KnobError naming it and the valid range."""
        if value is None and self.optional:
            return None
        if value == AUTO and self.auto:
            return AUTO
        ok = False
        if self.type == "int":
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= self.minimum
        elif self.type == "float":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= self.minimum
        elif self.type == "bool":
            ok = isinstance(value, bool)
        elif self.type == "choice":
            ok = value in self.choices
        elif self.type == "shape":
            ok, value = _valid_shape(value)
        if not ok:
            raise KnobError(f"{method}: {self.name}={value!r} is not valid; expected {self.describe()}")
        return value


# --- knobs shared by several methods ----------------------------------------------------


def integration_knobs(n_steps: int = 50, method: str = "gausslegendre") -> tuple[Knob, ...]:
    """Defaults follow Captum's own for each method."""
    return (
        Knob("n_steps", n_steps, "points on the path from baseline to input", minimum=1, abbreviation="steps"),
        Knob("method", method, "integration rule", type="choice", choices=IG_METHODS, abbreviation="rule"),
        Knob(
            "internal_batch_size",
            None,
            "rows per forward/backward chunk (memory vs speed)",
            minimum=1,
            optional=True,
            abbreviation="ibs",
            batching=True,
        ),
    )


def check_integration(method: str, knobs: Mapping[str, Any]) -> None:
    if knobs["method"].startswith("riemann") and knobs["n_steps"] < 2:
        raise KnobError(
            f"{method}: n_steps={knobs['n_steps']} is too small for method={knobs['method']!r}; "
            "riemann rules need n_steps >= 2 (gausslegendre accepts 1)"
        )


def check_occlusion(method: str, knobs: Mapping[str, Any]) -> None:
    if AUTO in (knobs["sliding_window_shapes"], knobs["strides"]):
        return
    if len(knobs["sliding_window_shapes"]) != len(knobs["strides"]):
        raise KnobError(
            f"{method}: sliding_window_shapes={knobs['sliding_window_shapes']} and "
            f"strides={knobs['strides']} must have the same length (one entry per input dimension)"
        )


IG_KNOBS = integration_knobs()

PERTURBATIONS_PER_EVAL = Knob(
    "perturbations_per_eval",
    1,
    "perturbed copies evaluated in one forward call (memory vs speed)",
    minimum=1,
    abbreviation="ppe",
    batching=True,
)

NOISE_TUNNEL_KNOBS = (
    Knob("nt_type", "smoothgrad", "how noisy attributions are combined", type="choice", choices=NT_TYPES),
    Knob("nt_samples", 5, "noisy copies per example", minimum=1, abbreviation="nt"),
    Knob(
        "nt_samples_batch_size",
        None,
        "noisy copies per chunk",
        minimum=1,
        optional=True,
        abbreviation="nt_batch",
        batching=True,
    ),
    # Captum's default (1.0) is in input units; a workload scales it to its inputs (noise_stdevs)
    Knob("stdevs", 1.0, "noise standard deviation", type="float", minimum=0.0, workload_default="noise_stdevs"),
)

N_BASELINES = Knob("n_baselines", 4, "baselines drawn from the workload's background set", minimum=2)

# GradientShap's: random points between each example and a background row
GRADIENT_SHAP_KNOBS = (
    Knob("n_samples", 5, "random points per example", minimum=1, abbreviation="samples"),
    Knob("stdevs", 0.0, "noise added to each sample", type="float", minimum=0.0),
)

OCCLUSION_KNOBS = (
    Knob(
        "sliding_window_shapes",
        AUTO,
        "occluding patch, per input dimension",
        type="shape",
        abbreviation="window",
        auto=True,
    ),
    Knob("strides", AUTO, "step between patches, per input dimension", type="shape", abbreviation="stride", auto=True),
    PERTURBATIONS_PER_EVAL,
)


def _valid_shape(value: Any) -> tuple[bool, Any]:
    """A tuple of positive integers, or one such tuple per input; as tuples when valid."""

    def positive_ints(items: Any) -> bool:
        return isinstance(items, (tuple, list)) and all(isinstance(v, int) and v >= 1 for v in items)

    if positive_ints(value):
        return True, tuple(value)
    if isinstance(value, (tuple, list)) and value and all(positive_ints(v) and v for v in value):
        return True, tuple(tuple(v) for v in value)
    return False, value
