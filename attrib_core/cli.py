"""`attrib-bench bench|report|compare|history|merge|regress`: the installed package's console script.

bench runs the benchmark suite, which ships with the package (attrib_core/suite), in any folder.
report, compare, history and merge read results files (no torch). regress's A/B still runs this
repository's suite in checkouts of two revisions; from an installed wheel alone it compares two
existing runs: `attrib-bench regress --compare BASE NEW`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

MODULE_COMMANDS = {
    "bench": "attrib_core.suite.command",
    "report": "attrib_core.analysis.report",
    "compare": "attrib_core.analysis.compare",
    "history": "attrib_core.analysis.history_report",
    "merge": "attrib_core.analysis.merge",
}
COMMANDS = (*MODULE_COMMANDS, "regress")
USAGE = "usage: attrib-bench {bench,report,compare,history,merge,regress} [ARGS...]  (COMMAND --help: more)"


def _regress(argv: list[str]) -> int:
    try:
        from bench.regress import main as run_and_compare  # a checkout: the suite is there
    except ImportError:
        run_and_compare = None
    if run_and_compare is not None:
        return run_and_compare(argv)
    from attrib_core.analysis.regression import RegressionInputError
    from attrib_core.analysis.verdicts import EXIT_BAD_INPUT, RegressError, build_parser, compare_files, thresholds_from

    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.compare:
        print(
            "attrib-bench regress: running the benchmark needs the bench/ suite of a repository checkout "
            "(run it there: nox -s regress); from the installed package use --compare BASE NEW",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    try:
        return compare_files(*args.compare, thresholds_from(args, parser))
    except (RegressError, RegressionInputError) as exc:
        print(f"attrib-bench regress: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"attrib-bench: unknown command {name!r}; valid: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    if name == "regress":
        return _regress(rest)
    return importlib.import_module(MODULE_COMMANDS[name]).main(rest)


if __name__ == "__main__":
    sys.exit(main())
