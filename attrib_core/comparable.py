"""When two runs' cells may stand in one results file (torch-free).

A resumed run continues a journal (attrib_core/suite/durable.py) and `attrib-bench merge` joins the
shards of a sweep (attrib_core/analysis/merge.py); both are only meaningful if every cell was
measured on the same preset, code and environment. `incompatibilities` names what differs.
A header here is `{"machine_info": ..., "code": {"commit", "uncommitted_sha256"}}`: a
journal's header as it is, or `run_header` of a results file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Environment fields that must match for cells to be comparable with the rest of their run.
MUST_MATCH = (
    "cpu_model",
    "cpu_logical_cores",
    "python_version",
    "torch_version",
    "torchvision_version",
    "captum_version",
    "numpy_version",
    "torch_cuda_version",
    "intra_op_threads",
    "lock_sha256",
)


def run_header(data: Mapping[str, Any]) -> dict[str, Any]:
    """The header of a (read) results file: its code state from the run block, or, for files
    written before the run block recorded it, the commit of commit_info (uncommitted changes unknown)."""
    run = data["machine_info"]["attrib_bench"].get("run") or {}
    code = run.get("code") or {"commit": (data.get("commit_info") or {}).get("id"), "uncommitted_sha256": None}
    return {"machine_info": data["machine_info"], "code": code}


def incompatibilities(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Why a run with header `new` must not share a results file with one with header `old` (empty: it may)."""
    problems = []
    old_run, new_run = old["machine_info"]["attrib_bench"], new["machine_info"]["attrib_bench"]
    if old_run["preset_sha256"] != new_run["preset_sha256"]:
        problems.append(
            f"the preset changed (sha256 {old_run['preset_sha256'][:12]} -> {new_run['preset_sha256'][:12]})"
        )
    for key in ("commit", "uncommitted_sha256"):
        before, after = old["code"].get(key), new["code"].get(key)
        if before != after:
            what = "commit" if key == "commit" else "uncommitted changes"
            problems.append(f"the code changed ({what}: {str(before)[:12]} -> {str(after)[:12]})")
    old_env, new_env = old_run["environment"], new_run["environment"]
    for key in MUST_MATCH:
        if old_env.get(key) != new_env.get(key):
            problems.append(f"the environment changed ({key}: {old_env.get(key)!r} -> {new_env.get(key)!r})")
    old_gpus = [g.get("name") for g in old_env.get("gpus") or []]
    new_gpus = [g.get("name") for g in new_env.get("gpus") or []]
    if old_gpus != new_gpus:
        problems.append(f"the GPUs changed ({old_gpus} -> {new_gpus})")
    return problems
