"""Plug-in workloads: the user's own model, named in a preset, checked against the contract.

A preset names a workload by reference:

- `"torchvision:<model>"`: a torchvision classification model (see `zoo`);
- `"hf:<model id or folder>"`: a Hugging Face model from local files (see `hf`);
- `"path/to/file.py:factory"`: a function in a Python file (relative to the preset's folder);
- `"package.module:factory"`: a function in an importable module;
- `"<name>"`: an entry point of that name in the group `attrib_bench.workloads`.

or declares one in a table, with arguments and static metadata:

    [workloads.mine]
    factory = "examples/my_workload.py:make_workload"
    args = { n_examples = 8 }
    layer = "features.2"          # optional: static metadata, so validating builds nothing
    input_kind = "image"          # "image", "features" or "tokens"

Resolving a reference registers a spec and imports nothing: the factory runs when the run
starts (`load_workload`), and what it returns is checked (`check_contract`) before the
first cell, each problem with an error naming the preset key and what to fix.

The factory returns a `Workload`, or a mapping with the keys of `MAPPING_KEYS`: model,
inputs, targets and baseline are required; layer, neuron, feature_mask, background,
method_defaults, weights, output, description, info and additional_forward_args are optional.
A model of several inputs takes a tuple of them (and tuples of baselines, backgrounds and
masks), which are packed into one tensor for the harness (`workloads.packed`).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attrib_core.methods import METHODS
from attrib_core.workloads.base import WORKLOADS, Workload, WorkloadSpec, patch_mask
from attrib_core.workloads.packed import InputLayout, PackedForward
from attrib_core.workloads.traits import INPUT_KINDS, OUTPUT_KINDS, Traits

ENTRY_POINT_GROUP = "attrib_bench.workloads"
TABLE_KEYS = {
    "factory": "the factory reference (required)",
    "args": "keyword arguments for the factory",
    "description": "one line for reports",
    "input_kind": f"one of {', '.join(INPUT_KINDS)}",
    "layer": "dotted path of the layer for layer / neuron methods (overrides the factory's)",
    "neuron": "index into the layer's output, no batch dimension",
    "spatial_layer": "true if the layer's output is (N, C, H, W)",
    "method_defaults": "method -> knob defaults, e.g. Occlusion = {sliding_window_shapes = [3, 8, 8]}",
    "not_applicable": "method -> why it does not apply to this model",
    "output_kind": f"what the outputs are: one of {', '.join(OUTPUT_KINDS)}",
}
REQUIRED_KEYS = ("model", "inputs", "targets", "baseline")
OPTIONAL_KEYS = (
    "layer",
    "neuron",
    "feature_mask",
    "background",
    "method_defaults",
    "weights",
    "output",
    "output_kind",
    "description",
    "info",
    "additional_forward_args",
)
MAPPING_KEYS = REQUIRED_KEYS + OPTIONAL_KEYS
REFERENCE_FORMS = (
    "'torchvision:<model>', 'hf:<model id or folder>', 'path/to/file.py:factory', 'package.module:factory' "
    "or an entry point name"
)
_MODULE_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


class WorkloadContractError(ValueError):
    """A plug-in workload that cannot be used; the message names its preset key and the fix."""


@dataclass(frozen=True)
class Reference:
    """A parsed factory reference. kind: torchvision, file, module or entry_point."""

    text: str
    kind: str
    target: str  # model name, absolute file path, module path or entry point name
    attr: str = ""  # the factory's name in the file or module

    def describe(self) -> dict[str, str]:
        return {"kind": self.kind, "target": self.target, "attr": self.attr}


def parse_reference(text: str, base_dir: Path | None = None) -> Reference | None:
    """The reference `text` stands for, or None if it is none of the forms (no import happens)."""
    if text.startswith("torchvision:"):
        return Reference(text, "torchvision", text.removeprefix("torchvision:"))
    if text.startswith("hf:"):
        return Reference(text, "huggingface", text.removeprefix("hf:"))
    if ":" in text:
        left, attr = text.rsplit(":", 1)
        if left.endswith(".py"):
            path = Path(left).expanduser()
            if not path.is_absolute():
                path = (base_dir or Path.cwd()) / path
            return Reference(text, "file", str(path.resolve()), attr)
        if _MODULE_PATH.match(left):
            return Reference(text, "module", left, attr)
        return None
    if entry_points(group=ENTRY_POINT_GROUP, name=text):
        return Reference(text, "entry_point", text)
    return None


def unknown_workload_message(name: str) -> str:
    builtin = ", ".join(spec.name for spec in WORKLOADS if spec.source == "builtin")
    eps = sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    installed = f"; entry points in {ENTRY_POINT_GROUP}: {', '.join(eps)}" if eps else ""
    return f"unknown workload {name!r}; known: {builtin}, or {REFERENCE_FORMS}{installed}"


def declared_traits(declared: Mapping[str, Any], defaults: Traits | None = None) -> Traits:
    """Traits from a preset table; anything it leaves out stays unknown (None) or the default's."""
    base = defaults or Traits(input_kind=None, layer_name=None, spatial_layer=None)
    kind = declared.get("input_kind", base.input_kind)
    if "spatial_layer" in declared:
        spatial = declared["spatial_layer"]
    elif kind is not None and kind != "image":
        spatial = False  # only an image model's layer has an (N, C, H, W) map
    elif "layer" in declared and defaults is not None:
        spatial = None  # another layer than the default one: the run observes it
    else:
        spatial = base.spatial_layer
    return Traits(
        input_kind=kind,
        layer_name=declared.get("layer", base.layer_name),
        spatial_layer=spatial,
        rule_limits=base.rule_limits,
        not_applicable={**base.not_applicable, **declared.get("not_applicable", {})},
        generates_text=base.generates_text,
    )


