"""Method registry: each Captum method declared once, with its knobs and its cost model.

A spec (`spec.MethodSpec`) says which Captum class to build, what kind of attribution it is,
which knobs it takes (`knobs`: defaults and valid values) and how many forward / backward
passes one call makes (`costs`). The catalog is one module per kind of method: `feature`,
`layer`, `neuron`, and `llm` (Captum's LLM wrappers, on causal LMs that generate text). Importing this package registers them all in `METHODS`; the other names
in `captum.attr.__all__` are listed in `UNREGISTERED`, each with the reason.
"""

from attrib_core.methods import feature, layer, llm, neuron  # noqa: F401  (each registers its methods)
from attrib_core.methods.costs import (
    CostInput,
    CostModel,
    Passes,
    ablation,
    all_orderings,
    conductance,
    deeplift,
    deeplift_shap,
    forward_only,
    gradient_shap,
    guided_gradcam,
    layer_ablation,
    layer_gradient_shap,
    layer_path_integral,
    lrp,
    noise_tunnel_ig,
    noise_tunnel_saliency,
    occlusion,
    one_pass,
    path_integral,
    shapley_sampling,
    surrogate,
)
from attrib_core.methods.knobs import (
    AUTO,
    IG_KNOBS,
    IG_METHODS,
    NOISE_TUNNEL_KNOBS,
    NT_TYPES,
    PERTURBATIONS_PER_EVAL,
    Knob,
    KnobError,
)
from attrib_core.methods.spec import METHODS, MethodSpec, get_method, register_method, upsample_to_input
from attrib_core.methods.unregistered import UNREGISTERED
from attrib_core.methods.windows import concrete_window, occlusion_windows, shape_occlusion_window

__all__ = [
    "AUTO",
    "IG_KNOBS",
    "IG_METHODS",
    "METHODS",
    "NOISE_TUNNEL_KNOBS",
    "NT_TYPES",
    "PERTURBATIONS_PER_EVAL",
    "UNREGISTERED",
    "CostInput",
    "CostModel",
    "Knob",
    "KnobError",
    "MethodSpec",
    "Passes",
    "ablation",
    "all_orderings",
    "concrete_window",
    "conductance",
    "deeplift",
    "deeplift_shap",
    "forward_only",
    "get_method",
    "gradient_shap",
    "guided_gradcam",
    "layer_ablation",
    "layer_gradient_shap",
    "layer_path_integral",
    "lrp",
    "noise_tunnel_ig",
    "noise_tunnel_saliency",
    "occlusion",
    "occlusion_windows",
    "one_pass",
    "path_integral",
    "register_method",
    "shape_occlusion_window",
    "shapley_sampling",
    "surrogate",
    "upsample_to_input",
]
