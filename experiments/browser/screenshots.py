"""First-screen pictures of the pages the commands write, for the docs.

    PYTHONPATH=. .nox/torch/bin/python -m experiments.browser.screenshots [--out docs/img/pages]

Builds the report, compare and history pages from committed results (the inputs of the page
tests, tests/browser/pages.py), and the dashboard's pages when `attrib-bench dashboard`
exists, then saves each page's first screen at 1200x800 in headless Chromium as
<page>.png (dashboard-<page>.png), reduced to 256 colours: a third of the bytes (under 100 KB
each), text still sharp. Needs chromium and chromedriver, like the page tests.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from PIL import Image

from tests import REPO
from tests.browser import pages
from tests.browser.page_check import BrowserMissing, screenshot

OUT = REPO / "docs" / "img" / "pages"


def shrink(png: Path) -> None:
    """An adaptive 256-colour palette: pages are mostly flat colour and text, so little is lost."""
    with Image.open(png) as image:
        reduced = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    reduced.save(png, optimize=True)


def built_pages(scratch: Path) -> dict[str, Path]:
    """Picture name -> page, every page built into scratch."""
    shots = {
        "report": pages.build_report(scratch / "report"),
        "compare": pages.build_compare(scratch / "compare"),
        "history": pages.build_history(scratch / "history"),
    }
    if pages.has_dashboard():
        shots |= {f"dashboard-{p.stem}": p for p in pages.build_dashboard(scratch / "dashboard")}
    return shots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"folder for the PNGs (default {OUT})")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        try:
            for name, page in built_pages(Path(scratch)).items():
                png = args.out / f"{name}.png"
                screenshot(page, png)
                shrink(png)
                print(f"screenshots: {png} ({png.stat().st_size // 1024} KB)")
        except BrowserMissing as exc:
            print(f"screenshots: error: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
