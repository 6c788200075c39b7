"""What the example factories beside this file share: a few seconds of full-batch Adam, and the
small ConvNd classifier of the series, image and volume examples."""

import torch
from torch import nn

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
POOL = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}


def fit(model: nn.Module, x, y: torch.Tensor, loss: nn.Module, steps: int = 300) -> nn.Module:
    """x: the inputs, or a tuple of the model's arguments."""
    torch.manual_seed(0)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    args = x if isinstance(x, tuple) else (x,)
    for _ in range(steps):
        optimiser.zero_grad()
        loss(model(*args), y).backward()
        optimiser.step()
    return model.eval()


def conv_classifier(dims: int, channels: int, width: int, kernel: int, pooled: int, classes: int = 2) -> nn.Module:
    """conv (the layer the examples explain) -> ReLU -> pooled to `pooled` per dimension -> linear."""
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("conv", CONV[dims](channels, width, kernel, padding=kernel // 2))
    model.add_module("act", nn.ReLU())
    model.add_module("pool", POOL[dims](pooled))
    model.add_module("flat", nn.Flatten())
    model.add_module("out", nn.Linear(width * pooled**dims, classes))
    return model


def mlp(features: int, hidden: int, outputs: int) -> nn.Module:
    """hidden (the layer the examples explain) -> ReLU -> out."""
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("hidden", nn.Linear(features, hidden))
    model.add_module("act", nn.ReLU())
    model.add_module("out", nn.Linear(hidden, outputs))
    return model
