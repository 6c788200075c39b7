"""Which results files to read: named files, folders (their newest file) or machine names.

Results files are named [NNNN_]<machine>_<UTC time>_<commit>_<preset>.json (attrib_core/suite/durable.py;
files before schema 2 have no counter),
so the newest run of a machine is found from names alone; the report and compare share
this so that "the newest file" means the same thing everywhere.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from attrib_core.analysis.results import ResultsError, machine_columns, read_json, results_files
from attrib_core.formatting import timestamp

RESULTS_DIR = Path("results")  # relative to where the command runs: the repo root under nox
STAMP = re.compile(r"^\d{8}T\d{6}Z$")
COUNTER = re.compile(r"^\d{4}$")


def _name_parts(path: Path) -> list[str]:
    """The name's fields without pytest-benchmark's leading run counter."""
    parts = path.stem.split("_")
    return parts[1:] if len(parts) > 1 and COUNTER.match(parts[0]) else parts


def file_machine(path: Path) -> str:
    """The machine part of a results file name."""
    return _name_parts(path)[0]


def named_machine(path: Path) -> str | None:
    """The machine part of a name the harness wrote (it has the UTC stamp after it), else None."""
    parts = _name_parts(path)
    return parts[0] if len(parts) > 1 and STAMP.match(parts[1]) else None


def run_time(path: Path) -> str:
    """Sortable run time: the UTC stamp in the name, else the file's modification time."""
    parts = _name_parts(path)
    if len(parts) > 1 and STAMP.match(parts[1]):
        return parts[1]
    return timestamp(datetime.fromtimestamp(path.stat().st_mtime, UTC))


def newest(files: list[Path]) -> Path:
    return max(files, key=lambda p: (run_time(p), p.name))


def newest_in(folder: Path) -> Path:
    """The newest results file of a folder; ResultsError naming the folder if it has none."""
    files = results_files(folder)
    if not files:
        raise ResultsError(f"{folder}: no results files (*.json) in this folder; run `nox -s bench` first")
    return newest(files)


def resolve_paths(args: list[str], default_folder: Path = RESULTS_DIR) -> list[Path]:
    """Files as given; a folder stands for its newest results file; nothing given = newest in results/."""
    if not args:
        return [newest_in(default_folder)]
    paths = []
    for arg in map(Path, args):
        if arg.is_dir():
            paths.append(newest_in(arg))
        elif arg.is_file():
            paths.append(arg)
        else:
            raise ResultsError(f"{arg}: no such results file or folder")
    return paths


def machine_names(folder: Path) -> dict[str, list[Path]]:
    """Machine name -> its results files: by file-name prefix and by the recorded `machine` label."""
    names: dict[str, list[Path]] = {}
    for path in results_files(folder):
        names.setdefault(file_machine(path), []).append(path)
        try:
            label = machine_columns(read_json(path), path)["machine"]
        except ResultsError:
            continue  # unreadable files cannot name a machine; they fail loudly if chosen by path
        if label and label != file_machine(path):
            names.setdefault(label, []).append(path)
    return names


def resolve_run(arg: str, folder: Path = RESULTS_DIR) -> Path:
    """A results file path, or a machine name whose newest file in `folder` is meant."""
    path = Path(arg)
    if path.is_file():
        return path
    if path.is_dir():
        return newest_in(path)
    names = machine_names(folder) if folder.is_dir() else {}
    matches = {name: files for name, files in names.items() if name.lower() == arg.lower()}
    if not matches:
        known = ", ".join(sorted(names)) or f"none (no results files in {folder})"
        raise ResultsError(f"{arg!r} is neither a results file nor a machine name in {folder}; known machines: {known}")
    return newest([p for files in matches.values() for p in files])
