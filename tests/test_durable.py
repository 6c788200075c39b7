"""attrib_core.suite.durable: a run's results path and number, its own even when runs start together."""

from __future__ import annotations

import time

import pytest

from attrib_core import journal
from attrib_core.names import UnsafeNameError
from attrib_core.suite import durable
from tests.racing import race

PROCESSES, TRIALS = 4, 20


def start_run(folder) -> tuple[int, str]:
    """What a run does first: take a results path, work a little (tune builds its whole document
    first), then create its file. Without an exclusive claim, all four take number 1."""
    path = durable.results_path(folder, "testbox", "abc1234", "tiny")
    time.sleep(0.05)
    journal.Journal.create(journal.journal_path(path), {"results_name": path.name})
    durable.drop_claim(path)
    return int(path.name[:4]), path.name


def test_runs_started_at_the_same_instant_get_distinct_numbers_and_journals(tmp_path):
    trials = race(start_run, (), PROCESSES, TRIALS, fresh=lambda trial: (tmp_path / f"trial{trial}",))
    for trial, started in enumerate(trials):
        numbers = sorted(number for number, _ in started)
        assert numbers == list(range(1, PROCESSES + 1)), (trial, started)
        folder = tmp_path / f"trial{trial}"
        assert len(list(folder.glob(f"*{journal.SUFFIX}"))) == PROCESSES
        assert not list(folder.glob(".*.claim"))  # each run dropped its claim once its journal existed


def test_a_number_claimed_but_not_yet_written_is_not_handed_out_again(tmp_path):
    first = durable.results_path(tmp_path, "testbox", None, "tiny")  # e.g. tune, still writing its file
    second = durable.results_path(tmp_path, "testbox", None, "tiny")
    assert (first.name[:4], second.name[:4]) == ("0001", "0002")
    first.write_text("{}")
    durable.results_path(tmp_path, "testbox", None, "tiny")  # a later run tidies claims whose file exists
    assert sorted(p.name for p in tmp_path.glob(".*.claim")) == [".0002.claim", ".0003.claim"]


def test_numbers_go_on_past_9999(tmp_path):
    (tmp_path / "9999_testbox_20260101T000000Z_abc1234_tiny.json").write_text("{}")
    assert durable.results_path(tmp_path, "testbox", None, "tiny").name.startswith("10000_")
    assert durable.results_path(tmp_path, "testbox", None, "tiny").name.startswith("10001_")


@pytest.mark.parametrize(
    ("machine", "run_name", "named"),
    [("../../x", "tiny", "machine name '../../x'"), ("testbox", "tune-models/mine.py:make", "run name")],
)
def test_a_name_that_is_not_a_file_name_is_refused_before_anything_is_written(tmp_path, machine, run_name, named):
    with pytest.raises(UnsafeNameError, match="cannot be part of a file name") as refused:
        durable.results_path(tmp_path / "results", machine, None, run_name)
    assert named in str(refused.value)
    assert not (tmp_path / "results").exists()
