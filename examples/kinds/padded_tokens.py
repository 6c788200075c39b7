"""Token ids with an attention mask: sentences of different lengths padded to one length, an
embedding, and a masked mean. The mask goes in as additional_forward_args: it is not
attributed, and each example keeps its own."""

import torch
from torch import nn
from train import fit

VOCAB, LENGTH, PAD = 50, 16, 0


class MaskedBag(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embedding = nn.Embedding(VOCAB, 8)
        self.act = nn.ReLU()
        self.out = nn.Linear(8, 2)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        vectors = self.act(self.embedding(ids)) * mask[..., None]
        return self.out(vectors.sum(1) / mask.sum(1, keepdim=True).clamp_min(1))


def sentences(n: int, seed: int = 0):
    """Label 1 when a word from 1-9 appears; the pad positions hold random ids the mask hides."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, VOCAB, (n, LENGTH), generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    where = torch.randint(0, 6, (n,), generator=g)
    ids[y == 1, where[y == 1]] = torch.randint(1, 10, (int((y == 1).sum()),), generator=g)
    lengths = torch.randint(6, LENGTH + 1, (n,), generator=g)
    mask = (torch.arange(LENGTH)[None] < lengths[:, None]).float()
    return ids, mask, y


def make():
    ids, mask, y = sentences(512)
    model = MaskedBag()
    fit(model, (ids, mask), y, nn.CrossEntropyLoss(), steps=200)
    test_ids, test_mask, test_y = sentences(16, seed=1)
    return {
        "model": model,
        "inputs": test_ids,
        "additional_forward_args": (test_mask,),
        "targets": test_y,
        "baseline": torch.full((1, LENGTH), PAD),
        "background": ids[:8],
        "layer": "embedding",
        "weights": "trained:masked-bag-v1",
    }
