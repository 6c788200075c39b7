"""attrib-bench's attribution core: registries of Captum methods and workloads, one runner,
fidelity metrics, measurement, and the results schema.

Importing the package imports nothing heavy: `attrib_core.analysis.results` (used by the report and
compare sessions) needs pandas only, not torch.
"""

__version__ = "0.1.0"
