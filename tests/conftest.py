"""Test configuration that imports nothing heavy, so tools that load it without torch
(`pytest-benchmark compare` run from the repository root, in a results-only install) work.

The harness's tests need the [bench] extra: without torch they are not collected, and the
`nox -s tests` session (which always has torch) turns "nothing collected" into an error.
"""

import importlib.util

if importlib.util.find_spec("torch") is None:
    collect_ignore_glob = ["test_*.py"]
else:
    from tests.torch_fixtures import *  # noqa: F403  (fixtures register by being in this module)
