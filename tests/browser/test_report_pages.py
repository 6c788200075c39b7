"""The pages the commands write from committed results, opened in headless Chromium: no console
error, every table sorts by each of its headers, every figure written is on the page and loads,
and a phone shows the page without sideways scrolling (tables scroll in their own box)."""

from __future__ import annotations

import base64
import importlib
import re
from pathlib import Path

import pytest

from attrib_core.analysis.render import compare, history_report, report
from attrib_core.commands import COMMANDS
from tests import REPO
from tests.browser.page_check import PageCheck, check_page

pytestmark = pytest.mark.browser

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


def embedded_pngs(page: Path) -> list[bytes]:
    uris = re.findall(r'<img [^>]*src="data:image/png;base64,([^"]+)"', page.read_text())
    return [base64.b64decode(uri) for uri in uris]


def assert_page_reads_well(check: PageCheck, tables: int) -> None:
    assert check.problems() == []
    assert len(check.tables) == tables and check.unsortable_tables == 0
    assert all(t.rows > 0 for t in check.tables)


def assert_every_figure_shown(folder: Path, page: Path, check: PageCheck) -> None:
    """Each PNG the command wrote beside the page is embedded in it, once, and loaded."""
    written = sorted(p.read_bytes() for p in folder.glob("*.png"))
    assert written and sorted(embedded_pngs(page)) == written
    assert len(check.images) == len(written) and all(i.loaded and i.alt for i in check.images)


def test_report_page(browser, tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert report.main([str(REPORTED), "--out", str(out)]) == 0
    check = check_page(out / "report.html")
    assert_page_reads_well(check, tables=3)  # the run, the Pareto front, every cell
    assert_every_figure_shown(out, out / "report.html", check)
    assert len(check.images) == 10
    assert check.tables[2].rows == 91


def test_compare_page_of_two_single_runs(browser, tmp_path: Path) -> None:
    """One run per side: no speedup is decided, so no figure; the tables still sort."""
    out = tmp_path / "compare"
    assert compare.main([*map(str, SINGLE_RUNS), "--out", str(out)]) == 0
    check = check_page(out / "compare.html")
    assert_page_reads_well(check, tables=3)  # the sides, the common cells, the cells on one side only
    assert [t.rows for t in check.tables] == [2, 38, 4]
    assert check.images == [] and not list(out.glob("*.png"))


def test_compare_page_with_its_figure(browser, tmp_path: Path) -> None:
    out = tmp_path / "compare"
    sides = ["+".join(map(str, SAME_COMMIT[:2])), "+".join(map(str, SAME_COMMIT[2:]))]
    assert compare.main([*sides, "--out", str(out)]) == 0
    check = check_page(out / "compare.html")
    assert_page_reads_well(check, tables=2)
    assert_every_figure_shown(out, out / "compare.html", check)


def test_history_page(browser, tmp_path: Path) -> None:
    out = tmp_path / "history"
    assert history_report.main([str(HISTORY), "--out", str(out)]) == 0
    check = check_page(out / "history.html")
    assert_page_reads_well(check, tables=2)  # the commits, the series examined
    assert_every_figure_shown(out, out / "history.html", check)


@pytest.mark.skipif("dashboard" not in COMMANDS, reason="no `attrib-bench dashboard` command yet")
def test_dashboard_pages(browser, tmp_path: Path) -> None:
    out = tmp_path / "dashboard"
    command = importlib.import_module(COMMANDS["dashboard"].module)
    assert command.main([str(RESULTS), str(HISTORY), "-o", str(out)]) == 0
    for name in DASHBOARD_PAGES:
        check = check_page(out / name)
        assert check.problems() == [], name
        assert check.unsortable_tables == 0, name
