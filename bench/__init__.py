"""This repository's `pytest bench` (a thin conftest over attrib_core.suite), launchers and proofs."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent  # the checkout these scripts run in
