"""Naming, starting and resuming a run's journal (see attrib_core/journal.py).

A run's results file is named `NNNN_<machine>_<UTC time>_<commit>_<preset>.json`: the
leading counter is pytest-benchmark's own convention, so `pytest-benchmark compare` labels
runs distinctly, and the commit is the one in the file's commit_info (both taken once, when
the run starts). The number is claimed exclusively (an empty `.NNNN.claim`, dropped once the
run's journal or results file carries the number), so runs started in the same instant never
share a number or a journal. A resumed run must be the same experiment: same preset file,
same code (commit and uncommitted changes) and same environment; otherwise it is refused with
the differences named, since mixing cells measured under different conditions in one file
would make its comparisons meaningless.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from attrib_core import journal
from attrib_core.comparable import MUST_MATCH, incompatibilities  # noqa: F401  (resume's check; merge's too)
from attrib_core.formatting import timestamp
from attrib_core.names import check_name

COUNTER = re.compile(r"^(\d{4,})_")
CLAIM = re.compile(r"^\.(\d{4,})\.claim$")  # a number taken by a run whose file is not written yet


def code_state() -> dict[str, Any]:
    """The commit and a hash of uncommitted changes to tracked files of the repository the run
    starts in (the project whose models are measured; None outside git)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        diff = subprocess.run(["git", "diff", "HEAD"], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "uncommitted_sha256": None}
    return {"commit": head.stdout.strip(), "uncommitted_sha256": hashlib.sha256(diff.stdout).hexdigest()}


def numbers_used(folder: Path) -> set[int]:
    """The run numbers that results files and journals in `folder` carry."""
    names = [p.name for p in folder.glob("*.json")] + [p.name for p in folder.glob(f"*{journal.SUFFIX}")]
    return {int(m.group(1)) for name in names if (m := COUNTER.match(name))}


def next_counter(folder: Path) -> int:
    """One past the highest number in use or claimed; claims whose file now exists are removed."""
    used = numbers_used(folder)
    claimed = set()
    for claim in folder.glob(".*.claim"):
        if (m := CLAIM.match(claim.name)) is None:
            continue
        if int(m.group(1)) in used:
            claim.unlink(missing_ok=True)
        else:
            claimed.add(int(m.group(1)))
    return max(used | claimed, default=0) + 1


def claim_number(folder: Path) -> int:
    """A run number nobody else has: taken by creating `.NNNN.claim` exclusively (O_EXCL), so
    two runs started in the same instant get two numbers; on a clash, the next number."""
    number = next_counter(folder)
    while True:
        claim = folder / f".{number:04d}.claim"
        try:
            os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            number += 1
            continue
        if number not in numbers_used(folder):  # a run may have written its file after our scan
            return number
        claim.unlink(missing_ok=True)
        number = next_counter(folder)


def drop_claim(results: Path) -> None:
    """Remove the claim of `results`'s number, once its journal or results file holds it."""
    if (m := COUNTER.match(results.name)) is not None:
        (results.parent / f".{m.group(1)}.claim").unlink(missing_ok=True)


def results_path(folder: Path, machine: str, commit_id: str | None, preset_name: str) -> Path:
    """A new results path in `folder`, its number claimed for this run alone. The machine and
    preset names become part of it, so they are checked first (UnsafeNameError)."""
    check_name(machine, "machine name")
    check_name(preset_name, "run name (the preset's, or tune's workload)")
    folder.mkdir(parents=True, exist_ok=True)
    stamp = timestamp(datetime.now(UTC))
    commit = (commit_id or "nocommit")[:7]
    return folder / f"{claim_number(folder):04d}_{machine}_{stamp}_{commit}_{preset_name}.json"


def find_journal(arg: str, folder: Path) -> Path:
    """--resume's argument: a journal, a results file whose journal is beside it, or '' for the newest."""
    if not arg:
        found = sorted(folder.glob(f"*{journal.SUFFIX}"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise journal.JournalError(f"--resume: no interrupted run (*{journal.SUFFIX}) in {folder}")
        return found[-1]
    path = Path(arg)
    if path.name.endswith(journal.SUFFIX):
        if not path.is_file():
            raise journal.JournalError(f"--resume {arg}: no such journal")
        return path
    candidate = journal.journal_path(path)
    if candidate.is_file():
        return candidate
    if path.is_file():
        raise journal.JournalError(
            f"--resume {arg}: that run finished (no {candidate.name} beside it); nothing to resume"
        )
    raise journal.JournalError(f"--resume {arg}: no such journal or results file")
