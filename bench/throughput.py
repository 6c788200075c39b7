"""Dataset-scale attribution throughput across processes with torch.distributed.

    torchrun --nproc-per-node=K -m bench.throughput --workload digits_cnn \
        --method IntegratedGradients --n-examples 512 --batch-size 16 --repeats 5

The dataset (`--n-examples` real inputs of the workload, cycled) is cut into batches of
`--batch-size`; each rank attributes a contiguous block of batches, and the attributions are
gathered to rank 0 (`dist.gather`, padded to the largest block). Backend: gloo on CPU, nccl
when CUDA is available, where each rank takes the GPU of its LOCAL_RANK: the same command runs
on N GPUs when torchrun is given N processes.

Each repeat times, in one window: (1) all K ranks attributing their blocks and the gather
(rank 0's wall time from a barrier to the gathered tensor; each rank's own compute time and
the gather time are kept apart), then (2) rank 0 alone attributing the whole dataset in one
process, the single-process run, while the other ranks wait at a barrier. (2) is both the
reference the gathered result is checked against and the 1-rank throughput that scaling
efficiency divides by:  efficiency = single_s / (K x parallel_s).

The check: every batch has the same rows and shape in both runs and the seeds are the same,
so on the CPU (fixed thread count) the computation is the same and torch.equal is required.
On CUDA, kernels may sum in a different order (atomics, algorithm choice per device), so
there torch.allclose(rtol=1e-4, atol=1e-6) is required; the largest difference is always
recorded. Rank 0 writes a small JSON (not a pytest-benchmark file: one record per run, not
per cell) with the medians, every repeat, the machine's load average and the environment.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist

from attrib_core import measure, schema
from attrib_core.fileio import atomic_write
from attrib_core.run import PreparedRun, RunConfig, prepare
from bench import REPO

CUDA_TOLERANCE = {"rtol": 1e-4, "atol": 1e-6}


def blocks(n_batches: int, world_size: int) -> list[range]:
    """Contiguous blocks of batch indices, one per rank, sizes differing by at most one."""
    base, extra = divmod(n_batches, world_size)
    starts = [r * base + min(r, extra) for r in range(world_size + 1)]
    return [range(starts[r], starts[r + 1]) for r in range(world_size)]


def batch_rows(n_examples: int, batch_size: int) -> list[range]:
    return [range(s, min(s + batch_size, n_examples)) for s in range(0, n_examples, batch_size)]


def attribute_batches(prepared: PreparedRun, inputs, targets, rows: list[range]) -> torch.Tensor:
    """Attributions of the given batches, concatenated in order, on the run's device."""
    device = prepared.inputs.device
    out = []
    for r in rows:
        kwargs = dict(prepared.kwargs)
        if "target" in kwargs:
            kwargs["target"] = targets[r.start : r.stop].to(device)
        call = replace(prepared, inputs=inputs[r.start : r.stop].to(device), kwargs=kwargs)
        out.append(call().attributions)
    if not out:
        return torch.empty(0, *prepared.inputs.shape[1:])
    return torch.cat(out)


def timed(fn, device: torch.device):
    measure.synchronize(device)
    started = time.perf_counter()
    result = fn()
    measure.synchronize(device)
    return result, time.perf_counter() - started


def gather_to_rank0(local: torch.Tensor, counts: list[int], device: torch.device) -> torch.Tensor | None:
    """Rows of every rank in rank order on rank 0 (padded to the largest block for dist.gather)."""
    width = max(counts)
    padded = torch.zeros(width, *local.shape[1:], dtype=local.dtype, device=device)
    padded[: local.shape[0]] = local.to(device)
    parts = [torch.empty_like(padded) for _ in counts] if dist.get_rank() == 0 else None
    dist.gather(padded, parts, dst=0)
    if parts is None:
        return None
    return torch.cat([p[:n].cpu() for p, n in zip(parts, counts, strict=True)])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="torchrun --nproc-per-node=K -m bench.throughput", description=__doc__)
    parser.add_argument("--workload", default="digits_cnn")
    parser.add_argument("--method", default="IntegratedGradients")
    parser.add_argument("--n-examples", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=16, help="rows per attribute call")
    parser.add_argument("--knob", action="append", default=[], metavar="NAME=JSON", help="e.g. n_steps=32")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads per rank")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, help="JSON written by rank 0 (default: results/throughput/...)")
    args = parser.parse_args(argv)
    for name, value in (("--n-examples", args.n_examples), ("--batch-size", args.batch_size)):
        if value < 1:
            parser.error(f"{name} {value}: must be >= 1")
    if args.repeats < 1 or args.threads < 1:
        parser.error(f"--repeats {args.repeats} / --threads {args.threads}: must be >= 1")
    return args


def knobs_from(pairs: list[str]) -> dict:
    knobs = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--knob {pair!r}: expected NAME=VALUE, e.g. n_steps=32")
        try:
            knobs[name] = json.loads(value)
        except json.JSONDecodeError:
            knobs[name] = value  # a plain word (e.g. method=riemann_trapezoid)
    return knobs


