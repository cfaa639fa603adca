"""A user's own data from a path: a ``.npz``/``.npy`` file, a CSV/TSV/Parquet table, or a folder
of images, split into train, test and (optionally) validation.

=========================  =====================================  ===============================
path                       read by                                datapoints
=========================  =====================================  ===============================
``cells.npz``, ``x.npy``   :func:`~pyro_vi.data.arrays.read_arrays`  ``[N, D]`` or ``[N, C, H, W]``
``cells.csv(.gz)``, .tsv   :func:`~pyro_vi.data.tables.read_table`   ``[N, D]``
``cells.parquet``          the same, with pyarrow                    ``[N, D]``
a folder                   :func:`~pyro_vi.data.image_folder.read_image_folder`  ``[N, C, H, W]``
=========================  =====================================  ===============================

The test split is the file's own (``train``/``test`` keys of a ``.npz``), a second file
(``test_path``), or a random ``test_fraction`` of the datapoints; the validation split likewise
the file's ``validation`` key, a file (``validation_path``) or a random ``validation`` fraction of
the training datapoints. Random splits are drawn from ``seed`` and never overlap; an explicit
validation file may not repeat a training datapoint.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from .._checks import check_float, check_int, describe
from .array_data import ArrayData
from .arrays import ARRAY_SUFFIXES, read_arrays
from .errors import DatasetNotFoundError
from .image_folder import read_image_folder
from .splits import VALIDATION_STREAM, check_disjoint, split_indices
from .tables import PARQUET_SUFFIXES, TEXT_SUFFIXES, read_table, table_suffix

__all__ = ["DEFAULT_TEST_FRACTION", "load_path", "source_kind"]

#: The share of datapoints held out for testing when a path has no test split of its own.
DEFAULT_TEST_FRACTION = 0.2

Split = tuple[torch.Tensor, torch.Tensor | None]


def source_kind(path: Path, name: str = "path") -> str:
    """What ``path`` holds: ``"images"`` (a folder), ``"arrays"`` (.npz/.npy) or ``"table"``.

    Raises:
        DatasetNotFoundError: nothing exists at ``path``.
        ValueError: a file whose suffix no reader takes.
    """
    if path.is_dir():
        return "images"
    if not path.exists():
        raise DatasetNotFoundError(
            f"{name} = {str(path)!r}: no such file or folder (looked for {str(path.absolute())!r})"
        )
    if path.suffix.lower() in ARRAY_SUFFIXES:
        return "arrays"
    if table_suffix(path) is not None:
        return "table"
    allowed = [*ARRAY_SUFFIXES, *TEXT_SUFFIXES, *PARQUET_SUFFIXES]
    raise ValueError(
        f"{name} = {str(path)!r}: unknown file type {''.join(path.suffixes) or '(no suffix)'!r}; "
        f"allowed: a file ending in {allowed} (text tables may end in .gz) or a folder of images"
    )


def load_path(
    path: str | os.PathLike[str],
    *,
    test_path: str | os.PathLike[str] | None = None,
    validation_path: str | os.PathLike[str] | None = None,
    test_fraction: float | None = None,
    validation: float | None = None,
    seed: int = 0,
    image_size: Sequence[int] | None = None,
    color: str | None = None,
    label_column: str | None = None,
) -> ArrayData:
    """Read a user's data from ``path`` and split it into train, test and validation.

    Arguments:
        path: A ``.npz``/``.npy`` file, a ``.csv``/``.tsv``/``.parquet`` table (text may be
            gzipped) or a folder of PNG/JPEG images (see :mod:`pyro_vi.data.image_folder`).
        test_path: A file or folder holding the test set, in a form ``path`` may take.
        validation_path: A file or folder holding the validation set.
        test_fraction: The share of datapoints held out at random for testing when neither
            ``path`` nor ``test_path`` gives a test set (default
            :data:`DEFAULT_TEST_FRACTION`).
        validation: The share of the training datapoints held out at random for validation.
        seed: Seeds the random splits; the same seed always gives the same splits.
        image_size: ``[height, width]`` to resize images to (image folders only).
        color: ``"rgb"`` or ``"grey"`` (image folders only; default: as stored).
        label_column: The column of integer class labels (tables only).

    Returns:
        An :class:`~pyro_vi.data.ArrayData` named after ``path``.

    Raises:
        DatasetNotFoundError: a path that does not exist, or a folder without images.
        DatasetCorruptedError: a file that cannot be read.
        MissingDependencyError: a Parquet file without pyarrow.
        ValueError: wrong shapes, NaN or infinite values, an empty or overlapping split, two
            sources for one split, an option the source does not take.
        TypeError: a non-numeric dtype, or an argument of the wrong type.

    Example:
        >>> numpy.savez("cells.npz", x=counts)                  # counts: [N, D] integers
        >>> data = load_path("cells.npz", validation=0.1)       # 72% / 8% / 20% of N
        >>> data.train.shape[1:], len(data.valid) > 0
        (torch.Size([D]), True)
    """
    options = _Options(image_size, color, label_column)
    seed = check_int("seed", seed, minimum=0)
    main_path = _as_path("path", path)
    test_file = None if test_path is None else _as_path("test_path", test_path)
    valid_file = None if validation_path is None else _as_path("validation_path", validation_path)
    _check_distinct({"path": main_path, "test_path": test_file, "validation_path": valid_file})

    main = _read(main_path, "path", options)
    train, test = _train_and_test(main_path, main, test_file, test_fraction, seed, options)
    valid = _validation(main_path, main, valid_file, validation, options)
    if valid is None and validation is not None:
        train, valid = _hold_out(train, validation, seed, "validation", stream=VALIDATION_STREAM)
    elif valid is not None:
        where = _where(main_path, valid_file)
        check_disjoint(train[0], valid[0], name=f"the validation set ({where})")
    _check_labels_everywhere({"train": train, "test": test, "valid": valid})
    return ArrayData(
        main_path.name,
        train[0],
        test[0],
        train_labels=train[1],
        test_labels=test[1],
        valid=None if valid is None else valid[0],
        valid_labels=None if valid is None else valid[1],
    )


def _train_and_test(
    main_path: Path,
    main: dict[str, Split],
    test_file: Path | None,
    test_fraction: float | None,
    seed: int,
    options: _Options,
) -> tuple[Split, Split]:
    """The training and test sets: the file's own, a second file's, or a random split."""
    train = main.get("x", main.get("train"))
    test = main.get("test")
    if test is not None and test_file is not None:
        raise ValueError(
            f"test_path = {str(test_file)!r}, but {str(main_path)!r} has its own 'test' split; "
            "give one test set"
        )
    if test is not None or test_file is not None:
        if test_fraction is not None:
            given = (
                "test_path" if test_file is not None else f"the key 'test' of {str(main_path)!r}"
            )
            raise ValueError(
                f"test_fraction = {test_fraction}, but the test set is given ({given}); drop "
                "test_fraction"
            )
        return train, test if test is not None else _read_one(test_file, "test_path", options)
    fraction = DEFAULT_TEST_FRACTION if test_fraction is None else test_fraction
    return _hold_out(train, fraction, seed, "test_fraction", stream=0)


#: Each reading option: the source kind it applies to, and that kind in words.
_APPLIES = {
    "image_size": ("images", "image folders"),
    "color": ("images", "image folders"),
    "label_column": ("table", "tables (CSV, TSV, Parquet)"),
}
_KIND_WORDS = {"images": "a folder", "arrays": "a NumPy file", "table": "a table"}


class _Options:
    """The reading options, and the check that each one given applies to the source at hand."""

    def __init__(self, image_size: Sequence[int] | None, color: str | None, label: str | None):
        if label is not None and not isinstance(label, str):
            raise TypeError(f"label_column must be a column name (str), got {describe(label)}")
        self.image_size, self.color, self.label_column = image_size, color, label

    def for_kind(self, kind: str, path: Path) -> dict[str, object]:
        chosen = {}
        for key, (wanted, where) in _APPLIES.items():
            value = getattr(self, key)
            if value is None:
                continue
            if kind != wanted:
                raise ValueError(
                    f"{key} = {value!r} applies to {where} only, and {str(path)!r} is "
                    f"{_KIND_WORDS[kind]}"
                )
            chosen[key] = value
        return chosen


def _as_path(name: str, value: object) -> Path:
    if not isinstance(value, str | os.PathLike):
        raise TypeError(
            f"{name} must be a file or folder path (str or Path), got {describe(value)}"
        )
    return Path(value).expanduser()


def _read(path: Path, name: str, options: _Options) -> dict[str, Split]:
    """The splits at ``path``, by key (``"x"``, or a ``.npz``'s ``"train"``, ``"test"``, ...)."""
    kind = source_kind(path, name)
    read_options = options.for_kind(kind, path)
    if kind == "arrays":
        return read_arrays(path)
    if kind == "table":
        return {"x": read_table(path, **read_options)}
    return {"x": read_image_folder(path, **read_options)}


def _read_one(path: Path, name: str, options: _Options) -> Split:
    """The one set of datapoints at ``path`` (a held-out file has no splits of its own)."""
    splits = _read(path, name, options)
    if "x" not in splits:
        raise ValueError(
            f"{name} = {str(path)!r} holds the split keys {sorted(splits)}; a {name} file holds "
            "one set, under the key x (labels: y)"
        )
    return splits["x"]


def _check_distinct(paths: dict[str, Path | None]) -> None:
    seen: dict[Path, str] = {}
    for name, path in paths.items():
        if path is None:
            continue
        resolved = path.resolve()
        if resolved in seen:
            raise ValueError(
                f"{name} and {seen[resolved]} are the same file {str(path)!r}: a held-out split "
                "must be other data than the training set"
            )
        seen[resolved] = name


def _hold_out(
    split: Split, fraction: float, seed: int, name: str, stream: int
) -> tuple[Split, Split]:
    """``split`` cut at random into the rest and a held-out ``fraction``."""
    fraction = check_float(name, fraction, minimum=0.0, maximum=1.0, exclusive_minimum=True)
    values, labels = split
    rest, held = split_indices(len(values), fraction, seed, name=name, stream=stream)

    def take(index: torch.Tensor) -> Split:
        return values[index], None if labels is None else labels[index]

    return take(rest), take(held)


def _validation(
    main_path: Path,
    main: dict[str, Split],
    valid_file: Path | None,
    fraction: float | None,
    options: _Options,
) -> Split | None:
    """The explicit validation set, if one is given (at most one source of it)."""
    sources = [
        name
        for name, given in (
            (f"the key 'validation' of {str(main_path)!r}", "validation" in main),
            ("validation_path", valid_file is not None),
            ("validation (a fraction)", fraction is not None),
        )
        if given
    ]
    if len(sources) > 1:
        raise ValueError(
            f"the validation set is given twice, by {sources[0]} and by {sources[1]}; give one"
        )
    if "validation" in main:
        return main["validation"]
    if valid_file is not None:
        return _read_one(valid_file, "validation_path", options)
    return None


def _where(main_path: Path, valid_file: Path | None) -> str:
    if valid_file is not None:
        return f"validation_path = {str(valid_file)!r}"
    return f"the key 'validation' of {str(main_path)!r}"


def _check_labels_everywhere(splits: dict[str, Split | None]) -> None:
    present = {name: split for name, split in splits.items() if split is not None}
    labelled = [name for name, (_, labels) in present.items() if labels is not None]
    if labelled and len(labelled) != len(present):
        unlabelled = [name for name in present if name not in labelled]
        raise ValueError(
            f"the {labelled} split(s) have labels but the {unlabelled} split(s) do not; give "
            "labels for every split or for none"
        )
