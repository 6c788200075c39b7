"""Cost of Captum's LLM wrappers against prompt length, target length and the KV cache, from one
results file of the `llm` preset: time per prompt, peak memory, efficiency, the growth exponent of
time and memory in the prompt length, memory per prompt token, and the prompt length at which a
memory budget runs out (the predicted OOM point). Torch-free: it reads the results file only.

    python -m experiments.llm.cost_curves results/<run>.json [--budget-gib 0.5 16 80]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd

from attrib_core.analysis.results import load_results

GIB = 2**30


def llm_cells(path: Path) -> pd.DataFrame:
    df = load_results([path])
    df = df[df["method"].str.startswith("LLM-") & (df["status"] == "ok")].copy()
    df["prompt_tokens"] = df["workload"].str.rsplit("_", n=1).str[1].astype(int)
    df["per_prompt_s"] = df["median_s"] / df["batch_size"]
    return df


def exponent(x: np.ndarray, y: np.ndarray) -> float:
    """Slope of log y on log x: 1 for linear growth, 2 for quadratic."""
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def memory_fit(tokens: np.ndarray, peak: np.ndarray) -> tuple[np.ndarray, str]:
    """Least-squares fit of peak bytes in the prompt length: linear, or quadratic where the
    quadratic term carries more than 10% of the peak at the longest prompt."""
    quadratic = np.polyfit(tokens, peak, 2)
    longest = tokens.max()
    if quadratic[0] > 0 and quadratic[0] * longest**2 > 0.1 * peak.max():
        return quadratic, "quadratic"
    return np.polyfit(tokens, peak, 1), "linear"


def tokens_at_budget(fit: np.ndarray, budget_bytes: float) -> float:
    """The prompt length whose predicted peak equals the budget."""
    roots = np.roots([*fit[:-1], fit[-1] - budget_bytes])
    real = [r.real for r in roots if abs(r.imag) < 1e-9 and r.real > 0]
    return min(real) if real else math.inf


def shown(value: object) -> str:
    """A table entry: numbers to 3 significant digits, flags as they are, missing as blank."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def classifier_table(path: Path) -> list[str]:
    """The BERT cells: time per example, peak memory, efficiency and the fidelity the run recorded."""
    df = load_results([path])
    df = df[df["workload"].str.startswith("sentiment_bert") & (df["status"] == "ok")]
    out = [
        "| workload | method | batch | per example (s) | peak memory (MiB) | efficiency | deletion AUC | "
        "completeness error | reference error |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    for _, row in df.iterrows():
        out.append(
            f"| {row['workload']} | {row['method']} | {row['batch_size']} | "
            f"{row['median_s'] / row['batch_size']:.4g} | "
            f"{row['peak_bytes'] / 2**20:.2f} | {shown(row['efficiency'])} | {shown(row.get('fid_deletion'))} | "
            f"{shown(row.get('fid_completeness'))} | {shown(row.get('fid_reference_error'))} |"
        )
    return out


def report(path: Path, budgets_gib: list[float]) -> str:
    df = llm_cells(path)
    out = [f"results: {path.name}", "", *classifier_table(path), ""]
    out.append(
        "| method | prompt tokens | target tokens | KV cache | in tokens | per prompt (s) | peak memory (MiB) "
        "| efficiency | forward rows | deletion AUC | reference error |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for _, row in df.sort_values(["method", "prompt_tokens", "knob_target_length"]).iterrows():
        out.append(
            f"| {row['method']} | {row['prompt_tokens']} | {int(row['knob_target_length'])} | "
            f"{shown(row.get('knob_use_cached_outputs'))} | {shown(row.get('knob_forward_in_tokens'))} | "
            f"{row['per_prompt_s']:.4g} | {row['peak_bytes'] / 2**20:.1f} | {shown(row['efficiency'])} | "
            f"{int(row['passes_forward'])} | {shown(row.get('fid_deletion'))} | "
            f"{shown(row.get('fid_reference_error'))} |"
        )
    out += ["", "Growth in the prompt length (target 4 tokens, Captum's defaults otherwise):", ""]
    out.append(
        "| method | time exponent (all / last doubling) | memory exponent (all / last doubling) | memory fit "
        "| memory per prompt token (KiB) | " + " | ".join(f"OOM at {b:g} GiB (tokens)" for b in budgets_gib) + " |"
    )
    out.append("|---|---|---|---|---|" + "---|" * len(budgets_gib))
    default = df[(df["knob_target_length"] == 4) & (df.get("knob_use_cached_outputs", True) != False)]  # noqa: E712
    default = default[default.get("knob_forward_in_tokens", True) != False]  # noqa: E712
    for method, cells in default.groupby("method"):
        cells = cells.drop_duplicates("prompt_tokens").sort_values("prompt_tokens")
        if len(cells) < 3:
            continue
        tokens = cells["prompt_tokens"].to_numpy(float)
        fit, kind = memory_fit(tokens, cells["peak_bytes"].to_numpy(float))
        slope_at_longest = np.polyval(np.polyder(fit), tokens.max())
        seconds, peak = cells["per_prompt_s"].to_numpy(float), cells["peak_bytes"].to_numpy(float)
        out.append(
            f"| {method} | {exponent(tokens, seconds):.2f} / {exponent(tokens[-2:], seconds[-2:]):.2f} | "
            f"{exponent(tokens, peak):.2f} / {exponent(tokens[-2:], peak[-2:]):.2f} | {kind} | "
            f"{slope_at_longest / 1024:.1f} | "
            + " | ".join(f"{tokens_at_budget(fit, b * GIB):,.0f}" for b in budgets_gib)
            + " |"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--budget-gib", type=float, nargs="+", default=[1.0, 16.0, 80.0])
    args = parser.parse_args()
    print(report(args.results, args.budget_gib))


if __name__ == "__main__":
    main()
