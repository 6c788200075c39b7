"""Measurement: timers that are right on CUDA, peak memory of one call, the model's own pass
times (calibration), and the environment a result was measured in.

CPU peak memory comes from the torch profiler's memory events (``profile_memory=True``):
every allocation and free made through c10's CPU allocator, in time order; the peak is the
maximum of their running sum. Why this one:

- accuracy: it counts the bytes torch asked for, the quantity CUDA's `max_memory_allocated`
  counts, so CPU and GPU peaks mean the same thing. It is exact and repeats to the byte
  (a 256 MiB tensor reads 268435456 B; IG on resnet18, batch 1, 16 steps reads 350.5 MiB
  every time). Peak RSS, even reset in-process through /proc/self/clear_refs, read
  202-257 MiB for that call and ~0 for IG on digits_cnn (1.8 MiB here): glibc reuses freed
  heap and untouched pages do not count. A subprocess per reading would also pay a torch
  import and a model load.
- overhead: nothing new to install (memray would be a native dependency). The profiler
  records op names and allocator events only (no shapes, no stacks): the IG call above went
  from 1.51 s to 1.61 s (min of 9, one thread), plus a full gc.collect() (~0.17 s with
  captum loaded) before each reading. Kineto starts up on first use in a process (0.2-2 s).
  Both are why memory is read in its own pass, never in a timed round.
- what it misses: memory that does not pass through c10's allocator (BLAS / oneDNN scratch
  they allocate themselves, OpenMP thread stacks, Python objects) and tensors made on threads
  fn starts itself (a 256 MiB tensor in a threading.Thread reads 0; CPU autograd runs on the
  calling thread, so it is seen). So it is a lower bound on what the process adds,
  and the right measure of what a method's batching knobs change.
"""

from __future__ import annotations

import functools
import gc
import importlib.metadata
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn
from torch.autograd import DeviceType

from attrib_core import env_lock
from attrib_core.devices import check_device

T = TypeVar("T")

CPU_METHOD = "torch_profiler_cpu_allocations"
CUDA_METHOD = "cuda_max_memory_allocated"
SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8")
# what the profiler itself counts as CPU memory (oneDNN / ideep tensors report their own type)
CPU_DEVICE_TYPES = (DeviceType.CPU, DeviceType.MKLDNN, DeviceType.IDEEP)
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


# --- timing -----------------------------------------------------------------------------


def synchronize(device: str | torch.device) -> None:
    """Wait until every kernel queued on `device` has finished (a no-op on the CPU)."""
    dev = check_device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def synchronized(fn: Callable[..., T], device: str | torch.device) -> Callable[..., T]:
    """`fn`, made to return only once its kernels have run, so a timer around it sees them.

    CUDA calls return when kernels are queued; without this a benchmark times the launch.
    Each call ends synchronised, so the next call's timer starts on an idle device; call
    `synchronize` once before the first round. On the CPU `fn` itself comes back (no cost).
    """
    dev = check_device(device)
    if dev.type != "cuda":
        return fn

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> T:
        result = fn(*args, **kwargs)
        torch.cuda.synchronize(dev)
        return result

    return call


