"""Open a local HTML page in headless Chromium and report what a reader would trip over.

`check_page(path)` loads the page once at desktop width and once on a phone-sized screen and
returns a PageCheck: the browser console's errors, for every sortable table whether a click on
each header sorts its rows (ascending, then descending on a second click), every <img> loaded
and described, and whether the page needs sideways scrolling on a narrow screen. It knows
nothing of which page it opens, so any page the project writes (report, compare, history, the
dashboard) can be pointed at it. A test helper, not shipped.

The sort contract it checks is the one of the pages' script (attrib_core/analysis/render/html.py):
a cell's key is its `data-sort` number when it has one, else its text; numbers order as numbers,
before text, which orders by the browser's collation; empty cells stay last in both directions;
a second click reverses the order of the non-empty cells.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

DESKTOP = (1200, 800)
PHONE = (390, 844)
SORTABLE = "table.sortable"

# Every cell of one table column as [kind, value]: kind 0 a number (data-sort), 1 text, 2 empty.
COLUMN_KEYS = """
const [table, col] = arguments;
return [...table.tBodies[0].rows].map((row) => {
  const cell = row.cells[col];
  if (!cell) return [2, ""];
  const n = parseFloat(cell.dataset.sort);
  if (!isNaN(n)) return [0, n];
  const text = cell.textContent.trim();
  return text === "" ? [2, ""] : [1, text];
});
"""
ROWS_TEXT = "return [...arguments[0].tBodies[0].rows].map((row) => row.textContent);"
# Each text's rank under the browser's collation, so text order is checked as the browser sees it.
COLLATION_RANKS = """
const texts = [...new Set(arguments[0])].sort(new Intl.Collator().compare);
const ranks = {}; let rank = -1, last = null;
for (const t of texts) { if (last === null || new Intl.Collator().compare(last, t) !== 0) rank += 1;
  ranks[t] = rank; last = t; }
return ranks;
"""
IMAGES = """
return [...document.images].map((img) => ({src: img.getAttribute("src").slice(0, 60),
  alt: img.getAttribute("alt") || "", complete: img.complete, width: img.naturalWidth}));
"""
# The page's width against the screen's, and the first elements that stick out of a screen this
# wide or whose text overflows them (Chrome zooms a phone page out to fit what overflows), while
# not inside a box that scrolls sideways on its own.
NARROW = """
const limit = arguments[0] + 1;
const scrolls = (el) => { for (let p = el.parentElement; p; p = p.parentElement) {
  const o = getComputedStyle(p).overflowX; if (o === "auto" || o === "scroll" || o === "hidden") return true; }
  return false; };
const sticksOut = (el) => el.getBoundingClientRect().right > limit ||
  (el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX === "visible");
const wide = [...document.body.querySelectorAll("*")].filter((el) =>
  sticksOut(el) && !scrolls(el)).slice(0, 5).map((el) =>
  `<${el.tagName.toLowerCase()}${el.className ? " class=" + el.className : ""}> ` +
  `${Math.round(el.getBoundingClientRect().right)}px: ${el.textContent.trim().slice(0, 60)}`);
return {scroll_width: document.documentElement.scrollWidth, inner_width: window.innerWidth, wide: wide};
"""


class BrowserMissing(RuntimeError):
    """Chromium or its driver is not installed (or selenium is not importable)."""


def browser_binaries() -> tuple[str, str]:
    """(chromium, chromedriver) from PATH; BrowserMissing naming what is absent and how to install it."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    missing = [name for name, found in (("chromium", chromium), ("chromedriver", driver)) if found is None]
    if missing:
        raise BrowserMissing(f"{' and '.join(missing)} not on PATH (Debian: apt-get install chromium chromium-driver)")
    try:
        import selenium  # noqa: F401
    except ImportError as exc:
        raise BrowserMissing("selenium is not installed (pip install '.[dev]')") from exc
    return chromium, driver


@dataclass
class TableCheck:
    """One sortable table: its headers and, per header that did not sort, why."""

    index: int
    headers: list[str]
    rows: int
    failures: list[str] = field(default_factory=list)


@dataclass
class ImageCheck:
    src: str
    alt: str
    loaded: bool


