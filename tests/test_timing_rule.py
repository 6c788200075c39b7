"""The one timing rule on synthetic blocks: known answers, Holm's family-wise control
(simulated A/A families, fixed seeds), the run-level member's power, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from attrib_core.analysis import timing_rule as rule
from attrib_core.analysis.results import load_results

KEYS = [f"digits_cnn-M{i}-cpu-b4-fp32-contiguous" for i in range(12)]


def record(key: str, samples: list[float] | None, blocks: list[dict] | None = None) -> dict:
    extra = {
        "schema_version": 1,
        "cell_key": key,
        "cell": {"workload": "digits_cnn", "method": key.split("-")[1], "device": "cpu", "batch_size": 4},
        "status": "ok",
        "threads": 1,
    }
    if blocks is not None:
        extra["blocks"] = blocks
    stats = {"median": float(np.median(samples)), "rounds": len(samples)} if samples else {"median": 0.01}
    if samples:
        stats["data"] = samples
    return {"name": f"test_cell[{key}]", "stats": stats, "extra_info": extra}


def write(path: Path, records: list[dict], ab: dict | None = None, noise: list[str] | None = None) -> Path:
    meta = {"schema_version": 1, "preset": "ci", "environment": {"cpu_model": "Test CPU"}}
    if ab is not None:
        meta["ab"] = ab
    if noise is not None:
        meta["noise"] = {"before": {}, "after": {}, "warnings": noise}
    data = {"machine_info": {"attrib_bench": meta}, "commit_info": {"id": "abc"}, "benchmarks": records}
    path.write_text(json.dumps(data))
    return path


def plain_runs(tmp_path: Path, name: str, factors: list[float], keys=KEYS, seed: int = 0, spread: float = 0.03):
    """One file per process; each process has its own level (between-run noise) times `factor`."""
    rng = np.random.default_rng(seed)
    paths = []
    for i, factor in enumerate(factors):
        level = np.exp(rng.normal(0, spread))
        records = [
            record(k, (0.001 * (j + 1) * level * factor * np.exp(rng.normal(0, 0.01, 15))).tolist())
            for j, k in enumerate(keys)
        ]
        paths.append(write(tmp_path / f"{name}{i}.json", records))
    return load_results(paths)


def ab_session(tmp_path: Path, factor: float, pairs: int = 8, seed: int = 1, exact: bool = False) -> tuple:
    """An A/B session: per ABBA group two blocks per side, a drift shared by the group, and
    B's rounds x factor; `exact`: each B block is its A neighbour's rounds x factor."""
    rng = np.random.default_rng(seed)
    sides = {"A": [], "B": []}
    for j, key in enumerate(KEYS):
        blocks = {"A": [], "B": []}
        for pair in range(pairs):
            drift = np.exp(rng.normal(0, 0.05))  # hits both sides of the group alike
            noise = np.exp(rng.normal(0, 0.01, (4, 5)))
            if exact:
                noise[1], noise[2] = noise[0], noise[3]  # B1 repeats A0, B2 repeats A3
            for slot, side in enumerate("ABBA"):
                rounds = 0.001 * (j + 1) * drift * noise[slot] * (factor if side == "B" else 1.0)
                position = 4 * pair + slot
                blocks[side].append(
                    {"pair": pair, "position": position, "process": f"{side}{slot}", "samples_s": rounds.tolist()}
                )
        for side in "AB":
            samples = [s for b in blocks[side] for s in b["samples_s"]]
            sides[side].append(record(key, samples, blocks[side]))
    frames = []
    for side in "AB":
        ab = {"session": "s1", "side": side, "label": side, "spec": {}}
        frames.append(load_results([write(tmp_path / f"ab_{side}.json", sides[side], ab)]))
    return frames[0], frames[1]


def test_identical_sides_are_the_same(tmp_path):
    base = plain_runs(tmp_path, "a", [1, 1, 1])
    result = rule.compare_timing(base, base)
    assert result.design == rule.UNPAIRED
    assert {c.verdict for c in result.cells.values()} == {rule.SAME}
    assert all(c.ratio == pytest.approx(1.0) and c.low < 1 < c.high for c in result.cells.values())
    assert result.run_level.verdict == rule.SAME and result.flagged == []


def test_every_block_one_and_a_half_times_slower_unpaired(tmp_path):
    base = plain_runs(tmp_path, "a", [1, 1, 1], seed=3)
    slowed = plain_runs(tmp_path, "b", [1.5, 1.5, 1.5], seed=3)  # same noise, every round x 1.5
    result = rule.compare_timing(base, slowed)
    for c in result.cells.values():
        assert c.verdict == rule.SLOWER and c.ratio == pytest.approx(1.5) and c.low <= 1.5 <= c.high
    assert result.run_level.verdict == rule.SLOWER and result.run_level.ratio == pytest.approx(1.5)
    faster = rule.compare_timing(slowed, base)
    assert {c.verdict for c in faster.cells.values()} == {rule.FASTER}


def test_an_ab_session_is_paired_and_finds_the_ratio(tmp_path):
    a, b = ab_session(tmp_path, 1.5, exact=True)
    result = rule.compare_timing(a, b)
    assert result.design == rule.PAIRED
    for c in result.cells.values():  # every B block exactly 1.5x its A neighbour: exactly 1.5
        assert c.verdict == rule.SLOWER and c.units_base == 8 and c.low <= 1.5 <= c.high
        assert c.ratio == pytest.approx(1.5)
    a, b = ab_session(tmp_path, 1.5)  # independent noise in each block
    noisy = rule.compare_timing(a, b)
    assert {c.verdict for c in noisy.cells.values()} == {rule.SLOWER}
    assert all(c.ratio == pytest.approx(1.5, rel=0.02) for c in noisy.cells.values())
    assert noisy.run_level.low <= 1.5 <= noisy.run_level.high
    a, b = ab_session(tmp_path, 1.0)
    same = rule.compare_timing(a, b)
    assert same.flagged == [] and same.design == rule.PAIRED


def test_a_slowdown_in_every_cell_below_each_cells_power_is_caught_by_the_run_level_member():
    rng = np.random.default_rng(7)
    per_cell = {k: rule.Units(rule.PAIRED, diffs=rng.normal(np.log(1.04), 0.06, 8)) for k in KEYS}
    ids = {k: (list(range(8)),) for k in KEYS}
    cells, level = rule.decide(per_cell, rule.run_level_units(per_cell, rule.PAIRED, ids), rule.RuleSettings())
    # each cell's test has little power at 1.04x (t about 1.8 on 7 dof): most cells miss it ...
    assert sum(c.verdict == rule.SLOWER for c in cells.values()) <= 2
    assert sum(c.verdict == rule.SAME for c in cells.values()) >= 10
    assert level.verdict == rule.SLOWER and level.low < 1.04 < level.high


def heavy_noise(rng: np.random.Generator, size) -> np.ndarray:
    """Log-scale block noise as a shared machine gives it: mostly small, heavy tails (t, 3 dof)."""
    return 0.03 * rng.standard_t(3, size)


@pytest.mark.parametrize("design", [rule.PAIRED, rule.UNPAIRED])
def test_holm_keeps_a_family_of_null_cells_quiet(design):
    """A/A families of 12 cells + the run-level member: alarms in at most alpha of the
    families, plus three binomial standard errors of slack (deterministic: seeded)."""
    rng = np.random.default_rng(2026)
    settings, families, alarms = rule.RuleSettings(), 400, 0
    for _ in range(families):
        if design == rule.PAIRED:
            per_cell = {k: rule.Units(rule.PAIRED, diffs=heavy_noise(rng, 8)) for k in KEYS}
            ids = {k: (list(range(8)),) for k in KEYS}
        else:
            process = heavy_noise(rng, (2, 3))  # each process's level, shared by its cells
            per_cell = {
                k: rule.Units(rule.UNPAIRED, base=process[0] + heavy_noise(rng, 3), new=process[1] + noise)
                for k, noise in zip(KEYS, heavy_noise(rng, (len(KEYS), 3)), strict=True)
            }
            ids = {k: (list(range(3)), list(range(3))) for k in KEYS}
        cells, level = rule.decide(per_cell, rule.run_level_units(per_cell, design, ids), settings)
        alarms += any(c.verdict in (rule.SLOWER, rule.FASTER) for c in [*cells.values(), level])
    slack = 3 * np.sqrt(settings.alpha * (1 - settings.alpha) / families)
    assert alarms / families <= settings.alpha + slack


def test_holm_adjusts_as_the_textbook_does():
    assert rule.holm([0.01, 0.04, 0.03]).tolist() == pytest.approx([0.03, 0.06, 0.06])
    assert rule.holm([0.5, 0.9]).tolist() == pytest.approx([1.0, 1.0])


def test_a_significant_change_below_the_minimal_effect_is_the_same():
    per_cell = {"c": rule.Units(rule.PAIRED, diffs=np.log(1.01) + np.array([0.001, -0.001, 0.0005, -0.0005]))}
    cells, _ = rule.decide(per_cell, None, rule.RuleSettings(min_effect=1.03))
    assert cells["c"].verdict == rule.SAME and cells["c"].p_adjusted < 0.05 and "minimal effect" in cells["c"].note


def test_one_run_per_side_is_undetermined_and_says_what_to_do(tmp_path):
    result = rule.compare_timing(plain_runs(tmp_path, "a", [1]), plain_runs(tmp_path, "b", [2]))
    assert {c.verdict for c in result.cells.values()} == {rule.UNDETERMINED}
    assert result.run_level.verdict == rule.UNDETERMINED
    note = result.cells[KEYS[0]].note
    assert "1 run per side: between-run variation unknown" in note and "nox -s regress" in note


def single_runs_with_passes(tmp_path: Path, name: str, factor: float, passes: int = 3, seed: int = 0) -> Path:
    """One file whose cells carry a block per pass over the sweep; each pass has its own level
    (the machine's drift between passes)."""
    rng = np.random.default_rng(seed)
    levels = np.exp(rng.normal(0, 0.03, passes))
    records = []
    for j, key in enumerate(KEYS):
        blocks = [
            {
                "pass": p + 1,
                "samples_s": (0.001 * (j + 1) * levels[p] * factor * np.exp(rng.normal(0, 0.01, 5))).tolist(),
            }
            for p in range(passes)
        ]
        records.append(record(key, blocks[0]["samples_s"], blocks))
    return write(tmp_path / f"{name}.json", records)


def test_one_run_per_side_made_in_passes_gets_verdicts_with_its_passes_as_units(tmp_path):
    base = load_results([single_runs_with_passes(tmp_path, "a", 1.0, seed=1)])
    slowed = load_results([single_runs_with_passes(tmp_path, "b", 1.5, seed=2)])
    result = rule.compare_timing(base, slowed)
    assert {c.verdict for c in result.cells.values()} == {rule.SLOWER}
    assert all(c.ratio == pytest.approx(1.5, rel=0.1) for c in result.cells.values())
    assert "passes over the sweep" in result.warnings[0]
    again = load_results([single_runs_with_passes(tmp_path, "c", 1.0, seed=3)])
    assert rule.compare_timing(base, again).run_level.verdict in (rule.SAME, rule.UNDETERMINED)


def test_too_few_ab_pairs_are_undetermined(tmp_path):
    a, b = ab_session(tmp_path, 2.0, pairs=2)
    result = rule.compare_timing(a, b)
    assert {c.verdict for c in result.cells.values()} == {rule.UNDETERMINED}
    assert "2 A/B pairs (ABBA groups): needs at least 3" in result.cells[KEYS[0]].note


def test_sides_sharing_no_cell_are_refused(tmp_path):
    a = plain_runs(tmp_path, "a", [1, 1], keys=KEYS[:2])
    b = plain_runs(tmp_path, "b", [1, 1], keys=KEYS[2:4])
    with pytest.raises(rule.TimingInputError, match="share no cell"):
        rule.compare_timing(a, b)


def test_a_file_without_raw_rounds_is_named(tmp_path):
    a = plain_runs(tmp_path, "a", [1, 1])
    bare = write(tmp_path / "bare.json", [record(k, None) for k in KEYS])
    with pytest.raises(rule.TimingInputError, match=r"bare\.json has no raw rounds"):
        rule.compare_timing(a, load_results([bare]))


def test_the_block_statistic_min_ignores_added_stalls_the_median_does_not(tmp_path):
    """Every round of B but the fastest stalled 2x (interference): the minimum is unchanged, the median moves."""
    base = plain_runs(tmp_path, "a", [1, 1, 1], seed=5)
    stalled = plain_runs(tmp_path, "b", [1, 1, 1], seed=5)
    stalled["blocks"] = [
        [(p, pos, proc, np.where(r == r.min(), r, 2 * r)) for p, pos, proc, r in blocks] for blocks in stalled["blocks"]
    ]
    by_min = rule.compare_timing(base, stalled, rule.RuleSettings(statistic="min"))
    by_median = rule.compare_timing(base, stalled, rule.RuleSettings(statistic="median"))
    assert all(c.ratio == pytest.approx(1.0) for c in by_min.cells.values())
    assert {c.verdict for c in by_median.cells.values()} == {rule.SLOWER}


def test_noise_warnings_recorded_by_a_run_are_passed_on(tmp_path):
    base = plain_runs(tmp_path, "a", [1, 1])
    noisy = write(tmp_path / "noisy.json", [record(k, [0.001, 0.0011]) for k in KEYS], noise=["load average 3.8"])
    quiet = write(tmp_path / "quiet.json", [record(k, [0.001, 0.0011]) for k in KEYS], noise=[])
    result = rule.compare_timing(base, load_results([noisy, quiet]))
    assert [w for w in result.warnings if "noisy" in w] == [
        "side B: noisy.json ran on a noisy machine: load average 3.8"
    ]


def test_bad_settings_name_the_value():
    with pytest.raises(ValueError, match=r"unknown block statistic 'mean'; valid: min, median"):
        rule.RuleSettings(statistic="mean")
    with pytest.raises(ValueError, match=r"min_effect=0.9 is not valid; needs a factor >= 1"):
        rule.RuleSettings(min_effect=0.9)
    with pytest.raises(ValueError, match=r"alpha=1.5 is not valid"):
        rule.RuleSettings(alpha=1.5)
