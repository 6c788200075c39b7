"""Count the rows a run pushes through its model, to check cost models against reality."""

from __future__ import annotations

from contextlib import contextmanager

from attrib_core.methods import Passes
from attrib_core.run import PreparedRun


@contextmanager
def counted_passes(prepared: PreparedRun):
    """Yield a dict filled with forward / backward row counts while the block runs.

    Forward rows: rows leaving the output module (DeepLift appends its baselines inside the
    model call, so the model's own input undercounts). Backward rows: rows of the gradient
    reaching the output module, or for neuron methods, whose backward starts inside the
    network, the first module.
    """
    counts = {"forward": 0, "backward": 0}
    workload = prepared.workload
    inner = prepared.workload_model
    output = inner.get_submodule(workload.output_name)
    first = next(m for m in inner.modules() if not list(m.children()))
    backward_site = first if prepared.spec.kind == "neuron" else output

    def on_forward(module, args, out):
        counts["forward"] += out.shape[0]

    def on_backward(module, grad_output):
        counts["backward"] += grad_output[0].shape[0]

    handles = [
        output.register_forward_hook(on_forward),
        backward_site.register_full_backward_pre_hook(on_backward),
    ]
    try:
        yield counts
    finally:
        for handle in handles:
            handle.remove()


def measured_passes(prepared: PreparedRun) -> Passes:
    with counted_passes(prepared) as counts:
        prepared()
    return Passes(counts["forward"], counts["backward"])
