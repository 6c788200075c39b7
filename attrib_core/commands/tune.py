"""`attrib-bench tune --workload W [--method M ...] [--memory-budget 2GiB] [--max-error E | --min-spearman S]
[--time-budget 180] [--fix KNOB=VALUE ...]`: the fastest faithful setting of each method on this machine.

Thin: the search is attrib_core.tune; this parses the command line, writes the results file
(results/NNNN_<machine>_<time>_<commit>_tune-<workload>.json, read by report and compare like any
other), and prints the default-against-tuned table (read back from that file) and a Captum snippet.
Bad input exits 2 with one line, before any search runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pytest_benchmark
from pytest_benchmark.plugin import pytest_benchmark_generate_machine_info
from pytest_benchmark.utils import get_commit_info

from attrib_core import measure, schema
from attrib_core.analysis.render.tuned import search_points, tune_summaries, tuned_table
from attrib_core.analysis.results import efficiency_label, load_results
from attrib_core.analysis.tables import to_markdown
from attrib_core.exits import EXIT_BAD_INPUT
from attrib_core.fileio import atomic_write
from attrib_core.methods import KnobError
from attrib_core.registry import UnknownNameError
from attrib_core.run import NotApplicable
from attrib_core.suite import durable
from attrib_core.tune import FidelityTarget, TuneError, TuneRequest, check_budget, check_request, tune
from attrib_core.tune import output as tune_output
from attrib_core.tune.memory import MemoryBudgetError, parse_bytes
from attrib_core.tune.space import parse_fixed

RESULTS_DIR = Path("results")  # in the folder the command runs in
TABLE_COLUMNS = ["method", "setting", "median_s", "peak_MiB", "rel_error", "efficiency", "speedup"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attrib-bench tune", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", required=True, help="a registered workload (e.g. resnet18, shapes_resnet18)")
    parser.add_argument("--method", action="append", required=True, help="a method to tune (repeatable)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--memory-budget", help="peak memory allowed for one call, e.g. 2GiB, 512MiB")
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--max-error",
        default="default",
        help="relative L2 error against the high-accuracy reference, or 'default' (Captum's default's own error, "
        "measured in the run; the default)",
    )
    target.add_argument("--min-spearman", type=float, help="rank correlation with the reference, at least this")
    parser.add_argument(
        "--error-tolerance",
        type=float,
        default=1e-3,
        help="with --max-error default: relative slack on the default's error (fp32 sums in another order differ "
        "by ~1e-6 relative; default 1e-3)",
    )
    parser.add_argument("--time-budget", type=float, default=180.0, help="seconds of search per method (default 180)")
    parser.add_argument("--fix", action="append", default=[], help="hold a knob at a value: NAME=VALUE (repeatable)")
    parser.add_argument("--precision", action="append", help="precisions to try (default: all autocast offers)")
    parser.add_argument("--memory-format", action="append", help="memory formats to try (default: all valid)")
    parser.add_argument("--threads", action="append", type=int, help="thread counts to try (default: 1 and now's)")
    parser.add_argument("--no-compile", action="store_true", help="do not try torch.compile")
    parser.add_argument("--reference-steps", type=int, default=512, help="steps of path-integral references")
    parser.add_argument("--final-rounds", type=int, default=3, help="interleaved calls each in the final comparison")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--machine-name", help="name in the results file's name (default: CPU model and cores)")
    return parser


def request_from(args: argparse.Namespace) -> TuneRequest:
    if args.min_spearman is not None:
        target = FidelityTarget("min_spearman", args.min_spearman, args.error_tolerance)
    else:
        value = None if args.max_error == "default" else _number("--max-error", args.max_error)
        target = FidelityTarget("max_error", value, args.error_tolerance)
    return TuneRequest(
        workload=args.workload,
        methods=tuple(dict.fromkeys(args.method)),
        target=target,
        batch_size=args.batch_size,
        device=args.device,
        memory_budget_bytes=parse_bytes(args.memory_budget) if args.memory_budget else None,
        time_budget_s=args.time_budget,
        fixed=parse_fixed(args.fix),
        precisions=tuple(args.precision) if args.precision else None,
        memory_formats=tuple(args.memory_format) if args.memory_format else None,
        threads=tuple(args.threads) if args.threads else None,
        compile=not args.no_compile,
        reference_steps=args.reference_steps,
        final_rounds=args.final_rounds,
    )


def _number(option: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise TuneError(f"{option} {text!r} is not valid; expected a number or 'default'") from None


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--show"]:  # print the answer of an earlier tune run again: --show FILE
        if len(argv) != 2:
            print("tune: error: --show takes one results file", file=sys.stderr)
            return EXIT_BAD_INPUT
        try:
            print_answer(Path(argv[1]))
        except schema.ResultsError as exc:
            print(f"tune: error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        return 0
    parser = build_parser()
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        request = request_from(args)
        spaces = check_request(request)
        check_budget(request)
    except (TuneError, KnobError, MemoryBudgetError, UnknownNameError, NotApplicable, ValueError) as exc:
        print(f"tune: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    commit_info = get_commit_info()
    run = {"started": schema.now_utc(), "code": durable.code_state()}
    print(f"tune: {request.workload}, batch {request.batch_size}, {request.device}; methods {', '.join(spaces)}")
    try:
        results = tune(request, log=print, spaces=spaces)
    except TuneError as exc:  # the target turned out unreachable (checked first thing, before the search)
        print(f"tune: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    run["finished"] = schema.now_utc()
    run["wall_s"] = time.perf_counter() - started
    machine = args.machine_name or measure.machine_label()
    path = durable.results_path(args.results_dir, machine, commit_info.get("id"), f"tune-{request.workload}")
    data = tune_output.document(
        request, results, pytest_benchmark_generate_machine_info(), commit_info, pytest_benchmark.__version__, run
    )
    atomic_write(path, schema.dumps(data))
    print_answer(path)
    print(f"tune: wrote {path} ({time.perf_counter() - started:.0f} s in all)")
    return 0


def print_answer(path: Path) -> None:
    """The default-against-tuned table, read back from the file just written, and each method's snippet."""
    df = load_results([path])
    summaries = tune_summaries(df)
    table = tuned_table(df, summaries, search_points(df))
    print()
    shown = table[TABLE_COLUMNS].round(4)
    shown["rel_error"] = table["rel_error"].map("{:.3g}".format)  # 9.6e-5 and 1.2e-4 both round to 0.0001
    shown["efficiency"] = table["efficiency"].map(efficiency_label)  # above 1.05: the limit is wrong, not the call
    print(to_markdown(shown))
    for method, summary in summaries[path.name].items():
        shares = ", ".join(f"{axis} {share:.0%}" for axis, share in summary["gain_shares"].items())
        print(f"\n{method}: {summary['speedup']:.2f}x faster than Captum's default at {summary['target']}")
        print(f"  share of the gain: {shares or 'none (the default is the fastest setting found)'}")
        compile_note = summary["compile"]
        if compile_note["tried"]:
            status = f"breaks: {compile_note['error']}"
            if compile_note["works"] and compile_note.get("meets_target") is False:
                first = compile_note.get("first_call_s") or 0.0
                distance = compile_note.get("same_result_distance")
                apart = "" if distance is None else f"; its output is {distance:.2g} from the eager one's"
                status = (
                    f"runs (first call, compiling: {first:.1f} s) but misses the fidelity target: error "
                    f"{compile_note['rel_error']:.3g}{apart}"
                )
            elif compile_note["works"] and compile_note["compile_s"] is not None:
                status = f"works, compile time {compile_note['compile_s']:.1f} s (first call minus the median)"
            elif compile_note["works"]:
                first = compile_note.get("first_call_s")
                took = f" (first call, compiling: {first:.1f} s)" if first is not None else ""
                status = f"works{took}; the time budget left no timed call after it"
            print(f"  torch.compile: {status}")
        for note in summary["notes"]:
            print(f"  note: {note}")
        print("  Captum call:\n" + "\n".join("    " + line for line in summary["snippet"].splitlines()))


if __name__ == "__main__":
    sys.exit(main())
