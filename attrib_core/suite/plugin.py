"""The benchmark suite as a pytest plugin: preset selection, cell generation, progress lines,
machine info, a durable journal of finished cells (resumable), optional per-cell process
isolation, and the results file assembled from the journal at the end.

Loaded with `-p attrib_core.suite.plugin` over the suite's one test module
(attrib_core/suite/test_cells.py), which is what `attrib-bench bench` runs, from any folder
(this repository's bench/conftest.py loads it for `pytest bench`). Results go to ./results
by default; presets are names of the ones that ship (attrib_core/presets) or paths."""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import tempfile
import threading
import time
from pathlib import Path

import pytest
import pytest_benchmark
import torch

from attrib_core import inject, journal, measure, noise, schema
from attrib_core.analysis import results
from attrib_core.analysis.self_check import self_check
from attrib_core.devices import available_devices
from attrib_core.formatting import clock, seconds, size_bytes
from attrib_core.names import UnsafeNameError, check_name
from attrib_core.run import RunConfig
from attrib_core.suite import durable, isolate, shards
from attrib_core.suite.cells import CalibrationCache, CellOutcome, ground_truth_arrays
from attrib_core.suite.faults import parse_faults, parse_slowdowns
from attrib_core.suite.progress import RunProgress, where_time_went, work_of
from attrib_core.suite.shards import flops_per_row, weighted_rows
from attrib_core.sweep import PRESET_DIR, PresetError, cell_key, load_preset
from attrib_core.workloads.catalog import check_workloads, is_built
from attrib_core.workloads.plugins import WorkloadContractError

DEFAULT_PRESET = "quick"  # a first answer in minutes; `standard` is the full sweep, by name
# pytest-benchmark options that act on its own table, which this suite replaces by its summary
TABLE_ONLY = {"benchmark_compare_fail": "--benchmark-compare-fail", "benchmark_histogram": "--benchmark-histogram"}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("attrib-bench")
    group.addoption("--preset", default=None, help="a shipped preset's name (smoke, standard, ...) or a TOML file")
    group.addoption("--results-dir", default="results", help="where the results JSON is written (default ./results)")
    group.addoption(
        "--machine-name",
        default=os.environ.get("ATTRIB_BENCH_MACHINE"),
        help="machine label in the results file name (default: derived from CPU/GPU)",
    )
    group.addoption("--no-save", action="store_true", help="write no results file (and no journal)")
    group.addoption(
        "--resume",
        nargs="?",
        const="",
        default=None,
        metavar="FILE",
        help="continue an interrupted run: its .journal.jsonl or results file (default: the newest journal)",
    )
    group.addoption(
        "--shard",
        metavar="I/N",
        help="run only shard I of N: a deterministic subset of the cells, balanced on predicted cost (suite/shards.py)",
    )
    group.addoption(
        "--shard-calibration",
        metavar="FILE",
        help="a results file whose timings calibrate the shards' predicted costs (default: FLOPs, relative units)",
    )
    group.addoption("--sweep-id", help="the id shared by the shards of one sweep (default: from preset, code and N)")
    group.addoption("--isolate", action="store_true", default=None, help="run each cell in its own process")
    group.addoption("--no-isolate", dest="isolate", action="store_false", help="run cells in this process")
    group.addoption("--cell-timeout-s", type=float, help="isolation: wall-time limit per cell (preset's default)")
    group.addoption("--cell-memory-gib", type=float, help="isolation: resident-memory limit per cell")
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
    # internal: the child process of an isolated cell, and fault injection for the isolation tests
    group.addoption("--only-cell", help=argparse.SUPPRESS)
    group.addoption("--child-journal", help=argparse.SUPPRESS)
    group.addoption("--inject-fault", action="append", default=[], help=argparse.SUPPRESS)


