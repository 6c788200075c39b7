"""A cell's knobs in words: which knob columns a table has, which vary, and their labels."""

from __future__ import annotations

from typing import Any

import pandas as pd

from attrib_core.formatting import knob_value

LABELS = "knob_labels"  # the column of each cell's knob -> short label, not a knob itself


def knob_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c.startswith("knob_") and c != LABELS]


def missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value))


def varying_knobs(df: pd.DataFrame) -> dict[str, list[str]]:
    """Per method, the knob columns whose value differs between its cells."""
    out: dict[str, list[str]] = {}
    for method, cells in df.groupby("method", sort=True):
        out[str(method)] = [
            c for c in knob_columns(cells) if cells[c].map(lambda v: "" if missing(v) else repr(v)).nunique() > 1
        ]
    return out


def all_knobs_label(row: pd.Series, knobs: list[str]) -> str:
    """Every set knob of a cell, for places with room (the gallery, tables)."""
    parts = [
        f"{knob_label(row, c.removeprefix('knob_'))}={knob_value(row[c])}" for c in knobs if not missing(row.get(c))
    ]
    return " ".join(parts)


def knob_label(row: pd.Series, name: str) -> str:
    """The knob's short name as its method's registry entry gave it (recorded in the cell)."""
    labels = row.get(LABELS)
    return labels.get(name, name) if isinstance(labels, dict) else name