def check_declared(declared: Mapping[str, Any], origin: str) -> None:
    kind = declared.get("input_kind")
    if kind is not None and kind not in INPUT_KINDS:
        raise ValueError(f"{origin}: input_kind {kind!r} is not valid; valid: {', '.join(INPUT_KINDS)}")
    output_kind = declared.get("output_kind")
    if output_kind is not None and output_kind not in OUTPUT_KINDS:
        raise ValueError(f"{origin}: output_kind {output_kind!r} is not valid; valid: {', '.join(OUTPUT_KINDS)}")
    for name in ("method_defaults", "not_applicable"):
        if not isinstance(declared.get(name, {}), Mapping):
            raise ValueError(f"{origin}: {name} must be a table (method -> ...), got {declared[name]!r}")
    for name in (*declared.get("method_defaults", {}), *declared.get("not_applicable", {})):
        if name not in METHODS:
            raise ValueError(f"{origin}: unknown method {name!r}; valid: {', '.join(METHODS.names())}")


def plugin_spec(key: str, ref: Reference, args: dict, declared: dict, origin: str, definition: dict) -> WorkloadSpec:
    def build() -> Workload:
        factory = load_factory(ref, origin)
        try:
            made = factory(**args)
        except Exception as exc:
            raise WorkloadContractError(
                f"{origin}: factory {ref.text!r} raised {type(exc).__name__}: {exc} (called with args {args})"
            ) from exc
        workload = check_contract(to_workload(made, key, origin, declared), origin, declared)
        return _with_static_defaults(workload, spec, origin)

    spec = WorkloadSpec(
        name=key,
        description=declared.get("description", f"plug-in {ref.text}"),
        build=build,
        traits=declared_traits(declared),
        method_defaults=knob_tuples(declared.get("method_defaults", {})),
        source="plugin",
        definition=definition,
        origin=origin,
    )
    return spec


def _with_static_defaults(workload: Workload, spec: WorkloadSpec, origin: str) -> Workload:
    """Method defaults resolve into cell keys before any factory runs, so they are static: a
    factory may return them only if the preset declares the same ones."""
    returned = knob_tuples(workload.method_defaults)
    if returned and returned != spec.method_defaults:
        _fail(
            origin,
            f"the factory returned method_defaults {returned} but the preset declares {dict(spec.method_defaults)}",
            "declare them as method_defaults in the preset's workload table (cell keys are resolved before the "
            "factory runs)",
        )
    return dataclasses.replace(workload, method_defaults=spec.method_defaults)


