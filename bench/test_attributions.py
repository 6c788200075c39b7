"""`pytest bench` collects the packaged suite's one test: a benchmark per cell of the preset."""

from attrib_core.suite.test_cells import test_cell  # noqa: F401
