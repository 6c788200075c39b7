"""The regression check: its decision rule on synthetic runs (deterministic, seeded samples),
the command line's handling of bad input, and one end-to-end run with an injected slowdown."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from attrib_core.analysis import verdicts as verdict_output
from attrib_core.analysis.regression import (
    CHANGED,
    FAILED,
    IMPROVED,
    MISSING,
    NEW,
    OK,
    REGRESSED,
    UNCHECKED,
    RegressionInputError,
    Thresholds,
    compare,
    smallest_p_value,
)
from attrib_core.analysis.results import load_results
from bench import regress

ROUNDS = 20
ENV = {"cpu_model": "Test CPU", "cpu_logical_cores": 2, "torch_version": "2.4.0", "captum_version": "0.8.0", "gpus": []}


def cell(
    median_s: float = 0.01,
    spread: float = 0.02,
    seed: int = 0,
    peak_bytes: int = 1_000_000,
    calib_s: float = 0.001,
    status: str = "ok",
    fidelity: dict[str, float] | None = None,
) -> dict:
    """One cell's recorded figures: ROUNDS lognormal samples around median_s."""
    samples = (median_s * np.exp(np.random.default_rng(seed).normal(0, spread, ROUNDS))).tolist()
    return {
        "samples": samples,
        "peak_bytes": peak_bytes,
        "calib_s": calib_s,
        "status": status,
        "fidelity": fidelity or {"completeness": 0.01, "insertion": 0.8},
    }


def record(key: str, c: dict) -> dict:
    extra = {
        "schema_version": 1,
        "cell_key": key,
        "cell": {"workload": "digits_cnn", "method": key.split("-")[1], "device": "cpu", "batch_size": 4},
        "status": c["status"],
        "error": None if c["status"] == "ok" else "timing: RuntimeError: boom",
        "threads": 1,
        "passes": {"forward": 8, "backward": 8},
        "calibration": {"forward_s_per_sample": c["calib_s"] / 2, "forward_backward_s_per_sample": c["calib_s"]},
        "memory": {"peak_bytes": c["peak_bytes"], "method": "test"},
        # as attrib_core.fidelity writes them: each record says which direction is better
        "fidelity": {
            name: {"status": "ok", "value": value, "lower_is_better": name != "insertion"}
            for name, value in c["fidelity"].items()
        },
    }
    stats = None
    if c["status"] == "ok":
        data = c["samples"]
        stats = {"median": float(np.median(data)), "min": min(data), "max": max(data), "rounds": len(data)}
        stats["data"] = data
    return {"name": f"test_cell[{key}]", "stats": stats, "extra_info": extra}


def write_run(path: Path, cells: dict[str, dict], **env) -> Path:
    data = {
        "machine_info": {
            "attrib_bench": {"schema_version": 1, "preset": "ci", "environment": {**ENV, **env}},
        },
        "commit_info": {"id": "abc"},
        "datetime": "2026-01-01T00:00:00",
        "benchmarks": [record(k, c) for k, c in cells.items()],
    }
    path.write_text(json.dumps(data))
    return path


def table(tmp_path: Path, name: str, cells: dict[str, dict], **env):
    return load_results([write_run(tmp_path / f"{name}.json", cells, **env)])


KEYS = [f"digits_cnn-{m}-cpu-b4-fp32-contiguous" for m in ("Saliency", "DeepLift", "IntegratedGradients", "Lime")]


def runs(tmp_path, now_changes=None, base_seed=0, now_seed=100, **env):
    """A baseline and a new run of the four KEYS cells; now_changes: key -> cell() overrides."""
    base = {k: cell(median_s=0.002 * (i + 1), seed=base_seed + i) for i, k in enumerate(KEYS)}
    now = {k: cell(median_s=0.002 * (i + 1), seed=now_seed + i) for i, k in enumerate(KEYS)}
    for key, overrides in (now_changes or {}).items():
        i = KEYS.index(key)
        now[key] = cell(**{"median_s": 0.002 * (i + 1), "seed": now_seed + i, **overrides})
    return table(tmp_path, "base", base), table(tmp_path, "now", now, **env)


