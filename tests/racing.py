"""Several processes released at the same instant on a barrier, for tests of exclusive creation."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any

_barrier = None


def _hold(barrier) -> None:
    global _barrier
    _barrier = barrier


def _released(job: tuple[Callable[..., Any], tuple]) -> Any:
    fn, args = job
    _barrier.wait(timeout=60)
    return fn(*args)


def race(fn: Callable[..., Any], args: tuple, processes: int, trials: int, fresh: Callable[[int], tuple] | None = None):
    """`fn(*args)` in `processes` processes at once, `trials` times; a list of each trial's results.
    `fresh(trial)` gives each trial its own args. fn must be importable (module level)."""
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that holds torch's threads
    barrier = ctx.Barrier(processes)
    with ctx.Pool(processes, initializer=_hold, initargs=(barrier,)) as pool:
        outcomes = []
        for trial in range(trials):
            trial_args = fresh(trial) if fresh is not None else args
            outcomes.append(pool.map(_released, [(fn, trial_args)] * processes, chunksize=1))
        return outcomes
