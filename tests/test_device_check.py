"""attrib_core/device_check and `attrib-bench device-check`: the dry run on the CPU end to end
(journal lines, budget cut-off, summary, the out-of-memory stand-in recorded and the next step
run, exit codes), the frontier search, and the GPU slice's preset and verdict read without a GPU."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from attrib_core.commands import cli
from attrib_core.device_check import plan
from attrib_core.device_check.frontier import FrontierTarget, search_frontier
from attrib_core.device_check.oom import DRY_RUN_LABEL, DryRunMemoryCapExceeded, is_out_of_memory
from attrib_core.device_check.probes import cuda_tests, run_logged
from attrib_core.device_check.steps import Budget, Step, StepJournal, StepSkipped, run_steps
from attrib_core.device_check.suite_slice import RESNET18_OOM, gpu_slice, read_slice
from attrib_core.device_check.summary import exit_status, render, summarise
from attrib_core.methods import METHODS
from attrib_core.sweep import load_preset
from attrib_core.workloads import workload_spec
from attrib_core.workloads.applicability import applies_to

MiB, GiB = 2**20, 2**30


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def taking(clock: FakeClock, seconds: float, result: dict | None = None):
    def run(allowance_s: float) -> dict:
        clock.now += seconds
        return dict(result or {"took_s": seconds})

    return run


def failing(allowance_s: float) -> dict:
    raise RuntimeError("boom")


# --- steps, budget, journal -------------------------------------------------------------


def test_a_step_that_cannot_fit_the_budget_left_is_skipped_and_so_is_every_later_one(tmp_path):
    clock = FakeClock()
    journal = StepJournal(tmp_path / "journal.jsonl")
    steps = [
        Step("first", 4, taking(clock, 7)),
        Step("too_long", 5, taking(clock, 1)),  # 3 s left of 10
        Step("small", 1, taking(clock, 1)),  # would fit, but the check stops starting steps
    ]
    lines = run_steps(steps, Budget(10, clock), journal, on_line=lambda line: None)
    assert [line["status"] for line in lines] == ["ok", "skipped", "skipped"]
    assert lines[0]["result"] == {"took_s": 7} and lines[0]["wall_s"] == 7
    assert lines[1]["reason"] == "needs about 5 s and 3 s of the budget of 10 s were left"
    assert journal.read() == lines  # one line per step, written as it went
    assert exit_status(lines) == 0  # skipped is reported, not failed
    assert summarise(lines)["skipped"].keys() == {"too_long", "small"}


def test_a_failed_step_is_recorded_and_the_next_one_runs(tmp_path):
    clock = FakeClock()
    journal = StepJournal(tmp_path / "journal.jsonl")
    steps = [Step("breaks", 1, failing), Step("next", 1, taking(clock, 1))]
    lines = run_steps(steps, Budget(10, clock), journal, on_line=lambda line: None)
    assert [line["status"] for line in lines] == ["failed", "ok"]
    assert lines[0]["error"] == "RuntimeError: boom" and not lines[0]["as_expected"]
    assert exit_status(lines) == 1


def test_the_deliberate_oom_passes_only_when_it_fails_with_an_out_of_memory(tmp_path):
    clock = FakeClock()
    budget = Budget(10, clock)

    def over_the_cap(allowance_s: float) -> dict:
        raise DryRunMemoryCapExceeded(f"{DRY_RUN_LABEL}: peak 9 B is over the imposed cap of 8 B")

    def one_step(run, name: str) -> list[dict]:
        step = Step("oom", 1, run, expected_error=is_out_of_memory)
        return run_steps([step], budget, StepJournal(tmp_path / name), lambda line: None)

    failed = one_step(over_the_cap, "a")
    assert failed[0]["status"] == "failed" and failed[0]["as_expected"] and exit_status(failed) == 0
    assert "expected: DryRunMemoryCapExceeded" in render(summarise(failed), failed)
    other = one_step(failing, "b")  # it failed, but not for want of memory
    assert other[0]["status"] == "failed" and not other[0]["as_expected"] and exit_status(other) == 1
    ran = one_step(taking(clock, 0), "c")
    assert ran[0]["status"] == "ok" and not ran[0]["as_expected"] and exit_status(ran) == 1
    assert "NOT as expected: it did not fail" in render(summarise(ran), ran)


def test_problems_fail_a_step_and_keep_its_findings(tmp_path):
    clock = FakeClock()
    step = Step("slice", 1, taking(clock, 0, {"counts": {"ok": 3}, "problems": ["a", "b"]}))
    (line,) = run_steps([step], Budget(10, clock), StepJournal(tmp_path / "j"), print)
    assert line["status"] == "failed" and line["error"] == "a; b" and line["result"] == {"counts": {"ok": 3}}


def test_a_step_with_nothing_to_do_here_is_skipped_with_its_reason(tmp_path):
    def nothing(allowance_s: float) -> dict:
        raise StepSkipped("no LLM method")

    (line,) = run_steps([Step("llm", 1, nothing)], Budget(10, FakeClock()), StepJournal(tmp_path / "j"), print)
    assert line["status"] == "skipped" and line["reason"] == "no LLM method" and exit_status([line]) == 0


def test_a_line_cut_short_by_a_kill_is_left_out(tmp_path):
    journal = StepJournal(tmp_path / "journal.jsonl")
    journal.append({"step": "a", "status": "ok"})
    with open(journal.path, "a") as handle:
        handle.write('{"step": "b", "sta')
    assert journal.read() == [{"step": "a", "status": "ok"}]


@pytest.mark.parametrize("bad", [0, -1.0])
def test_a_budget_must_be_positive(bad):
    with pytest.raises(ValueError, match=rf"budget {bad!r} s is not valid"):
        Budget(bad)


def test_a_command_past_its_time_is_interrupted_and_reported_as_cut(tmp_path):
    log = tmp_path / "slow.log"
    command = [sys.executable, "-c", "import time\nprint('started', flush=True)\ntime.sleep(60)"]
    assert run_logged(command, log, timeout_s=1.0) is None
    assert log.read_text().startswith("started")


def test_the_cuda_tests_step_names_a_missing_test_path(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"\['no/such/tests'\] not found; run the check from the repository's root"
    ):
        cuda_tests(["no/such/tests"], tmp_path / "log", 10)


# --- the frontier -----------------------------------------------------------------------


def test_ig_frontier_on_the_cpu_doubles_to_the_cap_with_tunes_prediction_beside_it():
    target = FrontierTarget("IntegratedGradients", "digits_cnn", "internal_batch_size", 4, 256, 4, {"n_steps": 64})
    result = search_frontier(target, "cpu", budget_bytes=1 * MiB, allowance_s=600, cap_bytes=4 * MiB, repeats=1)
    points = result["points"]
    assert [p["internal_batch_size"] for p in points] == [4, 8, 16, 32, 64, 128, 256]
    assert [p["chunk_rows"] for p in points] == [4, 8, 16, 32, 64, 128, 256]
    assert {p["total_rows"] for p in points} == {4 * 64}
    assert [p["status"] for p in points] == ["ok"] * 6 + ["over_dry_run_cap"]
    assert DRY_RUN_LABEL in points[-1]["error"] and result["stopped_by"] == "over_dry_run_cap"
    measured = [p["peak_bytes"] for p in points[:-1]]
    assert result["peaks_non_decreasing"] and measured == sorted(measured) and len(set(measured)) == len(measured)
    predicted = [p["predicted_bytes"] for p in points]
    assert predicted == sorted(predicted)  # tune's line rises with the chunk
    assert all(p["predicted_bytes"] >= p["peak_bytes"] for p in points[:-1])  # and is on the safe side here
    assert result["largest_fitting"]["internal_batch_size"] == 32
    assert result["largest_fitting"]["peak_bytes"] <= 1 * MiB < points[4]["peak_bytes"]


def test_a_frontier_stops_when_the_next_setting_would_not_fit_the_time_allowed():
    target = FrontierTarget("GradientShap", "digits_cnn", "n_samples", 4, 64, 4)
    result = search_frontier(target, "cpu", budget_bytes=1 * MiB, allowance_s=0.0, repeats=1)
    assert result["stopped_by"] == "time" and len(result["points"]) == 1
    assert result["memory_model"] is not None  # fitted from the one point, as tune fits a knob that does not chunk


def test_a_setting_that_fails_otherwise_ends_the_frontier_as_a_problem_keeping_the_points():
    target = FrontierTarget(
        "Occlusion", "digits_cnn", "perturbations_per_eval", 1, 4, 4, {"sliding_window_shapes": (1, 9, 9)}
    )  # a window wider than the 8x8 digits: Captum refuses
    result = search_frontier(target, "cpu", budget_bytes=1 * MiB, allowance_s=600, repeats=1)
    assert [p["status"] for p in result["points"]] == ["failed"] and result["stopped_by"] == "failed"
    assert result["problems"][0].startswith("perturbations_per_eval=1: ")
    assert result["largest_fitting"] is None and result["memory_model"] is None


def test_frontier_values_must_be_a_range():
    with pytest.raises(ValueError, match="from 8 to 4 is not a range"):
        FrontierTarget("GradientShap", "digits_cnn", "n_samples", 8, 4, 4).values()


# --- the GPU slice, read without a GPU --------------------------------------------------


def test_the_gpu_slice_puts_an_out_of_memory_cell_first_then_the_slice_of_full(tmp_path):
    path = tmp_path / "slice.toml"
    path.write_text(gpu_slice(80 * GiB))
    cells = load_preset(path).cells(("cuda",))
    first = cells[0]
    assert (first.method, first.workload, first.batch_size) == ("IntegratedGradients", "resnet18", 16)
    assert first.knobs["n_steps"] * 16 * RESNET18_OOM.per_row_bytes >= 2 * 80 * GiB  # twice the device's memory
    resnet18 = workload_spec("resnet18")  # every method that applies to it (not the LLM wrappers)
    assert {c.method for c in cells} == {m.name for m in METHODS if applies_to(m, resnet18)}
    ig = {c.knobs["n_steps"] for c in cells[1:] if c.method == "IntegratedGradients"}
    assert {64, 256, 1024} <= ig
    assert max(c.batch_size for c in cells) == 256
    assert {c.precision for c in cells} == {"fp32", "bf16", "fp16"}


def test_oom_sizing_is_a_power_of_two_of_steps_past_twice_the_memory():
    assert RESNET18_OOM.n_steps(80 * GiB) == 512  # 2 x 80 GiB / 22.4 MB = 7670 rows -> 480 steps of 16
    assert RESNET18_OOM.n_steps(141 * GiB) == 1024


def record(key: str, status: str, error: str | None = None) -> dict:
    return {"extra_info": {"cell_key": key, "status": status, "error": error}}


def results(*records: dict) -> dict:
    return {
        "benchmarks": [r for r in records if r["extra_info"]["status"] == "ok"],
        "machine_info": {"attrib_bench": {"untimed": [r for r in records if r["extra_info"]["status"] != "ok"]}},
    }


def test_the_slice_verdict_wants_the_oom_cell_failed_and_the_cells_after_it_run():
    oom = record("oom", "failed", "first_call: OutOfMemoryError: CUDA out of memory")
    found = read_slice(results(oom, record("a", "ok"), record("b", "not_applicable")), ["oom", "a", "b"], True)
    assert found["problems"] == [] and found["deliberate_oom"]["cells_after_it_ok"] == 1
    assert found["counts"] == {"failed": 1, "ok": 1, "not_applicable": 1}
    survived = read_slice(results(record("oom", "ok"), record("a", "ok")), ["oom", "a"], True)
    assert survived["problems"] == ["the deliberate out-of-memory cell oom was 'ok', not failed with OutOfMemoryError"]
    stopped = read_slice(results(oom), ["oom", "a"], True)
    assert stopped["problems"] == ["no cell after the out-of-memory cell ran ok"]
    other = read_slice(results(record("a", "failed", "ValueError: x")), ["a"], False)
    assert other["problems"] == ["1 cell(s) failed: a"]


# --- the command, dry run end to end ----------------------------------------------------

FAST_STEPS = "timing,peak_memory,deliberate_oom,after_oom,frontier:GradientShap,frontier:LLM"


def run_dir(out: Path) -> Path:
    (folder,) = out.iterdir()
    return folder


def test_the_dry_run_journals_each_step_records_the_stand_in_oom_and_runs_on(tmp_path, capsys):
    out = tmp_path / "check"
    assert cli.main(["device-check", "--dry-run", "--out", str(out), "--budget-s", "120", "--only", FAST_STEPS]) == 0
    folder = run_dir(out)
    lines = [json.loads(text) for text in (folder / "journal.jsonl").read_text().splitlines()]
    assert lines[0]["header"]["mode"] == "dry run on the CPU (not a GPU result)"
    assert lines[0]["header"]["dry_run_cap_bytes"] == 4 * MiB
    steps = {line["step"]: line for line in lines[1:]}
    assert list(steps) == FAST_STEPS.split(",")
    oom = steps["deliberate_oom"]
    assert oom["status"] == "failed" and oom["as_expected"] and DRY_RUN_LABEL in oom["error"]
    assert "CUDA" not in oom["error"]  # never passes for a GPU out-of-memory
    assert steps["after_oom"]["status"] == "ok"
    assert steps["timing"]["result"]["device_clock"].startswith("dry-run stand-in")
    assert steps["peak_memory"]["result"]["peak_bytes"] == 8 * MiB  # exact on the CPU
    assert steps["frontier:GradientShap"]["result"]["stopped_by"] == "over_dry_run_cap"
    assert steps["frontier:LLM"]["status"] == "skipped"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["exit_status"] == 0 and summary["frontier"][0]["largest_fitting"] == 8
    text = (folder / "summary.md").read_text()
    assert "dry-run stand-in for out-of-memory" in text and "largest n_samples within the budget: 8" in text
    assert text in capsys.readouterr().out


def test_a_budget_too_small_for_the_first_step_skips_everything_and_says_so(tmp_path):
    out = tmp_path / "check"
    code = cli.main(["device-check", "--dry-run", "--out", str(out), "--budget-s", "5", "--only", "cuda_tests,timing"])
    assert code == 0
    summary = json.loads((run_dir(out) / "summary.json").read_text())
    assert summary["steps"] == {"cuda_tests": "skipped", "timing": "skipped"}
    assert summary["skipped"]["cuda_tests"].startswith("needs about 60 s and")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dry-run", "--budget-s", "0"], "--budget-s 0.0 is not valid"),
        (["--dry-run", "--only", "nope"], "unknown step(s) ['nope']; valid: cuda_tests, timing"),
        (["--dry-run", "--memory-budget", "lots"], "memory budget 'lots' is not a size"),
        (["--device", "cpu"], "--device 'cpu' is not a CUDA device; valid: cuda, cuda:N (or --dry-run)"),
        (["--dry-cap", "1MiB"], "--dry-cap is for --dry-run only"),
    ],
)
def test_bad_input_exits_2_naming_it(tmp_path, capsys, args, message):
    if args == ["--dry-cap", "1MiB"] and not torch.cuda.is_available():
        args = [*args, "--device", "cuda"]
        message = "requested but CUDA is not available here"
    assert cli.main(["device-check", "--out", str(tmp_path / "o"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on machines without CUDA")
def test_without_cuda_the_check_refuses_and_points_to_the_dry_run(tmp_path, capsys):
    assert cli.main(["device-check", "--out", str(tmp_path / "o")]) == 2
    assert "(for the CPU stand-in run use --dry-run)" in capsys.readouterr().err


def test_the_gpu_plan_can_be_listed_without_a_gpu(capsys):
    assert cli.main(["device-check", "--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].split() == ["cuda_tests", "about", "45", "s"] and listed[5].startswith("suite_slice ")


def test_every_step_has_an_estimate_and_the_gpu_plan_fits_eight_minutes(tmp_path):
    settings = plan.Settings("cuda", tmp_path, plan.GPU_BUDGET_BYTES, None)
    assert sum(step.estimate_s for step in plan.steps(settings)) <= 480


@pytest.mark.slow
def test_the_whole_dry_run_with_the_cuda_tests_and_the_suite_slice(tmp_path):
    out = tmp_path / "check"
    assert cli.main(["device-check", "--dry-run", "--out", str(out), "--budget-s", "300"]) == 0
    summary = json.loads((run_dir(out) / "summary.json").read_text())
    assert summary["steps"]["cuda_tests"] == "ok" and summary["steps"]["suite_slice"] == "ok"
    lines = [json.loads(text) for text in (run_dir(out) / "journal.jsonl").read_text().splitlines()]
    sliced = next(line for line in lines if line.get("step") == "suite_slice")["result"]
    assert sliced["counts"] == {"ok": 8} and Path(sliced["results_file"]).exists()
    frontiers = [line["result"] for line in lines if line.get("step", "").startswith("frontier:") and "result" in line]
    assert len(frontiers) == 5 and all(f["peaks_non_decreasing"] for f in frontiers)


def test_summarise_rebuilds_the_summary_of_a_killed_run_from_its_journal(tmp_path, capsys):
    folder = tmp_path / "run"
    journal = StepJournal(folder / "journal.jsonl")
    journal.append({"header": {"mode": "GPU", "device_name": "H100", "steps": ["cuda_tests", "timing", "suite_slice"]}})
    journal.append({"step": "cuda_tests", "status": "ok", "as_expected": True, "wall_s": 30.0})
    journal.append({"step": "timing", "status": "ok", "as_expected": True, "wall_s": 2.0})
    assert cli.main(["device-check", "--summarise", str(folder)]) == 1  # stopped before suite_slice
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["not_run"] == ["suite_slice"] and summary["steps"] == {"cuda_tests": "ok", "timing": "ok"}
    assert "not run (the check was stopped before them): suite_slice" in capsys.readouterr().out


def test_summarise_a_folder_without_a_journal_is_bad_input(tmp_path, capsys):
    assert cli.main(["device-check", "--summarise", str(tmp_path)]) == 2
    assert "no device-check journal there" in capsys.readouterr().err
