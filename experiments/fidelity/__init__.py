"""The fidelity proof and its outputs."""
