"""Naming, starting and resuming a run's journal (see attrib_core/journal.py).

A run's results file is named `NNNN_<machine>_<UTC time>_<commit>_<preset>.json`: the
leading counter is pytest-benchmark's own convention, so `pytest-benchmark compare` labels
runs distinctly, and the commit is the one in the file's commit_info (both taken once, when
the run starts). A resumed run must be the same experiment: same preset file, same code
(commit and uncommitted changes) and same environment; otherwise it is refused with the
differences named, since mixing cells measured under different conditions in one file
would make its comparisons meaningless.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from attrib_core import journal
from attrib_core.comparable import MUST_MATCH, incompatibilities  # noqa: F401  (resume's check; merge's too)
from attrib_core.formatting import timestamp

COUNTER = re.compile(r"^(\d{4})_")


def code_state() -> dict[str, Any]:
    """The commit and a hash of uncommitted changes to tracked files of the repository the run
    starts in (the project whose models are measured; None outside git)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        diff = subprocess.run(["git", "diff", "HEAD"], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "uncommitted_sha256": None}
    return {"commit": head.stdout.strip(), "uncommitted_sha256": hashlib.sha256(diff.stdout).hexdigest()}


def next_counter(folder: Path) -> int:
    numbers = [int(m.group(1)) for p in folder.glob("*.json") if (m := COUNTER.match(p.name))]
    numbers += [int(m.group(1)) for p in folder.glob(f"*{journal.SUFFIX}") if (m := COUNTER.match(p.name))]
    return max(numbers, default=0) + 1


def results_path(folder: Path, machine: str, commit_id: str | None, preset_name: str) -> Path:
    """A new, unused results path in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = timestamp(datetime.now(UTC))
    commit = (commit_id or "nocommit")[:7]
    while True:
        path = folder / f"{next_counter(folder):04d}_{machine}_{stamp}_{commit}_{preset_name}.json"
        if not path.exists() and not journal.journal_path(path).exists():
            return path


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
