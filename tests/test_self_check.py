"""The run's check of its own figures: each finding says ok or names the cells it is about."""

from __future__ import annotations

import pandas as pd

from attrib_core.analysis.results import efficiency_label
from attrib_core.analysis.self_check import self_check
from tests.results_files import NEW, record, table

SINGLE = {"forward": 4, "backward": 4}


def _findings(df: pd.DataFrame) -> dict[str, object]:
    return {f.check: f for f in self_check(df.reset_index())}


def test_a_suspect_efficiency_is_named_with_its_value(tmp_path):
    df = table(
        tmp_path,
        [
            record("Saliency", 4, 0.0100, SINGLE, {**NEW, "forward_backward_s_per_sample": 2.5e-3}),  # 1.00
            record("InputXGradient", 4, 0.0010, SINGLE, {**NEW, "forward_backward_s_per_sample": 2.5e-3}),  # 10.0
        ],
    )
    found = _findings(df)
    assert not found["efficiency"].ok
    assert found["efficiency"].cells == ("digits_cnn-InputXGradient-cpu-b4-fp32-contiguous (10.00)",)
    assert "1 of 2 at or below 1.05" in found["efficiency"].detail
    assert not found["single-pass cells near 1"].ok
    assert found["efficiency"].line().startswith("WARN efficiency:")


def test_a_run_with_sound_figures_passes_every_check(tmp_path):
    calibration = {**NEW, "forward_backward_s_per_sample": 2.4e-3, "budget_exhausted": False}
    df = table(tmp_path, [record("Saliency", 4, 0.0100, SINGLE, calibration)])  # 0.96
    found = _findings(df)
    assert all(f.ok for f in found.values()), [f.line() for f in found.values()]
    assert set(found) == {"efficiency", "single-pass cells near 1", "calibration", "timing spread"}


def test_a_calibration_cut_short_by_its_budget_is_named(tmp_path):
    calibration = {**NEW, "forward_backward_s_per_sample": 2.4e-3, "budget_exhausted": True}
    df = table(tmp_path, [record("Saliency", 4, 0.0100, SINGLE, calibration)])
    found = _findings(df)
    assert not found["calibration"].ok
    assert found["calibration"].cells == ("digits_cnn-Saliency-cpu-b4-fp32-contiguous",)


def test_no_finished_cell_is_a_finding_of_its_own():
    empty = pd.DataFrame({"status": ["failed"], "cell_key": ["x"]})
    assert [(f.check, f.ok) for f in self_check(empty)] == [("cells", False)]


def test_efficiency_label_marks_what_is_above_the_suspect_line():
    assert efficiency_label(0.953) == "0.95"
    assert efficiency_label(1.05) == "1.05"
    assert efficiency_label(10.6) == "10.60 suspect"
    assert efficiency_label(None) == "-" and efficiency_label(float("nan")) == "-"
