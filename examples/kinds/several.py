"""Several inputs and additional_forward_args: a series and static features, fused, with a
per-example mask of the valid time steps (series of different lengths, padded with noise).

The model is called model(series, static, valid) exactly as Captum calls it with
inputs=(series, static) and additional_forward_args=(valid,): the series and the static features
get attributions; the mask does not.
"""

import math

import torch
from torch import nn
from train import fit


class Fusion(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv1d(2, 8, 5, padding=2)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool1d(4)
        self.static = nn.Linear(4, 8)
        self.static_act = nn.ReLU()
        self.out = nn.Linear(8 * 4 + 8, 2)

    def forward(self, series: torch.Tensor, static: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        series = series * valid[:, None, :]  # padded steps carry noise: the mask removes them
        pooled = self.pool(self.act(self.conv(series))).flatten(1)
        return self.out(torch.cat([pooled, self.static_act(self.static(static))], dim=1))


def examples(n: int, length: int = 64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    t = torch.arange(length) / length
    wave = torch.sin(2 * math.pi * (2 + 3 * torch.rand(n, 1, generator=g)) * t)
    wave = torch.where(y[:, None] == 1, wave.sign(), wave)
    series = torch.stack([wave, 0.3 * torch.randn(n, length, generator=g)], dim=1)
    lengths = torch.randint(40, length + 1, (n,), generator=g)
    valid = (torch.arange(length)[None] < lengths[:, None]).float()
    series = torch.where(valid[:, None].bool(), series, torch.randn(series.shape, generator=g))
    static = torch.randn(n, 4, generator=g)
    static[:, 0] += torch.where(y == 1, 0.5, -0.5)  # a weak second cue to the label
    return (series, static, valid), y


def make():
    (series, static, valid), y = examples(256)
    model = Fusion()
    fit(model, (series, static, valid), y, nn.CrossEntropyLoss(), steps=150)
    (test_series, test_static, test_valid), test_y = examples(16, seed=1)
    return {
        "model": model,
        "inputs": (test_series, test_static),
        "additional_forward_args": (test_valid,),
        "targets": test_y,
        "baseline": (torch.zeros(1, 2, 64), torch.zeros(1, 4)),
        "background": (series[:16], static[:16]),
        "layer": "conv",
        "weights": "trained:fusion-v1",
    }
