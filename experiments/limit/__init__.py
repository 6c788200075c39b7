"""The limit proof and its outputs."""
