"""A single binary logit: scikit-learn's breast cancer data, one output (sigmoid), an MLP."""

import torch
from sklearn.datasets import load_breast_cancer
from torch import nn
from train import fit, mlp


def make():
    data = load_breast_cancer()
    x = torch.tensor(data.data, dtype=torch.float32)
    x = (x - x.mean(0)) / x.std(0)
    y = torch.tensor(data.target, dtype=torch.float32)[:, None]
    model = mlp(x.shape[1], 16, 1)
    fit(model, x[:500], y[:500], nn.BCEWithLogitsLoss())
    return {
        "model": model,
        "inputs": x[500:516],
        "targets": torch.zeros(16, dtype=torch.long),  # the one output
        "baseline": torch.zeros(1, x.shape[1]),
        "layer": "hidden",
        "output_kind": "single_logit",
        "weights": "trained:cancer-logit-v1",
    }
