"""A user's arrays as the float32 tensors the models read, and what kind of values they hold.

Every reader of a user's files (:mod:`.arrays`, :mod:`.tables`, :mod:`.image_folder`) passes
what it read through :func:`as_data_tensor` and :func:`as_label_tensor`, so that every source
refuses the same things with the same words: non-numeric arrays, NaN or infinite values, a
datapoint count of zero, labels that are not non-negative integers. :func:`value_kind` names the
values a likelihood must fit (binary, in [0, 1], counts or real), for the spec's checks.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

__all__ = ["VALUE_KINDS", "ValueKind", "as_data_tensor", "as_label_tensor", "value_kind"]

#: What a dataset's values are, from the narrowest to the widest.
ValueKind = Literal["binary", "unit", "counts", "real"]
#: What each value kind means, for messages and the docs.
VALUE_KINDS: dict[str, str] = {
    "binary": "binary (every value 0 or 1)",
    "unit": "grey levels in [0, 1]",
    "counts": "counts (non-negative integers)",
    "real": "real numbers",
}

# float32 holds every integer up to 2**24 exactly; larger counts would be silently rounded.
_EXACT_FLOAT32_INTEGERS = 2**24
# The largest label accepted: far past any class count, and below int64's limit (2**63 - 1,
# which a float rounds up past).
_LARGEST_LABEL = 2**62


def as_data_tensor(name: str, array: np.ndarray) -> torch.Tensor:
    """``array`` as a float32 tensor, refusing what no model can train on.

    Booleans become 0/1 and integers their float values (counts stay exact up to 2**24).

    Arguments:
        name: What the array is, for messages (``"'train' in cells.npz"``).
        array: The values, first axis the datapoints.

    Returns:
        A float32 tensor with the array's shape.

    Raises:
        TypeError: a non-numeric dtype (strings, objects, complex numbers).
        ValueError: no datapoints, an axis of size zero, NaN or infinite values, or integers
            too large for float32.

    Example:
        >>> as_data_tensor("x", np.array([[1, 0], [2, 5]])).dtype
        torch.float32
    """
    array = np.asarray(array)
    kind = array.dtype.kind
    if kind not in "biuf":
        raise TypeError(
            f"{name} must hold numbers (bool, integer or float), got dtype {array.dtype}; "
            "encode categories as integers and drop text columns"
        )
    if array.ndim == 0 or array.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {list(array.shape)}): it needs datapoints")
    if 0 in array.shape:
        raise ValueError(
            f"{name} has shape {list(array.shape)}: each datapoint needs at least one value"
        )
    if kind == "f":
        finite = np.isfinite(array)
        if not finite.all():
            bad = np.argwhere(~finite)
            first = tuple(int(i) for i in bad[0])
            raise ValueError(
                f"{name} holds {len(bad)} NaN or infinite value(s), the first at index "
                f"{list(first)} ({array[first]}); remove or impute them before training"
            )
        if np.abs(array).max() > np.finfo(np.float32).max:
            raise ValueError(
                f"{name} holds values up to {np.abs(array).max():.3g}, beyond float32's range; "
                "rescale them"
            )
    if kind in "iu" and int(np.abs(array).max()) > _EXACT_FLOAT32_INTEGERS:
        raise ValueError(
            f"{name} holds integers up to {int(np.abs(array).max())}, beyond 2**24, which float32 "
            "cannot hold exactly; rescale them or store them as float"
        )
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def as_label_tensor(name: str, labels: np.ndarray, count: int) -> torch.Tensor:
    """``labels`` as the int64 ``[N]`` tensor of class indices that conditional models read.

    Arguments:
        name: What the labels are, for messages.
        labels: One label per datapoint: integers >= 0 (integral floats are accepted).
        count: N, the number of datapoints they label.

    Returns:
        An int64 tensor of shape ``[N]``.

    Raises:
        TypeError: labels that are not numbers.
        ValueError: the wrong shape or count, or labels that are not integers >= 0.
    """
    labels = np.asarray(labels)
    if labels.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} must hold integer class labels 0..C-1, got dtype {labels.dtype}; encode "
            "text labels as integers first"
        )
    if labels.ndim != 1 or len(labels) != count:
        raise ValueError(
            f"{name} must have shape [{count}] (one label per datapoint), got shape "
            f"{list(labels.shape)}"
        )
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        raise ValueError(f"{name} holds NaN or infinite labels; labels are integers 0..C-1")
    if labels.size and (labels.min() < 0 or (labels != np.round(labels)).any()):
        bad = labels[(labels < 0) | (labels != np.round(labels))][0]
        raise ValueError(f"{name} must hold integers 0..C-1, got the label {bad}")
    # Past int64 the cast wraps (uint64) or saturates (floats) to negative "labels".
    if labels.size and labels.max() > _LARGEST_LABEL:
        raise ValueError(
            f"{name} must hold integers 0..C-1, got the label {labels.max()}, beyond "
            f"{_LARGEST_LABEL}; number the classes 0..C-1"
        )
    return torch.from_numpy(labels.astype(np.int64))


def value_kind(x: torch.Tensor) -> ValueKind:
    """The narrowest kind the values of ``x`` fit: binary, in [0, 1], counts, else real.

    Binary data are counts and lie in [0, 1] too; this names the narrowest kind, and a
    likelihood for a wider kind also fits (:data:`VALUE_KINDS`).

    Arguments:
        x: Any real tensor.

    Returns:
        ``"binary"``, ``"unit"``, ``"counts"`` or ``"real"``.

    Example:
        >>> value_kind(torch.tensor([0.0, 3.0])), value_kind(torch.tensor([0.5, 1.0]))
        ('counts', 'unit')
    """
    if bool(((x == 0) | (x == 1)).all()):
        return "binary"
    if bool(((x >= 0) & (x <= 1)).all()):
        return "unit"
    if bool(((x >= 0) & (x == torch.round(x))).all()):
        return "counts"
    return "real"
