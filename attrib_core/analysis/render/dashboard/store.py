"""The store a dashboard shows: every results file under the folders given, one run per file.

A folder stands for every results JSON file in it, recursively: a store collects the files of
several machines, a GPU run included, in whatever folders people keep them. JSON that is not
attrib-bench output (a summary, a throughput record) is skipped with one line saying so, and so
is a results file that cannot be read, so one stray file never hides the others. Files are read
through `load_results`, so older schema versions are upgraded and failed cells kept. A file
whose bytes equal one read before (a run copied into two folders) is read once.

A run's machine is the name the harness put in its file name (`--machine-name`, or the one
derived from the CPU or GPU), else the CPU or GPU the file records: the name people see in
their store, and the one `compare` uses for its labels.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from attrib_core.analysis.results import ResultsError, load_results
from attrib_core.analysis.runs import named_machine


@dataclass
class Store:
    """Every cell of every run (`cells`, load_results' columns; `machine` is the machine's name and
    `hardware` the CPU/GPU label), one row per run (`runs`), and the lines of files skipped."""

    cells: pd.DataFrame
    runs: pd.DataFrame
    skipped: list[str] = field(default_factory=list)

    @property
    def machines(self) -> list[str]:
        return sorted(self.runs["machine"].unique())

    def newest_runs(self) -> pd.DataFrame:
        """Each machine's newest run (by when it ran), machines in name order."""
        ordered = self.runs.sort_values(["machine", "run_time", "file"])
        return ordered.groupby("machine", sort=True).tail(1).reset_index(drop=True)

    def cells_of(self, paths: Iterable[str]) -> pd.DataFrame:
        return self.cells[self.cells["path"].isin(set(paths))]


def json_files(inputs: Iterable[str | Path]) -> list[Path]:
    """JSON files of the folders (recursively, leaving out hidden folders) and files as given."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = [p for p in item.rglob("*.json") if p.is_file()]
            files += sorted(p for p in found if not any(part.startswith(".") for part in p.relative_to(item).parts))
        elif item.is_file():
            files.append(item)
        else:
            raise ResultsError(f"{item}: no such results file or folder")
    return list(dict.fromkeys(files))


def machine_name(path: Path, hardware: str) -> str:
    return named_machine(path) or hardware


def load_store(inputs: Iterable[str | Path], log: Callable[[str], None] = print) -> Store:
    """Read every results file; skip (and log one line for) each JSON file that is not one."""
    inputs = list(inputs)
    files = json_files(inputs)
    frames, skipped, seen = [], [], {}
    for path in files:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest in seen:
            skipped.append(f"skipped {path}: the same bytes as {seen[digest]} (one run, counted once)")
            continue
        seen[digest] = path
        try:
            cells = load_results([path])
        except ResultsError as exc:
            skipped.append(f"skipped {exc}")
            continue
        if cells.empty:
            skipped.append(f"skipped {path}: a results file with no benchmark records")
            continue
        frames.append(cells.assign(hardware=cells["machine"], machine=machine_name(path, cells["machine"].iloc[0])))
    for line in skipped:
        log(f"  {line}")
    if not frames:
        where = ", ".join(map(str, inputs))
        raise ResultsError(f"{where}: no attrib-bench results file among {len(files)} JSON file(s)")
    cells = pd.concat(frames, ignore_index=True)
    return Store(cells, runs_table(cells), skipped)


def runs_table(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per results file: its machine, what ran, when, on which code and software."""
    rows = []
    for path, run in cells.groupby("path", sort=True):
        first = run.iloc[0]
        status = run["status"].value_counts()
        rows.append(
            {
                "path": path,
                "file": first["file"],
                "machine": first["machine"],
                "hardware": first["hardware"],
                "cpu_model": first["cpu_model"],
                "gpu_name": first["gpu_name"],
                "preset": first["preset"],
                "run_datetime": first["run_datetime"],
                "commit": first["commit"],
                "commit_time": first["commit_time"],
                "commit_dirty": first["commit_dirty"],
                "torch_version": first["torch_version"],
                "captum_version": first["captum_version"],
                "cells": len(run),
                "ok": int(status.get("ok", 0)),
                "failed": int(status.get("failed", 0)),
                "not_applicable": int(status.get("not_applicable", 0)),
                "incomplete": int(status.get("incomplete", 0)),
            }
        )
    runs = pd.DataFrame(rows)
    runs["run_time"] = pd.to_datetime(runs["run_datetime"], utc=True, errors="coerce", format="ISO8601")
    runs["commit_time"] = pd.to_datetime(runs["commit_time"], utc=True, errors="coerce", format="ISO8601")
    return runs
