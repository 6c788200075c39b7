"""Image (N, C, H, W): 3x16x16 pictures, a bright square in the left or the right half, a small CNN."""

import torch
from torch import nn
from train import conv_classifier, fit


def pictures(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = 0.1 * torch.randn(n, 3, 16, 16, generator=g)
    for i in range(n):
        top = int(torch.randint(0, 11, (1,), generator=g))
        left = int(torch.randint(0, 3, (1,), generator=g)) + 8 * int(y[i])
        x[i, :, top : top + 5, left : left + 5] += 1.0
    return x, y


def make():
    x, y = pictures(256)
    model = conv_classifier(dims=2, channels=3, width=8, kernel=3, pooled=2)
    fit(model, x, y, nn.CrossEntropyLoss(), steps=150)
    test_x, test_y = pictures(16, seed=1)
    return {
        "model": model,
        "inputs": test_x,
        "targets": test_y,
        "baseline": torch.zeros(1, 3, 16, 16),
        "background": x[:16],
        "layer": "conv",
        "weights": "trained:image-cnn-v1",
    }
