"""Sessions: tests (and tests-slow, tests-portable, tests-browser), lint, docs, bench (the main job);
report, compare, history, dashboard and regress read results; lock.

Run them through `python3 noxw.py -s NAME` (it brings its own nox; see noxw.py) or any nox.
Through noxw.py a session ends with its attrib-bench command's exit status (1 a regression or a
failed cell, 2 bad input, 3 an internal error); plain nox ends every failed session with 1.
Sessions that run models share one virtualenv (.nox/torch, about 6 GB with torch), built
once and reinstalled only when pyproject.toml or the lock changes. Sessions that only read
results (report, compare, history, dashboard) get a light venv without torch. Every install is
constrained by requirements/bench.lock, so two machines get the same versions; `nox -s lock`
rewrites it.

Installer: pip by default, because it honours pip's configuration (mirrors, find-links,
constraints, certificates). ATTRIB_BENCH_INSTALLER=uv uses uv instead, for every venv:
several times faster, but uv reads only its own settings (UV_INDEX_URL, UV_FIND_LINKS, ...).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import nox
import nox.command

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = True

ROOT = Path(__file__).resolve().parent
TORCH_ENV = ROOT / ".nox" / "torch"
BENCH_LOCK = ROOT / "requirements" / "bench.lock"
NOX_LOCK = ROOT / "requirements" / "nox.lock"
BENCH_EXTRAS = "bench,dev,cluster,oracle"  # what the shared torch venv installs
PYTEST_NO_TESTS = 5
# The fast suite: the slow tests and the browser's page checks (which need a system Chromium and
# involve no torch kernel) have sessions of their own.
FAST = "not slow and not browser"
EXIT_FILE_ENV = "ATTRIB_BENCH_EXIT_FILE"  # noxw.py names a file here, and exits with the status recorded in it
LOCK_HEADER = """\
# {what}, pinned: everything `pip install {install}` installs, as `nox -s lock` resolved it
# with CPython {python} on {platform}. {use}
# Do not edit by hand; regenerate with
#   python3 noxw.py -s lock               pins what .nox/torch holds now
#   python3 noxw.py -s lock -- --upgrade  first upgrades .nox/torch to the newest versions pip allows
"""
BENCH_LOCK_USE = """Every session installs with it as pip constraints (-c), so a pin for a package
# this platform does not need (the nvidia-* wheels that torch pulls on Linux) is ignored. Each results
# file records its sha256 (machine_info.lock_sha256) and any installed version that differs from it."""
NOX_LOCK_USE = "noxw.py installs it (-r) into .nox/_nox."


def uv_binary(session: nox.Session) -> str:
    found = shutil.which("uv")
    if found is None:
        session.error("ATTRIB_BENCH_INSTALLER=uv, but there is no `uv` on PATH: install uv, or unset it to use pip")
    return found


def pip_create(session: nox.Session, env: Path) -> None:
    session.run(sys.executable, "-m", "venv", str(env), external=True)
    session.run(str(env / "bin" / "python"), "-m", "pip", "install", "-q", "--upgrade", "pip", external=True)


def uv_create(session: nox.Session, env: Path) -> None:
    # --seed puts pip in too: the lock session asks pip's resolver
    session.run(uv_binary(session), "venv", "-q", "--seed", "--python", sys.executable, str(env), external=True)


def pip_install(session: nox.Session, python: str) -> tuple[str, ...]:
    return (python, "-m", "pip", "install", "-q")


def uv_install(session: nox.Session, python: str) -> tuple[str, ...]:
    return (uv_binary(session), "pip", "install", "-q", "--python", python)


# name -> (create a venv, the install command for a venv's python)
INSTALLERS = {"pip": (pip_create, pip_install), "uv": (uv_create, uv_install)}
INSTALLER = os.environ.get("ATTRIB_BENCH_INSTALLER", "pip")
if INSTALLER not in INSTALLERS:
    raise ValueError(f"ATTRIB_BENCH_INSTALLER={INSTALLER!r} is not one of {sorted(INSTALLERS)}")
if INSTALLER == "uv":
    nox.options.default_venv_backend = "uv"  # the light sessions (report, compare, lint) too


def torch_python(session: nox.Session) -> str:
    """The shared torch venv's python; created and (re)installed only when needed."""
    create, install = INSTALLERS[INSTALLER]
    python = TORCH_ENV / "bin" / "python"
    if not python.exists():
        session.log(f"creating the shared torch venv in {TORCH_ENV} with {INSTALLER} (once; 1-4 minutes)")
        create(session, TORCH_ENV)
    stamp = TORCH_ENV / ".attrib-bench-installed"
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + BENCH_LOCK.read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != wanted:
        requirements = ("-c", str(BENCH_LOCK), "-e", f"{ROOT}[{BENCH_EXTRAS}]")
        session.run(*install(session, str(python)), *requirements, external=True)
        stamp.write_text(wanted)
    return str(python)


