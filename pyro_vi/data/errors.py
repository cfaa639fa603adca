"""The two errors a dataset loader raises, and the messages that go with them.

A user who hits one of these should learn from the message alone what is wrong, which file it is
about and what to do next, so both classes are built through helpers that always say those things.
They subclass the built-in errors a caller would already catch (``FileNotFoundError`` for data that
is not there, ``ValueError`` for data that is there but wrong).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "DatasetCorruptedError",
    "DatasetNotFoundError",
    "MissingDependencyError",
    "corrupted",
    "not_found",
]


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's directory or one of its files does not exist (or could not be downloaded).

    The message lists the files expected, the directory searched and where to get them.
    """


class DatasetCorruptedError(ValueError):
    """A dataset file exists but is not what it should be.

    Raised for a wrong checksum, a bad IDX header, a truncated or over-long payload, an unreadable
    gzip stream, malformed text or unexpected counts. The message names the file, what was
    expected, what was found, and suggests deleting the file and downloading it again.
    """


class MissingDependencyError(ImportError, ValueError):
    """Reading a file needs an optional package that is not installed (pyarrow for Parquet).

    The message names the package and the command that installs it. An ``ImportError`` for what
    it is, and a ``ValueError`` so that the command line reports it as bad input, in one line.
    """


def not_found(
    dataset: str,
    root: Path,
    expected: Iterable[str],
    source: str,
    *,
    can_download: bool,
) -> DatasetNotFoundError:
    """Build the error for files of ``dataset`` missing from directory ``root``.

    Arguments:
        dataset: the dataset's name, as the user knows it (``"mnist"``).
        root: the directory that should hold the files.
        expected: names of all the files the directory should hold.
        source: where a user gets the files (a URL, or a short sentence).
        can_download: whether the loader has ``download=True`` to fetch them.

    Returns:
        The error, for the caller to raise.
    """
    expected = list(expected)
    if root.is_dir():
        missing = [name for name in expected if not (root / name).is_file()]
        problem = f"directory {str(root)!r} lacks {', '.join(missing)}"
    else:
        problem = f"directory {str(root)!r} does not exist"
    fetch = ", or pass download=True to fetch them automatically" if can_download else ""
    message = (
        f"{dataset} data not found: {problem}.\n"
        f"It must directly hold these files: {', '.join(expected)}.\n"
        f"Get them from {source} and place them in {str(root)!r}{fetch}."
    )
    # A common slip: passing the data directory that holds <dataset>/ rather than <dataset>/.
    nested = root / dataset
    if all((nested / name).is_file() for name in expected):
        message += f"\nThe files are in {str(nested)!r}: pass that directory instead."
    # The other slip: load(name, root) given the dataset's own folder, which it extends by name.
    elif root.name == dataset and all((root.parent / name).is_file() for name in expected):
        message += (
            f"\nThe files are in {str(root.parent)!r}: load() reads <data directory>/{dataset}, "
            f"so give it {str(root.parent.parent)!r} (a loader such as load_mnist takes "
            f"{str(root.parent)!r} itself)."
        )
    return DatasetNotFoundError(message)


def corrupted(path: Path, problem: str, *, hint: str | None = None) -> DatasetCorruptedError:
    """Build the error for a dataset file at ``path`` that is not what it should be.

    Arguments:
        path: the offending file.
        problem: what was expected and what was found, as one sentence.
        hint: what to do about it; by default, delete the file and download it again.

    Returns:
        The error, for the caller to raise.
    """
    if hint is None:
        hint = f"Delete {str(path)!r} and download it again."
    return DatasetCorruptedError(f"corrupted dataset file {str(path)!r}: {problem}\n{hint}")
