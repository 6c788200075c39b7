"""Model definitions and their (small, deterministic) training recipes."""
