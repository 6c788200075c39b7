"""attrib_core.journal: a run's durable per-cell log, and the results file built from it."""

import json

import numpy as np
import pytest

from attrib_core import journal, schema

HEADER = {
    "machine_info": {"attrib_bench": schema.run_block("p", "0" * 64, ["cpu"], {"cpu_model": "x"})},
    "commit_info": {"id": "abc1234"},
    "results_name": "0001_box_20260101T000000Z_abc1234_p.json",
    "pytest_benchmark_version": "5.3.1",
    "run": {"started": "2026-01-01T00:00:00+00:00"},
}


def record(key: str, status: str = "ok") -> dict:
    cell = {"workload": "w", "method": key, "device": "cpu", "batch_size": 1, "precision": "fp32"}
    cell.update(memory_format="contiguous", knobs={}, seed=0)
    extra = {"schema_version": 2, "cell_key": key, "cell": cell, "status": status}
    stats = {"data": [0.1, 0.2], "median": 0.15} if status == "ok" else None
    return {"group": f"w/{key}", "name": key, "params": {"cell_key": key}, "extra_info": extra, "stats": stats}


def test_a_torn_last_line_is_ignored_and_the_rest_kept(tmp_path):
    path = tmp_path / f"run{journal.SUFFIX}"
    log = journal.Journal.create(path, HEADER)
    log.add_cell(record("a"), None)
    log.add_cell(record("b", "failed"), None)
    with open(path, "a") as handle:
        handle.write('{"kind": "cell", "cell_key": "c", "rec')  # a kill mid-write
    contents = journal.read(path)
    assert contents.torn_lines == 1 and contents.done_keys() == {"a", "b"}


def test_assemble_writes_a_results_file_the_schema_reads(tmp_path):
    path = tmp_path / f"run{journal.SUFFIX}"
    log = journal.Journal.create(path, HEADER)
    gallery = np.arange(6, dtype=np.float16).reshape(2, 3)
    log.add_cell(record("a"), gallery)
    log.add_cell(record("b", "failed"), None)
    out = journal.assemble(journal.read(path), finished=True)
    data = schema.read(out)
    assert [r["name"] for r in data["benchmarks"]] == ["a"]  # pytest-benchmark's list: timed cells only
    assert [r["name"] for r in data["machine_info"]["attrib_bench"]["untimed"]] == ["b"]
    assert data["machine_info"]["attrib_bench"]["run"]["complete"] is True
    assert np.array_equal(np.load(out.with_suffix(".maps.npz"))["a"], gallery)


def test_a_later_line_for_a_cell_wins_and_resumes_are_counted(tmp_path):
    path = tmp_path / f"run{journal.SUFFIX}"
    journal.Journal.create(path, HEADER).add_cell(record("a", "incomplete"), None)
    log = journal.Journal.reopen(journal.read(path))
    log.add_cell(record("a"), None)
    contents = journal.read(path)
    assert contents.cells["a"]["record"]["extra_info"]["status"] == "ok"
    assert [r["cells_before"] for r in contents.resumes] == [0]


def test_not_a_journal_and_an_existing_journal_are_refused(tmp_path):
    other = tmp_path / f"other{journal.SUFFIX}"
    other.write_text(json.dumps({"kind": "cell"}) + "\n")
    with pytest.raises(journal.JournalError, match="not an attrib-bench journal"):
        journal.read(other)
    path = tmp_path / f"run{journal.SUFFIX}"
    journal.Journal.create(path, HEADER)
    with pytest.raises(journal.JournalError, match="already exists"):
        journal.Journal.create(path, HEADER)


def test_later_passes_blocks_join_their_cells_record_and_a_remeasured_cell_drops_old_ones(tmp_path):
    path = tmp_path / f"run{journal.SUFFIX}"
    log = journal.Journal.create(path, HEADER)
    first = record("a")
    first["extra_info"]["blocks"] = [{"pass": 1, "samples_s": [0.1, 0.2]}]
    log.add_cell(first, None)
    log.add_block("a", {"pass": 2, "samples_s": [0.3]})
    log.add_cell(record("b"), None)
    log.add_block("b", {"pass": 2, "samples_s": [0.4]})
    log.add_cell(record("b"), None)  # measured again (a resume): the earlier block was of the old measurement
    data = json.loads(journal.assemble(journal.read(path), finished=True).read_text())
    by_key = {r["extra_info"]["cell_key"]: r["extra_info"] for r in schema.records(data)}
    assert by_key["a"]["blocks"] == [{"pass": 1, "samples_s": [0.1, 0.2]}, {"pass": 2, "samples_s": [0.3]}]
    assert "blocks" not in by_key["b"]
