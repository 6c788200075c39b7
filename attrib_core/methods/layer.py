"""Layer methods: one score per unit of the workload's layer (its output)."""

from __future__ import annotations

import captum.attr as ca

from attrib_core.methods.costs import conductance, forward_only, layer_path_integral, one_pass
from attrib_core.methods.knobs import IG_KNOBS, Knob, check_integration
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
)

for spec in LAYER_METHODS:
    register_method(spec)
