"""Regression: scikit-learn's diabetes data, one continuous output (target 0 = that output)."""

import torch
from sklearn.datasets import load_diabetes
from torch import nn
from train import fit, mlp


def make():
    data = load_diabetes()
    x = torch.tensor(data.data, dtype=torch.float32)
    x = (x - x.mean(0)) / x.std(0)
    y = torch.tensor(data.target, dtype=torch.float32)[:, None]
    y = (y - y.mean()) / y.std()
    model = mlp(x.shape[1], 16, 1)
    fit(model, x[:400], y[:400], nn.MSELoss())
    return {
        "model": model,
        "inputs": x[400:416],
        "targets": torch.zeros(16, dtype=torch.long),
        "baseline": torch.zeros(1, x.shape[1]),
        "layer": "hidden",
        "output_kind": "regression",
        "weights": "trained:diabetes-mlp-v1",
    }
