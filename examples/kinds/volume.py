"""Volume (N, C, D, H, W): 1x8x8x8 blocks, a bright cube in the front or the back half, a 3-D CNN."""

import torch
from torch import nn
from train import conv_classifier, fit


def volumes(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = 0.1 * torch.randn(n, 1, 8, 8, 8, generator=g)
    for i in range(n):
        d = 4 * int(y[i]) + int(torch.randint(0, 2, (1,), generator=g))
        x[i, :, d : d + 3, 2:5, 2:5] += 1.0
    return x, y


def make():
    x, y = volumes(128)
    model = conv_classifier(dims=3, channels=1, width=4, kernel=3, pooled=2)
    fit(model, x, y, nn.CrossEntropyLoss(), steps=100)
    test_x, test_y = volumes(8, seed=1)
    return {
        "model": model,
        "inputs": test_x,
        "targets": test_y,
        "baseline": torch.zeros(1, 1, 8, 8, 8),
        "layer": "conv",
        "weights": "trained:volume-cnn-v1",
    }
