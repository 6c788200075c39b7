"""Where a run's time goes, before and after: phase shares, wall time and interval widths of two
runs of the same preset on the same machine, and whether their values agree.

    python -m experiments.first_answer.before_after BEFORE.json AFTER.json --out DIR

Per run: the wall time (the results file's own start and finish), the seconds of each phase
summed over its cells (`extra_info.phase_s`; the later passes' blocks counted as timed rounds),
and what is left outside cells (collection, model builds, writing). Over the cells both runs
measured: the median half-width of each cell's 95% interval (attrib_core/suite/rounds.py, on the
first pass's rounds, the same formula for both), the ratio of their median times, and how many
fidelity values are equal. Writes before_after.md and before_after.json.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from datetime import datetime
from pathlib import Path

from attrib_core.schema import records
from attrib_core.suite.rounds import relative_halfwidth

SHOWN = {  # phase -> the table's column
    "calibration": "calibration + limit",
    "limit": "calibration + limit",
    "timing": "timed rounds",
    "first_call": "first calls",
    "memory": "memory",
    "fidelity": "fidelity",
    "prepare": "prepare",
}
COLUMNS = ["calibration + limit", "timed rounds", "first calls", "memory", "fidelity", "prepare", "outside cells"]


def summarise(path: Path) -> dict:
    data = json.loads(path.read_text())
    run = data["machine_info"]["attrib_bench"]["run"]
    wall_s = (datetime.fromisoformat(run["finished"]) - datetime.fromisoformat(run["started"])).total_seconds()
    phases = dict.fromkeys(COLUMNS, 0.0)
    cells = {}
    for record in records(data):
        extra = record["extra_info"]
        for phase, seconds in (extra.get("phase_s") or {}).items():
            phases[SHOWN.get(phase, "prepare")] += seconds
        blocks = extra.get("blocks") or []
        phases["timed rounds"] += sum(sum(b["samples_s"]) for b in blocks if b.get("pass", 1) > 1)
        if extra.get("status") == "ok":
            first = blocks[0]["samples_s"] if blocks else record["stats"]["data"]
            fidelity = {k: v.get("value") for k, v in (extra.get("fidelity") or {}).items() if v.get("status") == "ok"}
            cells[extra["cell_key"]] = {
                "median_s": record["stats"]["median"],
                "halfwidth": relative_halfwidth(first),
                "rounds": len(first),
                "fidelity": fidelity,
            }
    phases["outside cells"] = max(wall_s - sum(v for k, v in phases.items() if k != "outside cells"), 0.0)
    return {"file": path.name, "wall_s": wall_s, "phases_s": phases, "cells": cells}


def agreement(before: dict, after: dict) -> dict:
    common = sorted(set(before["cells"]) & set(after["cells"]))
    ratios = [after["cells"][k]["median_s"] / before["cells"][k]["median_s"] for k in common]
    same = compared = 0
    for key in common:
        b, a = before["cells"][key]["fidelity"], after["cells"][key]["fidelity"]
        for metric in set(a) & set(b):
            if isinstance(a[metric], (int, float)) and isinstance(b[metric], (int, float)):
                compared += 1
                same += math.isclose(a[metric], b[metric], rel_tol=1e-4, abs_tol=1e-6)
    return {
        "common_cells": len(common),
        "median_time_ratio_after_over_before": statistics.median(ratios) if ratios else None,
        "time_ratio_range": [min(ratios), max(ratios)] if ratios else None,
        "fidelity_values_compared": compared,
        "fidelity_values_equal": same,
        "median_halfwidth": {
            side: statistics.median(h for k in common if math.isfinite(h := run["cells"][k]["halfwidth"]))
            for side, run in (("before", before), ("after", after))
        },
        "median_rounds": {
            side: statistics.median(run["cells"][k]["rounds"] for k in common)
            for side, run in (("before", before), ("after", after))
        },
    }


def table(runs: dict[str, dict], agree: dict) -> str:
    head = "| run | wall time | cells ok | " + " | ".join(COLUMNS) + " | median half-width (common cells) |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 4)]
    for label, run in runs.items():
        wall = run["wall_s"]
        shares = " | ".join(f"{run['phases_s'][c] / wall:.0%}" for c in COLUMNS)
        lines.append(
            f"| {label} | {int(wall // 60)} min {round(wall % 60):02d} s | {len(run['cells'])} | {shares} | "
            f"{agree['median_halfwidth'][label]:.1%} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--out", type=Path, default=Path("experiments/first_answer/out"))
    args = parser.parse_args(argv)
    runs = {"before": summarise(args.before), "after": summarise(args.after)}
    agree = agreement(runs["before"], runs["after"])
    args.out.mkdir(parents=True, exist_ok=True)
    slim = {label: {k: v for k, v in run.items() if k != "cells"} for label, run in runs.items()}
    (args.out / "before_after.json").write_text(json.dumps({"runs": slim, "agreement": agree}, indent=1))
    text = table(runs, agree)
    (args.out / "before_after.md").write_text(text + "\n\n```json\n" + json.dumps(agree, indent=1) + "\n```\n")
    print(text)
    print(json.dumps(agree, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
