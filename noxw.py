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

Its exit status is the attrib-bench command's (0 ok, 1 a regression or a failed cell, 2 bad
input, 3 an internal error; attrib_core/exits.py), which the session records in the file that
ATTRIB_BENCH_EXIT_FILE names: nox alone would end every failed session with 1. Otherwise it is
nox's own. A SIGINT or SIGTERM reaches nox as an interrupt, as Ctrl-C at a terminal would.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

MIN_PYTHON = (3, 11)
ROOT = Path(__file__).resolve().parent
NOX_LOCK = ROOT / "requirements" / "nox.lock"
RUNNER_ENV = ROOT / ".nox" / "_nox"
STAMP = RUNNER_ENV / ".noxw-stamp"
EXIT_FILE_ENV = "ATTRIB_BENCH_EXIT_FILE"  # the noxfile records its command's exit status there


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
    sys.exit(run_nox([str(python), "-m", "nox", *args]))


def run_nox(command: list[str]) -> int:
    """Run nox and return the exit status to end with (see exit_status)."""
    with tempfile.TemporaryDirectory(prefix="noxw-") as tmp:
        exit_file = Path(tmp) / "exit-status"
        nox = subprocess.Popen(command, env={**os.environ, EXIT_FILE_ENV: str(exit_file)})
        received = forward_signals(nox) if os.name == "posix" else []
        nox_status = nox.wait()
        recorded = [int(word) for word in exit_file.read_text().split()] if exit_file.exists() else []
    return exit_status(nox_status, recorded, received)


def exit_status(nox_status: int, recorded: list[int], received: list[int]) -> int:
    """The most severe status a session's command recorded, if nox failed; else nox's own. A
    SIGTERM that stopped the run ends it as one would (128 + 15), as does a signal that killed nox."""
    if signal.SIGTERM in received:
        return 128 + signal.SIGTERM
    if nox_status < 0:
        return 128 - nox_status
    failures = [code for code in recorded if code != 0]
    return max(failures) if nox_status != 0 and failures else nox_status


def forward_signals(nox: subprocess.Popen) -> list[int]:
    """Pass SIGINT and SIGTERM on to nox as an interrupt, which stops the session's command too
    (a SIGTERM would kill nox alone and leave its command running). Ctrl-C at a terminal has
    reached nox already, as it shares this process group: it is not sent twice."""
    received: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        received.append(signum)
        if signum == signal.SIGINT and in_terminal_foreground():
            return
        nox.send_signal(signal.SIGINT)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, forward)
    return received


def in_terminal_foreground() -> bool:
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (AttributeError, OSError, ValueError):  # no stdin, not a terminal
        return False


if __name__ == "__main__":
    main(sys.argv[1:])