def verdicts(comparison, kind="time"):
    return {c.cell_key: c.verdict for c in comparison.checks if c.kind == kind}


# --- the decision rule --------------------------------------------------------------------


def test_identical_runs_pass(tmp_path):
    base, _ = runs(tmp_path)
    result = compare(base, base)
    assert set(verdicts(result).values()) == {OK}
    assert result.failing == [] and result.environment_changes == {}
    assert result.time_scale == pytest.approx(1.0)


def test_three_times_slower_cell_regresses(tmp_path):
    base, now = runs(tmp_path, {KEYS[2]: {"median_s": 0.018}})
    result = compare(base, now)
    assert verdicts(result) == {KEYS[0]: OK, KEYS[1]: OK, KEYS[2]: REGRESSED, KEYS[3]: OK}
    slowed = next(c for c in result.checks if c.cell_key == KEYS[2] and c.kind == "time")
    assert slowed.ratio == pytest.approx(3.0, rel=0.05) and slowed.p_value < 1e-6


def test_noisy_runs_of_the_same_distribution_pass(tmp_path):
    for seed in range(10):
        base = {k: cell(median_s=0.002 * (i + 1), spread=0.15, seed=seed * 10 + i) for i, k in enumerate(KEYS)}
        now = {k: cell(median_s=0.002 * (i + 1), spread=0.15, seed=500 + seed * 10 + i) for i, k in enumerate(KEYS)}
        result = compare(table(tmp_path, "base", base), table(tmp_path, "now", now))
        assert result.failing == [], seed


def test_a_small_significant_shift_below_the_factor_passes(tmp_path):
    # 10% slower with tight noise: the test finds it, the effect-size factor (1.3) keeps it green
    base, now = runs(tmp_path, {KEYS[0]: {"median_s": 0.0022, "spread": 0.005}})
    check = next(c for c in compare(base, now).checks if c.cell_key == KEYS[0] and c.kind == "time")
    assert check.verdict == OK and check.p_value < 0.01


def test_uniformly_slower_machine_passes_under_every_normalisation_but_none(tmp_path):
    slower = {k: {"median_s": 0.002 * (i + 1) * 1.7, "calib_s": 0.0017} for i, k in enumerate(KEYS)}
    base, now = runs(tmp_path, slower)
    for normalisation in ("run-median", "calibration"):
        result = compare(base, now, Thresholds(normalisation=normalisation))
        assert set(verdicts(result).values()) == {OK}, normalisation
    assert set(verdicts(compare(base, now, Thresholds(normalisation="none"))).values()) == {REGRESSED}


def test_one_slower_method_on_a_slower_machine_regresses(tmp_path):
    slower = {k: {"median_s": 0.002 * (i + 1) * 1.7, "calib_s": 0.0017} for i, k in enumerate(KEYS)}
    slower[KEYS[1]]["median_s"] *= 2
    base, now = runs(tmp_path, slower)
    for normalisation in ("run-median", "calibration"):
        result = compare(base, now, Thresholds(normalisation=normalisation))
        assert verdicts(result)[KEYS[1]] == REGRESSED, normalisation
        assert [c.cell_key for c in result.failing] == [KEYS[1]], normalisation


def test_faster_cell_is_improved_not_failed(tmp_path):
    base, now = runs(tmp_path, {KEYS[3]: {"median_s": 0.002}})
    assert verdicts(compare(base, now))[KEYS[3]] == IMPROVED
    assert compare(base, now).failing == []


def test_memory_ten_percent_more_regresses_and_a_few_bytes_do_not(tmp_path):
    base, now = runs(tmp_path, {KEYS[0]: {"peak_bytes": 1_100_000}, KEYS[1]: {"peak_bytes": 1_000_512}})
    memory = verdicts(compare(base, now), "memory")
    assert memory[KEYS[0]] == REGRESSED and memory[KEYS[1]] == OK and memory[KEYS[2]] == OK


