"""Running the check's steps within a time budget, one journal line per finished step.

A step starts only when the time left can hold its estimate; from the first step that cannot,
every later one is recorded as skipped, so the journal names what a longer budget would add.
A step that raises is recorded as failed with its error and the next one runs.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JOURNAL_NAME = "journal.jsonl"
STATUSES = ("ok", "failed", "skipped")


class StepSkipped(Exception):
    """Raised by a step with nothing to do here (e.g. no LLM method registered); the message says why."""


@dataclass(frozen=True)
class Step:
    """One thing the check does. `run(allowance_s)` returns the step's findings (JSON-able); a
    non-empty "problems" list among them fails the step with its findings kept."""

    name: str
    estimate_s: float  # what the step is expected to take; it starts only if this much is left
    run: Callable[[float], dict[str, Any]]
    expected_error: Callable[[BaseException], bool] | None = None  # a failure that is the finding (the deliberate OOM)
    allowance_factor: float = 1.5  # it may run this many times its estimate (the time left permitting)


class Budget:
    """Wall time left to the whole check, against a clock that tests may replace."""

    def __init__(self, budget_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not budget_s > 0:
            raise ValueError(f"budget {budget_s!r} s is not valid; needs a number of seconds > 0")
        self.budget_s, self.clock = budget_s, clock
        self.started = clock()

    def elapsed_s(self) -> float:
        return self.clock() - self.started

    def left_s(self) -> float:
        return self.budget_s - self.elapsed_s()

    def fits(self, estimate_s: float) -> bool:
        return estimate_s <= self.left_s()


class StepJournal:
    """Append-only JSON lines, each flushed and fsync'd before the next step starts."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, line: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(line, sort_keys=True, default=str) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def read(self) -> list[dict[str, Any]]:
        """Every whole line; a line cut short by a kill is left out."""
        if not self.path.exists():
            return []
        lines = []
        for text in self.path.read_text(encoding="utf-8").splitlines():
            try:
                lines.append(json.loads(text))
            except json.JSONDecodeError:
                continue
        return lines


def run_steps(
    steps: list[Step], budget: Budget, journal: StepJournal, on_line: Callable[[dict[str, Any]], None] = print
) -> list[dict[str, Any]]:
    """Run `steps` in order within `budget`; every outcome is a journal line, returned in order."""
    lines = []
    out_of_time = False
    for step in steps:
        if not out_of_time and not budget.fits(step.estimate_s):
            out_of_time = True
        if out_of_time:
            line = {
                "step": step.name,
                "status": "skipped",
                "reason": f"needs about {step.estimate_s:.0f} s and {max(0.0, budget.left_s()):.0f} s of the budget "
                f"of {budget.budget_s:.0f} s were left",
                "estimate_s": step.estimate_s,
            }
        else:
            line = _run_one(step, budget)
        journal.append(line)
        on_line(line)
        lines.append(line)
    return lines


def _run_one(step: Step, budget: Budget) -> dict[str, Any]:
    started = budget.elapsed_s()
    allowance_s = min(budget.left_s(), step.allowance_factor * step.estimate_s)
    line: dict[str, Any] = {"step": step.name, "estimate_s": step.estimate_s, "started_at_s": round(started, 3)}
    failed_as_expected = False
    try:
        result = step.run(allowance_s)
        problems = result.pop("problems", [])
        line.update(status="failed" if problems else "ok", result=result)
        if problems:
            line["error"] = "; ".join(problems)
    except StepSkipped as skip:
        line.update(status="skipped", reason=str(skip))
    except Exception as exc:  # recorded, not raised: one failed step must not stop the check
        line.update(status="failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(limit=4))
        failed_as_expected = step.expected_error is not None and step.expected_error(exc)
    if line["status"] == "failed":
        release_device_memory()  # here, once the exception and the tensors its frames held are gone
    line["wall_s"] = round(budget.elapsed_s() - started, 3)
    line["expect_failure"] = step.expected_error is not None
    if line["status"] == "failed":
        line["as_expected"] = failed_as_expected
    else:
        line["as_expected"] = line["status"] == "skipped" or step.expected_error is None
    return line


def release_device_memory() -> None:
    """After a failure (an out-of-memory above all), give the cached blocks back so the next step
    starts from an empty allocator."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
