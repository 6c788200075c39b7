"""Which pinned environment a run used: the lock's hash, and where the installed packages differ.

requirements/bench.lock pins every package of the bench environment (the noxfile installs
with it as pip constraints). A results file records the lock's sha256, so two runs with the
same hash asked for the same versions, and the pins that the running interpreter does not
honour, so a hash is never taken for the truth when someone installed by hand. Torch-free.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
from pathlib import Path
from typing import Any

BENCH_LOCK = Path(__file__).resolve().parent.parent / "requirements" / "bench.lock"
_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)")


def read_pins(text: str) -> dict[str, str]:
    """`name==version` lines of a lock -> {normalised name: version}; comments and blank lines skipped."""
    pins = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _PIN.match(line)
        if match is None:
            raise ValueError(f"lock line {number} is not `name==version`: {line!r}")
        pins[_normalise(match[1])] = match[2]
    return pins


def lock_mismatches(pins: dict[str, str], installed: dict[str, str | None]) -> dict[str, dict[str, str]]:
    """Pins whose installed version differs, ignoring local labels (torch 2.14.1+cpu honours 2.14.1).

    A pinned package that is not installed is no mismatch: the lock is a constraints file, and
    some pins (the CUDA wheels torch pulls on Linux) only apply on some platforms.
    """
    return {
        name: {"locked": locked, "installed": installed[name]}
        for name, locked in sorted(pins.items())
        if installed.get(name) is not None and _public(installed[name]) != _public(locked)
    }


def lock_record(path: Path = BENCH_LOCK) -> dict[str, Any]:
    """machine_info fields: lock_file, lock_sha256, lock_mismatches (None where there is no lock,
    as when attrib_core was installed from a wheel without the checkout)."""
    try:
        data = path.read_bytes()
    except OSError:
        return {"lock_file": None, "lock_sha256": None, "lock_mismatches": None}
    pins = read_pins(data.decode())
    return {
        "lock_file": f"{path.parent.name}/{path.name}",
        "lock_sha256": hashlib.sha256(data).hexdigest(),
        "lock_mismatches": lock_mismatches(pins, {name: _installed_version(name) for name in pins}),
    }


def _installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _normalise(name: str) -> str:
    """PEP 503 name: `Jinja2`, `typing_extensions` -> `jinja2`, `typing-extensions`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _public(version: str) -> str:
    return version.split("+", 1)[0]
