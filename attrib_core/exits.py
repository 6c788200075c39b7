"""Exit status: one code per kind of outcome, the same for every command and through every door
(the `attrib-bench` console script, `python -m attrib_core`, and `python3 noxw.py -s ...`), so a
script or CI job can tell a slowdown from a typo from a bug without reading the output.

    0    all ok
    1    a regression, or a cell that failed (the results file records it)
    2    bad input: a preset, plug-in, revision, results file, name, path or command line;
         one line on stderr names the bad value and what is allowed
    3    an internal error, a bug in attrib-bench: one line naming the exception
         (ATTRIB_BENCH_TRACEBACK=1 prints the traceback too)
    130  interrupted (Ctrl-C); what was measured is kept
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130
TRACEBACK_ENV = "ATTRIB_BENCH_TRACEBACK"


class BadInputError(Exception):
    """The user's input is wrong: the command line prints the message as one line and exits 2."""
