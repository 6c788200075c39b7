"""The torch-free side: results -> tidy tables, statistics, report, compare, history (steps), regression verdicts.

Nothing here imports torch, so `pip install attrib-bench` (no extras) can read, report and
compare results files made anywhere.
"""
