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

Example:
    >>> data = load("mnist", "~/data", download=True, binarize="dynamic")
    >>> batch = data.train[torch.randint(len(data.train), (64,))]
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._checks import check_choice
from ._args import check_root
from .binarized_mnist import BINARIZED_MNIST_URL, load_binarized_mnist, read_amat
from .container import DynamicBinarization, ImageData, Images
from .digits import load_digits
from .download import download_files
from .errors import DatasetCorruptedError, DatasetNotFoundError
from .idx import read_idx, write_idx
from .mnist import (
    FASHION_MNIST_MD5,
    FASHION_MNIST_MIRRORS,
    MNIST_MD5,
    MNIST_MIRRORS,
    load_fashion_mnist,
    load_mnist,
)

__all__ = [
    "BINARIZED_MNIST_URL",
    "DATASETS",
    "DATA_ENV",
    "FASHION_MNIST_MD5",
    "FASHION_MNIST_MIRRORS",
    "MNIST_MD5",
    "MNIST_MIRRORS",
    "DatasetCorruptedError",
    "DatasetNotFoundError",
    "DynamicBinarization",
    "ImageData",
    "Images",
    "default_root",
    "download_files",
    "load",
    "load_binarized_mnist",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "read_amat",
    "read_idx",
    "write_idx",
]

#: Environment variable naming the data directory that :func:`load` uses when given no root.
DATA_ENV = "PYRO_VI_DATA"

# name -> (loader, whether it reads files from <root>/<name>)
_LOADERS: dict[str, tuple[Callable[..., ImageData], bool]] = {
    "digits": (load_digits, False),
    "mnist": (load_mnist, True),
    "fashion-mnist": (load_fashion_mnist, True),
    "binarized-mnist": (load_binarized_mnist, True),
}

#: The names :func:`load` accepts.
DATASETS: tuple[str, ...] = tuple(_LOADERS)


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
    name = check_choice("name", name, DATASETS)
    loader, reads_files = _LOADERS[name]
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
    if not reads_files:
        return loader(**options)
    directory = default_root() if root is None else check_root(root)
    return loader(directory / name, **options)
