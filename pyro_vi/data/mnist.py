"""MNIST and Fashion-MNIST from their four standard IDX files, optionally downloaded.

Both datasets ship as the same four gzipped IDX files (60000 training and 10000 test images of
28x28 uint8 pixels, with uint8 labels 0..9), so one implementation, :func:`_load_idx_dataset`,
serves both; the public loaders only pick the file table and the mirrors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._checks import describe
from ._args import check_bool, check_root
from .container import DynamicBinarization, ImageData
from .download import download_files, md5sum
from .errors import DatasetNotFoundError, corrupted, not_found
from .idx import read_idx

__all__ = [
    "BINARIZE_OPTIONS",
    "FASHION_MNIST_MD5",
    "FASHION_MNIST_MIRRORS",
    "MNIST_MD5",
    "MNIST_MIRRORS",
    "TEST_IMAGES",
    "TEST_LABELS",
    "TRAIN_IMAGES",
    "TRAIN_LABELS",
    "load_fashion_mnist",
    "load_mnist",
]

#: The standard file names, the same for MNIST and Fashion-MNIST.
TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"

#: Published md5 of each MNIST file (as listed by torchvision and other common loaders).
MNIST_MD5 = {
    TRAIN_IMAGES: "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    TRAIN_LABELS: "d53e105ee54ea40749a09fcbcd1e9432",
    TEST_IMAGES: "9fb629c4189551a2d022fa330f9573f3",
    TEST_LABELS: "ec29112dd5afa0611ce80d1b7f02629c",
}
#: Published md5 of each Fashion-MNIST file (from zalandoresearch/fashion-mnist).
FASHION_MNIST_MD5 = {
    TRAIN_IMAGES: "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    TRAIN_LABELS: "25c81989df183df01b3e8a0aad5dffbe",
    TEST_IMAGES: "bef4ecab320f06d8554ea6380940ec79",
    TEST_LABELS: "bb300cfdad3c16e7a12a480ee83cd310",
}
#: Where the files are fetched from, in order (yann.lecun.com no longer serves them reliably).
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
FASHION_MNIST_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)

#: Allowed values of ``binarize``: grey levels, or a fresh Bernoulli draw on every indexing.
BINARIZE_OPTIONS = (None, "dynamic")

_NUM_TRAIN, _NUM_TEST, _SIDE, _NUM_CLASSES = 60000, 10000, 28, 10


@dataclass(frozen=True)
class _IdxDataset:
    name: str
    md5: dict[str, str]
    mirrors: tuple[str, ...]


_MNIST = _IdxDataset("mnist", MNIST_MD5, MNIST_MIRRORS)
_FASHION_MNIST = _IdxDataset("fashion-mnist", FASHION_MNIST_MD5, FASHION_MNIST_MIRRORS)


def load_mnist(
    root: str | os.PathLike[str],
    *,
    download: bool = False,
    binarize: str | None = None,
    verify: bool = True,
) -> ImageData:
    """Load MNIST (LeCun et al.) from the four standard gzipped IDX files in ``root``.

    ``binarize="dynamic"`` gives the "dynamically binarized MNIST" of the IWAE paper: every
    indexing of the train or test set draws a fresh Bernoulli sample of each pixel. Grey levels
    scored with a Bernoulli likelihood (``binarize=None``) are a different benchmark.

    Arguments:
        root: the directory that directly holds ``train-images-idx3-ubyte.gz``,
            ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz`` and
            ``t10k-labels-idx1-ubyte.gz``.
        download: fetch the files that are missing from ``root`` from the public mirrors
            (:data:`MNIST_MIRRORS`), checking their md5.
        binarize: ``None`` for grey levels, ``"dynamic"`` for a
            :class:`~pyro_vi.data.DynamicBinarization` of train and test.
        verify: check every file's md5 against the published value and the counts against
            60000 train / 10000 test images; costs about 0.1 s. Turn off for a modified copy.

    Returns:
        An :class:`ImageData` named ``"mnist"``: float32 images ``[N, 1, 28, 28]`` in
        ``[0, 1]`` (pixel / 255), int64 labels 0..9, no validation split.

    Raises:
        DatasetNotFoundError: ``root`` or a file is missing and ``download`` is off, or no
            mirror could be reached.
        DatasetCorruptedError: a file has the wrong md5, header, length or counts, or every
            mirror served a file with the wrong md5.

    Example:
        >>> data = load_mnist("data/mnist", download=True, binarize="dynamic")
        >>> batch = data.train[torch.arange(64)]  # a fresh binarization of 64 images
    """
    return _load_idx_dataset(_MNIST, root, download=download, binarize=binarize, verify=verify)


def load_fashion_mnist(
    root: str | os.PathLike[str],
    *,
    download: bool = False,
    binarize: str | None = None,
    verify: bool = True,
) -> ImageData:
    """Load Fashion-MNIST (Xiao et al. 2017) from its four gzipped IDX files in ``root``.

    The same file names, format and arguments as :func:`load_mnist`; the ten classes are
    clothing items, and the files come from :data:`FASHION_MNIST_MIRRORS`.

    Returns:
        An :class:`ImageData` named ``"fashion-mnist"``, shaped as for :func:`load_mnist`.

    Example:
        >>> data = load_fashion_mnist("data/fashion-mnist", download=True)
    """
    return _load_idx_dataset(
        _FASHION_MNIST, root, download=download, binarize=binarize, verify=verify
    )


def _load_idx_dataset(
    dataset: _IdxDataset,
    root: str | os.PathLike[str],
    *,
    download: bool,
    binarize: str | None,
    verify: bool,
) -> ImageData:
    root = check_root(root)
    _check_binarize(binarize)
    check_bool("download", download)
    check_bool("verify", verify)

    missing = [name for name in dataset.md5 if not (root / name).is_file()]
    if missing and download:
        download_files(root, {name: dataset.md5[name] for name in missing}, dataset.mirrors)
    elif missing:
        error = not_found(
            dataset.name, root, dataset.md5, " or ".join(dataset.mirrors), can_download=True
        )
        # Gunzipped copies (a torchvision raw/ folder holds both) are not read: say so.
        unzipped = [
            name[: -len(".gz")] for name in missing if (root / name[: -len(".gz")]).is_file()
        ]
        if unzipped:
            error = DatasetNotFoundError(
                f"{error}\n{str(root)!r} holds {', '.join(unzipped)} uncompressed: gzip them "
                f"(gzip -k {' '.join(unzipped)}) and pass verify=False (the published md5s are "
                "of the original .gz files), or pass download=True to fetch those."
            )
        raise error

    if verify:
        for name, expected in dataset.md5.items():
            found = md5sum(root / name)
            if found != expected:
                raise _wrong_md5(dataset, root / name, expected, found)

    train, train_labels = _read_split(root, TRAIN_IMAGES, TRAIN_LABELS, _NUM_TRAIN, verify)
    test, test_labels = _read_split(root, TEST_IMAGES, TEST_LABELS, _NUM_TEST, verify)
    if binarize == "dynamic":
        train, test = DynamicBinarization(train), DynamicBinarization(test)
    return ImageData(dataset.name, train, test, train_labels=train_labels, test_labels=test_labels)


def _wrong_md5(dataset: _IdxDataset, path: Path, expected: str, found: str) -> Exception:
    """The error for a file whose md5 is not the published one, naming the dataset it is when
    it is the other one's file of that name (Fashion-MNIST put under mnist/, or the reverse)."""
    problem = f"expected the published {dataset.name} md5 {expected}, found {found}"
    for other in (_MNIST, _FASHION_MNIST):
        if other is not dataset and other.md5.get(path.name) == found:
            return corrupted(
                path,
                f"{problem}, the md5 of {other.name}'s {path.name}: this is {other.name}, not "
                f"{dataset.name}",
                hint=f"Move the {other.name} files to a folder named {other.name!r} "
                f"(load({other.name!r}, root) reads <root>/{other.name}), and put the "
                f"{dataset.name} files here.",
            )
    return corrupted(
        path,
        problem,
        hint="Delete it and download it again (download=True does), "
        "or pass verify=False if you changed it on purpose.",
    )


