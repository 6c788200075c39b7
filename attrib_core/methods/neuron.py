"""Neuron methods: how each input feature drives one unit of the workload's layer (its neuron)."""

from __future__ import annotations

import captum.attr as ca

from attrib_core.methods.costs import ablation, deeplift, deeplift_shap, gradient_shap, one_pass, path_integral
from attrib_core.methods.knobs import (
    GRADIENT_SHAP_KNOBS,
    IG_KNOBS,
    N_BASELINES,
    PERTURBATIONS_PER_EVAL,
    check_integration,
    integration_knobs,
)
from attrib_core.methods.spec import MethodSpec, register_method

NEURON_METHODS = (
    MethodSpec(
        "NeuronGradient",
        ca.NeuronGradient,
        "neuron",
        "gradient",
        one_pass,
        takes_target=False,
        backward_reach="from_layer",
    ),
    MethodSpec(
        "NeuronIntegratedGradients",
        ca.NeuronIntegratedGradients,
        "neuron",
        "gradient",
        path_integral,
        IG_KNOBS,
        baselines="single",
        takes_target=False,
        check=check_integration,
        reference="path",
        backward_reach="from_layer",
    ),
    MethodSpec(
        "NeuronDeepLift",
        ca.NeuronDeepLift,
        "neuron",
        "gradient",
        deeplift,
        baselines="single",
        takes_target=False,
        backward_rules="deeplift",
        backward_reach="from_layer",
    ),
    MethodSpec(
        "NeuronDeepLiftShap",
        ca.NeuronDeepLiftShap,
        "neuron",
        "gradient",
        deeplift_shap,
        (N_BASELINES,),
        baselines="background",
        min_background=2,
        takes_target=False,
        runner_knobs=frozenset({"n_baselines"}),
        backward_rules="deeplift",
        backward_reach="from_layer",
    ),
    MethodSpec(
        "NeuronGradientShap",
        ca.NeuronGradientShap,
        "neuron",
        "gradient",
        gradient_shap,
        GRADIENT_SHAP_KNOBS,
        baselines="background",
        takes_target=False,
        stochastic=True,
        reference="more_samples",
        sample_knob="n_samples",
        backward_reach="from_layer",
    ),
    MethodSpec(
        "NeuronGuidedBackprop",
        ca.NeuronGuidedBackprop,
        "neuron",
        "gradient",
        one_pass,
        takes_target=False,
        backward_rules="guided_relu",
        backward_reach="from_layer",
    ),
    MethodSpec(
        "NeuronDeconvolution",
        ca.NeuronDeconvolution,
        "neuron",
        "gradient",
        one_pass,
        takes_target=False,
        backward_rules="guided_relu",
        backward_reach="from_layer",
    ),
    # Perturbs the inputs, so it also applies to token ids
    MethodSpec(
        "NeuronFeatureAblation",
        ca.NeuronFeatureAblation,
        "neuron",
        "perturbation",
        ablation,
        (PERTURBATIONS_PER_EVAL,),
        baselines="single",
        takes_target=False,
        uses_feature_mask=True,
    ),
    MethodSpec(
        "NeuronConductance",
        ca.NeuronConductance,
        "neuron",
        "gradient",
        path_integral,
        integration_knobs(method="riemann_trapezoid"),
        baselines="single",
        check=check_integration,
        reference="path",
    ),
)

for spec in NEURON_METHODS:
    register_method(spec)
