"""Out of memory: the device's own error on CUDA, and on the CPU (dry run) a cap the check imposes.

The CPU has no allocator limit to hit, so the dry run reads a call's peak with the harness's CPU
method and treats a peak over the cap as not fitting. Its error says it is a stand-in, so no
dry-run line can pass for a GPU out-of-memory.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from attrib_core import measure

DRY_RUN_LABEL = "dry-run stand-in for out-of-memory"


class DryRunMemoryCapExceeded(MemoryError):
    """A CPU call whose peak passed the cap the dry run imposes (not a real out-of-memory)."""


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, (torch.cuda.OutOfMemoryError, DryRunMemoryCapExceeded))


def capped_peak(fn: Callable[[], object], device: str, cap_bytes: int | None) -> measure.MemoryReading:
    """measure.peak_memory of `fn()`; on the CPU a peak over `cap_bytes` raises the stand-in."""
    reading = measure.peak_memory(fn, device)
    if cap_bytes is not None and device == "cpu" and reading.peak_bytes > cap_bytes:
        raise DryRunMemoryCapExceeded(
            f"{DRY_RUN_LABEL}: peak {reading.peak_bytes} B is over the imposed cap of {cap_bytes} B"
        )
    return reading
