"""Workloads: a model plus real inputs, targets, baselines and the layer / neuron that layer
and neuron methods explain. `base` holds the contract and the registry; each other module
registers its workloads when imported (built-ins here; plug-ins through `load_workload`)."""

from attrib_core.workloads import builtin as _builtin  # noqa: F401  (registers the built-ins)
from attrib_core.workloads import text as _text  # noqa: F401  (registers the text workload)
from attrib_core.workloads.base import (
    WORKLOADS,
    Workload,
    WorkloadSpec,
    load_workload,
    patch_mask,
    register_workload,
    trained_weights,
)

__all__ = [
    "WORKLOADS",
    "Workload",
    "WorkloadSpec",
    "load_workload",
    "patch_mask",
    "register_workload",
    "trained_weights",
]
