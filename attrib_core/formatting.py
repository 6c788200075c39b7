"""One way to print times, sizes, clocks and knob values, used by the suite's progress lines,
the report, compare and regress (torch-free)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

MISSING = "-"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def seconds(value: float | None) -> str:
    """3 significant digits in human units: 840 µs, 12.3 ms, 4.56 s, 2.1 min, 1.50 h."""
    if _missing(value):
        return MISSING
    magnitude = abs(value)
    if magnitude < 1e-3:
        return f"{value * 1e6:.3g} µs"
    if magnitude < 1:
        return f"{value * 1e3:.3g} ms"
    if magnitude < 120:
        return f"{value:.3g} s"
    if magnitude < 7200:
        return f"{value / 60:.3g} min"
    return f"{value / 3600:.3g} h"


def size_bytes(value: float | None) -> str:
    """Binary units, 3 significant digits: 512 B, 4.5 KiB, 350 MiB, 4.3 GiB."""
    if _missing(value):
        return MISSING
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.0f} B"


def clock(elapsed_s: float) -> str:
    """Elapsed time as mm:ss (h:mm:ss past an hour); whole seconds, so never '05:60'."""
    total = int(elapsed_s)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def timestamp(value: datetime) -> str:
    """UTC stamp used in file names: 20261129T134844Z."""
    return value.strftime("%Y%m%dT%H%M%SZ")


def knob_value(value: Any) -> str:
    """Knob values as in cell keys: shapes as 3x15x15, whole floats as integers."""
    if isinstance(value, (tuple, list)):
        return "x".join(map(str, value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
