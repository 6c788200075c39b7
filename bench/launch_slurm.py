"""Run one preset as N shards on a SLURM cluster (a job array through `submitit`), then merge.

    python -m bench.launch_slurm --preset full --shards 8 --partition gpu --gpus-per-node 1 --exclusive

Each array task runs `pytest bench --shard i/N` on its own node (or its own GPU), writing its
shard's results file under --results-dir, which must be on a filesystem all nodes share. A
task that fails (node lost, process killed, time limit) is resubmitted up to --retries times;
the retry continues the shard's journal (`--resume`), so cells already measured are kept.
When every shard has its results file, they are merged (`attrib-bench merge`) into one run.
`--cluster local` runs the same array as local processes (submitit's LocalExecutor), which is
how the tests exercise it; `--cluster debug` runs the tasks one after another in this process.
Needs the `cluster` extra: pip install -e '.[bench,cluster]'.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from attrib_core.analysis.merge import MergeError, default_out, merge
from attrib_core.journal import SUFFIX as JOURNAL_SUFFIX
from attrib_core.suite import suite_command
from bench import REPO

PYTEST_OK = (0, 1)  # 1: some cells failed, and are recorded as failed in the shard's file
CLUSTERS = ("slurm", "local", "debug")


class ShardFailed(RuntimeError):
    """A shard's pytest process ended without writing its results file."""


@dataclass(frozen=True)
class ShardTask:
    """One array task: `pytest bench --shard index/of`, resuming the shard's journal if one is left."""

    preset: str
    index: int
    of: int
    sweep_id: str
    results_dir: str
    pytest_args: tuple[str, ...] = ()
    # extra arguments for this attempt only (fault injection, to test resubmission)
    attempt_args: tuple[str, ...] = field(default=(), compare=False)

    @property
    def stem_glob(self) -> str:
        return f"*-sweep{self.sweep_id}-shard-{self.index}of{self.of}"

    def __call__(self) -> str:
        folder = Path(self.results_dir)
        journals = sorted(folder.glob(self.stem_glob + JOURNAL_SUFFIX))
        resume = [f"--resume={journals[-1]}"] if journals else []
        command = suite_command(
            "-q",
            f"--preset={self.preset}",
            f"--shard={self.index}/{self.of}",
            f"--sweep-id={self.sweep_id}",
            f"--results-dir={folder}",
            *resume,
            *self.pytest_args,
            *self.attempt_args,
        )
        print(" ".join(command), flush=True)
        code = subprocess.run(command, cwd=REPO, check=False).returncode
        done = [p for p in sorted(folder.glob(self.stem_glob + ".json")) if not p.name.endswith(JOURNAL_SUFFIX)]
        left = sorted(folder.glob(self.stem_glob + JOURNAL_SUFFIX))
        if code not in PYTEST_OK or not done or left:
            raise ShardFailed(
                f"shard {self.index}/{self.of} of sweep {self.sweep_id}: pytest exit {code}, "
                f"results file {'found' if done else 'missing'}, journal {'left' if left else 'none'}"
            )
        return str(done[-1])


def executor_for(args: argparse.Namespace):
    """A submitit executor: SLURM (array tasks, exclusive nodes/GPUs on request) or local processes."""
    import submitit

    folder = Path(args.log_dir)
    if args.cluster == "slurm":
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
        slurm = {"slurm_array_parallelism": args.shards, "slurm_job_name": f"attrib-bench-{args.preset}"}
        if args.partition:
            slurm["slurm_partition"] = args.partition
        if args.exclusive:
            slurm["slurm_exclusive"] = True
        executor.update_parameters(**slurm)
    else:
        executor = submitit.AutoExecutor(folder=folder, cluster=args.cluster)
    common = {"timeout_min": args.timeout_min, "nodes": 1, "tasks_per_node": 1}
    if args.gpus_per_node:
        common["gpus_per_node"] = args.gpus_per_node
    if args.cpus_per_task:
        common["cpus_per_task"] = args.cpus_per_task
    executor.update_parameters(**common)
    return executor


def run_task(task: ShardTask) -> str:
    return task()


def run_sweep(executor, tasks: list[ShardTask], retries: int, log=print) -> list[str]:
    """Submit the shards as one array; resubmit the failed ones (up to `retries` times); their files."""
    results: dict[int, str] = {}
    pending = tasks
    for attempt in range(retries + 1):
        jobs = executor.map_array(run_task, pending)
        failed = []
        for task, job in zip(pending, jobs, strict=True):
            try:
                results[task.index] = job.result()
                log(f"shard {task.index}/{task.of}: done ({job.job_id}) -> {results[task.index]}")
            except Exception as exc:  # submitit re-raises the task's error (or the scheduler's)
                log(f"shard {task.index}/{task.of}: attempt {attempt + 1} failed ({job.job_id}): {exc}")
                failed.append(ShardTask(**{**task.__dict__, "attempt_args": ()}))
        pending = failed
        if not pending:
            break
    if pending:
        raise ShardFailed(f"shards {[t.index for t in pending]} still failed after {retries} resubmission(s)")
    return [results[i] for i in sorted(results)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.launch_slurm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", required=True, help="preset name or TOML path")
    parser.add_argument("--shards", type=int, required=True, help="number of shards (array tasks)")
    parser.add_argument("--cluster", choices=CLUSTERS, default="slurm", help="where the tasks run (default: slurm)")
    parser.add_argument("--partition", help="SLURM partition")
    parser.add_argument("--gpus-per-node", type=int, default=0, help="GPUs per task (one node each)")
    parser.add_argument("--cpus-per-task", type=int, help="CPU cores per task")
    parser.add_argument("--exclusive", action="store_true", help="a whole node per shard (no neighbours in timings)")
    parser.add_argument("--timeout-min", type=int, default=240, help="wall-time limit per task, minutes")
    parser.add_argument("--retries", type=int, default=1, help="resubmissions of failed shards (default 1)")
    parser.add_argument("--results-dir", type=Path, default=REPO / "results", help="shared folder for the shards")
    parser.add_argument("--log-dir", type=Path, default=REPO / "results" / "submitit", help="submitit's job folder")
    parser.add_argument("--sweep-id", help="default: a fresh random id")
    parser.add_argument("--out", type=Path, help="merged results file (default: beside the shards, '-merged-N')")
    parser.add_argument("pytest_args", nargs="*", help="after --: more arguments for each shard's pytest")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.shards < 1:
        parser.error(f"--shards {args.shards}: must be >= 1")
    if args.retries < 0:
        parser.error(f"--retries {args.retries}: must be >= 0")
    sweep = args.sweep_id or uuid.uuid4().hex[:10]
    tasks = [
        ShardTask(args.preset, i, args.shards, sweep, str(args.results_dir.resolve()), tuple(args.pytest_args))
        for i in range(1, args.shards + 1)
    ]
    try:
        paths = run_sweep(executor_for(args), tasks, args.retries)
        out = args.out or default_out(Path(paths[0]))
        print(f"merged -> {merge(paths, out)}")
    except (ShardFailed, MergeError) as exc:
        print(f"launch_slurm: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
