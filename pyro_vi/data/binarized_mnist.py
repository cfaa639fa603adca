"""Larochelle & Murray's fixed binarization of MNIST, from its three ``.amat`` text files.

Each file holds one image per line: 784 values ``0``/``1`` separated by single spaces, so a
canonical line is exactly 1568 bytes (1567 characters and ``\\n``). The training file is 78 MB of
text, far too slow for ``np.loadtxt``; :func:`read_amat` instead views the bytes as a
``[lines, 1568]`` uint8 array and checks every column at once. Only a file that does not have that
exact layout (``\\r\\n`` line ends, extra spaces) takes a slower line-by-line path, which is also
the one that locates an error to its line.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from .._checks import check_int
from ._args import check_bool, check_root
from .container import ImageData
from .errors import DatasetNotFoundError, corrupted, not_found

__all__ = ["BINARIZED_MNIST_SHA256", "BINARIZED_MNIST_URL", "load_binarized_mnist", "read_amat"]

#: Where the authors publish the three files.
BINARIZED_MNIST_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"

#: SHA-256 of each file as the authors publish it.
BINARIZED_MNIST_SHA256 = {
    "binarized_mnist_train.amat": (
        "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d"
    ),
    "binarized_mnist_valid.amat": (
        "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2"
    ),
    "binarized_mnist_test.amat": (
        "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c"
    ),
}

_COUNTS = {"train": 50000, "valid": 10000, "test": 10000}
_SIDE = 28
_ZERO, _SPACE, _NEWLINE = ord("0"), ord(" "), ord("\n")


def load_binarized_mnist(root: str | os.PathLike[str], *, verify: bool = True) -> ImageData:
    """Load the fixed binarization of MNIST (Larochelle & Murray 2011) from ``root``.

    This is the "fixed binarized MNIST" of the IWAE paper's appendix, with its own validation
    split; it has no labels. Download the three files from :data:`BINARIZED_MNIST_URL`.

    Arguments:
        root: the directory that directly holds ``binarized_mnist_train.amat``,
            ``binarized_mnist_valid.amat`` and ``binarized_mnist_test.amat``.
        verify: check each file's SHA-256 against the published value and the counts against
            50000 / 10000 / 10000 images; costs about 0.3 s. Turn off to read a copy whose bytes
            differ on purpose (converted line ends, a subset).

    Returns:
        An :class:`ImageData` named ``"binarized-mnist"``: float32 images ``[N, 1, 28, 28]`` with
        values 0 and 1 for train, valid and test; all labels ``None``.

    Raises:
        DatasetNotFoundError: ``root`` or one of the files is missing.
        DatasetCorruptedError: a file has the wrong checksum, a malformed line or the wrong count.

    References:
        Larochelle & Murray, *The Neural Autoregressive Distribution Estimator* (AISTATS 2011).

    Example:
        >>> data = load_binarized_mnist("data/binarized-mnist")
        >>> len(data.train), len(data.valid), len(data.test)
        (50000, 10000, 10000)
    """
    root = check_root(root)
    check_bool("verify", verify)
    missing = [name for name in BINARIZED_MNIST_SHA256 if not (root / name).is_file()]
    if missing:
        raise not_found(
            "binarized-mnist", root, BINARIZED_MNIST_SHA256, BINARIZED_MNIST_URL, can_download=False
        )

    splits = {}
    for split, count in _COUNTS.items():
        path = root / f"binarized_mnist_{split}.amat"
        data = path.read_bytes()
        if verify:
            _check_sha256(path, data)
        values = _parse(path, data, _SIDE * _SIDE)
        if verify and len(values) != count:
            raise corrupted(path, f"expected {count} images (lines), found {len(values)}")
        splits[split] = torch.from_numpy(values).view(-1, 1, _SIDE, _SIDE).to(torch.float32)
    return ImageData("binarized-mnist", splits["train"], splits["test"], valid=splits["valid"])


def read_amat(path: str | os.PathLike[str], *, num_values: int = 784) -> np.ndarray:
    """Read a binary ``.amat`` text file: one row per line, ``num_values`` 0/1 values per row.

    Arguments:
        path: the file, e.g. ``"binarized-mnist/binarized_mnist_test.amat"``.
        num_values: how many values each line must hold (784 = 28 x 28 for binarized MNIST).

    Returns:
        A uint8 array ``[lines, num_values]`` of zeros and ones.

    Raises:
        DatasetNotFoundError: there is no file at ``path``.
        DatasetCorruptedError: the file is empty, or a line has a value other than ``0``/``1`` or
            the wrong number of values (the message gives the line).

    Example:
        >>> read_amat("binarized-mnist/binarized_mnist_test.amat").shape
        (10000, 784)
    """
    path = Path(path)
    num_values = check_int("num_values", num_values, minimum=1)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatasetNotFoundError(f"amat file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise DatasetNotFoundError(f"amat file {str(path)!r} is a folder, not a file") from None
    return _parse(path, data, num_values)


def _check_sha256(path: Path, data: bytes) -> None:
    expected = BINARIZED_MNIST_SHA256[path.name]
    found = hashlib.sha256(data).hexdigest()
    if found != expected:
        raise corrupted(
            path,
            f"expected the published SHA-256 {expected}, found {found}",
            hint=f"Delete it and download it again from {BINARIZED_MNIST_URL}, "
            "or pass verify=False if you changed it on purpose (e.g. converted its line ends).",
        )


def _parse(path: Path, data: bytes, num_values: int) -> np.ndarray:
    values = _parse_canonical(data, num_values)
    return values if values is not None else _parse_general(path, data, num_values)


def _parse_canonical(data: bytes, num_values: int) -> np.ndarray | None:
    """The fast path: None unless ``data`` is exactly canonical lines of '0'/'1' and spaces."""
    line_length = 2 * num_values  # values, a space after each but the last, and the newline
    if not data or len(data) % line_length:
        return None
    chars = np.frombuffer(data, dtype=np.uint8).reshape(-1, line_length)
    # uint8 arithmetic wraps, so anything below '0' becomes large and fails the same test.
    values = chars[:, 0::2] - np.uint8(_ZERO)
    if (values > 1).any() or (chars[:, 1:-1:2] != _SPACE).any() or (chars[:, -1] != _NEWLINE).any():
        return None
    return values


def _parse_general(path: Path, data: bytes, num_values: int) -> np.ndarray:
    """The fallback: any whitespace between values and any line ends; errors name the line."""
    lines = data.splitlines()
    while lines and not lines[-1].strip():  # blank lines at the end are harmless
        lines.pop()
    if not lines:
        raise corrupted(path, f"expected lines of {num_values} values 0/1, found an empty file")
    rows = []
    for number, line in enumerate(lines, start=1):
        tokens = line.split()
        if len(tokens) != num_values:
            raise corrupted(
                path, f"line {number}: expected {num_values} values, found {len(tokens)}"
            )
        row = b"".join(tokens)
        if len(row) != num_values:  # some token is longer than one character
            column, token = next((i, t) for i, t in enumerate(tokens, start=1) if len(t) != 1)
            raise _bad_token(path, number, column, token)
        rows.append(row)
    chars = np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(-1, num_values)
    values = chars - np.uint8(_ZERO)
    bad = np.flatnonzero(values > 1)
    if bad.size:
        line, column = divmod(int(bad[0]), num_values)
        raise _bad_token(path, line + 1, column + 1, lines[line].split()[column])
    return values


def _bad_token(path: Path, line: int, column: int, token: bytes) -> Exception:
    text = token.decode("ascii", errors="replace")
    if len(text) > 20:
        text = text[:17] + "..."
    return corrupted(path, f"line {line}, value {column}: expected '0' or '1', found {text!r}")
