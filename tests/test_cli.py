"""attrib_core.cli: the installed package's console script, with and without a checkout."""

import sys

import pytest

from attrib_core import cli


@pytest.fixture
def without_checkout(monkeypatch):
    """As after `pip install .` elsewhere: the bench/ suite cannot be imported."""
    monkeypatch.setitem(sys.modules, "bench.regress", None)


def test_regress_without_a_checkout_compares_existing_runs_only(without_checkout, tmp_path, capsys):
    assert cli.main(["regress"]) == 2
    assert "--compare BASE NEW" in capsys.readouterr().err
    bad = tmp_path / "empty.json"
    bad.write_text("")
    assert cli.main(["regress", "--compare", str(bad), str(bad)]) == 2  # one line, no traceback
    err = capsys.readouterr().err
    assert "empty.json: empty file" in err and "Traceback" not in err


def test_an_unknown_command_lists_the_valid_ones(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'; valid: report, compare" in capsys.readouterr().err
