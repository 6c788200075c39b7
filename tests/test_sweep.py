"""Presets: expansion into cells, stable keys, and errors that name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from attrib_core.run import RunConfig
from attrib_core.sweep import PRESET_DIR, PresetError, cell_key, load_preset, preset_names


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mine.toml"
    path.write_text(text)
    return path


def test_bundled_presets_load_and_have_cells():
    assert {"smoke", "standard", "full"} <= set(preset_names(PRESET_DIR))
    smoke = load_preset("smoke", PRESET_DIR)
    assert len(smoke.cells(("cpu",))) > 0
    assert load_preset("full", PRESET_DIR).cells(("cpu",)) == []  # CUDA only
    assert len(load_preset("full", PRESET_DIR).cells(("cuda",))) > 0


def test_smoke_runs_every_method_at_least_once():
    from tests.torch_fixtures import TENSOR_METHODS

    methods = {c.method for c in load_preset("smoke", PRESET_DIR).cells(("cpu",))}
    assert methods == set(TENSOR_METHODS)  # the LLM wrappers need a causal LM: the llm preset runs them


def test_standard_includes_the_tutorial_settings():
    keys = {cell_key(c) for c in load_preset("standard", PRESET_DIR).cells(("cpu",))}
    assert "resnet18-IntegratedGradients-cpu-b1-fp32-contiguous-method=gausslegendre-n_steps=200" in keys
    assert any("Occlusion" in k and "sliding_window_shapes=3x15x15-strides=3x8x8" in k for k in keys)
    assert any(k.startswith("resnet18-LayerGradCam-cpu-b1-") for k in keys)


def test_group_expands_to_the_product_and_knobs_go_to_methods_that_take_them(tmp_path):
    preset = load_preset(
        write(
            tmp_path,
            """
[[sweep]]
workload = "digits_cnn"
method = ["IntegratedGradients", "Saliency"]
device = ["cpu", "cuda"]
batch_size = [1, 4]
[sweep.knobs]
n_steps = [4, 8, 16]
""",
        )
    )
    cells = preset.cells(("cpu",))
    assert len(cells) == 2 * (3 + 1)  # batch sizes x (3 IG step counts + 1 Saliency)
    assert {c.knobs.get("n_steps") for c in cells if c.method == "IntegratedGradients"} == {4, 8, 16}
    assert all("n_steps" not in c.knobs for c in cells if c.method == "Saliency")
    assert len(preset.cells(("cpu", "cuda"))) == 16
    assert preset.devices_requested() == {"cpu", "cuda"}


def test_keys_are_stable_and_defaults_spelled_out_or_not_give_one_cell(tmp_path):
    preset = load_preset(
        write(
            tmp_path,
            """
[[sweep]]
workload = "digits_cnn"
method = "IntegratedGradients"
[sweep.knobs]
n_steps = [50]

