"""The benchmark suite, shipped with the package: a pytest plugin (plugin.py) over one test module
(test_cells.py) that makes a benchmark of each cell of a preset. Importing this package is light
(no torch): `suite_command` is the one command line that runs the suite, from any folder."""

from __future__ import annotations

import sys
from pathlib import Path

SUITE_TESTS = Path(__file__).resolve().parent / "test_cells.py"
PLUGIN = "attrib_core.suite.plugin"


def suite_args(*pytest_args: str) -> list[str]:
    """pytest's arguments that run the suite: its test module with its plugin, then `pytest_args`."""
    return [str(SUITE_TESTS), "-p", PLUGIN, "-p", "no:cacheprovider", *pytest_args]


def suite_command(*pytest_args: str, python: str = sys.executable) -> list[str]:
    """`python -m pytest` with suite_args: the command line a subprocess runs the suite with."""
    return [python, "-m", "pytest", *suite_args(*pytest_args)]
