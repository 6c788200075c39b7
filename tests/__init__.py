"""The harness's own tests."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent  # the checkout under test
# a preset's [timing] for tests that run real cells: as few and as short rounds as the suite allows
QUICK_TIMING = """[timing]
min_rounds = 3
max_rounds = 3
max_time_s = 0.01
threads = 1
"""
