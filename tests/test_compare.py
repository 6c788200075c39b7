"""attrib_core/analysis/render/compare.py on the committed fixtures: two smoke runs of the same code
on the same machine (A and B), a custom preset (IG only) that overlaps the smoke preset in
part, and sides of several runs made from them (the timing rule needs 2 runs per side)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from attrib_core.analysis.render import compare

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SMOKE_A = FIXTURES / "smoke_a.json"
SMOKE_B = FIXTURES / "smoke_b.json"
IG_ONLY = FIXTURES / "ig_only.json"


def pair(a: Path | str, b: Path | str, folder: Path = FIXTURES) -> tuple[pd.DataFrame, pd.DataFrame]:
    runs = [compare.load_run(str(a), folder), compare.load_run(str(b), folder)]
    compare.match_across_devices(runs)
    compare.label_runs(runs)
    common, one_sided, _ = compare.compare_pair(runs[0], runs[1])
    return common, one_sided


def runs_of(source: Path, folder: Path, levels=(1.0, 1.03, 0.98), slow_method: str | None = None) -> Path:
    """A folder of runs made from one fixture: each run's rounds scaled by its own level (the
    between-run noise), and `slow_method`'s rounds made exactly 3x longer."""
    folder.mkdir()
    for i, level in enumerate(levels):
        data = json.loads(source.read_text())
        for record in data["benchmarks"]:
            if record["stats"]:
                factor = level * (3 if record["extra_info"]["cell"]["method"] == slow_method else 1)
                record["stats"]["data"] = [factor * v for v in record["stats"]["data"]]
                for stat in ("min", "max", "mean", "median", "q1", "q3", "iqr", "stddev"):
                    record["stats"][stat] *= factor
        (folder / f"run{i}.json").write_text(json.dumps(data))
    return folder


def test_a_side_against_itself_and_against_a_known_slowdown(tmp_path: Path) -> None:
    """Known answers: identical runs give exactly 1x and 'same'; rounds of one method made
    exactly 3x longer (the same between-run levels) give 3x 'slower' for its cells, inside
    the interval, and leave every other cell at 1x."""
    base = runs_of(SMOKE_A, tmp_path / "base")
    slowed = runs_of(SMOKE_A, tmp_path / "slowed", slow_method="IntegratedGradients")
    same, _ = pair(base, base)
    timed = same.dropna(subset=["speedup"])
    assert len(timed) > 20 and np.allclose(timed["speedup"], 1.0) and set(timed["verdict"]) == {"same within noise"}
    assert (timed["units_A"] == 3).all()
    common, one_sided = pair(base, slowed)
    assert one_sided.empty
    timed = common.dropna(subset=["speedup"]).set_index("method")
    ig, rest = timed.loc[["IntegratedGradients"]], timed.drop(index="IntegratedGradients")
    assert np.allclose(ig["speedup"], 1 / 3) and set(ig["verdict"]) == {"slower"}
    assert (ig["ci_low"] <= 1 / 3).all() and (ig["ci_high"] >= 1 / 3).all() and (ig["ci_high"] < 1).all()
    assert np.allclose(rest["speedup"], 1.0) and set(rest["verdict"]) == {"same within noise"}


def test_one_run_per_side_is_undetermined_and_says_why(capsys, tmp_path: Path) -> None:
    common, _ = pair(SMOKE_A, SMOKE_B)
    assert set(common["verdict"]) == {"undetermined"} and common["ci_low"].isna().all()
    assert common["note"].str.contains("1 run per side: between-run variation unknown").all()
    # no speedup that reads as a verdict: the times' ratio is kept, as measured, in its own column
    assert common["speedup"].isna().all() and np.allclose(common["time_ratio"], common["A_ms"] / common["B_ms"])
    assert compare.main([str(SMOKE_A), str(SMOKE_B), "--out", str(tmp_path)]) == 0
    assert "37 undetermined" in capsys.readouterr().out
    assert not (tmp_path / "speedup.png").exists()  # nothing decided: nothing drawn as if it were