def _read_split(
    root: Path, images_name: str, labels_name: str, count: int, verify: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = read_idx(root / images_name), read_idx(root / labels_name)
    # The shapes are checked even without verify: anything else would break every model later.
    if images.dtype != np.uint8 or images.ndim != 3:
        raise corrupted(
            root / images_name,
            f"expected uint8 images of 3 dimensions (IDX magic 2051), "
            f"found {images.dtype} of shape {list(images.shape)}",
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise corrupted(
            root / labels_name,
            f"expected uint8 labels of 1 dimension (IDX magic 2049), "
            f"found {labels.dtype} of shape {list(labels.shape)}",
        )
    if len(images) != len(labels):
        raise corrupted(
            root / labels_name,
            f"expected one label per image of {images_name} ({len(images)}), found {len(labels)}",
        )
    if verify:
        expected_shape = [count, _SIDE, _SIDE]
        if list(images.shape) != expected_shape:
            raise corrupted(
                root / images_name,
                f"expected images of shape {expected_shape}, found {list(images.shape)}",
            )
        if labels.max(initial=0) >= _NUM_CLASSES:
            raise corrupted(
                root / labels_name,
                f"expected labels 0..{_NUM_CLASSES - 1}, found {int(labels.max())}",
            )
    pixels = torch.from_numpy(images).unsqueeze(1).to(torch.float32).div_(255.0)
    return pixels, torch.from_numpy(labels).to(torch.int64)


def _check_binarize(binarize: object) -> None:
    # The isinstance test first: `in` compares with ==, which a tensor would answer elementwise.
    if not isinstance(binarize, (str, type(None))) or binarize not in BINARIZE_OPTIONS:
        raise ValueError(
            f"binarize must be one of {list(BINARIZE_OPTIONS)} (None: grey levels in [0, 1]; "
            f"'dynamic': a fresh Bernoulli draw on every indexing), got {describe(binarize)}"
        )
