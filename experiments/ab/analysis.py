"""The A/B proof's analysis (`python -m experiments.ab.proof analyse`): the one timing rule on every
collected session, rates per condition against issue 10's targets, a markdown table and a figure.

Torch-free: reads the sessions' results files only. A session counts as an alarm when the
rule flags any cell or the run-level member; a made slowdown is caught when the rule calls
the run or a cell it touched slower.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from attrib_core.ab import session as ab
from attrib_core.ab.regress import AB_QUADS
from attrib_core.analysis.results import results_files
from attrib_core.analysis.timing_rule import SLOWER, RuleSettings, compare_timing

NAME = re.compile(r"^(?P<condition>aa|all-[\d.]+|ig-[\d.]+|igcall-[\d.]+)-(?P<rep>\d+)$")
TOUCHED = "IntegratedGradients"  # the method the ig-* and igcall-* sessions slow down
WHERE = {
    "aa": "none (A/A)",
    "all": "every cell, in the model",
    "ig": f"{TOUCHED} only, in the model",
    "igcall": f"{TOUCHED} only, its whole call",
}


def session_row(folder: Path) -> dict[str, Any] | None:
    """One session's verdicts and context, or None when it is not finished."""
    done = folder / "done.json"
    if not done.exists():
        return None
    record = json.loads(done.read_text())
    stamps = sorted(p for p in folder.iterdir() if p.is_dir())
    files = results_files(stamps[-1]) if stamps else []
    if not files:
        return None
    base, new = ab.load_sides(files)
    result = compare_timing(base, new, RuleSettings(), key_column="ab_match_key")
    cells = list(result.cells.values())
    touched = [c for c in cells if TOUCHED in c.cell_key]
    untouched = [c for c in cells if TOUCHED not in c.cell_key]
    match = NAME.match(folder.name)
    env = base["cpu_model"].iloc[0] if "cpu_model" in base else None
    return {
        "session": folder.name,
        "condition": match["condition"] if match else folder.name,
        "cells": len(cells),
        "flagged_cells": sum(c.verdict in ("slower", "faster") for c in cells),
        "slower_cells": sum(c.verdict == SLOWER for c in cells),
        "run_verdict": result.run_level.verdict,
        "run_ratio": result.run_level.ratio,
        "run_low": result.run_level.low,
        "run_high": result.run_level.high,
        "touched_slower": sum(c.verdict == SLOWER for c in touched),
        "touched_ratio": math.exp(sum(math.log(c.ratio) for c in touched) / len(touched)) if touched else math.nan,
        "untouched_flagged": sum(c.verdict in ("slower", "faster") for c in untouched),
        "any_alarm": bool(result.flagged),
        "caught": result.run_level.verdict == SLOWER or any(c.verdict == SLOWER for c in cells),
        "wall_s": record["wall_s"],
        "command": record["command"],
        "load_before": record["load_before"][0],
        "load_after": record["load_after"][0],
        "cpu_model": env,
        "per_cell": {c.cell_key: (c.ratio, c.low, c.high, c.verdict) for c in cells},
    }


def quads_used(df: pd.DataFrame) -> str:
    """The quads per cell the sessions ran with (from their commands; a regress run from before
    --quads was passed to it used regress's default)."""
    values = sorted({int(c[c.index("--quads") + 1]) if "--quads" in c else AB_QUADS for c in df["command"]})
    return " or ".join(map(str, values))


def collect_rows(runs: Path) -> pd.DataFrame:
    rows = [r for folder in sorted(runs.iterdir()) if folder.is_dir() and (r := session_row(folder))]
    return pd.DataFrame(rows)


