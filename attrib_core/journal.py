"""A durable, append-only journal of a run: a kill loses at most the cell in progress.

One JSON object a line: a `header` (what the run is: preset, machine_info, commit_info,
where its results file goes), then one `cell` line per finished cell (the complete
pytest-benchmark record and its small gallery map), and a `resume` line each time the run
is continued. Every line is flushed and fsync'd before the next cell starts. A line cut
short by a kill is ignored on reading. The results file is assembled from the journal
(`assemble`) and written atomically, so it is always valid pytest-benchmark JSON.
"""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from attrib_core import schema
from attrib_core.fileio import atomic_save, atomic_write

SUFFIX = ".journal.jsonl"
DONE = ("ok", "failed", "not_applicable")  # a resumed run skips these; "incomplete" cells run again


class JournalError(ValueError):
    """A journal that cannot be resumed; the message names the file and the reason."""


def journal_path(results_path: Path) -> Path:
    return results_path.with_name(results_path.stem + SUFFIX)


def encode_map(array: np.ndarray | None) -> str | None:
    if array is None:
        return None
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_map(text: str | None) -> np.ndarray | None:
    if text is None:
        return None
    return np.load(io.BytesIO(base64.b64decode(text)), allow_pickle=False)


@dataclass
class Contents:
    path: Path
    header: dict[str, Any]
    cells: dict[str, dict[str, Any]] = field(default_factory=dict)  # cell key -> its latest line
    resumes: list[dict[str, Any]] = field(default_factory=list)
    arrays: dict[str, str] = field(default_factory=dict)  # name -> encoded array, for the .maps.npz
    blocks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # cell key -> later passes' blocks
    torn_lines: int = 0  # lines cut short by a kill (at most the last one)

    def done_keys(self) -> set[str]:
        return {key for key, line in self.cells.items() if line["record"]["extra_info"].get("status") in DONE}

    @property
    def results_path(self) -> Path:
        return self.path.with_name(self.header["results_name"])


class Journal:
    """Appends lines durably. Open with `create` (a new run) or `reopen` (a resumed one)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, path: Path, header: Mapping[str, Any]) -> Journal:
        """A new journal; created exclusively, so a second run can never append to this one."""
        try:
            open(path, "x").close()
        except FileExistsError:
            raise JournalError(f"{path}: a journal already exists here; resume it with --resume {path}") from None
        journal = cls(path)
        journal._append({"kind": "header", **header})
        return journal

    @classmethod
    def reopen(cls, contents: Contents) -> Journal:
        journal = cls(contents.path)
        journal._append({"kind": "resume", "at": schema.now_utc(), "cells_before": len(contents.done_keys())})
        return journal

    def add_cell(self, record: Mapping[str, Any], gallery_map: np.ndarray | None) -> None:
        key = record["extra_info"]["cell_key"]
        self._append({"kind": "cell", "cell_key": key, "record": record, "map": encode_map(gallery_map)})

    def add_block(self, key: str, block: Mapping[str, Any]) -> None:
        """A later pass's block of rounds of a finished cell (merged into its record when assembled)."""
        self._append({"kind": "block", "cell_key": key, "block": dict(block)})

    def add_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Arrays that go into the .maps.npz beside the cells' maps (e.g. a workload's ground truth)."""
        if arrays:
            self._append({"kind": "arrays", "arrays": {name: encode_map(a) for name, a in arrays.items()}})

    def _append(self, line: Mapping[str, Any]) -> None:
        text = json.dumps(schema._finite(dict(line)), default=str) + "\n"
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())


def read(path: str | Path) -> Contents:
    """The journal's header, latest line per cell, and resumes; JournalError if it has no header."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise JournalError(f"{path}: no such journal") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise JournalError(f"{path}: cannot be read ({exc})") from None
    parsed, torn = [], 0
    for text in lines:
        try:
            parsed.append(json.loads(text))
        except json.JSONDecodeError:
            torn += 1  # a write cut short by a kill
    if not parsed or not isinstance(parsed[0], dict) or parsed[0].get("kind") != "header":
        raise JournalError(f"{path}: not an attrib-bench journal (its first line is not a header)")
    contents = Contents(path, parsed[0], torn_lines=torn)
    for line in parsed[1:]:
        if line.get("kind") == "cell":
            contents.cells[line["cell_key"]] = line
            contents.blocks.pop(line["cell_key"], None)  # blocks belong to the measurement before them
        elif line.get("kind") == "block":
            contents.blocks.setdefault(line["cell_key"], []).append(line["block"])
        elif line.get("kind") == "arrays":
            contents.arrays.update(line["arrays"])
        elif line.get("kind") == "resume":
            contents.resumes.append({"at": line["at"], "cells_before": line["cells_before"]})
    return contents


def assemble(contents: Contents, finished: bool) -> Path:
    """Write the results file (and its .maps.npz) from the journal, atomically; return its path."""
    header = contents.header
    machine_info = json.loads(json.dumps(header["machine_info"]))
    machine_info["attrib_bench"]["run"] = {
        **header.get("run", {}),
        "journal": contents.path.name,
        "resumed": contents.resumes,
        "finished": schema.now_utc() if finished else None,
        "complete": finished,
    }
    records = [_with_blocks(line["record"], contents.blocks.get(key, [])) for key, line in contents.cells.items()]
    document = schema.document(machine_info, header["commit_info"], records, header["pytest_benchmark_version"])
    out = contents.results_path
    atomic_write(out, schema.dumps(document))
    maps = {key: decode_map(line["map"]) for key, line in contents.cells.items() if line.get("map")}
    maps.update({name: decode_map(text) for name, text in contents.arrays.items()})
    if maps:
        atomic_save(out.with_suffix(".maps.npz"), lambda tmp: _save_npz(tmp, maps))
    return out


def _with_blocks(record: dict[str, Any], later: list[dict[str, Any]]) -> dict[str, Any]:
    """The cell's record with the later passes' blocks after its own first one."""
    if not later or "blocks" not in record.get("extra_info", {}):
        return record
    extra = {**record["extra_info"], "blocks": [*record["extra_info"]["blocks"], *later]}
    return {**record, "extra_info": extra}


def _save_npz(path: Path, maps: Mapping[str, np.ndarray]) -> None:
    with open(path, "wb") as handle:  # np.savez on a path would append ".npz" to the temporary name
        np.savez_compressed(handle, **maps)
