"""How noisy the machine was around a run: load average, CPU frequency governor, busy neighbours.

Timings on a shared machine are only as good as the quiet around them, so every run records
`context()` before and after itself (machine_info.attrib_bench.noise) and prints what
`assess()` finds. Linux /proc and /sys only (no psutil, no torch); on other systems the
fields it cannot read are None and nothing is assessed from them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

PROC = Path("/proc")
GOVERNOR = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
WINDOW_S = 0.5  # how long other processes' CPU time is watched
BUSIEST_SHOWN = 5
BUSY_PERCENT = 20.0  # of one core: a neighbour above this competes for the cores
LOAD_PER_CORE_BEFORE = 0.5  # before the run nothing of ours runs: half the cores busy is already noisy
LOAD_PER_CORE_AFTER = 1.0  # after it our own run counts in the average: above one per core, others queued
QUIET_GOVERNORS = ("performance",)


def context(window_s: float = WINDOW_S) -> dict[str, Any]:
    """A snapshot: load average (1, 5, 15 min), usable cores, governor, busiest other processes."""
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return {
        "time_unix_s": round(time.time(), 3),
        "load_average": load,
        "cpu_count": _usable_cores(),
        "cpu_governor": _read(GOVERNOR),
        "busy_processes": busiest_processes(window_s),
        "window_s": window_s,
    }


def assess(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Human warnings about the noise around a run (empty: nothing seen that would spoil timings)."""
    warnings = []
    for when, snapshot, per_core in (("before", before, LOAD_PER_CORE_BEFORE), ("after", after, LOAD_PER_CORE_AFTER)):
        load, cores = snapshot.get("load_average"), snapshot.get("cpu_count")
        if load and cores and load[0] > per_core * cores:
            warnings.append(f"load average {load[0]:.1f} on {cores} cores {when} the run")
    governor = before.get("cpu_governor") or after.get("cpu_governor")
    if governor is not None and governor not in QUIET_GOVERNORS:
        warnings.append(
            f"CPU frequency governor {governor!r} (not {', '.join(QUIET_GOVERNORS)}): clock changes add noise"
        )
    busy: dict[int, tuple[str, float]] = {}
    for snapshot in (before, after):
        for p in snapshot.get("busy_processes") or []:
            if p["cpu_percent"] >= BUSY_PERCENT and p["cpu_percent"] > busy.get(p["pid"], ("", -1.0))[1]:
                busy[p["pid"]] = (p["name"], p["cpu_percent"])
    if busy:
        shown = ", ".join(f"{name} (pid {pid}) {pct:.0f}%" for pid, (name, pct) in sorted(busy.items()))
        warnings.append(f"other busy processes (CPU% of one core): {shown}")
    return warnings


def busiest_processes(window_s: float = WINDOW_S, shown: int = BUSIEST_SHOWN) -> list[dict[str, Any]]:
    """Other processes by CPU% of one core over `window_s`, from /proc/<pid>/stat; [] without /proc."""
    if not PROC.is_dir():
        return []
    first = _cpu_ticks()
    start = time.monotonic()
    time.sleep(window_s)
    second = _cpu_ticks()
    elapsed = time.monotonic() - start
    ticks_per_s = os.sysconf("SC_CLK_TCK")
    ours = {os.getpid(), os.getppid()}
    rows = [
        {"pid": pid, "name": name, "cpu_percent": round(100 * (ticks - first[pid][1]) / ticks_per_s / elapsed, 1)}
        for pid, (name, ticks) in second.items()
        if pid in first and pid not in ours and ticks > first[pid][1]
    ]
    return sorted(rows, key=lambda r: -r["cpu_percent"])[:shown]


def _cpu_ticks() -> dict[int, tuple[str, int]]:
    """pid -> (command name, user + system clock ticks so far)."""
    ticks = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:  # gone, or not ours to read
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        ticks[int(entry.name)] = (name, int(fields[11]) + int(fields[12]))  # utime, stime (fields 14, 15)
    return ticks


def _usable_cores() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None