def pinned_closure(session: nox.Session, python: str, *requirements: str) -> list[str]:
    """`name==version` for all that pip would install for these requirements, by pip's own resolver and config."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        pip = (python, "-m", "pip", "install", "-q", "--dry-run", "--ignore-installed", "--report", str(report))
        session.run(*pip, *requirements, external=True, silent=True)
        installs = [item["metadata"] for item in json.loads(report.read_text())["install"]]
    pins = (f"{meta['name']}=={meta['version']}" for meta in installs if meta["name"] != "attrib-bench")
    return sorted(pins, key=str.lower)


def write_lock(path: Path, pins: list[str], what: str, install: str, use: str) -> None:
    python = ".".join(map(str, sys.version_info[:2]))
    header = LOCK_HEADER.format(what=what, install=install, python=python, platform=sys.platform, use=use)
    path.write_text(header + "\n".join(pins) + "\n")


def run_pytest(session: nox.Session, python: str, *args: str, what: str, env: dict | None = None) -> None:
    """pytest, where exit 5 (nothing collected) is an error with a message, not a bare failure."""
    try:
        session.run(python, "-m", "pytest", *args, external=True, env=env)
    except nox.command.CommandFailed as failed:
        if getattr(failed, "return_code", None) == PYTEST_NO_TESTS:
            session.error(f"no {what} were collected (pytest exit 5): check the path and any -k filter")
        raise


def attrib_bench(session: nox.Session, python: str, *args: str, external: bool = False) -> None:
    """`python -m attrib_core ARGS`. nox ends any failed session with exit 1, so the command's own
    status (1 a regression or failed cell, 2 bad input, 3 a bug) is recorded for noxw.py to exit with."""
    try:
        session.run(python, "-m", "attrib_core", *args, external=external)
    except nox.command.CommandFailed as failed:
        record_exit_status(getattr(failed, "return_code", None))
        raise


def record_exit_status(code: int | None) -> None:
    exit_file = os.environ.get(EXIT_FILE_ENV)
    if exit_file and code is not None:
        with open(exit_file, "a", encoding="ascii") as handle:
            handle.write(f"{code}\n")


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """The harness's own tests, less those marked slow or browser (CPU; CUDA-only tests skip without a GPU)."""
    run_pytest(session, torch_python(session), "tests", "-m", FAST, *session.posargs, what="tests")


@nox.session(name="tests-slow", venv_backend="none")
def tests_slow(session: nox.Session) -> None:
    """The slow tests: retraining, subprocess isolation, kill and resume, A/B sessions, whole-preset runs."""
    run_pytest(session, torch_python(session), "tests", "-m", "slow", *session.posargs, what="slow tests")


@nox.session(name="tests-browser", venv_backend="none")
def tests_browser(session: nox.Session) -> None:
    """The HTML pages (report, compare, history, dashboard) opened in headless Chromium: console errors,
    sortable tables, figures, a phone's width. Needs the system's chromium and chromedriver (Debian:
    apt-get install chromium chromium-driver); without them the tests skip, or fail when CI is set."""
    run_pytest(session, torch_python(session), "tests", "-m", "browser", *session.posargs, what="browser tests")


@nox.session(name="tests-portable", venv_backend="none")
def tests_portable(session: nox.Session) -> None:
    """The tests again under each older CPU's kernels that this CPU can run (torch's
    ATEN_CPU_CAPABILITY, with oneDNN's ONEDNN_MAX_CPU_ISA capped at the same level), so a
    tolerance that holds only on this machine's rounding fails here. Slow tests are left out
    unless you pass `-m slow` (or `-m ""`)."""
    python = torch_python(session)
    probe = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    native = session.run(python, "-c", probe, external=True, silent=True).strip()
    passed = []
    for setting in kernel_settings(native):
        label = " ".join(f"{name}={value}" for name, value in setting.items())
        session.log(f"tests with {label} (this CPU: {native})")
        run_pytest(session, python, "tests", "-m", FAST, *session.posargs, env=setting, what="tests")
        passed.append(label)
    session.log("passed under: " + "; ".join(passed))


def kernel_settings(native: str) -> list[dict[str, str]]:
    """x86: ATen's kernel levels up to this CPU's (default, avx2, avx512), each with oneDNN capped at
    the matching ISA (SSE4.1, AVX2, AVX-512 without bf16 or AMX); elsewhere the portable `default`."""
    levels = [("default", "SSE41"), ("avx2", "AVX2"), ("avx512", "AVX512_CORE")]
    rank = {"DEFAULT": 0, "AVX2": 1, "AVX512": 2}.get(native.upper())
    if rank is None:
        return [{"ATEN_CPU_CAPABILITY": "default"}]
    return [{"ATEN_CPU_CAPABILITY": aten, "ONEDNN_MAX_CPU_ISA": onednn} for aten, onednn in levels[: rank + 1]]


@nox.session(venv_backend="none")
def bench(session: nox.Session) -> None:
    """The main job: run a preset (default: standard) and write results/NNNN_<machine>_<time>_<commit>_<preset>.json.

    nox -s bench -- --preset smoke        another preset (or a path to your own TOML)
    nox -s bench -- -k IntegratedGradients  pytest arguments pass through
    nox -s bench -- --resume              continue an interrupted run (its own preset)
    """
    attrib_bench(session, torch_python(session), "bench", *session.posargs, external=True)


