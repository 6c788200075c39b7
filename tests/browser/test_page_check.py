"""The page checker itself, on small pages made to fail one way each: it must see each fault."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from PIL import Image

from attrib_core.analysis.render import html
from tests.browser.page_check import check_page, sort_failure

pytestmark = pytest.mark.browser

HEAD = '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
VIEWPORT = '<meta name="viewport" content="width=device-width, initial-scale=1">'


def png_uri() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 4), "white").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def write(tmp_path: Path, body: str, head: str = VIEWPORT) -> Path:
    page = tmp_path / "page.html"
    page.write_text(f"{HEAD}{head}</head><body>{body}</body></html>")
    return page


def sortable(rows: list[tuple[str, str]]) -> str:
    """A two-column table.sortable: a number (data-sort; '' = missing) and a text."""
    cells = "".join(f"<tr><td{f' data-sort={n}' if n else ''}>{n}</td><td>{t}</td></tr>" for n, t in rows)
    return f'<table class="sortable"><thead><tr><th>n</th><th>t</th></tr></thead><tbody>{cells}</tbody></table>'


def test_sort_contract_in_python() -> None:
    ranks = {"a": 0, "b": 1}
    assert sort_failure([[0, 2.0], [0, 10.0], [1, "a"], [2, ""]], ranks, descending=False) is None
    assert sort_failure([[1, "b"], [1, "a"], [0, 10.0], [0, 2.0], [2, ""]], ranks, descending=True) is None
    assert sort_failure([[2, ""], [0, 1.0]], ranks, descending=False) == "empty cells are not all last"
    assert (
        sort_failure([[0, 10.0], [0, 2.0]], ranks, descending=False) == "ascending order broken at row 0: [10.0, 2.0]"
    )


def test_a_good_page_passes(browser, tmp_path: Path) -> None:
    rows = [("10", "b"), ("", "a"), ("2", "c"), ("", ""), ("-1.5", "a")]
    body = f'<img alt="a figure" src="{png_uri()}">{sortable(rows)}<script>{html.SORT_SCRIPT}</script>'
    shot = tmp_path / "shot.png"
    check = check_page(write(tmp_path, body), screenshot=shot)
    assert check.problems() == []
    assert [(t.headers, t.rows) for t in check.tables] == [(["n", "t"], 5)]
    assert [(i.alt, i.loaded) for i in check.images] == [("a figure", True)]
    assert (check.narrow_inner_width, check.narrow_scroll_width) == (390, 390)
    with Image.open(shot) as image:
        assert image.size == (1200, 800)


def test_each_fault_is_reported(browser, tmp_path: Path) -> None:
    unseen_image = '<img alt="" src="missing.png">'  # neither loaded nor described
    unsorted = sortable([("10", "b"), ("2", "a")])  # no script: clicks do nothing
    too_wide = f"<p>{'x' * 300}</p>"  # one word wider than a phone
    body = f'{unseen_image}{unsorted}{too_wide}<script>console.error("boom")</script>'
    problems = check_page(write(tmp_path, body)).problems()
    assert any(p.startswith("console: ") and "boom" in p for p in problems)
    assert any("missing.png" in p and "not loaded" in p for p in problems)
    assert any("no alt text" in p for p in problems)
    assert "table 0: column 'n': ascending order broken at row 0: [10.0, 2.0]" in problems
    assert any(p.startswith("narrow screen:") and "<p>" in p for p in problems)


def test_a_page_without_a_viewport_meta_fails_on_a_phone(browser, tmp_path: Path) -> None:
    """Without it a phone lays the page out 980 px wide and shrinks it: unreadable, though nothing scrolls."""
    check = check_page(write(tmp_path, "<p>short</p>", head=""))
    assert check.narrow_inner_width > 390
    assert not check.narrow_ok
