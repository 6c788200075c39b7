"""What a run is doing while it does it, so a long cell never looks like a hang.

Each cell's phase is shown as it runs (preparing, first call, the hardware limit, timed rounds
with their count, memory, each fidelity metric), and anything quiet for QUIET_S says what it is
still doing. On a terminal that is one line rewritten in place; in a log (CI, a pipe) a phase
gets a plain line once it has run SHOW_AFTER_S, then one every QUIET_S.

The ETA is the cost model's work of the cells left (FLOP-weighted rows, as shards balance them)
at the rate the measured cells ran, plus their fixed cost per cell: a least-squares line through
(work, wall time) of the cells done, so it improves as cells finish. Cells of a workload not yet
built count at the median cell's time. It is an estimate and says so ("about").
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from attrib_core.formatting import clock

QUIET_S = 10.0  # nothing shown for this long: say what is running
SHOW_AFTER_S = 2.0  # in a log, a phase is announced once it has run this long
POLL_S = 0.5
PHASES = {
    "prepare": "preparing the model and inputs",
    "first_call": "first call (warm-up)",
    "calibration": "the hardware limit (model passes at growing batches; once per model and batch)",
    "timing": "timed rounds",
    "limit": "pairing the limit with the cell",
    "memory": "peak memory",
    "fidelity": "fidelity",
    "isolated": "in its own process (isolation)",
}


def fit_line(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(fixed seconds per cell, seconds per unit of work) through (work, wall) points, both >= 0."""
    if len(points) == 1 or len({w for w, _ in points}) == 1:
        work, wall = points[0] if len(points) == 1 else (points[0][0], statistics.fmean(s for _, s in points))
        return 0.0, wall / work if work else 0.0
    mean_w = statistics.fmean(w for w, _ in points)
    mean_s = statistics.fmean(s for _, s in points)
    slope = sum((w - mean_w) * (s - mean_s) for w, s in points) / sum((w - mean_w) ** 2 for w, _ in points)
    slope = max(slope, 0.0)
    return max(mean_s - slope * mean_w, 0.0), slope


class RunProgress:
    """The run's progress display. `write(text, live)`: live=True rewrites the current terminal
    line; False prints a line. `work(key)`: the cell's cost-model work, or None before its
    workload is built. `model(key)`: the cell's model (its workload), whose own cells price it
    once one has finished: each model has its own fixed cost per cell (references, memory pass)."""

    def __init__(
        self,
        write: Callable[[str, bool], None],
        live: bool,
        work: Callable[[str], float | None],
        clock_s: Callable[[], float] = time.monotonic,
        model: Callable[[str], str] = lambda key: "",
    ) -> None:
        self.write, self.live, self.work, self.now, self.model = write, live, work, clock_s, model
        self.lock = threading.Lock()
        self.done: dict[str, tuple[float | None, float]] = {}  # key -> (work, wall seconds)
        self.remaining: list[str] = []
        self.blocks_left_s = 0.0  # the sweep's later passes: their predicted timing seconds
        self.in_block = False  # a later pass's block runs (its key is a label, not a cell)
        self.key: str | None = None
        self.phase, self.detail = "", ""
        self.phase_started = self.cell_started = self.last_shown = self.now()
        self.shown_phase = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the run -----------------------------------------------------------------------------

    def start(self, keys: list[str]) -> None:
        self.remaining = list(keys)
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="attrib-bench-progress", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * POLL_S)
        if self.live:
            self.write("", True)

    def eta_s(self) -> float | None:
        """Seconds the priced cells left should take, or None until a cell has finished. A cell
        whose workload is not built yet has no cost-model work: it is left out (and counted by
        `unpriced`), since another model's cells say nothing of its time."""
        if not self.done:
            return None
        measured = {key: (w, s) for key, (w, s) in self.done.items() if w is not None}
        overall = fit_line(list(measured.values())) if measured else (0.0, 0.0)
        per_model: dict[str, list[tuple[float, float]]] = {}
        for key, point in measured.items():
            per_model.setdefault(self.model(key), []).append(point)
        fits = {model: fit_line(points) for model, points in per_model.items()}
        median = statistics.median(s for _, s in self.done.values())

        def expected(key: str) -> float | None:
            work = self.work(key)
            if work is None:
                return None
            if not measured:
                return median
            fixed, rate = fits.get(self.model(key), overall)  # a model not measured yet: every model's fit
            return fixed + rate * work

        total = sum(e for e in map(expected, self.remaining) if e is not None)
        if self.key is not None and not self.in_block:  # the running cell, less what it has had
            running = expected(self.key)
            total += max((median if running is None else running) - (self.now() - self.cell_started), 0.0)
        return total + self.blocks_left_s

    def unpriced(self) -> int:
        """Cells left whose workload is not built yet, so the ETA leaves them out."""
        return sum(self.work(key) is None for key in self.remaining)

    def eta_text(self) -> str:
        eta = self.eta_s()
        if eta is None:
            return "ETA after the first cell"
        unpriced = self.unpriced()
        more = f" + {unpriced} cell{'s' if unpriced != 1 else ''} of models not built yet" if unpriced else ""
        return f"about {clock(eta)} left{more}"

    # --- one cell ------------------------------------------------------------------------------

    def start_cell(self, key: str) -> None:
        with self.lock:
            self.key = key
            if key in self.remaining:
                self.remaining.remove(key)
            self.cell_started = self.now()
        self.set_phase("prepare")

    def end_cell(self, key: str) -> None:
        with self.lock:
            self.done[key] = (self.work(key), self.now() - self.cell_started)
            self.key = None

    def add_block(self, predicted_s: float) -> None:
        """A later pass's block of a finished cell is due: its rounds join the ETA."""
        with self.lock:
            self.blocks_left_s += predicted_s

    def start_block(self, label: str) -> None:
        with self.lock:
            self.key, self.in_block = label, True
            self.cell_started = self.now()
        self.set_phase("timing")

    def end_block(self, predicted_s: float) -> None:
        with self.lock:
            self.blocks_left_s = max(0.0, self.blocks_left_s - predicted_s)
            self.key, self.in_block = None, False

    @contextmanager
    def in_phase(self, name: str) -> Iterator[None]:
        self.set_phase(name)
        yield

    def set_phase(self, name: str, detail: str = "") -> None:
        with self.lock:
            self.phase, self.detail = name, detail
            self.phase_started = self.now()
            self.shown_phase = False
        if self.live:
            self._show()

    def set_detail(self, detail: str) -> None:
        """Within the phase: the round or metric now running. Only records it (the watcher shows
        it), since it may be called between timed calls."""
        with self.lock:
            self.detail = detail

    # --- showing ---------------------------------------------------------------------------------

    def line(self) -> str:
        phase = PHASES.get(self.phase, self.phase)
        detail = f" {self.detail}" if self.detail else ""
        running = clock(self.now() - self.phase_started)
        return f"  ... {self.key}: {phase}{detail} ({running}); {self.eta_text()}"

    def _show(self) -> None:
        with self.lock:
            if self.key is None:
                return
            text = self.line()
            self.last_shown = self.now()
            self.shown_phase = True
        self.write(text, self.live)

    def _watch(self) -> None:
        while not self._stop.wait(POLL_S):
            self.tick()

    def tick(self) -> None:
        """One look at the running cell: show it if it has been quiet too long."""
        now = self.now()
        with self.lock:
            if self.key is None:
                return
            due = now - self.last_shown >= QUIET_S
            first = not self.shown_phase and now - self.phase_started >= SHOW_AFTER_S
            # a live line refreshes each second, except while rounds are timed: then as a log does
            refresh = self.live and self.phase != "timing" and now - self.last_shown >= 1.0
        if due or first or refresh:
            self._show()


