"""One self-contained HTML page: figures embedded as base64 data URIs, tables inline.

The page opens offline and can be mailed as a single file: nothing is fetched from anywhere
(one small inline script sorts a table when its header is clicked). Times and sizes are shown
in human units (12.3 ms, 350 MiB) and sorted by their raw values. Links point only at the
report's own files beside it.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from attrib_core import formatting

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222;
  overflow-wrap: break-word; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
table { border-collapse: collapse; font-size: 0.8em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: left; }
th { background: #f4f4f4; cursor: pointer; } th:hover { background: #e8e8e8; }
th[aria-sort="ascending"]::after { content: " \\25B2"; } th[aria-sort="descending"]::after { content: " \\25BC"; }
.caption { color: #444; max-width: 1100px; }
.warning { background: #fff3cd; border: 1px solid #e0b000; padding: 0.6em 1em; font-weight: bold; }
.skipped { color: #777; font-style: italic; } .scroll { overflow-x: auto; }
td[data-sort] { white-space: nowrap; }
"""


@dataclass
class Section:
    """A heading with, in order: caption, image (PNG file), tables, a note."""

    title: str
    caption: str = ""
    image: Path | None = None
    tables: list[pd.DataFrame] = field(default_factory=list)
    note: str = ""


def data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


# Sort a table by the clicked column, ascending on the first click and descending on the next: a
# cell's key is its data-sort number, else its text (the browser's collation); numbers come before
# text, and empty cells stay last either way. aria-sort marks the sorted column.
SORT_SCRIPT = """
const collate = new Intl.Collator().compare;
const sortKey = (cell) => { const n = cell ? parseFloat(cell.dataset.sort) : NaN;
  if (!isNaN(n)) return [0, n];
  const text = cell ? cell.textContent.trim() : "";
  return text === "" ? [2, ""] : [1, text]; };
document.querySelectorAll("table.sortable th").forEach((th) => th.addEventListener("click", () => {
  const col = th.cellIndex, body = th.closest("table").tBodies[0];
  const up = th.getAttribute("aria-sort") !== "ascending";
  th.closest("tr").querySelectorAll("th").forEach((other) => other.removeAttribute("aria-sort"));
  th.setAttribute("aria-sort", up ? "ascending" : "descending");
  const keyed = [...body.rows].map((row) => [sortKey(row.cells[col]), row]);
  keyed.sort(([a], [b]) => {
    if (a[0] === 2 || b[0] === 2) return (a[0] === 2) - (b[0] === 2);
    const order = a[0] !== b[0] ? a[0] - b[0] : a[0] === 0 ? a[1] - b[1] : collate(a[1], b[1]);
    return up ? order : -order;
  }).forEach(([, row]) => body.appendChild(row));
}));
"""

# column-name suffix -> how to show its values (the raw value stays the sort key)
UNIT_FORMATS = {
    "_ms": lambda v: formatting.seconds(v / 1e3),
    "_s": formatting.seconds,
    "_MiB": lambda v: formatting.size_bytes(v * 2**20),
    "_bytes": formatting.size_bytes,
}


def _shown(column: str, value: object) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        for suffix, show in UNIT_FORMATS.items():
            if column.endswith(suffix):
                return show(float(value))
        return f"{value:.3g}" if isinstance(value, float) else str(value)
    return str(value)


def table_html(df: pd.DataFrame) -> str:
    """A sortable table; numeric cells carry their raw value in data-sort."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for record in df.itertuples(index=False):
        cells = []
        for column, value in zip(df.columns, record, strict=True):
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool) and not pd.isna(value)
            sort = f' data-sort="{float(value)!r}"' if numeric else ""
            cells.append(f"<td{sort}>{html.escape(_shown(str(column), value))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def page(title: str, intro: pd.DataFrame, warnings: list[str], sections: list[Section], files: list[str]) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<div class="scroll">{table_html(intro)}</div>',
    ]
    parts += [f'<p class="warning">{html.escape(w)}</p>' for w in warnings]
    parts.append(
        "<p>Contents: " + " · ".join(f'<a href="#s{i}">{html.escape(s.title)}</a>' for i, s in enumerate(sections))
    )
    parts.append("</p>")
    for i, section in enumerate(sections):
        parts.append(f'<h2 id="s{i}">{html.escape(section.title)}</h2>')
        if section.caption:
            parts.append(f'<p class="caption">{html.escape(section.caption)}</p>')
        if section.image is not None:
            parts.append(f'<img alt="{html.escape(section.title)}" src="{data_uri(section.image)}">')
        parts += [f'<div class="scroll">{table_html(t)}</div>' for t in section.tables]
        if section.note:
            parts.append(f'<p class="skipped">{html.escape(section.note)}</p>')
    links = " · ".join(f'<a href="{html.escape(name)}">{html.escape(name)}</a>' for name in files)
    parts.append(f"<h2>Files</h2><p>{links}</p><script>{SORT_SCRIPT}</script></body></html>")
    return "\n".join(parts) + "\n"
