"""Device names: which exist here, and a check that names the bad one and the valid ones.

Its own module so measurement and the runner can both use it without importing Captum.
"""

from __future__ import annotations

import re

import torch

DEVICE_PATTERN = re.compile(r"cpu|cuda(:\d+)?")


def available_devices() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def check_device(device: str | torch.device) -> torch.device:
    """A torch.device for a valid, present device; ValueError naming it and the choices otherwise."""
    name = str(device)
    if not DEVICE_PATTERN.fullmatch(name):
        raise ValueError(f"unknown device {name!r}; valid: cpu, cuda, cuda:N")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available here; available: cpu")
        count = torch.cuda.device_count()
        if ":" in name and int(name.split(":")[1]) >= count:
            valid = ", ".join(f"cuda:{i}" for i in range(count))
            raise ValueError(f"device {name!r} does not exist; this machine has {valid}")
    return torch.device(name)
