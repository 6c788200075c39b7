"""pytest wiring for the benchmark suites: preset selection, cell generation, progress,
machine info, failed-cell records, and an atomically written results file."""

from __future__ import annotations

import os
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import torch

from attrib_core import measure
from attrib_core.devices import available_devices
from attrib_core.sweep import PresetError, cell_key, load_preset
from bench import PRESET_DIR
from bench.cells import SCHEMA_VERSION, CalibrationCache, CellOutcome, ground_truth_arrays

REPO = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("attrib-bench")
    group.addoption(
        "--preset",
        default=os.environ.get("ATTRIB_BENCH_PRESET", "standard"),
        help="preset name (bench/presets/*.toml) or path to a preset TOML file",
    )
    group.addoption("--results-dir", default=str(REPO / "results"), help="where the results JSON is written")
    group.addoption(
        "--machine-name",
        default=os.environ.get("ATTRIB_BENCH_MACHINE"),
        help="machine label in the results file name (default: derived from CPU/GPU)",
    )
    group.addoption("--no-save", action="store_true", help="do not write a results file")
    group.addoption(
        "--inject-slowdown",
        action="append",
        default=[],
        metavar="METHOD=FACTOR",
        help="fault injection for testing regression checks: make METHOD's cells FACTOR times slower (repeatable)",
    )
    group.addoption(
        "--benchmark-table",
        action="store_true",
        help="also print pytest-benchmark's own (very wide) table after attrib-bench's summary",
    )


class BenchRun:
    """State of one benchmark session."""

    def __init__(self, config: pytest.Config) -> None:
        try:
            self.preset = load_preset(config.getoption("--preset"), PRESET_DIR)
        except PresetError as exc:
            raise pytest.UsageError(str(exc)) from None
        # Always set explicitly (and recorded in machine_info and every cell): the preset's
        # count, else one thread per physical core, which is what torch picks by default.
        threads = self.preset.timing.threads or measure.environment()["cpu_physical_cores"] or os.cpu_count()
        measure.set_threads(threads)
        self.devices = tuple(available_devices())
        self.missing_devices = sorted(self.preset.devices_requested() - set(self.devices))
        self.cells = self.preset.cells(self.devices)
        self.calibrations = CalibrationCache()
        self.slowdowns = _parse_slowdowns(config.getoption("--inject-slowdown"))
        self.outcomes: list[CellOutcome] = []
        self.failed_without_stats: list[dict] = []
        self.pending_progress: str | None = None
        self.selected = 0  # cells left after -k / deselection, set when collection finishes
        self.started = time.monotonic()
        self.results_path: Path | None = None
        self.partial_path: Path | None = None
        if not config.getoption("--no-save") and not config.getoption("benchmark_json"):
            self.results_path = _results_path(config, self.preset.name)
            self.partial_path = self.results_path.with_name(self.results_path.name + ".partial")
            config.option.benchmark_json = str(self.partial_path)

    def progress_line(self, outcome: CellOutcome) -> str:
        done, total = len(self.outcomes), self.selected or len(self.cells)
        elapsed = time.monotonic() - self.started
        stamp = f"[{done:>{len(str(total))}}/{total} {elapsed // 60:02.0f}:{elapsed % 60:02.0f}]"
        if outcome.status != "ok":
            return f"{stamp} FAILED {outcome.key}: {outcome.extra_info['error']}"
        peak = _bytes(outcome.peak_bytes)
        return f"{stamp} ok {outcome.key}  median {_seconds(outcome.median_s)}  peak {peak}"


def _parse_slowdowns(values: list[str]) -> dict[str, float]:
    from attrib_core.methods import METHODS

    slowdowns = {}
    for value in values:
        method, _, factor = value.partition("=")
        if method not in METHODS:
            raise pytest.UsageError(
                f"--inject-slowdown {value!r}: unknown method {method!r}; known: {', '.join(METHODS.names())}"
            )
        try:
            slowdowns[method] = float(factor)
        except ValueError:
            raise pytest.UsageError(f"--inject-slowdown {value!r}: factor {factor!r} is not a number") from None
        if slowdowns[method] < 1:
            raise pytest.UsageError(f"--inject-slowdown {value!r}: factor must be >= 1")
    return slowdowns


def _bytes(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value / 2**20:.1f} MiB" if value >= 2**20 else f"{value / 2**10:.1f} KiB"


def _seconds(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value * 1e3:.2f} ms" if value < 1 else f"{value:.2f} s"


def _machine_label() -> str:
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
    else:
        name = measure.environment()["cpu_model"] or "cpu"
        name = f"{name}-{os.cpu_count()}c"
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        return out.stdout.strip() or "nocommit"
    except OSError:
        return "nocommit"


