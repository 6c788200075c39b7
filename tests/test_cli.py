"""attrib_core.commands.cli: the installed package's console script, with and without a checkout."""

import pytest

from attrib_core.commands import cli
from tests import QUICK_TIMING


def test_regress_outside_a_git_repository_compares_existing_runs_only(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # no repository above tmp either
    assert cli.main(["regress"]) == 2
    err = capsys.readouterr().err
    assert "is not in a git repository" in err and "--compare BASE NEW" in err
    assert not (tmp_path / "results").exists()
    bad = tmp_path / "empty.json"
    bad.write_text("")
    assert cli.main(["regress", "--compare", str(bad), str(bad)]) == 2  # one line, no traceback
    err = capsys.readouterr().err
    assert "empty.json: empty file" in err and "Traceback" not in err


def test_help_lists_every_command_and_each_command_has_its_own_help(capsys):
    assert cli.main(["--help"]) == 0
    listed = capsys.readouterr().out
    for name in ("bench", "report", "compare", "regress", "ab", "tune", "history", "merge"):
        assert f"  {name} " in listed
        with pytest.raises(SystemExit) as exited:  # argparse (and pytest's --help) end in exit 0
            code = cli.main([name, "--help"])
            raise SystemExit(code)
        assert exited.value.code in (0, None), name
        assert "usage" in capsys.readouterr().out.lower(), name


def test_an_unknown_command_lists_the_valid_ones(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'; valid: bench, report, compare" in capsys.readouterr().err


PLUGIN_MODEL = """
import torch
from torch import nn


def make(n_features=5):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(n_features, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    inputs = torch.randn(6, n_features)
    return {"model": model, "inputs": inputs, "targets": torch.tensor([0, 1, 2, 0, 1, 2]),
            "baseline": torch.zeros(1, n_features)}
"""
PLUGIN_PRESET = f"""
name = "mine"
{QUICK_TIMING}[fidelity]
metrics = ["completeness"]
[workloads.mine]
factory = "model.py:make"
[[sweep]]
workload = "mine"
method = ["Saliency", "IntegratedGradients"]
batch_size = [2]
[sweep.knobs]
n_steps = [4]
"""


def test_bench_runs_the_packaged_suite_on_a_plugin_in_a_folder_of_its_own(tmp_path, monkeypatch):
    """As a user would after `pip install attrib-bench`: a folder with a model file and a preset,
    no checkout of this repository; results land in that folder's results/."""
    (tmp_path / "model.py").write_text(PLUGIN_MODEL)
    (tmp_path / "mine.toml").write_text(PLUGIN_PRESET)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["bench", "--preset", "mine.toml", "-q"]) == 0
    (written,) = (tmp_path / "results").glob("*_mine.json")
    from attrib_core.analysis.results import load_results

    df = load_results([written])
    assert sorted(df["method"]) == ["IntegratedGradients", "Saliency"] and set(df["status"]) == {"ok"}


def test_bench_refuses_an_unknown_preset_with_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["bench", "--preset", "no-such-preset"]) == 2
    assert "no-such-preset" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_regress_runs_an_ab_between_two_commits_of_a_users_own_repository(tmp_path, monkeypatch, capsys):
    """A repository of the user's (a plug-in model and a preset, no attrib-bench checkout): the second
    commit makes the hidden layer 16x wider, so each call's peak memory grows ~15x, a regression
    whatever the machine's noise; the A/B gate says so and exits 1."""
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "model.py").write_text(
        PLUGIN_MODEL.replace(
            "nn.Linear(n_features, 8), nn.ReLU(), nn.Linear(8, 3)",
            "nn.Linear(n_features, 32), nn.ReLU(), nn.Linear(32, 3)",
        )
    )
    (tmp_path / "mine.toml").write_text(PLUGIN_PRESET)
    (tmp_path / ".gitignore").write_text("results/\n")
    git("init", "-q")
    git("-c", "user.name=u", "-c", "user.email=u@example.com", "add", "-A")
    git("-c", "user.name=u", "-c", "user.email=u@example.com", "commit", "-qm", "model")
    wider = (tmp_path / "model.py").read_text().replace("32", "512")
    (tmp_path / "model.py").write_text(wider)
    git("-c", "user.name=u", "-c", "user.email=u@example.com", "commit", "-qam", "wider")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["regress", "--base", "HEAD~1", "--preset", "mine.toml", "--quads", "4"]) == 1
    out = capsys.readouterr().out
    assert "memory" in out and "REGRESSION" in out
    assert list((tmp_path / "results" / "regress").iterdir())  # the session's files, in the user's folder
