"""`attrib-bench COMMAND [ARGS...]`: the console script. It dispatches to the command's module
(attrib_core/commands/__init__.py lists them); `attrib-bench COMMAND --help` is that module's own.

Whatever a command raises ends here as one line and an exit status of attrib_core/exits.py:
bad input (BadInputError, or a path the file system refuses) 2, anything unexpected 3, Ctrl-C 130.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Sequence

from attrib_core.commands import COMMANDS
from attrib_core.exits import (
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    TRACEBACK_ENV,
    BadInputError,
)


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items()]
    return "usage: attrib-bench COMMAND [ARGS...]   (attrib-bench COMMAND --help for its options)\n\ncommands:\n" + (
        "\n".join(lines)
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return EXIT_OK if argv else EXIT_BAD_INPUT
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"attrib-bench: unknown command {name!r}; valid: {', '.join(COMMANDS)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return run(name, rest)
    except KeyboardInterrupt:
        print(f"attrib-bench {name}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # every other failure: one line and its exit status
        return failed(name, exc)


def run(name: str, argv: list[str]) -> int:
    command = COMMANDS[name]
    try:
        module = importlib.import_module(command.module)
    except ImportError as exc:
        if not command.needs_torch:
            raise
        print(
            f"attrib-bench {name}: needs the bench extra ({exc.name} is missing): pip install 'attrib-bench[bench]'",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    return module.main(argv)


def failed(name: str, exc: Exception) -> int:
    """One line on stderr for what `name` raised, and its exit status: bad input 2, else 3."""
    if isinstance(exc, BadInputError):
        print(f"attrib-bench {name}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if isinstance(exc, OSError) and exc.filename is not None:  # a path the user gave, or their disk or rights
        paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
        print(f"attrib-bench {name}: error: {paths}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if os.environ.get(TRACEBACK_ENV):
        traceback.print_exception(exc)
    print(
        f"attrib-bench {name}: internal error: {type(exc).__name__}: {exc} (a bug; {TRACEBACK_ENV}=1 shows where)",
        file=sys.stderr,
    )
    return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
