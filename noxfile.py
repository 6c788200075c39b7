"""Sessions: tests, lint, bench (the main job); report, compare, history and regress read results.

Sessions that run models share one virtualenv (.nox/torch, about 5 GB with torch), built
once and reinstalled only when pyproject.toml changes. Sessions that only read results
(report, compare, history) get a light venv without torch.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = True

ROOT = Path(__file__).resolve().parent
TORCH_ENV = ROOT / ".nox" / "torch"
PYTEST_NO_TESTS = 5


def torch_python(session: nox.Session) -> str:
    """The shared torch venv's python; created and (re)installed only when needed."""
    python = TORCH_ENV / "bin" / "python"
    if not python.exists():
        session.log(f"creating the shared torch venv in {TORCH_ENV} (once; about 2 minutes)")
        session.run(sys.executable, "-m", "venv", str(TORCH_ENV), external=True)
        session.run(str(python), "-m", "pip", "install", "-q", "--upgrade", "pip", external=True)
    stamp = TORCH_ENV / ".attrib-bench-installed"
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != wanted:
        session.run(str(python), "-m", "pip", "install", "-q", "-e", f"{ROOT}[bench,dev]", external=True)
        stamp.write_text(wanted)
    return str(python)


def run_pytest(session: nox.Session, python: str, *args: str, what: str) -> None:
    """pytest, where exit 5 (nothing collected) is an error with a message, not a silent pass."""
    code = session.run(python, "-m", "pytest", *args, external=True, success_codes=[0, PYTEST_NO_TESTS])
    if code == PYTEST_NO_TESTS:
        session.error(f"no {what} were collected (pytest exit 5): check the path and any -k filter")


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """The harness's own tests (fast, CPU; CUDA-only tests skip without a GPU)."""
    run_pytest(session, torch_python(session), "tests", *session.posargs, what="tests")


@nox.session(venv_backend="none")
def bench(session: nox.Session) -> None:
    """The main job: run a preset (default: standard) and write results/<machine>_<time>_<commit>_<preset>.json.

    nox -s bench -- --preset smoke        another preset (or a path to your own TOML)
    nox -s bench -- -k IntegratedGradients  pytest arguments pass through
    """
    run_pytest(
        session,
        torch_python(session),
        "bench",
        "-p",
        "no:cacheprovider",
        "--preset=standard",
        "--benchmark-columns=min,median,iqr,rounds",
        "--benchmark-sort=name",
        "--benchmark-name=short",
        *session.posargs,
        what="benchmark cells",
    )


@nox.session
def report(session: nox.Session) -> None:
    """Tables, plots and an HTML page from results files (no torch): nox -s report -- [FILES...] [--out DIR]."""
    session.install("-q", "-e", ".")
    session.run("python", "-m", "attrib_core.cli", "report", *session.posargs)


@nox.session
def compare(session: nox.Session) -> None:
    """Side-by-side of two or more runs (files or machine names in results/): nox -s compare -- A B."""
    session.install("-q", "-e", ".")
    session.run("python", "-m", "attrib_core.cli", "compare", *session.posargs)


@nox.session
def history(session: nox.Session) -> None:
    """Each cell over commits with detected steps, from a folder of results: nox -s history -- FOLDER [--out DIR]."""
    session.install("-q", "-e", ".")
    session.run("python", "-m", "attrib_core.cli", "history", *(session.posargs or ["results/history/ci"]))


@nox.session(venv_backend="none")
def regress(session: nox.Session) -> None:
    """Run the CI preset and compare with results/baselines/; exits non-zero on a regression."""
    session.run(torch_python(session), "-m", "bench.regress", *session.posargs, external=True)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def merge(session: nox.Session) -> None:
    """The shards of one sweep -> one results file (no torch): nox -s merge -- SHARD_FILES... [--out FILE]."""
    session.install("-q", "-e", ".")
    session.run("python", "-m", "attrib_core.cli", "merge", *session.posargs)


@nox.session(venv_backend="none")
def throughput(session: nox.Session) -> None:
    """Dataset-scale attribution on K processes: nox -s throughput -- --nproc-per-node=2 [bench.throughput args]."""
    nproc = [a for a in session.posargs if a.startswith("--nproc-per-node")] or ["--nproc-per-node=1"]
    rest = [a for a in session.posargs if not a.startswith("--nproc-per-node")]
    python = torch_python(session)
    session.run(python, "-m", "torch.distributed.run", *nproc, "-m", "bench.throughput", *rest, external=True)