[[sweep]]
workload = "digits_cnn"
method = "IntegratedGradients"
[sweep.knobs]
method = ["gausslegendre"]
""",
        )
    )
    cells = preset.cells(("cpu",))
    assert len(cells) == 1
    assert cell_key(cells[0]) == "digits_cnn-IntegratedGradients-cpu-b1-fp32-contiguous-method=gausslegendre-n_steps=50"


def test_workload_method_defaults_resolve_into_the_key():
    config = RunConfig("Occlusion", "digits_cnn", knobs={"sliding_window_shapes": (1, 2, 2), "strides": (1, 1, 1)})
    assert cell_key(config).endswith("sliding_window_shapes=1x2x2-strides=1x1x1")


def test_method_all_skips_methods_that_do_not_apply(tmp_path):
    preset = load_preset(write(tmp_path, '[[sweep]]\nworkload = "tabular_mlp"\nmethod = "all"\n'))
    methods = {c.method for c in preset.cells(("cpu",))}
    assert "LayerGradCam" not in methods
    assert "KernelShap" in methods


SALIENCY = "[[sweep]]\nworkload = 'digits_cnn'\nmethod = 'Saliency'\n"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[[sweep]]\nworkload = 'digits_cnn'\nmethod = 'IGG'\n", r"unknown method 'IGG'; valid: all, Integrated"),
        ("[[sweep]]\nworkload = 'mnist'\nmethod = 'Saliency'\n", r"unknown workload 'mnist'; known: digits_cnn"),
        ("[[sweep]]\nworkload = 'digits_cnn'\nmethod = 'Saliency'\ndevice = ['tpu']\n", r"unknown device 'tpu'"),
        ("[[sweep]]\nworkload = 'digits_cnn'\nmethod = 'Saliency'\nbatch = [1]\n", r"unknown key 'batch' in"),
        ("[[sweep]]\nworkload = 'digits_cnn'\nmethod = 'Saliency'\nbatch_size = [0]\n", r"batch_size 0 must be"),
        ("[timing]\nrounds = 3\n[[sweep]]\nworkload = 'digits_cnn'\nmethod = 'Saliency'\n", r"unknown key 'rounds'"),
        ("[[sweep]]\nworkload = 'digits_cnn'\nmethod = 'Saliency'\n[sweep.knobs]\nn_steps = [4]\n",
         r"unknown knob 'n_steps' for Saliency; valid knobs: abs"),
        ("[[sweep]]\nworkload = 'digits_cnn'\nmethod = 'IntegratedGradients'\n[sweep.knobs]\nn_steps = [0]\n",
         r"n_steps=0 is not valid"),
        ("[[sweep]]\nworkload = 'digits_cnn'\nmethod = 'IntegratedGradients'\n[sweep.knobs]\nn_steps = 4\n",
         r"knob 'n_steps' must be a list of choices"),
        ("[fidelity]\nmetrics = ['accuracy']\n[[sweep]]\nworkload = 'digits_cnn'\nmethod = 'Saliency'\n",
         r"unknown fidelity metric 'accuracy'"),
        ("[timing]\nmax_time_s = '1'\n" + SALIENCY, r"\[timing\] max_time_s = '1' must be a number > 0"),
        ("[timing]\nmin_rounds = 2.5\n" + SALIENCY, r"min_rounds = 2.5 must be an integer >= 1"),
        ("[timing]\nthreads = true\n" + SALIENCY, r"threads = True must be an integer >= 1"),
        ("[timing]\nmin_rounds = 9\nmax_rounds = 3\n" + SALIENCY, r"max_rounds = 3 is below min_rounds"),
        ("timing = 3\n" + SALIENCY, r"timing must be a table"),
        ("seed = -1\n" + SALIENCY, r"seed = -1 must be an integer >= 0"),
        ("[fidelity]\nmetrics = 'deletion'\n" + SALIENCY, r"metrics = 'deletion' must be a list"),
        ("[isolation]\nenabled = 'yes'\n" + SALIENCY, r"enabled = 'yes' must be true or false"),
        ("[isolation]\ncell_timeout_s = 0\n" + SALIENCY, r"cell_timeout_s = 0 must be a number > 0"),
        ("[isolation]\nmemory = 4\n" + SALIENCY, r"unknown key 'memory' in \[isolation\]"),
        ("name = 'x'\n", r"needs at least one \[\[sweep\]\] group"),
        ("name = '../evil'\n" + SALIENCY, r"the preset's name '../evil', from name, cannot be part of a file name"),
        ("name = 'my preset'\n" + SALIENCY, r"'my preset', from name, cannot be part of a file name; allowed: ASCII"),
        ("[[sweep]\n", r"not valid TOML"),
    ],
)  # fmt: skip
def test_bad_presets_name_the_file_and_the_bad_key(tmp_path, text, match):
    path = write(tmp_path, text)
    with pytest.raises(PresetError, match=match) as caught:
        load_preset(path)
    assert str(path) in str(caught.value)


def test_unknown_preset_name_lists_the_known_ones():
    with pytest.raises(PresetError, match=r"unknown preset 'smok'; known: .*smoke"):
        load_preset("smok", PRESET_DIR)


def test_a_preset_name_cannot_reach_outside_the_preset_folder():
    with pytest.raises(PresetError, match=r"'../presets/smoke' is neither a .toml file nor a name"):
        load_preset("../presets/smoke", PRESET_DIR)  # would be PRESET_DIR/../presets/smoke.toml, which exists


def test_a_preset_named_by_its_file_needs_a_file_name_that_can_name_results(tmp_path):
    path = tmp_path / "my preset.toml"
    path.write_text(SALIENCY)
    with pytest.raises(PresetError, match=r"'my preset', from the file name \(no `name = ...` in it\)"):
        load_preset(path)
    path.write_text("name = 'mine'\n" + SALIENCY)
    assert load_preset(path).name == "mine"


def test_validating_presets_builds_and_trains_nothing():
    """Cells come from static metadata: with every built-in's factory replaced by one that
    fails, the bundled presets still load and expand (and resolve the same knobs)."""
    import dataclasses

    from attrib_core.workloads import WORKLOADS

    def fail() -> None:
        raise AssertionError("a workload was built while validating a preset")

    originals = [spec for spec in WORKLOADS if spec.source == "builtin"]
    try:
        for spec in originals:
            WORKLOADS.replace(spec.name, dataclasses.replace(spec, build=fail))
        keys = {cell_key(c) for name in ("smoke", "standard") for c in load_preset(name, PRESET_DIR).cells(("cpu",))}
    finally:
        for spec in originals:
            WORKLOADS.replace(spec.name, spec)
    occlusion = "digits_cnn-Occlusion-cpu-b4-fp32-contiguous-perturbations_per_eval=1"
    assert f"{occlusion}-sliding_window_shapes=1x2x2-strides=1x1x1" in keys  # the workload's declared default
