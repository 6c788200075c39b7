"""An example plug-in workload: your own model, benchmarked without touching attrib_core.

`make_workload` trains (seeded, under a second) a small MLP on scikit-learn's wine set and
returns the workload contract as a plain mapping: the model, real held-out inputs, the
classes to explain, a baseline, and optionally a layer, feature mask and weights label.
`examples/my_preset.toml` names it as `"my_workload.py:make_workload"`; see
docs/own-models.md ("Benchmark your own model") for every key.
"""

from __future__ import annotations

import torch
from sklearn.datasets import load_wine
from sklearn.model_selection import train_test_split
from torch import nn


class WineMLP(nn.Module):
    def __init__(self, n_features: int, hidden: int, n_classes: int) -> None:
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU())
        self.out = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(x))  # logits, one column per class


def make_workload(hidden: int = 16, epochs: int = 200, seed: int = 0) -> dict:
    data = load_wine()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.3, random_state=seed, stratify=data.target
    )
    mean, std = x_train.mean(0), x_train.std(0)
    x_train = torch.as_tensor((x_train - mean) / std, dtype=torch.float32)
    x_test = torch.as_tensor((x_test - mean) / std, dtype=torch.float32)
    y_train, y_test = torch.as_tensor(y_train), torch.as_tensor(y_test)

    torch.manual_seed(seed)
    model = WineMLP(x_train.shape[1], hidden, 3)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(epochs):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(x_train), y_train).backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()

    return {
        "model": model,
        "inputs": x_test[:16],  # real, preprocessed examples (N, 13)
        "targets": y_test[:16],  # the class explained for each
        "baseline": torch.zeros(1, x_test.shape[1]),  # the training mean after standardising
        "background": x_train[:8],  # for DeepLiftShap / GradientShap
        "layer": "hidden",  # for layer and neuron methods
        "weights": f"trained:wine-mlp-h{hidden}-e{epochs}-s{seed}",
        "description": "example plug-in: MLP on scikit-learn's wine set",
        "info": {"held_out_accuracy": accuracy},
    }
