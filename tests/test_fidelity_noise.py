"""Per-example noise: the same example gets the same draws however the rows are grouped."""

from __future__ import annotations

import pytest
import torch

from attrib_core.fidelity.noise import CaptumSampleCursor, ExampleNoise, example_digest, sample_seed


def batch(n: int = 3) -> torch.Tensor:
    return torch.rand(n, 2, 4, 4, generator=torch.Generator().manual_seed(0))


def test_an_examples_draws_do_not_depend_on_grouping_or_position():
    inputs = batch()
    noise = ExampleNoise(inputs, cell_seed=7, purpose="infidelity")
    together = noise.draw([(0, 0), (0, 1), (1, 0), (2, 3)])
    one_by_one = torch.cat([noise.draw([pair]) for pair in [(0, 0), (0, 1), (1, 0), (2, 3)]])
    assert torch.equal(together, one_by_one)
    # example 1 moved to the front of a different batch: same draws
    reordered = ExampleNoise(inputs[[1, 0]], cell_seed=7, purpose="infidelity")
    assert torch.equal(reordered.draw([(0, 0)]), together[2:3])
    assert not torch.equal(together[0], together[1])  # samples differ
    assert not torch.equal(together[0], together[2])  # examples differ


def test_draws_change_with_the_cell_seed_and_the_purpose_but_not_the_memory_layout():
    inputs = batch()
    base = ExampleNoise(inputs, 0, "infidelity").draw([(0, 0)])
    assert not torch.equal(base, ExampleNoise(inputs, 1, "infidelity").draw([(0, 0)]))
    assert not torch.equal(base, ExampleNoise(inputs, 0, "sensitivity").draw([(0, 0)]))
    channels_last = inputs.to(memory_format=torch.channels_last)
    assert example_digest(channels_last[0]) == example_digest(inputs[0])
    assert torch.equal(ExampleNoise(channels_last, 0, "infidelity").draw([(0, 0)]), base)
    assert 0 <= sample_seed(0, "infidelity", example_digest(inputs[0]), 0) < 2**63


def test_uniform_draws_lie_in_the_unit_interval_and_unknown_distributions_are_named():
    draws = ExampleNoise(batch(), 0, "sensitivity", "uniform").draw([(0, 0), (1, 0)])
    assert draws.min() >= 0 and draws.max() < 1
    with pytest.raises(ValueError, match=r"unknown noise distribution 'laplace'; valid: normal, uniform"):
        ExampleNoise(batch(), 0, "x", "laplace")


def test_the_cursor_follows_captums_repeat_interleave_chunks_and_refuses_other_layouts():
    inputs = batch(2)
    cursor = CaptumSampleCursor(inputs)
    assert cursor.pairs(inputs.repeat_interleave(3, dim=0)) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert cursor.pairs(inputs.repeat_interleave(1, dim=0)) == [(0, 3), (1, 3)]
    with pytest.raises(RuntimeError, match="repeat_interleave"):
        CaptumSampleCursor(inputs).pairs(inputs.repeat(2, 1, 1, 1))  # tiled, not interleaved
    with pytest.raises(RuntimeError, match="3 rows for a batch of 2"):
        CaptumSampleCursor(inputs).pairs(inputs[[0, 1, 0]])
