"""The benchmark suite end to end, on a tiny preset in a subprocess: results file, failed
cells recorded (not dropped), companion maps, and bad presets refused before anything runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from attrib_core.analysis.results import load_results

REPO = Path(__file__).resolve().parent.parent

TINY = """
name = "tiny"
[timing]
min_rounds = 3
max_rounds = 3
max_time_s = 0.01
threads = 1
[fidelity]
metrics = ["completeness", "deletion"]
[[sweep]]
workload = "digits_cnn"
method = ["Saliency", "IntegratedGradients"]
batch_size = [2]
[sweep.knobs]
n_steps = [4]
[[sweep]]
workload = "tabular_mlp"
method = "FeaturePermutation"
batch_size = [1]   # FeaturePermutation needs >= 2 rows: this cell fails, the sweep goes on
"""


def run_bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "bench", "-p", "no:cacheprovider", "-q", *args],
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
    assert files[0].name.startswith("testbox_") and files[0].name.endswith("_tiny.json")
    assert not list(out.glob("*.partial"))
    data = json.loads(files[0].read_text())
    meta = data["machine_info"]["attrib_bench"]
    assert meta["preset"] == "tiny" and len(meta["preset_sha256"]) == 64
    assert meta["environment"]["torch_version"]
    assert files[0].with_suffix(".maps.npz").is_file()


def test_failed_cell_is_recorded_and_the_sweep_goes_on(tiny_run):
    proc, out = tiny_run
    assert proc.returncode == 1  # pytest reports the failed cell
    df = load_results(sorted(out.glob("*.json")))
    assert len(df) == 3
    failed = df[df.status == "failed"]
    assert list(failed.method) == ["FeaturePermutation"]
    assert "batch_size=1 is not valid; needs >= 2" in failed.error.iloc[0]
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


# --- your own model: the example plug-in, and a zoo model with random weights ----------------


@pytest.fixture(scope="module")
def example_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("example") / "results"
    proc = run_bench(out, f"--preset={REPO / 'examples' / 'my_preset.toml'}", f"--results-dir={out}")
    return proc, out


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
    assert gradcam.status == "not_applicable" and "is not an image model" in gradcam.error
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
    from bench.cells import RANDOM_WEIGHTS, meaningful_fidelity

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