def test_fidelity_error_that_grew_regresses(tmp_path):
    worse = {
        KEYS[0]: {"completeness": 0.05, "insertion": 0.8},  # error metric up 5x
        KEYS[1]: {"completeness": 0.01, "insertion": 0.6},  # higher-is-better metric down
        KEYS[2]: {"completeness": 0.0100001, "insertion": 0.8},  # float noise
    }
    base, now = runs(tmp_path, {k: {"fidelity": v} for k, v in worse.items()})
    result = compare(base, now)
    assert verdicts(result, "fidelity:completeness")[KEYS[0]] == REGRESSED
    assert verdicts(result, "fidelity:insertion")[KEYS[1]] == REGRESSED
    assert verdicts(result, "fidelity:completeness")[KEYS[2]] == OK
    assert {c.cell_key for c in result.failing} == {KEYS[0], KEYS[1]}


def test_cells_on_one_side_only_are_reported_not_crashed_on(tmp_path):
    base_cells = {k: cell(seed=i) for i, k in enumerate(KEYS)}
    now_cells = {k: cell(seed=i) for i, k in enumerate(KEYS[1:])}
    now_cells["tabular_mlp-Lime-cpu-b4-fp32-contiguous"] = cell()
    result = compare(table(tmp_path, "base", base_cells), table(tmp_path, "now", now_cells))
    status = verdicts(result, "status")
    assert status == {KEYS[0]: MISSING, "tabular_mlp-Lime-cpu-b4-fp32-contiguous": NEW}
    assert result.failing == []


def test_a_cell_that_fails_now_is_a_regression(tmp_path):
    base, now = runs(tmp_path, {KEYS[1]: {"status": "failed"}})
    result = compare(base, now)
    assert verdicts(result, "status") == {KEYS[1]: FAILED}
    assert [c.cell_key for c in result.failing] == [KEYS[1]]


def test_other_hardware_warns_and_memory_does_not_decide(tmp_path):
    base, now = runs(tmp_path, {KEYS[0]: {"peak_bytes": 2_000_000}}, cpu_model="Other CPU", torch_version="2.5.0")
    result = compare(base, now)
    assert result.environment_changes == {"cpu_model": ("Test CPU", "Other CPU"), "torch_version": ("2.4.0", "2.5.0")}
    assert verdicts(result, "memory")[KEYS[0]] == CHANGED and result.failing == []
    assert any("measured elsewhere" in line for line in verdict_output.format_warnings(result, Thresholds()))


def test_too_few_rounds_for_alpha_are_unchecked_not_passed_silently(tmp_path):
    base = load_results([write_run(tmp_path / "b.json", {KEYS[0]: {**cell(), "samples": [0.01, 0.01, 0.01]}})])
    now = load_results([write_run(tmp_path / "n.json", {KEYS[0]: {**cell(), "samples": [0.05, 0.05, 0.05]}})])
    check = next(c for c in compare(base, now).checks if c.kind == "time")
    assert check.verdict == UNCHECKED and "cannot reach" in check.note
    assert smallest_p_value(3, 3) == pytest.approx(1 / 20)


def test_no_cell_in_common_is_an_error(tmp_path):
    base = table(tmp_path, "base", {KEYS[0]: cell()})
    now = table(tmp_path, "now", {KEYS[1]: cell()})
    with pytest.raises(RegressionInputError, match="no cell in common"):
        compare(base, now)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("time_factor", 0.9, "time_factor=0.9 is not valid; needs a number > 1"),
        ("alpha", 1.5, "alpha=1.5 is not valid"),
        ("memory_factor", float("nan"), "memory_factor=nan is not valid"),
        ("normalisation", "mean", "unknown normalisation 'mean'; valid: run-median, calibration, none"),
    ],
)
def test_bad_thresholds_name_the_value_and_the_valid_choices(field, value, message):
    with pytest.raises(ValueError, match=message):
        Thresholds(**{field: value})


# --- the command line ----------------------------------------------------------------------


