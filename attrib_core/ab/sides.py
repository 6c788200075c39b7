"""The two sides of an A/B session: what each is made of, and making it.

A side is a source tree (the working tree, or a `git worktree add --detach` of a revision),
an optional pip overlay (packages installed with `pip install --target` into a cache folder
keyed by the spec and put first on PYTHONPATH), environment variables, and settings applied
to every cell (`threads`, `precision`, ...). Bad input is a SideError: one line, no traceback.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def repo_root() -> Path:
    """The repository under test: the git work tree the command runs in (its top level)."""
    done = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    if done.returncode != 0:
        raise SideError(
            f"{Path.cwd()} is not in a git repository: an A/B compares two of its revisions "
            "(results files that exist already: attrib-bench regress --compare BASE NEW)"
        )
    return Path(done.stdout.strip())


PIP_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "attrib-bench" / "ab-pip"
SETTABLE = ("threads", "precision", "memory_format", "batch_size", "device")  # what --*-set accepts
INT_SETTINGS = ("threads", "batch_size")


class SideError(ValueError):
    """A side that cannot be made (bad revision, pip spec, setting); exit 2 with this line."""


@dataclass(frozen=True)
class SideSpec:
    """How one side is made; recorded in each of its results files (machine_info.attrib_bench.ab.spec)."""

    name: str  # "A" (base) or "B" (candidate)
    role: str  # "base" or "candidate"
    rev: str | None = None  # None: the working tree, uncommitted changes included
    pip: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def as_record(self) -> dict[str, Any]:
        return {"rev": self.rev, "pip": list(self.pip), "env": dict(self.env), "set": dict(self.settings)}


@dataclass
class Side:
    """A made side: where its code is and how to start a Python on it."""

    spec: SideSpec
    tree: Path
    commit: str | None
    dirty: bool
    overlay: Path | None
    python: str = sys.executable

    @property
    def label(self) -> str:
        parts = [self.spec.role]
        parts.append(f"{(self.commit or 'no commit')[:7]}" if self.spec.rev else "working tree")
        parts += list(self.spec.pip)
        parts += [f"{k}={v}" for k, v in self.spec.env.items()]
        parts += [f"{k}={v}" for k, v in self.spec.settings.items()]
        return " ".join(parts)

    def process_env(self) -> dict[str, str]:
        """The worker's environment: the side's tree (and overlay first) on PYTHONPATH, its variables."""
        env = dict(os.environ)
        paths = ([str(self.overlay)] if self.overlay else []) + [str(self.tree)]
        env["PYTHONPATH"] = os.pathsep.join(paths)
        env.update(self.spec.env)
        return env


def parse_pairs(values: Sequence[str], what: str) -> dict[str, str]:
    """["K=V", ...] -> {K: V}; a value without '=' is a SideError naming it."""
    out = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key.strip():
            raise SideError(f"{what} {value!r} is not KEY=VALUE")
        out[key.strip()] = val.strip()
    return out


def parse_settings(values: Sequence[str], what: str) -> dict[str, Any]:
    """--*-set values: a known setting each, integers where one is meant."""
    settings: dict[str, Any] = {}
    for key, value in parse_pairs(values, what).items():
        if key not in SETTABLE:
            raise SideError(f"{what} {key}={value}: cannot set {key!r}; valid: {', '.join(SETTABLE)}")
        if key in INT_SETTINGS:
            if not value.isdigit() or int(value) < 1:
                raise SideError(f"{what} {key}={value}: needs an integer >= 1")
            settings[key] = int(value)
        else:
            settings[key] = value
    return settings


def git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd or repo_root(), capture_output=True, text=True)


def resolve_rev(rev: str) -> str:
    """The commit a revision names, or a SideError that names the revision."""
    done = git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if done.returncode != 0 or not done.stdout.strip():
        raise SideError(
            f"revision {rev!r} does not exist in {repo_root()} (try a branch, tag or commit: git log --oneline)"
        )
    return done.stdout.strip()


def working_tree_state() -> tuple[str | None, bool]:
    head = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return (head.stdout.strip() or None) if head.returncode == 0 else None, bool(dirty.stdout.strip())


def default_base() -> str:
    """The merge-base of HEAD and origin/main (or main): what a pull request is compared with."""
    for ref in ("origin/main", "main"):
        if git("rev-parse", "--verify", "--quiet", ref).returncode == 0:
            done = git("merge-base", "HEAD", ref)
            if done.returncode == 0:
                return done.stdout.strip()
    raise SideError("no --base given and neither origin/main nor main exists: pass --base REV")


def pip_overlay(specs: Sequence[str], python: str, cache: Path = PIP_CACHE) -> Path:
    """`pip install --no-deps --target` the specs into a cache folder keyed by them (made once).

    --no-deps: the overlay replaces only the packages named; everything else (torch, numpy)
    comes from the side's environment, so `captum==0.8.0` does not pull a second torch. Name
    a dependency in the spec to replace it too. A spec pip cannot resolve is a SideError
    with pip's own one-line reason; a failed install leaves no folder behind.
    """
    version = subprocess.run([python, "-c", "import sys; print(sys.version)"], capture_output=True, text=True)
    key = hashlib.sha256("\n".join([version.stdout.strip(), *sorted(specs)]).encode()).hexdigest()[:16]
    target = cache / key
    if (target / ".complete").exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=cache))
    command = [python, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(partial), *specs]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        errors = [line.strip() for line in done.stderr.splitlines() if line.strip().startswith("ERROR")]
        reason = errors[-1] if errors else (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SideError(f"pip cannot install {' '.join(specs)}: {reason}")
    (partial / ".complete").write_text(" ".join(specs) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(partial, target)
    return target


@contextmanager
def made(spec: SideSpec) -> Iterator[Side]:
    """The side, ready to run; a revision's worktree is removed afterwards."""
    worktree = None
    try:
        if spec.rev is None:
            commit, dirty = working_tree_state()
            tree = repo_root()
        else:
            commit, dirty = resolve_rev(spec.rev), False
            worktree = Path(tempfile.mkdtemp(prefix=f"attrib-bench-ab-{spec.name}-"))
            done = git("worktree", "add", "--detach", str(worktree), commit)
            if done.returncode != 0:
                raise SideError(f"git worktree add {spec.rev}: {done.stderr.strip().splitlines()[-1]}")
            tree = worktree
        overlay = pip_overlay(spec.pip, sys.executable) if spec.pip else None
        yield Side(spec, tree, commit, dirty, overlay)
    finally:
        if worktree is not None:
            git("worktree", "remove", "--force", str(worktree))
            shutil.rmtree(worktree, ignore_errors=True)
