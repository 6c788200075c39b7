"""Issue 17's numbers: does infidelity see the sign, and does batching move its noise?

Runs IntegratedGradients (32 steps) on digits_cnn through `evaluate_fidelity` only, so
the same script measures the code before and after the change:

1. infidelity and deletion AUC of the IG map and of the negated map (batch 8);
2. the infidelity mean at 256, 40 and 16 rows per forward (batch 8);
3. one example's infidelity in a batch of 8 and in a batch of 32;
4. the spread over 30 cell seeds of IG's infidelity against a random-noise map's, at
   each `--samples` count: min, max, and whether the two ranges overlap.

    python -m experiments.fidelity.proof                  all four, samples 10 and the default
    python -m experiments.fidelity.proof --samples 10 20 50 --seeds 30
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import warnings

import torch

from attrib_core.fidelity import evaluate_fidelity
from attrib_core.fidelity.scores import FidelityOptions
from attrib_core.run import AttributionResult, PreparedRun, RunConfig, prepare

KNOBS = {"n_steps": 32}


def ig(batch_size: int, seed: int = 0) -> tuple[PreparedRun, AttributionResult]:
    prepared = prepare(RunConfig("IntegratedGradients", "digits_cnn", batch_size=batch_size, knobs=KNOBS, seed=seed))
    return prepared, prepared()


def infidelity(prepared: PreparedRun, attributions: torch.Tensor, **options) -> dict:
    return evaluate_fidelity(prepared, AttributionResult(attributions, None), ["infidelity"], **options)["infidelity"]


def with_seed(prepared: PreparedRun, seed: int) -> PreparedRun:
    return dataclasses.replace(prepared, config=dataclasses.replace(prepared.config, seed=seed))


def _extra(record: dict) -> str:
    """The fields the change adds (absent before it)."""
    parts = []
    if record.get("standard_error") is not None:
        parts.append(f"+- {record['standard_error']:.6f} (standard error)")
    unnormalized = record.get("unnormalized")
    if unnormalized:
        parts.append(f"unnormalized {unnormalized['value']:.6f}")
    return ("  " + ", ".join(parts)) if parts else ""


def sign(samples: int) -> None:
    prepared, result = ig(8)
    print(f"1. IG-32, batch 8, {samples} samples: the map against its negation")
    for label, attributions in (("map", result.attributions), ("negated map", -result.attributions)):
        records = evaluate_fidelity(
            prepared, AttributionResult(attributions, None), ["deletion", "infidelity"], infidelity_samples=samples
        )
        inf, deletion = records["infidelity"], records["deletion"]
        print(f"   {label:12s} infidelity {inf['value']:.6f}{_extra(inf)}; deletion AUC {deletion['value']:.4f}")


def rows(samples: int) -> None:
    prepared, result = ig(8)
    print(f"2. infidelity mean, batch 8, {samples} samples, by rows per forward")
    for rows_per_forward in (256, 40, 16):
        options = {"infidelity_samples": samples, "rows_per_forward": rows_per_forward}
        record = infidelity(prepared, result.attributions, **options)
        print(f"   {rows_per_forward:4d} rows: {record['value']:.6f}")


def batch(samples: int) -> None:
    print(f"3. example 0's infidelity, {samples} samples, by batch size")
    for batch_size in (8, 32):
        prepared, result = ig(batch_size)
        record = infidelity(prepared, result.attributions, infidelity_samples=samples)
        print(f"   batch {batch_size:2d}: {record['per_example'][0]:.6f}")


def spread(samples_list: list[int], n_seeds: int) -> None:
    prepared, result = ig(8)
    print(f"4. infidelity over {n_seeds} cell seeds, batch 8: IG against a random-noise map (randn, seeded)")
    for samples in samples_list:
        values: dict[str, list[float]] = {"IG": [], "random": []}
        errors: list[float] = []
        times_s: list[float] = []
        for seed in range(n_seeds):
            cell = with_seed(prepared, seed)
            noise_map = torch.randn(result.attributions.shape, generator=torch.Generator().manual_seed(10_000 + seed))
            record = infidelity(cell, result.attributions, infidelity_samples=samples)
            values["IG"].append(record["value"])
            times_s.append(record["time_s"])
            if record.get("standard_error") is not None:
                errors.append(record["standard_error"])
            values["random"].append(infidelity(cell, noise_map, infidelity_samples=samples)["value"])
        ig_values, random_values = values["IG"], values["random"]
        overlap = max(ig_values) >= min(random_values)
        paired = sum(a < b for a, b in zip(ig_values, random_values, strict=True))
        print(
            f"   {samples:3d} samples: IG {min(ig_values):.5f} to {max(ig_values):.5f} "
            f"(sd {statistics.stdev(ig_values):.5f}"
            + (f", mean reported SE {statistics.mean(errors):.5f}" if errors else "")
            + f"); random {min(random_values):.5f} to {max(random_values):.5f}; "
            f"ranges {'OVERLAP' if overlap else f'separate, gap {min(random_values) - max(ig_values):.5f}'}; "
            f"IG better at {paired}/{n_seeds} seeds; median {statistics.median(times_s) * 1e3:.1f} ms per evaluation"
        )


def main(argv: list[str] | None = None) -> None:
    default = FidelityOptions().infidelity_samples
    parser = argparse.ArgumentParser(prog="python -m experiments.fidelity.proof", description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, nargs="+", default=sorted({10, default}), help="spread study counts")
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--only", choices=("sign", "rows", "batch", "spread"), nargs="+")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # a tiny model; one thread is fastest and steadiest on a shared machine
    warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")
    parts = args.only or ("sign", "rows", "batch", "spread")
    print(f"default infidelity_samples: {default}")
    if "sign" in parts:
        for samples in sorted({10, default}):
            sign(samples)
    if "rows" in parts:
        rows(10)
    if "batch" in parts:
        batch(10)
    if "spread" in parts:
        spread(args.samples, args.seeds)


if __name__ == "__main__":
    main()