@nox.session
def report(session: nox.Session) -> None:
    """Tables, plots and an HTML page from results files (no torch): nox -s report -- [FILES...] [--out DIR]."""
    session.install("-q", "-c", str(BENCH_LOCK), "-e", ".")
    attrib_bench(session, "python", "report", *session.posargs)


@nox.session
def compare(session: nox.Session) -> None:
    """Side-by-side of two or more runs (files or machine names in results/): nox -s compare -- A B."""
    session.install("-q", "-c", str(BENCH_LOCK), "-e", ".")
    attrib_bench(session, "python", "compare", *session.posargs)


@nox.session
def history(session: nox.Session) -> None:
    """Each cell over commits with detected steps, from a folder of results: nox -s history -- FOLDER [--out DIR]."""
    session.install("-q", "-c", str(BENCH_LOCK), "-e", ".")
    attrib_bench(session, "python", "history", *(session.posargs or ["results/history/ci"]))


@nox.session
def dashboard(session: nox.Session) -> None:
    """A static site of every results file in folders (no torch): nox -s dashboard -- FOLDER... [-o DIR]."""
    session.install("-q", "-c", str(BENCH_LOCK), "-e", ".")
    attrib_bench(session, "python", "dashboard", *session.posargs)


@nox.session(venv_backend="none")
def regress(session: nox.Session) -> None:
    """A/B: the working tree against the merge-base with origin/main (or `-- --base REV`), on the
    CI preset, interleaved on this machine; exit 1 on a regression, 2 on bad input. `-- --baseline DIR`
    / `--update-baseline`: the history mode against committed results files."""
    attrib_bench(session, torch_python(session), "regress", *session.posargs, external=True)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("-q", "-c", str(BENCH_LOCK), "ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site (docs/, mkdocs.yml) into site/; --strict, so a broken link fails."""
    session.install("-q", "-c", str(BENCH_LOCK), "mkdocs>=1.6,<2")
    session.run("mkdocs", "build", "--strict", *session.posargs)


@nox.session(venv_backend="none")
def lock(session: nox.Session) -> None:
    """Rewrite requirements/bench.lock (from .nox/torch) and requirements/nox.lock; `-- --upgrade` upgrades first.

    Run the tests after an upgrade, and commit both locks with the results they produced.
    """
    upgrade = "--upgrade" in session.posargs
    python = torch_python(session)
    if upgrade:
        session.run(python, "-m", "pip", "install", "-q", "-U", "-e", f"{ROOT}[{BENCH_EXTRAS}]", external=True)
    # the versions now installed in .nox/torch, as constraints for pip's resolver: the lock is their closure
    frozen = session.run(python, "-m", "pip", "freeze", "--exclude-editable", external=True, silent=True)
    with tempfile.TemporaryDirectory() as tmp:
        installed = Path(tmp) / "installed.txt"
        installed.write_text(frozen)
        pins = pinned_closure(session, python, "-c", str(installed), "-e", f"{ROOT}[{BENCH_EXTRAS}]")
    write_lock(BENCH_LOCK, pins, "The bench environment", f"-e .[{BENCH_EXTRAS}]", BENCH_LOCK_USE)
    nox_pin = "nox" if upgrade else f"nox=={metadata.version('nox')}"
    nox_pins = pinned_closure(session, sys.executable, nox_pin)
    write_lock(NOX_LOCK, nox_pins, "The nox that noxw.py runs", nox_pin, NOX_LOCK_USE)
    session.log(f"wrote {BENCH_LOCK.relative_to(ROOT)} ({len(pins)} pins) and {NOX_LOCK.relative_to(ROOT)}")


@nox.session
def merge(session: nox.Session) -> None:
    """The shards of one sweep -> one results file (no torch): nox -s merge -- SHARD_FILES... [--out FILE]."""
    session.install("-q", "-c", str(BENCH_LOCK), "-e", ".")
    attrib_bench(session, "python", "merge", *session.posargs)


@nox.session(venv_backend="none")
def throughput(session: nox.Session) -> None:
    """Dataset-scale attribution on K processes: nox -s throughput -- --nproc-per-node=2 [bench.throughput args]."""
    nproc = [a for a in session.posargs if a.startswith("--nproc-per-node")] or ["--nproc-per-node=1"]
    rest = [a for a in session.posargs if not a.startswith("--nproc-per-node")]
    python = torch_python(session)
    session.run(python, "-m", "torch.distributed.run", *nproc, "-m", "bench.throughput", *rest, external=True)


@nox.session(venv_backend="none")
def tune(session: nox.Session) -> None:
    """The fastest faithful setting per method on this machine: nox -s tune -- --workload W --method M [...].

    nox -s tune -- --workload resnet18 --method IntegratedGradients --memory-budget 2GiB
    nox -s tune -- --workload resnet18 --method Occlusion --max-error 2.7 --time-budget 120
    Writes results/NNNN_<machine>_<time>_<commit>_tune-<workload>.json (report and compare read it).
    """
    attrib_bench(session, torch_python(session), "tune", *session.posargs, external=True)
