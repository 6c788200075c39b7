"""The pages the commands write, built from committed results: one place that says which inputs
each page is made from, shared by the page tests and experiments/browser/screenshots.py."""

from __future__ import annotations

import importlib
from pathlib import Path

from attrib_core.analysis.render import compare, history_report, report
from attrib_core.commands import COMMANDS
from tests import REPO

RESULTS = REPO / "results"
REPORTED = RESULTS / "0001_amd-epyc-2c_20261129T140627Z_e734964_standard.json"
SINGLE_RUNS = [
    RESULTS / "amd-epyc-2c_20261128T125800Z_57f58b5_standard.json",
    RESULTS / "amd-epyc-2c_20261128T134844Z_6df9b1e_standard.json",
]
HISTORY = REPO / "experiments" / "history" / "history-proof"
# Five runs of one commit, split 2 + 3: an A/A comparison with intervals, so it draws speedup.png.
SAME_COMMIT = sorted(HISTORY.glob("*_3db5506_ci.json"))
DASHBOARD_PAGES = ["index.html", "hardware.html", "history.html", "tradeoff.html", "leaderboard.html"]


def has_dashboard() -> bool:
    return "dashboard" in COMMANDS


def build_report(out: Path) -> Path:
    if report.main([str(REPORTED), "--out", str(out)]) != 0:
        raise RuntimeError(f"attrib-bench report {REPORTED} failed")
    return out / "report.html"


def build_compare(out: Path, runs: list[str] | None = None) -> Path:
    """Two single runs by default would decide nothing; the A/A split draws the speedup figure."""
    runs = runs or ["+".join(map(str, SAME_COMMIT[:2])), "+".join(map(str, SAME_COMMIT[2:]))]
    if compare.main([*runs, "--out", str(out)]) != 0:
        raise RuntimeError(f"attrib-bench compare {' '.join(runs)} failed")
    return out / "compare.html"


def build_history(out: Path) -> Path:
    if history_report.main([str(HISTORY), "--out", str(out)]) != 0:
        raise RuntimeError(f"attrib-bench history {HISTORY} failed")
    return out / "history.html"


def build_dashboard(out: Path) -> list[Path]:
    """`attrib-bench dashboard results/ <history> -o OUT`'s pages (only once the command exists)."""
    command = importlib.import_module(COMMANDS["dashboard"].module)
    if command.main([str(RESULTS), str(HISTORY), "-o", str(out)]) != 0:
        raise RuntimeError(f"attrib-bench dashboard {RESULTS} {HISTORY} failed")
    return [out / name for name in DASHBOARD_PAGES]
