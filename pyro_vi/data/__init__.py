"""Datasets: each loader returns an :class:`ImageData` of float32 ``[N, C, H, W]`` images in [0, 1].

=================== ================================ ============================================
name                loader                           source
=================== ================================ ============================================
``digits``          :func:`load_digits`              scikit-learn's 8x8 digits, embedded (default)
``mnist``           :func:`load_mnist`               four IDX files; ``download=True`` fetches
``fashion-mnist``   :func:`load_fashion_mnist`       four IDX files; ``download=True`` fetches
``binarized-mnist`` :func:`load_binarized_mnist`     Larochelle & Murray's three ``.amat`` files
=================== ================================ ============================================

:func:`load` picks a loader by name and finds the files under one data directory, laid out as
``<root>/mnist``, ``<root>/fashion-mnist`` and ``<root>/binarized-mnist``.

A user's own data: :func:`load_path` reads a ``.npz``/``.npy`` file, a CSV/TSV/Parquet table or
a folder of PNG/JPEG images into an :class:`ArrayData` (tables ``[N, D]``, images
``[N, C, H, W]`` in [0, 1]) with test and validation splits (:mod:`pyro_vi.data.files`);
:func:`as_batchable` makes any map-style ``torch.utils.data.Dataset`` something
:func:`pyro_vi.train.fit` batches.

Example:
    >>> data = load("mnist", "~/data", download=True, binarize="dynamic")
    >>> batch = data.train[torch.randint(len(data.train), (64,))]
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._registry import Registry
from ._args import check_root
from .array_data import ArrayData
from .arrays import ARRAY_KEYS
from .batchable import DatasetColumn, as_batchable
from .binarized_mnist import BINARIZED_MNIST_URL, load_binarized_mnist, read_amat
from .container import DynamicBinarization, ImageData, Images
from .digits import load_digits
from .download import download_files
from .errors import DatasetCorruptedError, DatasetNotFoundError, MissingDependencyError
from .files import load_path
from .idx import read_idx, write_idx
from .mnist import (
    FASHION_MNIST_MD5,
    FASHION_MNIST_MIRRORS,
    MNIST_MD5,
    MNIST_MIRRORS,
    load_fashion_mnist,
    load_mnist,
)
from .splits import split_indices
from .values import VALUE_KINDS, value_kind

__all__ = [
    "ARRAY_KEYS",
    "BINARIZED_MNIST_URL",
    "DATASETS",
    "DATA_ENV",
    "FASHION_MNIST_MD5",
    "FASHION_MNIST_MIRRORS",
    "MNIST_MD5",
    "MNIST_MIRRORS",
    "VALUE_KINDS",
    "ArrayData",
    "Dataset",
    "DatasetColumn",
    "DatasetCorruptedError",
    "DatasetNotFoundError",
    "DynamicBinarization",
    "ImageData",
    "Images",
    "MissingDependencyError",
    "as_batchable",
    "default_root",
    "download_files",
    "load",
    "load_binarized_mnist",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "load_path",
    "read_amat",
    "read_idx",
    "split_indices",
    "value_kind",
    "write_idx",
]

#: Environment variable naming the data directory that :func:`load` uses when given no root.
DATA_ENV = "PYRO_VI_DATA"


@dataclass(frozen=True)
class Dataset:
    """A dataset :func:`load` knows by name, and the facts about it that a spec checks.

    Attributes:
        loader: Returns the :class:`ImageData`; called as ``loader(<root>/<name>, **options)``
            when ``reads_files``, else ``loader(**options)``.
        reads_files: Whether it reads files from a folder under the data directory.
        grey_levels: How many values a pixel takes (k / (levels - 1), k = 0..levels - 1).
        labelled: Whether it has class labels (a conditional model needs them).
    """

    loader: Callable[..., ImageData]
    reads_files: bool
    grey_levels: int
    labelled: bool


#: Every dataset by name, in the order the docs list them; ``list(DATASETS)`` gives the names.
DATASETS: Registry[Dataset] = Registry("dataset")
DATASETS.register("digits", Dataset(load_digits, reads_files=False, grey_levels=17, labelled=True))
DATASETS.register("mnist", Dataset(load_mnist, reads_files=True, grey_levels=256, labelled=True))
DATASETS.register(
    "fashion-mnist", Dataset(load_fashion_mnist, reads_files=True, grey_levels=256, labelled=True)
)
DATASETS.register(
    "binarized-mnist",
    Dataset(load_binarized_mnist, reads_files=True, grey_levels=2, labelled=False),
)


def default_root() -> Path:
    """The data directory used when none is given: ``$PYRO_VI_DATA``, else ``~/.cache/pyro_vi``.

    Example:
        >>> default_root()  # doctest: +SKIP
        PosixPath('/home/me/.cache/pyro_vi')
    """
    configured = os.environ.get(DATA_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "pyro_vi"


def load(name: str, root: str | os.PathLike[str] | None = None, **options: Any) -> ImageData:
    """Load the dataset called ``name`` from its folder under the data directory ``root``.

    Arguments:
        name: one of :data:`DATASETS`.
        root: the data directory; the files of ``"mnist"`` are read from ``<root>/mnist``, and
            likewise for ``"fashion-mnist"`` and ``"binarized-mnist"``. ``None`` means
            :func:`default_root`. Ignored by ``"digits"``, which needs no files.
        options: keyword arguments of that dataset's loader, e.g. ``download=True`` or
            ``binarize="dynamic"`` for MNIST, ``seed=1`` for digits.

    Returns:
        The dataset, as the loader returns it.

    Example:
        >>> data = load("mnist", "/data", binarize="dynamic")  # reads /data/mnist/*.gz
    """
    dataset = DATASETS[name]
    loader = dataset.loader
    allowed = [
        parameter.name
        for parameter in inspect.signature(loader).parameters.values()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(
            f"load({name!r}) got unknown option(s) {unknown}; {loader.__name__} accepts {allowed}"
        )
    if not dataset.reads_files:
        return loader(**options)
    directory = default_root() if root is None else check_root(root)
    return loader(directory / name, **options)
