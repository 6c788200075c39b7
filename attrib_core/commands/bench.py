"""`attrib-bench bench [--preset NAME|PATH] [PYTEST ARGS...]`: run the benchmark suite here.

The suite ships with the package, so this works in any folder: your own repository with a
plug-in workload and a preset, without a checkout of attrib-bench. Results go to ./results
(or --results-dir). Everything after the command is pytest's (and the suite's) arguments:
`-k FILTER`, `--resume`, `--isolate`, `--shard I/N`, ... (`attrib-bench bench --help` lists them
under "attrib-bench").

Exit status: 0 every cell ran; 1 a cell failed; 2 bad input (an unknown preset, key, method or
value; a filter that matched no cell); 3 an internal error; 130 interrupted (what was measured
is kept: --resume continues).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from attrib_core.exits import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    import pytest

    from attrib_core.suite import suite_args

    args = list(sys.argv[1:] if argv is None else argv)
    table = ["--benchmark-columns=min,median,iqr,rounds", "--benchmark-sort=name", "--benchmark-name=short"]
    code = pytest.main(suite_args(*table, *args))
    exits = {
        pytest.ExitCode.OK: EXIT_OK,
        pytest.ExitCode.TESTS_FAILED: EXIT_FAILED,
        pytest.ExitCode.INTERRUPTED: EXIT_INTERRUPTED,
        pytest.ExitCode.INTERNAL_ERROR: EXIT_INTERNAL,
        pytest.ExitCode.USAGE_ERROR: EXIT_BAD_INPUT,
        pytest.ExitCode.NO_TESTS_COLLECTED: EXIT_BAD_INPUT,
    }
    if code == pytest.ExitCode.NO_TESTS_COLLECTED:
        print("attrib-bench bench: no cell was selected (check --preset and any -k filter)", file=sys.stderr)
    return exits.get(code, EXIT_INTERNAL)


if __name__ == "__main__":
    sys.exit(main())
