"""Atomic file writes: a reader (or a process killed mid-write) sees the old file or the new
one, never half of one. Each write goes to a unique temporary file in the same folder, so
two processes writing the same path (two shards training the same cached model) never
share a temporary file; the last rename wins and both leave a whole file. And the one way to
name a new folder for a run."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from attrib_core.formatting import timestamp


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success fsync it and rename it onto `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # name the file asked for, not the temporary one
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private (0600); a results file is not
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | Path, data: bytes | str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)


def atomic_save(path: str | Path, save: Callable[[Path], None]) -> None:
    """`save(tmp)` writes the file (torch.save, np.savez, ...); it lands at `path` atomically."""
    with atomic_path(path) as tmp:
        save(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def new_run_dir(results_dir: Path) -> Path:
    """results_dir/<UTC time>[-n]/, created here for one run or session. Created exclusively
    (mkdir of a folder that must not exist), so two sessions started in one second get two."""
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = timestamp(datetime.now(UTC))
    folder, n = results_dir / stamp, 1
    while True:
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            n += 1
            folder = results_dir / f"{stamp}-{n}"
