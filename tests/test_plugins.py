"""attrib_core.workloads.plugins: references, preset tables, and the contract checked before
anything runs, each broken rule with an error naming the preset key and the fix."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from attrib_core.methods import get_method
from attrib_core.run import NotApplicable, RunConfig, prepare
from attrib_core.sweep import PresetError, load_preset
from attrib_core.workloads import WORKLOADS, Workload, load_workload, observed_spec, workload_spec
from attrib_core.workloads.applicability import applies_to, unsupported_reason
from attrib_core.workloads.catalog import check_workloads, resolve_reference
from attrib_core.workloads.plugins import ENTRY_POINT_GROUP, WorkloadContractError, parse_reference

pytestmark = pytest.mark.usefixtures("one_thread")

# A tiny classifier (4 features -> 3 classes) and one factory per broken rule of the contract.
PLUGIN = textwrap.dedent(
    """
    from pathlib import Path
    import torch
    from torch import nn

    Path(__file__).with_suffix(".imported").write_text("imported")  # tells the tests it was imported


    class Net(nn.Module):
        def __init__(self, out_shape=None):
            super().__init__()
            torch.manual_seed(0)
            self.hidden = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
            self.out = nn.Linear(8, 3)
            self.out_shape = out_shape

        def forward(self, x):
            y = self.out(self.hidden(x))
            return y.reshape(len(x), *self.out_shape) if self.out_shape else y


    def good(n=6, **changes):
        made = {
            "model": Net(),
            "inputs": torch.linspace(-1, 1, n * 4).reshape(n, 4),
            "targets": torch.arange(n) % 3,
            "baseline": torch.zeros(1, 4),
            "layer": "hidden",
            "weights": "trained:test",
        }
        made.update(changes)
        return made


    def as_workload():
        from attrib_core.workloads import Workload
        made = good()
        return Workload(
            name="ignored", model=made["model"], inputs=made["inputs"], targets=made["targets"],
            baseline=made["baseline"], background=made["baseline"], feature_mask=torch.arange(4)[None],
            layer_name="hidden", neuron=(0,), output_name="out", weights="trained:test", description="as a Workload",
        )

    def wrong_type():
        return [Net()]

    def output_not_logits():
        return good(model=Net(out_shape=(3, 1)))

    def targets_out_of_range():
        return good(targets=torch.tensor([0, 1, 2, 3, 0, 7]))

    def missing_layer():
        return good(layer="hiden")

    def baseline_mismatch():
        return good(baseline=torch.zeros(1, 5))

    def non_finite_inputs():
        inputs = torch.zeros(6, 4)
        inputs[2, 1] = float("nan")
        return good(inputs=inputs)

    def lacks_targets():
        made = good()
        del made["targets"]
        return made

    def raises(message="no data here"):
        raise FileNotFoundError(message)

    def tokens():
        emb = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 2))
        return {"model": emb, "inputs": torch.tensor([[1, 2, 3], [4, 5, 6]]), "targets": torch.tensor([0, 1]),
                "baseline": torch.zeros(1, 3, dtype=torch.long), "layer": "0"}
    """
)


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    (tmp_path / "my_plugin.py").write_text(PLUGIN)
    return tmp_path


def declare(plugin_dir: Path, factory: str, key: str, **declared) -> str:
    """Register `my_plugin.py:<factory>` as it would come from a preset in plugin_dir."""
    origin = f"[workloads.{key}] in {plugin_dir / 'p.toml'}"
    resolve_reference(f"my_plugin.py:{factory}", key=key, base_dir=plugin_dir, origin=origin, declared=declared)
    return origin


# --- references -----------------------------------------------------------------------------


def test_references_parse_into_their_kinds(tmp_path):
    assert parse_reference("torchvision:resnet50").kind == "torchvision"
    ref = parse_reference("sub/file.py:make", tmp_path)
    assert (ref.kind, ref.target, ref.attr) == ("file", str((tmp_path / "sub/file.py").resolve()), "make")
    assert parse_reference("pkg.mod:make").describe() == {"kind": "module", "target": "pkg.mod", "attr": "make"}
    assert parse_reference("not a module:make") is None
    assert parse_reference("no_such_entry_point") is None


def test_unknown_names_list_the_forms_a_workload_can_take():
    with pytest.raises(KeyError, match=r"unknown workload 'mnist'; known: digits_cnn, .*'path/to/file.py:factory'"):
        workload_spec("mnist")


# --- the contract, one broken rule at a time ------------------------------------------------


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        ("nope", r"has no factory 'nope'; functions defined there: .*good"),
        ("wrong_type", r"the factory returned a list; it must return an attrib_core.workloads.Workload or a mapping"),
        ("output_not_logits", r"output for a batch of 2 is \(2, 3, 1\); it must be \(batch, classes\) logits"),
        ("targets_out_of_range", r"targets \[3, 7\] are out of range; the model has 3 outputs: use 0..2"),
        ("missing_layer", r"layer 'hiden' does not exist in the model .*did you mean 'hidden'"),
        ("baseline_mismatch", r"baseline has shape \(1, 5\) but the inputs' examples are \(4,\); return baseline"),
        ("non_finite_inputs", r"inputs contain NaN or Inf \(examples \[2\]\); clean or impute them"),
        ("lacks_targets", r"the factory's mapping lacks 'targets'; required: model, inputs, targets, baseline"),
        ("raises", r"factory 'my_plugin.py:raises' raised FileNotFoundError: no data here"),
    ],
)
def test_each_broken_rule_names_the_preset_key_and_the_fix(plugin_dir, factory, match):
    origin = declare(plugin_dir, factory, f"broken_{factory}")
    with pytest.raises(WorkloadContractError, match=match) as caught:
        load_workload(f"broken_{factory}")
    assert str(caught.value).startswith(origin)


def test_a_missing_file_and_an_unimportable_module_are_named(tmp_path):
    resolve_reference("gone.py:make", key="gone_file", base_dir=tmp_path, origin="[workloads.gone_file]")
    with pytest.raises(WorkloadContractError, match=r"gone_file\]: factory file '.*gone.py' does not exist"):
        load_workload("gone_file")
    resolve_reference("no_such_package_xyz.models:make", key="gone_module", origin="[workloads.gone_module]")
    with pytest.raises(WorkloadContractError, match=r"module 'no_such_package_xyz.models' does not import"):
        load_workload("gone_module")
    (tmp_path / "broken.py").write_text("def make(:\n")
    resolve_reference("broken.py:make", key="broken_syntax", base_dir=tmp_path, origin="[workloads.broken_syntax]")
    with pytest.raises(WorkloadContractError, match=r"broken.py' does not import: SyntaxError"):
        load_workload("broken_syntax")


def test_a_good_mapping_becomes_a_workload_with_defaults_filled_in(plugin_dir):
    declare(plugin_dir, "good", "good_mapping")
    w = load_workload("good_mapping")
    assert w.name == "good_mapping" and w.weights == "trained:test"
    assert torch.equal(w.background, w.baseline)  # background defaults to the baseline
    assert torch.equal(w.feature_mask, torch.arange(4)[None])  # one feature per input element
    assert w.neuron == (0,) and w.output_name == ""  # neuron: channel 0 of the layer's output
    assert not w.model.training


def test_a_workload_object_is_accepted_and_renamed_to_its_key(plugin_dir):
    declare(plugin_dir, "as_workload", "as_object")
    w = load_workload("as_object")
    assert isinstance(w, Workload) and w.name == "as_object" and w.output_name == "out"


def test_the_preset_overrides_the_factorys_layer(plugin_dir):
    declare(plugin_dir, "good", "layer_override", layer="hidden.0")
    w = load_workload("layer_override")
    assert w.layer_name == "hidden.0" and w.neuron == (0,)
    declare(plugin_dir, "good", "layer_override_bad", layer="hidden.5")
    with pytest.raises(WorkloadContractError, match=r"layer 'hidden.5' does not exist"):
        load_workload("layer_override_bad")


def test_redeclaring_a_key_with_other_args_builds_a_new_workload(plugin_dir):
    origin = str(plugin_dir / "p.toml")
    resolve_reference("my_plugin.py:good", key="resized", base_dir=plugin_dir, origin=origin, args={"n": 3})
    assert len(load_workload("resized").inputs) == 3
    same = resolve_reference("my_plugin.py:good", key="resized", base_dir=plugin_dir, origin=origin, args={"n": 3})
    assert same is WORKLOADS.get("resized")  # the same definition reuses the spec (and its build)
    resolve_reference("my_plugin.py:good", key="resized", base_dir=plugin_dir, origin=origin, args={"n": 5})
    assert len(load_workload("resized").inputs) == 5


def test_a_plugin_cannot_take_a_builtin_name(plugin_dir):
    with pytest.raises(ValueError, match=r"'digits_cnn' is a built-in workload; give the plug-in another name"):
        resolve_reference("my_plugin.py:good", key="digits_cnn", base_dir=plugin_dir)


# --- static metadata, and the run checking it -------------------------------------------------


def test_validating_a_preset_imports_and_builds_nothing(plugin_dir):
    preset = plugin_dir / "mine.toml"
    preset.write_text(
        textwrap.dedent(
            """
            [workloads.lazy]
            factory = "my_plugin.py:good"
            input_kind = "features"
            layer = "hidden"
            method_defaults = { Occlusion = { sliding_window_shapes = [2], strides = [2] } }
            [[sweep]]
            workload = "lazy"
            method = "all"
            """
        )
    )
    cells = load_preset(preset).cells(("cpu",))
    assert not (plugin_dir / "my_plugin.imported").exists()
    methods = {c.method for c in cells}
    assert "LayerGradCam" not in methods and {"Saliency", "LayerIntegratedGradients"} <= methods
    occlusion = next(c for c in cells if c.method == "Occlusion")
    assert occlusion.knobs["sliding_window_shapes"] == (2,)  # the declared default is in the cell
    check_workloads(["lazy"])  # what the bench suite does when the run starts
    assert (plugin_dir / "my_plugin.imported").exists()


def test_undeclared_traits_rule_nothing_out_and_the_run_decides(plugin_dir):
    declare(plugin_dir, "good", "undeclared")
    static = WORKLOADS.get("undeclared")
    assert applies_to(get_method("LayerGradCam"), static)  # unknown: listed for "all"
    assert not applies_to(get_method("LayerGradCam"), observed_spec("undeclared"))
    with pytest.raises(NotApplicable, match=r"LayerGradCam needs a convolutional layer; workload 'undeclared'"):
        prepare(RunConfig("LayerGradCam", "undeclared"))


def test_a_plugin_that_declares_wrongly_is_caught_when_the_cell_runs(plugin_dir):
    declare(plugin_dir, "good", "liar", input_kind="features", layer="hidden", spatial_layer=True)
    assert applies_to(get_method("LayerGradCam"), WORKLOADS.get("liar"))  # it says its layer is spatial
    with pytest.raises(NotApplicable, match=r"LayerGradCam needs a convolutional layer"):
        prepare(RunConfig("LayerGradCam", "liar"))


def test_declared_input_kind_must_match_the_inputs(plugin_dir):
    declare(plugin_dir, "good", "not_tokens", input_kind="tokens")
    with pytest.raises(WorkloadContractError, match=r"input_kind is declared 'tokens' but inputs are torch.float32"):
        load_workload("not_tokens")


def test_token_inputs_allow_embedding_layer_and_perturbation_methods_only(plugin_dir):
    declare(plugin_dir, "tokens", "token_model", input_kind="tokens", layer="0")
    static = WORKLOADS.get("token_model")
    assert applies_to(get_method("LayerIntegratedGradients"), static)
    assert applies_to(get_method("FeatureAblation"), static)
    reason = unsupported_reason(get_method("Saliency"), static)
    assert "takes integer token ids" in reason and "LayerIntegratedGradients" in reason
    assert observed_spec("token_model").traits.input_kind == "tokens"
    result = prepare(RunConfig("LayerIntegratedGradients", "token_model", batch_size=2, knobs={"n_steps": 4}))()
    assert result.attributions.shape == (2, 3, 4)  # (batch, tokens, embedding)


def test_method_defaults_from_the_factory_must_be_declared(plugin_dir):
    (plugin_dir / "defaults.py").write_text(
        PLUGIN + "\ndef with_defaults():\n    return good(method_defaults={'Occlusion': {'strides': (2,)}})\n"
    )
    resolve_reference("defaults.py:with_defaults", key="undeclared_defaults", base_dir=plugin_dir, origin="[x]")
    with pytest.raises(WorkloadContractError, match=r"declare them as method_defaults in the preset's workload table"):
        load_workload("undeclared_defaults")


# --- module and entry-point references ------------------------------------------------------


def test_module_and_entry_point_references(plugin_dir, monkeypatch):
    (plugin_dir / "my_plugin_pkg_xyz.py").write_text(PLUGIN)
    dist = plugin_dir / "my_plugin_dist-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin-dist\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nmy_ep_model = my_plugin_pkg_xyz:good\n")
    monkeypatch.syspath_prepend(str(plugin_dir))
    assert load_workload("my_plugin_pkg_xyz:good").layer_name == "hidden"
    assert parse_reference("my_ep_model").kind == "entry_point"
    assert load_workload("my_ep_model").weights == "trained:test"
    with pytest.raises(KeyError, match=rf"entry points in {ENTRY_POINT_GROUP}: my_ep_model"):
        workload_spec("not_installed")


# --- preset tables ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "match"),
    [
        ("[workloads.x]\nargs = {}\n", r"\[workloads.x\] needs factory = "),
        ("[workloads.x]\nfactory = 'f.py:m'\nlayers = 'a'\n", r"unknown key 'layers' in \[workloads.x\]; valid: "),
        ("[workloads.x]\nfactory = 'f.py:m'\ninput_kind = 'text'\n", r"input_kind 'text' is not valid; valid: image"),
        ("[workloads.x]\nfactory = 'f.py:m'\nmethod_defaults = {IGG = {}}\n", r"unknown method 'IGG'"),
        ("[workloads.digits_cnn]\nfactory = 'f.py:m'\n", r"'digits_cnn' is a built-in workload"),
        ("[workloads.x]\nfactory = 'torchvision:resnet19'\n", r"unknown torchvision classification model 'resnet19'"),
    ],
)
def test_bad_workload_tables_name_the_file_and_the_key(tmp_path, table, match):
    path = tmp_path / "bad.toml"
    path.write_text(table + "[[sweep]]\nworkload = 'digits_cnn'\nmethod = 'Saliency'\n")
    with pytest.raises(PresetError, match=match) as caught:
        load_preset(path)
    assert str(path) in str(caught.value)
