"""Exit status through attrib_core.commands.cli, the console script's door: one code per kind of outcome
(attrib_core/exits.py), one line on stderr for anything but success."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest

from attrib_core import exits
from attrib_core.commands import COMMANDS, cli
from tests import REPO


@pytest.fixture
def in_a_repository(tmp_path, monkeypatch):
    """A git repository with one commit, as the working directory (regress and ab need one)."""
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x"],
        cwd=tmp_path,
        check=True,
    )
    monkeypatch.chdir(tmp_path)
    return tmp_path


BAD_INPUT = [  # a command line -> what its one line on stderr names
    (["report", "no/such/file.json"], "no/such/file.json: no such results file or folder"),
    (["compare", "no/such/a.json", "no/such/b.json"], "'no/such/a.json' is neither a results file"),
    (["history", "no/such/folder"], "no/such/folder: no such results file or folder"),
    (["merge", "no/x-shard-1of2.json", "no/x-shard-2of2.json"], "no/x-shard-1of2.json: no such results file"),
    (["regress", "--base", "no-such-rev"], "revision 'no-such-rev' does not exist"),
    (["regress", "--compare", "no/a.json", "no/b.json"], "no such file or folder: no/a.json"),
    (["regress", "--preset", "../x", "--update-baseline"], "preset name '../x' cannot be part of a file name"),
    (["ab", "--base", "no-such-rev"], "revision 'no-such-rev' does not exist"),
    (["tune", "--workload", "nope", "--method", "Saliency"], "unknown workload 'nope'; known:"),
    (["nosuch"], "unknown command 'nosuch'; valid: bench"),
]


@pytest.mark.parametrize(("argv", "named"), BAD_INPUT, ids=[" ".join(a[:2]) for a, _ in BAD_INPUT])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(in_a_repository, capsys, argv, named):
    assert cli.main(argv) == exits.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert named in err and err.count("\n") == 1 and "Traceback" not in err
    assert sorted(p.name for p in in_a_repository.iterdir()) == [".git"]


def raise_(exc: BaseException):
    def main(argv):
        raise exc

    return main


@pytest.mark.parametrize("name", list(COMMANDS))
def test_an_unexpected_exception_in_any_command_is_one_line_exit_3(monkeypatch, capsys, name):
    module = importlib.import_module(COMMANDS[name].module)
    monkeypatch.setattr(module, "main", raise_(KeyError("cell_key")))
    monkeypatch.delenv(exits.TRACEBACK_ENV, raising=False)
    assert cli.main([name]) == exits.EXIT_INTERNAL
    line = f"attrib-bench {name}: internal error: KeyError: 'cell_key' (a bug; ATTRIB_BENCH_TRACEBACK=1 shows where)"
    assert capsys.readouterr().err == line + "\n"


def test_the_traceback_is_there_on_request(monkeypatch, capsys):
    monkeypatch.setattr(importlib.import_module(COMMANDS["report"].module), "main", raise_(ZeroDivisionError("x")))
    monkeypatch.setenv(exits.TRACEBACK_ENV, "1")
    assert cli.main(["report"]) == exits.EXIT_INTERNAL
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "in main" in err
    assert err.splitlines()[-1].startswith("attrib-bench report: internal error: ZeroDivisionError: x")


def test_a_bad_input_error_raised_anywhere_is_exit_2_and_ctrl_c_is_130(monkeypatch, capsys):
    module = importlib.import_module(COMMANDS["compare"].module)
    monkeypatch.setattr(module, "main", raise_(exits.BadInputError("--results-dir x: not a folder")))
    assert cli.main(["compare"]) == exits.EXIT_BAD_INPUT
    assert capsys.readouterr().err == "attrib-bench compare: error: --results-dir x: not a folder\n"
    monkeypatch.setattr(module, "main", raise_(KeyboardInterrupt()))
    assert cli.main(["compare"]) == exits.EXIT_INTERRUPTED
    assert capsys.readouterr().err == "attrib-bench compare: interrupted\n"


def test_a_folder_that_cannot_be_made_is_one_line_naming_it_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken").write_text("a file where the report's folder would go")
    good = REPO / "tests" / "fixtures" / "smoke_a.json"
    assert cli.main(["report", str(good), "--out", "taken/report"]) == exits.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "taken" in err and "Traceback" not in err


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_results_folder_is_one_line_naming_it_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    read_only = tmp_path / "read-only"
    read_only.mkdir(mode=0o500)
    good = REPO / "tests" / "fixtures" / "smoke_a.json"
    try:
        assert cli.main(["report", str(good), "--out", "read-only/report"]) == exits.EXIT_BAD_INPUT
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "read-only/report" in err and "Permission denied" in err
        proc = run_cli(tmp_path, "bench", "--preset", "ci", "--results-dir", "read-only", "-k", "Saliency")
        assert proc.returncode == exits.EXIT_BAD_INPUT, proc.stdout + proc.stderr
        assert "--results-dir read-only: cannot write" in proc.stderr and "Permission denied" in proc.stderr
    finally:
        read_only.chmod(0o700)


def run_cli(cwd, *argv: str) -> subprocess.CompletedProcess:
    """`python -m attrib_core ARGV` on this checkout, as a user runs it."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop(exits.TRACEBACK_ENV, None)
    command = [sys.executable, "-m", "attrib_core", *argv]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


BENCH_BAD_INPUT = [
    (["--preset", "no-such"], "unknown preset 'no-such'; known:"),
    (["--preset", "ci", "--machine-name", "../../x"], "--machine-name '../../x' cannot be part of a file name"),
    (["--preset", "ci", "--results-dir", "taken"], "--results-dir taken: cannot write taken: File exists"),
]


@pytest.mark.parametrize(("argv", "named"), BENCH_BAD_INPUT, ids=["preset", "machine", "results-dir"])
def test_bench_refuses_bad_input_with_exit_2_before_any_cell(tmp_path, argv, named):
    (tmp_path / "taken").write_text("a file where the results folder would go")
    proc = run_cli(tmp_path, "bench", *argv, "-k", "Saliency")
    assert proc.returncode == exits.EXIT_BAD_INPUT, proc.stdout + proc.stderr
    assert named in proc.stderr and "INTERNALERROR" not in proc.stdout + proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".benchmarks") == ["taken"]
