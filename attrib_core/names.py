"""Names that become part of a file or folder name (a machine, a preset, a sweep id, tune's
workload): checked before anything is written, so a name can neither point outside the results
folder (`../`, `/`) nor make a path the file system refuses (NUL, control characters)."""

from __future__ import annotations

import re

from attrib_core.exits import BadInputError

SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+:-]*")
MAX_LENGTH = 100
ALLOWED = f"ASCII letters, digits, _ . + : - (not first: . + : -), no '..', at most {MAX_LENGTH} characters"


class UnsafeNameError(BadInputError, ValueError):
    """A name that cannot be part of a path; the message names the value and what is allowed."""


def is_safe_name(name: str) -> bool:
    return len(name) <= MAX_LENGTH and ".." not in name and SAFE_NAME.fullmatch(name) is not None


def check_name(name: str, what: str) -> str:
    """`name` itself if it is safe in a file name, else UnsafeNameError naming `what` and the bad value."""
    if not is_safe_name(name):
        raise UnsafeNameError(f"{what} {name!r} cannot be part of a file name; allowed: {ALLOWED}")
    return name
