"""Tabular (N, F): scikit-learn's wine data, three classes, a small MLP."""

import torch
from sklearn.datasets import load_wine
from torch import nn
from train import fit, mlp


def make(hidden: int = 16):
    data = load_wine()
    x = torch.tensor(data.data, dtype=torch.float32)
    x = (x - x.mean(0)) / x.std(0)
    y = torch.tensor(data.target)
    torch.manual_seed(0)
    order = torch.randperm(len(x))
    train, test = order[:140], order[140:156]
    model = mlp(x.shape[1], hidden, 3)
    fit(model, x[train], y[train], nn.CrossEntropyLoss())
    return {
        "model": model,
        "inputs": x[test],
        "targets": y[test],
        "baseline": torch.zeros(1, x.shape[1]),
        "background": x[train[:16]],
        "layer": "hidden",
        "weights": "trained:wine-mlp-v1",
    }
