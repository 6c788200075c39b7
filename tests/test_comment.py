"""The pull-request comment (`regress --comment-md`): drawn from the checks the gate decides
with, on results files written to disk and compared by the one rule (no hand-typed verdicts),
and from the repository's own committed baseline files. Torch-free."""

from __future__ import annotations

from pathlib import Path

import pytest

from attrib_core import exits, formatting
from attrib_core.ab import regress
from attrib_core.analysis.regression import REGRESSED, Thresholds, compare
from attrib_core.analysis.render import comment
from attrib_core.analysis.results import load_results, results_files
from attrib_core.analysis.timing_rule import RUN_LEVEL
from tests.test_regression import KEYS, folder, runs

REPO = Path(__file__).resolve().parents[1]
CI_BASELINE = REPO / "results" / "baselines" / "ci"  # two single runs of the ci preset, committed


def render(base, now, **kwargs) -> tuple[str, object]:
    comparison = compare(base, now)
    return comment.render_comment(comparison, Thresholds(), "A-files", "B-files", **kwargs), comparison


def rows_under(text: str, title: str) -> list[list[str]]:
    """The table rows (cells split, header and rule left out) that follow a title line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if title in line)
    table = []
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            table.append([cell.strip() for cell in line.strip("|").split(" | ")])
        elif table:
            break
    return table[2:]


def time_check(comparison, key):
    return next(c for c in comparison.checks if c.cell_key == key and c.kind == "time")


def test_the_marker_comes_first_so_a_workflow_finds_its_own_comment(tmp_path):
    text, _ = render(*runs(tmp_path))
    assert text.splitlines()[0] == comment.MARKER == "<!-- attrib-bench-regress -->"


def test_an_a_a_comparison_says_no_regression_and_lists_no_changed_cell(tmp_path):
    base, now = runs(tmp_path)  # two sides of the same distribution, seeded
    text, comparison = render(base, now)
    assert comment.outcome(comparison) == comment.NO_REGRESSION
    assert "Benchmark regression check: no regression" in text.splitlines()[1]
    assert "Changed cells" not in text and "No cell was called slower or faster." in text
    level = time_check(comparison, RUN_LEVEL)
    assert f"**{RUN_LEVEL}**: ratio of block minima, B/A **{level.ratio:.3f}**" in text
    assert f"95% interval [{level.ci_low:.3f}, {level.ci_high:.3f}]" in text
    # every cell is in the folded block of unchanged cells, none outside it
    folded = text.split("<summary>Unchanged or undetermined cells (4)</summary>")[1].split("</details>")[0]
    assert all(f"`{key}`" in folded for key in KEYS)
    assert all(text.count(f"`{key}`") == 1 for key in KEYS)


def test_a_slowed_cell_is_a_row_with_its_ratio_interval_and_holm_p(tmp_path):
    base, now = runs(tmp_path, {KEYS[2]: {"median_s": 0.018}})  # 3x slower than its 0.006 s
    text, comparison = render(base, now)
    slowed = time_check(comparison, KEYS[2])
    assert comment.outcome(comparison) == comment.REGRESSION and slowed.verdict == REGRESSED
    rows = rows_under(text, "#### Changed cells (time)")
    assert [row[0] for row in rows] == [f"`{KEYS[2]}`"]
    _, a, b, ratio, interval, p, verdict = rows[0]
    assert ratio == f"{slowed.ratio:.3f}" and float(ratio) == pytest.approx(3.0, rel=0.05)
    assert interval == f"[{slowed.ci_low:.3f}, {slowed.ci_high:.3f}]"
    assert p == f"{slowed.p_adjusted:.2g}" and verdict == "**slower**"
    assert (a, b) == (formatting.seconds(slowed.baseline), formatting.seconds(slowed.now)) == ("5.78 ms", "17.4 ms")
    assert "Benchmark regression check: regression" in text


def test_more_rows_than_the_fold_limit_are_folded_into_details(tmp_path):
    slower = {k: {"median_s": 0.002 * (i + 1) * 1.7} for i, k in enumerate(KEYS)}  # every cell
    base, now = runs(tmp_path, slower)
    shown, comparison = render(base, now)
    level = time_check(comparison, RUN_LEVEL)
    assert f"Holm p {level.p_adjusted:.2g}: **slower**\n" in shown  # the run as a whole, 1.7x
    assert "#### Changed cells (time)" in shown and len(rows_under(shown, "#### Changed cells (time)")) == 4
    folded, _ = render(base, now, fold_rows=3)
    assert "#### Changed cells" not in folded
    assert "<details>\n<summary>Changed cells (time) (4)</summary>\n\n| cell |" in folded
    assert len(rows_under(folded, "<summary>Changed cells (time) (4)</summary>")) == 4


def test_memory_and_fidelity_changes_are_listed_with_their_verdicts(tmp_path):
    changes = {
        KEYS[0]: {"peak_bytes": 1_100_000},  # 10% more than the bound of 1% + 4 KiB
        KEYS[1]: {"fidelity": {"completeness": 0.05, "insertion": 0.8}},  # error metric 5x
        KEYS[3]: {"peak_bytes": 800_000},  # less memory: an improvement, listed too
    }
    text, comparison = render(*runs(tmp_path, changes))
    rows = rows_under(text, "#### Memory and fidelity changes")
    assert [row[:2] + row[-1:] for row in rows] == [  # regressions first, then by cell; as the gate checks them
        [f"`{KEYS[1]}`", "fidelity:completeness", "**regressed**"],
        [f"`{KEYS[1]}`", "fidelity:completeness_raw", "**regressed**"],
        [f"`{KEYS[0]}`", "memory", "**regressed**"],
        [f"`{KEYS[3]}`", "memory", "improved"],
    ]
    assert rows[0][2:5] == ["0.01", "0.05", "5.000"]
    assert rows[2][2:5] == ["977 KiB", "1.05 MiB", "1.100"]
    assert comment.outcome(comparison) == comment.REGRESSION


def test_a_failed_cell_is_listed_and_is_a_regression(tmp_path):
    text, comparison = render(*runs(tmp_path, {KEYS[1]: {"status": "failed"}}))
    rows = rows_under(text, "#### Failed, missing or new cells")
    assert rows == [[f"`{KEYS[1]}`", "**failed**", "timing: RuntimeError: boom"]]
    assert comment.outcome(comparison) == comment.REGRESSION


def test_one_committed_run_per_side_is_undetermined_and_says_why():
    base, new = sorted(results_files(CI_BASELINE))[:2]
    text, comparison = render(load_results([base]), load_results([new]))
    assert comment.outcome(comparison) == comment.UNDETERMINED and not comparison.failing
    assert "Benchmark regression check: undetermined" in text
    assert f"**{RUN_LEVEL}**: **undetermined**: 1 run per side" in text
    assert "between-run variation unknown" not in text.split("Unchanged or undetermined")[1]  # said once, above


def test_a_pipe_in_a_note_does_not_break_the_table():
    assert comment.row_line(["a|b", "c\nd"]) == "| a\\|b | c d |"


# --- the command line ----------------------------------------------------------------------


def test_the_flag_writes_the_comment_and_keeps_the_exit_status(tmp_path, capsys):
    base, same = folder(tmp_path, "base"), folder(tmp_path, "same", seed=100)
    slow = folder(tmp_path, "slow", {KEYS[2]: {"median_s": 0.018}}, seed=200)
    out = tmp_path / "comment.md"
    assert regress.main(["--compare", str(base), str(slow), "--comment-md", str(out)]) == exits.EXIT_FAILED
    text = out.read_text()
    assert text.startswith(comment.MARKER) and ": regression\n" in text and f"`{KEYS[2]}`" in text
    assert f"pull-request comment (markdown): {out}" in capsys.readouterr().out
    assert regress.main(["--compare", str(base), str(same), "--comment-md", str(out)]) == exits.EXIT_OK
    assert ": no regression\n" in out.read_text()


def test_a_side_given_as_files_joined_by_plus_reads_like_its_folder(tmp_path):
    base, slow = folder(tmp_path, "base"), folder(tmp_path, "slow", {KEYS[2]: {"median_s": 0.018}}, seed=200)
    joined = "+".join(str(p) for p in results_files(slow))
    by_folder, by_files = tmp_path / "folder.md", tmp_path / "files.md"
    regress.main(["--compare", str(base), str(slow), "--comment-md", str(by_folder)])
    regress.main(["--compare", str(base), joined, "--comment-md", str(by_files)])
    assert by_folder.read_text() == by_files.read_text().replace(joined, str(slow))


@pytest.mark.parametrize(
    "args",
    [
        ["--compare", "a.json", "b.json", "--comment-md", "{tmp}/missing/comment.md"],  # no such folder
        ["--compare", "a.json", "b.json", "--comment-md", "{tmp}"],  # a folder
        ["--update-baseline", "--comment-md", "{tmp}/comment.md"],  # compares nothing
    ],
)
def test_a_comment_that_cannot_be_written_exits_2_naming_the_flag(tmp_path, capsys, args):
    with pytest.raises(SystemExit) as exit_info:
        regress.main([a.format(tmp=tmp_path) for a in args])
    assert exit_info.value.code == exits.EXIT_BAD_INPUT
    assert "--comment-md" in capsys.readouterr().err


def test_sides_from_other_hardware_are_warned_about_and_memory_is_only_changed(tmp_path):
    base, now = runs(tmp_path, {KEYS[0]: {"peak_bytes": 1_100_000}}, cpu_model="Other CPU")
    text, comparison = render(base, now)
    assert "> [!WARNING]\n> The two sides ran in different environments (cpu_model: `Test CPU` → `Other CPU`)" in text
    rows = rows_under(text, "#### Memory and fidelity changes")
    assert [row[:2] + row[-1:] for row in rows] == [
        [f"`{KEYS[0]}`", "memory", "changed (environment differs: not decisive)"]
    ]
    assert not comparison.failing and comment.outcome(comparison) == comment.NO_REGRESSION
