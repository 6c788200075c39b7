"""The benchmark suite end to end, on a tiny preset in a subprocess: results file, failed
cells recorded (not dropped), companion maps, and bad presets refused before anything runs."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from attrib_core import schema
from attrib_core.analysis.results import load_results
from attrib_core.suite import suite_command
from tests import QUICK_TIMING, REPO

TINY = f"""
name = "tiny"
{QUICK_TIMING}[fidelity]
metrics = ["completeness", "deletion"]
[[sweep]]
workload = "digits_cnn"
method = ["Saliency", "IntegratedGradients"]
batch_size = [2]
[sweep.knobs]
n_steps = [4]
[[sweep]]
workload = "tabular_mlp"
method = "Occlusion"
batch_size = [2]
[sweep.knobs]   # a window wider than the 30 features: Captum's call fails, the sweep goes on
sliding_window_shapes = [[40]]
strides = [[1]]
"""


def run_bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        suite_command("-q", *args),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("bench")
    preset = tmp_path / "tiny.toml"
    preset.write_text(TINY)
    out = tmp_path / "results"
    proc = run_bench(tmp_path, f"--preset={preset}", f"--results-dir={out}", "--machine-name=testbox")
    return proc, out


def test_a_run_writes_one_complete_results_file(tiny_run):
    proc, out = tiny_run
    files = sorted(out.glob("*.json"))
    assert len(files) == 1, proc.stdout + proc.stderr
    # pytest-benchmark's convention (a leading run counter) labels runs apart in its compare
    counter, machine, _stamp, commit, preset = files[0].stem.split("_")
    assert (counter, machine, preset) == ("0001", "testbox", "tiny")
    assert not list(out.glob("*.partial")) and not list(out.glob("*.journal.jsonl"))  # finished: journal gone
    data = json.loads(files[0].read_text())
    assert data["commit_info"]["id"].startswith(commit)  # the name's commit is the file's commit
    meta = data["machine_info"]["attrib_bench"]
    assert meta["preset"] == "tiny" and len(meta["preset_sha256"]) == 64 and meta["schema_version"] == 2
    assert meta["environment"]["torch_version"]
    assert meta["run"]["complete"] is True and meta["run"]["resumed"] == []
    for record in schema.records(data):  # pytest-benchmark conventions: groups, JSON-able params
        cell = record["extra_info"]["cell"]
        assert record["group"] == f"{cell['workload']}/{cell['method']}"
        assert record["params"] == {"cell_key": record["extra_info"]["cell_key"]}
        if record["extra_info"]["status"] == "ok":  # the limit's passes were timed before each round
            paired = record["extra_info"]["calibration"]["paired"]
            assert (
                paired["rounds"] == len(record["stats"]["data"])
                and paired["cell_median_s"] == record["stats"]["median"]
            )
            # two passes over the sweep (the default): the first pass's rounds, then a block of
            # ceil(3 / 2) rounds timed again after every cell's first pass
            timing = record["extra_info"]["timing"]  # min_rounds = max_rounds = 3: a fixed count
            assert timing["stopped_by"] == "max_rounds" and timing["rounds"] == 3
            blocks = record["extra_info"]["blocks"]
            assert [b["pass"] for b in blocks] == [1, 2]
            assert blocks[0]["samples_s"] == record["stats"]["data"] and len(blocks[1]["samples_s"]) == 2
    assert files[0].with_suffix(".maps.npz").is_file()


def test_failed_cell_is_recorded_and_the_sweep_goes_on(tiny_run):
    proc, out = tiny_run
    assert proc.returncode == 1  # pytest reports the failed cell
    df = load_results(sorted(out.glob("*.json")))
    assert len(df) == 3
    failed = df[df.status == "failed"]
    assert list(failed.method) == ["Occlusion"]
    assert "Sliding window dimensions (40,) cannot exceed" in failed.error.iloc[0]
    ok = df[df.status == "ok"]
    assert set(ok.method) == {"Saliency", "IntegratedGradients"}
    assert (ok.rounds == 3).all() and ok.median_s.gt(0).all() and ok.peak_bytes.gt(0).all()
    assert ok.samples_s.map(len).eq(3).all()  # raw per-round samples are kept
    ig = ok[ok.method == "IntegratedGradients"].iloc[0]
    assert (ig.passes_forward, ig.passes_backward) == (8, 8)  # batch 2 x 4 steps
    assert ig.fid_completeness_status == "ok" and ig.fid_completeness < 0.2
    assert "FAILED" in proc.stdout and "[1/3" in proc.stdout and "[3/3" in proc.stdout  # a line per cell


def test_unknown_preset_runs_nothing(tmp_path):
    proc = run_bench(tmp_path, "--preset=smok", f"--results-dir={tmp_path}")
    assert proc.returncode == 4  # pytest usage error
    assert "unknown preset 'smok'; known:" in proc.stderr
    assert not list(tmp_path.glob("*.json"))


def test_malformed_preset_names_file_and_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[[sweep]]\nworkload = 'digits_cnn'\nmethod = 'Saliency'\nbatch = [1]\n")
    proc = run_bench(tmp_path, f"--preset={bad}", f"--results-dir={tmp_path}")
    assert proc.returncode == 4
    assert str(bad) in proc.stderr and "unknown key 'batch'" in proc.stderr


# --- durability: journal, resume, isolation ----------------------------------------------


def journal_cells(path: Path) -> list[str]:
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [line["cell_key"] for line in lines if line["kind"] == "cell"]


def start_and_kill(preset: Path, out: Path, sig: int) -> Path:
    """Run the tiny preset with its second cell (IG) hanging; once the journal holds the first
    cell, send `sig`. Returns the journal left behind."""
    args = [f"--preset={preset}", f"--results-dir={out}", "--machine-name=testbox", "--inject-fault=Integrated=hang"]
    proc = subprocess.Popen(
        suite_command("-q", *args),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # as in a terminal: a job started in the background by a non-interactive shell (CI) inherits
        # SIGINT ignored, and Python then never turns Ctrl-C into KeyboardInterrupt
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 240
    journals: list[Path] = []
    while time.monotonic() < deadline:
        journals = list(out.glob("*.journal.jsonl")) if out.exists() else []
        if journals and len(journal_cells(journals[0])) >= 1:
            break
        time.sleep(0.2)
    time.sleep(2)  # into the hanging cell
    proc.send_signal(sig)
    try:
        proc.wait(timeout=45)
    except subprocess.TimeoutExpired:  # a busy machine can swallow one Ctrl-C: press it again, as a user would
        proc.send_signal(sig)
        proc.wait(timeout=90)
    assert journals and len(journal_cells(journals[0])) == 1, "the run never journalled its first cell"
    return journals[0]


@pytest.mark.slow
def test_a_killed_run_keeps_finished_cells_and_resumes(tmp_path):
    preset = tmp_path / "tiny.toml"
    preset.write_text(TINY)
    out = tmp_path / "results"
    start_and_kill(preset, out, signal.SIGKILL)
    assert not list(out.glob("*.json"))  # killed: no results file yet, only the journal

    resumed = run_bench(tmp_path, f"--results-dir={out}", "--resume")  # the preset comes from the journal
    assert "[2/2" in resumed.stdout and "[3/3" not in resumed.stdout, resumed.stdout + resumed.stderr  # 1 skipped
    files = sorted(out.glob("*.json"))
    assert len(files) == 1 and not list(out.glob("*.journal.jsonl"))
    data = json.loads(files[0].read_text())
    run = data["machine_info"]["attrib_bench"]["run"]
    assert run["complete"] is True and [r["cells_before"] for r in run["resumed"]] == [1]
    df = load_results(files)
    assert sorted(df.method) == ["IntegratedGradients", "Occlusion", "Saliency"]


@pytest.mark.slow
def test_ctrl_c_writes_what_was_measured_and_resume_refuses_a_changed_preset(tmp_path):
    preset = tmp_path / "tiny.toml"
    preset.write_text(TINY)
    out = tmp_path / "results"
    journal_file = start_and_kill(preset, out, signal.SIGINT)
    partial = load_results(sorted(out.glob("*.json")))  # Ctrl-C: a valid file of the finished cell
    assert list(partial.method) == ["Saliency"]
    preset.write_text(TINY.replace("max_rounds = 3", "max_rounds = 4"))
    proc = run_bench(tmp_path, f"--preset={preset}", f"--results-dir={out}", f"--resume={journal_file}")
    assert proc.returncode == 4 and "the preset changed" in proc.stderr
    assert len(journal_cells(journal_file)) == 1  # nothing appended


ISOLATED = """
name = "faults"
[timing]
min_rounds = 2
max_rounds = 2
max_time_s = 0.01
threads = 1
[fidelity]
metrics = ["completeness"]
[isolation]
enabled = true
cell_timeout_s = 60
cell_memory_gib = 2
[[sweep]]
workload = "digits_cnn"
method = ["Saliency", "InputXGradient", "GuidedBackprop", "DeepLift"]
batch_size = [1]
"""


@pytest.mark.slow
def test_isolation_records_a_hang_a_crash_and_a_memory_blowup_and_goes_on(tmp_path):
    preset = tmp_path / "faults.toml"
    preset.write_text(ISOLATED)
    out = tmp_path / "results"
    faults = ["--inject-fault=Saliency=hang", "--inject-fault=InputXGradient=abort", "--inject-fault=Guided=alloc"]
    # the limit must leave a healthy cell's process (python, torch, the model) time to start on a busy machine
    proc = run_bench(tmp_path, f"--preset={preset}", f"--results-dir={out}", "--cell-timeout-s=75", *faults)
    df = load_results(sorted(out.glob("*.json"))).set_index("method")
    assert "cut at the cell time limit of 75 s" in df.loc["Saliency", "error"], proc.stdout
    assert "signal SIGABRT" in df.loc["InputXGradient", "error"]
    assert "over the cell memory limit of 2 GiB" in df.loc["GuidedBackprop", "error"]
    assert df.loc["DeepLift", "status"] == "ok" and df.loc["DeepLift", "median_s"] > 0  # the sweep went on


# --- your own model: the example plug-in, and a zoo model with random weights ----------------


@pytest.fixture(scope="module")
def example_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("example") / "results"
    proc = run_bench(out, f"--preset={REPO / 'examples' / 'my_preset.toml'}", f"--results-dir={out}")
    return proc, out


@pytest.mark.slow
def test_the_example_plugin_runs_end_to_end(example_run):
    proc, out = example_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    df = load_results(sorted(out.glob("*.json")))
    assert set(df.workload) == {"wine_mlp"}
    assert (df.weights.dropna() == "trained:wine-mlp-h16-e200-s0").all()
    ok = df[df.status == "ok"]
    assert set(ok.method) == {"Saliency", "IntegratedGradients", "DeepLift", "FeatureAblation", "Occlusion",
                              "LayerIntegratedGradients"}  # fmt: skip
    features = ok[ok.method_kind == "feature"]  # deletion removes input features: layer maps have none
    assert features.fid_deletion_status.eq("ok").all() and features.fid_deletion.notna().all()
    gradcam = df[df.method == "LayerGradCam"].iloc[0]
    assert gradcam.status == "not_applicable" and "has no spatial input" in gradcam.error
    assert "not applicable wine_mlp-LayerGradCam" in proc.stdout


def test_a_broken_plugin_stops_the_run_before_the_first_cell(tmp_path):
    (tmp_path / "broken.py").write_text("def make():\n    return {'model': None}\n")
    preset = tmp_path / "broken.toml"
    preset.write_text("[workloads.mine]\nfactory = 'broken.py:make'\n[[sweep]]\nworkload = 'mine'\nmethod = 'Saliency'")
    proc = run_bench(tmp_path, f"--preset={preset}", f"--results-dir={tmp_path}")
    assert proc.returncode == 4  # usage error: nothing ran
    assert f"[workloads.mine] in {preset}: the factory's mapping lacks 'inputs', 'targets', 'baseline'" in proc.stderr
    assert not list(tmp_path.glob("*.json"))


def test_random_weights_keep_time_and_memory_but_not_fidelity(tmp_path):
    from attrib_core.suite.cells import RANDOM_WEIGHTS, meaningful_fidelity

    records = {"deletion": {"status": "ok", "value": 0.01, "per_example": [0.01], "reason": None, "time_s": 0.1}}
    assert meaningful_fidelity(records, "trained:abc") is records
    marked = meaningful_fidelity(records, "random")["deletion"]
    assert marked["status"] == "not_meaningful"
    assert marked["reason"] == RANDOM_WEIGHTS == "not meaningful: random weights"
    assert marked["value"] == 0.01  # kept in the record; the results table leaves it out:
    data = {"machine_info": {"attrib_bench": {"schema_version": 1}}, "benchmarks": [_record(marked)]}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    row = load_results([path]).iloc[0]
    assert row.fid_deletion_status == "not_meaningful" and row.fid_deletion is None
    assert row.median_s == 0.5 and row.peak_bytes == 1024


def _record(fidelity_record: dict) -> dict:
    cell = {"workload": "torchvision:resnet18", "method": "Saliency", "device": "cpu", "batch_size": 1,
            "precision": "fp32", "memory_format": "contiguous", "knobs": {}, "seed": 0}  # fmt: skip
    return {
        "name": "test_cell",
        "stats": {"median": 0.5, "rounds": 3, "data": [0.5, 0.5, 0.5]},
        "extra_info": {
            "cell_key": "k",
            "cell": cell,
            "status": "ok",
            "weights": "random",
            "memory": {"peak_bytes": 1024},
            "fidelity": {"deletion": fidelity_record},
        },
    }


def test_more_shards_than_cells_is_refused_before_anything_runs(tmp_path):
    preset = tmp_path / "tiny.toml"
    preset.write_text(TINY)
    proc = run_bench(tmp_path, f"--preset={preset}", f"--results-dir={tmp_path / 'out'}", "--shard=1/4")
    assert proc.returncode == 4  # pytest's usage error
    assert "--shard 1/4: preset 'tiny' has 3 cells here; N must be at most 3" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_second_run_on_this_machine_reuses_the_limits_search_and_pairs_afresh(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTRIB_BENCH_CACHE", str(tmp_path / "cache"))
    preset = tmp_path / "tiny.toml"
    preset.write_text(TINY.split('[[sweep]]\nworkload = "tabular_mlp"')[0])  # the digits cells only
    records = []
    for run in ("first", "second"):
        proc = run_bench(tmp_path, f"--preset={preset}", f"--results-dir={tmp_path / run}")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        (written,) = (tmp_path / run).glob("*.json")
        records.append(
            {r["extra_info"]["cell_key"]: r["extra_info"] for r in json.loads(written.read_text())["benchmarks"]}
        )
    assert list((tmp_path / "cache" / "limits").glob("*.json"))
    for key, second in records[1].items():
        first = records[0][key]
        assert "cached" not in first["calibration"] and "cached" in second["calibration"]
        assert second["calibration"]["best_batch_size"] == first["calibration"]["best_batch_size"]
        assert second["calibration"]["paired"]["rounds"] >= 1  # the passes were timed again beside the cell


def test_a_run_without_saving_still_shows_efficiency_and_its_self_check(tmp_path):
    preset = tmp_path / "tiny.toml"
    preset.write_text(TINY.split('[[sweep]]\nworkload = "tabular_mlp"')[0])
    proc = run_bench(tmp_path, f"--preset={preset}", f"--results-dir={tmp_path / 'results'}", "--no-save")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()
    assert "self-check of this run's figures:" in proc.stdout
    saliency = next(line for line in proc.stdout.splitlines() if line.startswith("digits_cnn-Saliency"))
    assert re.search(r"\d\.\d\d\s*$", saliency), saliency  # the efficiency column holds a number


WIDE_INTERVAL = """
name = "adaptive"
[timing]
min_rounds = 2
max_rounds = 40
max_time_s = 60
target_halfwidth = 1000.0
passes = 1
threads = 1
[fidelity]
metrics = ["completeness"]
[[sweep]]
workload = "digits_cnn"
method = "Saliency"
batch_size = [2]
"""


def test_rounds_stop_once_the_interval_is_as_narrow_as_the_preset_asks(tmp_path):
    """A target no interval misses: the cell stops at min_rounds, far below max_rounds and its budget."""
    preset = tmp_path / "adaptive.toml"
    preset.write_text(WIDE_INTERVAL)
    out = tmp_path / "results"
    proc = run_bench(tmp_path, f"--preset={preset}", f"--results-dir={out}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (record,) = schema.records(json.loads(next(out.glob("*.json")).read_text()))
    timing = record["extra_info"]["timing"]
    assert timing["stopped_by"] == "interval" and timing["target_halfwidth"] == 1000.0
    assert timing["rounds"] == 2 == len(record["stats"]["data"]) == record["stats"]["rounds"]
    assert 0 <= timing["halfwidth"] <= 1000.0
    assert record["extra_info"]["calibration"]["paired"]["rounds"] == 2
