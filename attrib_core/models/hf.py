"""Hugging Face models as the plain tensor-in, tensor-out modules Captum and the harness call.

`transformers` models return output objects and take keyword arguments; Captum's methods need
a module whose forward takes the tensors being attributed and returns one tensor of scores.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class Logits(nn.Module):
    """Token ids -> the model's logits. The wrapped model is the attribute `model`, so its
    layers are named `model.<its own path>` (e.g. `model.bert.embeddings`)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids).logits


class FromWordEmbeddings(nn.Module):
    """Word embeddings laid out (N, D, T) -> logits: the model from its word-embedding output on,
    so methods that interpolate their inputs (LayerConductance) have floats to interpolate,
    as in Captum's BERT tutorial. The (D, T) layout is the harness's "series" (channels, steps),
    so each token is one step and summing over D gives one score per token."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.model(inputs_embeds=embeddings.transpose(1, 2)).logits


class NextTokenLogits(nn.Module):
    """Token ids -> a causal LM's logits for the token after them, (N, vocabulary). `model` is the
    Hugging Face causal LM (what Captum's LLM wrappers take) and `tokenizer` its tokenizer, if any."""

    def __init__(self, model: nn.Module, tokenizer: Any = None) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, use_cache=False).logits[:, -1, :]
