"""The harness's own instruments checked against the device's: the synchronised wall-clock timer
against CUDA events, peak memory against an allocation of known size, and the repository's CUDA
tests. On the CPU (dry run) a thread CPU-time clock stands in for CUDA events."""

from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from attrib_core import measure

TIMER_TOLERANCE = 0.10  # the wall-clock timer may read this much above or below the events
MEMORY_TOLERANCE = 0.01  # the CUDA allocator rounds blocks up to 512 B; a large tensor reads within this
THREAD_CLOCK_LABEL = "dry-run stand-in: time.thread_time in place of CUDA events"


def _event_timer(device: str) -> tuple[Callable[[Callable[[], object]], float], str]:
    """A timer of one call by the device's own clock, and what it is."""
    if device.startswith("cuda"):

        def by_events(fn: Callable[[], object]) -> float:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1000.0

        return by_events, "torch.cuda.Event.elapsed_time"

    def by_thread_clock(fn: Callable[[], object]) -> float:
        started = time.thread_time()
        fn()
        return time.thread_time() - started

    return by_thread_clock, THREAD_CLOCK_LABEL


def timing_against_events(device: str, side: int, matmuls: int, repeats: int) -> dict[str, Any]:
    """A chain of `matmuls` (side x side) products timed by the harness's timer (perf_counter
    around measure.synchronized) and by the device's clock; the ratio of their medians."""
    x = torch.randn(side, side, device=device)

    def work() -> torch.Tensor:
        y = x
        for _ in range(matmuls):
            y = (y @ x) / side**0.5  # keeps the values' scale, away from denormals
        return y

    synced = measure.synchronized(work, device)
    by_device, clock = _event_timer(device)
    with measure.threads_for(1) if device == "cpu" else _nothing():  # one thread: its CPU time is the wall time
        measure.synchronize(device)
        synced()  # warm-up: kernels chosen, caches filled
        wall_s, device_s = [], []
        for _ in range(repeats):
            started = time.perf_counter()
            synced()
            wall_s.append(time.perf_counter() - started)
            device_s.append(by_device(work))
    ratio = statistics.median(wall_s) / statistics.median(device_s)
    if device.startswith("cuda") and abs(ratio - 1) > TIMER_TOLERANCE:  # the CPU stand-in is only a dry run
        raise AssertionError(
            f"the harness's timer reads {ratio:.3f}x the device clock ({clock}); allowed: within {TIMER_TOLERANCE:.0%}"
        )
    return {
        "workload": f"{matmuls} matmuls of {side}x{side} fp32",
        "device_clock": clock,
        "harness_timer": "time.perf_counter around measure.synchronized",
        "repeats": repeats,
        "harness_median_s": statistics.median(wall_s),
        "device_median_s": statistics.median(device_s),
        "ratio": ratio,
    }


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def peak_of_known_allocation(device: str, nbytes: int) -> dict[str, Any]:
    """measure.peak_memory around one tensor of `nbytes`, its reading beside the bytes asked for
    (and, on CUDA, beside torch.cuda.max_memory_allocated read directly)."""

    def allocate() -> None:
        block = torch.empty(nbytes, dtype=torch.uint8, device=device)
        block.fill_(1)
        del block

    reading = measure.peak_memory(allocate, device)
    found: dict[str, Any] = {
        "allocated_bytes": nbytes,
        "peak_bytes": reading.peak_bytes,
        "method": reading.method,
        "ratio": reading.peak_bytes / nbytes,
    }
    if device.startswith("cuda"):
        dev = torch.device(device)
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        before = torch.cuda.memory_allocated(dev)
        allocate()
        torch.cuda.synchronize(dev)
        found["max_memory_allocated_bytes"] = torch.cuda.max_memory_allocated(dev) - before
    if abs(found["ratio"] - 1) > MEMORY_TOLERANCE:
        raise AssertionError(
            f"peak_memory read {reading.peak_bytes} B for a {nbytes} B tensor ({found['ratio']:.4f}x); "
            f"allowed: within {MEMORY_TOLERANCE:.0%}"
        )
    return found


PYTEST_COUNTS = re.compile(r"(\d+) (passed|failed|skipped|deselected|errors?|xfailed|xpassed)")


def run_logged(command: list[str], log: Path, timeout_s: float, env: dict[str, str] | None = None) -> int | None:
    """Run `command` with its output in `log`; past `timeout_s` it gets Ctrl-C (so a suite writes
    what it measured), then a kill. Returns its exit status, or None when it was cut."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env or dict(os.environ)
        )
        try:
            return proc.wait(timeout=max(1.0, timeout_s))
        except subprocess.TimeoutExpired:
            _stop(proc)
            return None
        except KeyboardInterrupt:  # its own session does not see the terminal's Ctrl-C: pass it on
            _stop(proc)
            raise


def _stop(proc: subprocess.Popen) -> None:
    """Ctrl-C to the process group (a suite then writes what it measured), a kill 30 s later."""
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def cuda_tests(test_paths: list[str], log: Path, timeout_s: float) -> dict[str, Any]:
    """The repository's tests whose names mention CUDA (`pytest -k cuda`), with their counts;
    without CUDA they skip themselves, which the counts show."""
    missing = [p for p in test_paths if not Path(p).exists()]
    if missing:
        raise FileNotFoundError(f"test path(s) {missing} not found; run the check from the repository's root")
    selection = "cuda and not device_check"  # not this check's own tests: they would run it again
    command = [sys.executable, "-m", "pytest", *test_paths, "-k", selection, "-q", "-rs", "-p", "no:cacheprovider"]
    code = run_logged(command, log, timeout_s)
    tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] or [""]
    counts = {
        kind.rstrip("s") if kind.startswith("error") else kind: int(n) for n, kind in PYTEST_COUNTS.findall(tail[0])
    }
    found = {
        "command": " ".join(command[1:]),
        "exit_status": code,
        "counts": counts,
        "log": str(log),
        "summary": tail[0],
    }
    if code is None:
        raise TimeoutError(f"the CUDA tests were cut at {timeout_s:.0f} s; see {log}")
    if code != 0:
        raise AssertionError(f"the CUDA tests exited with status {code} ({tail[0]}); see {log}")
    return found
