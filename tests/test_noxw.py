"""noxw.py: `python3 noxw.py -s SESSION` ends with the attrib-bench command's exit status, not
nox's 1 for every failed session, and an interrupt reaches nox as Ctrl-C would."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import signal
import subprocess
import sys
import time

import pytest

from attrib_core import exits
from tests import REPO

spec = importlib.util.spec_from_file_location("noxw", REPO / "noxw.py")
noxw = importlib.util.module_from_spec(spec)
spec.loader.exec_module(noxw)


@pytest.mark.parametrize(
    ("nox_status", "recorded", "received", "status"),
    [
        (0, [], [], 0),
        (1, [], [], 1),  # nox failed before the command ran (an install, say): nox's own
        (1, [2], [], 2),
        (1, [1, 3, 2], [], 3),  # several sessions: the most severe
        (0, [2], [], 0),  # a session whose failure was expected by nox's own options
        (130, [], [signal.SIGINT], 130),
        (130, [], [signal.SIGTERM], 128 + signal.SIGTERM),
        (-signal.SIGKILL, [], [], 128 + signal.SIGKILL),
    ],
)
def test_exit_status(nox_status, recorded, received, status):
    assert noxw.exit_status(nox_status, recorded, received) == status


def fake_nox(code: str) -> list[str]:
    return [sys.executable, "-c", code]


RECORDS_2 = "import os, sys; open(os.environ['ATTRIB_BENCH_EXIT_FILE'], 'a').write('2\\n'); sys.exit(1)"


def test_the_recorded_status_comes_through_and_the_file_is_gone_after(monkeypatch):
    monkeypatch.delenv(noxw.EXIT_FILE_ENV, raising=False)
    assert noxw.run_nox(fake_nox(RECORDS_2)) == exits.EXIT_BAD_INPUT
    assert noxw.run_nox(fake_nox("import sys; sys.exit(1)")) == 1
    assert noxw.run_nox(fake_nox("pass")) == 0


# nox stand-in: says it is ready, then exits 130 on an interrupt (nox's own status for one)
INTERRUPTIBLE = """
import sys, time
print("ready", flush=True)
try:
    time.sleep(60)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
"""
RUN_NOXW = "import sys; sys.path.insert(0, sys.argv[1]); import noxw; sys.exit(noxw.run_nox(sys.argv[2:]))"


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
@pytest.mark.parametrize(("sent", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 128 + signal.SIGTERM)])
def test_sigint_and_sigterm_reach_nox_as_an_interrupt(sent, status):
    command = [sys.executable, "-c", RUN_NOXW, str(REPO), *fake_nox(INTERRUPTIBLE)]
    wrapper = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    try:
        assert wrapper.stdout.readline().strip() == "ready"
        time.sleep(0.2)  # the wrapper set its handlers before nox printed; a margin on a busy machine
        wrapper.send_signal(sent)
        out, _ = wrapper.communicate(timeout=30)
    finally:
        wrapper.kill()
    assert out.strip() == "interrupted"
    assert wrapper.returncode == status


def ready_to_run_nox() -> str | None:
    """Why noxw cannot run a session here without installing anything, or None if it can."""
    torch_stamp = REPO / ".nox" / "torch" / ".attrib-bench-installed"
    installed_from = (REPO / "pyproject.toml").read_bytes() + (REPO / "requirements" / "bench.lock").read_bytes()
    if not torch_stamp.is_file() or torch_stamp.read_text() != hashlib.sha256(installed_from).hexdigest():
        return "no up-to-date .nox/torch (python3 noxw.py -s tests makes it)"
    if not noxw.STAMP.is_file() or noxw.STAMP.read_text() != noxw.wanted_stamp():
        return "no up-to-date .nox/_nox for this Python (python3 noxw.py makes it)"
    return None


@pytest.mark.skipif(ready_to_run_nox() is not None, reason=str(ready_to_run_nox()))
def test_a_bad_revision_through_noxw_exits_2_not_1(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != noxw.EXIT_FILE_ENV}
    command = [sys.executable, str(REPO / "noxw.py"), "-s", "regress", "--", "--base", "no-such-rev-xyz"]
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == exits.EXIT_BAD_INPUT, proc.stdout + proc.stderr
    assert "revision 'no-such-rev-xyz' does not exist" in proc.stdout + proc.stderr
