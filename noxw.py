#!/usr/bin/env python3
"""Run nox from a private virtualenv, so the README's commands work on any Python >= 3.11.

Debian and Ubuntu mark their system Python "externally managed" (PEP 668), so
`python3 -m pip install nox` is refused there. This wrapper (a "nox wrapper", as `gradlew`
is for Gradle) needs only the standard library: on first use it creates `.nox/_nox` with
the pinned nox of `requirements/nox.lock`, then runs `python -m nox` with your arguments.
The virtualenv is reused afterwards and rebuilt only when that lock or the Python changes.

    python3 noxw.py -s bench                     the main job (the standard preset)
    python3 noxw.py -s tests                     the harness's own tests
    python3 noxw.py -s bench -- --preset smoke   everything after noxw.py goes to nox
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

MIN_PYTHON = (3, 11)
ROOT = Path(__file__).resolve().parent
NOX_LOCK = ROOT / "requirements" / "nox.lock"
RUNNER_ENV = ROOT / ".nox" / "_nox"
STAMP = RUNNER_ENV / ".noxw-stamp"


def fail(message: str) -> None:
    sys.exit(f"noxw: {message}")


def env_python(env: Path) -> Path:
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def wanted_stamp() -> str:
    """What the runner venv was built from: this Python and the nox lock's content."""
    lock_sha256 = hashlib.sha256(NOX_LOCK.read_bytes()).hexdigest()
    return f"{os.path.realpath(sys.executable)} {sys.version.split()[0]} {lock_sha256}"


def check_can_create_venv() -> None:
    """Debian/Ubuntu ship venv's pip bootstrap (ensurepip) in a separate package: say so up front."""
    try:
        import ensurepip  # noqa: F401
    except ImportError:
        minor = f"{sys.version_info.major}.{sys.version_info.minor}"
        fail(
            f"{sys.executable} (Python {minor}) has no 'ensurepip', so it cannot create a virtualenv "
            f"with pip.\n  Debian/Ubuntu: sudo apt install python3-venv (or python{minor}-venv), then rerun.\n"
            "  Or run this script with another Python >= 3.11 (python.org, pyenv, conda)."
        )


def build_runner_env() -> None:
    check_can_create_venv()
    print(f"noxw: creating {RUNNER_ENV.relative_to(ROOT)} with nox (once; reused afterwards)", flush=True)
    venv.EnvBuilder(with_pip=True, clear=True, symlinks=os.name != "nt").create(RUNNER_ENV)
    subprocess.run(
        [str(env_python(RUNNER_ENV)), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(NOX_LOCK)],
        check=True,
    )
    STAMP.write_text(wanted_stamp())


def main(args: list[str]) -> None:
    if sys.version_info < MIN_PYTHON:
        wanted = ".".join(map(str, MIN_PYTHON))
        fail(f"attrib-bench needs Python >= {wanted}; {sys.executable} is {sys.version.split()[0]}")
    python = env_python(RUNNER_ENV)
    if not python.exists() or not STAMP.exists() or STAMP.read_text() != wanted_stamp():
        try:
            build_runner_env()
        except subprocess.CalledProcessError as error:
            fail(f"installing nox into {RUNNER_ENV} failed (exit {error.returncode}); see pip's message above")
    if not any(arg in ("-f", "--noxfile") or arg.startswith("--noxfile=") for arg in args):
        args = ["--noxfile", str(ROOT / "noxfile.py"), *args]
    command = [str(python), "-m", "nox", *args]
    if os.name == "posix":
        os.execv(command[0], command)  # nox takes over this process: signals and exit code are its own
    sys.exit(subprocess.run(command).returncode)


if __name__ == "__main__":
    main(sys.argv[1:])
