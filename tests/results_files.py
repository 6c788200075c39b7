"""Small results files written by tests: one record per cell, read back through load_results."""

from __future__ import annotations

import json
from pathlib import Path

from attrib_core.analysis.results import load_results


def record(method: str, batch: int, median_s: float, passes: dict, calibration: dict) -> dict:
    key = f"digits_cnn-{method}-cpu-b{batch}-fp32-contiguous"
    data = [median_s] * 5
    return {
        "name": f"test_cell[{key}]",
        "stats": {"median": median_s, "min": median_s, "max": median_s, "rounds": 5, "data": data},
        "extra_info": {
            "schema_version": 1,
            "cell_key": key,
            "cell": {"workload": "digits_cnn", "method": method, "device": "cpu", "batch_size": batch},
            "status": "ok",
            "passes": passes,
            "calibration": calibration,
        },
    }


def table(tmp_path: Path, records: list[dict]):
    data = {
        "machine_info": {"attrib_bench": {"schema_version": 1, "preset": "t", "environment": {"gpus": []}}},
        "commit_info": {"id": "abc"},
        "datetime": "2026-01-01T00:00:00",
        "benchmarks": records,
    }
    path = tmp_path / "run.json"
    path.write_text(json.dumps(data))
    return load_results([path]).set_index("method")


NEW = {"basis": "best batch", "forward_s_per_sample": 1e-3, "best_batch_size": {"forward": 8}}
