"""torchvision's resnet18, loaded with torchvision's own weights mechanism, made DeepLift-safe.

torchvision's BasicBlock calls one in-place ReLU module twice, its Bottleneck three times
(resnet50 and deeper, resnext, wide_resnet). DeepLift and GuidedBackprop
attach rules per ReLU module, so a reused module gets the wrong rule (Captum warns about
it). `distinct_relus` rebuilds every block with one non-in-place ReLU per use; the weights
are shared and the outputs are identical (checked in tests/test_workloads.py).
"""

from __future__ import annotations

import os
import urllib.error
import warnings
from pathlib import Path

import torch
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18
from torchvision.models.resnet import BasicBlock, Bottleneck

CHECKPOINT_ENV = "ATTRIB_BENCH_RESNET18_CHECKPOINT"


class DistinctReluBasicBlock(nn.Module):
    """A BasicBlock with the same weights whose two ReLUs are separate modules."""

    def __init__(self, block: BasicBlock) -> None:
        super().__init__()
        self.conv1, self.bn1 = block.conv1, block.bn1
        self.conv2, self.bn2 = block.conv2, block.bn2
        self.downsample = block.downsample
        self.relu1 = nn.ReLU()
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + identity)


class DistinctReluBottleneck(nn.Module):
    """A Bottleneck with the same weights whose three ReLUs are separate modules."""

    def __init__(self, block: Bottleneck) -> None:
        super().__init__()
        self.conv1, self.bn1 = block.conv1, block.bn1
        self.conv2, self.bn2 = block.conv2, block.bn2
        self.conv3, self.bn3 = block.conv3, block.bn3
        self.downsample = block.downsample
        self.relu1 = nn.ReLU()
        self.relu2 = nn.ReLU()
        self.relu3 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu3(out + identity)


DISTINCT_BLOCKS = {BasicBlock: DistinctReluBasicBlock, Bottleneck: DistinctReluBottleneck}


def distinct_relus(model: nn.Module) -> nn.Module:
    """Replace each residual block of a torchvision ResNet in place; the stem's single-use
    ReLU is made non-in-place. Works for every block type in DISTINCT_BLOCKS."""
    model.relu = nn.ReLU()
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        for i, block in enumerate(stage):
            stage[i] = DISTINCT_BLOCKS[type(block)](block)
    return model


def load_resnet18(checkpoint: str | os.PathLike | None = None, seed: int = 0) -> tuple[nn.Module, str]:
    """Return (model, weights label).

    Order: an explicit checkpoint (argument or `$ATTRIB_BENCH_RESNET18_CHECKPOINT`), then
    torchvision's IMAGENET1K_V1 through its cache (`$TORCH_HOME`, downloading if online).
    Offline with nothing cached: one warning and a seeded random initialisation, labelled
    `random` so no result can pass for a pretrained one.
    """
    checkpoint = checkpoint or os.environ.get(CHECKPOINT_ENV)
    if checkpoint:
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"resnet18 checkpoint {str(path)!r} does not exist")
        model = resnet18(weights=None)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model.eval(), f"checkpoint:{path.name}"
    try:
        model = resnet18(weights=ResNet18_Weights.IMAGENET1K_V1)
        return model.eval(), "imagenet1k_v1"
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        warnings.warn(
            f"resnet18: IMAGENET1K_V1 weights are not cached and cannot be downloaded ({exc}); "
            f"using a seeded random initialisation, recorded as weights='random'. Put the file in "
            f"torchvision's cache ($TORCH_HOME/hub/checkpoints) or set {CHECKPOINT_ENV}.",
            stacklevel=2,
        )
        torch.manual_seed(seed)
        return resnet18(weights=None).eval(), "random"
