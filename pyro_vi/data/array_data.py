"""What a reader of a user's files returns: :class:`ArrayData`, splits of any datapoint shape.

The built-in datasets are images (:class:`~pyro_vi.data.ImageData`, ``[N, C, H, W]``); a user's
data may also be a table, ``[N, D]``. :class:`ArrayData` holds either, with the same split and
label fields as :class:`~pyro_vi.data.ImageData`, so code that reads ``train``, ``test``,
``valid`` and their labels takes both.
"""

from __future__ import annotations

import dataclasses
from dataclasses import KW_ONLY, dataclass

import torch
from torch import Tensor

from .._checks import describe

__all__ = ["ArrayData"]

_SPLITS = ("train", "valid", "test")


@dataclass(eq=False)  # identity equality: `==` on tensors has no single truth value
class ArrayData:
    """A user's dataset: float32 splits ``[N, *data_shape]`` and optional int64 labels ``[N]``.

    Tables are ``[N, D]`` (counts are stored as float values); images are ``[N, C, H, W]`` in
    ``[0, 1]``. Every split must have the training split's datapoint shape and at least one
    datapoint; labels, where given, have one entry per datapoint.

    Arguments:
        name: Where the data came from, for messages and ``repr`` (a file or folder name).
        train: The training split.
        test: The test split.
        train_labels: Labels of ``train``, or ``None``.
        test_labels: Labels of ``test``, or ``None``.
        valid: The validation split, or ``None``.
        valid_labels: Labels of ``valid``, or ``None``.

    Example:
        >>> data = ArrayData("cells.npz", torch.rand(90, 20), torch.rand(10, 20))
        >>> data.data_shape
        (20,)
    """

    name: str
    train: Tensor
    test: Tensor
    _: KW_ONLY
    train_labels: Tensor | None = None
    test_labels: Tensor | None = None
    valid: Tensor | None = None
    valid_labels: Tensor | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"name must be a str, got {describe(self.name)}")
        for split in _SPLITS:
            values = getattr(self, split)
            labels = getattr(self, f"{split}_labels")
            if values is None:
                if labels is not None:
                    raise ValueError(f"{split}_labels was given but {split} is None")
                continue
            _check_split(split, values)
            if values.shape[1:] != self.train.shape[1:]:
                raise ValueError(
                    f"{split} datapoints have shape {list(values.shape[1:])} but train "
                    f"datapoints have {list(self.train.shape[1:])}; every split must agree"
                )
            _check_labels(f"{split}_labels", labels, len(values))

    @property
    def data_shape(self) -> tuple[int, ...]:
        """The shape of one datapoint: ``(D,)`` for a table, ``(C, H, W)`` for images."""
        return tuple(self.train.shape[1:])

    @property
    def labelled(self) -> bool:
        """Whether every split present has labels."""
        return all(
            getattr(self, f"{split}_labels") is not None
            for split in _SPLITS
            if getattr(self, split) is not None
        )

    def to(self, device: torch.device | str) -> ArrayData:
        """A copy with every tensor moved to ``device``; ``self`` is left as it is."""
        moved = {
            field.name: value.to(device)
            for field in dataclasses.fields(self)
            if isinstance(value := getattr(self, field.name), Tensor)
        }
        return dataclasses.replace(self, **moved)

    def __repr__(self) -> str:
        # The dataclass default would print every tensor; sizes are what a reader wants.
        parts = [f"name={self.name!r}"]
        for split in _SPLITS:
            values = getattr(self, split)
            if values is not None:
                labelled = getattr(self, f"{split}_labels") is not None
                parts.append(f"{split}={len(values)}{' (labelled)' if labelled else ''}")
        parts.append(f"data_shape={self.data_shape}")
        return f"ArrayData({', '.join(parts)})"


def _check_split(name: str, values: object) -> None:
    if not isinstance(values, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {describe(values)}")
    if values.dim() < 2:
        raise ValueError(
            f"{name} must have shape [N, *data_shape] (at least 2 dimensions), got shape "
            f"{list(values.shape)}"
        )
    if not values.dtype.is_floating_point:
        raise TypeError(f"{name} must hold floating-point values, got {values.dtype}")
    if len(values) == 0:
        raise ValueError(f"{name} is empty: every split needs at least one datapoint")


def _check_labels(name: str, labels: object, count: int) -> None:
    if labels is None:
        return
    if not isinstance(labels, Tensor) or labels.dtype != torch.int64 or labels.dim() != 1:
        raise TypeError(f"{name} must be an int64 tensor of shape [N], got {describe(labels)}")
    if len(labels) != count:
        raise ValueError(f"{name} has {len(labels)} labels for {count} datapoints")
