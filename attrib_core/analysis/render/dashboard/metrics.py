"""Which metric columns a set of cells has, in three families, each with a header that says its
statistic and direction: fidelity, localisation (against a ground-truth mask) and sanity checks.

A fidelity record's `value` is the mean over the cell's examples (attrib_core/fidelity/evaluate.py),
so every header says "mean over examples". Values of random-weight cells were left out when the
results were read (attrib_core.analysis.results), never shown as if they meant something.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from attrib_core.analysis.tables import FIDELITY, FIDELITY_FIELDS

LOCALISATION = ("pointing_game", "relevance_mass", "relevance_rank")
SANITY = ("randomisation_cascading", "randomisation_independent", "random_logit", "road_morf", "road_lerf")
KEY_FIDELITY = ("reference_error", "deletion")  # the report's headline axes (its trade-off figure)
SANITY_NOTES = {  # a map that explains the model has a low similarity after randomisation
    "randomisation_cascading": "Spearman with the trained map, mean over steps; lower is better",
    "randomisation_independent": "Spearman with the trained map, mean over steps; lower is better",
    "random_logit": "Spearman with the map of another class; lower is better",
}


@dataclass(frozen=True)
class MetricColumn:
    name: str
    column: str
    header: str


def metric_names(df: pd.DataFrame) -> list[str]:
    """Every fid_<name> value column that some cell has a value for: the report's four first."""
    names = [c.removeprefix("fid_") for c in df.columns if c.startswith("fid_") and not c.endswith(FIDELITY_FIELDS)]
    present = [n for n in names if df[f"fid_{n}"].notna().any()]
    return [n for n in FIDELITY if n in present] + sorted(n for n in present if n not in FIDELITY)


def lower_is_better(df: pd.DataFrame, name: str) -> bool:
    column = f"fid_{name}_lower_is_better"
    known = df[column].dropna() if column in df else pd.Series(dtype=bool)
    return bool(known.iloc[0]) if len(known) else True


def header(df: pd.DataFrame, name: str) -> str:
    words = name.replace("_", " ")
    if name in SANITY_NOTES:
        return f"{words} ({SANITY_NOTES[name]})"
    better = "lower" if lower_is_better(df, name) else "higher"
    return f"{words} (mean over examples; {better} is better)"


def family(df: pd.DataFrame, names: tuple[str, ...] | None = None, exclude: tuple[str, ...] = ()) -> list[MetricColumn]:
    """The metric columns present, limited to `names` when given, without `exclude`."""
    present = metric_names(df)
    chosen = [n for n in present if (names is None or n in names) and n not in exclude]
    return [MetricColumn(n, f"fid_{n}", header(df, n)) for n in chosen]


def fidelity_columns(df: pd.DataFrame) -> list[MetricColumn]:
    return family(df, exclude=(*LOCALISATION, *SANITY))


def localisation_columns(df: pd.DataFrame) -> list[MetricColumn]:
    return family(df, LOCALISATION)


def sanity_columns(df: pd.DataFrame) -> list[MetricColumn]:
    return family(df, SANITY)


def key_fidelity_columns(df: pd.DataFrame) -> list[MetricColumn]:
    return family(df, KEY_FIDELITY)
