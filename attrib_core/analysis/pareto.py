"""The speed-fidelity Pareto front: configurations no other one beats on both time and error.

A point is on the front when no other point is at least as fast and at least as good with
one of the two strictly better. Of exact duplicates only the first is kept, so the front is
a clean staircase: each member is slower than the one before and strictly better.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def pareto_front(df: pd.DataFrame, x: str, y: str, *, lower_is_better: bool = True) -> pd.Series:
    """Boolean Series (df's index): True for the members of the front of `x` (time, lower is
    better) against `y`; rows where either value is missing or not finite are never members."""
    values = df[[x, y]].apply(pd.to_numeric, errors="coerce")
    usable = np.isfinite(values[x]) & np.isfinite(values[y])
    goodness = values.loc[usable, y] if lower_is_better else -values.loc[usable, y]
    ordered = pd.DataFrame({"x": values.loc[usable, x], "y": goodness}).sort_values(["x", "y"], kind="stable")
    best_before = ordered["y"].cummin().shift(1, fill_value=np.inf)
    members = ordered.index[ordered["y"].to_numpy() < best_before.to_numpy()]
    return pd.Series(df.index.isin(members), index=df.index)


def staircase(front: pd.DataFrame, x: str, y: str, x_end: float) -> tuple[np.ndarray, np.ndarray]:
    """Step-line vertices of the front, for `plot(..., drawstyle='steps-post')`: the best value
    reachable within a time budget, from the fastest member out to `x_end`."""
    ordered = front.sort_values(x)
    xs = np.append(ordered[x].to_numpy(dtype=float), max(x_end, float(ordered[x].max())))
    ys = np.append(ordered[y].to_numpy(dtype=float), float(ordered[y].iloc[-1]))
    return xs, ys
