"""This repository's benchmark suite entry (a thin conftest over attrib_core.suite), the A/B
runner, launchers and proofs."""