def thread_counts() -> dict[str, int]:
    """torch's intra-op and inter-op thread pools, which every CPU timing depends on."""
    return {"intra_op_threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads()}


@contextmanager
def threads_for(n: int) -> Iterator[None]:
    """torch's intra-op threads set to `n` inside, the previous count restored after (tune runs each
    configuration on its own thread count)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def set_threads(n: int, interop: int | None = None) -> dict[str, int]:
    """Set torch's intra-op threads (and inter-op threads, if given); return `thread_counts()`.

    torch allows the inter-op pool to be sized only before its first inter-op work, so asking
    for its current size is accepted and any other size then fails with a RuntimeError.
    """
    for name, value in (("n", n), ("interop", interop)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"set_threads: {name}={value!r} is not valid; needs an integer >= 1")
    torch.set_num_threads(n)
    current = torch.get_num_interop_threads()
    if interop is not None and interop != current:
        try:
            torch.set_num_interop_threads(interop)
        except RuntimeError as err:
            raise RuntimeError(
                f"set_threads: cannot change inter-op threads to {interop} (now {current}); torch allows it "
                "only before any inter-op parallel work, so set it at the start of the process"
            ) from err
    return thread_counts()


# --- peak memory ------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryReading:
    """Memory one call of a function needed, beyond what was held when it started."""

    peak_bytes: int  # highest bytes held during the call, minus those held before it
    method: str  # how it was measured: CPU_METHOD or CUDA_METHOD
    retained_bytes: int  # still held after the call, its return value dropped: caches or leaks
    baseline_bytes: int | None  # held before the call; None where the method cannot see it (CPU)


def peak_memory(fn: Callable[[], object], device: str | torch.device) -> MemoryReading:
    """Peak memory of one call `fn()` on `device`; run it in its own pass, not a timed one.

    On CUDA only that device's allocator is read, not host memory. Exceptions from `fn`
    propagate, with the profiler (CPU) already stopped.
    """
    dev = check_device(device)
    gc.collect()  # so a collection of earlier garbage inside fn cannot hide part of its peak
    if dev.type == "cuda":
        return _cuda_peak(fn, dev)
    return _cpu_peak(fn)


def _cuda_peak(fn: Callable[[], object], dev: torch.device) -> MemoryReading:
    torch.cuda.synchronize(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    before = torch.cuda.memory_allocated(dev)
    fn()  # the result is dropped here, so it counts in the peak but not as retained
    torch.cuda.synchronize(dev)
    peak = torch.cuda.max_memory_allocated(dev) - before
    return MemoryReading(peak, CUDA_METHOD, torch.cuda.memory_allocated(dev) - before, before)


# What the profiler's native engine (kineto) writes to file descriptor 2 at every start and stop,
# whatever KINETO_LOG_LEVEL says: "USDT:... profiler_start", "STAGE:... Completed Stage: ...", and on
# machines without a GPU "ERROR:... gpuGetDeviceCount failed".
PROFILER_CHATTER = re.compile(r"^(USDT|STAGE|ERROR|WARNING|INFO):\S+ \S+ \d+:\d+ \w+\.cpp:\d+\]")


@contextmanager
def without_profiler_chatter() -> Iterator[None]:
    """Keep the console for the user: native writes to stderr inside go to a file, and any line
    that is not the profiler's own chatter is passed on afterwards."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            kept = [
                line for line in sink.read().decode(errors="replace").splitlines() if not PROFILER_CHATTER.match(line)
            ]
            if kept:
                print("\n".join(kept), file=sys.stderr)


def _cpu_peak(fn: Callable[[], object]) -> MemoryReading:
    if torch.autograd._profiler_enabled():
        raise RuntimeError(
            "peak_memory on the CPU uses the torch profiler, and one is already running; call it outside"
        )
    profiler = torch.autograd.profiler.profile(use_cpu=True, profile_memory=True)
    with without_profiler_chatter(), profiler:  # __exit__ stops the profiler even when fn raises
        fn()
    events = [
        (event.start_ns(), event.nbytes())
        for event in profiler.kineto_results.events()
        if event.name() == "[memory]" and event.device_type() in CPU_DEVICE_TYPES
    ]
    held = peak = 0
    for _, nbytes in sorted(events, key=lambda e: e[0]):  # stable: same-instant events keep their order
        held += nbytes
        peak = max(peak, held)
    return MemoryReading(peak, CPU_METHOD, held, None)


# --- calibration ------------------------------------------------------------------------


