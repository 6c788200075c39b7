"""The dashboard: a static site over a store of results files from several machines.

The store is built from the real fixture tests/fixtures/ig_only.json (8 IntegratedGradients cells,
schema version 1). TEST FIXTURES, made up here: a second machine "gpubox" is the same file with
its machine name, CPU and GPU rewritten, its cells moved to cuda and timed 4x faster, one cell
failed, one without fidelity and one not run; "laptop" is the file twice (one commit, two runs);
the history is tests/test_history.py's seeded one (a 1.5x step at a known commit).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from attrib_core.analysis.render.dashboard import build, hardware_page
from attrib_core.analysis.render.dashboard.history_page import histories
from attrib_core.analysis.render.dashboard.layout import PAGES
from attrib_core.analysis.render.dashboard.store import load_store
from attrib_core.commands import cli
from tests.test_history import FIXTURE, SLOWED, scaled, write_history

FAILED = "digits_cnn-IntegratedGradients-cpu-b1-fp32-contiguous-method=riemann_trapezoid-n_steps=8"
NO_FIDELITY = "digits_cnn-IntegratedGradients-cpu-b1-fp32-contiguous-method=gausslegendre-n_steps=8"
NOT_RUN = "digits_cnn-IntegratedGradients-cpu-b1-fp32-contiguous-method=riemann_trapezoid-n_steps=64"
HISTORY_MACHINE = "AMD EPYC (2 cores)"  # the history's files are not named by the harness: the CPU names them


def machine_copy(folder: Path, machine: str, run: int, factor: float, gpu: str | None = None) -> Path:
    """ig_only.json as a run of another machine (a test fixture): name, CPU, GPU and times rewritten."""
    data = json.loads(FIXTURE.read_text())
    environment = data["machine_info"]["attrib_bench"]["environment"]
    environment.update(cpu_model=f"{machine} CPU", gpus=[{"name": gpu}] if gpu else [])
    data["datetime"] = f"2026-12-0{run + 1}T10:00:00+00:00"
    wobble = 1 + 0.01 * (-1) ** run
    records = []
    for record in data["benchmarks"]:
        record = scaled(record, factor * wobble)
        extra = record["extra_info"]
        if gpu:
            if extra["cell_key"] == NOT_RUN:
                continue
            if extra["cell_key"] == FAILED:
                record["stats"] = None
                extra.update(status="failed", error="CUDA out of memory (fixture)")
            if extra["cell_key"] == NO_FIDELITY:
                extra.pop("fidelity")
            extra["cell"]["device"] = "cuda"
            extra["cell_key"] = extra["cell_key"].replace("-cpu-", "-cuda-")
        records.append(record)
    data["benchmarks"] = records
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{machine}_2026120{run + 1}T100000Z_c896658_ig_only.json"
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("store")
    for run in range(2):
        machine_copy(root / "laptop", "laptop", run, 1.0)
        machine_copy(root / "gpu" / "box", "gpubox", run, 0.25, gpu="Fixture GPU")
    (root / "history").mkdir()
    write_history(root / "history", 8, step_at=4, factor=1.5)
    (root / "notes").mkdir()
    (root / "notes" / "summary.json").write_text(json.dumps({"kind": "a summary, not results"}))
    return root


@pytest.fixture(scope="module")
def site(store, tmp_path_factory) -> tuple[Path, list[str]]:
    out = tmp_path_factory.mktemp("site") / "site"
    lines: list[str] = []
    build([store], out, reference="laptop", log=lines.append)
    return out, lines


class Parsed(HTMLParser):
    """What the tests look at: links, images, tables (header and row widths), sections, options."""

    def __init__(self) -> None:
        super().__init__()
        self.links, self.images, self.tables, self.references, self.options = [], [], [], [], []
        self.text: list[str] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a":
            self.links.append(attrs.get("href"))
        elif tag == "img":
            self.images.append(attrs)
        elif tag == "table":
            self.tables.append({"label": attrs.get("aria-label"), "headers": [], "rows": []})
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "section" and "data-reference" in attrs:
            self.references.append((attrs["data-reference"], "hidden" in attrs))
        elif tag == "option":
            self.options.append(attrs["value"])

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._row is not None:
            self._row.append(("th" if tag == "th" else "td", "".join(self._cell or [])))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            kinds = {k for k, _ in self._row}
            table = self.tables[-1]
            (table["headers"] if kinds == {"th"} else table["rows"]).append([v for _, v in self._row])
            self._row = None


def parsed(site_dir: Path, name: str) -> Parsed:
    page = Parsed()
    page.feed((site_dir / name).read_text())
    return page


def rows_by_first(table: dict) -> dict[str, list[str]]:
    return {row[0]: row for row in table["rows"]}


def test_every_page_written_with_nav_links_and_images_that_resolve(site):
    out, _ = site
    for name, _ in PAGES:
        page = parsed(out, name)
        for href in page.links:
            assert (out / href.split("#")[0]).is_file(), f"{name}: link {href} resolves to no file"
        assert {f for f, _ in PAGES} <= set(page.links)
        for image in page.images:
            assert (out / image["src"]).is_file() and image["alt"], f"{name}: {image}"
        source = (out / name).read_text()
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", source), f"{name} reaches outside the site"
        assert 'name="viewport"' in source


def test_every_table_has_headers_and_rows_as_wide_as_them(site):
    out, _ = site
    for name, _ in PAGES:
        for table in parsed(out, name).tables:
            assert len(table["headers"]) == 1 and table["headers"][0], f"{name}: a table without a header row"
            width = len(table["headers"][0])
            assert all(len(row) == width for row in table["rows"]), f"{name}: a row not as wide as its header"


def test_index_has_one_row_per_machine_with_its_newest_run(site):
    out, _ = site
    overview = rows_by_first(parsed(out, "index.html").tables[0])
    assert set(overview) == {"laptop", "gpubox", HISTORY_MACHINE}
    headers = parsed(out, "index.html").tables[0]["headers"][0]
    gpubox = dict(zip(headers, overview["gpubox"], strict=True))
    assert gpubox["GPU"] == "Fixture GPU" and gpubox["CPU"] == "gpubox CPU"
    assert (gpubox["cells ok (count)"], gpubox["cells failed (count)"]) == ("6", "1")
    assert gpubox["finished (UTC)"] == "2026-12-02 10:00 UTC"


def test_hardware_precomputes_one_table_per_reference_and_shows_the_chosen_one(site):
    out, _ = site
    page = parsed(out, "hardware.html")
    assert sorted(page.options) == sorted(["laptop", "gpubox", HISTORY_MACHINE])
    assert sorted(r for r, _ in page.references) == sorted(page.options)
    assert [r for r, hidden in page.references if not hidden] == ["laptop"]


def test_hardware_speedup_by_the_timing_rule_and_not_run_cells(site):
    out, _ = site
    page = parsed(out, "hardware.html")
    against_laptop = next(t for t in page.tables if t["label"] == "times and speedups against laptop")
    headers = against_laptop["headers"][0]
    speedup = next(h for h in headers if h.startswith("gpubox: speedup over laptop"))
    verdict = "gpubox: verdict (timing rule)"
    rows = {row[2]: dict(zip(headers, row, strict=True)) for row in against_laptop["rows"]}
    cell = "digits_cnn-IntegratedGradients-*-b1-fp32-contiguous-method=gausslegendre-n_steps=32"
    assert rows[cell][speedup].startswith("4.00x [") and rows[cell][verdict] == "faster"
    assert rows[NOT_RUN.replace("-cpu-", "-*-")]["gpubox: median time per call (ms; median over 2 run(s))"] == "not run"
    assert rows[FAILED.replace("-cpu-", "-*-")][verdict] == "failed on B"
    assert "undetermined" in (out / "hardware.html").read_text()  # the history machine: one run at its commit
    assert (out / "hardware_laptop.png").is_file()


def test_history_shows_the_seeded_step(site):
    out, _ = site
    page = parsed(out, "history.html")
    steps = [row for table in page.tables for row in table["rows"] if len(row) == 8]
    seeded = [row for row in steps if row[2] == SLOWED and row[3] == "time_raw"]
    assert len(seeded) == 1
    assert seeded[0][4] == "04ababababab" and seeded[0][6].startswith("+5") and seeded[0][7] == "in force"
    assert not [row for row in steps if row[2] != SLOWED and row[3] in ("time", "time_raw")]
    assert (out / "history_amd-epyc-2-cores_ig-only_time_raw.png").is_file()


def test_history_needs_two_runs_of_a_machine_and_preset(tmp_path):
    machine_copy(tmp_path, "lonely", 0, 1.0)
    kept, short = histories(load_store([tmp_path], log=lambda _: None))
    assert kept == [] and short == [("lonely", "ig_only", 1)]


def test_leaderboard_one_filterable_table_per_workload_with_labelled_columns(site):
    out, _ = site
    source = (out / "leaderboard.html").read_text()
    page = parsed(out, "leaderboard.html")
    assert len(page.tables) == 1 and source.count('class="filter"') == 1
    headers = page.tables[0]["headers"][0]
    assert {"median time per example (ms)", "peak memory (MiB)", "IQR of time per call (ms)"} <= set(headers)
    assert "reference error (mean over examples; lower is better)" in headers
    machines = [row[0] for row in page.tables[0]["rows"]]
    assert machines.count("laptop") == 8 and machines.count("gpubox") == 7


def test_tradeoff_draws_each_machine_or_says_why_not(site):
    out, _ = site
    source = (out / "tradeoff.html").read_text()
    assert (out / "tradeoff_laptop.png").is_file() and (out / "tradeoff_gpubox.png").is_file()
    assert "Not drawn: no ok cell has a relevance mass accuracy." in source


def test_non_results_json_skipped_with_one_line(site, store):
    out, lines = site
    skipped = [line for line in lines if "summary.json" in line]
    why = "not pytest-benchmark output (no 'benchmarks' list / 'machine_info')"
    assert skipped == [f"  skipped {store / 'notes' / 'summary.json'}: {why}"]
    assert "summary.json" in (out / "index.html").read_text()


def test_a_copied_run_is_read_once(tmp_path):
    first = machine_copy(tmp_path / "a", "laptop", 0, 1.0)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / first.name).write_bytes(first.read_bytes())
    lines: list[str] = []
    store = load_store([tmp_path], log=lines.append)
    assert len(store.runs) == 1 and len(lines) == 1 and "the same bytes as" in lines[0]


def test_bad_reference_exits_2_naming_the_machines(store, tmp_path, capsys):
    out = tmp_path / "site"
    assert cli.main(["dashboard", str(store), "-o", str(out), "--reference", "nosuch"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "'nosuch'" in error[0] and "gpubox, laptop" in error[0]
    assert not out.exists()


def test_a_folder_without_results_exits_2(tmp_path, capsys):
    (tmp_path / "summary.json").write_text("{}")
    assert cli.main(["dashboard", str(tmp_path), "-o", str(tmp_path / "site")]) == 2
    assert "no attrib-bench results file among 1 JSON file(s)" in capsys.readouterr().err


def test_the_dashboard_does_not_import_torch():
    code = (
        "import sys\n"
        "import attrib_core.analysis.render.dashboard.command\n"
        "bad = sorted(m for m in ('torch', 'captum', 'torchvision') if m in sys.modules)\n"
        "assert not bad, bad"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=Path(__file__).parent.parent, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_reference_is_a_machine_or_machine_at_device_in_any_case(store):
    sides = hardware_page.sides(load_store([store], log=lambda _: None))
    assert [s.label for s in sides] == [HISTORY_MACHINE, "gpubox", "laptop"]
    assert hardware_page.resolve_reference(sides, "LAPTOP").label == "laptop"
    assert hardware_page.resolve_reference(sides, "gpubox@cuda").device == "cuda"
    assert hardware_page.resolve_reference(sides, None).label == HISTORY_MACHINE