def test_a_side_of_files_joined_by_plus_is_one_side(tmp_path: Path) -> None:
    folder = runs_of(SMOKE_A, tmp_path / "runs")
    joined = "+".join(str(p) for p in sorted(folder.glob("*.json")))
    run = compare.load_run(joined, FIXTURES)
    assert len(run.paths) == 3 and len(run.cells) == 3 * 37
    common, _ = pair(joined, folder)
    assert set(common["verdict"]) == {"same within noise"}


def test_sides_sharing_no_cell_exit_2_and_write_nothing(capsys, tmp_path: Path) -> None:
    on_cuda = tmp_path / "gpubox_20250101T000000Z_abc1234_smoke.json"
    on_cuda.write_text(SMOKE_B.read_text().replace("-cpu-b", "-cuda-b").replace('"device": "cpu"', '"device": "cuda"'))
    assert compare.main([str(SMOKE_A), str(on_cuda), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "share no cell" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_file_without_raw_rounds_exits_2_naming_it(capsys, tmp_path: Path) -> None:
    data = json.loads(SMOKE_B.read_text())
    for record in data["benchmarks"]:
        if record["stats"]:
            del record["stats"]["data"]
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(data))
    assert compare.main([str(SMOKE_A), str(bare), "--out", str(tmp_path / "out")]) == 2
    assert "bare.json has no raw rounds" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_different_presets_compare_their_intersection(capsys, tmp_path: Path) -> None:
    common, one_sided = pair(SMOKE_A, IG_ONLY)
    ig_keys = {r["extra_info"]["cell_key"] for r in json.loads(IG_ONLY.read_text())["benchmarks"]}
    smoke_keys = {r["extra_info"]["cell_key"] for r in json.loads(SMOKE_A.read_text())["benchmarks"]}
    assert set(common["cell"]) == ig_keys & smoke_keys != set()
    assert set(one_sided["cell"]) == ig_keys ^ smoke_keys
    assert one_sided.loc[one_sided["cell"].isin(ig_keys - smoke_keys), "only in"].str.startswith("B").all()

    code = compare.main([str(SMOKE_A), str(IG_ONLY), "--out", str(tmp_path)])
    stdout = capsys.readouterr().out
    assert code == 0
    assert "WARNING" in stdout and "preset" in stdout  # different preset hashes: loud
    assert "on one side only" in stdout
    assert len(pd.read_csv(tmp_path / "one_sided.csv")) == len(ig_keys ^ smoke_keys)


def test_compare_writes_table_and_plot(capsys, tmp_path: Path) -> None:
    base, other = runs_of(SMOKE_A, tmp_path / "a"), runs_of(SMOKE_B, tmp_path / "b")
    code = compare.main([str(base), str(other), "--out", str(tmp_path / "out")])
    stdout = capsys.readouterr().out
    assert code == 0
    assert "all cells together (geometric mean): speedup" in stdout
    assert "WARNING" not in stdout  # same software, same preset
    table = pd.read_csv(tmp_path / "out" / "compare.csv")
    assert {"cell", "A_ms", "B_ms", "time_ratio", "speedup", "ci_low", "ci_high", "p_holm", "verdict"} <= set(
        table.columns
    )
    assert (tmp_path / "out" / "compare.md").read_text().startswith("# attrib-bench comparison")
    with Image.open(tmp_path / "out" / "speedup.png") as image:
        image.verify()
    page = (tmp_path / "out" / "compare.html").read_text()
    assert page.count('<img alt="Speedup per cell" src="data:image/png;base64,') == 1
    assert page.count('<table class="sortable">') == 2  # the sides, the cells


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
    with pytest.raises(compare.TimingInputError, match="share no cell"):
        pair(SMOKE_A, on_cuda)
    common, one_sided = pair(f"{SMOKE_A}@cpu", f"{on_cuda}@cuda")
    assert one_sided.empty and common["time_ratio"].notna().all()  # matched across devices, one run each
    with pytest.raises(compare.ResultsError, match="no cells on device 'cuda'"):
        pair(f"{SMOKE_A}@cuda", on_cuda)
