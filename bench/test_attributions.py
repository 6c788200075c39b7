"""The sweep: one benchmark per cell of the selected preset (see bench/presets/)."""

from __future__ import annotations

import pytest

from attrib_core.run import RunConfig
from bench.cells import measure_cell
from bench.conftest import BenchRun, record_outcome


def test_cell(cell: RunConfig, benchmark, bench_run: BenchRun, request: pytest.FixtureRequest) -> None:
    slowdown = bench_run.slowdowns.get(cell.method, 1.0)
    outcome = measure_cell(cell, benchmark, bench_run.preset, bench_run.calibrations, slowdown)
    record_outcome(bench_run, outcome, benchmark, request.config)
    if outcome.status == "not_applicable":  # recorded with its reason; not a failure of the run
        pytest.skip(outcome.extra_info["error"])
    if outcome.status != "ok":
        pytest.fail(outcome.extra_info["error"], pytrace=False)
