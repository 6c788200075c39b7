"""How cells look to a reader: one colour and marker per method, short config labels, panels.

Built once per report from the sorted method list, so a method keeps its colour in every
figure of that report (and in compare's plot). Labels name only the knobs that vary
within a method, so "IntegratedGradients steps=16 rule=riemann_left" says what differs
without repeating every default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import seaborn as sns

from attrib_core.analysis.knobs import knob_label, missing, varying_knobs
from attrib_core.formatting import knob_value

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "p", "h", "*")
DEFAULT_AXES = {"batch_size": 1, "precision": "fp32", "memory_format": "contiguous"}


@dataclass(frozen=True)
class MethodStyle:
    """Colour and marker per method name."""

    palette: dict[str, Any]
    markers: dict[str, str]

    @property
    def methods(self) -> list[str]:
        return list(self.palette)


def method_style(methods: Any) -> MethodStyle:
    """Distinct colours for the sorted methods: tab10 without its grey, then Dark2, then Set1 (no yellow),
    then evenly spaced hues; markers cycle independently so (colour, marker) stays unique."""
    names = sorted({str(m) for m in methods if isinstance(m, str)})
    tab10 = sns.color_palette("tab10", 10)
    set1 = [c for i, c in enumerate(sns.color_palette("Set1", 9)) if i not in (5, 8)]  # no yellow, no grey
    dark2 = sns.color_palette("Dark2", 7)  # not its grey
    colours = [c for i, c in enumerate(tab10) if i != 7] + dark2 + set1
    if len(names) > len(colours):
        colours += sns.color_palette("husl", len(names) - len(colours))
    return MethodStyle(
        palette={name: colours[i] for i, name in enumerate(names)},
        markers={name: MARKERS[i % len(MARKERS)] for i, name in enumerate(names)},
    )


def config_label(row: pd.Series, knobs: list[str], *, with_batch: bool = True) -> str:
    """Short description of a cell beside its method: varying knobs, then non-default execution."""
    parts = []
    for column in knobs:
        name = column.removeprefix("knob_")
        value = row.get(column)
        if not missing(value):  # None means "not used" (e.g. no internal batching), as in cell keys
            parts.append(f"{knob_label(row, name)}={knob_value(value)}")
    for axis, default in DEFAULT_AXES.items():
        if axis == "batch_size" and not with_batch:
            continue
        value = row.get(axis)
        if not missing(value) and value != default:
            parts.append(f"b{value}" if axis == "batch_size" else str(value))
    return " ".join(parts)


def add_labels(df: pd.DataFrame) -> pd.DataFrame:
    """Copy of the table with `run`, `panel` (workload · device [· run]), `config` and `label`."""
    out = df.copy()
    out["run"] = out["file"].map(lambda name: str(name).removesuffix(".json"))
    several_runs = out["run"].nunique() > 1
    out["panel"] = out["workload"].astype(str) + " · " + out["device"].astype(str)
    if several_runs:
        out["panel"] = out["panel"] + " · " + out["run"]
    varying = varying_knobs(out)
    out["config"] = [config_label(row, varying.get(str(row["method"]), [])) for _, row in out.iterrows()]
    out["config_no_batch"] = [
        config_label(row, varying.get(str(row["method"]), []), with_batch=False) for _, row in out.iterrows()
    ]
    out["label"] = (out["method"].astype(str) + " " + out["config"]).str.strip()
    return out
