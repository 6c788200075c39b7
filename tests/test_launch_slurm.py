"""bench/launch_slurm.py through submitit's LocalExecutor: a tiny preset as a 3-task array, one
shard crashed on its first attempt and resubmitted (it resumes its journal), then merged. The
merged run has the same cells and schema as the same preset run in one piece."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from attrib_core import schema
from attrib_core.analysis.merge import merge
from attrib_core.analysis.results import load_results
from attrib_core.suite import suite_command
from tests import QUICK_TIMING, REPO

pytest.importorskip("submitit", reason="the `cluster` extra (submitit) is not installed")
from bench.launch_slurm import ShardTask, build_parser, executor_for, run_sweep

pytestmark = pytest.mark.slow  # a 3-task array of real bench runs

TINY = f"""
name = "tiny"
{QUICK_TIMING}[fidelity]
metrics = ["completeness", "deletion"]
[[sweep]]
workload = "digits_cnn"
method = ["Saliency", "IntegratedGradients", "InputXGradient"]
batch_size = [2]
[sweep.knobs]
n_steps = [4]
[[sweep]]
workload = "tabular_mlp"
method = ["FeatureAblation", "Saliency"]
batch_size = [2]
"""
CRASHED_CELL = "tabular_mlp-Saliency"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sharded")
    preset = tmp / "tiny.toml"
    preset.write_text(TINY)
    args = build_parser().parse_args(
        ["--preset", str(preset), "--shards", "3", "--cluster", "local", "--log-dir", str(tmp / "jobs")]
    )
    crash_once = (f"--inject-fault={CRASHED_CELL}=abort",)  # SIGABRT mid-shard, first attempt only
    tasks = [
        ShardTask(str(preset), i, 3, "test", str(tmp / "shards"), ("--machine-name=box",), crash_once)
        for i in range(1, 4)
    ]
    log: list[str] = []
    paths = run_sweep(executor_for(args), tasks, retries=1, log=log.append)
    merged = merge(paths, tmp / "merged.json")
    single = subprocess.run(
        suite_command("-q", f"--preset={preset}", f"--results-dir={tmp / 'single'}", "--machine-name=box"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert single.returncode == 0, single.stdout[-2000:] + single.stderr[-2000:]
    return paths, merged, next((tmp / "single").glob("*.json")), log


def test_each_shard_wrote_its_file_named_for_the_sweep(sweep):
    paths, _, _, _ = sweep
    assert [Path(p).stem.rsplit("-", 1)[1] for p in paths] == ["1of3", "2of3", "3of3"]
    assert all("tiny-sweeptest-shard-" in Path(p).name for p in paths)


def test_a_crashed_shard_is_resubmitted_and_resumes(sweep):
    paths, _, _, log = sweep
    failed = [line for line in log if "attempt 1 failed" in line]
    assert len(failed) == 1, log  # only the shard holding the crashed cell
    runs = {p: schema.read(p)["machine_info"]["attrib_bench"]["run"] for p in paths}
    resumed = [p for p, run in runs.items() if run["resumed"]]
    assert len(resumed) == 1 and all(run["complete"] for run in runs.values())
    assert any(CRASHED_CELL in r["extra_info"]["cell_key"] for r in schema.records(schema.read(resumed[0])))


def test_merged_run_has_the_cells_and_schema_of_one_run(sweep):
    _, merged, single, _ = sweep
    merged_data, single_data = schema.read(merged), schema.read(single)
    keys = sorted(r["extra_info"]["cell_key"] for r in schema.records(merged_data))
    assert keys == sorted(r["extra_info"]["cell_key"] for r in schema.records(single_data)) and len(keys) == 5
    assert merged_data.keys() == single_data.keys()
    assert merged_data["machine_info"]["attrib_bench"].keys() == single_data["machine_info"]["attrib_bench"].keys()
    merged_df, single_df = load_results([merged]), load_results([single])
    assert set(merged_df.columns) == set(single_df.columns)  # the same table (columns in order of first sight)
    assert (merged_df.status == "ok").all() and merged_df.median_s.gt(0).all()
    assert merged.with_suffix(".maps.npz").is_file()


@pytest.mark.parametrize(
    ("argv", "message"), [(["--shards", "0"], "--shards 0"), (["--retries", "-1"], "--retries -1")]
)
def test_launcher_refuses_bad_counts(argv, message, capsys):
    from bench.launch_slurm import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--preset", "smoke", "--shards", "2", *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
