"""A few seconds of full-batch Adam, shared by the example factories beside it."""

import torch
from torch import nn


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: nn.Module, steps: int = 300) -> nn.Module:
    torch.manual_seed(0)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        optimiser.zero_grad()
        loss(model(x), y).backward()
        optimiser.step()
    return model.eval()
