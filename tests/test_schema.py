"""attrib_core.schema: one versioned format, written and read by the same module."""

import json
from pathlib import Path

import pytest

from attrib_core import schema

V1 = Path(__file__).resolve().parent / "fixtures" / "ig_only.json"  # written by schema version 1


def test_version_1_files_are_upgraded_on_reading(tmp_path):
    data = json.loads(V1.read_text())
    failed = data["benchmarks"][0]
    failed["stats"] = None
    failed["extra_info"]["status"] = "failed"
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(data))
    read = schema.read(path)
    meta = read["machine_info"]["attrib_bench"]
    assert meta["schema_version"] == schema.SCHEMA_VERSION and meta["schema_version_read_from"] == 1
    assert [r["name"] for r in meta["untimed"]] == [failed["name"]]
    assert all(r["stats"] for r in read["benchmarks"])
    for record in schema.records(read):
        cell = record["extra_info"]["cell"]
        assert record["group"] == f"{cell['workload']}/{cell['method']}"
        assert record["params"] == {"cell_key": record["extra_info"]["cell_key"]}
    assert len(schema.records(read)) == len(data["benchmarks"])


def test_a_newer_version_says_to_upgrade(tmp_path):
    data = json.loads(V1.read_text())
    data["machine_info"]["attrib_bench"]["schema_version"] = schema.SCHEMA_VERSION + 1
    path = tmp_path / "new.json"
    path.write_text(json.dumps(data))
    with pytest.raises(schema.ResultsError, match="newer attrib-bench"):
        schema.read(path)


def test_every_version_has_a_history_entry():
    assert sorted(schema.FORMAT_HISTORY) == list(range(1, schema.SCHEMA_VERSION + 1))


def test_dumps_turns_non_finite_numbers_into_null():
    assert json.loads(schema.dumps({"a": float("nan"), "b": [float("inf"), 1.0]})) == {"a": None, "b": [None, 1.0]}


def test_a_cell_needs_every_identity_field():
    with pytest.raises(ValueError, match="missing: seed"):
        schema.cell_identity(
            workload="w", method="m", device="cpu", batch_size=1, precision="fp32", memory_format="c", knobs={}
        )
