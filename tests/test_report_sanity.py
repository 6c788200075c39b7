"""The report's sanity panel and table (attrib_core.analysis.render.sanity), and the curves the tidy
table carries for them (attrib_core.analysis.results.similarity_curves), on the committed smoke
fixture with sanity records added by hand."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from attrib_core.analysis.render import report
from attrib_core.analysis.render.sanity import SANITY_THRESHOLD, sanity_figure, sanity_table
from attrib_core.analysis.render.style import add_labels, method_style
from attrib_core.analysis.results import load_results, similarity_curves

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SMOKE_A = FIXTURES / "smoke_a.json"
STEPS = ["fc2", "fc1", "conv2", "conv1"]


def cascading(curve: list[float]) -> dict:
    return {
        "status": "ok",
        "value": sum(curve) / len(curve),
        "time_s": 0.25,
        "steps": ["trained", *STEPS],
        "mean_curve": {"spearman_abs": [1.0, *curve]},
    }


def with_sanity(tmp_path: Path) -> Path:
    """The smoke file, its digits_cnn Saliency cells given a falling curve and its other digits cells a
    flat one (a method that ignores the model), plus a random-logit value."""
    data = json.loads(SMOKE_A.read_text())
    for record in data["benchmarks"]:
        extra = record["extra_info"]
        if extra["cell"]["workload"] != "digits_cnn" or extra.get("status") != "ok":
            continue
        falls = extra["cell"]["method"] == "Saliency"
        curve = [0.5, 0.3, 0.2, 0.1] if falls else [0.95, 0.9, 0.9, 0.85]
        extra.setdefault("fidelity", {})["randomisation_cascading"] = cascading(curve)
        extra["fidelity"]["random_logit"] = {"status": "ok", "value": 0.2 if falls else 0.9, "time_s": 0.05}
    path = tmp_path / "smoke_sanity.json"
    path.write_text(json.dumps(data))
    maps = SMOKE_A.with_suffix(".maps.npz")
    shutil.copy(maps, tmp_path / "smoke_sanity.maps.npz")
    return path


def test_similarity_curves_keep_only_ok_records_with_steps() -> None:
    fidelity = {
        "randomisation_cascading": cascading([0.5, 0.4, 0.3, 0.2]),
        "deletion": {"status": "ok", "value": 0.1, "mean_curve": [1.0, 0.5]},  # a curve, but not over steps
        "randomisation_independent": {"status": "not_applicable", "steps": None},
    }
    curves = similarity_curves(fidelity)
    assert list(curves) == ["randomisation_cascading"]
    assert curves["randomisation_cascading"]["steps"] == ["trained", *STEPS]
    assert similarity_curves({}) is None


def test_table_names_the_cells_failing_at_the_threshold(tmp_path: Path) -> None:
    df = add_labels(load_results([with_sanity(tmp_path)]))
    table = sanity_table(df)
    assert len(table) == int(df["similarity_curves"].notna().sum()) > 1
    saliency = table[table["method"].str.startswith("Saliency")]
    others = table[~table["method"].str.startswith("Saliency")]
    assert (saliency["fails"] == "-").all()
    # the flat curve's mean is 0.9, above SANITY_THRESHOLD; its random-logit value 0.9 too
    assert SANITY_THRESHOLD < 0.9
    assert (others["fails"] == "cascading randomisation, random logit").all()
    assert (
        table["cascading, all randomised"] == table["method"].str.startswith("Saliency").map({True: 0.1, False: 0.85})
    ).all()
    assert (table["sanity_checks_s"] == 0.3).all()  # 0.25 s + 0.05 s, beside the call's median_ms
    assert table["median_ms"].notna().all()


def test_panel_draws_one_column_per_workload_and_skips_random_weights(tmp_path: Path) -> None:
    df = add_labels(load_results([with_sanity(tmp_path)]))
    style = method_style(df["method"])
    rendered = sanity_figure(df, style)
    assert rendered.figure is not None
    axes = rendered.figure.axes
    assert len(axes) == 2  # digits_cnn · cpu: the cascading and the independent row
    lines = [line for line in axes[0].get_lines() if len(line.get_xdata()) == len(STEPS) + 1]
    assert len(lines) == int(df["similarity_curves"].notna().sum())
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["trained", *STEPS]
    untrained = df.assign(weights="random")
    assert sanity_figure(untrained, style).skipped == "no ok cell with trained weights has a randomisation record"
    assert sanity_table(untrained).empty


def test_report_shows_the_panel_and_writes_the_table(tmp_path: Path) -> None:
    out = tmp_path / "out"
    written = report.build([with_sanity(tmp_path)], out, log=lambda _: None)
    names = {path.name for path in written}
    assert {"sanity.png", "sanity.csv"} <= names
    html = (out / "report.html").read_text()
    assert "Sanity: does the map change when the model" in html and "cascading randomisation" in html
    assert len(pd.read_csv(out / "sanity.csv")) > 1
