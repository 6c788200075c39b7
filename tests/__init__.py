"""The harness's own tests."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent  # the checkout under test
