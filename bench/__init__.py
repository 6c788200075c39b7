"""Benchmark suites (pytest-benchmark) and the scripts that read their results."""