def work_of(cells: Mapping[str, object], built: Callable[[str], bool], weigh: Callable[[object], float]):
    """`work(key)` for RunProgress: the cell's cost-model work once its workload is built."""

    priced: dict[str, float | None] = {}

    def work(key: str) -> float | None:
        if key in priced:  # priced once: the ETA asks for every cell left at each line
            return priced[key]
        cell = cells.get(key)
        if cell is None or not built(cell.workload):
            return None  # asked again once the workload is built
        try:
            priced[key] = weigh(cell)
        except Exception:  # a cell the cost model cannot price (its knobs fail) has no estimate
            priced[key] = None
        return priced[key]

    return work


SLOWEST_SHOWN = 3


def where_time_went(phase_seconds: Mapping[str, Mapping[str, float]], run_s: float) -> list[str]:
    """Lines for the end of a run: each phase's share of the run's wall time (what is left is
    start-up, building and training models, and pytest), and the slowest cells."""
    totals: dict[str, float] = {}
    for phases in phase_seconds.values():
        for name, spent in phases.items():
            totals[name] = totals.get(name, 0.0) + spent
    if not totals or run_s <= 0:
        return []
    shares = sorted(totals.items(), key=lambda item: -item[1])
    other = max(run_s - sum(totals.values()), 0.0)
    parts = [f"{PHASE_WORDS.get(name, name)} {spent / run_s:.0%}" for name, spent in shares]
    lines = [f"where the time went ({clock(run_s)}): {', '.join(parts)}, outside cells {other / run_s:.0%}"]
    slowest = sorted(phase_seconds.items(), key=lambda item: -sum(item[1].values()))[:SLOWEST_SHOWN]
    for key, phases in slowest:
        top = max(phases, key=phases.get)
        lines.append(
            f"  slow: {key} {clock(sum(phases.values()))} (most in {PHASE_WORDS.get(top, top)}: {clock(phases[top])})"
        )
    return lines


PHASE_WORDS = {
    "prepare": "preparing",
    "first_call": "first calls",
    "calibration": "limit calibration",
    "timing": "timed rounds",
    "limit": "limit pairing",
    "memory": "memory",
    "fidelity": "fidelity",
}
