"""Fetch dataset files from a list of mirrors, checking each against its published md5.

Only the standard library is used (``urllib``), so downloading adds no dependency. A file is
streamed into a temporary file in the destination directory and renamed into place only after
its md5 matches: an interrupted, failed or corrupted download never leaves a half file that a
later load would mistake for the real one.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from .._checks import check_float, describe
from ._args import check_root
from .errors import DatasetCorruptedError, DatasetNotFoundError

__all__ = ["download_files", "md5sum"]

_logger = logging.getLogger(__name__)
_CHUNK_SIZE = 1 << 20


def download_files(
    root: str | os.PathLike[str],
    files: Mapping[str, str],
    mirrors: Sequence[str],
    *,
    timeout: float = 30.0,
) -> list[Path]:
    """Download every file of ``files`` that is not in ``root`` yet, trying ``mirrors`` in order.

    For each missing file the URL is the mirror (a base URL) followed by the file name. The first
    mirror that serves bytes with the expected md5 wins; a mirror that fails (unreachable, HTTP
    error, timeout, wrong md5) is skipped for the next one. Files already in ``root`` are left
    alone and not re-checked: the loaders verify them when they read them.

    Arguments:
        root: the directory to download into; created if needed.
        files: file name -> expected md5 (hex digest), e.g.
            ``{"t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"}``.
        mirrors: base URLs to try in order, e.g. ``["https://example.org/mnist/"]``.
        timeout: seconds to wait on a connection or a read before giving up on a mirror.

    Returns:
        The paths of all files of ``files`` in ``root``, in the order of ``files``.

    Raises:
        DatasetCorruptedError: every mirror failed for a file and at least one served it with a
            wrong md5 (the message lists each mirror with its failure).
        DatasetNotFoundError: every mirror failed for a file (unreachable, HTTP error, ...; the
            message lists each mirror with its failure).

    Example:
        >>> download_files("data/mnist", MNIST_MD5, MNIST_MIRRORS)  # doctest: +SKIP
    """
    root = check_root(root)
    timeout = check_float("timeout", timeout, minimum=0.0, exclusive_minimum=True)
    if isinstance(mirrors, str) or not all(isinstance(mirror, str) for mirror in mirrors):
        raise TypeError(f"mirrors must be a sequence of base URLs, got {describe(mirrors)}")
    if not mirrors:
        raise ValueError("mirrors must name at least one base URL, got an empty sequence")
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for filename, md5 in files.items():
        path = root / filename
        if not path.exists():
            _download_one(path, md5.lower(), mirrors, timeout)
        paths.append(path)
    return paths


def md5sum(path: str | os.PathLike[str]) -> str:
    """The md5 hex digest of the file at ``path``, read in chunks to bound memory."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def _download_one(path: Path, md5: str, mirrors: Sequence[str], timeout: float) -> None:
    # A hidden temporary file beside the target: os.replace within one directory is atomic, and
    # the name cannot be mistaken for the real file. Created outside the mirror loop so that a
    # local problem (a read-only directory) is reported as itself, not as a failure of each mirror.
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(handle)
    failures = []
    corrupt = False
    try:
        for mirror in mirrors:
            url = _join(mirror, path.name)
            _logger.info("downloading %s to %s", url, path)
            try:
                found = _fetch(url, temporary, timeout)
            except Exception as error:  # any failure at all means: try the next mirror
                failures.append(f"  {url}: {type(error).__name__}: {error}")
                continue
            if found == md5:
                os.replace(temporary, path)
                return
            corrupt = True
            failures.append(f"  {url}: md5 mismatch, expected {md5}, got {found}")
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
    kind = DatasetCorruptedError if corrupt else DatasetNotFoundError
    raise kind(
        f"could not download {path.name!r}; every mirror failed:\n"
        + "\n".join(failures)
        + f"\nDownload {path.name!r} by hand (from any mirror above, on a machine with internet "
        f"access) and place it in {str(path.parent)!r}."
    )


def _fetch(url: str, destination: str, timeout: float) -> str:
    """Stream ``url`` into the file ``destination`` (overwriting it); return the bytes' md5."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(destination, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as reply:
        while chunk := reply.read(_CHUNK_SIZE):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def _join(mirror: str, filename: str) -> str:
    return mirror.rstrip("/") + "/" + urllib.parse.quote(filename)