def main(argv: list[str] | None = None) -> int:
    process_started = time.perf_counter()
    args = parse_args(argv)
    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
    backend = "nccl" if cuda else "gloo"
    if "RANK" not in os.environ:  # run without torchrun: one rank
        os.environ.update(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="29517")
    dist.init_process_group(backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    measure.set_threads(args.threads, 1)
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")

    config = RunConfig(args.method, args.workload, "cuda" if cuda else "cpu", args.batch_size, knobs_from(args.knob))
    prepared = prepare(config)  # ValueError names a bad method, workload or knob
    inputs, targets = prepared.workload.batch(args.n_examples)
    rows = batch_rows(args.n_examples, args.batch_size)
    mine = [rows[i] for i in blocks(len(rows), world)[rank]]
    counts = [sum(len(rows[i]) for i in block) for block in blocks(len(rows), world)]
    attribute_batches(prepared, inputs, targets, rows[:1])  # warm-up: first-call costs out of the timings
    dist.barrier()
    startup_s = time.perf_counter() - process_started

    repeats = []
    for _ in range(args.repeats):
        dist.barrier()
        measure.synchronize(device)
        wall_started = time.perf_counter()
        local, compute_s = timed(lambda mine=mine: attribute_batches(prepared, inputs, targets, mine), device)
        gathered, gather_s = timed(lambda local=local: gather_to_rank0(local, counts, device), device)
        parallel_s = time.perf_counter() - wall_started
        per_rank = [torch.zeros(2, dtype=torch.float64, device=device) for _ in range(world)]
        dist.all_gather(per_rank, torch.tensor([compute_s, gather_s], dtype=torch.float64, device=device))
        dist.barrier()
        single, single_s = None, 0.0
        if rank == 0:
            single, single_s = timed(lambda: attribute_batches(prepared, inputs, targets, rows), device)
        dist.barrier()
        if rank == 0:
            repeats.append(
                {
                    "parallel_s": parallel_s,
                    "single_s": single_s,
                    "compute_s_per_rank": [float(t[0]) for t in per_rank],
                    "gather_s_per_rank": [float(t[1]) for t in per_rank],
                    **check(gathered, single, cuda),
                }
            )
    if rank == 0:
        path = write(args, world, backend, device, startup_s, repeats)
        print(summary(repeats, world, args.n_examples, path))
    dist.destroy_process_group()
    return 0 if rank != 0 or all(r["equal"] for r in repeats) else 1


def check(gathered: torch.Tensor, single: torch.Tensor, cuda: bool) -> dict:
    if gathered.shape != single.shape:
        return {"equal": False, "max_abs_diff": None}
    max_abs = float((gathered - single).abs().max()) if single.numel() else 0.0
    same = torch.allclose(gathered, single, **CUDA_TOLERANCE) if cuda else torch.equal(gathered, single)
    return {"equal": bool(same), "max_abs_diff": max_abs}


def medians(repeats: list[dict], world: int, n_examples: int) -> dict:
    parallel = statistics.median(r["parallel_s"] for r in repeats)
    single = statistics.median(r["single_s"] for r in repeats)
    return {
        "parallel_s": parallel,
        "single_s": single,
        "samples_per_s": n_examples / parallel,
        "samples_per_s_1_rank": n_examples / single,
        "scaling_efficiency": single / (world * parallel),
        "compute_s_max_rank": statistics.median(max(r["compute_s_per_rank"]) for r in repeats),
        "compute_s_min_rank": statistics.median(min(r["compute_s_per_rank"]) for r in repeats),
        "gather_s_rank0": statistics.median(r["gather_s_per_rank"][0] for r in repeats),
        # rank 0's gather, less the time it waited for the slowest rank to finish computing
        "gather_transfer_s": statistics.median(
            max(0.0, r["gather_s_per_rank"][0] - (max(r["compute_s_per_rank"]) - r["compute_s_per_rank"][0]))
            for r in repeats
        ),
        "ideal_parallel_s": single / world,
    }


def write(args, world: int, backend: str, device: torch.device, startup_s: float, repeats: list[dict]) -> Path:
    document = {
        "kind": "attrib-bench throughput",
        "command": " ".join(sys.argv),
        "workload": args.workload,
        "method": args.method,
        "knobs": knobs_from(args.knob),
        "n_examples": args.n_examples,
        "batch_size": args.batch_size,
        "world_size": world,
        "backend": backend,
        "device": str(device),
        "threads_per_rank": args.threads,
        "check": "torch.allclose " + json.dumps(CUDA_TOLERANCE) if device.type == "cuda" else "torch.equal",
        "startup_s_rank0": startup_s,
        "load_average_1_5_15": list(os.getloadavg()),
        "median": medians(repeats, world, args.n_examples),
        "repeats": repeats,
        "environment": measure.environment(),
        "written": schema.now_utc(),
    }
    stamp = document["written"].replace(":", "").replace("-", "").replace("+0000", "Z")
    path = args.out or REPO / "results" / "throughput" / f"{args.workload}_{args.method}_{world}ranks_{stamp}.json"
    atomic_write(path, schema.dumps(document))
    return path


def summary(repeats: list[dict], world: int, n_examples: int, path: Path) -> str:
    m = medians(repeats, world, n_examples)
    equal = all(r["equal"] for r in repeats)
    return (
        f"{world} rank(s): {m['samples_per_s']:.1f} samples/s (1 rank alone: {m['samples_per_s_1_rank']:.1f}); "
        f"scaling efficiency {m['scaling_efficiency']:.3f}; medians over {len(repeats)} repeats: "
        f"parallel {m['parallel_s']:.3f} s (ideal {m['ideal_parallel_s']:.3f} s), per-rank compute "
        f"{m['compute_s_min_rank']:.3f}-{m['compute_s_max_rank']:.3f} s, gather {m['gather_s_rank0'] * 1e3:.1f} ms "
        f"(of it transfer {m['gather_transfer_s'] * 1e3:.1f} ms, the rest waiting for the slowest rank); "
        f"gathered == single-process: {equal}; load average {os.getloadavg()[0]:.1f}\n-> {path}"
    )


if __name__ == "__main__":
    sys.exit(main())
