"""The pages the commands write from committed results, opened in headless Chromium: no console
error, every table sorts by each of its headers, every figure written is on the page and loads,
and a phone shows the page without sideways scrolling (tables scroll in their own box)."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from tests.browser import pages
from tests.browser.page_check import PageCheck, check_page

pytestmark = pytest.mark.browser


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
    page = pages.build_report(tmp_path / "report")
    check = check_page(page)
    assert_page_reads_well(check, tables=3)  # the run, the Pareto front, every cell
    assert_every_figure_shown(page.parent, page, check)
    assert len(check.images) == 11  # 7 figures (reference_error.png among them) and 4 workload galleries
    assert check.tables[2].rows == 91


def test_compare_page_of_two_single_runs(browser, tmp_path: Path) -> None:
    """One run per side: no speedup is decided, so no figure; the tables still sort."""
    page = pages.build_compare(tmp_path / "compare", runs=list(map(str, pages.SINGLE_RUNS)))
    check = check_page(page)
    assert_page_reads_well(check, tables=3)  # the sides, the common cells, the cells on one side only
    assert [t.rows for t in check.tables] == [2, 38, 4]
    assert check.images == [] and not list(page.parent.glob("*.png"))


def test_compare_page_with_its_figure(browser, tmp_path: Path) -> None:
    page = pages.build_compare(tmp_path / "compare")
    check = check_page(page)
    assert_page_reads_well(check, tables=2)
    assert [t.rows for t in check.tables] == [2, 11]
    assert_every_figure_shown(page.parent, page, check)


def test_history_page(browser, tmp_path: Path) -> None:
    page = pages.build_history(tmp_path / "history")
    check = check_page(page)
    assert_page_reads_well(check, tables=2)  # the commits, the series examined
    assert_every_figure_shown(page.parent, page, check)


@pytest.mark.skipif(not pages.has_dashboard(), reason="no `attrib-bench dashboard` command yet")
def test_dashboard_pages(browser, tmp_path: Path) -> None:
    for page in pages.build_dashboard(tmp_path / "dashboard"):
        check = check_page(page)
        assert check.problems() == [], page.name
        assert check.unsortable_tables == 0, page.name
