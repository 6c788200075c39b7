"""Per-example noise for the perturbation metrics: the same example gets the same draws
whatever the batch size, rows per forward or Captum chunking.

Sample j of an example is drawn from its own generator, seeded by a hash of (the cell's
seed, the metric's name, the example's values, j). Batching knobs only group rows into
calls, so they cannot move a fidelity number; and the noise is drawn on the CPU, so a CPU
cell and a CUDA cell perturb an example alike. Two copies of one example (a batch that
cycles through the inputs) get the same draws, as the same example should.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import torch

DISTRIBUTIONS: dict[str, Callable[..., torch.Tensor]] = {"normal": torch.randn, "uniform": torch.rand}


def example_digest(example: torch.Tensor) -> str:
    """Hash of one example's dtype, shape and values (memory layout does not matter)."""
    t = example.detach().to("cpu", torch.float32).contiguous()
    digest = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def sample_seed(cell_seed: int, purpose: str, digest: str, sample: int) -> int:
    """A 63-bit generator seed for sample `sample` of the example with `digest`."""
    text = f"{cell_seed}:{purpose}:{digest}:{sample}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") >> 1


class ExampleNoise:
    """Draws for (example index, sample index) pairs of a batch, independent of how they are grouped."""

    def __init__(self, inputs: torch.Tensor, cell_seed: int, purpose: str, distribution: str = "normal") -> None:
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"unknown noise distribution {distribution!r}; valid: {', '.join(DISTRIBUTIONS)}")
        self.shape = tuple(inputs.shape[1:])
        self.device = inputs.device
        self.dtype = inputs.dtype
        self.cell_seed = cell_seed
        self.purpose = purpose
        self.draw_fn = DISTRIBUTIONS[distribution]
        self.digests = [example_digest(x) for x in inputs]

    def draw(self, pairs: Sequence[tuple[int, int]]) -> torch.Tensor:
        """(len(pairs), *example shape) draws, one per (example, sample) pair, on the inputs' device."""
        rows = []
        for example, sample in pairs:
            generator = torch.Generator().manual_seed(
                sample_seed(self.cell_seed, self.purpose, self.digests[example], sample)
            )
            rows.append(self.draw_fn(self.shape, generator=generator))
        return torch.stack(rows).to(self.device, self.dtype)


class CaptumSampleCursor:
    """Tells a Captum perturb_func which (example, sample) each row of its input is.

    Captum's infidelity and sensitivity_max call perturb_func once per chunk with the batch
    repeated in place (`repeat_interleave`: example 0 c times, then example 1 ...), chunk
    after chunk. This cursor keeps the running sample offset; it checks the layout against
    the inputs, so a Captum that laid rows out otherwise fails loudly instead of silently
    sharing noise across examples.
    """

    def __init__(self, inputs: torch.Tensor) -> None:
        self.inputs = inputs
        self.offset = 0

    def pairs(self, expanded: torch.Tensor) -> list[tuple[int, int]]:
        n = len(self.inputs)
        if len(expanded) % n:
            raise RuntimeError(f"Captum passed {len(expanded)} rows for a batch of {n}: not whole copies of the batch")
        copies = len(expanded) // n
        if not torch.equal(expanded[::copies], self.inputs):
            raise RuntimeError("Captum's perturbation rows are not the batch repeated in place (repeat_interleave)")
        pairs = [(example, self.offset + k) for example in range(n) for k in range(copies)]
        self.offset += copies
        return pairs
