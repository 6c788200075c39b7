"""The durability proof and its outputs."""
