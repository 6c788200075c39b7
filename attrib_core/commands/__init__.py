"""The `attrib-bench` commands: name -> the module whose `main(argv) -> int` runs it, and one line
of help. attrib_core/commands/cli.py only dispatches; a new command is one entry here and its module.

Exit status, the same for every command (attrib_core/exits.py): 0 ok; 1 a regression or a failed
cell; 2 bad input (one line naming the bad value and the valid choices); 3 an internal error.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    module: str
    summary: str
    needs_torch: bool


COMMANDS = {
    "bench": Command("attrib_core.commands.bench", "run a preset's cells here; results to ./results", True),
    "report": Command("attrib_core.analysis.render.report", "tables, plots and an HTML page from results files", False),
    "compare": Command(
        "attrib_core.analysis.render.compare", "two or more runs side by side, by one timing rule", False
    ),
    "regress": Command(
        "attrib_core.ab.regress", "the working tree against a base revision, A/B; exit 1 on a regression", True
    ),
    "ab": Command("attrib_core.ab.session", "any two versions A/B: revisions, pip overlays, settings", True),
    "tune": Command("attrib_core.commands.tune", "the fastest setting at least as faithful as the default", True),
    "history": Command("attrib_core.analysis.render.history_report", "each cell over commits, with steps", False),
    "dashboard": Command(
        "attrib_core.analysis.render.dashboard.command", "a static offline site of every results file in folders", False
    ),
    "merge": Command("attrib_core.analysis.merge", "the shards of one sweep into one results file", False),
    "device-check": Command(
        "attrib_core.commands.device_check", "prove the harness on this GPU within a time budget (--dry-run: CPU)", True
    ),
}
