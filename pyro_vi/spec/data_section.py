"""The ``[data]`` section of a spec: its keys, and the checks that need no file read.

The data is either a built-in dataset by name or a user's own file or folder by path::

    [data]                          [data]
    name = "mnist"                  path = "cells.npz"     # .npz/.npy, .csv/.tsv(.gz), .parquet,
    binarize = "dynamic"            validation = 0.1       #   or a folder of PNG/JPEG images
    validation = 0.1                test_fraction = 0.2    # when the file has no test split

``name`` and ``path`` exclude each other. The keys that read a path's content (``test_path``,
``test_fraction``, ``image_size``, ``color``, ``label_column``, ``validation_path``) need
``path``; ``validation`` (a fraction of the training set) works with both. A relative path is
read from ``data.dir`` when set, else from the current directory. With ``path``, ``binarize``
defaults to ``"none"``: a user's counts or real values are not grey levels to binarize.

What a path holds (its shape, its values against the likelihood, its labels) is checked when it
is read, by :func:`pyro_vi.spec.data_loading.load_data`, still before anything is trained.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyro_vi import data as datasets
from pyro_vi.spec.schema import Field, SpecError, check_keys, resolve_table

if TYPE_CHECKING:
    from pyro_vi.spec.resolve import Spec

__all__ = [
    "DATA",
    "DATA_LEVELS",
    "PATH_KEYS",
    "check_data_section",
    "check_early_stopping",
    "no_validation_split",
    "resolve_data",
]

#: Grey levels of each dataset's pixels: values k / (levels - 1).
DATA_LEVELS = {name: dataset.grey_levels for name, dataset in datasets.DATASETS.items()}

DATA = {
    "name": Field("str", "digits", "the dataset", choices=tuple(datasets.DATASETS)),
    "dir": Field(
        "str",
        None,
        "folder holding <dir>/<name>/ (default: $PYRO_VI_DATA), and relative paths (default: "
        "the current directory)",
    ),
    "binarize": Field(
        "str", "dynamic", "'dynamic': a fresh binary draw each epoch", choices=("dynamic", "none")
    ),
    "limit": Field("int", None, "train on the first N training images only", minimum=1),
    "test_limit": Field("int", None, "evaluate on the first N test images only", minimum=1),
    "path": Field(
        "str",
        None,
        "your data instead of a named dataset: .npz/.npy, .csv/.tsv(.gz)/.parquet, or a folder "
        "of PNG/JPEG images",
    ),
    "test_path": Field("str", None, "a file or folder holding the test set (with path)"),
    "test_fraction": Field(
        "float",
        None,
        "share of a path's datapoints held out for testing when it has no test set (default 0.2)",
        minimum=0.0,
        exclusive=True,
        maximum=1.0,
        exclusive_maximum=True,
    ),
    "validation": Field(
        "float",
        None,
        "share of the training set held out for validation (never trained on; its bound is "
        "logged every epoch, keeps best.pt and drives training.early_stopping)",
        minimum=0.0,
        exclusive=True,
        maximum=1.0,
        exclusive_maximum=True,
    ),
    "validation_path": Field("str", None, "a file or folder holding the validation set"),
    "seed": Field("int", 0, "seeds the random test and validation splits", minimum=0),
    "image_size": Field(
        "ints",
        None,
        "[height, width] every image is resized to (image folders)",
        minimum=1,
        length=2,
    ),
    "color": Field("str", None, "images as 'rgb' or 'grey' (default: as stored)", ("rgb", "grey")),
    "label_column": Field("str", None, "the column of integer class labels (tables)"),
}

#: The keys that read the content of ``data.path`` and mean nothing without it.
PATH_KEYS = ("test_path", "test_fraction", "validation_path", "image_size", "color", "label_column")


def resolve_data(table: Any) -> dict[str, Any]:
    """Validate the ``[data]`` table and fill in its defaults.

    Arguments:
        table: The section as written (a mapping; keys may be missing).

    Returns:
        Every key of :data:`DATA`; with ``path``, ``name`` is ``None`` and ``binarize``
        defaults to ``"none"``.

    Raises:
        SpecError: an unknown key or bad value, ``name`` with ``path``, a path-only key
            without ``path``, or two validation sources.
    """
    table = check_keys("data", table, DATA)
    if "path" in table and "name" in table:
        raise SpecError(
            f"invalid spec: data.name = {table['name']!r} and data.path = {table['path']!r}; "
            "give one: name for a built-in dataset, path for your own file or folder"
        )
    data = resolve_table("data", table, DATA)
    if data["path"] is not None:
        data["name"] = None
        if "binarize" not in table:
            data["binarize"] = "none"
    else:
        given = [key for key in PATH_KEYS if data[key] is not None]
        if given:
            raise SpecError(
                f"invalid spec: data.{given[0]} = {data[given[0]]!r} needs data.path (your own "
                f"file or folder); data.name = {data['name']!r} is a built-in dataset, whose "
                "splits are its own (data.validation = <fraction> holds out a validation set)"
            )
    if data["validation"] is not None and data["validation_path"] is not None:
        raise SpecError(
            f"invalid spec: data.validation = {data['validation']} and data.validation_path = "
            f"{data['validation_path']!r}; give one validation set: a fraction or a file"
        )
    return data


def no_validation_split(spec: Spec) -> SpecError:
    """The error for ``training.early_stopping`` when the data has no validation split."""
    patience = spec.training["early_stopping"]
    if spec.data["path"] is None:
        ways = "data.validation = 0.1 (the share of the training set held out)"
    else:
        ways = (
            "data.validation = 0.1 (the share of the training set held out), "
            "data.validation_path = 'validation.npz', or a 'validation' array in "
            f"{spec.data['path']!r}"
        )
    return SpecError(
        f"invalid spec: training.early_stopping = {patience} stops on the validation bound, but "
        f"[data] holds out no validation split; add one: {ways}, or remove "
        "training.early_stopping"
    )


def check_early_stopping(spec: Spec) -> None:
    """``training.early_stopping`` needs a validation split. A named dataset's is decided by the
    spec alone; a path's file may hold its own (a ``validation`` array), which
    :func:`~pyro_vi.spec.data_loading.load_data` checks when it reads it."""
    if spec.training.get("early_stopping") is None:
        return
    data = spec.data
    if data["validation"] is None and data["validation_path"] is None and data["path"] is None:
        raise no_validation_split(spec)


def check_data_section(spec: Spec) -> None:
    """The named dataset against its binarization and the likelihood (a path's values are
    checked when it is read)."""
    data, likelihood = spec.data, spec.model["likelihood"]
    if data["name"] is None:
        return
    stored_binary = DATA_LEVELS[data["name"]] == 2
    binary = stored_binary or data["binarize"] == "dynamic"
    levels = 2 if binary else DATA_LEVELS[data["name"]]
    if stored_binary and data["binarize"] == "dynamic":
        raise SpecError(
            f"invalid spec: data.binarize = 'dynamic' with data.name = {data['name']!r}; that "
            "dataset is already a fixed binarization: use data.binarize = 'none'"
        )
    if likelihood["name"] == "bernoulli" and not binary:
        raise SpecError(
            f"invalid spec: model.likelihood = 'bernoulli' needs binary data, but data.name = "
            f"{data['name']!r} with data.binarize = 'none' has grey levels in [0, 1]; allowed: "
            "data.binarize = 'dynamic', or a likelihood for grey levels ('continuous_bernoulli', "
            "'gaussian', 'categorical', or 'bernoulli_grey' for the non-normalized cross-entropy)"
        )
    if likelihood["name"] in ("poisson", "negative_binomial") and not binary:
        raise SpecError(
            f"invalid spec: model.likelihood = {likelihood['name']!r} needs counts (integers "
            f">= 0), but data.name = {data['name']!r} with data.binarize = 'none' has grey "
            "levels in [0, 1]; allowed: a likelihood for grey levels ('continuous_bernoulli', "
            "'gaussian', 'categorical', 'bernoulli_grey')"
        )
    if likelihood["name"] == "categorical" and (likelihood["num_levels"] - 1) % (levels - 1):
        raise SpecError(
            f"invalid spec: model.likelihood.num_levels = {likelihood['num_levels']} cannot "
            f"represent the {levels} grey levels of this data (values k/{levels - 1}); allowed: "
            f"num_levels = {levels} (or any n with n - 1 a multiple of {levels - 1})"
        )
