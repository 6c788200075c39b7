"""What the check runs, in order, with the sizes of a GPU run and of a dry run on the CPU.

The GPU sizes are chosen for a budget of about 8 minutes on one H100 (estimates below sum to
about 456 s); the dry sizes run in seconds on a laptop core.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from attrib_core.device_check import probes, suite_slice
from attrib_core.device_check.frontier import FrontierTarget, search_frontier
from attrib_core.device_check.oom import capped_peak, is_out_of_memory
from attrib_core.device_check.steps import Step, StepSkipped
from attrib_core.methods import METHODS
from attrib_core.run import RunConfig, prepare

MiB, GiB = 2**20, 2**30
LLM_MARKER = "LLM"  # methods named with it (Captum's LLMAttribution wrappers) get a frontier when registered


@dataclass(frozen=True)
class Sizes:
    """Everything that differs between a GPU run and a dry run."""

    timing_side: int
    timing_matmuls: int
    timing_repeats: int
    known_allocation_bytes: int
    oom: suite_slice.OomSizing
    frontier: tuple[FrontierTarget, ...]
    estimates_s: dict[str, float]


GPU = Sizes(
    timing_side=4096,
    timing_matmuls=8,
    timing_repeats=10,
    known_allocation_bytes=256 * MiB,
    oom=suite_slice.RESNET18_OOM,
    frontier=(
        FrontierTarget("IntegratedGradients", "resnet18", "internal_batch_size", 128, 4096, 16, {"n_steps": 256}),
        FrontierTarget(
            "Occlusion",
            "resnet18",
            "perturbations_per_eval",
            1,
            256,
            8,
            {"sliding_window_shapes": (3, 30, 30), "strides": (3, 15, 15)},
        ),
        FrontierTarget("FeatureAblation", "resnet18", "perturbations_per_eval", 1, 256, 8),
        FrontierTarget("GradientShap", "resnet18", "n_samples", 8, 1024, 16),
        FrontierTarget("NoiseTunnel-Saliency", "resnet18", "nt_samples_batch_size", 1, 64, 16, {"nt_samples": 64}),
    ),
    estimates_s={
        "cuda_tests": 45,
        "timing": 10,
        "peak_memory": 5,
        "deliberate_oom": 15,
        "after_oom": 5,
        "suite_slice": 200,
        "frontier": 35,
    },
)

DRY = Sizes(
    timing_side=128,
    timing_matmuls=8,
    timing_repeats=5,
    known_allocation_bytes=8 * MiB,
    oom=suite_slice.DIGITS_OOM,
    frontier=(
        FrontierTarget("IntegratedGradients", "digits_cnn", "internal_batch_size", 4, 256, 4, {"n_steps": 64}),
        FrontierTarget(
            "Occlusion",
            "digits_cnn",
            "perturbations_per_eval",
            1,
            64,
            4,
            {"sliding_window_shapes": (1, 2, 2), "strides": (1, 1, 1)},
        ),
        FrontierTarget("FeatureAblation", "digits_cnn", "perturbations_per_eval", 1, 64, 4),
        FrontierTarget("GradientShap", "digits_cnn", "n_samples", 4, 256, 4),
        FrontierTarget("NoiseTunnel-Saliency", "digits_cnn", "nt_samples_batch_size", 1, 32, 4, {"nt_samples": 32}),
    ),
    estimates_s={
        "cuda_tests": 60,
        "timing": 1,
        "peak_memory": 1,
        "deliberate_oom": 2,
        "after_oom": 1,
        "suite_slice": 60,
        "frontier": 15,
    },
)

DRY_BUDGET_BYTES = 1 * MiB  # the stated budget of the dry frontier
DRY_CAP_BYTES = 4 * MiB  # the dry run's stand-in for the device's memory
GPU_BUDGET_BYTES = 16 * GiB  # the stated budget of the GPU frontier: what fits a 16 GiB card


@dataclass(frozen=True)
class Settings:
    device: str  # "cuda" (or "cuda:N"), or "cpu" for the dry run
    out: Path  # this run's folder
    memory_budget_bytes: int
    cap_bytes: int | None  # dry run only: the stand-in for the device's memory
    cuda_test_paths: tuple[str, ...] = ("tests",)

    @property
    def dry(self) -> bool:
        return self.device == "cpu"


def device_memory_bytes(settings: Settings) -> int:
    """The memory an out-of-memory is sized against: the device's, or the dry run's cap."""
    if settings.dry:
        return settings.cap_bytes or DRY_CAP_BYTES
    return int(torch.cuda.get_device_properties(torch.device(settings.device)).total_memory)


def steps(settings: Settings) -> list[Step]:
    sizes = DRY if settings.dry else GPU
    est = sizes.estimates_s
    device, out = settings.device, settings.out

    def cuda_tests(allowance_s: float) -> dict[str, Any]:
        return probes.cuda_tests(list(settings.cuda_test_paths), out / "logs" / "cuda_tests.log", allowance_s)

    def timing(allowance_s: float) -> dict[str, Any]:
        return probes.timing_against_events(device, sizes.timing_side, sizes.timing_matmuls, sizes.timing_repeats)

    def peak(allowance_s: float) -> dict[str, Any]:
        return probes.peak_of_known_allocation(device, sizes.known_allocation_bytes)

    def deliberate_oom(allowance_s: float) -> dict[str, Any]:
        memory = device_memory_bytes(settings)
        config = RunConfig(
            "IntegratedGradients", sizes.oom.workload, device, sizes.oom.batch_size, sizes.oom.knobs(memory)
        )
        reading = capped_peak(prepare(config), device, settings.cap_bytes)
        return {"config": str(config), "sized_against_bytes": memory, "peak_bytes": reading.peak_bytes}

    def after_oom(allowance_s: float) -> dict[str, Any]:
        prepared = prepare(RunConfig("Saliency", sizes.oom.workload, device, 1))
        reading = capped_peak(prepared, device, settings.cap_bytes)
        found: dict[str, Any] = {"call": "Saliency, batch 1", "peak_bytes": reading.peak_bytes}
        if not settings.dry:
            found["memory_allocated_bytes"] = torch.cuda.memory_allocated(torch.device(device))
        return found

    def slice_of_full(allowance_s: float) -> dict[str, Any]:
        if settings.dry:
            return suite_slice.run_slice(suite_slice.dry_slice(), device, out, allowance_s, oom_first=False)
        return suite_slice.run_slice(
            suite_slice.gpu_slice(device_memory_bytes(settings)), device, out, allowance_s, oom_first=True
        )

    listed = [
        Step("cuda_tests", est["cuda_tests"], cuda_tests),
        Step("timing", est["timing"], timing),
        Step("peak_memory", est["peak_memory"], peak),
        Step("deliberate_oom", est["deliberate_oom"], deliberate_oom, expected_error=is_out_of_memory),
        Step("after_oom", est["after_oom"], after_oom),
        Step("suite_slice", est["suite_slice"], slice_of_full, allowance_factor=1.0),
    ]
    listed += [Step(f"frontier:{t.method}", est["frontier"], frontier_run(t, settings)) for t in sizes.frontier]
    listed.append(Step("frontier:LLM", 1, llm_frontier))  # a registry look-up until a target is declared
    return listed


def frontier_run(target: FrontierTarget, settings: Settings) -> Callable[[float], dict[str, Any]]:
    def run(allowance_s: float) -> dict[str, Any]:
        return search_frontier(
            target, settings.device, settings.memory_budget_bytes, allowance_s, cap_bytes=settings.cap_bytes
        )

    return run


def llm_frontier(allowance_s: float) -> dict[str, Any]:
    """A frontier for LLM attribution methods once the registry has them; skipped until then."""
    registered = [name for name in METHODS.names() if LLM_MARKER in name]
    if not registered:
        raise StepSkipped(f"no LLM attribution method is registered (no method name contains {LLM_MARKER!r})")
    raise StepSkipped(
        f"LLM method(s) {registered} have no batching knob to double (Captum's LLM wrappers score one perturbed "
        "prompt per forward): their memory grows with the prompt, measured per token over reviews_lm_16..256 "
        "by the llm preset (docs/measurements/llm.md: memory per prompt token and the predicted out-of-memory point)"
    )


def step_names(settings: Settings) -> list[str]:
    return [step.name for step in steps(settings)]
