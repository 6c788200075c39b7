"""The report's ground-truth parts (attrib_core.analysis.render.plots.localisation_*, gallery mask outlines),
on the committed smoke fixture with relevance mass values and a mask added by hand."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.collections import Collection

from attrib_core.analysis.render import gallery, plots
from attrib_core.analysis.render.style import add_labels, method_style
from attrib_core.analysis.results import load_results

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SMOKE_A = FIXTURES / "smoke_a.json"


def with_relevance_mass(df: pd.DataFrame) -> pd.DataFrame:
    """digits_cnn cells get a made-up relevance mass accuracy that grows with their time."""
    df = df.copy()
    digits = (df["workload"] == "digits_cnn") & (df["status"] == "ok")
    ranks = df.loc[digits, "per_sample_median_s"].rank(method="first")
    df["fid_relevance_mass"] = np.nan
    df.loc[digits, "fid_relevance_mass"] = ranks / ranks.max()
    return df


def test_localisation_front_is_higher_is_better() -> None:
    df = with_relevance_mass(add_labels(load_results([SMOKE_A])))
    points = plots.localisation_table(df)
    assert set(points["workload"]) == {"digits_cnn"}  # tabular_mlp has no value: not a point
    for _, group in points.groupby("panel"):
        # values rise with time, so every point is on the front (each is slower and better)
        assert group["on_front"].sum() == group[["time_s", "value"]].drop_duplicates().shape[0]
        best = group.loc[group["value"].idxmax()]
        assert best["on_front"]


def test_localisation_figure_draws_one_panel_or_says_why_not(tmp_path: Path) -> None:
    df = add_labels(load_results([SMOKE_A]))
    style = method_style(df["method"])
    assert plots.localisation_figure(df, style).skipped == "no ok cell has a relevance mass accuracy"
    rendered = plots.localisation_figure(with_relevance_mass(df), style)
    assert rendered.figure is not None and len(rendered.figure.axes) == 1
    assert "relevance mass accuracy" in rendered.figure.axes[0].get_ylabel()
    assert (tmp_path / plots.save(rendered, str(tmp_path))).stat().st_size > 0


def test_gallery_outlines_the_stored_mask_on_the_input_and_every_map(tmp_path: Path) -> None:
    path = tmp_path / "smoke_with_mask.json"
    shutil.copy(SMOKE_A, path)
    with np.load(SMOKE_A.with_suffix(".maps.npz")) as archive:
        maps = {key: archive[key] for key in archive.files}
    mask = np.zeros((8, 8), dtype=bool)
    mask[2:6, 3:7] = True
    maps[gallery.GROUND_TRUTH_IMAGE + "digits_cnn"] = np.random.default_rng(0).random((8, 8, 1)).astype(np.float16)
    maps[gallery.GROUND_TRUTH_MASK + "digits_cnn"] = mask
    np.savez_compressed(path.with_suffix(".maps.npz"), **maps)
    df = add_labels(load_results([path]))
    figures = {r.name: r for r in gallery.gallery_figures(df, [path], method_style(df["method"]))}
    digits, tabular = figures["gallery_digits_cnn"], figures["gallery_tabular_mlp"]
    shown = [ax for ax in digits.figure.axes if ax.get_visible()]
    picked = gallery.pick_cells(df, {(path.name, k): v for k, v in maps.items()})
    n_methods = int((picked["workload"] == "digits_cnn").sum())
    assert len(shown) == n_methods + 1 and shown[0].get_title() == "input"
    outlined = [ax for ax in shown if any(isinstance(c, Collection) for c in ax.collections)]
    two_d = sum(maps[k].shape == (8, 8) for k in df.loc[df["workload"] == "digits_cnn", "cell_key"] if k in maps)
    assert len(outlined) >= 1 + min(two_d, n_methods)
    assert "ground-truth mask" in digits.caption and "ground-truth mask" not in tabular.caption


def test_workload_without_a_stored_mask_gets_no_input_panel() -> None:
    df = add_labels(load_results([SMOKE_A]))
    rendered = gallery.gallery_figures(df, [SMOKE_A], method_style(df["method"]))
    titles = [ax.get_title() for r in rendered for ax in r.figure.axes]
    assert rendered and "input" not in titles


def test_summary_lists_localisation_columns_only_for_runs_that_measured_them() -> None:
    from attrib_core.analysis.tables import summary_table

    df = add_labels(load_results([SMOKE_A]))
    assert "fid_relevance_mass" not in summary_table(df).columns
    summary = summary_table(with_relevance_mass(df))
    digits = summary["workload"] == "digits_cnn"
    assert summary.loc[digits & (summary["status"] == "ok"), "fid_relevance_mass"].notna().all()
    assert summary.loc[~digits, "fid_relevance_mass"].isna().all()
