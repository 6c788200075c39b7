"""Efficiency against the limit in the tidy table: new files (best batch, partial backward),
old files (own batch, read as before and marked so), the suspect flag and the sanity check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from attrib_core.analysis.results import OLD_BASIS, efficiency_warnings, load_results
from tests.results_files import NEW, record, table

FIXTURES = Path(__file__).parent / "fixtures"


def test_limit_uses_the_pass_each_method_backward_makes(tmp_path):
    df = table(
        tmp_path,
        [
            # Saliency: 4 full passes at 4 ms a row = 16 ms; measured 20 ms -> 0.8
            record(
                "Saliency",
                4,
                0.020,
                {"forward": 4, "backward": 4, "backward_kind": "forward_backward"},
                {**NEW, "forward_backward_s_per_sample": 4e-3, "best_batch_size": {"forward_backward": 16}},
            ),
            # LayerGradCam: 4 rows to the layer at 2.5 ms = 10 ms (a full backward would say 16 ms)
            record(
                "LayerGradCam",
                4,
                0.010,
                {"forward": 4, "backward": 4, "backward_kind": "forward_backward_to_layer"},
                {**NEW, "forward_backward_to_layer_s_per_sample": 2.5e-3, "forward_backward_s_per_sample": 4e-3},
            ),
            # IG with delta: 40 backward rows x 4 ms + 8 forward-only rows x 1 ms = 168 ms
            record(
                "IntegratedGradients",
                4,
                0.200,
                {"forward": 48, "backward": 40, "backward_kind": "forward_backward"},
                {**NEW, "forward_backward_s_per_sample": 4e-3},
            ),
            # a forward-only method: 20 rows x 1 ms = 20 ms, in 19 ms -> suspect
            record("Occlusion", 4, 0.019, {"forward": 20, "backward": 0, "backward_kind": "forward_backward"}, NEW),
        ],
    )
    assert df.loc["Saliency", "limit_s"] == pytest.approx(0.016)
    assert df.loc["LayerGradCam", "limit_s"] == pytest.approx(0.010)
    assert df.loc["IntegratedGradients", "limit_s"] == pytest.approx(0.168)
    assert df.loc["Occlusion", "limit_s"] == pytest.approx(0.020)
    assert df["efficiency"].to_dict() == pytest.approx(
        {"Saliency": 0.8, "LayerGradCam": 1.0, "IntegratedGradients": 0.84, "Occlusion": 0.020 / 0.019}
    )
    assert df["efficiency_suspect"].to_dict() == {
        "Saliency": False,
        "LayerGradCam": False,
        "IntegratedGradients": False,
        "Occlusion": True,
    }
    assert set(df["efficiency_basis"]) == {"best batch"}
    assert df.loc["Saliency", "calib_best_batch_size"] == 16 and df.loc["Occlusion", "calib_best_batch_size"] == 8
    assert df.loc["LayerGradCam", "calib_backward_kind"] == "forward_backward_to_layer"


def test_a_method_without_forward_only_rows_needs_no_forward_calibration(tmp_path):
    calibration = {"basis": "best batch", "forward_backward_s_per_sample": 2e-3}  # no forward measured
    df = table(tmp_path, [record("Saliency", 2, 0.004, {"forward": 2, "backward": 2}, calibration)])
    assert df.loc["Saliency", "efficiency"] == pytest.approx(1.0)


def test_paired_rounds_give_the_limit_and_the_measured_time(tmp_path):
    # the search said 4 ms a row; in the cell's own window (load) the passes took 6 ms a row
    # and the cell 30 ms a call, where the benchmark's median says 20 ms: 24 / 30 = 0.8
    paired = {"cell_median_s": 0.030, "forward_backward_s_per_sample": 6e-3, "best_batch_size": {"forward_backward": 4}}
    calibration = {**NEW, "forward_backward_s_per_sample": 4e-3, "paired": paired}
    df = table(tmp_path, [record("Saliency", 4, 0.020, {"forward": 4, "backward": 4}, calibration)])
    assert df.loc["Saliency", "limit_s"] == pytest.approx(0.024)
    assert df.loc["Saliency", "efficiency"] == pytest.approx(0.8)
    assert df.loc["Saliency", "efficiency_basis"] == "best batch, paired with the cell"


def test_old_files_are_read_as_before_and_marked_own_batch():
    df = load_results([FIXTURES / "smoke_a.json"])
    ok = df[df["status"] == "ok"]
    assert set(ok["efficiency_basis"]) == {OLD_BASIS}
    bound = (
        ok["passes_backward"] * ok["calib_forward_backward_s_per_sample"]
        + (ok["passes_forward"] - ok["passes_backward"]) * ok["calib_forward_s_per_sample"]
    )
    assert np.allclose(ok["efficiency"], bound / ok["median_s"])
    assert (ok["calib_best_batch_size"] == ok["batch_size"]).all()
    assert (ok["efficiency_suspect"] == (ok["efficiency"] > 1.05)).all()


def test_sanity_check_names_single_pass_cells_outside_the_range(tmp_path):
    passes = {"forward": 4, "backward": 4}
    df = table(
        tmp_path,
        [
            record("Saliency", 4, 0.0100, passes, {**NEW, "forward_backward_s_per_sample": 2.5e-3}),  # 1.00
            record("InputXGradient", 4, 0.0200, passes, {**NEW, "forward_backward_s_per_sample": 2.5e-3}),  # 0.50
            record("GuidedBackprop", 4, 0.0050, passes, {**NEW, "forward_backward_s_per_sample": 2.5e-3}),  # 2.00
            # not single-pass (8 rows for 4 examples): far off, but not this check's business
            record("DeepLift", 4, 0.1, {"forward": 8, "backward": 8}, {**NEW, "forward_backward_s_per_sample": 2.5e-3}),
        ],
    ).reset_index()
    lines = efficiency_warnings(df)
    assert len(lines) == 2
    assert "0.50" in lines[0] and "InputXGradient" in lines[0]
    assert "2.00" in lines[1] and "GuidedBackprop" in lines[1]
    assert efficiency_warnings(df, low=0.4, high=2.5) == []
