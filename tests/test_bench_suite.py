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
