"""All-or-nothing output folders: files are written to a scratch folder beside the target and
moved in only when everything succeeded, so a failure never leaves a half-written report.
Files already in the target that the new output does not replace are left alone."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged(out: Path) -> Iterator[Path]:
    """Yield a scratch folder; on success move its files into `out`, on error discard them."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:  # name the folder asked for, not the scratch one
        raise OSError(exc.errno, exc.strerror, str(out)) from exc
    try:
        yield scratch
        out.mkdir(parents=True, exist_ok=True)
        for item in sorted(scratch.iterdir()):
            os.replace(item, out / item.name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
