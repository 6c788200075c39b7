"""Workloads: a model plus real inputs, targets, baselines and the layer / neuron that layer
and neuron methods explain. `base` holds the contract and the registry; each other module
registers its workloads when imported (built-ins here); `torchvision:` models (`zoo`) and the
user's plug-ins (`plugins`) are registered when a preset or `workload_spec` names them; `catalog`
turns a name into a spec and a built workload."""

from attrib_core.workloads import builtin as _builtin  # noqa: F401  (registers the built-ins)
from attrib_core.workloads import lm as _lm  # noqa: F401  (registers the causal LM workloads)
from attrib_core.workloads import shapes as _shapes  # noqa: F401  (registers the ground-truth shapes task)
from attrib_core.workloads import text as _text  # noqa: F401  (registers the text workload)
from attrib_core.workloads import transformer as _transformer  # noqa: F401  (registers the BERT workloads)
from attrib_core.workloads.base import (
    WORKLOADS,
    Workload,
    WorkloadSpec,
    patch_mask,
    register_workload,
    trained_weights,
)
from attrib_core.workloads.catalog import load_workload, observed_spec, workload_spec
from attrib_core.workloads.traits import Traits

__all__ = [
    "WORKLOADS",
    "Traits",
    "Workload",
    "WorkloadSpec",
    "load_workload",
    "observed_spec",
    "patch_mask",
    "register_workload",
    "trained_weights",
    "workload_spec",
]
