"""bench/throughput.py: the dataset split over ranks covers every batch once, in order, and a
2-rank torchrun (gloo, CPU) gathers exactly the single-process attributions."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.throughput import batch_rows, blocks
from tests import REPO


@pytest.mark.parametrize(("n_batches", "world"), [(10, 3), (2, 2), (1, 3), (7, 1)])
def test_blocks_are_contiguous_in_order_and_balanced(n_batches, world):
    parts = blocks(n_batches, world)
    assert [i for part in parts for i in part] == list(range(n_batches))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_batch_rows_cover_the_dataset_with_a_short_last_batch():
    assert batch_rows(10, 4) == [range(0, 4), range(4, 8), range(8, 10)]


@pytest.mark.slow
def test_two_ranks_gather_the_single_process_result(tmp_path):
    out = tmp_path / "tp.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--master-port=29533"]
    command += ["-m", "bench.throughput", "--n-examples=20", "--batch-size=3", "--knob", "n_steps=4"]
    command += ["--repeats=2", f"--out={out}"]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert (data["world_size"], data["backend"], data["check"], data["n_examples"]) == (2, "gloo", "torch.equal", 20)
    assert all(r["equal"] and r["max_abs_diff"] == 0.0 for r in data["repeats"]) and len(data["repeats"]) == 2
    assert all(len(r["compute_s_per_rank"]) == 2 for r in data["repeats"])
    median = data["median"]
    assert median["scaling_efficiency"] == pytest.approx(median["single_s"] / (2 * median["parallel_s"]))
    assert "gathered == single-process: True" in proc.stdout
