"""NumPy files: a ``.npz`` of arrays by key, or one ``.npy`` array.

The keys of a ``.npz`` (:data:`ARRAY_KEYS`) say which split each array is::

    x                 every datapoint; split into train and test at random (test_fraction)
    y                 labels of x (optional)
    train, test       the splits as you made them (test optional: test_fraction splits train)
    validation        a validation split (optional)
    train_y, test_y, validation_y    their labels (optional, for every split or none)

A ``.npy`` file is one array, read as ``x``. Arrays may be

- ``[N, D]``: a table, one row per datapoint (counts, grey levels, real features);
- ``[N, H, W]``: grey images, read as ``[N, 1, H, W]``;
- ``[N, C, H, W]``: images, channel first.

Integer images (``uint8`` with 3 or 4 axes) are 8-bit pixels and are scaled to [0, 1], unless
every value is 0 or 1 (binary images, kept as they are); every other array keeps its values
(integers are counts), as float32.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from .errors import corrupted
from .values import as_data_tensor, as_label_tensor

__all__ = ["ARRAY_KEYS", "ARRAY_SUFFIXES", "read_arrays"]

#: The keys a ``.npz`` may hold, and what each one is.
ARRAY_KEYS: dict[str, str] = {
    "x": "every datapoint, split into train and test by test_fraction",
    "y": "labels of x",
    "train": "the training split",
    "test": "the test split",
    "validation": "the validation split",
    "train_y": "labels of train",
    "test_y": "labels of test",
    "validation_y": "labels of validation",
}
#: The file suffixes read as NumPy arrays.
ARRAY_SUFFIXES = (".npz", ".npy")
#: Which key labels which split.
_LABELS_OF = {"x": "y", "train": "train_y", "test": "test_y", "validation": "validation_y"}
_HINT = "Write it again with numpy.savez(path, x=...) (or train=..., test=...)."

Split = tuple[torch.Tensor, torch.Tensor | None]


def read_arrays(path: Path) -> dict[str, Split]:
    """The splits a ``.npz`` or ``.npy`` file holds, by data key (``"x"``, ``"train"``, ...).

    Arguments:
        path: An existing ``.npz`` or ``.npy`` file.

    Returns:
        Data key -> ``(values, labels or None)``: values float32 ``[N, D]`` or
        ``[N, C, H, W]``, labels int64 ``[N]``.

    Raises:
        DatasetCorruptedError: a file numpy cannot read, or one holding Python objects.
        ValueError: unknown or inconsistent keys, a wrong shape, NaN or infinite values.
        TypeError: non-numeric arrays.

    Example:
        >>> numpy.savez("cells.npz", x=counts, y=cell_types)
        >>> read_arrays(Path("cells.npz"))["x"][0].shape
        torch.Size([1000, 200])
    """
    arrays = _load(path)
    _check_keys(path, arrays)
    splits: dict[str, Split] = {}
    for key, label_key in _LABELS_OF.items():
        if key not in arrays:
            continue
        values = datapoints(f"{key!r} in {str(path)!r}", arrays[key])
        labels = None
        if label_key in arrays:
            name = f"{label_key!r} in {str(path)!r}"
            labels = as_label_tensor(name, arrays[label_key], len(values))
        splits[key] = (values, labels)
    return splits


def _load(path: Path) -> dict[str, np.ndarray]:
    try:
        # allow_pickle=False: an object array would run pickled code from the file on loading.
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return {"x": loaded}
        with loaded as archive:  # members are read lazily: inside the try, like the header
            return {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        problem = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise corrupted(path, f"numpy cannot read it ({problem}).", hint=_HINT) from None


def _check_keys(path: Path, arrays: dict[str, np.ndarray]) -> None:
    where = str(path)
    unknown = sorted(set(arrays) - set(ARRAY_KEYS))
    if unknown:
        raise ValueError(
            f"{where!r} holds the unknown key(s) {unknown}; allowed keys: {list(ARRAY_KEYS)} "
            "(x, with labels y, for one set that is split at random; train/test/validation "
            "for splits you made)"
        )
    splits = sorted({"train", "test", "validation"} & set(arrays))
    if "x" in arrays and splits:
        raise ValueError(
            f"{where!r} holds both 'x' and the split key(s) {splits}; give either x (split at "
            "random) or train/test/validation, not both"
        )
    if "x" not in arrays and "train" not in arrays:
        raise ValueError(
            f"{where!r} holds the keys {sorted(arrays)} but neither 'x' nor 'train'; allowed "
            f"keys: {list(ARRAY_KEYS)}"
        )
    for key, label_key in _LABELS_OF.items():
        if label_key in arrays and key not in arrays:
            raise ValueError(f"{where!r} holds labels {label_key!r} without the data {key!r}")
    present = [key for key in _LABELS_OF if key in arrays]
    labelled = [key for key in present if _LABELS_OF[key] in arrays]
    if labelled and len(labelled) != len(present):
        missing = [_LABELS_OF[key] for key in present if key not in labelled]
        raise ValueError(
            f"{where!r} labels some splits but not others: it lacks {missing}; give labels for "
            "every split or for none"
        )


def datapoints(name: str, array: np.ndarray) -> torch.Tensor:
    """One split's array as float32 datapoints: ``[N, D]``, or images ``[N, C, H, W]``.

    Arguments:
        name: What the array is, for messages.
        array: ``[N, D]``, ``[N, H, W]`` (grey images) or ``[N, C, H, W]``.

    Returns:
        The float32 tensor; ``uint8`` images scaled to [0, 1] (binary 0/1 ones kept), grey
        images given a channel axis.

    Raises:
        ValueError: another number of axes, an image that looks channel-last, NaN or infinite
            values, no datapoints.
        TypeError: a non-numeric dtype.
    """
    array = np.asarray(array)
    if array.ndim not in (2, 3, 4):
        fix = " (one value per datapoint: reshape it to [N, 1])" if array.ndim == 1 else ""
        raise ValueError(
            f"{name} has shape {list(array.shape)}; allowed: [N, D] (a table), [N, H, W] (grey "
            f"images) or [N, C, H, W] (images, channel first){fix}"
        )
    if array.ndim == 4 and array.shape[-1] in (1, 3, 4) and array.shape[1] not in (1, 3, 4):
        raise ValueError(
            f"{name} has shape {list(array.shape)}, which looks channel-last [N, H, W, C]; "
            "images must be channel first [N, C, H, W]: numpy.moveaxis(x, -1, 1)"
        )
    if array.ndim == 3:
        array = array[:, None]
    tensor = as_data_tensor(name, array)
    # 8-bit pixels onto [0, 1]; binary images stored as uint8 0/1 (masks, a fixed binarization)
    # are in [0, 1] already, and dividing would make them 0 and 1/255.
    if array.ndim == 4 and array.dtype == np.uint8 and array.max() > 1:
        tensor = tensor / 255.0
    return tensor
