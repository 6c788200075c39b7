"""Fault injection, for proving the harness's own checks: slowdowns for the regression check,
and hangs, crashes and memory blow-ups for process isolation. Each is named on the command
line and recorded in the cell it touches, so no injected result passes for a real one."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

from attrib_core.methods import METHODS

T = TypeVar("T")
FAULTS = ("hang", "abort", "alloc")
ALLOC_CHUNK_BYTES = 64 * 2**20


def parse_slowdowns(values: list[str]) -> dict[str, float]:
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


def parse_faults(values: list[str]) -> dict[str, str]:
    """`TEXT=KIND`: cells whose key contains TEXT get fault KIND (hang, abort or alloc)."""
    faults = {}
    for value in values:
        text, _, kind = value.partition("=")
        if not text or kind not in FAULTS:
            raise pytest.UsageError(f"--inject-fault {value!r}: expected CELL_KEY_TEXT=KIND, KIND one of {FAULTS}")
        faults[text] = kind
    return faults


def fault_for(key: str, faults: dict[str, str]) -> str | None:
    return next((kind for text, kind in faults.items() if text in key), None)


def slowed_down(call: Callable[[], T], factor: float) -> Callable[[], T]:
    """After each call, spin for (factor - 1) x the call's own time: the cell takes `factor` as long."""

    def slow_call() -> T:
        started = time.perf_counter()
        result = call()
        until = time.perf_counter() + (factor - 1) * (time.perf_counter() - started)
        while time.perf_counter() < until:
            pass
        return result

    return slow_call


def faulty(call: Callable[[], T], kind: str) -> Callable[[], T]:
    """The call, preceded by a hang (sleeps for a day), an abort (SIGABRT, as a crash in native
    code would) or an allocation that grows without end (touching every page, so it is resident)."""

    def faulty_call() -> T:
        if kind == "hang":
            time.sleep(86400)
        elif kind == "abort":
            os.abort()
        elif kind == "alloc":
            hoard = []
            while True:
                hoard.append(bytearray(b"\1" * ALLOC_CHUNK_BYTES))
        return call()

    return faulty_call
