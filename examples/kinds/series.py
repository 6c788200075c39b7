"""Series (N, C, T): two-channel signals, sine against square wave, a 1-D CNN."""

import math

import torch
from torch import nn
from train import fit


def signals(n: int, length: int = 64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    t = torch.arange(length) / length
    freq = 2 + 3 * torch.rand(n, 1, generator=g)
    wave = torch.sin(2 * math.pi * freq * t)
    wave = torch.where(y[:, None] == 1, wave.sign(), wave)
    x = torch.stack([wave, 0.3 * torch.randn(n, length, generator=g)], dim=1)
    return x, y


def make():
    x, y = signals(256)
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("conv", nn.Conv1d(2, 8, 5, padding=2))
    model.add_module("act", nn.ReLU())
    model.add_module("pool", nn.AdaptiveAvgPool1d(4))
    model.add_module("flat", nn.Flatten())
    model.add_module("out", nn.Linear(32, 2))
    fit(model, x, y, nn.CrossEntropyLoss(), steps=150)
    test_x, test_y = signals(16, seed=1)
    return {
        "model": model,
        "inputs": test_x,
        "targets": test_y,
        "baseline": torch.zeros(1, 2, 64),
        "background": x[:16],
        "layer": "conv",
        "weights": "trained:series-cnn-v1",
    }