def condition_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per condition: runs, alarms / catches, cells flagged, median ratios, wall time."""
    out = []
    repeated = df[df["condition"].str.match(r"^(aa|all-|ig-|igcall-)")]
    for condition, g in repeated.groupby("condition", sort=False):
        kind, _, factor = condition.partition("-")
        out.append(
            {
                "condition": condition,
                "slowdown where": WHERE[kind],
                "factor": float(factor) if factor else 1.0,
                "runs": len(g),
                "runs with any alarm": int(g["any_alarm"].sum()),
                "runs caught (slower)": int(g["caught"].sum()),
                "cells flagged / cells": f"{int(g['flagged_cells'].sum())}/{int(g['cells'].sum())}",
                "untouched cells flagged": int(g["untouched_flagged"].sum()) if kind in ("ig", "igcall") else None,
                "median run ratio B/A": round(float(g["run_ratio"].median()), 3),
                "median touched-cells ratio": round(float(g["touched_ratio"].median()), 3),
                "median session s": round(float(g["wall_s"].median())),
                "load (1 min) median": round(float(g[["load_before", "load_after"]].stack().median()), 1),
            }
        )
    table = pd.DataFrame(out)
    if table.empty:
        return table
    order = {"aa": 0, "all": 1, "igcall": 2, "ig": 3}
    table["_kind"] = table["condition"].str.split("-").str[0].map(order)
    return table.sort_values(["_kind", "factor"]).drop(columns="_kind").reset_index(drop=True)


def real_lines(df: pd.DataFrame) -> list[str]:
    lines = []
    for name in ("threads-1v2", "fp32vbf16"):
        row = df[df["session"] == name]
        if row.empty:
            lines.append(f"- {name}: not collected")
            continue
        r = row.iloc[0]
        lines.append(
            f"- **{name}** (B/A): run {r['run_ratio']:.2f} [{r['run_low']:.2f}, {r['run_high']:.2f}] "
            f"{r['run_verdict']}; {r['flagged_cells']}/{r['cells']} cells flagged; session {r['wall_s']:.0f} s"
        )
        for key, (ratio, low, high, verdict) in r["per_cell"].items():
            lines.append(f"  - {key}: {ratio:.2f} [{low:.2f}, {high:.2f}] {verdict}")
    return lines


def regress_wall(runs: Path) -> str:
    done = runs / "regress-wall" / "done.json"
    if not done.exists():
        return "not collected"
    record = json.loads(done.read_text())
    return f"{record['wall_s']:.0f} s (exit {record['exit']}; load {record['load_before'][0]:.1f} before)"


def markdown(table: pd.DataFrame) -> str:
    """A pipe table (pandas' to_markdown needs tabulate, which this project does not ship)."""
    cells = [
        [("-" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)) for v in row]
        for row in table.itertuples(index=False)
    ]
    header = [str(c) for c in table.columns]
    return "\n".join(
        ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in cells]
    )


def figure(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    factors = sorted(table.loc[table["factor"] > 1, "factor"].unique())
    where = {f: i for i, f in enumerate(factors)}  # evenly spaced: 1.05 and 1.10 stay readable
    lines = (("all", "every cell (in the model)"), ("igcall", f"{TOUCHED}'s call"), ("ig", f"{TOUCHED}'s model"))
    for kind, label in lines:
        t = table[table["condition"].str.startswith(kind + "-")]
        x = [where[f] for f in t["factor"]]
        ax.plot(x, t["runs caught (slower)"] / t["runs"], marker="o", label=label)
        for xi, (_, row) in zip(x, t.iterrows(), strict=True):
            ax.annotate(
                f"n={row['runs']}",
                (xi, row["runs caught (slower)"] / row["runs"]),
                fontsize=6,
                textcoords="offset points",
                xytext=(3, -9),
            )
    aa = table[table["condition"] == "aa"]
    if not aa.empty and aa["runs"].iloc[0]:
        rate = aa["runs with any alarm"].iloc[0] / aa["runs"].iloc[0]
        ax.axhline(
            rate, color="grey", linestyle="--", label=f"A/A runs with an alarm ({rate:.0%}, n={aa['runs'].iloc[0]})"
        )
    ax.set_xticks(range(len(factors)), labels=[f"{f:g}" for f in factors])
    ax.set_xlabel("injected slowdown factor (side B): of the model, or of IG's whole call")
    ax.set_ylabel("runs called slower")
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=7, loc="center right")
    ax.set_title("A/B regress rule, ci preset, this shared 2-core machine", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def analyse(runs: Path, out: Path) -> int:
    df = collect_rows(runs)
    if df.empty:
        print(f"no finished sessions in {runs}: run `python -m experiments.ab.proof collect` first")
        return 2
    table = condition_table(df)
    cpu = df["cpu_model"].dropna().iloc[0] if df["cpu_model"].notna().any() else "unknown CPU"
    lines = [
        "# A/B proof (issue 10)",
        "",
        f"Machine: {cpu}, shared with other jobs (1-min load average per session below). "
        f"Preset ci (11 cells), 2 worker processes per side, {quads_used(df)} ABBA quads per cell, 25 ms blocks, "
        f"verdicts by attrib_core/analysis/timing_rule.py (Holm at 0.05 over the cells + the run, min effect 1.03). "
        f"Regenerate: `python -m experiments.ab.proof collect && python -m experiments.ab.proof analyse`.",
        "",
        markdown(table),
        "",
        "Real differences (one session each):",
        *real_lines(df),
        "",
        "Wall time of one `bench.regress` A/B run (ci, with profile; what `nox -s regress` runs): "
        + regress_wall(runs),
        "",
    ]
    out.mkdir(parents=True, exist_ok=True)
    (out / "ab_proof.md").write_text("\n".join(lines))
    df.drop(columns=["per_cell", "command"]).to_csv(out / "ab_proof_sessions.csv", index=False)
    if not table.empty:
        figure(table, out / "ab_proof.png")
    print("\n".join(lines))
    print(f"written: {out / 'ab_proof.md'}, {out / 'ab_proof.png'}, {out / 'ab_proof_sessions.csv'}")
    return 0
