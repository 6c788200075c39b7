"""bench/report.py and its helpers (runs, pareto, style, plots, gallery, tables, html) on the
committed fixture results in tests/fixtures/ (see tests/fixtures/README.md for how they were made)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from attrib_core.analysis.pareto import pareto_front, staircase
from attrib_core.analysis.render import plots, report
from attrib_core.analysis.render.style import add_labels, method_style
from attrib_core.analysis.results import ResultsError, load_results
from attrib_core.analysis.runs import newest_in, resolve_paths
from tests import REPO

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SMOKE_A = FIXTURES / "smoke_a.json"
IG_ONLY = FIXTURES / "ig_only.json"


def records(path: Path) -> dict[str, dict]:
    return {r["extra_info"]["cell_key"]: r for r in json.loads(path.read_text())["benchmarks"]}


# --- the table against the JSON -------------------------------------------------------------


def test_table_matches_the_json() -> None:
    df = load_results([SMOKE_A]).set_index("cell_key")
    raw = records(SMOKE_A)
    assert set(df.index) == set(raw)
    ok = [k for k, r in raw.items() if r["extra_info"]["status"] == "ok"]
    picks = [ok[0], ok[len(ok) // 2], ok[-1], *[k for k in ok if "IntegratedGradients" in k][:2]]
    for key in picks:
        record, row = raw[key], df.loc[key]
        assert row["median_s"] == pytest.approx(record["stats"]["median"])
        assert row["iqr_s"] == pytest.approx(record["stats"]["iqr"])
        assert row["rounds"] == record["stats"]["rounds"]
        assert list(row["samples_s"]) == pytest.approx(record["stats"]["data"])
        assert row["peak_bytes"] == record["extra_info"]["memory"]["peak_bytes"]
        assert row["status"] == "ok"
        assert row["per_sample_median_s"] == pytest.approx(record["stats"]["median"] / row["batch_size"])
        for name, value in record["extra_info"]["resolved_knobs"].items():
            if value is None:  # "not used" (e.g. no internal batching): missing in the table
                assert pd.isna(row[f"knob_{name}"])
            else:
                assert row[f"knob_{name}"] == (tuple(value) if isinstance(value, list) else value)
        for metric, result in record["extra_info"]["fidelity"].items():
            expected = result["value"]
            assert (pd.isna(row[f"fid_{metric}"]) and expected is None) or row[f"fid_{metric}"] == pytest.approx(
                expected
            )
            assert row[f"fid_{metric}_status"] == result["status"]


def test_ig_knobs_are_columns() -> None:
    df = load_results([IG_ONLY])
    assert {"knob_n_steps", "knob_method", "knob_internal_batch_size"} <= set(df.columns)
    assert sorted(df["knob_n_steps"].unique()) == [8, 32, 64]
    assert sorted(df["knob_internal_batch_size"].dropna().unique()) == [4, 16]


# --- the Pareto front -------------------------------------------------------------------------


def test_pareto_front_on_a_hand_made_table() -> None:
    table = pd.DataFrame(
        {
            "time": [1.0, 2.0, 2.0, 3.0, 4.0, 5.0, 0.5, 4.0, 6.0],
            "error": [0.5, 0.3, 0.4, 0.3, 0.1, 0.1, np.nan, 0.1, 0.05],
        },
        index=list("abcdefghi"),
    )
    # b beats c (same time, better); d ties b's error but is slower; e's duplicate h comes second;
    # g has no error; i is slowest but best.
    front = pareto_front(table, "time", "error")
    assert list(table.index[front]) == ["a", "b", "e", "i"]
    xs, ys = staircase(table[front], "time", "error", x_end=10.0)
    assert list(xs) == [1.0, 2.0, 4.0, 6.0, 10.0]
    assert list(ys) == [0.5, 0.3, 0.1, 0.05, 0.05]


def test_pareto_front_when_higher_is_better() -> None:
    table = pd.DataFrame({"time": [1.0, 2.0, 3.0], "auc": [0.2, 0.1, 0.9]})
    assert list(pareto_front(table, "time", "auc", lower_is_better=False)) == [True, False, True]


def test_tradeoff_points_mark_a_front_in_every_panel() -> None:
    from attrib_core.analysis.render.plots import tradeoff_table

    points = tradeoff_table(add_labels(load_results([SMOKE_A])))
    assert not points.empty
    for _, group in points.groupby(["measure", "panel"]):
        assert group["on_front"].any()
        fastest = group.loc[group["time_s"].idxmin()]
        assert group.loc[group["time_s"] == fastest["time_s"], "on_front"].any()


def test_one_colour_per_method() -> None:
    style = method_style(["Saliency", "IntegratedGradients", "Saliency", *[f"M{i}" for i in range(30)]])
    assert style.methods == sorted(style.methods)
    assert len(style.palette) == 32
    pairs = {(tuple(style.palette[m]), style.markers[m]) for m in style.methods}
    assert len(pairs) == 32


# --- the whole report -------------------------------------------------------------------------


def assert_images(folder: Path, names: list[str]) -> None:
    for name in names:
        with Image.open(folder / name) as image:
            image.verify()


def html_sources(page: str) -> list[str]:
    return re.findall(r"""src\s*=\s*["']([^"']*)["']""", page)


def run_report(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = report.main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_report_writes_every_figure_table_and_a_self_contained_page(tmp_path: Path, capsys) -> None:
    out = tmp_path / "report"
    code, stdout, _ = run_report([str(SMOKE_A), "--out", str(out)], capsys)
    assert code == 0
    figures = ["tradeoff.png", "reference_error.png", "ig_steps.png", "batch_size.png", "efficiency.png"]
    figures += ["gallery_digits_cnn.png", "gallery_tabular_mlp.png"]
    assert_images(out, figures)
    for name in figures:
        assert f"wrote {name}" in stdout  # a progress line per figure
    assert "skipped ig_internal_batch" in stdout  # the smoke preset sets no internal_batch_size
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == len(records(SMOKE_A))
    assert {"median_ms", "iqr_ms", "peak_MiB", "efficiency", "fid_reference_error", "status"} <= set(summary.columns)
    assert (out / "summary.md").read_text().startswith("| cell_key |")
    assert len(pd.read_csv(out / "pareto.csv")) > 0
    page = (out / "report.html").read_text()
    sources = html_sources(page)
    assert len(sources) == len(figures)
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert "http://" not in page and "https://" not in page
    assert not list(tmp_path.glob(".report.*")), "scratch folder left behind"


def test_report_of_a_custom_preset_draws_internal_batching(tmp_path: Path, capsys) -> None:
    code, stdout, _ = run_report([str(IG_ONLY), "--out", str(tmp_path)], capsys)
    assert code == 0
    assert_images(tmp_path, ["tradeoff.png", "ig_steps.png", "ig_internal_batch.png", "gallery_digits_cnn.png"])
    assert "skipped batch_size" in stdout


def test_two_files_get_a_panel_per_run(tmp_path: Path) -> None:

    df = add_labels(load_results([SMOKE_A, IG_ONLY]))
    assert set(df.loc[df["workload"] == "digits_cnn", "panel"]) == {
        "digits_cnn · cpu · smoke_a",
        "digits_cnn · cpu · ig_only",
    }
    rendered = plots.tradeoff_figure(df, method_style(df["method"]))
    assert rendered.figure is not None
    assert len(rendered.figure.axes) == 2 * df["panel"].nunique()  # deletion and insertion rows
    assert_images(tmp_path, [plots.save(rendered, str(tmp_path))])


def test_failed_cells_are_listed_not_plotted(tmp_path: Path, capsys) -> None:
    data = json.loads(IG_ONLY.read_text())
    broken = data["benchmarks"][0]
    broken["stats"] = None
    broken["extra_info"].update(status="failed", error="first call: RuntimeError: out of memory")
    for key in ("memory", "fidelity", "calibration"):
        broken["extra_info"].pop(key, None)
    path = tmp_path / "with_failure.json"
    path.write_text(json.dumps(data))
    shutil.copy(IG_ONLY.with_suffix(".maps.npz"), path.with_suffix(".maps.npz"))
    code, _, _ = run_report([str(path), "--out", str(tmp_path / "out")], capsys)
    assert code == 0
    page = (tmp_path / "out" / "report.html").read_text()
    assert "Failed cells (1)" in page and "out of memory" in page
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert summary["status"].value_counts()["failed"] == 1
    assert pd.isna(summary.loc[summary["status"] == "failed", "median_ms"]).all()


def test_default_input_is_the_newest_results_file(tmp_path: Path) -> None:
    for stamp in ("20250101T000000Z", "20250301T000000Z", "20250201T000000Z"):
        shutil.copy(SMOKE_A, tmp_path / f"laptop_{stamp}_abc1234_smoke.json")
    (tmp_path / "zzz_notes.txt").write_text("not results")
    assert newest_in(tmp_path).name == "laptop_20250301T000000Z_abc1234_smoke.json"
    assert resolve_paths([], tmp_path) == [tmp_path / "laptop_20250301T000000Z_abc1234_smoke.json"]
    assert resolve_paths([str(tmp_path)]) == resolve_paths([], tmp_path)
    assert report.default_out(resolve_paths([], tmp_path)).name == "laptop_20250301T000000Z_abc1234_smoke"


# --- bad input: a clear error naming the file, non-zero exit, nothing written -----------------


# The table of bad results files tried (the README summarises it): what the file is, and the
# words the one-line error must contain besides the file's name.
BAD_RESULTS_FILES = {
    "empty": (lambda smoke: "", "empty file"),
    "truncated (a kill mid-write)": (lambda smoke: smoke[: len(smoke) // 2], "not valid JSON, truncated or corrupt"),
    "not json": (lambda smoke: "{ this is not json", "not valid JSON"),
    "another tool's JSON": (lambda smoke: json.dumps({"hello": "world"}), "not pytest-benchmark output"),
    "plain pytest-benchmark output": (
        lambda smoke: json.dumps({"machine_info": {}, "benchmarks": []}),
        "not from attrib-bench",
    ),
    "a newer schema version": (
        lambda smoke: smoke.replace('"schema_version": 1', '"schema_version": 99'),
        "written by a newer attrib-bench",
    ),
    "a record with no cell": (
        lambda smoke: smoke.replace('"cell_key"', '"cell_kee"', 1),
        "has no attrib-bench cell",
    ),
}


@pytest.mark.parametrize("case", [*BAD_RESULTS_FILES, "missing"])
def test_report_rejects_bad_input(tmp_path: Path, capsys, case: str) -> None:
    path = tmp_path / "bad.json"
    if case == "missing":
        message = "no such results file"
    else:
        make, message = BAD_RESULTS_FILES[case]
        path.write_text(make(SMOKE_A.read_text()))
    out = tmp_path / "out"
    code, _, stderr = run_report([str(path), "--out", str(out)], capsys)
    assert code == 2
    assert path.name in stderr and message in stderr
    assert len(stderr.strip().splitlines()) == 1  # one line, no traceback
    assert not out.exists()


def test_report_with_no_results_files(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="no results files"):
        resolve_paths([], tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ResultsError, match="empty: no results files"):
        resolve_paths([str(tmp_path / "empty")])


def test_a_bad_file_among_good_ones_writes_nothing(tmp_path: Path, capsys) -> None:
    path = tmp_path / "future.json"
    path.write_text(BAD_RESULTS_FILES["a newer schema version"][0](SMOKE_A.read_text()))
    out = tmp_path / "out"
    code, _, stderr = run_report([str(SMOKE_A), str(path), "--out", str(out)], capsys)
    assert code == 2 and "future.json" in stderr
    assert not out.exists()


# --- the light venv: no torch, no captum ------------------------------------------------------


def test_report_and_compare_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import attrib_core.analysis.render.report, attrib_core.analysis.render.compare\n"
        "import attrib_core.analysis.render.gallery\n"
        "bad = sorted(m for m in ('torch', 'captum', 'torchvision') if m in sys.modules)\n"
        "assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_pareto_table_of_a_run_without_tradeoff_points_is_empty_not_an_error():
    empty = plots.tradeoff_table(add_labels(load_results([SMOKE_A])).iloc[0:0])
    table = plots.front_members(empty)
    assert table.empty and "median_s_per_example" in table.columns


def test_knob_labels_name_the_knobs_and_are_not_a_knob_themselves():
    from attrib_core.analysis.knobs import all_knobs_label, knob_columns

    df = pd.DataFrame(
        {
            "method": ["IntegratedGradients"],
            "knob_n_steps": [8],
            "knob_method": ["gausslegendre"],
            "knob_labels": [{"n_steps": "steps", "method": "rule"}],
        }
    )
    assert knob_columns(df) == ["knob_n_steps", "knob_method"]
    assert all_knobs_label(df.iloc[0], knob_columns(df)) == "steps=8 rule=gausslegendre"