def knob_tuples(method_defaults: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """TOML has arrays, knobs have tuples."""
    return {
        method: {k: tuple(v) if isinstance(v, list) else v for k, v in knobs.items()}
        for method, knobs in method_defaults.items()
    }


# --- importing the factory ----------------------------------------------------------------


def load_factory(ref: Reference, origin: str) -> Callable[..., Any]:
    if ref.kind == "file":
        factory = _from_file(ref, origin)
    elif ref.kind == "module":
        try:
            module = importlib.import_module(ref.target)
        except Exception as exc:
            raise WorkloadContractError(
                f"{origin}: module {ref.target!r} does not import ({type(exc).__name__}: {exc}); is its package "
                "installed, or its folder on PYTHONPATH?"
            ) from exc
        factory = _attribute(module, ref, origin)
    else:
        (entry_point,) = entry_points(group=ENTRY_POINT_GROUP, name=ref.target)
        try:
            factory = entry_point.load()
        except Exception as exc:
            raise WorkloadContractError(
                f"{origin}: entry point {ref.target!r} ({entry_point.value}) does not load: {type(exc).__name__}: {exc}"
            ) from exc
    if not callable(factory):
        raise WorkloadContractError(f"{origin}: {ref.text!r} is a {type(factory).__name__}, not a callable factory")
    return factory


def _from_file(ref: Reference, origin: str) -> Any:
    path = Path(ref.target)
    if not path.is_file():
        raise WorkloadContractError(
            f"{origin}: factory file {str(path)!r} does not exist (a relative path is taken from the preset "
            "file's folder)"
        )
    name = f"attrib_bench_plugin_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    folder = str(path.resolve().parent)
    if folder not in sys.path:  # modules beside the factory import, as for a script run from its folder
        sys.path.insert(0, folder)
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise WorkloadContractError(
            f"{origin}: factory file {str(path)!r} does not import: {type(exc).__name__}: {exc}"
        ) from exc
    return _attribute(module, ref, origin)


def _attribute(module: Any, ref: Reference, origin: str) -> Any:
    if not hasattr(module, ref.attr):
        functions = sorted(n for n, v in vars(module).items() if inspect.isfunction(v) and not n.startswith("_"))
        raise WorkloadContractError(
            f"{origin}: {ref.target!r} has no factory {ref.attr!r}; functions defined there: "
            f"{', '.join(functions) or 'none'}"
        )
    return getattr(module, ref.attr)


# --- the contract -------------------------------------------------------------------------


def to_workload(made: Any, key: str, origin: str, declared: Mapping[str, Any]) -> Workload:
    """A Workload from what the factory returned (a Workload or a mapping), named `key`, with
    the preset's declared layer / neuron applied."""
    if isinstance(made, Workload):
        workload = dataclasses.replace(made, name=key)
    elif isinstance(made, Mapping):
        workload = _from_mapping(made, key, origin)
    else:
        raise WorkloadContractError(
            f"{origin}: the factory returned a {type(made).__name__}; it must return an "
            f"attrib_core.workloads.Workload or a mapping with keys {', '.join(REQUIRED_KEYS)} "
            f"(optional: {', '.join(OPTIONAL_KEYS)})"
        )
    overrides: dict[str, Any] = {}
    if "layer" in declared:
        overrides["layer_name"] = declared["layer"]
        overrides["neuron"] = tuple(declared["neuron"]) if "neuron" in declared else None
    elif "neuron" in declared:
        overrides["neuron"] = tuple(declared["neuron"])
    if "description" in declared:
        overrides["description"] = declared["description"]
    if "output_kind" in declared:
        overrides["output_kind"] = declared["output_kind"]
    workload = dataclasses.replace(workload, **overrides)
    workload.model.eval()
    return workload


def _from_mapping(made: Mapping[str, Any], key: str, origin: str) -> Workload:
    unknown = sorted(set(made) - set(MAPPING_KEYS))
    if unknown:
        raise WorkloadContractError(
            f"{origin}: the factory returned unknown key {unknown[0]!r}; valid keys: {', '.join(MAPPING_KEYS)}"
        )
    missing = [k for k in REQUIRED_KEYS if k not in made]
    if missing:
        raise WorkloadContractError(
            f"{origin}: the factory's mapping lacks {', '.join(map(repr, missing))}; required: "
            f"{', '.join(REQUIRED_KEYS)}"
        )
    if not isinstance(made["targets"], torch.Tensor):
        raise WorkloadContractError(f"{origin}: targets must be a torch.Tensor, got {type(made['targets']).__name__}")
    layout, packed = _packed_inputs(made, origin)
    inputs = packed["inputs"]
    model = made["model"]
    extra = made.get("additional_forward_args", ())
    extra = tuple(extra) if isinstance(extra, (tuple, list)) else (extra,)
    if layout is not None and isinstance(model, nn.Module):
        model = PackedForward(model, layout, extra, len(inputs))
    return Workload(
        name=key,
        model=model,
        inputs=inputs,
        targets=made["targets"],
        baseline=packed["baseline"],
        background=packed.get("background", packed["baseline"]),
        feature_mask=packed["feature_mask"],
        layer_name=made.get("layer", ""),
        neuron=tuple(made["neuron"]) if "neuron" in made else None,
        output_name=made.get("output", ""),
        weights=str(made.get("weights", "unspecified")),
        description=made.get("description", f"plug-in {key}"),
        method_defaults=made.get("method_defaults", {}),
        info=made.get("info", {}),
        output_kind=made.get("output_kind", "logits"),
    )


def _tensors(value: Any, name: str, origin: str) -> tuple[torch.Tensor, ...]:
    items = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    for item in items:
        if not isinstance(item, torch.Tensor):
            raise WorkloadContractError(
                f"{origin}: {name} must be a torch.Tensor or a tuple of them, got {type(item).__name__}"
            )
    if not items:
        raise WorkloadContractError(f"{origin}: {name} is an empty tuple; give one tensor per model input")
    return items


def _packed_inputs(made: Mapping[str, Any], origin: str) -> tuple[InputLayout | None, dict[str, torch.Tensor]]:
    """The mapping's inputs, baseline, background and feature mask as single tensors, packed when
    the model takes several inputs or additional arguments (workloads.packed); None: plain."""
    inputs = _tensors(made["inputs"], "inputs", origin)
    several = len(inputs) > 1
    if not several and "additional_forward_args" not in made:
        found = {"inputs": inputs[0], "baseline": _tensors(made["baseline"], "baseline", origin)[0]}
        if "background" in made:
            found["background"] = _tensors(made["background"], "background", origin)[0]
        mask = made.get("feature_mask")
        found["feature_mask"] = default_feature_mask(inputs[0]) if mask is None else mask
        return None, found
    for x in inputs:
        if x.dim() < 2 or len(x) != len(inputs[0]):
            _fail(
                origin,
                f"inputs have shapes {[tuple(t.shape) for t in inputs]}",
                "give each input as a batch (N, ...) with the same N",
            )
        if several and not torch.is_floating_point(x):
            _fail(
                origin,
                f"one of several inputs is {x.dtype}",
                "several inputs must all be floating point; pass integer ids as the only input, with masks "
                "and other integers as additional_forward_args",
            )
    layout = InputLayout(tuple(tuple(x.shape[1:]) for x in inputs))
    found = {"inputs": layout.pack(inputs)}
    for name in ("baseline", "background"):
        if name in made:
            parts = _tensors(made[name], name, origin)
            _check_each(origin, name, parts, layout, exact=1 if name == "baseline" else None)
            found[name] = layout.pack(parts)
    found["feature_mask"] = _packed_mask(made.get("feature_mask"), inputs, layout, origin)
    return layout, found


def _check_each(
    origin: str, name: str, parts: tuple[torch.Tensor, ...], layout: InputLayout, exact: int | None
) -> None:
    shapes = [tuple(t.shape[1:]) for t in parts]
    counts = {len(t) for t in parts}
    if len(parts) != len(layout.shapes) or shapes != list(layout.shapes) or len(counts) != 1:
        expected = ", ".join(f"({exact or 'K'}, {_dims(shape)})" for shape in layout.shapes)
        _fail(
            origin,
            f"{name} has shapes {[tuple(t.shape) for t in parts]}",
            f"give one tensor per input, with the same number of rows: {expected}",
        )


def _packed_mask(mask: Any, inputs: tuple[torch.Tensor, ...], layout: InputLayout, origin: str) -> torch.Tensor:
    """Feature masks per input, packed; the defaults are numbered on from one input to the next,
    so no group spans two inputs (a mask the factory gives keeps its own ids)."""
    if mask is None:
        masks, offset = [], 0
        for x in inputs:
            own = default_feature_mask(x)
            masks.append(own + offset)
            offset += int(own.max()) + 1
    else:
        masks = list(_tensors(mask, "feature_mask", origin))
        if len(masks) != len(inputs):
            _fail(origin, f"feature_mask has {len(masks)} tensors for {len(inputs)} inputs", "give one per input")
    for part, shape in zip(masks, layout.shapes, strict=True):
        _check_feature_mask(origin, part, shape)
    return layout.pack([torch.broadcast_to(m, (1, *shape)) for m, shape in zip(masks, layout.shapes, strict=True)])


def default_feature_mask(inputs: torch.Tensor) -> torch.Tensor:
    """The groups perturbation methods switch off together, shared by the channels: segments of
    1/16 of a series, square patches of about 1/14 of an image's side, cubes of 1/8 of a
    volume's side; features and token ids one per element. The same shares as Occlusion's
    default window (methods.shape_occlusion_window), without the overlap."""
    if not torch.is_floating_point(inputs) or inputs.dim() not in (3, 4, 5):
        return torch.arange(inputs[0].numel()).reshape(1, *inputs.shape[1:])
    if inputs.dim() == 4:
        height, width = inputs.shape[2:]
        return patch_mask(height, width, max(1, min(height, width) // 14))
    spatial = tuple(inputs.shape[2:])
    side = max(1, min(spatial) // (16 if len(spatial) == 1 else 8))
    cells = [torch.arange(d) // side for d in spatial]
    counts = [(d + side - 1) // side for d in spatial]
    ids = torch.zeros(spatial, dtype=torch.long)
    for axis, cell in enumerate(cells):
        shape = [1] * len(spatial)
        shape[axis] = len(cell)
        ids = ids * counts[axis] + cell.reshape(shape)
    return ids[None, None]


def _fail(origin: str, problem: str, fix: str) -> None:
    raise WorkloadContractError(f"{origin}: {problem}; {fix}")


def check_contract(workload: Workload, origin: str, declared: Mapping[str, Any] | None = None) -> Workload:
    """Raise WorkloadContractError for the first broken rule of the contract; return the workload
    with its neuron filled in (channel 0 at the centre of the layer's output) if it had none."""
    declared = declared or {}
    if not isinstance(workload.model, nn.Module):
        _fail(origin, f"model is a {type(workload.model).__name__}", "return a torch.nn.Module")
    inputs, targets = workload.inputs, workload.targets
    if inputs.dim() < 2 or len(inputs) == 0:
        _fail(origin, f"inputs have shape {tuple(inputs.shape)}", "return a batch (N, ...) of at least one example")
    example = tuple(inputs.shape[1:])
    floating = torch.is_floating_point(inputs)
    if floating and not torch.isfinite(inputs).all():
        bad = (~torch.isfinite(inputs)).flatten(1).any(1).nonzero().flatten().tolist()
        _fail(origin, f"inputs contain NaN or Inf (examples {bad[:5]})", "clean or impute them in the factory")
    if workload.output_kind not in OUTPUT_KINDS:
        _fail(origin, f"output_kind is {workload.output_kind!r}", f"use one of {', '.join(OUTPUT_KINDS)}")
    declared_kind = declared.get("input_kind")
    if (declared_kind == "tokens") == floating and declared_kind is not None:
        _fail(origin, f"input_kind is declared {declared_kind!r} but inputs are {inputs.dtype}", "fix input_kind")
    if targets.shape != (len(inputs),) or torch.is_floating_point(targets):
        _fail(
            origin,
            f"targets have shape {tuple(targets.shape)} and dtype {targets.dtype}",
            f"return one integer class index per example, shape ({len(inputs)},)",
        )
    _check_reference_shape(origin, "baseline", workload.baseline, example, floating, exact=1)
    _check_reference_shape(origin, "background", workload.background, example, floating, exact=None)
    _check_feature_mask(origin, workload.feature_mask, example)
    with torch.no_grad():
        try:
            out = workload.model(inputs[:2])
        except Exception as exc:
            raise WorkloadContractError(
                f"{origin}: the model fails on inputs[:2] ({type(exc).__name__}: {exc}); make model(inputs) work"
            ) from exc
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != len(inputs[:2]):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        _fail(
            origin,
            f"the model's output for a batch of {len(inputs[:2])} is {shape}",
            "it must be (batch, classes) logits: one row per example, one column per class",
        )
    n_classes = out.shape[1]
    if targets.min() < 0 or targets.max() >= n_classes:
        bad = targets[(targets < 0) | (targets >= n_classes)].unique().tolist()
        _fail(
            origin,
            f"targets {bad[:5]} are out of range",
            f"the model has {n_classes} outputs: use 0..{n_classes - 1} (the output each example's map explains)",
        )
    if n_classes == 1 and workload.output_kind == "logits":
        _fail(
            origin,
            "the model has one output but output_kind is 'logits' (softmax over one output is 1 for every input)",
            "declare output_kind: 'single_logit' (a binary logit) or 'regression' (a continuous value)",
        )
    if workload.output_name:
        _submodule(workload.model, workload.output_name, origin, "output")
    neuron = workload.neuron
    if workload.layer_name:
        layer = _submodule(workload.model, workload.layer_name, origin, "layer")
        shape = _output_shape(workload.model, layer, inputs[:1])
        if shape is None:
            _fail(origin, f"layer {workload.layer_name!r} does not return a tensor", "choose a layer that does")
        if neuron is None:
            neuron = (0, *(size // 2 for size in shape[2:]))
        if len(neuron) != len(shape) - 1 or not all(0 <= i < s for i, s in zip(neuron, shape[1:], strict=False)):
            _fail(origin, f"neuron {neuron} does not index the layer's output {tuple(shape[1:])}", "fix neuron")
    return dataclasses.replace(workload, neuron=neuron or ())


def _check_reference_shape(
    origin: str, name: str, tensor: torch.Tensor, example: tuple[int, ...], floating: bool, exact: int | None
) -> None:
    expected = f"({exact if exact else 'K'}, {', '.join(map(str, example))})"
    if tuple(tensor.shape[1:]) != example or (exact is not None and tensor.shape[0] != exact) or len(tensor) == 0:
        _fail(
            origin,
            f"{name} has shape {tuple(tensor.shape)} but the inputs' examples are {example}",
            f"return {name} of shape {expected}",
        )
    if torch.is_floating_point(tensor) != floating:
        _fail(origin, f"{name} is {tensor.dtype} and inputs are not", f"give {name} the inputs' dtype")
    if floating and not torch.isfinite(tensor).all():
        _fail(origin, f"{name} contains NaN or Inf", f"return a finite {name}")


def _check_feature_mask(origin: str, mask: torch.Tensor, example: tuple[int, ...]) -> None:
    fits = mask.dim() == len(example) + 1 and mask.shape[0] == 1
    fits = fits and all(m in (1, e) for m, e in zip(mask.shape[1:], example, strict=True))
    if not fits or torch.is_floating_point(mask) or mask.min() < 0:
        _fail(
            origin,
            f"feature_mask has shape {tuple(mask.shape)} and dtype {mask.dtype}",
            f"return non-negative integer group ids, shape (1, ...) broadcastable to (1, {_dims(example)})",
        )


def _dims(shape: tuple[int, ...]) -> str:
    return ", ".join(map(str, shape))


def _submodule(model: nn.Module, path: str, origin: str, what: str) -> nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError:
        names = [name for name, _ in model.named_modules() if name]
        close = difflib.get_close_matches(path, names, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(map(repr, close))}?" if close else "see model.named_modules() for the paths"
        top = ", ".join(name for name, _ in model.named_children())
        raise WorkloadContractError(
            f"{origin}: {what} {path!r} does not exist in the model (top-level modules: {top}); {hint}"
        ) from None


def _output_shape(model: nn.Module, layer: nn.Module, example: torch.Tensor) -> tuple[int, ...] | None:
    seen: list[Any] = []
    handle = layer.register_forward_hook(lambda module, args, out: seen.append(out))
    try:
        with torch.no_grad():
            model(example)
    finally:
        handle.remove()
    return tuple(seen[0].shape) if seen and isinstance(seen[0], torch.Tensor) else None