@dataclass
class PageCheck:
    path: Path
    console_errors: list[str]
    tables: list[TableCheck]
    unsortable_tables: int
    images: list[ImageCheck]
    narrow_scroll_width: int
    narrow_inner_width: int
    narrow_overflow: list[str]

    @property
    def narrow_ok(self) -> bool:
        """No sideways scroll of the whole page, and the page laid out at the phone's width
        (a page without a viewport meta is laid out at 980 px and shrunk)."""
        return self.narrow_scroll_width <= self.narrow_inner_width + 1 and self.narrow_inner_width <= PHONE[0] + 1

    def problems(self) -> list[str]:
        """Everything wrong, one line each; empty when the page passes."""
        out = [f"console: {e}" for e in self.console_errors]
        for table in self.tables:
            out += [f"table {table.index}: {f}" for f in table.failures]
        out += [f"image {i.src!r}: not loaded" for i in self.images if not i.loaded]
        out += [f"image {i.src!r}: no alt text" for i in self.images if not i.alt.strip()]
        if not self.narrow_ok:
            out.append(
                f"narrow screen: page {self.narrow_scroll_width}px wide in a {self.narrow_inner_width}px viewport"
                f" (phone {PHONE[0]}px); sticking out: {self.narrow_overflow}"
            )
        return out


def sort_failure(keys: list[list], ranks: dict[str, int], descending: bool) -> str | None:
    """Why these column keys (in row order) are not sorted by the contract; None when they are."""
    keys = [[kind, float(value) if kind == 0 else value] for kind, value in keys]
    ranked = [(kind, value if kind == 0 else ranks.get(value, 0)) for kind, value in keys]
    filled = [key for key in ranked if key[0] != 2]
    first_empty = next((i for i, key in enumerate(ranked) if key[0] == 2), len(ranked))
    if any(key[0] != 2 for key in ranked[first_empty:]):
        return "empty cells are not all last"
    wanted = sorted(filled, reverse=descending)
    if filled != wanted:
        bad = next(i for i, (got, want) in enumerate(zip(filled, wanted, strict=True)) if got != want)
        shown = [value for _, value in keys if value != ""][max(0, bad - 1) : bad + 2]
        return f"{'descending' if descending else 'ascending'} order broken at row {bad}: {shown}"
    return None


def check_tables(driver) -> tuple[list[TableCheck], int]:
    from selenium.webdriver.common.by import By

    checks = []
    all_tables = driver.find_elements(By.TAG_NAME, "table")
    for index, table in enumerate(driver.find_elements(By.CSS_SELECTOR, SORTABLE)):
        headers = table.find_elements(By.CSS_SELECTOR, "thead th")
        before = sorted(driver.execute_script(ROWS_TEXT, table))
        check = TableCheck(index, [h.text for h in headers], len(before))
        for col, header in enumerate(headers):
            keys = driver.execute_script(COLUMN_KEYS, table, col)
            ranks = driver.execute_script(COLLATION_RANKS, [v for kind, v in keys if kind == 1])
            for descending in (False, True):
                driver.execute_script("arguments[0].scrollIntoView({block: 'center', inline: 'center'});", header)
                header.click()
                failure = sort_failure(driver.execute_script(COLUMN_KEYS, table, col), ranks, descending)
                if failure:
                    check.failures.append(f"column {check.headers[col]!r}: {failure}")
                    break
        if sorted(driver.execute_script(ROWS_TEXT, table)) != before:
            check.failures.append("sorting changed the rows' contents, not only their order")
        checks.append(check)
    return checks, len(all_tables) - len(checks)


def new_driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = browser_binaries()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"):
        options.add_argument(arg)
    options.add_argument(f"--window-size={DESKTOP[0]},{DESKTOP[1]}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=driver_path))


def set_screen(driver, size: tuple[int, int], mobile: bool) -> None:
    metrics = {"width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": mobile}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)


def screenshot(path: Path | str, png: Path | str, size: tuple[int, int] = DESKTOP) -> None:
    """Save the first screen of a local page at this size (CSS pixels, scale 1) as PNG."""
    driver = new_driver()
    try:
        set_screen(driver, size, mobile=False)
        driver.get(Path(path).resolve().as_uri())
        Path(png).write_bytes(driver.get_screenshot_as_png())
    finally:
        driver.quit()


def check_page(path: Path | str, screenshot: Path | str | None = None) -> PageCheck:
    """Load the page (a local file) in headless Chromium and check it; with `screenshot`, save
    the first screen at desktop size there as PNG. BrowserMissing when there is no browser."""
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such page")
    driver = new_driver()
    try:
        set_screen(driver, DESKTOP, mobile=False)
        driver.get(path.as_uri())
        if screenshot is not None:
            Path(screenshot).write_bytes(driver.get_screenshot_as_png())
        shown = driver.execute_script(IMAGES)
        images = [ImageCheck(i["src"], i["alt"], i["complete"] and i["width"] > 0) for i in shown]
        tables, unsortable = check_tables(driver)
        set_screen(driver, PHONE, mobile=True)
        driver.get(path.as_uri())
        narrow = driver.execute_script(NARROW, PHONE[0])
        errors = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    finally:
        driver.quit()
    return PageCheck(
        path, errors, tables, unsortable, images, narrow["scroll_width"], narrow["inner_width"], narrow["wide"]
    )
