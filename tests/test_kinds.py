"""Models of every input and output kind a user brings (examples/kinds), through the suite as a
user runs it: factories beside their helpers, defaults that follow from the input's shape,
constraints that give not_applicable with a reason, never a failed cell."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pandas as pd
import pytest
import torch

from attrib_core.analysis.results import load_results
from attrib_core.commands import cli
from attrib_core.methods import KnobError, get_method, shape_occlusion_window
from attrib_core.workloads.plugins import default_feature_mask
from attrib_core.workloads.traits import input_kind_of
from tests import REPO
from tests.torch_fixtures import TENSOR_METHODS

KINDS = REPO / "examples" / "kinds"


@pytest.mark.parametrize(
    ("shape", "kind", "window", "stride", "groups"),
    [
        ((13,), "features", (1,), (1,), 13),
        ((2, 64), "series", (2, 4), (2, 2), 16),
        ((3, 224, 224), "image", (3, 16, 16), (3, 8, 8), 14 * 14),
        ((3, 16, 16), "image", (3, 1, 1), (3, 1, 1), 256),
        ((1, 64, 64, 64), "volume", (1, 8, 8, 8), (1, 4, 4, 4), 8**3),
    ],
)
def test_defaults_follow_from_the_input_kind_and_shape(shape, kind, window, stride, groups):
    inputs = torch.zeros(2, *shape)
    assert input_kind_of(inputs) == kind
    assert shape_occlusion_window(shape) == {"sliding_window_shapes": window, "strides": stride}
    mask = default_feature_mask(inputs)
    assert mask.shape[0] == 1 and mask.unique().numel() == groups
    if len(shape) > 1:
        assert mask.shape[1] == 1  # the channels share a group


def test_a_window_of_the_wrong_rank_names_the_input_shape_and_the_default():
    spec = get_method("Occlusion")
    with pytest.raises(KnobError, match=r"has 1 entries, but one example has shape \(2, 64\).*\(2, 4\)"):
        spec.concrete_knobs({"sliding_window_shapes": (1,), "strides": (1,)}, (2, 64))


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, preset_text: str, *args: str) -> tuple[int, pd.DataFrame]:
    folder = tmp_path / "mine"
    shutil.copytree(KINDS, folder)
    (folder / "kinds.toml").write_text(preset_text)
    monkeypatch.chdir(folder)
    code = cli.main(["bench", "--preset", "kinds.toml", "-q", *args])
    written = sorted((folder / "results").glob("*_kinds.json"))
    df = load_results(written)
    records = [b["extra_info"] for path in written for b in json.loads(path.read_text())["benchmarks"]]
    return code, df.assign(record=df.cell_key.map({r["cell_key"]: r for r in records}))


QUICK = """name = "kinds"
[timing]
min_rounds = 1
max_rounds = 1
max_time_s = 0.01
threads = 1
[fidelity]
metrics = ["completeness", "infidelity"]
"""


def test_series_volume_regression_and_labels_run_their_shape_defaults(tmp_path, monkeypatch):
    workloads = ("series", "volume", "regression", "binary", "multilabel")
    preset = QUICK + "".join(f'[workloads.{w}]\nfactory = "{w}.py:make"\n' for w in workloads)
    preset += f"""[[sweep]]
workload = {list(workloads)}
method = ["Occlusion", "FeatureAblation", "LayerGradCam", "FeaturePermutation", "DeepLiftShap"]
batch_size = [1]
[[sweep]]
workload = "regression"
method = "Saliency"
batch_size = [8]
[sweep.knobs]
abs = [false]
"""
    code, df = _run(tmp_path, monkeypatch, preset)
    assert code == 0 and "failed" not in set(df.status)
    ok = set(zip(df[df.status == "ok"].workload, df[df.status == "ok"].method, strict=True))
    assert {(w, "Occlusion") for w in workloads} <= ok and {(w, "FeatureAblation") for w in workloads} <= ok
    assert {("series", "LayerGradCam"), ("volume", "LayerGradCam")} <= ok  # Conv1d and Conv3d maps
    skipped = df[df.status == "not_applicable"].set_index(["workload", "method"]).error
    assert "needs batch_size >= 2" in skipped[("series", "FeaturePermutation")]
    assert "needs a background of >= 2 examples" in skipped[("volume", "DeepLiftShap")]
    assert "has no spatial input" in skipped[("regression", "LayerGradCam")]
    # a gradient map explains a regression output's change under small noise: its fitted scale is
    # near 1 (the MLP is linear between ReLU kinks), not negative, so it does not score as the zero map
    saliency = df[(df.workload == "regression") & (df.method == "Saliency")].iloc[0]
    scales = torch.tensor(saliency.record["fidelity"]["infidelity"]["scale_per_example"])
    assert scales.median() == pytest.approx(1.0, abs=0.1)
    assert (
        saliency.fid_infidelity < df[(df.workload == "regression") & (df.method == "Occlusion")].iloc[0].fid_infidelity
    )


@pytest.mark.slow
def test_every_method_on_every_kind_at_batch_1_and_8_fails_no_cell(tmp_path, monkeypatch):
    preset = (KINDS / "kinds.toml").read_text()
    code, df = _run(tmp_path, monkeypatch, preset)
    assert code == 0 and set(df.status) == {"ok", "not_applicable"}
    assert df[df.status == "not_applicable"].error.str.contains("NotApplicable: ").all()
    kinds = len(tomllib.loads(preset)["workloads"])  # every method but the LLM wrappers (causal LMs only)
    assert kinds == 9 and len(df) == kinds * 2 * len(TENSOR_METHODS)


def test_random_weights_skip_spends_no_time_on_fidelity_that_would_be_set_aside(tmp_path, monkeypatch):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "untrained.py").write_text(
        "import torch\nfrom torch import nn\n\n\ndef make():\n    torch.manual_seed(0)\n"
        "    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))\n"
        "    return {'model': model, 'inputs': torch.randn(4, 6), 'targets': torch.tensor([0, 1, 2, 0]),\n"
        "            'baseline': torch.zeros(1, 6), 'weights': 'random'}\n"
    )
    preset = QUICK.replace('metrics = ["completeness", "infidelity"]', 'metrics = ["completeness", "reference_error"]')
    for choice in ("measure", "skip"):
        (folder / "p.toml").write_text(
            preset
            + f'options = {{ random_weights = "{choice}" }}\n[workloads.untrained]\nfactory = "untrained.py:make"\n'
            '[[sweep]]\nworkload = "untrained"\nmethod = "IntegratedGradients"\nbatch_size = [2]\n'
        )
        monkeypatch.chdir(folder)
        assert cli.main(["bench", "--preset", "p.toml", "-q", "--results-dir", choice]) == 0
        (written,) = (folder / choice).glob("*.json")
        (record,) = [b["extra_info"] for b in json.loads(written.read_text())["benchmarks"]]
        assert {r["status"] for r in record["fidelity"].values()} == {"not_meaningful"}
        computed = {name: r.get("value") is not None for name, r in record["fidelity"].items()}
        assert computed == {"completeness": choice == "measure", "reference_error": choice == "measure"}