class BenchRun:
    """State of one benchmark session."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.resumed: journal.Contents | None = None
        self.results_dir = Path(config.getoption("--results-dir"))
        try:
            if config.getoption("--resume") is not None:
                self.resumed = journal.read(durable.find_journal(config.getoption("--resume"), self.results_dir))
            preset_arg = config.getoption("--preset")
            if preset_arg is None and self.resumed is not None:
                preset_arg = self.resumed.header["preset_path"]
            preset_arg = preset_arg or os.environ.get("ATTRIB_BENCH_PRESET", DEFAULT_PRESET)
            self.preset = load_preset(preset_arg, PRESET_DIR)
            if config.getoption("--child-journal") is None:  # an isolated cell's parent checked already
                check_workloads(self.preset.workload_names())  # plug-ins' contract, before the first cell
            for option in ("--machine-name", "--sweep-id"):  # parts of the results file's name
                if config.getoption(option) is not None:
                    check_name(config.getoption(option), option)
        except (PresetError, journal.JournalError, WorkloadContractError, UnsafeNameError) as exc:
            raise pytest.UsageError(str(exc)) from None
        _refuse_table_only_options(config)
        # Always set explicitly (and recorded in machine_info and every cell): the preset's
        # count, else one thread per physical core, which is what torch picks by default.
        threads = self.preset.timing.threads or measure.environment()["cpu_physical_cores"] or os.cpu_count()
        measure.set_threads(threads)
        self.devices = tuple(available_devices())
        self.missing_devices = sorted(self.preset.devices_requested() - set(self.devices))
        self.cells = {cell_key(c): c for c in self.preset.cells(self.devices)}
        self.only_cell = config.getoption("--only-cell")
        if self.only_cell is not None:
            if self.only_cell not in self.cells:
                raise pytest.UsageError(f"--only-cell {self.only_cell!r}: no such cell in preset {self.preset.name!r}")
            self.cells = {self.only_cell: self.cells[self.only_cell]}
        self.shard = self._shard(config)
        self.child_journal = config.getoption("--child-journal")
        self.isolation = self._isolation(config)
        self.calibrations = CalibrationCache()
        self.slowdowns = parse_slowdowns(config.getoption("--inject-slowdown"))
        self.faults = parse_faults(config.getoption("--inject-fault"))
        self.outcomes: list[CellOutcome] = []
        self.later_passes = self._later_passes()  # item id -> (pass, cell key), each pass shuffled
        self.repeatable: dict[str, CellOutcome] = {}  # cells timed in this process: their later blocks
        self.unsaved_records: list[dict] = []  # with --no-save, what the summary's figures come from
        self.pending_progress: str | None = None
        self.progress: RunProgress | None = None  # the live display; started once the cells are known
        self.selected_keys: set[str] = set()  # cells left after -k / deselection / resume
        self.started = time.monotonic()
        self.journal: journal.Journal | None = None
        self.ground_truth_saved: set[str] = set()  # workloads whose image and mask the journal holds
        self.results_path: Path | None = None
        self.save = not config.getoption("--no-save")
        # the machine's noise around the run (machine_info.attrib_bench.noise); a child measures one cell only
        self.noise_before = noise.context() if self.child_journal is None else None
        self.noise_warnings: list[str] = []

    def _later_passes(self) -> dict[str, tuple[int, str]]:
        """The sweep's passes after the first, each over every cell in its own seeded shuffle.
        None where cells are not timed in this process (isolation) or only one cell runs."""
        passes = self.preset.timing.passes
        if passes < 2 or self.isolation.enabled or self.only_cell is not None:
            return {}
        later: dict[str, tuple[int, str]] = {}
        for index in range(2, passes + 1):
            keys = list(self.cells)
            random.Random(f"{self.preset.seed}-pass{index}").shuffle(keys)
            later.update({f"pass{index}-{key}": (index, key) for key in keys})
        return later

    def block_seconds(self, outcome: CellOutcome) -> float:
        """A later block's predicted timing seconds, from the cell's own first-pass rounds."""
        timing = outcome.extra_info.get("timing") or {}
        per_round = (outcome.extra_info.get("phase_s") or {}).get("timing", 0.0) / max(timing.get("rounds", 1), 1)
        return per_round * outcome.block_rounds

    def add_block(self, key: str, pass_index: int, samples_s: list[float]) -> None:
        """A later pass's rounds of a cell: into the journal (the results file merges them into the
        cell's record) and into the record kept in memory."""
        block = {"pass": pass_index, "samples_s": samples_s}
        if self.journal is not None:
            self.journal.add_block(key, block)
        for record in self.unsaved_records:
            if record.get("extra_info", {}).get("cell_key") == key:
                record["extra_info"].setdefault("blocks", []).append(block)

    def _shard(self, config: pytest.Config) -> dict | None:
        """This shard's cells and what the run block records about it (None: no sharding)."""
        arg = config.getoption("--shard")
        recorded = (self.resumed.header.get("run") or {}).get("shard") if self.resumed is not None else None
        if arg is None and recorded is None:
            return None
        try:
            spec = shards.parse_shard(arg) if arg is not None else shards.ShardSpec(recorded["index"], recorded["of"])
            calibration_file = config.getoption("--shard-calibration") or (recorded or {}).get("calibration_file")
            calibration = shards.calibration_from(calibration_file) if calibration_file else shards.NO_CALIBRATION
        except (shards.ShardError, schema.ResultsError) as exc:
            raise pytest.UsageError(str(exc)) from None
        if spec.of > len(self.cells):  # an empty shard would write no file, and merge would miss it
            raise pytest.UsageError(
                f"--shard {spec.index}/{spec.of}: preset {self.preset.name!r} has {len(self.cells)} cells here; "
                f"N must be at most {len(self.cells)}"
            )
        costs = shards.predicted_costs(self.cells, self.preset.timing, calibration)
        assignment = shards.assign(costs, spec.of)
        sweep = config.getoption("--sweep-id") or (recorded or {}).get("sweep_id")
        sweep = sweep or shards.sweep_id(self.preset.sha256, durable.code_state()["commit"], spec.of, calibration)
        keys = assignment[spec.index - 1]
        return {
            "index": spec.index,
            "of": spec.of,
            "sweep_id": sweep,
            "label": spec.label,
            "cells": len(keys),
            "keys": set(keys),
            "predicted_cost": shards.shard_loads(costs, [keys])[0],
            "predicted_cost_all_shards": shards.shard_loads(costs, assignment),
            "cost_units": "seconds" if calibration.in_seconds else "relative (FLOP-weighted rows)",
            "calibration_file": calibration_file,
            "calibration_sha256": calibration.source_sha256,
        }

    def _isolation(self, config: pytest.Config):
        from dataclasses import replace

        isolation = self.preset.isolation
        if config.getoption("isolate") is not None:
            isolation = replace(isolation, enabled=config.getoption("isolate"))
        for option, field in (("--cell-timeout-s", "cell_timeout_s"), ("--cell-memory-gib", "cell_memory_gib")):
            value = config.getoption(option)
            if value is not None:
                if value <= 0:
                    raise pytest.UsageError(f"{option} {value}: must be a number > 0")
                isolation = replace(isolation, **{field: value})
        if self.child_journal is not None:
            isolation = replace(isolation, enabled=False)  # a child measures its one cell itself
        return isolation

    # --- the journal ---------------------------------------------------------------------

    def start_journal(self) -> None:
        """Header first (machine and commit info taken once, now), then one line per cell."""
        bs = self.config._benchmarksession
        machine_info = bs.get_machine_info()
        commit_info = self.config.hook.pytest_benchmark_generate_commit_info(config=self.config)
        self.config.hook.pytest_benchmark_update_commit_info(config=self.config, commit_info=commit_info)
        header = {
            "machine_info": machine_info,
            "commit_info": commit_info,
            "code": durable.code_state(),
            "preset_path": str(self.preset.path),
            "pytest_benchmark_version": pytest_benchmark.__version__,
            "run": {"started": schema.now_utc(), "code": durable.code_state()},
        }
        if self.shard is not None:
            header["run"]["shard"] = {k: v for k, v in self.shard.items() if k != "keys"}
        if self.child_journal is not None:
            self.journal = journal.Journal.create(Path(self.child_journal), {**header, "results_name": ""})
            return
        if self.resumed is not None:
            problems = durable.incompatibilities(self.resumed.header, header)
            if problems:
                raise pytest.UsageError(
                    f"--resume {self.resumed.path}: refusing to mix incomparable cells in one run: "
                    + "; ".join(problems)
                )
            self.journal = journal.Journal.reopen(self.resumed)
            self.results_path = self.resumed.results_path
            return
        machine = self.config.getoption("--machine-name") or measure.machine_label()
        name = self.preset.name
        if self.shard is not None:  # the shards of one sweep share `<preset>-sweep<id>-shard-`
            name = f"{name}-sweep{self.shard['sweep_id']}-{self.shard['label']}"
        try:
            self.results_path = durable.results_path(self.results_dir, machine, commit_info.get("id"), name)
            header["results_name"] = self.results_path.name
            self.journal = journal.Journal.create(journal.journal_path(self.results_path), header)
        except OSError as exc:  # before any cell: a results folder that cannot be written is bad input
            where = f"--results-dir {self.results_dir}: cannot write {exc.filename}"
            raise pytest.UsageError(f"{where}: {exc.strerror}") from None
        except UnsafeNameError as exc:
            raise pytest.UsageError(str(exc)) from None
        durable.drop_claim(self.results_path)

    def finish(self, interrupted: bool) -> Path | None:
        """Assemble the results file from the journal; keep the journal if cells are left to run."""
        if self.journal is None or self.child_journal is not None:
            return None
        contents = journal.read(self.journal.path)
        if not contents.cells:
            self.journal.path.unlink(missing_ok=True)
            return None
        # finished: every cell this invocation selected (after -k) is done, and earlier ones kept
        finished = not interrupted and contents.done_keys() >= self.selected_keys
        after = noise.context()
        self.noise_warnings = noise.assess(self.noise_before, after)
        block = {"before": self.noise_before, "after": after, "warnings": self.noise_warnings}
        contents.header["machine_info"]["attrib_bench"]["noise"] = block
        path = journal.assemble(contents, finished)
        if finished:
            self.journal.path.unlink(missing_ok=True)
        return path

    def record(self, outcome: CellOutcome, record: dict) -> None:
        self.outcomes.append(outcome)
        if outcome.repeat is not None and self.later_passes:
            self.repeatable[outcome.key] = outcome
            if self.progress is not None:
                self.progress.add_block(self.block_seconds(outcome) * (self.preset.timing.passes - 1))
        if not self.save:
            self.unsaved_records.append(record)
        if self.journal is not None:
            self.journal.add_cell(record, outcome.map)
            workload = outcome.extra_info["cell"]["workload"]
            if outcome.map is not None and workload not in self.ground_truth_saved:
                self.ground_truth_saved.add(workload)
                self.journal.add_arrays(ground_truth_arrays({workload}))
        self.pending_progress = self.progress_line(outcome)

    def progress_line(self, outcome: CellOutcome) -> str:
        done, total = len(self.outcomes), len(self.selected_keys) or len(self.cells)
        stamp = f"[{done:>{len(str(total))}}/{total} {clock(time.monotonic() - self.started)}]"
        if outcome.status == "not_applicable":
            return f"{stamp} not applicable {outcome.key}: {outcome.extra_info['error']}"
        if outcome.status != "ok":
            return f"{stamp} FAILED {outcome.key}: {outcome.extra_info['error']}"
        eta = f"  ({self.progress.eta_text()})" if self.progress is not None else ""
        return (
            f"{stamp} ok {outcome.key}  median {seconds(outcome.median_s)}  peak {size_bytes(outcome.peak_bytes)}{eta}"
        )

    def passthrough_args(self) -> list[str]:
        """Options an isolated cell's child process needs to measure the cell the same way."""
        args = [f"--inject-slowdown={v}" for v in self.config.getoption("--inject-slowdown")]
        return args + [f"--inject-fault={v}" for v in self.config.getoption("--inject-fault")]


