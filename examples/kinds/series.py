"""Series (N, C, T): two-channel signals, sine against square wave, a 1-D CNN."""

import math

import torch
from torch import nn
from train import conv_classifier, fit


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
    model = conv_classifier(dims=1, channels=2, width=8, kernel=5, pooled=4)
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