def test_compare_two_files_exit_status(tmp_path, capsys):
    base_file = write_run(
        tmp_path / "base.json", {k: cell(median_s=0.002 * (i + 1), seed=i) for i, k in enumerate(KEYS)}
    )
    same = tmp_path / "same.json"
    slow = {k: cell(median_s=0.002 * (i + 1), seed=100 + i) for i, k in enumerate(KEYS)}
    slow[KEYS[2]] = cell(median_s=0.018, seed=7)
    write_run(same, {k: cell(median_s=0.002 * (i + 1), seed=100 + i) for i, k in enumerate(KEYS)})
    slow_file = write_run(tmp_path / "slow.json", slow)
    assert regress.main(["--compare", str(base_file), str(same)]) == verdict_output.EXIT_OK
    assert "no regression" in capsys.readouterr().out
    assert regress.main(["--compare", str(base_file), str(slow_file)]) == verdict_output.EXIT_REGRESSED
    out = capsys.readouterr().out
    assert "REGRESSED" in out and f"REGRESSION in 1 cells: {KEYS[2]}" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--time-factor", "abc"], "argument --time-factor: 'abc' is not a number"),
        (["--alpha", "0"], "alpha=0.0 is not valid; needs a number between 0 and 1, e.g. 0.01 (--alpha)"),
        (["--time-factor", "0.8"], "time_factor=0.8 is not valid; needs a number > 1, e.g. 1.3 (--time-factor)"),
        (["--normalisation", "mean"], "invalid choice: 'mean'"),
    ],
)
def test_bad_threshold_strings_exit_2_naming_the_value(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        regress.main([*args, "--compare", "a.json", "b.json"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_baseline_exits_2_before_running_anything(tmp_path, capsys):
    missing = tmp_path / "nope.json"
    code = regress.main(["--baseline", str(missing), "--results-dir", str(tmp_path / "out")])
    assert code == verdict_output.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert f"no baseline at {missing}" in err and "--update-baseline" in err
    assert not (tmp_path / "out").exists()


def test_corrupt_baseline_exits_2_and_is_left_alone(tmp_path, capsys):
    corrupt = tmp_path / "base.json"
    corrupt.write_text("{not json")
    code = regress.main(["--baseline", str(corrupt), "--results-dir", str(tmp_path / "out")])
    assert code == verdict_output.EXIT_BAD_INPUT
    assert "baseline: " in (err := capsys.readouterr().err) and "not valid JSON" in err
    assert corrupt.read_text() == "{not json"


def test_compare_with_no_cell_in_common_exits_2(tmp_path, capsys):
    a = write_run(tmp_path / "a.json", {KEYS[0]: cell()})
    b = write_run(tmp_path / "b.json", {KEYS[1]: cell()})
    assert regress.main(["--compare", str(a), str(b)]) == verdict_output.EXIT_BAD_INPUT
    assert "no cell in common" in capsys.readouterr().err


def test_a_run_with_a_failed_cell_is_not_recorded_as_baseline(tmp_path):
    baseline = tmp_path / "baselines" / "ci"
    regress.record_baseline([write_run(tmp_path / "old.json", {KEYS[0]: cell()})], baseline)
    before = (baseline / "old.json").read_text()
    failed = write_run(tmp_path / "new.json", {KEYS[0]: cell(), KEYS[1]: cell(status="failed")})
    with pytest.raises(regress.RegressError, match=r"1 cells failed \(e.g. .*DeepLift.*\); .* is unchanged"):
        regress.record_baseline([failed], baseline)
    assert [p.name for p in baseline.iterdir()] == ["old.json"] and (baseline / "old.json").read_text() == before


def test_a_new_baseline_replaces_the_old_folder_as_a_whole(tmp_path):
    baseline = tmp_path / "ci"
    regress.record_baseline([write_run(tmp_path / "old.json", {KEYS[0]: cell()})], baseline)
    runs = [write_run(tmp_path / f"new{i}.json", {KEYS[0]: cell(seed=i)}) for i in range(2)]
    regress.record_baseline(runs, baseline)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["ci"]
    assert sorted(p.name for p in baseline.iterdir()) == ["new0.json", "new1.json"]
    with pytest.raises(regress.RegressError, match="holds one run, not 2: pass a folder"):
        regress.record_baseline(runs, tmp_path / "one.json")


def test_runs_of_several_processes_are_pooled_per_cell(tmp_path):
    # one process of the new run had every cell slowed as a whole: the other keeps the minimum honest
    base = [table(tmp_path, f"b{i}", {k: cell(seed=10 * i + j) for j, k in enumerate(KEYS)}) for i in range(2)]
    disturbed = {k: cell(median_s=0.02, seed=50 + j) for j, k in enumerate(KEYS[:2])}
    disturbed.update({k: cell(seed=50 + j) for j, k in enumerate(KEYS[2:], 2)})
    now = [table(tmp_path, "n0", disturbed), table(tmp_path, "n1", {k: cell(seed=70 + j) for j, k in enumerate(KEYS)})]
    pooled = compare(pd.concat(base), pd.concat(now))
    assert pooled.failing == []
    assert verdicts(compare(base[0], now[0]))[KEYS[0]] == REGRESSED  # one process alone: a false alarm
    assert verdicts(compare(base[0], now[0], Thresholds(statistic="median")))[KEYS[0]] == REGRESSED


def test_an_empty_baseline_folder_exits_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    now = write_run(tmp_path / "now.json", {KEYS[0]: cell()})
    assert regress.main(["--compare", str(tmp_path / "empty"), str(now)]) == verdict_output.EXIT_BAD_INPUT
    assert "holds no results files" in capsys.readouterr().err


def test_pytest_args_after_the_double_dash_pass_through():
    own, passed = regress.split_pytest_args(["--preset", "ci", "--", "--inject-slowdown", "IntegratedGradients=2"])
    assert own == ["--preset", "ci"] and passed == ["--inject-slowdown", "IntegratedGradients=2"]


# --- end to end ---------------------------------------------------------------------------

TINY = """
name = "regress-tiny"
[timing]
min_rounds = 12
max_rounds = 30
max_time_s = 0.1
warmup_rounds = 1
threads = 1
[fidelity]
metrics = ["completeness"]
[[sweep]]
workload = "digits_cnn"
method = ["Saliency", "DeepLift", "IntegratedGradients"]
batch_size = [4]
[sweep.knobs]
n_steps = [8]
"""


def test_end_to_end_injected_slowdown_fails_and_a_run_against_itself_passes(tmp_path, capsys):
    preset = tmp_path / "tiny.toml"
    preset.write_text(TINY)
    baseline = tmp_path / "baselines" / "tiny"
    # one process and a wide factor: this checks the plumbing; bench/regress_proof.py measures the rates
    common = ["--preset", str(preset), "--baseline", str(baseline), "--results-dir", str(tmp_path / "runs")]
    common += ["--time-factor", "1.6", "--processes", "1"]
    assert regress.main([*common, "--update-baseline"]) == verdict_output.EXIT_OK
    (recorded_file,) = baseline.glob("*.json")
    recorded = recorded_file.read_bytes()

    slowed = regress.main([*common, "--", "-q", "--inject-slowdown", "IntegratedGradients=3"])
    out = capsys.readouterr().out
    assert slowed == verdict_output.EXIT_REGRESSED, out
    assert "REGRESSION in 1 cells: digits_cnn-IntegratedGradients-cpu-b4" in out

    # The same rounds on both sides: no regression, whatever the machine's load (deterministic).
    itself = regress.main(["--compare", str(baseline), str(baseline), "--time-factor", "1.6"])
    assert itself == verdict_output.EXIT_OK, capsys.readouterr().out
    # An identical rerun's verdict depends on this machine's noise (bench/regress_proof.py measures
    # the false-alarm rate); here only that it runs, gives a verdict and leaves the baseline alone.
    rerun = regress.main([*common, "--", "-q"])
    assert rerun in (verdict_output.EXIT_OK, verdict_output.EXIT_REGRESSED), capsys.readouterr().out
    assert [p.read_bytes() for p in baseline.glob("*.json")] == [recorded]  # never replaced unless asked