def _refuse_table_only_options(config: pytest.Config) -> None:
    if config.getoption("--benchmark-table"):
        return
    for dest, flag in TABLE_ONLY.items():
        if config.getoption(dest, None):
            raise pytest.UsageError(
                f"{flag} acts on pytest-benchmark's own table, which attrib-bench replaces by its summary: "
                f"add --benchmark-table to use it, or use `nox -s regress` (A/B verdicts) and `nox -s report` (plots)"
            )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # A cell that fails before timing, or runs in a child process, leaves the fixture unused: expected.
    config.addinivalue_line("filterwarnings", "ignore:Benchmark fixture was not used at all")
    config.attrib_bench = BenchRun(config)


def pytest_report_header(config: pytest.Config) -> list[str]:
    run: BenchRun = config.attrib_bench
    lines = [
        f"attrib-bench preset {run.preset.name!r} ({run.preset.path}), {len(run.cells)} cells, "
        f"devices {', '.join(run.devices)}, torch threads {torch.get_num_threads()}"
    ]
    if run.isolation.enabled:
        memory = f"{run.isolation.cell_memory_gib:g} GiB" if run.isolation.cell_memory_gib else "no memory limit"
        lines.append(
            f"attrib-bench: isolation on (a process per cell; {seconds(run.isolation.cell_timeout_s)}, {memory})"
        )
    if run.missing_devices:
        lines.append(f"attrib-bench: no cells for {', '.join(run.missing_devices)}: not available on this machine")
    if run.shard is not None:
        s = run.shard
        lines.append(
            f"attrib-bench: {s['label']} of sweep {s['sweep_id']}: {s['cells']} of {len(run.cells)} cells, "
            f"predicted cost {s['predicted_cost']:.3g} ({s['cost_units']}); all shards: "
            + ", ".join(f"{c:.3g}" for c in s["predicted_cost_all_shards"])
        )
    if run.resumed is not None:
        done = len(run.resumed.done_keys())
        lines.append(f"attrib-bench: resuming {run.resumed.path.name}: {done} cells done are skipped")
    return lines


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "cell_key" in metafunc.fixturenames:
        keys = list(metafunc.config.attrib_bench.cells)
        metafunc.parametrize("cell_key", keys, ids=keys)  # plain strings: pytest-benchmark's params stay JSON
    if "pass_cell" in metafunc.fixturenames:
        ids = list(metafunc.config.attrib_bench.later_passes)
        metafunc.parametrize("pass_cell", ids, ids=ids)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run: BenchRun = config.attrib_bench
    done = run.resumed.done_keys() if run.resumed is not None else set()
    in_shard = run.shard["keys"] if run.shard is not None and run.only_cell is None else None

    def key_of(item: pytest.Item) -> str | None:
        later = run.later_passes.get(item.callspec.params.get("pass_cell"))
        return later[1] if later is not None else item.callspec.params.get("cell_key")

    skipped = [
        item
        for item in items
        if key_of(item) is None  # a later pass of a run that has none
        or key_of(item) in done
        or (in_shard is not None and key_of(item) not in in_shard)
    ]
    if skipped:
        config.hook.pytest_deselected(items=skipped)
        items[:] = [item for item in items if item not in skipped]


