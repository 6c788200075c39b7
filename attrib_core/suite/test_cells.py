"""The sweep: one benchmark per cell of the selected preset (attrib_core/suite/plugin.py makes the cells)."""

from __future__ import annotations

import pytest

from attrib_core.suite.cells import measure_cell, time_block
from attrib_core.suite.faults import fault_for
from attrib_core.suite.plugin import BenchRun, isolated_outcome, measured_record


def test_cell(cell_key: str, benchmark, bench_run: BenchRun) -> None:
    progress = bench_run.progress
    if progress is not None:
        progress.start_cell(cell_key)
    if bench_run.isolation.enabled:
        if progress is not None:
            progress.set_phase("isolated")
        outcome, record = isolated_outcome(bench_run, cell_key, benchmark)
    else:
        cell = bench_run.cells[cell_key]
        slowdown = bench_run.slowdowns.get(cell.method, 1.0)
        fault = fault_for(cell_key, bench_run.faults)
        outcome = measure_cell(cell, benchmark, bench_run.preset, bench_run.calibrations, slowdown, fault, progress)
        record = measured_record(outcome, benchmark)
    if progress is not None:
        progress.end_cell(cell_key)
    bench_run.record(outcome, record)
    if outcome.status == "not_applicable":  # recorded with its reason; not a failure of the run
        pytest.skip(outcome.extra_info["error"])
    if outcome.status != "ok":
        pytest.fail(outcome.extra_info["error"], pytrace=False)


def test_cell_pass(pass_cell: str, bench_run: BenchRun) -> None:
    """A later pass over the sweep: the cell's timed call again, for one block of rounds."""
    pass_index, key = bench_run.later_passes[pass_cell]
    outcome = bench_run.repeatable.get(key)
    if outcome is None:  # not timed in this process (failed, not applicable, isolated, resumed)
        return
    progress = bench_run.progress
    if progress is not None:
        progress.start_block(f"pass {pass_index}/{bench_run.preset.timing.passes}: {key}")
    samples = time_block(outcome.repeat, outcome.block_rounds)
    if progress is not None:
        progress.end_block(bench_run.block_seconds(outcome))
    bench_run.add_block(key, pass_index, samples)
