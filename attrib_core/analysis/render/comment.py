"""The pull-request comment of `attrib-bench regress --comment-md FILE`, in GitHub markdown.

It is drawn from the very checks the gate prints and exits by (`regression.Comparison`), so
the comment and the exit status cannot disagree: this module sorts those checks into what
changed and what did not and folds long lists, and decides nothing itself. A hidden marker
line lets a workflow find its own earlier comment and update it, one comment per pull request
(CodSpeed and Bencher work that way). Torch-free.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import pandas as pd

from attrib_core import formatting
from attrib_core.analysis.regression import (
    CHANGED,
    FAILED,
    IMPROVED,
    MISSING,
    NEW,
    OK,
    REGRESSED,
    TIME_VERDICTS,
    UNCHECKED,
    VERDICT_ORDER,
    Check,
    Comparison,
    Thresholds,
)
from attrib_core.analysis.timing_rule import RUN_LEVEL

MARKER = "<!-- attrib-bench-regress -->"
FOLD_ROWS = 10  # a table longer than this is folded into <details>
MAX_ROWS = 100  # per table: GitHub refuses comments over 65,536 characters
REGRESSION, NO_REGRESSION, UNDETERMINED = "regression", "no regression", "undetermined"
OUTCOME_ICON = {
    REGRESSION: "❌",
    NO_REGRESSION: "✅",
    UNDETERMINED: "❔",
}  # characters, not :shortcodes:, for any viewer
# the timing rule's own words for a time check, read back from the mapping regression.py applies
TIME_WORDS = {verdict: word for word, verdict in TIME_VERDICTS.items()}
BLOCK_STATISTIC = {"min": "block minima", "median": "block medians"}


def outcome(comparison: Comparison) -> str:
    """regression exactly when the gate exits 1; undetermined when the run as a whole has no
    time verdict (too few blocks, or other hardware); no regression otherwise."""
    if comparison.failing:
        return REGRESSION
    level = run_level(comparison)
    if level is None or level.verdict in (UNCHECKED, CHANGED):
        return UNDETERMINED
    return NO_REGRESSION


def side_label(df: pd.DataFrame, fallback: str) -> str:
    """What an A/B session called this side (`base 4b5189f`), else what the user passed."""
    labels = set(df["ab_label"].dropna()) if "ab_label" in df else set()
    return labels.pop() if len(labels) == 1 else fallback


def run_level(comparison: Comparison) -> Check | None:
    return next((c for c in comparison.checks if c.cell_key == RUN_LEVEL and c.kind == "time"), None)


def render_comment(comparison: Comparison, th: Thresholds, base: str, new: str, fold_rows: int = FOLD_ROWS) -> str:
    """The whole comment: marker, headline, what changed, then the rest folded."""
    result = outcome(comparison)
    time_checks = [c for c in comparison.checks if c.kind == "time" and c.cell_key != RUN_LEVEL]
    changed = [c for c in time_checks if c.verdict in (REGRESSED, CHANGED, IMPROVED)]
    unchanged = [c for c in time_checks if c not in changed]
    status = [c for c in comparison.checks if c.kind == "status"]
    other = [c for c in comparison.checks if c.kind not in ("time", "status") and c.verdict != OK]
    ratio_label = f"ratio of {BLOCK_STATISTIC.get(th.statistic, th.statistic)}, B/A"
    interval_label = f"{1 - th.alpha:.0%} interval"
    lines = [MARKER, f"### {OUTCOME_ICON[result]} Benchmark regression check: {result}", ""]
    lines += [headline(run_level(comparison), ratio_label, interval_label), ""]
    lines += [f"A (base): `{base}` · B (candidate): `{new}` · {cell_counts(comparison)}", ""]
    lines += warnings(comparison)
    time_header = ("cell", "A", "B", ratio_label, interval_label, "Holm p", "verdict")
    lines += section(
        "Changed cells (time)",
        time_header,
        [time_row(c) for c in sort_changed(changed)],
        fold_rows,
        empty="No cell was called slower or faster.",
    )
    lines += section(
        "Failed, missing or new cells", ("cell", "status", "note"), [status_row(c) for c in status], fold_rows
    )
    lines += section(
        "Memory and fidelity changes",
        ("cell", "check", "A", "B", "ratio B/A", "verdict"),
        [other_row(c) for c in sorted(other, key=worst_first)],
        fold_rows,
        empty="Peak memory and fidelity: every value within its bound.",
    )
    if unchanged:
        said = run_level(comparison).note if run_level(comparison) else ""  # not repeated on every row
        ordered = sorted(unchanged, key=lambda c: (c.verdict != UNCHECKED, c.cell_key))
        rows = [time_row(c, said) for c in ordered]
        title = f"Unchanged or undetermined cells ({len(unchanged)})"
        lines += folded(title, table(time_header, rows))
    lines += folded("How this was decided", rule_text(comparison, th))
    return "\n".join(lines).rstrip() + "\n"


def headline(level: Check | None, ratio_label: str, interval_label: str) -> str:
    if level is None:
        return f"**{RUN_LEVEL}**: no cell was timed on both sides."
    word = TIME_WORDS.get(level.verdict, level.verdict)
    if level.ratio is None:
        return f"**{RUN_LEVEL}**: **{word}**: {level.note}"
    figures = f"{ratio_label} **{ratio(level.ratio)}**, {interval_label} {interval(level)}, Holm p {p_value(level)}"
    note = f" ({level.note})" if level.note else ""
    return f"**{RUN_LEVEL}**: {figures}: **{word}**{note}"


def cell_counts(comparison: Comparison) -> str:
    verdicts = list(comparison.cell_verdicts().values())
    counts = [f"{verdicts.count(v)} {v}" for v in VERDICT_ORDER if v in verdicts]
    design = comparison.timing.design if comparison.timing is not None else "none timed"
    return f"{len(verdicts)} cells: {', '.join(counts)} · time: {design}"


def warnings(comparison: Comparison) -> list[str]:
    out = []
    if comparison.environment_changes:
        changes = "; ".join(f"{k}: `{a}` → `{b}`" for k, (a, b) in comparison.environment_changes.items())
        out += [
            f"> [!WARNING]\n> The two sides ran in different environments ({escape(changes)}). Memory and "
            "fidelity changes are not decisive; time is not either when the hardware or thread count differs.",
            "",
        ]
    return out


def sort_changed(checks: Iterable[Check]) -> list[Check]:
    """Slower first, the largest ratio first; then the faster ones, the largest speed-up first."""
    return sorted(checks, key=lambda c: (VERDICT_ORDER.index(c.verdict), -(c.ratio or 1.0) * sign(c)))


def sign(check: Check) -> int:
    return 1 if check.verdict in (REGRESSED, CHANGED) else -1


def worst_first(check: Check) -> tuple[int, str, str]:
    return VERDICT_ORDER.index(check.verdict), check.cell_key, check.kind


def time_row(c: Check, said: str = "") -> tuple[str, ...]:
    """One time check; its note left out when the headline already says it."""
    word = verdict_word(c) + (f" ({c.note})" if c.note and c.note != said else "")
    times = formatting.seconds(c.baseline), formatting.seconds(c.now)
    return cell(c), *times, ratio(c.ratio), interval(c), p_value(c), word


def status_row(c: Check) -> tuple[str, ...]:
    return cell(c), emphasise(c.verdict), c.note


def other_row(c: Check) -> tuple[str, ...]:
    show = formatting.size_bytes if c.kind == "memory" else number
    word = emphasise(c.verdict) + (f" ({c.note})" if c.note else "")
    return cell(c), c.kind, show(c.baseline), show(c.now), ratio(c.ratio), word


def verdict_word(c: Check) -> str:
    return emphasise(c.verdict, TIME_WORDS.get(c.verdict, c.verdict))


def emphasise(verdict: str, word: str | None = None) -> str:
    word = word or verdict
    return f"**{word}**" if verdict in (REGRESSED, FAILED) else word


def cell(c: Check) -> str:
    return f"`{c.cell_key}`"


def ratio(value: float | None) -> str:
    return formatting.MISSING if value is None or math.isnan(value) else f"{value:.3f}"


def interval(c: Check) -> str:
    if c.ci_low is None or c.ci_high is None:
        return formatting.MISSING
    return f"[{c.ci_low:.3f}, {c.ci_high:.3f}]"


def p_value(c: Check) -> str:
    return formatting.MISSING if c.p_adjusted is None else f"{c.p_adjusted:.2g}"


def number(value: float | None) -> str:
    return formatting.MISSING if value is None or math.isnan(value) else f"{value:.4g}"


# --- markdown -----------------------------------------------------------------------------


def section(
    title: str, header: Sequence[str], rows: list[tuple[str, ...]], fold_rows: int, empty: str = ""
) -> list[str]:
    """A titled table; folded when longer than fold_rows; a line saying so when empty (if asked)."""
    if not rows:
        return [empty, ""] if empty else []
    if len(rows) > fold_rows:
        return folded(f"{title} ({len(rows)})", table(header, rows))
    return [f"#### {title}", "", *table(header, rows), ""]


def folded(summary: str, body: list[str]) -> list[str]:
    # blank lines around the body: GitHub renders markdown inside <details> only after one
    return ["<details>", f"<summary>{summary}</summary>", "", *body, "", "</details>", ""]


def table(header: Sequence[str], rows: list[tuple[str, ...]]) -> list[str]:
    shown = rows[:MAX_ROWS]
    lines = [row_line(header), "|" + "|".join("---" for _ in header) + "|", *(row_line(r) for r in shown)]
    if len(rows) > len(shown):
        lines += ["", f"... and {len(rows) - len(shown)} more rows: see the job's log (regress prints them all)."]
    return lines


def row_line(values: Sequence[str]) -> str:
    return "| " + " | ".join(escape(v) for v in values) + " |"


def escape(text: str) -> str:
    """A table cell: no pipe that ends it early, no newline that ends the row."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def rule_text(comparison: Comparison, th: Thresholds) -> list[str]:
    notes = [f"- note: {escape(w)}" for w in comparison.warnings]
    statistic = BLOCK_STATISTIC.get(th.statistic, th.statistic)
    return [
        f"- **time**: the units are blocks of rounds (each block's {th.statistic}); ratio B/A of the {statistic}, "
        f"> 1 is slower. Slower or faster when Holm's adjusted p < {th.alpha:g} over every cell plus "
        f"{RUN_LEVEL} and the ratio is past {th.min_effect:g}x. The interval is unadjusted and includes "
        "the variation between blocks (and between runs).",
        f"- **memory**: regressed above A x {th.memory_factor:g} + {formatting.size_bytes(th.memory_slack_bytes)}.",
        f"- **fidelity**: regressed when worse by more than {th.fidelity_tolerance:.0%} of A + {th.fidelity_slack:g}.",
        f"- a cell that failed in B is a regression; cells on one side only ({MISSING}, {NEW}) are listed, not failed.",
        *notes,
    ]
