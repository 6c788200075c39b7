"""The check a run makes of its own figures before anyone reads them (torch-free).

Each finding names the cells it is about. An efficiency above SUSPECT_ABOVE cannot be true
(no method beats its model's own passes): the limit it was held against was measured wrong.
A single-pass method far from 1, a calibration the budget cut short, and a wide spread of
rounds are less certain signs, reported the same way so they are seen together.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from attrib_core.analysis.results import SUSPECT_ABOVE, efficiency_warnings
from attrib_core.analysis.tables import NOISY, noisy_cells


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    detail: str
    cells: tuple[str, ...] = ()

    def line(self) -> str:
        mark = "ok  " if self.ok else "WARN"
        named = "" if not self.cells else ": " + ", ".join(self.cells)
        return f"{mark} {self.check}: {self.detail}{named}"


def self_check(df: pd.DataFrame) -> list[Finding]:
    """What a run's results file says about its own trustworthiness, one finding per check."""
    ok = df[df["status"] == "ok"] if not df.empty else df
    if ok.empty:
        return [Finding("cells", False, "no cell finished")]
    findings = []
    measured = ok[ok["efficiency"].notna()]
    suspect = measured[measured["efficiency"] > SUSPECT_ABOVE]
    findings.append(
        Finding(
            "efficiency",
            suspect.empty,
            f"{len(measured) - len(suspect)} of {len(measured)} at or below {SUSPECT_ABOVE}"
            + ("" if suspect.empty else f"; {len(suspect)} suspect (limit measured wrong)"),
            tuple(f"{k} ({e:.2f})" for k, e in zip(suspect["cell_key"], suspect["efficiency"], strict=True)),
        )
    )
    single = int((ok["passes_forward"] == ok["batch_size"]).sum())
    if single:
        lines = efficiency_warnings(ok)
        findings.append(
            Finding("single-pass cells near 1", not lines, f"{single - len(lines)} of {single} within range")
        )
    if "calib_budget_exhausted" in ok:
        cut = ok[ok["calib_budget_exhausted"].fillna(False).astype(bool)]
        findings.append(
            Finding(
                "calibration",
                cut.empty,
                "no limit cut short by the search budget"
                if cut.empty
                else f"{len(cut)} limit(s) cut short by the search budget (fewer rounds, wider error)",
                tuple(cut["cell_key"]),
            )
        )
    noisy = noisy_cells(ok)
    findings.append(
        Finding(
            "timing spread",
            noisy.empty,
            f"{len(ok) - len(noisy)} of {len(ok)} cells with IQR within {NOISY:.0%} of the median",
            tuple(noisy["cell_key"]),
        )
    )
    return findings
