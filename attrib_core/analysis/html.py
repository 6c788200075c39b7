"""One self-contained HTML page: figures embedded as base64 data URIs, tables inline.

The page opens offline and can be mailed as a single file: no scripts, no stylesheets or
images fetched from anywhere. Links point only at the report's own files beside it.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
table { border-collapse: collapse; font-size: 0.8em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: left; }
th { background: #f4f4f4; } .caption { color: #444; max-width: 1100px; }
.warning { background: #fff3cd; border: 1px solid #e0b000; padding: 0.6em 1em; font-weight: bold; }
.skipped { color: #777; font-style: italic; } .scroll { overflow-x: auto; }
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


def table_html(df: pd.DataFrame) -> str:
    return df.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.3g}", border=0, escape=True)


def page(title: str, intro: pd.DataFrame, warnings: list[str], sections: list[Section], files: list[str]) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
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
    parts.append(f"<h2>Files</h2><p>{links}</p></body></html>")
    return "\n".join(parts) + "\n"
