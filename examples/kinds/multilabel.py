"""Multi-label: 12 features, three labels that may hold together (one logit each, sigmoid), an MLP."""

import torch
from torch import nn
from train import fit, mlp


def data(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 12, generator=g)
    labels = torch.stack([x[:, 0] + x[:, 1] > 0, x[:, 4] > 0.5, x[:, 8] - x[:, 9] > 0], dim=1)
    return x, labels.float()


def make():
    x, y = data(512)
    model = mlp(12, 16, 3)
    fit(model, x, y, nn.BCEWithLogitsLoss())
    test_x, _ = data(16, seed=1)
    return {
        "model": model,
        "inputs": test_x,
        "targets": torch.arange(16) % 3,  # the label each example's map explains
        "baseline": torch.zeros(1, 12),
        "layer": "hidden",
        "output_kind": "multi_label",
        "weights": "trained:multilabel-mlp-v1",
    }
