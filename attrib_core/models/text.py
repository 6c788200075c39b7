"""A small sentence classifier over word embeddings, shaped like the Captum IMDB tutorial's CNN.

Token ids -> embedding (the pad token's row is fixed at zero, so an all-pad reference is the
zero embedding) -> parallel 1-D convolutions of widths 3, 4, 5 -> max over time -> dropout
-> linear to two logits (negative, positive). Each ReLU is its own module, used once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

PAD_ID = 0
UNKNOWN_ID = 1


class SentenceCNN(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int = 50,
        n_filters: int = 32,
        widths: Sequence[int] = (3, 4, 5),
        n_classes: int = 2,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD_ID)
        self.convs = nn.ModuleList(nn.Conv1d(embedding_dim, n_filters, w) for w in widths)
        self.relus = nn.ModuleList(nn.ReLU() for _ in widths)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(n_filters * len(widths), n_classes)

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        x = self.embedding(token_ids).transpose(1, 2)  # (B, D, T)
        pooled = [relu(conv(x)).amax(dim=2) for conv, relu in zip(self.convs, self.relus, strict=True)]
        return self.fc(self.dropout(torch.cat(pooled, dim=1)))
