"""`attrib-bench merge SHARD_FILES... [--out FILE]`: the shards of one sweep -> one results file.

Each shard of a sweep (`pytest bench --shard i/N`) writes its own results file, named
`..._<preset>-sweep<id>-shard-<i>of<N>.json`. Merging refuses, naming what differs, unless
the files are all the shards 1..N of one sweep, each once, run on the same preset, code and
environment (attrib_core.comparable, the rule a resumed run obeys too), with no cell in two
shards. The merged file is an ordinary results file (one schema: attrib_core.schema) whose
run block lists the shards it came from, so report, compare and regress read it as any run.
Torch-free.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from attrib_core import schema
from attrib_core.comparable import incompatibilities, run_header
from attrib_core.fileio import atomic_save, atomic_write

SHARD_IN_NAME = re.compile(r"-shard-\d+of(\d+)$")


class MergeError(ValueError):
    """Shards that cannot be merged; the message names the files and what differs."""


def shard_of(data: dict[str, Any], path: Path) -> dict[str, Any]:
    shard = (data["machine_info"]["attrib_bench"].get("run") or {}).get("shard")
    if not isinstance(shard, dict):
        raise MergeError(f"{path}: not a shard (its run block has no 'shard'; run it with pytest bench --shard i/N)")
    return shard


def check(shards: Sequence[tuple[Path, dict[str, Any]]]) -> list[str]:
    """Everything that stops these (path, data) pairs from being one sweep; empty: they are."""
    problems: list[str] = []
    first_path, first = shards[0]
    first_shard = shard_of(first, first_path)
    seen: dict[int, Path] = {}
    for path, data in shards:
        shard = shard_of(data, path)
        for key in ("sweep_id", "of"):
            if shard[key] != first_shard[key]:
                problems.append(f"{path.name}: {key} {shard[key]!r}, but {first_path.name} has {first_shard[key]!r}")
        if shard["index"] in seen:
            problems.append(f"shard {shard['index']} given twice: {seen[shard['index']].name} and {path.name}")
        seen.setdefault(shard["index"], path)
        if path is not first_path:
            differences = incompatibilities(run_header(first), run_header(data))
            problems += [f"{first_path.name} -> {path.name}: {difference}" for difference in differences]
    n_shards = first_shard["of"]
    missing = [f"{i}/{n_shards}" for i in range(1, n_shards + 1) if i not in seen]
    if missing:
        problems.append(f"missing shard(s) {', '.join(missing)} of sweep {first_shard['sweep_id']}")
    owner: dict[str, Path] = {}
    for path, data in shards:
        for record in schema.records(data):
            key = record["extra_info"]["cell_key"]
            if key in owner and owner[key] != path:
                problems.append(f"cell {key!r} is in both {owner[key].name} and {path.name}")
            owner.setdefault(key, path)
    return problems


def merge(paths: Sequence[str | Path], out: str | Path) -> Path:
    """Check and merge the shard files into `out` (and their gallery maps into its .maps.npz)."""
    if not paths:
        raise MergeError("merge: no shard files given")
    shards = [(Path(p), schema.read(p)) for p in paths]  # ResultsError names a bad file
    problems = check(shards)
    if problems:
        raise MergeError("refusing to merge: " + "; ".join(problems))
    shards.sort(key=lambda pair: shard_of(pair[1], pair[0])["index"])
    runs = [pair[1]["machine_info"]["attrib_bench"].get("run") or {} for pair in shards]
    listed = [
        {
            "file": path.name,
            **{k: v for k, v in run["shard"].items() if k in ("index", "of", "cells", "predicted_cost")},
            "started": run.get("started"),
            "finished": run.get("finished"),
            "complete": run.get("complete"),
            "cells_recorded": len(schema.records(data)),
        }
        for (path, data), run in zip(shards, runs, strict=True)
    ]
    first = shards[0][1]
    machine_info = {**first["machine_info"], "attrib_bench": dict(first["machine_info"]["attrib_bench"])}
    machine_info["attrib_bench"].pop("failed", None)
    finished = [r.get("finished") for r in runs]
    machine_info["attrib_bench"]["run"] = {
        "started": min(r.get("started") or "" for r in runs) or None,
        "finished": None if None in finished else max(finished),
        "complete": all(r.get("complete") for r in runs),
        "code": runs[0].get("code"),
        "merged": {"sweep_id": runs[0]["shard"]["sweep_id"], "at": schema.now_utc(), "shards": listed},
    }
    records = [record for _, data in shards for record in schema.records(data)]
    document = schema.document(machine_info, first["commit_info"], records, first.get("version", ""))
    out = Path(out)
    atomic_write(out, schema.dumps(document))
    maps = _maps(path for path, _ in shards)
    if maps:
        atomic_save(out.with_suffix(".maps.npz"), lambda tmp: _save_npz(tmp, maps))
    return out


def default_out(first: Path) -> Path:
    """Beside the shards: shard 1's name with `-shard-1ofN` replaced by `-merged-N`."""
    stem = SHARD_IN_NAME.sub(lambda m: f"-merged-{m.group(1)}", first.stem)
    if stem == first.stem:
        raise MergeError(f"{first.name}: not named as a shard (…-shard-<i>of<N>.json); give --out FILE")
    return first.with_name(stem + ".json")


def _maps(paths) -> dict[str, np.ndarray]:
    maps: dict[str, np.ndarray] = {}
    for path in paths:
        companion = path.with_suffix(".maps.npz")
        if companion.is_file():
            with np.load(companion, allow_pickle=False) as npz:
                maps.update({key: npz[key] for key in npz.files})
    return maps


def _save_npz(path: Path, maps: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as handle:
        np.savez_compressed(handle, **maps)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="attrib-bench merge", description=__doc__.split("\n\n")[1])
    parser.add_argument("shards", nargs="+", type=Path, help="the shards' results files (all N of one sweep)")
    parser.add_argument("--out", type=Path, help="merged results file (default: beside the shards, '-merged-N')")
    args = parser.parse_args(argv)
    try:
        out = merge(args.shards, args.out or default_out(sorted(args.shards)[0]))
    except (MergeError, schema.ResultsError) as exc:
        print(f"attrib-bench merge: {exc}", file=sys.stderr)
        return 2
    print(f"merged {len(args.shards)} shards -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
