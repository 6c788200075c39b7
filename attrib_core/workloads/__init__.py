"""Workloads: a model plus real inputs, targets, baselines and the layer / neuron that layer
and neuron methods explain. `base` holds the contract and the registry; each other module
registers its workloads when imported (built-ins here; plug-ins through `load_workload`)."""

from attrib_core.workloads import builtin as _builtin  # noqa: F401  (registers the built-ins)
from attrib_core.workloads import shapes as _shapes  # noqa: F401  (registers the ground-truth shapes task)
from attrib_core.workloads.base import (
    WORKLOADS,
    Workload,
    WorkloadSpec,
    load_workload,
    patch_mask,
    register_workload,
    smoothgrad_noise,
    trained_weights,
)

__all__ = [
    "WORKLOADS",
    "Workload",
    "WorkloadSpec",
    "load_workload",
    "patch_mask",
    "register_workload",
    "smoothgrad_noise",
    "trained_weights",
]