def pytest_collection_finish(session: pytest.Session) -> None:
    run: BenchRun = session.config.attrib_bench
    run.selected_keys = {
        item.callspec.params["cell_key"] for item in session.items if "cell_key" in item.callspec.params
    }
    if run.save and session.items and not session.config.option.collectonly:
        run.start_journal()
    if session.items and not session.config.option.collectonly and run.child_journal is None:
        keys = [item.callspec.params["cell_key"] for item in session.items if "cell_key" in item.callspec.params]
        run.progress = start_progress(session.config, run, keys)


def start_progress(config: pytest.Config, run: BenchRun, keys: list[str]) -> RunProgress | None:
    """The display of what runs now, written past pytest's output capture (a live line on a
    terminal, plain lines in a log)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return None
    live = reporter.isatty and not os.environ.get("CI")
    lock = threading.Lock()

    def write(text: str, rewrite: bool) -> None:
        with lock, capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            if rewrite:
                reporter.rewrite(text, erase=True)
            else:
                reporter.ensure_newline()
                reporter.write_line(text)

    def weigh(cell: RunConfig) -> float:
        return weighted_rows(cell) * flops_per_row(cell.workload)

    def model(key: str) -> str:
        cell = run.cells.get(key)
        return cell.workload if cell is not None else ""

    progress = RunProgress(write, live, work_of(run.cells, is_built, weigh), model=model)
    progress.start(keys)
    return progress


@pytest.fixture
def bench_run(request: pytest.FixtureRequest) -> BenchRun:
    return request.config.attrib_bench


def measured_record(outcome: CellOutcome, benchmark) -> dict:
    """The cell's complete record: pytest-benchmark's own (with rounds) or a failed one."""
    extra = outcome.extra_info
    for field, variable in (
        ("injected_model_slowdown", inject.ENV_VAR),
        ("injected_method_slowdown", inject.METHOD_ENV_VAR),
    ):
        slowdown = inject.factor_for(extra["cell"]["method"], variable=variable)
        if slowdown != 1.0:  # slowed on purpose (attrib_core/inject.py): never a real result
            extra[field] = slowdown
    if benchmark.stats is not None:
        record = benchmark.stats.as_dict(include_data=True)
        record["extra_info"] = dict(extra)
        return record
    return schema.failed_record(benchmark.name, benchmark.fullname, outcome.key, extra)


def isolated_outcome(run: BenchRun, key: str, benchmark) -> tuple[CellOutcome, dict]:
    """Run the cell in a child process; a crash, hang or memory blow-up becomes a failed record."""
    limit = run.isolation.cell_memory_gib
    with tempfile.TemporaryDirectory(prefix="attrib-bench-cell-") as workdir:  # never in results/: not resumable
        child = isolate.run_isolated(
            key,
            run.preset.path,
            Path(workdir),
            run.isolation.cell_timeout_s,
            None if limit is None else int(limit * 2**30),
            run.passthrough_args(),
        )
    if child.record is not None and child.error is None:
        extra = child.record["extra_info"]
        extra["isolation"] = {"process_wall_s": child.wall_s}
        stats = child.record.get("stats") or {}
        peak = (extra.get("memory") or {}).get("peak_bytes")
        return CellOutcome(key, extra["status"], extra, stats.get("median"), peak, child.gallery_map), child.record
    extra = {
        "schema_version": schema.SCHEMA_VERSION,
        "cell_key": key,
        "cell": schema.cell_record(run.cells[key]),
        "status": "failed",
        "error": child.error,
        "isolation": {"process_wall_s": child.wall_s},
    }
    if child.record is not None:  # the child got part-way (e.g. timed rounds done, then killed)
        extra["partial"] = {k: v for k, v in child.record["extra_info"].items() if k in ("phase_s", "resolved_knobs")}
    outcome = CellOutcome(key, "failed", extra)
    return outcome, schema.failed_record(benchmark.name, benchmark.fullname, key, extra)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):
    """After the cell, outside pytest's output capture, print its progress line."""
    result = yield
    run: BenchRun = item.config.attrib_bench
    reporter = item.config.pluginmanager.get_plugin("terminalreporter")
    if run.pending_progress and reporter is not None:
        if run.progress is not None and run.progress.live:
            reporter.rewrite("", erase=True)  # the live line gives way to the cell's result
            reporter.write("\r")
        reporter.ensure_newline()
        reporter.write_line(run.pending_progress)
        run.pending_progress = None
    return result


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    run: BenchRun = config.attrib_bench
    machine_info["attrib_bench"] = schema.run_block(
        run.preset.name, run.preset.sha256, run.devices, measure.environment()
    )


