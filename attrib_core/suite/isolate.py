"""Isolation: one cell in its own pytest process, cut at a wall-time and a memory limit.

A cell that hangs, segfaults, aborts or allocates past its limit takes down only its own
process; the parent records it as failed with what happened and the sweep goes on. The
child is the same suite (`--only-cell KEY --child-journal FILE`): it measures the cell
exactly as an in-process run would and leaves its record in a one-cell journal that the
parent copies into its own. Memory is watched by polling the child's resident set size
(`/proc/<pid>/status`): an address-space rlimit would also refuse the large virtual
reservations CUDA and some allocators make without using them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attrib_core import journal
from attrib_core.formatting import seconds, size_bytes
from attrib_core.suite import suite_command

POLL_S = 0.05


@dataclass
class ChildResult:
    record: dict[str, Any] | None  # the cell's record, when the child finished it
    gallery_map: Any
    error: str | None  # why the child produced no record (timeout, memory, signal, exit code)
    wall_s: float


def rss_bytes(pid: int) -> int | None:
    """Resident set size of a process (Linux); None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


class MemoryWatch(threading.Thread):
    """Kills the child's process group once its resident memory passes `limit_bytes`."""

    def __init__(self, proc: subprocess.Popen, limit_bytes: int | None) -> None:
        super().__init__(daemon=True)
        self.proc, self.limit_bytes = proc, limit_bytes
        self.peak_bytes = 0
        self.exceeded_at: int | None = None

    def run(self) -> None:
        while self.proc.poll() is None:
            rss = rss_bytes(self.proc.pid) or 0
            self.peak_bytes = max(self.peak_bytes, rss)
            if self.limit_bytes is not None and rss > self.limit_bytes:
                self.exceeded_at = rss
                _kill_group(self.proc)
                return
            time.sleep(POLL_S)


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def child_command(preset_path: Path, key: str, child_journal: Path, passthrough: list[str]) -> list[str]:
    return suite_command(
        "-q",
        f"--rootdir={Path.cwd()}",
        f"--preset={preset_path}",
        f"--only-cell={key}",
        f"--child-journal={child_journal}",
        *passthrough,
    )


def run_isolated(
    key: str,
    preset_path: Path,
    workdir: Path,
    timeout_s: float,
    memory_limit_bytes: int | None,
    passthrough: list[str],
) -> ChildResult:
    """Run one cell in a child process; never raises for what the cell does."""
    child_journal = workdir / f"cell-{os.getpid()}-{time.monotonic_ns()}{journal.SUFFIX}"
    started = time.perf_counter()
    proc = subprocess.Popen(
        child_command(preset_path, key, child_journal, passthrough),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: a kill reaches anything it started
    )
    watch = MemoryWatch(proc, memory_limit_bytes)
    watch.start()
    timed_out = False
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc)
        output, _ = proc.communicate()
    watch.join(timeout=1)
    wall_s = time.perf_counter() - started
    record, gallery_map = None, None
    if child_journal.exists():
        try:
            contents = journal.read(child_journal)
            line = contents.cells.get(key)
            if line is not None:
                record, gallery_map = line["record"], journal.decode_map(line.get("map"))
        except journal.JournalError:
            pass
        child_journal.unlink(missing_ok=True)
    if record is not None and record["extra_info"].get("status") in journal.DONE:
        return ChildResult(record, gallery_map, None, wall_s)
    return ChildResult(record, None, _why(proc.returncode, timed_out, timeout_s, watch, output), wall_s)


def _why(code: int | None, timed_out: bool, timeout_s: float, watch: MemoryWatch, output: str) -> str:
    if timed_out:
        return f"isolation: cut at the cell time limit of {seconds(timeout_s)} (hung or too slow)"
    if watch.exceeded_at is not None:
        return (
            f"isolation: killed at {size_bytes(watch.exceeded_at)} resident, over the cell memory limit of "
            f"{size_bytes(watch.limit_bytes)}"
        )
    if code is not None and code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        return f"isolation: the cell's process died of signal {name} (crash: e.g. segfault or abort)"
    tail = " | ".join(line for line in output.strip().splitlines()[-3:])
    return f"isolation: the cell's process exited with status {code} without a record: {tail[-300:]}"
