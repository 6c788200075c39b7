"""attrib_core.names: a name that becomes part of a path stays one file name in the folder meant."""

from __future__ import annotations

import pytest

from attrib_core.exits import BadInputError
from attrib_core.names import MAX_LENGTH, UnsafeNameError, check_name, is_safe_name

SAFE = ["amd-epyc-2c", "nvidia-h100-80gb-hbm3", "ci", "my_preset", "v1.2+cpu", "tune-torchvision:resnet18", "_x"]
UNSAFE = [
    "",
    "..",
    "../x",
    "a/../b",
    "a..b",
    "a/b",
    "/abs",
    "a\\b",
    "a\x00b",
    "a\nb",
    "a b",
    ".hidden",
    "-rf",
    "+x",
    "naïve",
    "x" * (MAX_LENGTH + 1),
]


@pytest.mark.parametrize("name", SAFE)
def test_names_the_project_makes_are_safe(name):
    assert is_safe_name(name) and check_name(name, "machine name") == name


@pytest.mark.parametrize("name", UNSAFE)
def test_a_name_that_could_leave_the_folder_or_break_the_path_is_refused_with_what_is_allowed(name):
    assert not is_safe_name(name)
    with pytest.raises(UnsafeNameError) as refused:
        check_name(name, "machine name")
    message = str(refused.value)
    assert f"machine name {name!r} cannot be part of a file name; allowed: ASCII letters" in message
    assert "\n" not in message  # one line, whatever the name held
    assert isinstance(refused.value, BadInputError)  # the command line's exit 2
