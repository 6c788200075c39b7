"""The GitHub workflows: valid against GitHub's schema (check-jsonschema's vendored copy, so
offline), and the jobs that matter do what the docs say: the pull-request job writes the
comment and posts it once per PR, the pages job builds the dashboard and deploys it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml  # installed with transformers (the bench extra)

from attrib_core.analysis.render.comment import MARKER as WRITTEN_MARKER

WORKFLOWS = sorted((Path(__file__).resolve().parents[1] / ".github" / "workflows").glob("*.yml"))
MARKER = "<!-- attrib-bench-regress -->"


def check_jsonschema() -> str | None:
    beside_python = Path(sys.executable).with_name("check-jsonschema")
    return str(beside_python) if beside_python.exists() else shutil.which("check-jsonschema")


def load(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS[0].parent / name).read_text())


def steps(job: dict) -> list[dict]:
    return job["steps"]


def step_using(job: dict, action: str) -> dict:
    return next(s for s in steps(job) if s.get("uses", "").startswith(action + "@"))


def test_there_are_workflows():
    assert {p.name for p in WORKFLOWS} >= {"bench.yml", "tests.yml"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_each_workflow_is_valid_against_githubs_schema(path):
    tool = check_jsonschema()
    if tool is None:
        pytest.skip("check-jsonschema is not installed (pip install -e .[dev])")
    done = subprocess.run(
        [tool, "--builtin-schema", "vendor.github-workflows", str(path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_pull_request_job_writes_the_comment_and_posts_one_per_pr():
    job = load("bench.yml")["jobs"]["regress"]
    assert job["permissions"]["pull-requests"] == "write"
    check = next(s for s in steps(job) if "-s regress" in s.get("run", ""))
    assert "--comment-md comment.md" in check["run"]
    post = step_using(job, "actions/github-script")
    assert steps(job).index(post) > steps(job).index(check)
    assert "!cancelled()" in post["if"]  # after a regression (a failed step) too
    assert post["continue-on-error"] is True  # a fork's read-only token must not fail the check
    script = post["with"]["script"]
    assert MARKER in script and "updateComment" in script and "createComment" in script
    assert "comment.md" in script


def test_the_marker_the_workflow_looks_for_is_the_one_the_command_writes():
    assert WRITTEN_MARKER == MARKER


def test_the_pages_job_builds_the_dashboard_from_the_history_branch_and_deploys_it():
    workflow = load("bench.yml")
    job = workflow["jobs"]["pages"]
    assert job["needs"] == "history" and job["environment"]["name"] == "github-pages"
    assert job["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}
    history = next(s for s in steps(job) if s.get("with", {}).get("ref") == "bench-history")
    build = next(s for s in steps(job) if "-s dashboard" in s.get("run", ""))
    assert f"-- {history['with']['path']} results -o site/" in build["run"]
    uses = [s.get("uses", "").split("@")[0] for s in steps(job)]
    deploy = ["actions/configure-pages", "actions/upload-pages-artifact", "actions/deploy-pages"]
    assert [u for u in uses if u in deploy] == deploy
    assert step_using(job, "actions/upload-pages-artifact")["with"]["path"] == "site/"
    # yaml reads the key `on` as True
    assert workflow[True]["push"]["branches"] == ["main"] and "workflow_dispatch" in workflow[True]
