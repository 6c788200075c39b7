"""experiments/limit/proof.py: the table of single-pass cells and its exit status."""

from pathlib import Path

from attrib_core.analysis.results import efficiency_warnings, load_results
from experiments.limit import proof as limit_proof

SMOKE = Path(__file__).parent / "fixtures" / "smoke_a.json"


def test_table_lists_single_pass_cells_and_exits_on_cells_outside_the_range(capsys):
    code = limit_proof.main([str(SMOKE)])
    out = capsys.readouterr().out
    df = load_results([SMOKE])
    single = df[(df["status"] == "ok") & (df["passes_forward"] == df["batch_size"])]
    assert not single.empty
    for key in single["cell_key"]:
        assert key in out
    warnings = efficiency_warnings(df)
    assert f"{len(warnings)} single-pass cell(s) outside [0.8, 1.05]" in out
    assert code == (1 if warnings else 0)


def test_a_missing_file_is_one_line_and_exit_2(tmp_path, capsys):
    assert limit_proof.main([str(tmp_path / "nope.json")]) == 2
    assert "no such results file" in capsys.readouterr().err
