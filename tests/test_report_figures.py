"""What the report's figures draw (attrib_core.analysis.render.plots, gallery): fronts only where
methods are comparable, error bars and statistics named on the axes, panels measured on random
weights said to be so, and the gallery's input panel and random-weights note. Checked on the
returned Figures and the tables they plot, never on pixels."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.container import ErrorbarContainer

from attrib_core.analysis.render import gallery, plots
from attrib_core.analysis.render.style import add_labels, method_style
from attrib_core.analysis.results import load_results

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SMOKE_A = FIXTURES / "smoke_a.json"
IG_ONLY = FIXTURES / "ig_only.json"
STATISTICS = ("median", "mean", "IQR", "95%", "one profiled call")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def cells(rows: list[tuple[str, float, float]]) -> pd.DataFrame:
    """Hand-made ok cells of one panel: (method, seconds per example, own-reference error)."""
    return pd.DataFrame(
        {
            "status": "ok",
            "panel": "w · cpu",
            "workload": "w",
            "file": "f.json",
            "method": [m for m, _, _ in rows],
            "label": [f"{m} {i}" for i, (m, _, _) in enumerate(rows)],
            "cell_key": [f"k{i}" for i in range(len(rows))],
            "batch_size": 1,
            "per_sample_median_s": [t for _, t, _ in rows],
            "q1_s": [0.9 * t for _, t, _ in rows],
            "q3_s": [1.2 * t for _, t, _ in rows],
            "fid_reference_error": [e for _, _, e in rows],
        }
    )


# --- fronts only where the metric is comparable across methods -------------------------------


def test_own_reference_errors_get_fronts_per_method_never_across_methods() -> None:
    # A is fast and has a tiny error against ITS reference; B's errors are against another map.
    df = cells([("A", 1.0, 0.001), ("B", 2.0, 0.5), ("B", 3.0, 0.1), ("B", 4.0, 0.3)])
    points = plots.reference_error_table(df).set_index("cell_key")
    # a cross-method front would keep only A; each method's own front keeps B's two best settings
    assert points["on_front"].to_dict() == {"k0": True, "k1": True, "k2": True, "k3": False}
    assert plots.tradeoff_table(df).empty  # no comparable metric: no cross-method front at all


def test_the_tradeoff_front_and_its_table_hold_only_comparable_metrics() -> None:
    df = add_labels(load_results([SMOKE_A]))
    points = plots.tradeoff_table(df)
    assert set(points["metric"]) == {"fid_deletion", "fid_insertion"}
    table = plots.front_members(points)
    assert len(table) and set(table["fidelity"]) <= {"fid_deletion", "fid_insertion"}
    for (metric, _), group in points.groupby(["metric", "panel"]):
        best = group["value"].max() if metric == "fid_insertion" else group["value"].min()
        assert group.loc[group["value"] == best, "on_front"].any()  # insertion: higher is better


def test_the_own_reference_axis_says_it_is_not_comparable(tmp_path: Path) -> None:
    df = add_labels(load_results([SMOKE_A]))
    rendered = plots.reference_error_figure(df, method_style(df["method"]))
    labels = [ax.get_ylabel() for ax in rendered.figure.axes if ax.get_ylabel()]
    assert labels and all("(not comparable between methods" in " ".join(label.split()) for label in labels)
    assert (tmp_path / plots.save(rendered, str(tmp_path))).stat().st_size > 0


# --- spread: error bars, and the statistic named ------------------------------------------------


def test_a_mean_over_examples_gets_its_95_percent_interval() -> None:
    frame = pd.DataFrame({"fid_reference_error": [2.0], "examples_reference_error": [(1.0, 2.0, 3.0)]})
    low, high = plots.REFERENCE_ERROR.bounds(frame)
    half = 4.302653 / np.sqrt(3)  # t(0.975, 2) * sd 1 / sqrt(3)
    assert low[0] == pytest.approx(2.0 - half, rel=1e-5) and high[0] == pytest.approx(2.0 + half, rel=1e-5)
    deletion = pd.DataFrame({"fid_deletion": [0.2], "examples_deletion": [(0.0, 0.2, 0.4)]})
    assert plots.DELETION.bounds(deletion)[0][0] == 0.0  # an AUC's interval stops at 0
    one = pd.DataFrame({"fid_reference_error": [2.0], "examples_reference_error": [(2.0,)]})
    assert plots.REFERENCE_ERROR.bounds(one)[0].isna().all()  # one example: no interval


def bar_segments(ax) -> set[tuple[float, float, float]]:
    """(x, low, high) of every vertical error bar drawn on the axes."""
    out = set()
    for container in ax.containers:
        if isinstance(container, ErrorbarContainer):
            for lines in container.lines[2]:
                for (x0, y0), (_, y1) in lines.get_segments():
                    out.add((round(float(x0), 6), round(float(y0), 9), round(float(y1), 9)))
    return out


def test_ig_steps_draws_each_cells_round_iqr_as_its_time_bar() -> None:
    df = add_labels(load_results([IG_ONLY]))
    rendered = plots.ig_steps_figure(df)
    time_axes = rendered.figure.axes[0]
    assert "median of rounds; bars: IQR" in time_axes.get_ylabel()
    plain = df[df["knob_internal_batch_size"].isna()]
    expected = {
        (float(n), round(float(q1), 9), round(float(q3), 9))
        for n, q1, q3 in zip(plain["knob_n_steps"], plain["q1_s"], plain["q3_s"], strict=True)
    }
    assert bar_segments(time_axes) == expected


def test_every_measure_axis_names_its_statistic() -> None:
    df = add_labels(load_results([SMOKE_A, IG_ONLY]))
    style = method_style(df["method"])
    figures = [
        plots.tradeoff_figure(df, style),
        plots.reference_error_figure(df, style),
        plots.ig_steps_figure(df),
        plots.ig_internal_batch_figure(df),
        plots.batch_size_figure(df, style),
    ]
    checked = 0
    for rendered in figures:
        assert rendered.figure is not None, rendered.skipped
        for ax in rendered.figure.axes:
            for label in (ax.get_ylabel(), ax.get_xlabel() if "time" in ax.get_xlabel() else ""):
                if label:
                    assert any(word in label for word in STATISTICS), label
                    checked += 1
    assert checked >= 10
    efficiency = plots.efficiency_figure(df, style)
    axes = [ax for ax in efficiency.figure.axes if ax.get_visible()]
    assert all("median" in ax.get_xlabel() and "IQR" in ax.get_xlabel() for ax in axes)
    assert all(any(isinstance(c, ErrorbarContainer) for c in ax.containers) for ax in axes)


def test_efficiency_bars_are_the_limit_over_the_rounds_quartiles() -> None:
    df = add_labels(load_results([SMOKE_A]))
    table = plots.efficiency_table(df)
    limit = table["efficiency"] * table["median_s"]
    np.testing.assert_allclose(table["low"], limit / table["q3_s"])
    np.testing.assert_allclose(table["high"], limit / table["q1_s"])
    assert (table["low"] <= table["efficiency"]).all() and (table["efficiency"] <= table["high"]).all()


# --- measured but not meaningful ----------------------------------------------------------------


def random_weights(df: pd.DataFrame) -> pd.DataFrame:
    """The cells as a run on random weights records them: values measured, marked not meaningful."""
    df = df.copy()
    df["weights"] = "random"
    for metric in ("reference_error", "completeness"):
        df[f"fid_{metric}"] = np.nan
        df[f"fid_{metric}_status"] = "not_meaningful"
    return df


def test_ig_steps_says_random_weight_errors_are_not_meaningful_not_unmeasured() -> None:
    rendered = plots.ig_steps_figure(random_weights(add_labels(load_results([IG_ONLY]))))
    texts = [t.get_text() for ax in rendered.figure.axes for t in ax.texts]
    assert sum("measured, but not meaningful" in t and "random weights" in t for t in texts) == 2
    assert not any(plots.NOT_MEASURED in t for t in texts)
    error_axes = [ax for ax in rendered.figure.axes if ax.texts]
    assert all(len(ax.get_yticks()) == 0 for ax in error_axes)  # no made-up scale beside the note


def test_a_panel_nothing_measured_still_says_so() -> None:
    df = add_labels(load_results([IG_ONLY]))
    df["fid_completeness"] = np.nan
    df["fid_completeness_status"] = "not_applicable"
    notes = plots.not_meaningful_notes(df, [plots.COMPLETENESS])
    assert notes == {}
    rendered = plots.ig_steps_figure(df)
    texts = [t.get_text() for ax in rendered.figure.axes for t in ax.texts]
    assert texts == []  # completeness is then no row of the figure at all


# --- the gallery --------------------------------------------------------------------------------


def gallery_of(tmp_path: Path, image: np.ndarray | None, weights: str = "trained") -> gallery.Rendered:
    path = tmp_path / "smoke.json"
    shutil.copy(SMOKE_A, path)
    with np.load(SMOKE_A.with_suffix(".maps.npz")) as archive:
        maps = {key: archive[key] for key in archive.files}
    if image is not None:
        maps[gallery.GROUND_TRUTH_IMAGE + "digits_cnn"] = image
    np.savez(path.with_suffix(".maps.npz"), **maps)
    df = add_labels(load_results([path]))
    df["weights"] = weights
    figures = gallery.gallery_figures(df, [path], method_style(df["method"]))
    return next(r for r in figures if r.name == "gallery_digits_cnn")


def test_the_gallery_starts_with_the_input_its_maps_are_of(tmp_path: Path) -> None:
    image = np.random.default_rng(0).random((8, 8, 1)).astype(np.float16)
    rendered = gallery_of(tmp_path, image)
    first = rendered.figure.axes[0]
    assert first.get_title() == "input"
    np.testing.assert_array_equal(first.images[0].get_array(), image.astype(np.float32).squeeze())
    assert "First panel: the input" in rendered.caption and "random" not in rendered.title


def test_a_gallery_without_a_stored_input_says_so(tmp_path: Path) -> None:
    rendered = gallery_of(tmp_path, None)
    assert rendered.figure.axes[0].get_title() != "input"
    assert "stored no input image" in rendered.caption


def test_a_random_weights_gallery_says_so_in_title_caption_and_figure(tmp_path: Path) -> None:
    rendered = gallery_of(tmp_path, None, weights="random")
    assert rendered.title.endswith("(random weights)")
    assert rendered.caption.startswith(gallery.RANDOM_NOTE)
    assert "randomly initialised" in rendered.figure.get_suptitle()


def test_normalised_inputs_are_stretched_for_display_and_say_so() -> None:
    shown, stretched = gallery.displayable(np.array([[-2.0, 0.0], [2.0, 1.0]]))
    np.testing.assert_allclose(shown, [[0.0, 0.5], [1.0, 0.75]])
    assert stretched
    assert not gallery.displayable(np.array([[0.0, 0.5]]))[1]


def test_gallery_captions_end_above_the_next_rows_titles(tmp_path: Path) -> None:
    rendered = gallery_of(tmp_path, None)
    fig = rendered.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    grid = [ax for ax in fig.axes if ax.get_visible()]
    rows: dict[float, list] = {}
    for ax in grid:
        rows.setdefault(round(ax.get_position().y0, 3), []).append(ax)
    ordered = [rows[y] for y in sorted(rows, reverse=True)]
    assert len(ordered) > 1
    for upper, lower in itertools.pairwise(ordered):
        caption_bottom = min(ax.xaxis.label.get_window_extent(renderer).y0 for ax in upper)
        title_top = max(ax.title.get_window_extent(renderer).y1 for ax in lower)
        assert caption_bottom > title_top


def test_the_run_stores_every_image_workloads_input(monkeypatch) -> None:
    from attrib_core.suite import cells as suite_cells

    photo = SimpleNamespace(inputs=torch.rand(2, 3, 224, 224), masks=None, is_image=True)
    monkeypatch.setattr(suite_cells, "load_workload", lambda name: photo)
    arrays = suite_cells.ground_truth_arrays({"photo"})
    assert set(arrays) == {gallery.GROUND_TRUTH_IMAGE + "photo"}  # no mask to store
    assert arrays[gallery.GROUND_TRUTH_IMAGE + "photo"].shape == (suite_cells.MAP_SIDE, suite_cells.MAP_SIDE, 3)
