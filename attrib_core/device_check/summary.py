"""The check's summary, from its journal alone (so a killed run can be summarised too): each
step's outcome, what was skipped, the frontier of each method, and the exit status."""

from __future__ import annotations

from typing import Any

from attrib_core.exits import EXIT_FAILED, EXIT_OK
from attrib_core.formatting import seconds, size_bytes


def exit_status(lines: list[dict[str, Any]]) -> int:
    """1 when a step failed that should have run, the deliberate out-of-memory did not happen, or the
    check was stopped before a step it meant to run; else 0."""
    header = next((line["header"] for line in lines if "header" in line), {})
    steps = [line for line in lines if "step" in line]
    stopped = len(steps) < len(header.get("steps", []))
    return EXIT_OK if all(line.get("as_expected", True) for line in steps) and not stopped else EXIT_FAILED


def summarise(lines: list[dict[str, Any]]) -> dict[str, Any]:
    header = next((line["header"] for line in lines if "header" in line), {})
    steps = [line for line in lines if "step" in line]
    return {
        "header": header,
        "steps": {line["step"]: line["status"] for line in steps},
        "unexpected": [line["step"] for line in steps if not line.get("as_expected", True)],
        "skipped": {line["step"]: line.get("reason", "") for line in steps if line["status"] == "skipped"},
        "not_run": [name for name in header.get("steps", []) if name not in {line["step"] for line in steps}],
        "frontier": [
            frontier_row(line["result"])
            for line in steps
            if line["step"].startswith("frontier:") and line.get("result")
        ],
        "exit_status": exit_status(lines),
    }


def frontier_row(result: dict[str, Any]) -> dict[str, Any]:
    largest = result.get("largest_fitting") or {}
    return {
        "method": result["method"],
        "knob": result["knob"],
        "budget_bytes": result["budget_bytes"],
        "largest_fitting": largest.get(result["knob"]),
        "peak_bytes": largest.get("peak_bytes"),
        "median_s": largest.get("median_s"),
        "stopped_by": result["stopped_by"],
        "points": len(result["points"]),
    }


def render(summary: dict[str, Any], lines: list[dict[str, Any]]) -> str:
    """Markdown: the steps, then the frontier tables (measured beside predicted)."""
    header = summary["header"]
    out = [
        f"# Device check: {header.get('device_name', '?')} ({header.get('mode', '?')})",
        "",
        f"budget {header.get('budget_s', '?')} s; memory budget {size_bytes(header.get('memory_budget_bytes'))}"
        + (f"; {header['cap_note']}" if header.get("cap_note") else ""),
        "",
        "| step | status | wall | note |",
        "|---|---|---|---|",
    ]
    for line in (line for line in lines if "step" in line):
        note = line.get("error") or line.get("reason") or ""
        if line.get("expect_failure") and line["status"] != "skipped":
            note = ("expected: " if line.get("as_expected") else "NOT as expected: ") + (note or "it did not fail")
        out.append(f"| {line['step']} | {line['status']} | {seconds(line.get('wall_s'))} | {note[:160]} |")
    for line in lines:
        if not line.get("step", "").startswith("frontier:") or not line.get("result"):
            continue
        result = line["result"]
        knob = result["knob"]
        out += [
            "",
            f"## {result['method']} on {result['workload']}, batch {result['batch_size']}, {result['precision']}: "
            f"{knob} doubled (stopped by {result['stopped_by']})",
            "",
            f"| {knob} | rows per call | peak | tune predicts | median | fits {size_bytes(result['budget_bytes'])} "
            "| tune allows |",
            "|---|---|---|---|---|---|---|",
        ]
        for point in result["points"]:
            peak = size_bytes(point.get("peak_bytes")) if point["status"] == "ok" else point["status"]
            out.append(
                f"| {point[knob]} | {point['chunk_rows']} | {peak} | {size_bytes(point.get('predicted_bytes'))} "
                f"| {seconds(point.get('median_s'))} | {'yes' if point['fits_budget'] else 'no'} "
                f"| {'yes' if point['predicted_fits'] else 'no'} |"
            )
        largest = result.get("largest_fitting")
        out.append("")
        out.append(
            f"largest {knob} within the budget: {largest[knob]} ({size_bytes(largest['peak_bytes'])}, "
            f"{seconds(largest['median_s'])} a call)"
            if largest
            else "no setting fits the budget"
        )
    if summary["not_run"]:
        out += ["", "not run (the check was stopped before them): " + ", ".join(summary["not_run"])]
    if summary["skipped"]:
        out += ["", "skipped: " + "; ".join(f"{name} ({why})" for name, why in summary["skipped"].items())]
    out += ["", f"exit status {summary['exit_status']}"]
    return "\n".join(out) + "\n"