@pytest.hookimpl(tryfirst=True)
def pytest_benchmark_group_stats(config: pytest.Config, benchmarks, group_by):
    """No table: the attrib-bench summary replaces it unless --benchmark-table."""
    return None if config.getoption("--benchmark-table") else []


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    run: BenchRun = session.config.attrib_bench
    if run.progress is not None:
        run.progress.close()
    run.results_path = run.finish(interrupted=exitstatus == pytest.ExitCode.INTERRUPTED) or None


def print_self_check(tr, df) -> None:
    """The run's check of its own figures (attrib_core.analysis.self_check), one line per check."""
    tr.write_line("self-check of this run's figures:")
    for finding in self_check(df):
        tr.write_line(f"  {finding.line()}", yellow=not finding.ok)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    run: BenchRun = config.attrib_bench
    if not run.outcomes or run.child_journal is not None:
        return
    tr = terminalreporter
    tr.section("attrib-bench summary")
    has_file = run.results_path is not None and run.results_path.exists()
    if has_file:
        df = results.load_results([run.results_path])
    else:  # --no-save: the same figures, from the records kept in memory
        df = results.records_frame(run.unsaved_records, "(not saved)") if run.unsaved_records else None
    efficiency = dict(zip(df["cell_key"], df["efficiency"], strict=True)) if df is not None and not df.empty else {}
    width = max(len(o.key) for o in run.outcomes)
    tr.write_line(f"{'cell':<{width}}  {'status':<6}  {'median':>10}  {'peak':>10}  {'efficiency':>15}")
    for o in run.outcomes:
        shown = results.efficiency_label(efficiency.get(o.key))
        tr.write_line(
            f"{o.key:<{width}}  {o.status:<6}  {seconds(o.median_s):>10}  {size_bytes(o.peak_bytes):>10}  {shown:>15}"
        )
    failed = sum(o.status == "failed" for o in run.outcomes)
    not_applicable = sum(o.status == "not_applicable" for o in run.outcomes)
    elapsed = time.monotonic() - run.started
    tr.write_line(f"{len(run.outcomes)} cells, {failed} failed, {not_applicable} not applicable, {elapsed:.0f} s")
    spent = {o.key: o.extra_info.get("phase_s") or {} for o in run.outcomes}
    for line in where_time_went(spent, elapsed):
        tr.write_line(line)
    if has_file:
        tr.write_line(f"results: {run.results_path}")
    if df is not None and not df.empty:
        print_self_check(tr, df)
    if run.journal is not None and run.journal.path.exists():
        tr.write_line(f"not finished: continue with --resume {run.journal.path}")
    for warning in run.noise_warnings:
        tr.write_line(f"NOISE WARNING: {warning} (timings of this run are less trustworthy)", yellow=True)
