"""attrib_core/suite/shards.py: `--shard i/N` splits a preset's cells deterministically, disjointly and
completely, balanced on the cost model's predicted cost (not on cell count)."""

from __future__ import annotations

from pathlib import Path

import pytest

from attrib_core.devices import available_devices
from attrib_core.suite.shards import (
    NO_CALIBRATION,
    ShardError,
    assign,
    calibration_from,
    parse_shard,
    predicted_costs,
    shard_loads,
    weighted_rows,
)
from attrib_core.sweep import PRESET_DIR, Timing, cell_key, load_preset

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def smoke_cells():
    preset = load_preset("smoke", PRESET_DIR)
    return preset, {cell_key(c): c for c in preset.cells(tuple(available_devices()))}


def test_parse_shard_accepts_i_of_n_and_names_bad_values():
    assert (parse_shard("2/3").index, parse_shard("2/3").of, parse_shard("2/3").label) == (2, 3, "shard-2of3")
    for bad in ("0/3", "4/3", "1/0", "2", "a/b", "-1/3"):
        with pytest.raises(ShardError, match=f"--shard '{bad}'"):
            parse_shard(bad)


def test_cost_balances_cost_not_cell_count():
    shards = assign({"big": 10.0, "a": 1.0, "b": 1.0, "c": 1.0}, 2)
    assert shards == [["big"], ["a", "b", "c"]]
    assert shard_loads({"big": 10.0, "a": 1.0, "b": 1.0, "c": 1.0}, shards) == [10.0, 3.0]
    assert assign({"x": 1.0}, 3) == [["x"], [], []]  # more shards than cells: empty shards, no error


def test_weighted_rows_follow_the_cost_model(smoke_cells):
    _, cells = smoke_cells
    ig = next(c for c in cells.values() if c.method == "IntegratedGradients" and c.batch_size == 16)
    assert weighted_rows(ig) == 16 * ig.knobs["n_steps"] * (1 + 2)  # forward + 2 x backward rows


@pytest.mark.parametrize("n_shards", [2, 3, 5])
def test_smoke_shards_are_disjoint_complete_deterministic_and_balanced(smoke_cells, n_shards):
    preset, cells = smoke_cells
    costs = predicted_costs(cells, preset.timing)
    shards = assign(costs, n_shards)
    flat = [key for shard in shards for key in shard]
    assert sorted(flat) == sorted(cells) and len(flat) == len(set(flat))  # each cell exactly once
    assert shards == assign(dict(reversed(list(costs.items()))), n_shards)  # order of the input does not matter
    assert predicted_costs(cells, preset.timing) == costs  # FLOP counts are deterministic
    loads = shard_loads(costs, shards)
    # LPT's guarantee: the spread is at most the largest cell. On the smoke preset the busiest
    # shard is within 10% of the mean, unless one cell alone is bigger than that (at 5 shards:
    # ShapleyValueSampling on digits is 36% of the sweep), and then it is that cell alone.
    assert max(loads) - min(loads) <= max(costs.values())
    assert max(loads) <= max(1.10 * sum(loads) / n_shards, max(costs.values())), loads


def test_calibration_turns_costs_into_seconds(smoke_cells):
    preset, cells = smoke_cells
    calibration = calibration_from(FIXTURES / "smoke_a.json")
    assert set(calibration.seconds_per_unit) == {"digits_cnn", "tabular_mlp"} and len(calibration.source_sha256) == 64
    costs = predicted_costs(cells, preset.timing, calibration)
    # a calibrated cell's predicted time: warm-up + rounds allowed by the time budget + 2 passes, in seconds
    assert 0 < sum(costs.values()) < 600
    assert costs == predicted_costs(cells, preset.timing, calibration)
    relative = predicted_costs(cells, Timing(), NO_CALIBRATION)
    assert relative.keys() == costs.keys()


def test_calibration_needs_timed_cells(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match=r"x\.json"):
        calibration_from(bad)
