"""attrib_core/analysis/merge.py: shards of one sweep -> one results file, refused with the
differences named when they are not one sweep; report, compare and regress read the result."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from attrib_core import schema
from attrib_core.analysis import merge as merging
from attrib_core.analysis.results import load_results
from attrib_core.analysis.verdicts import Thresholds, compare_files
from attrib_core.commands.cli import main as cli

FIXTURE = Path(__file__).parent / "fixtures" / "smoke_a.json"
CODE = {"commit": "c896658b32de50cd29360f26a67e3be5e32f4579", "uncommitted_sha256": "0" * 64}


def write_shards(folder: Path, n: int = 3, sweep: str = "abc123") -> tuple[list[Path], dict]:
    """Split a real smoke run's cells round-robin into n shard files, as `--shard i/n` writes them."""
    whole = schema.read(FIXTURE)
    cells = schema.records(whole)
    paths = []
    for index in range(1, n + 1):
        machine_info = copy.deepcopy(whole["machine_info"])
        machine_info["attrib_bench"]["run"] = {
            "started": f"2026-11-29T10:0{index}:00+00:00",
            "finished": f"2026-11-29T10:0{index}:30+00:00",
            "complete": True,
            "code": CODE,
            "shard": {"index": index, "of": n, "sweep_id": sweep, "cells": 0, "predicted_cost": 1.0},
        }
        document = schema.document(machine_info, whole["commit_info"], cells[index - 1 :: n], whole["version"])
        path = folder / f"000{index}_box_2026_c896658_smoke-sweep{sweep}-shard-{index}of{n}.json"
        path.write_text(schema.dumps(document))
        paths.append(path)
    return paths, whole


def edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_merged_shards_hold_every_cell_once_and_list_their_shards(tmp_path):
    paths, whole = write_shards(tmp_path)
    out = merging.merge(list(reversed(paths)), tmp_path / "merged.json")
    merged = schema.read(out)
    keys = [r["extra_info"]["cell_key"] for r in schema.records(merged)]
    assert sorted(keys) == sorted(r["extra_info"]["cell_key"] for r in schema.records(whole)) and len(set(keys)) == 37
    run = merged["machine_info"]["attrib_bench"]["run"]
    assert [s["index"] for s in run["merged"]["shards"]] == [1, 2, 3]  # in shard order whatever the argument order
    assert [s["cells_recorded"] for s in run["merged"]["shards"]] == [13, 12, 12]
    assert (run["started"], run["finished"], run["complete"]) == (
        "2026-11-29T10:01:00+00:00",
        "2026-11-29T10:03:30+00:00",
        True,
    )
    assert (
        run["code"] == CODE
        and merged["machine_info"]["attrib_bench"]["preset_sha256"]
        == (whole["machine_info"]["attrib_bench"]["preset_sha256"])
    )


def test_report_compare_and_regress_read_a_merged_run(tmp_path):
    paths, _ = write_shards(tmp_path)
    out = merging.merge(paths, tmp_path / "merged.json")
    merged_df, whole_df = load_results([out]), load_results([FIXTURE])
    columns = ["cell_key", "median_s", "status"]
    pd_merged = merged_df[columns].sort_values("cell_key").reset_index(drop=True)
    assert pd_merged.equals(whole_df[columns].sort_values("cell_key").reset_index(drop=True))
    assert cli(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    summary = (tmp_path / "report" / "summary.csv").read_text().splitlines()
    assert len(summary) == 1 + 37 and (tmp_path / "report" / "report.html").is_file()
    assert cli(["compare", str(FIXTURE), str(out), "--out", str(tmp_path / "compare")]) == 0
    # the same cells, the same samples: regress finds no regression between the run and its merged shards
    assert compare_files(FIXTURE, out, Thresholds()) == 0


def test_cli_merge_default_name_beside_the_shards(tmp_path, capsys):
    paths, _ = write_shards(tmp_path)
    assert cli(["merge", *map(str, paths)]) == 0
    assert (tmp_path / "0001_box_2026_c896658_smoke-sweepabc123-merged-3.json").is_file()
    assert "merged 3 shards" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["machine_info"]["attrib_bench"].update(preset_sha256="f" * 64), "the preset changed"),
        (lambda d: d["machine_info"]["attrib_bench"]["run"]["code"].update(commit="deadbeef"), "commit: c896658b32de"),
        (
            lambda d: d["machine_info"]["attrib_bench"]["environment"].update(torch_version="9.9"),
            "torch_version: '2.",
        ),
        (lambda d: d["machine_info"]["attrib_bench"]["run"]["shard"].update(sweep_id="other"), "sweep_id 'other'"),
    ],
)
def test_merge_names_what_differs(tmp_path, change, message):
    paths, _ = write_shards(tmp_path)
    edit(paths[2], change)
    with pytest.raises(merging.MergeError, match="refusing to merge") as error:
        merging.merge(paths, tmp_path / "merged.json")
    assert message in str(error.value) and paths[2].name in str(error.value)
    assert not (tmp_path / "merged.json").exists()


def test_merge_refuses_missing_repeated_and_overlapping_shards(tmp_path, capsys):
    paths, _ = write_shards(tmp_path)
    with pytest.raises(merging.MergeError, match="missing shard\\(s\\) 2/3 of sweep abc123"):
        merging.merge([paths[0], paths[2]], tmp_path / "m.json")
    with pytest.raises(merging.MergeError, match="shard 1 given twice"):
        merging.merge([paths[0], paths[0], paths[1], paths[2]], tmp_path / "m.json")
    first_cell = json.loads(paths[0].read_text())["benchmarks"][0]
    edit(paths[1], lambda d: d["benchmarks"].append(first_cell))
    with pytest.raises(merging.MergeError, match=f"cell '{first_cell['extra_info']['cell_key']}' is in both"):
        merging.merge(paths, tmp_path / "m.json")
    assert cli(["merge", str(FIXTURE), "--out", str(tmp_path / "m.json")]) == 2  # not a shard: a clear error, exit 2
    assert "not a shard" in capsys.readouterr().err
