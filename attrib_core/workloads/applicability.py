"""Which methods apply to which workloads, and why not: a relation between the two registries,
kept apart from both, so the method registry needs no workload code and the workloads none of
the methods' rules. Works from a spec's traits, so validating a preset builds nothing;
prepare() asks again with the traits observed on the built model."""

from __future__ import annotations

from attrib_core.methods import MethodSpec
from attrib_core.workloads import WORKLOADS, WorkloadSpec


def unsupported_reason(method: MethodSpec, workload: WorkloadSpec) -> str | None:
    """Why `method` cannot run on `workload`, or None if it can."""
    traits, name = workload.traits, workload.name
    if method.name in traits.not_applicable:
        return f"{method.name} does not apply to workload {name!r}: {traits.not_applicable[method.name]}"
    if getattr(method, "needs_generator", False) and traits.generates_text is False:
        return (
            f"{method.name} explains the text a causal LM generates, and workload {name!r} is not a causal LM "
            "with a tokenizer (e.g. reviews_lm_64, or hf:<causal LM folder with its tokenizer>)"
        )
    if method.needs_layer and traits.layer_name == "":
        what = f"is a {method.kind} method" if method.kind != "feature" else "is built on a layer"
        return f"{method.name} {what} but workload {name!r} declares no layer"
    if method.needs_spatial_layer and traits.spatial_layer is False:
        what = (
            f": its layer {traits.layer_name!r} has no (N, C, ...) map of the input's rank (a ConvNd's output)"
            if traits.input_kind in ("series", "image", "volume")
            else f" has no spatial input (input kind {traits.input_kind!r}; GradCAM needs a series, image or "
            "volume model with a ConvNd layer, e.g. "
            + ", ".join(w.name for w in WORKLOADS if w.is_image and w.source == "builtin")
            + ", torchvision:<model>)"
        )
        return f"{method.name} needs a convolutional layer; workload {name!r}{what}"
    if method.takes_layer and method.kind == "feature" and traits.input_kind == "several":
        return (
            f"{method.name} scales the layer's map up to every input's shape, and workload {name!r} takes several "
            "inputs that are not all maps of the layer's rank; run LayerGradCam and GuidedBackprop apart"
        )
    if method.needs_float_inputs and traits.input_kind == "tokens":
        return (
            f"{method.name} needs gradients with respect to the inputs, and workload {name!r} takes integer "
            "token ids; use a layer method on the embedding (e.g. LayerIntegratedGradients) or a "
            "perturbation method"
        )
    if method.backward_rules in traits.rule_limits:
        return f"{method.name} does not apply to workload {name!r}: {traits.rule_limits[method.backward_rules]}"
    return None


def applies_to(method: MethodSpec, workload: WorkloadSpec) -> bool:
    return unsupported_reason(method, workload) is None
