"""Fidelity: how faithful an attribution is, recorded beside what it cost.

- `scores`: pure metric functions of (model, inputs, attributions, target, baselines) that
  return tensors, and the options of the whole fidelity pass;
- `localisation`: scores against ground-truth masks;
- `noise`: per-example seeded noise, so a metric's samples do not depend on the batch;
- `references`: cached high-accuracy references that errors are measured against;
- `evaluate`: the metric registry (one entry adds a metric) and `evaluate_fidelity`, which a
  benchmark cell calls once, outside its timed rounds.
"""

from attrib_core.fidelity.evaluate import (
    DEFAULT_METRICS,
    METRIC_REGISTRY,
    METRICS,
    Metric,
    check_metric_names,
    evaluate_fidelity,
    not_applicable,
)
from attrib_core.fidelity.scores import FidelityOptions

__all__ = [
    "DEFAULT_METRICS",
    "METRICS",
    "METRIC_REGISTRY",
    "FidelityOptions",
    "Metric",
    "check_metric_names",
    "evaluate_fidelity",
    "not_applicable",
]