def calibrate(
    model: nn.Module,
    inputs: torch.Tensor,
    target: torch.Tensor | int | None,
    device: str | torch.device,
    repeats: int = 5,
    warmup: int = 1,
) -> dict[str, Any]:
    """The model's own per-sample forward and forward+backward time on this device and batch.

    The yardstick for efficiency: passes x per-sample pass time / measured time. Forward runs
    under no_grad, as perturbation methods run it; forward+backward takes the gradient of the
    target logits (summed) w.r.t. the inputs only, as gradient methods do, so parameters'
    .grad stay untouched; integer inputs (token ids) have no gradient, so there it is taken
    w.r.t. the parameters (returned, not stored in .grad) and recorded in "backward_to".
    Medians of `repeats` after `warmup` calls of each.
    """
    for name, value, least in (("repeats", repeats, 1), ("warmup", warmup, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"calibrate: {name}={value!r} is not valid; needs an integer >= {least}")
    dev = check_device(device)
    x = inputs.detach().to(dev)
    if isinstance(target, torch.Tensor):
        target = target.to(dev)

    def selected(out: torch.Tensor) -> torch.Tensor:
        if target is None:
            return out.sum()
        if isinstance(target, int):
            return out[:, target].sum()
        return out.gather(1, target.reshape(-1, 1).expand(out.shape[0], 1)).sum()  # (N,) or one class

    def forward() -> None:
        with torch.no_grad():
            model(x)

    parameters = [p for p in model.parameters() if p.requires_grad]

    def forward_backward() -> None:
        if not x.is_floating_point():  # token ids have no gradient: differentiate the parameters
            torch.autograd.grad(selected(model(x)), parameters)
            return
        leaf = x.detach().requires_grad_(True)
        torch.autograd.grad(selected(model(leaf)), leaf)

    forward_s = _median_times(synchronized(forward, dev), repeats, warmup)
    forward_backward_s = _median_times(synchronized(forward_backward, dev), repeats, warmup)
    batch_size = x.shape[0]
    return {
        "forward_s_per_sample": forward_s["median_s"] / batch_size,
        "forward_backward_s_per_sample": forward_backward_s["median_s"] / batch_size,
        "forward_spread": forward_s["spread"],
        "forward_backward_spread": forward_backward_s["spread"],
        "backward_to": "inputs" if x.is_floating_point() else "parameters (integer inputs)",
        "repeats": repeats,
        "batch_size": batch_size,
        "device": str(dev),
    }


def _median_times(fn: Callable[[], object], repeats: int, warmup: int) -> dict[str, float]:
    """Median wall time of `fn` and its spread ((max - min) / median), so noise shows."""
    for _ in range(warmup):
        fn()
    times_s = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times_s.append(time.perf_counter() - start)
    median_s = statistics.median(times_s)
    return {"median_s": median_s, "spread": (max(times_s) - min(times_s)) / median_s if median_s > 0 else 0.0}


# --- environment ------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    """What a result was measured on, as a JSON-able dict (None / [] where unknown or absent)."""
    cpuinfo = _cpuinfo()
    first = cpuinfo[0] if cpuinfo else {}
    flags = set(first.get("flags", "").split())
    gpus = _gpus()
    return {
        "cpu_model": first.get("model name") or platform.processor() or None,
        "cpu_physical_cores": _physical_cores(cpuinfo),
        "cpu_logical_cores": os.cpu_count(),
        "cpu_usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_flags": {flag: flag in flags for flag in SPEED_FLAGS} if flags else None,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "memory_total_bytes": _memory_total_bytes(),
        "os": platform.system(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python_version": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "torch_version": torch.__version__,
        "torchvision_version": _version("torchvision"),
        "captum_version": _version("captum"),
        "numpy_version": _version("numpy"),
        "torch_cuda_version": torch.version.cuda,  # the CUDA torch was built with; None on CPU builds
        "cudnn_version": torch.backends.cudnn.version() if gpus else None,  # loading it costs ~0.2 s
        "cuda_driver_version": _cuda_driver_version() if gpus else None,
        "gpus": gpus,
        "mkldnn_available": torch.backends.mkldnn.is_available(),
        "mkl_available": torch.backends.mkl.is_available(),
        **thread_counts(),
        "thread_env": {name: os.environ.get(name) for name in THREAD_ENV_VARS},
        **env_lock.lock_record(),  # lock_file, lock_sha256, lock_mismatches: which pinned environment
    }


def machine_label() -> str:
    """The machine's name in results file names: the GPU's, else the CPU model and its cores."""
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
    else:
        name = f"{environment()['cpu_model'] or 'cpu'}-{os.cpu_count()}c"
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")


def _cpuinfo() -> list[dict[str, str]]:
    """One dict per logical processor listed in /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            blocks = f.read().strip().split("\n\n")
    except OSError:
        return []
    return [
        {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in block.splitlines())}
        for block in blocks
    ]


def _physical_cores(cpuinfo: list[dict[str, str]]) -> int | None:
    """Distinct (package, core) pairs; None where /proc/cpuinfo does not list them."""
    cores = {(cpu.get("physical id"), cpu["core id"]) for cpu in cpuinfo if "core id" in cpu}
    return len(cores) or None


def _memory_total_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not a POSIX system that reports it
        return None


def _version(package: str) -> str | None:
    module = sys.modules.get(package)
    if module is not None and hasattr(module, "__version__"):
        return str(module.__version__)
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _gpus() -> list[dict[str, Any]]:
    if not torch.cuda.is_available():
        return []
    gpus = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        gpus.append(
            {
                "name": props.name,
                "memory_total_bytes": int(props.total_memory),
                "capability": f"{props.major}.{props.minor}",
            }
        )
    return gpus


def _cuda_driver_version() -> str | None:
    """From NVML when its Python binding is installed; torch does not expose it."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        pynvml.nvmlShutdown()
    except Exception:  # NVML present but unusable (container without the library): not fatal
        return None
    return version.decode() if isinstance(version, bytes) else str(version)
