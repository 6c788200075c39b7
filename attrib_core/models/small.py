"""The two small models trained here on data shipped with scikit-learn.

Every ReLU is its own module, used once: DeepLift and GuidedBackprop attach their rules to
ReLU modules, and a module reused twice would get one rule for two places.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


class DigitsCNN(nn.Module):
    """A small CNN for 8x8 handwritten digits (1 channel, 10 classes)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(32 * 4 * 4, 64)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu2(self.conv2(self.relu1(self.conv1(x)))))
        return self.fc2(self.relu3(self.fc1(x.flatten(1))))


class TabularMLP(nn.Module):
    """An MLP for standardised tabular features."""

    def __init__(self, n_features: int, n_classes: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(n_features, 64)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Linear(64, 32)
        self.relu2 = nn.ReLU()
        self.fc3 = nn.Linear(32, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.relu2(self.fc2(self.relu1(self.fc1(x)))))


@dataclass(frozen=True)
class TrainingRecipe:
    """Everything that determines the trained weights; its hash keys the cache."""

    epochs: int
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0


def as_model_inputs(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Integer arrays (token ids) stay int64; anything else becomes float32."""
    t = torch.as_tensor(x)
    return t.long() if not (t.is_floating_point() or t.is_complex()) else t.float()


def shuffled_epochs(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    optimiser: torch.optim.Optimizer,
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
    schedule: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> None:
    """Cross-entropy minibatch training, each epoch in an order drawn from `generator`: the one
    loop every model trained here uses (the caller picks optimiser, schedule and threads)."""
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            optimiser.step()
            if schedule is not None:
                schedule.step()


def train_classifier(model: nn.Module, x_train: np.ndarray, y_train: np.ndarray, recipe: TrainingRecipe) -> nn.Module:
    """Full-batch-shuffled Adam training, seeded, single-threaded so it is reproducible."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        generator = torch.Generator().manual_seed(recipe.seed)
        x = as_model_inputs(x_train)
        y = torch.as_tensor(y_train, dtype=torch.long)
        optimiser = torch.optim.Adam(model.parameters(), lr=recipe.learning_rate)
        shuffled_epochs(model, x, y, optimiser, recipe.epochs, recipe.batch_size, generator)
    finally:
        torch.set_num_threads(threads)
    model.eval()
    for p in model.parameters():
        p.grad = None
    return model


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        pred = model(as_model_inputs(x)).argmax(1).numpy()
    return float((pred == y).mean())
