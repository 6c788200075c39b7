"""The figures of docs/measurements/sanity.md: every sanity metric for every method the standard
preset runs on the trained workloads, with each metric's cost.

Each method runs once per workload with the standard preset's knobs and batch (shapes_resnet18
at 4, digits_cnn at 8), through `evaluate_fidelity`, as a benchmark cell's fidelity pass does
(Occlusion on shapes_resnet18 with perturbations_per_eval=64, a speed knob that leaves the map
as it is). On digits_cnn the script also repeats the cascading randomisation and compares the
maps only over the pixels the input lights up (x != 0), which shows how much of a map's
similarity comes from the input's support rather than from the model.

    python -m experiments.sanity.measure --out experiments/sanity/measured.json
    python -m experiments.sanity.measure --workload digits_cnn --method Saliency GuidedBackprop
    python -m experiments.sanity.measure --table experiments/sanity/measured.json   the page's tables
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import torch

from attrib_core.analysis.render.sanity import SANITY_THRESHOLD
from attrib_core.fidelity import evaluate_fidelity
from attrib_core.fidelity.randomisation import layer_groups, randomised_runs
from attrib_core.fidelity.scores import _spearman_rows
from attrib_core.fidelity.similarity import heat_maps
from attrib_core.run import NotApplicable, PreparedRun, RunConfig, prepare

SANITY = ["randomisation_cascading", "randomisation_independent", "random_logit", "road_morf", "road_lerf"]
BATCH = {"shapes_resnet18": 4, "digits_cnn": 8}
METHODS = {
    "shapes_resnet18": [
        "IntegratedGradients", "Occlusion", "LayerGradCam", "Saliency", "InputXGradient", "GuidedBackprop",
        "DeepLift", "GradientShap", "NoiseTunnel-Saliency", "DeepLiftShap", "KernelShap", "Lime", "FeatureAblation",
    ],
    "digits_cnn": [
        "IntegratedGradients", "Saliency", "InputXGradient", "GuidedBackprop", "DeepLift", "DeepLiftShap",
        "GradientShap", "NoiseTunnel-Saliency", "NoiseTunnel-IntegratedGradients", "Occlusion", "FeatureAblation",
        "FeaturePermutation", "KernelShap", "Lime", "ShapleyValueSampling", "LayerGradCam",
        "LayerIntegratedGradients", "LayerConductance", "LayerGradientXActivation", "LayerActivation",
        "NeuronGradient", "NeuronIntegratedGradients", "NeuronConductance",
    ],
}  # fmt: skip
KNOBS = {  # the standard preset's
    ("shapes_resnet18", "IntegratedGradients"): {"n_steps": 200},
    ("shapes_resnet18", "Occlusion"): {
        "sliding_window_shapes": (3, 5, 5),
        "strides": (3, 2, 2),
        "perturbations_per_eval": 64,
    },
    ("shapes_resnet18", "FeatureAblation"): {"perturbations_per_eval": 16},
    ("digits_cnn", "ShapleyValueSampling"): {"n_samples": 2},
}


def support_spearman(prepared: PreparedRun, trained: torch.Tensor) -> list[float]:
    """Cascading curve of Spearman(|map|) over the pixels where the input is not 0, mean over examples."""
    support = prepared.inputs.detach().cpu().abs().sum(dim=1).reshape(len(trained), -1) > 0
    base = heat_maps(trained).reshape(len(trained), -1)
    curve = []
    for _, result in randomised_runs(prepared, layer_groups(prepared.workload_model, 8), "cascading", 0):
        other = heat_maps(result.attributions).reshape(len(trained), -1)
        values = [
            float(_spearman_rows(base[i][support[i]][None], other[i][support[i]][None])[0]) for i in range(len(base))
        ]
        curve.append(sum(values) / len(values))
    return curve


def measure(workload: str, method: str) -> dict:
    config = RunConfig(method, workload, batch_size=BATCH[workload], knobs=KNOBS.get((workload, method), {}))
    try:
        prepared = prepare(config)
    except NotApplicable as error:
        return {"workload": workload, "method": method, "status": "not_applicable", "reason": str(error)}
    start = time.perf_counter()
    result = prepared()
    call_s = time.perf_counter() - start
    records = evaluate_fidelity(prepared, result, SANITY, sanity_workloads=[])
    row = {"workload": workload, "method": method, "weights": prepared.workload.weights, "call_s": call_s}
    row["records"] = {k: {f: v for f, v in r.items() if f != "groups"} for k, r in records.items()}
    if workload == "digits_cnn" and prepared.spec.kind == "feature":
        row["support_spearman_cascading"] = support_spearman(prepared, result.attributions)
    return row


def _number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _cell(record: dict | None, threshold: float | None = None) -> str:
    if not record or record.get("value") is None:
        return "n/a"
    value = record["value"]
    flag = " **fails**" if threshold is not None and value >= threshold else ""
    return f"{value:.2f}{flag} ({record['time_s']:.1f} s)"


def table(rows: list[dict]) -> str:
    """The measurements page's table: one row per (workload, method), each metric's value and seconds."""
    lines = [
        "| workload | method | call (s) | cascading, mean over steps | cascading, all random | independent | "
        "random logit | ROAD MoRF | ROAD LeRF | cascading on the input's support |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if row.get("status") == "not_applicable":
            continue
        records = row["records"]
        cascading = records["randomisation_cascading"]
        full = (cascading.get("at_full_randomisation") or {}).get("spearman_abs")
        support = row.get("support_spearman_cascading")
        finite = [v for v in support or [] if v == v]
        defined = support and len(finite) == len(support) and cascading.get("value") is not None
        support_text = f"{sum(finite) / len(finite):.2f}" if defined else "-"
        lines.append(
            f"| {row['workload']} | {row['method']} | {row['call_s']:.2f} | {_cell(cascading, SANITY_THRESHOLD)} | "
            f"{_number(full)} | {_cell(records['randomisation_independent'], SANITY_THRESHOLD)} | "
            f"{_cell(records['random_logit'], SANITY_THRESHOLD)} | {_cell(records['road_morf'])} | "
            f"{_cell(records['road_lerf'])} | {support_text} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", nargs="*", default=list(METHODS))
    parser.add_argument("--method", nargs="*")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--table", type=Path, help="print the markdown table of a JSON this script wrote, and stop")
    args = parser.parse_args(argv)
    if args.table:
        print(table(json.loads(args.table.read_text())))
        return 0
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    rows = []
    for workload in args.workload:
        for method in args.method or METHODS[workload]:
            row = measure(workload, method)
            rows.append(row)
            records = row.get("records") or {}
            cells = [
                f"{name}={r['value']:.3f} ({r['time_s']:.1f}s)" if r.get("value") is not None else f"{name}=-"
                for name, r in records.items()
            ]
            print(f"{workload} {method} call {row.get('call_s', 0):.2f}s: " + " ".join(cells), flush=True)
            if args.out:
                args.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
