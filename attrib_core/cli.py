"""`attrib-bench COMMAND [ARGS...]`: the console script. It dispatches to the command's module
(attrib_core/commands/__init__.py lists them); `attrib-bench COMMAND --help` is that module's own."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from attrib_core.commands import COMMANDS
from attrib_core.exits import EXIT_BAD_INPUT, EXIT_OK


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
    return module.main(rest)


if __name__ == "__main__":
    sys.exit(main())
