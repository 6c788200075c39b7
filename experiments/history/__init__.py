"""The history proof and its outputs."""
