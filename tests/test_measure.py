"""Tests for attrib_core.measure: memory readings checked against known allocations and
against how Captum's batching knobs must move them; timers, calibration, environment."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

from attrib_core.devices import check_device
from attrib_core.measure import (
    CPU_METHOD,
    CUDA_METHOD,
    MemoryReading,
    calibrate,
    environment,
    peak_memory,
    set_threads,
    synchronize,
    synchronized,
    thread_counts,
)
from attrib_core.run import RunConfig, prepare

MiB = 1024 * 1024
HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="CUDA is not available on this machine")


def allocate_256_mib(device: str = "cpu") -> None:
    x = torch.empty(64 * MiB, dtype=torch.float32, device=device)  # 64 Mi floats = 256 MiB
    x.fill_(1.0)
    del x


# --- devices ----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["gpu", "CPU", "cuda:x", "tpu"])
@pytest.mark.parametrize("call", [peak_memory, synchronized, synchronize])
def test_bad_device_is_named_with_valid_choices(call, bad):
    args = (allocate_256_mib, bad) if call is not synchronize else (bad,)
    with pytest.raises(ValueError, match=rf"'{bad}'.*(valid|available): cpu"):
        call(*args)


@pytest.mark.skipif(HAS_CUDA, reason="checks the message on machines without CUDA")
def test_cuda_without_cuda_is_a_value_error():
    with pytest.raises(ValueError, match=r"'cuda'.*not available.*cpu"):
        peak_memory(allocate_256_mib, "cuda")


def test_as_device_accepts_torch_devices():
    assert check_device(torch.device("cpu")) == torch.device("cpu")


# --- peak memory ------------------------------------------------------------------------


def test_cpu_peak_of_a_known_256_mib_tensor():
    reading = peak_memory(allocate_256_mib, "cpu")
    assert isinstance(reading, MemoryReading)
    assert reading.method == CPU_METHOD
    assert abs(reading.peak_bytes - 256 * MiB) <= 0.1 * 256 * MiB
    assert reading.retained_bytes == 0


def test_cpu_peak_counts_only_the_call_and_sees_what_it_keeps():
    held = [torch.ones(32 * MiB // 4)]  # 32 MiB already held: not part of the call's peak

    def keep_16_mib():
        held.append(torch.ones(4 * MiB))
        return torch.ones(4 * MiB)  # the result is dropped by peak_memory: peak, not retained

    reading = peak_memory(keep_16_mib, "cpu")
    assert reading.peak_bytes == pytest.approx(32 * MiB, rel=0.01)
    assert reading.retained_bytes == pytest.approx(16 * MiB, rel=0.01)
    assert len(held) == 2


def test_cpu_peak_when_fn_raises_stops_the_profiler():
    def fails():
        x = torch.ones(MiB)
        raise KeyError(f"boom after {x.numel()}")

    with pytest.raises(KeyError, match="boom"):
        peak_memory(fails, "cpu")
    assert not torch.autograd._profiler_enabled()
    assert peak_memory(allocate_256_mib, "cpu").peak_bytes == 256 * MiB  # and it still works


def test_cpu_peak_refuses_to_nest_inside_a_running_profiler():
    with torch.autograd.profiler.profile(), pytest.raises(RuntimeError, match="already running"):
        peak_memory(allocate_256_mib, "cpu")


def test_cpu_peak_sees_autograd_allocations():
    w = torch.randn(1024, 1024, requires_grad=True)

    def backward():
        x = torch.randn(256, 1024, requires_grad=True)
        (x @ w).relu().sum().backward()  # fills w.grad: 4 MiB that outlive the call

    reading = peak_memory(backward, "cpu")
    assert reading.peak_bytes >= 4 * MiB
    assert reading.retained_bytes == 1024 * 1024 * 4


@needs_cuda
def test_cuda_peak_of_a_known_256_mib_tensor():
    reading = peak_memory(lambda: allocate_256_mib("cuda"), "cuda")
    assert reading.method == CUDA_METHOD
    assert abs(reading.peak_bytes - 256 * MiB) <= 0.1 * 256 * MiB
    assert reading.retained_bytes == 0
    assert reading.baseline_bytes is not None and reading.baseline_bytes >= 0


@needs_cuda
def test_cuda_peak_when_fn_raises():
    def fails():
        torch.ones(MiB, device="cuda")
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        peak_memory(fails, "cuda")
    assert peak_memory(lambda: allocate_256_mib("cuda"), "cuda").peak_bytes == pytest.approx(256 * MiB, rel=0.1)


def ig_peak_bytes(n_steps: int, internal_batch_size: int) -> int:
    prepared = prepare(
        RunConfig(
            "IntegratedGradients",
            "digits_cnn",
            batch_size=4,
            knobs={"n_steps": n_steps, "internal_batch_size": internal_batch_size},
        )
    )
    return peak_memory(prepared, "cpu").peak_bytes


def test_ig_peak_grows_with_internal_batch_size():
    peaks = [ig_peak_bytes(16, size) for size in (4, 16, 64)]  # 16, 4, 1 chunks of 4 x 16 rows
    # a chunk's activations and gradients scale with its rows: 4x the rows, ~4x the bytes
    assert peaks[1] > 3 * peaks[0]
    assert peaks[2] > 3 * peaks[1]


def test_ig_peak_is_flat_in_n_steps_at_fixed_internal_batch_size():
    peaks = [ig_peak_bytes(n_steps, 32) for n_steps in (16, 64, 256)]  # 2, 8, 32 chunks of 32 rows
    assert max(peaks) <= 1.1 * min(peaks), peaks


# --- timing -----------------------------------------------------------------------------


def test_synchronized_returns_fns_result_and_passes_arguments():
    wrapped = synchronized(lambda a, b=0: a + b, "cpu")
    assert wrapped(2, b=3) == 5


@needs_cuda
def test_synchronized_on_cuda_waits_and_returns_result():
    x = torch.randn(1024, 1024, device="cuda")
    wrapped = synchronized(lambda: x @ x, "cuda")
    out = wrapped()
    assert torch.cuda.current_stream().query()  # nothing left queued
    assert out.shape == (1024, 1024)


def test_set_threads_sets_and_reports():
    before = thread_counts()
    try:
        assert set_threads(1, interop=before["interop_threads"]) == {
            "intra_op_threads": 1,
            "interop_threads": before["interop_threads"],
        }
    finally:
        set_threads(before["intra_op_threads"])
    assert thread_counts() == before


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_set_threads_rejects_bad_counts(bad):
    with pytest.raises(ValueError, match=rf"n={bad!r}.*>= 1"):
        set_threads(bad)


# --- calibration ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return prepare(RunConfig("IntegratedGradients", "digits_cnn", batch_size=8))


CALIBRATION_KEYS = {
    "forward_s_per_sample",
    "forward_backward_s_per_sample",
    "forward_spread",
    "forward_backward_spread",
    "repeats",
    "batch_size",
    "device",
    "backward_to",
}


@pytest.mark.parametrize("target", ["tensor", 3, None])
def test_calibrate_returns_positive_times_and_leaves_no_gradients(digits, target):
    model = digits.workload_model
    target = digits.kwargs["target"] if target == "tensor" else target
    result = calibrate(model, digits.inputs, target, "cpu", repeats=3)
    assert set(result) == CALIBRATION_KEYS
    for key in ("forward_s_per_sample", "forward_backward_s_per_sample"):
        assert math.isfinite(result[key]) and result[key] > 0
    assert result["repeats"] == 3 and result["batch_size"] == 8 and result["device"] == "cpu"
    assert result["backward_to"] == "inputs"  # float inputs; token ids: tests/test_text.py
    assert all(p.grad is None for p in model.parameters())
    assert not digits.inputs.requires_grad
    assert not model.training


@pytest.mark.parametrize(("name", "bad"), [("repeats", 0), ("warmup", -1)])
def test_calibrate_rejects_bad_counts(digits, name, bad):
    with pytest.raises(ValueError, match=rf"{name}={bad}"):
        calibrate(digits.workload_model, digits.inputs, None, "cpu", **{name: bad})


@needs_cuda
def test_calibrate_on_cuda(digits):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).cuda()
    result = calibrate(model, digits.inputs, digits.kwargs["target"], "cuda", repeats=3)
    assert result["device"].startswith("cuda") and result["forward_backward_s_per_sample"] > 0


# --- environment ------------------------------------------------------------------------


def test_environment_is_json_able_with_typed_keys():
    env = environment()
    assert json.loads(json.dumps(env)) == env
    types = {
        "cpu_model": (str, type(None)),
        "cpu_physical_cores": (int, type(None)),
        "cpu_logical_cores": (int, type(None)),
        "cpu_usable_cores": (int, type(None)),
        "cpu_flags": (dict, type(None)),
        "memory_total_bytes": (int, type(None)),
        "os": str,
        "platform": str,
        "python_version": str,
        "torch_version": str,
        "torchvision_version": (str, type(None)),
        "captum_version": str,
        "numpy_version": str,
        "torch_cuda_version": (str, type(None)),
        "cudnn_version": (int, type(None)),
        "cuda_driver_version": (str, type(None)),
        "gpus": list,
        "intra_op_threads": int,
        "interop_threads": int,
    }
    for key, expected in types.items():
        assert isinstance(env[key], expected), (key, env[key])
    assert env["torch_version"] == torch.__version__
    assert env["intra_op_threads"] == torch.get_num_threads()
    if HAS_CUDA:
        assert env["gpus"] and all(gpu["name"] and gpu["memory_total_bytes"] > 0 for gpu in env["gpus"])
    else:
        assert env["gpus"] == [] and env["cudnn_version"] is None


def test_the_profilers_native_chatter_is_dropped_and_other_stderr_kept(capfd):
    from attrib_core.measure import without_profiler_chatter

    with without_profiler_chatter():
        os.write(2, b"USDT:2026-12-06 06:21:43 12918:12918 SyncActivityProfilerHandler.cpp:39] profiler_start\n")
        os.write(2, b"STAGE:2026-12-06 06:21:48 12938:12938 SyncActivityProfilerHandler.cpp:38] Completed Stage\n")
        os.write(2, b"a warning of the user's own model\n")
    assert capfd.readouterr().err == "a warning of the user's own model\n"
