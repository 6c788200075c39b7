"""Layer methods: one score per unit of the workload's layer (its output)."""

from __future__ import annotations

import captum.attr as ca

from attrib_core.methods.costs import (
    conductance,
    deeplift,
    deeplift_shap,
    forward_only,
    layer_ablation,
    layer_gradient_shap,
    layer_path_integral,
    lrp,
    one_pass,
    path_integral,
)
from attrib_core.methods.knobs import (
    GRADIENT_SHAP_KNOBS,
    IG_KNOBS,
    N_BASELINES,
    Knob,
    check_integration,
)
from attrib_core.methods.spec import MethodSpec, register_method, upsample_to_input

LAYER_METHODS = (
    MethodSpec(
        "LayerGradCam",
        ca.LayerGradCam,
        "layer",
        "gradient",
        one_pass,
        (
            Knob("relu_attributions", False, "keep only positive evidence", type="bool"),
            Knob("interpolate", True, "upsample to the input size, as the Captum tutorial does", type="bool"),
        ),
        runner_knobs=frozenset({"interpolate"}),
        postprocess=upsample_to_input,
        needs_spatial_layer=True,
        backward_reach="to_layer",
    ),
    MethodSpec(
        "LayerIntegratedGradients",
        ca.LayerIntegratedGradients,
        "layer",
        "gradient",
        layer_path_integral,
        IG_KNOBS,
        baselines="single",
        supports_delta=True,
        has_completeness=True,
        check=check_integration,
        reference="path",
        backward_reach="to_layer",
    ),
    MethodSpec(
        "LayerConductance",
        ca.LayerConductance,
        "layer",
        "gradient",
        conductance,
        IG_KNOBS,
        baselines="single",
        supports_delta=True,
        has_completeness=True,
        interpolates_inputs=True,
        check=check_integration,
        reference="path",
        backward_reach="to_layer",
    ),
    MethodSpec(
        "LayerGradientXActivation",
        ca.LayerGradientXActivation,
        "layer",
        "gradient",
        one_pass,
        backward_reach="to_layer",
    ),
    MethodSpec("LayerActivation", ca.LayerActivation, "layer", "gradient", forward_only, takes_target=False),
    MethodSpec(
        "InternalInfluence",
        ca.InternalInfluence,
        "layer",
        "gradient",
        path_integral,
        IG_KNOBS,
        baselines="single",
        interpolates_inputs=True,  # the path runs between inputs and baselines, through the whole model
        check=check_integration,
        reference="path",
        backward_reach="to_layer",
    ),
    MethodSpec(
        "LayerDeepLift",
        ca.LayerDeepLift,
        "layer",
        "gradient",
        deeplift,
        baselines="single",
        supports_delta=True,
        has_completeness=True,
        backward_rules="deeplift",
        backward_reach="to_layer",
    ),
    MethodSpec(
        "LayerDeepLiftShap",
        ca.LayerDeepLiftShap,
        "layer",
        "gradient",
        deeplift_shap,
        (N_BASELINES,),
        baselines="background",
        min_background=2,
        supports_delta=True,
        has_completeness=True,
        runner_knobs=frozenset({"n_baselines"}),
        backward_rules="deeplift",
        sets_input_grad=True,  # Captum's DeepLiftShap expands the inputs with requires_grad: no token ids
        backward_reach="to_layer",
    ),
    MethodSpec(
        "LayerGradientShap",
        ca.LayerGradientShap,
        "layer",
        "gradient",
        layer_gradient_shap,
        GRADIENT_SHAP_KNOBS,
        baselines="background",
        supports_delta=True,
        has_completeness=True,
        stochastic=True,
        interpolates_inputs=True,  # its random points lie between inputs and background rows
        reference="more_samples",
        sample_knob="n_samples",
        backward_reach="to_layer",
    ),
    # LRP's delta is F(x) minus the relevance that reaches the layer (no baseline: not completeness).
    # Its backward runs down to the inputs; hooks on the layer collect the relevance on the way.
    MethodSpec(
        "LayerLRP",
        ca.LayerLRP,
        "layer",
        "gradient",
        lrp,
        supports_delta=True,
        backward_rules="lrp",
        sets_input_grad=True,
    ),
    # Every unit of the layer's output is one feature (Captum's default layer_mask), replaced by 0.
    # No perturbations_per_eval: Captum 0.9 runs the copies with the batch's targets unrepeated,
    # which raises for one target per example (tests/test_methods.py keeps that checked).
    MethodSpec(
        "LayerFeatureAblation",
        ca.LayerFeatureAblation,
        "layer",
        "perturbation",
        layer_ablation,
        layer_units_are_features=True,
    ),
)

for spec in LAYER_METHODS:
    register_method(spec)
