"""bench/compare.py on the committed fixtures: two smoke runs of the same code on the same
machine (A and B) and a custom preset (IG only) that overlaps the smoke preset in part."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from attrib_core.analysis import compare

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SMOKE_A = FIXTURES / "smoke_a.json"
SMOKE_B = FIXTURES / "smoke_b.json"
IG_ONLY = FIXTURES / "ig_only.json"


def pair(a: Path | str, b: Path | str, folder: Path = FIXTURES) -> tuple[pd.DataFrame, pd.DataFrame]:
    runs = [compare.load_run(str(a), folder), compare.load_run(str(b), folder)]
    compare.match_across_devices(runs)
    compare.label_runs(runs)
    return compare.compare_pair(runs[0], runs[1], resamples=500)


def test_a_run_against_itself_and_against_a_known_slowdown(tmp_path: Path) -> None:
    """Known answers: identical rounds give 1x and 'same'; rounds of one method made exactly
    3x longer give 3x 'slower' for its cells and leave every other cell at 1x."""
    data = json.loads(SMOKE_A.read_text())
    for record in data["benchmarks"]:
        if record["stats"] and record["extra_info"]["cell"]["method"] == "IntegratedGradients":
            record["stats"]["data"] = [3 * v for v in record["stats"]["data"]]
            for stat in ("min", "max", "mean", "median", "q1", "q3", "iqr", "stddev"):
                record["stats"][stat] *= 3
    slowed = tmp_path / "slowed.json"
    slowed.write_text(json.dumps(data))
    same, _ = pair(SMOKE_A, SMOKE_A)
    timed = same.dropna(subset=["speedup"])
    assert len(timed) > 20 and np.allclose(timed["speedup"], 1.0) and set(timed["verdict"]) == {"same within noise"}
    common, one_sided = pair(SMOKE_A, slowed)
    assert one_sided.empty
    timed = common.dropna(subset=["speedup"]).set_index("method")
    ig, rest = timed.loc[["IntegratedGradients"]], timed.drop(index="IntegratedGradients")
    assert np.allclose(ig["speedup"], 1 / 3) and set(ig["verdict"]) == {"slower"}
    assert (ig["ci_high"] < 1).all()
    assert np.allclose(rest["speedup"], 1.0) and set(rest["verdict"]) == {"same within noise"}


def test_different_presets_compare_their_intersection(capsys, tmp_path: Path) -> None:
    common, one_sided = pair(SMOKE_A, IG_ONLY)
    ig_keys = {r["extra_info"]["cell_key"] for r in json.loads(IG_ONLY.read_text())["benchmarks"]}
    smoke_keys = {r["extra_info"]["cell_key"] for r in json.loads(SMOKE_A.read_text())["benchmarks"]}
    assert set(common["cell"]) == ig_keys & smoke_keys != set()
    assert set(one_sided["cell"]) == ig_keys ^ smoke_keys
    assert one_sided.loc[one_sided["cell"].isin(ig_keys - smoke_keys), "only in"].str.startswith("B").all()

    code = compare.main([str(SMOKE_A), str(IG_ONLY), "--out", str(tmp_path), "--resamples", "200"])
    stdout = capsys.readouterr().out
    assert code == 0
    assert "WARNING" in stdout and "preset" in stdout  # different preset hashes: loud
    assert "on one side only" in stdout
    assert len(pd.read_csv(tmp_path / "one_sided.csv")) == len(ig_keys ^ smoke_keys)


def test_compare_writes_table_and_plot(capsys, tmp_path: Path) -> None:
    code = compare.main([str(SMOKE_A), str(SMOKE_B), "--out", str(tmp_path), "--resamples", "200"])
    stdout = capsys.readouterr().out
    assert code == 0
    assert "geometric-mean speedup" in stdout
    assert "WARNING" not in stdout  # same software, same preset
    table = pd.read_csv(tmp_path / "compare.csv")
    assert {"cell", "median_A_ms", "median_B_ms", "speedup", "ci_low", "ci_high", "verdict"} <= set(table.columns)
    assert (tmp_path / "compare.md").read_text().startswith("# attrib-bench comparison")
    with Image.open(tmp_path / "speedup.png") as image:
        image.verify()


def test_bootstrap_is_seeded_and_centred() -> None:
    rng = np.random.default_rng(1)
    b = rng.lognormal(0, 0.05, 20)
    a = 2 * b
    low, high = compare.bootstrap_ratio(a, b, np.random.default_rng(7), 2000, 0.95)
    assert low <= 2.0 <= high and high - low < 0.2
    assert compare.bootstrap_ratio(a, b, np.random.default_rng(7), 2000, 0.95) == (low, high)
    assert compare.verdict(1.2, 1.1, 1.3, 1.05) == "faster" and compare.verdict(0.8, 0.7, 0.9, 1.05) == "slower"
    assert compare.verdict(1.0, 0.9, 1.1, 1.05) == "same within noise"
    assert compare.verdict(1.03, 1.01, 1.05, 1.05) == "same within noise"  # significant, but below the threshold


def test_machine_names_resolve_to_their_newest_file(tmp_path: Path, capsys) -> None:
    shutil.copy(SMOKE_A, tmp_path / "laptop_20250101T000000Z_abc1234_smoke.json")
    shutil.copy(SMOKE_B, tmp_path / "laptop_20250301T000000Z_abc1234_smoke.json")
    shutil.copy(SMOKE_B, tmp_path / "gpubox_20250201T000000Z_abc1234_smoke.json")
    code = compare.main(["laptop@cpu", "gpubox@cpu", "--results-dir", str(tmp_path), "--out", str(tmp_path / "out")])
    stdout = capsys.readouterr().out
    assert code == 0
    assert "laptop_20250301T000000Z" in stdout
    assert (tmp_path / "out" / "compare.csv").exists()

    code = compare.main(["laptop", "desktop", "--results-dir", str(tmp_path), "--out", str(tmp_path / "x")])
    stderr = capsys.readouterr().err
    assert code == 2
    assert "'desktop'" in stderr and "gpubox" in stderr and "laptop" in stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{ not json", "not valid JSON"),
        (json.dumps({"benchmarks": []}), "not pytest-benchmark output"),
        (None, "schema version 0 is not supported"),
    ],
)
def test_bad_input_is_a_clear_error(tmp_path: Path, capsys, content: str | None, message: str) -> None:
    bad = tmp_path / "bad.json"
    if content is None:
        data = json.loads(SMOKE_A.read_text())
        data["machine_info"]["attrib_bench"]["schema_version"] = 0
        content = json.dumps(data)
    bad.write_text(content)
    code = compare.main([str(SMOKE_A), str(bad), "--out", str(tmp_path / "out")])
    stderr = capsys.readouterr().err
    assert code == 2
    assert "bad.json" in stderr and message in stderr
    assert not (tmp_path / "out").exists()


def test_fewer_than_two_runs_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        compare.main([str(SMOKE_A)])
    assert exc.value.code == 2
    assert "at least two runs" in capsys.readouterr().err


def test_one_device_against_another(tmp_path: Path) -> None:
    on_cuda = tmp_path / "gpubox_20250101T000000Z_abc1234_smoke.json"
    on_cuda.write_text(SMOKE_B.read_text().replace("-cpu-b", "-cuda-b").replace('"device": "cpu"', '"device": "cuda"'))
    common, one_sided = pair(SMOKE_A, on_cuda)
    assert common.empty and len(one_sided) == 2 * len(compare.load_run(str(SMOKE_A), FIXTURES).cells)
    common, one_sided = pair(f"{SMOKE_A}@cpu", f"{on_cuda}@cuda")
    assert one_sided.empty and common["speedup"].notna().all()
    with pytest.raises(compare.ResultsError, match="no cells on device 'cuda'"):
        pair(f"{SMOKE_A}@cuda", on_cuda)
