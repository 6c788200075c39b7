"""The history: a folder of results files over commits, ordered, normalised, with steps found.

The history is made from the real fixture tests/fixtures/ig_only.json (8 cells), copied once
per commit with a new commit id and time and with chosen cells' times scaled, so the step's
commit and size are known by construction.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from attrib_core.analysis.history import (
    MEMORY,
    TIME,
    TIME_RAW,
    commit_axis,
    history_steps,
    load_history,
    noise_between_runs,
)
from attrib_core.analysis.results import ResultsError
from attrib_core.commands import cli

FIXTURE = Path(__file__).parent / "fixtures" / "ig_only.json"
SLOWED = "digits_cnn-IntegratedGradients-cpu-b1-fp32-contiguous-method=gausslegendre-n_steps=64"


def scaled(record: dict, factor: float) -> dict:
    record = copy.deepcopy(record)
    stats = record["stats"]
    for name in ("min", "max", "mean", "median", "q1", "q3", "stddev", "iqr"):
        stats[name] *= factor
    stats["data"] = [v * factor for v in stats["data"]]
    return record


def write_history(
    folder: Path, n_commits: int, step_at: int, factor: float, machine_factor=lambda i: 1.0, reruns_last: int = 0
) -> list[str]:
    """One file per commit (commit i at 10:i UTC); SLOWED is `factor` x slower from commit `step_at` on.

    Every cell wobbles by +-1% from commit to commit; the whole run is `machine_factor(i)`
    slower (a busy machine). The newest commit gets `reruns_last` extra identical runs.
    """
    base = json.loads(FIXTURE.read_text())
    commits = [f"{i:02d}" + "ab" * 19 for i in range(n_commits)]
    runs = [*range(n_commits), *[n_commits - 1] * reruns_last]
    for run, i in enumerate(runs):
        data = copy.deepcopy(base)
        data["commit_info"].update(id=commits[i], time=f"2026-01-01T10:{i:02d}:00+00:00")
        data["datetime"] = f"2026-01-02T10:{run:02d}:00+00:00"
        wobble = 1 + 0.01 * (-1) ** (run + (run >= n_commits))
        slowed = {SLOWED: factor if i >= step_at else 1.0}
        data["benchmarks"] = [
            scaled(r, wobble * machine_factor(run) * slowed.get(r["extra_info"]["cell_key"], 1.0))
            for r in base["benchmarks"]
        ]
        (folder / f"m_{run:02d}_{commits[i][:7]}_ig.json").write_text(json.dumps(data))
    return commits


def test_commits_ordered_by_commit_time_not_file_name(tmp_path):
    commits = write_history(tmp_path, 6, step_at=3, factor=1.3)
    newest = tmp_path / f"m_05_{commits[5][:7]}_ig.json"
    newest.rename(tmp_path / "a_first_by_name.json")  # the file name must not decide the order
    df = load_history([tmp_path])
    axis = commit_axis(df)
    assert list(axis["commit"]) == [c[:12] for c in commits]
    assert list(axis["commit_order"]) == list(range(6))
    assert set(df.groupby("file")["cell_key"].count()) == {8}


def test_step_found_at_the_slowed_commit_only(tmp_path):
    commits = write_history(tmp_path, 10, step_at=6, factor=1.3)
    steps, series = history_steps(load_history([tmp_path]), [TIME, TIME_RAW, MEMORY])
    assert set(series["metric"]) == {"time", "time_raw", "memory"}
    assert len(series) == 8 * 3
    time_steps = steps[steps["metric"].isin(["time", "time_raw"])]
    assert set(time_steps["cell_key"]) == {SLOWED}
    assert set(time_steps["commit"]) == {commits[6][:12]}
    for _, step in time_steps.iterrows():
        assert step["size"] == pytest.approx(0.3, abs=0.03)
        assert step["low"] <= 0.3 <= step["high"]
        assert step["in_force"]
    assert steps[steps["metric"] == "memory"].empty  # peak memory never changed


def test_busy_machine_moves_raw_time_but_not_normalised_time(tmp_path):
    # runs 5.. are twice as slow in every cell (another job on the machine): no code changed
    write_history(tmp_path, 10, step_at=0, factor=1.0, machine_factor=lambda i: 2.0 if i >= 5 else 1.0)
    df = load_history([tmp_path])
    factors = df.groupby("commit_order")["run_factor"].first().to_numpy()
    assert factors == pytest.approx([2 / 3] * 5 + [4 / 3] * 5, abs=0.02)  # over the history median, 1.5
    steps, _ = history_steps(df, [TIME, TIME_RAW])
    assert steps[steps["metric"] == "time"].empty
    assert len(steps[steps["metric"] == "time_raw"]) == 8  # every cell "doubled": the raw view shows it


def test_reruns_measure_noise(tmp_path):
    write_history(tmp_path, 4, step_at=0, factor=1.0, reruns_last=2)
    noise = noise_between_runs(load_history([tmp_path]), TIME_RAW)
    assert len(noise) == 8
    assert set(noise["reruns"]) == {3}
    # newest commit's runs are x0.99, x1.01, x0.99: the std of their logs
    expected = np.std(np.log([0.99, 1.01, 0.99]), ddof=1)
    assert noise["noise"].to_numpy() == pytest.approx(expected, rel=1e-6)


def test_history_needs_results(tmp_path):
    with pytest.raises(ResultsError, match="no results files"):
        load_history([tmp_path])
    with pytest.raises(ResultsError, match="no such results file or folder"):
        load_history([tmp_path / "nowhere"])


def test_cli_writes_the_page(tmp_path, capsys):
    folder = tmp_path / "history"
    folder.mkdir()
    commits = write_history(folder, 8, step_at=4, factor=1.5)
    out = tmp_path / "page"
    assert cli.main(["history", str(folder), "--out", str(out), "--metrics", "time,memory"]) == 0
    names = {p.name for p in out.iterdir()}
    assert names == {"history.html", "history.md", "steps.csv", "series.csv", "history_time.png", "history_memory.png"}
    steps = pd.read_csv(out / "steps.csv")
    assert set(steps.loc[steps["metric"] == "time", "commit"]) == {commits[4][:12]}
    page = (out / "history.html").read_text()
    assert "data:image/png;base64," in page and "+50.0%" in page
    assert "8 commits" in (out / "history.md").read_text()


def test_cli_bad_input(tmp_path, capsys):
    assert cli.main(["history", str(tmp_path / "missing")]) == 2
    assert "no such results file or folder" in capsys.readouterr().err
    write_history(tmp_path, 4, step_at=0, factor=1.0)
    assert cli.main(["history", str(tmp_path), "--out", str(tmp_path / "page"), "--metrics", "time,speed"]) == 2
    assert "unknown metric 'speed'; valid for these results: time, time_raw, memory" in capsys.readouterr().err
