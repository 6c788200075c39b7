"""Where derived artefacts (trained small models, fidelity references) are kept between runs."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def cache_dir() -> Path:
    """`$ATTRIB_BENCH_CACHE`, else `~/.cache/attrib-bench`; created on demand."""
    root = Path(os.environ.get("ATTRIB_BENCH_CACHE", Path.home() / ".cache" / "attrib-bench"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def stable_hash(obj: object, length: int = 12) -> str:
    """Short hash of a JSON-able object: the key that invalidates a cached artefact."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
