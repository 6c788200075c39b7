"""`pytest bench` in this repository runs the packaged suite (attrib_core/suite)."""

pytest_plugins = ["attrib_core.suite.plugin"]
