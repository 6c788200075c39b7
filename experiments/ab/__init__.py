"""The ab proof and its outputs."""
