"""A/B timing: a base (A) and a candidate (B) on one machine, in one window, interleaved.

    attrib-bench ab --base main                     main against the working tree
    attrib-bench ab --base HEAD --candidate HEAD    A/A: the same code on both sides
    attrib-bench ab --base-pip captum==0.8.0        two environments, same code
    attrib-bench ab --base-set threads=1 --candidate-set threads=2    two settings of the cells
    attrib-bench ab --candidate-env ATTRIB_BENCH_INJECT_MODEL_SLOWDOWN=1.1   a made slowdown

Each side runs in --workers long-lived processes (attrib_core/ab/worker.py, started on the side's
own source tree and environment). The schedule is Q quads per cell; a quad is four blocks of
k rounds in the order A, B, B, A, its two A blocks (and two B blocks) in two different worker
processes, the cells in a new shuffled order every quad (fixed seed). Drift then hits both
sides alike and process-to-process variation shows between blocks, which the comparison rule
uses. k is sized so that a block takes about --block-s seconds.

One results file per worker process goes to results/ab/<UTC time>/ in the normal schema,
with each record's blocks (extra_info.blocks), the session (machine_info.attrib_bench.ab)
and the noise context; `attrib-bench compare` and `regress --compare` read them.

The verdicts are the one timing rule's (attrib_core.analysis.timing_rule, paired by quad):
per cell and for the run as a whole (geometric mean over cells), Holm at --alpha, a change
only past --min-effect. `nox -s regress` is the gate built on this runner (attrib_core/ab/regress.py).

Exit status: 0 the session ran (whatever the verdicts; it is a measurement, not a gate),
2 bad input (a revision that does not exist, a pip spec pip cannot resolve, sides that share
no cell, a bad setting), with one line on stderr and nothing overwritten.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attrib_core import schema
from attrib_core.ab import sides as ab_sides
from attrib_core.ab.sides import Side, SideError, SideSpec
from attrib_core.exits import EXIT_BAD_INPUT, EXIT_OK
from attrib_core.fileio import new_run_dir

WORKER = Path(__file__).resolve().parent / "worker.py"  # run as a script, on the side's code (see worker.py)
RUN_DIR = Path("results") / "ab"  # in the repository the session runs in
MAX_BLOCK_ROUNDS = 200
SEED = 20261129


class WorkerError(RuntimeError):
    """A worker process died or answered an error the session cannot go on without."""


# --- schedule -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    pair: int  # the quad: same number on both sides
    position: int  # global order in the session
    side: str  # "A" or "B"
    process: str  # "A1", "B2", ...
    cell: str  # match key


def schedule(cells: Sequence[str], quads: int, workers: int, seed: int = SEED) -> list[Block]:
    """Quads of A, B, B, A blocks per cell; cell order shuffled per quad; workers alternated.

    In quad q the first A block runs in worker q mod W and the second in (q + 1) mod W (the
    same for B), so with W >= 2 every quad spans two processes per side."""
    rng = random.Random(seed)
    blocks: list[Block] = []
    for quad in range(quads):
        order = list(cells)
        rng.shuffle(order)
        for cell in order:
            for side, turn in (("A", 0), ("B", 0), ("B", 1), ("A", 1)):
                process = f"{side}{(quad + turn) % workers + 1}"
                blocks.append(Block(quad, len(blocks), side, process, cell))
    return blocks


def block_rounds(call_s: float, block_s: float) -> int:
    """Rounds per block so that a block lasts about block_s (at least 1)."""
    return max(1, min(MAX_BLOCK_ROUNDS, round(block_s / max(call_s, 1e-9))))


# --- worker processes -----------------------------------------------------------------------


class WorkerProcess:
    """One attrib_core/ab/worker.py process; requests are JSON lines."""

    def __init__(self, name: str, side: Side, log_path: Path) -> None:
        self.name = name
        self.side = side
        self.log_path = log_path
        self.log = open(log_path, "w")  # noqa: SIM115 (kept open for the process's life)
        self.proc = subprocess.Popen(
            [side.python, "-u", str(WORKER)],
            cwd=side.tree,
            env=side.process_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        self.send(op, **fields)
        return self.receive(op)

    def send(self, op: str, **fields: Any) -> None:
        try:
            self.proc.stdin.write(json.dumps({"op": op, **fields}) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # receive() reports the dead worker with its log

    def receive(self, op: str) -> dict[str, Any]:
        try:
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError, ValueError):
            line = ""
        if not line:
            raise WorkerError(f"worker {self.name} ({self.side.label}) died during {op!r}: {self._tail()}")
        reply = json.loads(line)
        if reply.get("missing_api"):
            raise WorkerError(f"worker {self.name} ({self.side.label}): {reply['error']}")
        return reply

    def _tail(self) -> str:
        self.log.flush()
        lines = [s for s in self.log_path.read_text(errors="replace").splitlines() if s.strip()]
        return " | ".join(lines[-3:]) or "no output"

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.request("quit")
                self.proc.wait(timeout=30)
            except (WorkerError, subprocess.TimeoutExpired, ValueError):
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def request_all(workers, op: str, fields) -> dict[str, dict[str, Any]]:
    """The same request to every worker, sent before any answer is read, so they work in parallel."""
    workers = list(workers)
    for w in workers:
        w.send(op, **fields(w))
    return {w.name: w.receive(op) for w in workers}


# --- the session ------------------------------------------------------------------------------


@dataclass
class Options:
    preset: str = "ci"
    workers: int = 2
    quads: int = 8
    block_s: float = 0.05
    profile: bool = True
    keys: tuple[str, ...] = ()  # -k: substrings; only cells whose key holds one of them
    seed: int = SEED
    alpha: float = 0.05  # the rule's family-wise alpha and minimal effect (attrib_core.analysis.timing_rule)
    min_effect: float = 1.03


def noise_context() -> dict[str, Any]:
    """attrib_core.noise.context() where it exists (the STATS module), else the load average."""
    try:
        from attrib_core import noise

        return noise.context()
    except ImportError:
        import os

        return {"load_average": list(os.getloadavg()), "cpu_count": os.cpu_count()}


def noise_warnings(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    try:
        from attrib_core import noise

        return list(noise.assess(before, after))
    except ImportError:
        return []


def common_cells(listing: dict[str, list[dict]]) -> tuple[list[str], dict[str, dict[str, str]]]:
    """Match keys both sides have (in A's order), and per side match key -> the side's own cell key."""
    keys = {side: {c["match_key"]: c["key"] for c in cells} for side, cells in listing.items()}
    common = [k for k in keys["A"] if k in keys["B"]]
    return common, keys


def run_session(base: SideSpec, candidate: SideSpec, opts: Options, results_dir: Path) -> dict[str, Any]:
    """Make both sides, then the session's own new folder in `results_dir`; run the schedule, write
    one results file per worker there; return the session. On bad input the folder goes again."""
    session_id = uuid.uuid4().hex[:12]
    started = time.monotonic()
    match_fields = sorted(set(base.settings) | set(candidate.settings))
    with ExitStack() as stack:
        sides = {spec.name: stack.enter_context(ab_sides.made(spec)) for spec in (base, candidate)}
        out_dir = new_run_dir(results_dir)
        stack.push(lambda kind, error, trace: _drop_unfinished(out_dir, error))  # after the workers close
        workers: dict[str, WorkerProcess] = {}
        for name, side in sides.items():
            for i in range(1, opts.workers + 1):
                w = WorkerProcess(f"{name}{i}", side, out_dir / f"{name}{i}.log")
                stack.callback(w.close)
                workers[w.name] = w
        noise_before = noise_context()
        listing, listed = {}, {}
        for w in workers.values():  # every worker lists (they import in parallel meanwhile)
            reply = w.request("list", preset=opts.preset, set=sides[w.name[0]].spec.settings, match_fields=match_fields)
            if not reply["ok"]:
                raise SideError(f"side {w.name[0]} ({sides[w.name[0]].label}): {reply['error']}")
            listed[w.name] = reply
            listing.setdefault(w.name[0], reply["cells"])
        common, own_keys = common_cells(listing)
        if opts.keys:
            common = [k for k in common if any(s in k for s in opts.keys)]
        if not common:
            a, b = (len(listing[s]) for s in "AB")
            raise SideError(
                f"the sides share no cells (A has {a}, B has {b}{', after -k' if opts.keys else ''}; "
                f"e.g. A {next(iter(own_keys['A']), '-')!r}, B {next(iter(own_keys['B']), '-')!r})"
            )
        # warm up every cell in every worker; the block size comes from the faster side
        info: dict[str, dict[str, Any]] = {"A": {}, "B": {}}
        errors: dict[str, dict[str, str]] = {"A": {}, "B": {}}
        call_s: dict[str, float] = {}
        for key in common:  # all workers at once: warm-up is not measured, and it is most of the start-up
            replies = request_all(
                workers.values(), "estimate", lambda w, key=key: {"key": own_keys[w.name[0]][key], "calls": 0}
            )
            for name, reply in replies.items():
                if not reply["ok"]:
                    errors[name[0]].setdefault(key, reply["error"])
                else:
                    info[name[0]].setdefault(key, reply["info"])
        timed = [k for k in common if k not in errors["A"] and k not in errors["B"]]
        for key in timed:  # then a few calls alone, one worker a side, for the block size
            for s in "AB":
                reply = workers[f"{s}1"].request("estimate", key=own_keys[s][key])
                call_s[key] = min(call_s.get(key, math.inf), reply["call_s"] if reply["ok"] else math.inf)
        rounds = {k: block_rounds(call_s[k], opts.block_s) for k in timed}
        blocks = schedule(timed, opts.quads, opts.workers, opts.seed)
        samples: dict[tuple[str, str], list[dict]] = defaultdict(list)  # (process, key) -> blocks
        for block in blocks:
            reply = workers[block.process].request(
                "time", key=own_keys[block.side][block.cell], rounds=rounds[block.cell]
            )
            if not reply["ok"]:
                raise WorkerError(f"worker {block.process} failed timing {block.cell}: {reply['error']}")
            samples[(block.process, block.cell)].append(
                {
                    "pair": block.pair,
                    "position": block.position,
                    "process": block.process,
                    "samples_s": reply["samples_s"],
                }
            )
        timing_s = time.monotonic() - started
        profiles: dict[str, dict[str, dict]] = {"A": {}, "B": {}}
        if opts.profile:
            for s in "AB":
                for key in timed:
                    reply = workers[f"{s}1"].request("profile", key=own_keys[s][key])
                    profiles[s][key] = reply["info"] if reply["ok"] else {"profile_error": reply["error"]}
        noise_after = noise_context()
        noise = {"before": noise_before, "after": noise_after, "warnings": noise_warnings(noise_before, noise_after)}
        session = {
            "id": session_id,
            "out_dir": out_dir,
            "cells": timed,
            "failed": errors,
            "rounds": rounds,
            "blocks": len(blocks),
            "timing_s": timing_s,
            "noise": noise,
            "labels": {s: sides[s].label for s in "AB"},
            "alpha": opts.alpha,
            "min_effect": opts.min_effect,
        }
        files = []
        for name in workers:
            s = name[0]
            files.append(
                write_process_file(
                    out_dir,
                    name,
                    sides[s],
                    listed[name],
                    session,
                    info[s],
                    profiles[s],
                    samples,
                    own_keys[s],
                    errors[s],
                )
            )
        session["files"] = files
        session["wall_s"] = time.monotonic() - started
        return session


def _drop_unfinished(out_dir: Path, error: BaseException | None) -> bool:
    """A session stopped by bad input (SideError, WorkerError) before any results file leaves no folder."""
    if isinstance(error, SideError | WorkerError) and not any(out_dir.glob("*.json")):
        shutil.rmtree(out_dir, ignore_errors=True)
    return False  # the error goes on


def _stats(samples: list[float]) -> dict[str, Any]:
    from pytest_benchmark.stats import Stats

    stats = Stats()
    for value in samples:
        stats.update(value)
    return {**stats.as_dict(), "data": list(samples)}


def write_process_file(
    out_dir: Path,
    process: str,
    side: Side,
    listed: dict[str, Any],
    session: dict[str, Any],
    info: dict[str, dict],
    profile: dict[str, dict],
    samples: dict[tuple[str, str], list[dict]],
    own_keys: dict[str, str],
    errors: dict[str, str],
) -> Path:
    """One worker process's results file: a record per cell with its blocks, in the normal schema."""
    import pytest_benchmark
    from pytest_benchmark.plugin import pytest_benchmark_generate_machine_info

    preset = listed["preset"]
    s = process[0]
    cells = {c["match_key"]: c["cell"] for c in listed["cells"]}
    records = []
    for match_key in session["cells"]:
        key = own_keys[match_key]
        blocks = samples.get((process, match_key), [])
        all_samples = [t for b in blocks for t in b["samples_s"]]
        extra = {
            "schema_version": schema.SCHEMA_VERSION,
            **info[match_key],
            **profile.get(match_key, {}),
            "status": "ok",
            "error": None,
            "timing": {"rounds": len(all_samples), "block_rounds": session["rounds"][match_key], "warmup_rounds": 1},
            "ab_match_key": match_key,
            "blocks": blocks,
        }
        name = f"ab[{key}]"
        records.append(
            {
                "group": schema.record_group(extra["cell"]),
                "name": name,
                "fullname": f"attrib_core/ab/session.py::{name}",
                "params": schema.record_params(key),
                "param": key,
                "extra_info": extra,
                "options": {"ab_process": process},
                "stats": _stats(all_samples) if all_samples else None,
            }
        )
    for match_key, error in errors.items():
        records.append(
            schema.failed_record(
                f"ab[{own_keys[match_key]}]",
                f"attrib_core/ab/session.py::ab[{own_keys[match_key]}]",
                own_keys[match_key],
                {
                    "schema_version": schema.SCHEMA_VERSION,
                    "cell_key": own_keys[match_key],
                    "cell": cells[match_key],
                    "status": "failed",
                    "error": error,
                    "ab_match_key": match_key,
                },
            )
        )
    machine_info = pytest_benchmark_generate_machine_info()
    machine_info["attrib_bench"] = schema.run_block(
        preset["name"],
        preset["sha256"],
        listed["devices"],
        listed["environment"],
        started=None,
        finished=schema.now_utc(),
        complete=True,
        code={"commit": side.commit, "dirty": side.dirty, "tree": str(side.tree)},
    )
    machine_info["attrib_bench"]["ab"] = {
        "session": session["id"],
        "side": s,
        "label": side.label,
        "spec": side.spec.as_record(),
        "process": process,
        "attrib_core": listed["attrib_core"],
    }
    machine_info["attrib_bench"]["noise"] = session["noise"]
    commit_info = {"id": side.commit, "dirty": side.dirty, "project": "attrib-bench", "branch": side.spec.rev}
    document = schema.document(machine_info, commit_info, records, pytest_benchmark.__version__)
    path = out_dir / f"{process}_{(side.commit or 'nocommit')[:7]}_{preset['name']}.json"
    path.write_text(schema.dumps(document))
    return path


# --- verdicts ------------------------------------------------------------------------------------


def load_sides(files: Sequence[Path]):
    """The session's files as two tables (A, B), each row with its `ab_match_key` (the cell key
    with the fields a side set left out: what pairs the sides' cells)."""
    from attrib_core.analysis.results import load_results

    df = load_results(files)
    match = {}
    for path in files:
        for record in schema.records(schema.read(path)):
            extra = record["extra_info"]
            match[(Path(path).name, extra["cell_key"])] = extra.get("ab_match_key", extra["cell_key"])
    df["ab_match_key"] = [match.get((f, k), k) for f, k in zip(df["file"], df["cell_key"], strict=True)]
    return df[df["ab_side"] == "A"].reset_index(drop=True), df[df["ab_side"] == "B"].reset_index(drop=True)


def verdict_lines(files: Sequence[Path], alpha: float = 0.05, min_effect: float = 1.03) -> list[str]:
    """The one timing rule (attrib_core.analysis.timing_rule) on the session: a line per cell, then the run."""
    from attrib_core.analysis.timing_rule import RuleSettings, compare_timing
    from attrib_core.formatting import seconds

    base, new = load_sides(files)
    result = compare_timing(base, new, RuleSettings(alpha, min_effect), key_column="ab_match_key")
    rows = [("cell", "A median", "B median", "B/A", "interval", "p (Holm)", "verdict")]
    for c in [*result.cells.values(), result.run_level]:
        rows.append(
            (
                c.cell_key,
                seconds(c.base_s) if not math.isnan(c.base_s) else "-",
                seconds(c.new_s) if not math.isnan(c.new_s) else "-",
                f"{c.ratio:.3f}" if not math.isnan(c.ratio) else "-",
                f"[{c.low:.3f}, {c.high:.3f}]" if not math.isnan(c.low) else "-",
                f"{c.p_adjusted:.2g}" if not math.isnan(c.p_adjusted) else "-",
                c.verdict + (f" ({c.note})" if c.note else ""),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = [
        "  ".join([r[0].ljust(widths[0]), *(v.rjust(w) for v, w in zip(r[1:-1], widths[1:], strict=True)), r[-1]])
        for r in rows
    ]
    flagged = result.flagged
    lines.append(
        f"design {result.design}; Holm over {len(result.cells)} cells + the run at alpha {alpha}, "
        f"min effect {min_effect}: {len(flagged)} flagged" + "".join(f"; note: {w}" for w in result.warnings if w)
    )
    return lines


# --- command line -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="attrib-bench ab",
        description="Time a base (A) and a candidate (B) on this machine, interleaved (ABBA blocks).",
        epilog="Settings (--*-set): " + ", ".join(ab_sides.SETTABLE) + ". Cells are paired by key with the "
        "set fields left out. Pip overlays are installed with --no-deps into a cache folder keyed by the spec "
        "(~/.cache/attrib-bench/ab-pip/) and put first on the side's PYTHONPATH: only the named packages change, "
        "the rest (torch, numpy) is the side's environment; name a dependency to replace it too.",
    )
    for role, name in (("base", "A"), ("candidate", "B")):
        default = "the working tree" if role == "candidate" else "the working tree too (an A/A run)"
        p.add_argument(f"--{role}", metavar="REV", help=f"git revision for side {name} (default: {default})")
        p.add_argument(
            f"--{role}-pip", action="append", default=[], metavar="SPEC", help="pip spec overlaid on the side"
        )
        p.add_argument(f"--{role}-env", action="append", default=[], metavar="K=V", help="environment variable")
        p.add_argument(f"--{role}-set", action="append", default=[], metavar="K=V", help="cell setting")
    p.add_argument("--preset", default="ci", help="preset name or TOML path (default: ci)")
    p.add_argument("--workers", type=int, default=2, help="worker processes per side (default 2)")
    p.add_argument("--quads", type=int, default=8, help="ABBA quads per cell (default 8)")
    p.add_argument("--block-s", type=float, default=0.05, help="target seconds per block of rounds (default 0.05)")
    p.add_argument("--no-profile", dest="profile", action="store_false", help="skip memory/fidelity/calibration")
    p.add_argument("-k", dest="keys", action="append", default=[], help="only cells whose key contains this")
    p.add_argument("--results-dir", type=Path, default=RUN_DIR, help="the session goes to a new folder in here")
    p.add_argument("--seed", type=int, default=SEED, help="seed of the cell order")
    p.add_argument("--alpha", type=float, default=0.05, help="family-wise alpha of the verdicts (default 0.05)")
    p.add_argument("--min-effect", type=float, default=1.03, help="smallest ratio called slower/faster (1.03)")
    return p


def specs_from(args: argparse.Namespace) -> tuple[SideSpec, SideSpec]:
    specs = []
    for role, name in (("base", "A"), ("candidate", "B")):
        rev = getattr(args, role)
        if rev is not None:
            ab_sides.resolve_rev(rev)  # fails fast, before anything starts
        specs.append(
            SideSpec(
                name=name,
                role=role,
                rev=rev,
                pip=tuple(getattr(args, f"{role}_pip")),
                env=ab_sides.parse_pairs(getattr(args, f"{role}_env"), f"--{role}-env"),
                settings=ab_sides.parse_settings(getattr(args, f"{role}_set"), f"--{role}-set"),
            )
        )
    return specs[0], specs[1]


def check_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Options:
    for name, least in (("workers", 1), ("quads", 1)):
        if getattr(args, name) < least:
            parser.error(f"--{name} {getattr(args, name)} is not valid; needs an integer >= {least}")
    if not args.block_s > 0:
        parser.error(f"--block-s {args.block_s} is not valid; needs a number > 0")
    from attrib_core.analysis.timing_rule import RuleSettings

    try:
        RuleSettings(args.alpha, args.min_effect)
    except ValueError as exc:
        parser.error(str(exc))
    return Options(
        args.preset,
        args.workers,
        args.quads,
        args.block_s,
        args.profile,
        tuple(args.keys),
        args.seed,
        args.alpha,
        args.min_effect,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    opts = check_options(args, parser)
    try:
        base, candidate = specs_from(args)
        session = run_session(base, candidate, opts, args.results_dir)
    except (SideError, WorkerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    report_session(session)
    return EXIT_OK


def report_session(session: dict[str, Any]) -> None:
    print(f"A: {session['labels']['A']}\nB: {session['labels']['B']}")
    for s in "AB":
        for key, error in session["failed"][s].items():
            print(f"FAILED on {s}: {key}: {error}")
    for warning in session["noise"]["warnings"]:
        print(f"WARNING: {warning}")
    for line in verdict_lines(session["files"], session["alpha"], session["min_effect"]):
        print(line)
    print(
        f"{len(session['cells'])} cells, {session['blocks']} blocks, timing {session['timing_s']:.0f} s, "
        f"session {session['wall_s']:.0f} s; results: {session['out_dir']}"
    )


if __name__ == "__main__":
    sys.exit(main())
