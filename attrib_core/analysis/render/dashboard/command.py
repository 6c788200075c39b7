"""The dashboard command: read the store, check --reference, render the five pages into a staged
folder and move them into place, so bad input or a crash leaves no half-written site."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from attrib_core.analysis.render.dashboard import (
    hardware_page,
    history_page,
    index_page,
    leaderboard_page,
    tradeoff_page,
)
from attrib_core.analysis.render.dashboard.store import Store, load_store
from attrib_core.analysis.render.output import staged
from attrib_core.analysis.results import ResultsError
from attrib_core.analysis.runs import RESULTS_DIR
from attrib_core.exits import EXIT_BAD_INPUT, EXIT_OK, BadInputError

DEFAULT_OUT = RESULTS_DIR / "dashboard"


def footer(store: Store) -> str:
    skipped = f", {len(store.skipped)} JSON file(s) skipped (listed on the index page)" if store.skipped else ""
    return (
        f"attrib-bench dashboard: {len(store.runs)} results file(s) of {len(store.machines)} machine(s){skipped}. "
        "Regenerate with `attrib-bench dashboard FOLDER... -o DIR`."
    )


def build(
    inputs: list[Path], out: Path, reference: str | None = None, log: Callable[[str], None] = print
) -> list[Path]:
    """Read, check, render and write the site; returns the files written to `out`."""
    store = load_store(inputs, log)
    hardware_page.resolve_reference(hardware_page.sides(store), reference)  # bad input before any drawing
    with staged(out) as scratch:
        pages = [
            index_page.build(store),
            hardware_page.build(store, scratch, reference),
            history_page.build(store, scratch),
            tradeoff_page.build(store, scratch),
            leaderboard_page.build(store),
        ]
        for page in pages:
            (scratch / page.file).write_text(page.render(footer(store)), encoding="utf-8")
            log(f"  wrote {page.file}")
        names = sorted(p.name for p in scratch.iterdir())
    return [out / name for name in names]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="attrib-bench dashboard", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "inputs",
        nargs="*",
        type=Path,
        default=[RESULTS_DIR],
        help=f"folders (every results JSON in them, recursively) or files (default: {RESULTS_DIR})",
    )
    parser.add_argument("-o", "--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument(
        "--reference",
        metavar="MACHINE",
        help="the hardware page's reference machine at first (machine or machine@device; default: the first by name)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    try:
        print(f"dashboard: reading {', '.join(map(str, args.inputs))}")
        written = build(args.inputs, args.out, args.reference)
    except (ResultsError, BadInputError) as exc:
        print(f"dashboard: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    took = time.perf_counter() - started
    print(f"dashboard: {len(written)} files in {args.out} ({took:.1f} s); open {args.out / 'index.html'}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
