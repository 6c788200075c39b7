"""The dashboard's shared page shell: nav bar, tables, figures, notes, and its three small scripts.

Every page opens from file:// with nothing fetched from anywhere: PNGs sit beside the pages and
the scripts are inline (the report's sort script, a row filter, the hardware page's reference
switch). Tables are real <table>s with <th> headers inside a horizontally scrolling box, so a
narrow screen scrolls the table, not the page. Cells carry their raw value in data-sort; a
missing value sorts as +Infinity (last when ascending), so "not run" never sorts as a number.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from attrib_core.analysis.render import plots
from attrib_core.analysis.render.html import SORT_SCRIPT, STYLE

PAGES = (
    ("index.html", "Latest runs"),
    ("hardware.html", "Hardware"),
    ("history.html", "History"),
    ("tradeoff.html", "Trade-off"),
    ("leaderboard.html", "Leaderboard"),
)

DASHBOARD_STYLE = """
nav { display: flex; flex-wrap: wrap; gap: 0.3em 1.2em; padding: 0.6em 0; border-bottom: 2px solid #ddd; }
nav a { text-decoration: none; } nav a[aria-current] { font-weight: bold; color: #222; }
h3 { font-size: 1.05em; margin-top: 1.5em; }
figure { margin: 1em 0; } figcaption { color: #444; max-width: 1100px; font-size: 0.9em; }
input.filter { margin: 0.3em 0; padding: 2px 6px; max-width: 100%; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 0.1em 1em; font-size: 0.9em; }
dl.facts dt { color: #555; } dl.facts dd { margin: 0; overflow-wrap: anywhere; }
footer { margin-top: 3em; color: #666; font-size: 0.85em; border-top: 1px solid #ddd; }
"""

# Show only the rows of a table whose text contains what is typed in its filter box.
FILTER_SCRIPT = """
document.querySelectorAll("input.filter").forEach((box) => box.addEventListener("input", () => {
  const table = document.getElementById(box.dataset.table);
  const words = box.value.toLowerCase().trim();
  [...table.tBodies[0].rows].forEach((row) => {
    row.hidden = words !== "" && !row.textContent.toLowerCase().includes(words); });
}));
"""

# The hardware page: show the parts (table, figure) of the reference machine chosen.
REFERENCE_SCRIPT = """
document.querySelectorAll("select.reference").forEach((choice) => choice.addEventListener("change", () => {
  document.querySelectorAll("[data-reference]").forEach((part) => {
    part.hidden = part.dataset.reference !== choice.value; });
}));
"""


@dataclass(frozen=True)
class Value:
    """A table cell: the text shown and the number it sorts by (None: sorts as text)."""

    text: str
    sort: float | None = None


MISSING = math.inf  # sort key of a cell without a value


def slug(name: str) -> str:
    """A name as a file-name and anchor part: machine names may hold spaces and brackets."""
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "x"


def absent(text: str = "-") -> Value:
    return Value(text, MISSING)


def _finite(value: object) -> bool:
    numeric = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    return numeric and math.isfinite(value)


def missing(value: object) -> bool:
    """None, NaN or pandas' NA: a field the file did not record."""
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def number(value: object, scale: float = 1.0, missing: str = "-") -> Value:
    """3 significant digits (whole numbers from 1000 on), sorted by the scaled value."""
    if not _finite(value):
        return absent(missing)
    scaled = float(value) * scale
    text = f"{scaled:,.0f}" if abs(scaled) >= 1000 else f"{scaled:.3g}"
    return Value(text, scaled)


def ms(seconds: object, missing: str = "-") -> Value:
    return number(seconds, 1e3, missing)


def mib(size_bytes: object, missing: str = "-") -> Value:
    return number(size_bytes, 1 / 2**20, missing)


def text(value: object, missing_text: str = "-") -> Value:
    return Value(missing_text) if missing(value) else Value(str(value))


def _cell(value: Value | str) -> str:
    value = value if isinstance(value, Value) else Value(value)
    sort = f' data-sort="{value.sort!r}"' if value.sort is not None else ""
    return f"<td{sort}>{html.escape(value.text)}</td>"


class Page:
    """One dashboard page, built in order: headings, paragraphs, tables, figures."""

    def __init__(self, file: str, title: str) -> None:
        self.file, self.title = file, title
        self.parts: list[str] = []
        self._tables = 0

    def heading(self, title: str, anchor: str | None = None, level: int = 2) -> None:
        ident = f' id="{html.escape(anchor)}"' if anchor else ""
        self.parts.append(f"<h{level}{ident}>{html.escape(title)}</h{level}>")

    def paragraph(self, words: str, css: str = "caption") -> None:
        self.parts.append(f'<p class="{css}">{html.escape(words)}</p>')

    def warning(self, words: str) -> None:
        self.paragraph(words, "warning")

    def bullets(self, lines: Sequence[str]) -> None:
        self.parts.append("<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in lines) + "</ul>")

    def facts(self, pairs: Sequence[tuple[str, object]]) -> None:
        """A definition list: label, value."""
        items = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in pairs)
        self.parts.append(f'<dl class="facts">{items}</dl>')

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Value | str]], label: str, filterable=False) -> str:
        """A sortable table (and a filter box when asked); returns its id."""
        self._tables += 1
        ident = f"t{self._tables}"
        if filterable:
            self.parts.append(
                f'<input type="search" class="filter" data-table="{ident}" placeholder="filter rows" '
                f'aria-label="filter the rows of {html.escape(label)}">'
            )
        head = "".join(f'<th scope="col">{html.escape(h)}</th>' for h in headers)
        body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
        self.parts.append(
            f'<div class="scroll"><table class="sortable" id="{ident}" aria-label="{html.escape(label)}">'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
        )
        return ident

    def figure(self, rendered: plots.Rendered, folder: Path, stem: str) -> str | None:
        """The figure as <stem>.png beside the page, or a line saying why it was not drawn."""
        self.heading(rendered.title, level=3)
        if rendered.figure is None:
            self.paragraph(f"Not drawn: {rendered.skipped}.", "skipped")
            return None
        rendered.name = stem
        name = plots.save(rendered, str(folder))
        alt = html.escape(f"{rendered.title} ({stem})")
        self.parts.append(
            f'<figure><img src="{name}" alt="{alt}" loading="lazy">'
            f"<figcaption>{html.escape(rendered.caption)}</figcaption></figure>"
        )
        return name

    def raw(self, markup: str) -> None:
        self.parts.append(markup)

    def render(self, footer: str) -> str:
        nav = " ".join(
            f'<a href="{f}"{" aria-current=page" if f == self.file else ""}>{html.escape(t)}</a>' for f, t in PAGES
        )
        return "\n".join(
            [
                "<!DOCTYPE html>",
                '<html lang="en"><head><meta charset="utf-8">',
                '<meta name="viewport" content="width=device-width, initial-scale=1">',
                f"<title>{html.escape(self.title)}</title><style>{STYLE}{DASHBOARD_STYLE}</style></head><body>",
                f'<nav aria-label="dashboard pages">{nav}</nav>',
                f"<h1>{html.escape(self.title)}</h1>",
                *self.parts,
                f"<footer><p>{html.escape(footer)}</p></footer>",
                f"<script>{{{SORT_SCRIPT}}}\n{{{FILTER_SCRIPT}}}\n{{{REFERENCE_SCRIPT}}}</script>",
                "</body></html>",
            ]
        )
