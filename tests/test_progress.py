"""attrib_core.suite.progress: what a run shows while a cell runs, and its ETA (a scripted clock)."""

from __future__ import annotations

import pytest

from attrib_core.suite.progress import QUIET_S, SHOW_AFTER_S, RunProgress, fit_line


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def plain(work: dict[str, float | None]) -> tuple[RunProgress, list[str], Clock]:
    lines: list[str] = []
    clock = Clock()
    progress = RunProgress(lambda text, live: lines.append(text), False, work.get, clock)
    progress.remaining = list(work)
    return progress, lines, clock


def test_fit_line_recovers_fixed_cost_and_rate_and_never_goes_negative():
    assert fit_line([(10.0, 7.0), (20.0, 12.0), (40.0, 22.0)]) == pytest.approx((2.0, 0.5))
    assert fit_line([(10.0, 5.0)]) == (0.0, 0.5)
    fixed, rate = fit_line([(10.0, 9.0), (20.0, 3.0)])  # more work, less time: noise, not a negative rate
    assert rate == 0.0 and fixed == pytest.approx(6.0)


def test_a_quiet_phase_is_announced_after_a_moment_then_every_quiet_interval():
    progress, lines, clock = plain({"a": 1.0})
    progress.start_cell("a")
    progress.set_phase("fidelity")
    progress.set_detail("infidelity")
    clock.t = SHOW_AFTER_S - 0.1
    progress.tick()
    assert lines == []  # a short phase says nothing in a log
    clock.t = SHOW_AFTER_S
    progress.tick()
    assert len(lines) == 1 and "a: fidelity infidelity (00:02); ETA after the first cell" in lines[0]
    clock.t = SHOW_AFTER_S + QUIET_S - 0.1
    progress.tick()
    assert len(lines) == 1
    clock.t = SHOW_AFTER_S + QUIET_S
    progress.tick()
    assert len(lines) == 2  # never quiet for more than QUIET_S


def test_eta_is_the_cost_model_work_left_at_the_measured_rate():
    progress, _, clock = plain({"a": 10.0, "b": 20.0, "c": 40.0, "d": None})
    for key, wall in (("a", 7.0), ("b", 12.0)):
        progress.start_cell(key)
        clock.t += wall
        progress.end_cell(key)
    # line through (10, 7) and (20, 12): 2 s + 0.5 s per unit; c: 2 + 20 = 22 s; d's workload is not
    # built yet, so nothing prices it: left out of the sum, and said
    assert progress.eta_s() == pytest.approx(22.0)
    assert progress.eta_text() == "about 00:22 left + 1 cell of models not built yet"
    progress.start_cell("c")
    clock.t += 5.0
    assert progress.eta_s() == pytest.approx(22.0 - 5.0)  # the running cell's share shrinks


def test_each_model_prices_its_own_cells_once_one_has_finished():
    lines: list[str] = []
    clock = Clock()
    work = {"big-a": 10.0, "big-b": 20.0, "small-a": 10.0, "small-b": 20.0, "new-a": 10.0}
    progress = RunProgress(lambda text, live: None, False, work.get, clock, model=lambda key: key.split("-")[0])
    progress.remaining = list(work)
    for key, wall in (("big-a", 30.0), ("big-b", 40.0), ("small-a", 2.0)):
        progress.start_cell(key)
        clock.t += wall
        progress.end_cell(key)
    # small's own cell: 0.2 s per unit -> small-b 4 s, not the big model's fixed 20 s + 1 s per unit;
    # new has no finished cell: every model's line through (10, 30), (20, 40), (10, 2)
    overall_fixed, overall_rate = fit_line([(10.0, 30.0), (20.0, 40.0), (10.0, 2.0)])
    assert progress.eta_s() == pytest.approx(4.0 + overall_fixed + overall_rate * 10.0)
    assert lines == []


def test_the_end_of_a_run_says_where_its_time_went():
    from attrib_core.suite.progress import where_time_went

    spent = {
        "a": {"first_call": 1.0, "timing": 6.0, "fidelity": 1.0},
        "b": {"first_call": 2.0, "timing": 4.0, "fidelity": 16.0},
    }
    lines = where_time_went(spent, 40.0)
    assert lines[0] == (
        "where the time went (00:40): fidelity 42%, timed rounds 25%, first calls 8%, outside cells 25%"
    )
    assert lines[1] == "  slow: b 00:22 (most in fidelity: 00:16)" and lines[2].startswith("  slow: a 00:08")


def test_a_later_pass_adds_its_blocks_to_the_eta_and_takes_them_off_as_they_run():
    progress, _, clock = plain({"a": 10.0})
    progress.start_cell("a")
    clock.t += 4.0
    progress.end_cell("a")
    progress.add_block(3.0)  # a's block in the second pass, predicted from its own rounds
    assert progress.eta_s() == pytest.approx(3.0)
    progress.start_block("pass 2/2: a")
    clock.t += 1.0
    assert progress.eta_s() == pytest.approx(3.0)  # a block is not a cell: nothing of the median added
    progress.end_block(3.0)
    assert progress.eta_s() == pytest.approx(0.0)
