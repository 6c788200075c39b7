"""Neuron methods: how each input feature drives one unit of the workload's layer (its neuron)."""

from __future__ import annotations

import captum.attr as ca

from attrib_core.methods.costs import one_pass, path_integral
from attrib_core.methods.knobs import IG_KNOBS, check_integration, integration_knobs
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