def _results_path(config: pytest.Config, preset_name: str) -> Path:
    """results/<machine>_<utc time>_<commit>_<preset>.json, never an existing file."""
    folder = Path(config.getoption("--results-dir"))
    folder.mkdir(parents=True, exist_ok=True)
    machine = config.getoption("--machine-name") or _machine_label()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = f"{machine}_{stamp}_{_git_commit()}_{preset_name}"
    path, n = folder / f"{base}.json", 1
    while path.exists():
        n += 1
        path = folder / f"{base}-{n}.json"
    return path


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.attrib_bench = BenchRun(config)  # before pytest-benchmark reads --benchmark-json


def pytest_report_header(config: pytest.Config) -> list[str]:
    run: BenchRun = config.attrib_bench
    lines = [
        f"attrib-bench preset {run.preset.name!r} ({run.preset.path}), {len(run.cells)} cells, "
        f"devices {', '.join(run.devices)}, torch threads {torch.get_num_threads()}"
    ]
    if run.missing_devices:
        lines.append(f"attrib-bench: no cells for {', '.join(run.missing_devices)}: not available on this machine")
    return lines


def pytest_collection_finish(session: pytest.Session) -> None:
    session.config.attrib_bench.selected = len(session.items)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "cell" in metafunc.fixturenames:
        cells = metafunc.config.attrib_bench.cells
        metafunc.parametrize("cell", cells, ids=[cell_key(c) for c in cells])


@pytest.fixture
def bench_run(request: pytest.FixtureRequest) -> BenchRun:
    return request.config.attrib_bench


def record_outcome(run: BenchRun, outcome: CellOutcome, benchmark, config: pytest.Config) -> None:
    run.outcomes.append(outcome)
    if outcome.status != "ok" and benchmark.stats is None:
        run.failed_without_stats.append(
            {
                "group": None,
                "name": benchmark.name,
                "fullname": benchmark.fullname,
                "params": None,
                "param": outcome.key,
                "extra_info": outcome.extra_info,
                "options": {},
                "stats": None,
            }
        )
    run.pending_progress = run.progress_line(outcome)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):
    """After the cell, outside pytest's output capture, print its progress line."""
    result = yield
    run: BenchRun = item.config.attrib_bench
    reporter = item.config.pluginmanager.get_plugin("terminalreporter")
    if run.pending_progress and reporter is not None:
        reporter.ensure_newline()
        reporter.write_line(run.pending_progress)
        run.pending_progress = None
    return result


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    run: BenchRun = config.attrib_bench
    machine_info["attrib_bench"] = {
        "schema_version": SCHEMA_VERSION,
        "preset": run.preset.name,
        "preset_sha256": run.preset.sha256,
        "devices": list(run.devices),
        "environment": measure.environment(),
    }


@pytest.hookimpl(tryfirst=True)
def pytest_benchmark_group_stats(config: pytest.Config, benchmarks, group_by):
    """No groups, no table: the attrib-bench summary replaces it unless --benchmark-table."""
    return None if config.getoption("--benchmark-table") else []


@pytest.hookimpl(wrapper=True)
def pytest_benchmark_generate_json(config, benchmarks, include_data, machine_info, commit_info):
    """A cell interrupted mid-timing (Ctrl-C) has no complete rounds: leave it out, keep the rest."""
    benchmarks[:] = [bench for bench in benchmarks if bench]
    return (yield)


def pytest_benchmark_update_json(config: pytest.Config, benchmarks, output_json: dict) -> None:
    """Failed cells have no timing stats, so pytest-benchmark leaves them out: add them."""
    output_json["benchmarks"].extend(config.attrib_bench.failed_without_stats)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """pytest-benchmark has written the .partial file by now: move it into place, atomically."""
    run: BenchRun = session.config.attrib_bench
    if run.partial_path is not None and run.partial_path.exists():
        os.replace(run.partial_path, run.results_path)
        maps = {o.key: o.map for o in run.outcomes if o.map is not None}
        maps.update(ground_truth_arrays({o.extra_info["cell"]["workload"] for o in run.outcomes if o.map is not None}))
        if maps:
            np.savez_compressed(run.results_path.with_suffix(".maps.npz"), **maps)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    run: BenchRun = config.attrib_bench
    if not run.outcomes:
        return
    tr = terminalreporter
    tr.section("attrib-bench summary")
    width = max(len(o.key) for o in run.outcomes)
    tr.write_line(f"{'cell':<{width}}  {'status':<6}  {'median':>10}  {'peak':>10}")
    for o in run.outcomes:
        peak = _bytes(o.peak_bytes)
        tr.write_line(f"{o.key:<{width}}  {o.status:<6}  {_seconds(o.median_s):>10}  {peak:>10}")
    failed = sum(o.status != "ok" for o in run.outcomes)
    elapsed = time.monotonic() - run.started
    tr.write_line(f"{len(run.outcomes)} cells, {failed} failed, {elapsed:.0f} s")
    if run.results_path is not None and run.results_path.exists():
        tr.write_line(f"results: {run.results_path}")
