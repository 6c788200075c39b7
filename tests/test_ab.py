"""bench.ab (A/B runner), bench.ab_sides and bench.ab_worker: the ABBA schedule, sides and
their bad input, cell matching with set fields, and one tiny real A/B session."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from attrib_core import exits, schema
from attrib_core.ab import session as ab
from attrib_core.ab import sides as ab_sides
from attrib_core.ab.sides import SideError, SideSpec
from attrib_core.ab.worker import Worker
from attrib_core.analysis.results import load_results

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.usefixtures("one_thread")]

TINY_PRESET = """
name = "ab_tiny"
[timing]
warmup_rounds = 1
threads = 1
[fidelity]
metrics = ["completeness"]
[[sweep]]
workload = "digits_cnn"
method = ["Saliency", "InputXGradient"]
batch_size = [2]
"""


WITH_TABULAR = (
    TINY_PRESET.replace('name = "ab_tiny"', 'name = "ab_tiny_tabular"')
    + """
[[sweep]]
workload = "tabular_mlp"
method = "Saliency"
batch_size = [2]
"""
)


@pytest.fixture
def tiny_preset(tmp_path: Path) -> Path:
    path = tmp_path / "ab_tiny.toml"
    path.write_text(TINY_PRESET)
    return path


# --- schedule --------------------------------------------------------------------------------


def test_schedule_shape_and_abba_order():
    cells = [f"c{i}" for i in range(5)]
    blocks = ab.schedule(cells, quads=3, workers=2, seed=1)
    assert len(blocks) == 3 * 5 * 4
    assert [b.position for b in blocks] == list(range(len(blocks)))
    for quad in range(3):
        in_quad = [b for b in blocks if b.pair == quad]
        assert sorted(in_quad[i].cell for i in range(0, 20, 4)) == cells  # every cell once per quad
        for start in range(0, 20, 4):
            four = in_quad[start : start + 4]
            assert [b.side for b in four] == ["A", "B", "B", "A"]
            assert len({b.cell for b in four}) == 1
            assert {b.process for b in four if b.side == "A"} == {"A1", "A2"}  # two processes per side
            assert {b.process for b in four if b.side == "B"} == {"B1", "B2"}


def test_schedule_shuffles_cells_per_quad_with_a_fixed_seed():
    cells = [f"c{i}" for i in range(8)]
    blocks = ab.schedule(cells, quads=4, workers=2, seed=7)
    orders = [tuple(b.cell for b in blocks if b.pair == q)[::4] for q in range(4)]
    assert len(set(orders)) > 1
    assert ab.schedule(cells, quads=4, workers=2, seed=7) == blocks


def test_schedule_one_worker_and_even_use_of_three():
    one = ab.schedule(["x"], quads=2, workers=1)
    assert {b.process for b in one} == {"A1", "B1"}
    three = ab.schedule(["x", "y"], quads=3, workers=3)
    assert Counter(b.process for b in three if b.side == "A") == {"A1": 4, "A2": 4, "A3": 4}


def test_block_rounds():
    assert ab.block_rounds(0.001, 0.05) == 50
    assert ab.block_rounds(0.2, 0.05) == 1
    assert ab.block_rounds(1e-12, 0.05) == ab.MAX_BLOCK_ROUNDS


# --- sides and bad input -------------------------------------------------------------------------


def test_parse_settings():
    assert ab_sides.parse_settings(["threads=2", "precision=bf16"], "--candidate-set") == {
        "threads": 2,
        "precision": "bf16",
    }
    with pytest.raises(SideError, match=r"cannot set 'colour'; valid: threads, precision"):
        ab_sides.parse_settings(["colour=red"], "--base-set")
    with pytest.raises(SideError, match="threads=two: needs an integer >= 1"):
        ab_sides.parse_settings(["threads=two"], "--base-set")
    with pytest.raises(SideError, match="'threads' is not KEY=VALUE"):
        ab_sides.parse_pairs(["threads"], "--base-env")


def test_unknown_revision_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "ab"
    code = ab.main(["--base", "no-such-revision-xyz", "--results-dir", str(out)])
    err = capsys.readouterr().err
    assert code == exits.EXIT_BAD_INPUT
    assert err.count("\n") == 1 and "'no-such-revision-xyz' does not exist" in err
    assert not out.exists()


def test_pip_spec_pip_cannot_resolve_gives_pips_reason(tmp_path):
    with pytest.raises(SideError, match=r"pip cannot install captum=!=0\.8: ERROR: .*") as info:
        ab_sides.pip_overlay(["captum=!=0.8"], ab_sides.sys.executable, cache=tmp_path)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []  # no partial install left behind


def test_bad_setting_is_exit_2(tmp_path, capsys):
    code = ab.main(["--candidate-set", "speed=fast", "--results-dir", str(tmp_path / "ab")])
    assert code == exits.EXIT_BAD_INPUT
    assert "cannot set 'speed'" in capsys.readouterr().err


def test_side_label_and_environment(tmp_path):
    spec = SideSpec("B", "candidate", env={"X_AB_TEST": "1"}, settings={"threads": 2})
    side = ab_sides.Side(spec, tree=tmp_path, commit="abcdef0123", dirty=False, overlay=tmp_path / "ovl")
    assert side.label == "candidate working tree X_AB_TEST=1 threads=2"
    env = side.process_env()
    assert env["X_AB_TEST"] == "1"
    assert env["PYTHONPATH"].split(ab_sides.os.pathsep) == [str(tmp_path / "ovl"), str(tmp_path)]


# --- cell matching ------------------------------------------------------------------------------


def test_cells_match_with_set_fields_left_out(tiny_preset):
    base, candidate = Worker(), Worker()
    fields = ["precision", "threads"]
    a = base.op_list({"preset": str(tiny_preset), "set": {"threads": 1}, "match_fields": fields})
    b = candidate.op_list(
        {"preset": str(tiny_preset), "set": {"threads": 1, "precision": "bf16"}, "match_fields": fields}
    )
    assert all("-bf16-" in c["key"] for c in b["cells"]) and all("-fp32-" in c["key"] for c in a["cells"])
    common, own = ab.common_cells({"A": a["cells"], "B": b["cells"]})
    assert common == [
        "digits_cnn-Saliency-cpu-b2-*-contiguous-abs=True",
        "digits_cnn-InputXGradient-cpu-b2-*-contiguous",
    ]
    assert own["B"][common[0]] == "digits_cnn-Saliency-cpu-b2-bf16-contiguous-abs=True"


def test_worker_refuses_unknown_setting_and_cell(tiny_preset):
    worker = Worker()
    with pytest.raises(ValueError, match="cannot set colour"):
        worker.op_list({"preset": str(tiny_preset), "set": {"colour": 1}})
    worker.op_list({"preset": str(tiny_preset), "set": {"threads": 1}})
    with pytest.raises(ValueError, match="unknown cell 'nope'"):
        worker.op_time({"key": "nope", "rounds": 1})


@pytest.mark.slow
def test_sides_sharing_no_cells_is_exit_2(tiny_preset, tmp_path, capsys):
    out = tmp_path / "ab"
    code = ab.main(["--preset", str(tiny_preset), "-k", "NoSuchMethod", "--workers", "1", "--results-dir", str(out)])
    assert code == exits.EXIT_BAD_INPUT
    assert "share no cells" in capsys.readouterr().err
    assert not any(out.rglob("*.json"))


# --- a real session -------------------------------------------------------------------------------


@pytest.mark.slow
def test_tiny_session_writes_one_valid_file_per_process_with_blocks(tmp_path):
    """Side B sets channels_last, which the tabular cell cannot take: that cell fails on B (recorded,
    not timed on either side) and the two digits cells are timed."""
    preset = tmp_path / "tiny.toml"
    preset.write_text(WITH_TABULAR)
    opts = ab.Options(preset=str(preset), workers=1, quads=2, block_s=0.002, profile=True)
    base = SideSpec("A", "base", settings={"threads": 1})
    candidate = SideSpec("B", "candidate", settings={"memory_format": "channels_last"})
    session = ab.run_session(base, candidate, opts, tmp_path / "session")
    files = session["files"]
    (failed,) = session["failed"]["B"]
    assert failed.startswith("tabular_mlp-Saliency") and "channels_last" in session["failed"]["B"][failed]
    assert session["failed"]["A"] == {} and len(session["cells"]) == 2
    assert sorted(p.name[:2] for p in files) == ["A1", "B1"]
    sides = {}
    for path in files:
        data = schema.read(path)
        meta = data["machine_info"]["attrib_bench"]
        assert meta["ab"]["session"] == session["id"]
        assert set(meta["noise"]) >= {"before", "after", "warnings"}
        sides[meta["ab"]["side"]] = data
        assert len(data["benchmarks"]) == 2
        for record in data["benchmarks"]:
            blocks = record["extra_info"]["blocks"]
            assert [b["pair"] for b in blocks] == [0, 0, 1, 1]  # two blocks per quad and side
            assert {b["process"] for b in blocks} == {meta["ab"]["process"]}
            assert [t for b in blocks for t in b["samples_s"]] == record["stats"]["data"]
            assert record["stats"]["rounds"] == len(record["stats"]["data"])
            assert record["extra_info"]["memory"]["peak_bytes"] > 0  # profiled
    # ABBA: per cell and quad, A's blocks are the first and last of the four positions
    for key in session["cells"]:
        a = {
            b["position"]
            for r in sides["A"]["benchmarks"]
            if r["extra_info"]["ab_match_key"] == key
            for b in r["extra_info"]["blocks"]
        }
        b = {
            b["position"]
            for r in sides["B"]["benchmarks"]
            if r["extra_info"]["ab_match_key"] == key
            for b in r["extra_info"]["blocks"]
        }
        for quad in range(2):
            four = sorted(p for p in a | b if p in a or p in b)[quad * 4 : quad * 4 + 4]
            assert [("A" if p in a else "B") for p in four] == ["A", "B", "B", "A"]
    df = load_results(files)
    assert len(df) == 5 and (df["status"] == "ok").sum() == 4
    (bad,) = df.index[df["status"] == "failed"]
    assert df.loc[bad, "ab_side"] == "B" and df.loc[bad, "workload"] == "tabular_mlp"
    base, new = ab.load_sides(files)
    timed = new[new["status"] == "ok"]
    assert list(base["ab_match_key"]) == list(timed["ab_match_key"]) == session["cells"]
    lines = ab.verdict_lines(files)
    assert "design paired" in lines[-1]
    for key in session["cells"]:  # 2 quads are 2 pairs: too few for the rule, and it says so
        assert any(
            line.startswith(key) and "undetermined (2 A/B pairs (ABBA groups): needs at least 3)" in line
            for line in lines
        )


# --- nox -s regress in A/B mode -----------------------------------------------------------------


def test_regress_ab_unknown_base_is_exit_2_one_line(tmp_path, capsys):
    from attrib_core.ab import regress

    code = regress.main(["--base", "no-such-revision-xyz", "--results-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "'no-such-revision-xyz' does not exist" in err
    assert not (tmp_path / "r").exists()


def test_regress_ab_refuses_pytest_arguments_and_mixed_modes(tmp_path):
    from attrib_core.ab import regress

    with pytest.raises(SystemExit) as info:
        regress.main(["--", "--inject-slowdown", "IntegratedGradients=2"])
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        regress.main(["--base", "HEAD", "--baseline", str(tmp_path)])


@pytest.mark.slow
def test_regress_ab_against_head_runs_both_sides_and_decides(tiny_preset, tmp_path, capsys):
    """A worktree of HEAD against the working tree, one worker a side, 3 quads: the plumbing
    end to end (the verdict itself depends on this machine's load; the proof measures rates)."""
    from attrib_core.ab import regress

    out = tmp_path / "r"
    args = ["--base", "HEAD", "--preset", str(tiny_preset), "--workers", "1", "--quads", "3", "--block-s", "0.002"]
    code = regress.main([*args, "--results-dir", str(out)])
    printed = capsys.readouterr().out
    assert code in (0, 1), printed
    (folder,) = list(out.iterdir())
    assert sorted(p.name[:2] for p in folder.glob("*.json")) == ["A1", "B1"]
    assert "paired by ABBA group" in printed and "ALL CELLS" in printed
    assert not any("attrib-bench-ab-A-" in line for line in ab_sides.git("worktree", "list").stdout.splitlines())


def test_worker_names_a_missing_api_of_the_sides_code():
    from attrib_core.ab import worker as ab_worker

    with pytest.raises(ab_worker.MissingAPI, match=r"attrib_core\.run .* lacks prepare_v2"):
        ab_worker._need("attrib_core.run", "prepare", "prepare_v2")
    with pytest.raises(ab_worker.MissingAPI, match=r"has no module attrib_core\.not_here"):
        ab_worker._need("attrib_core.not_here", "x")
