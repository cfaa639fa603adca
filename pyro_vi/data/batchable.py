"""Any map-style ``torch.utils.data.Dataset`` as data that :func:`pyro_vi.train.fit` batches.

``fit`` takes a tensor, or anything with ``len()``, indexing by a LongTensor of datapoint
indices and ``.to(device)`` (a tuple of such is passed to the model as positional arguments).
A map-style dataset has ``len()`` and ``dataset[i]`` for one index; :func:`as_batchable` adds
the rest: ``data[indices]`` reads each item and stacks them, on the device ``.to`` chose.

Items are read when a batch is asked for, so a dataset that draws something afresh on each
read (an augmentation, a dynamic binarization) keeps doing so every epoch. When items are
tuples ``(x, y, ...)``, each field becomes one batchable column; the columns of one batch are
read from the same items (one read per item, not one per column).

Example:
    >>> train = as_batchable(my_dataset, fields=0)  # items (image, label): the images only
    >>> fit(model, guide, train, epochs=10)
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._checks import check_int, describe

__all__ = ["DatasetColumn", "as_batchable"]


def as_batchable(
    dataset: Any, fields: int | Sequence[int] | None = None
) -> DatasetColumn | tuple[DatasetColumn, ...]:
    """Turn a map-style dataset into what :func:`pyro_vi.train.fit` takes.

    Arguments:
        dataset: A map-style ``torch.utils.data.Dataset`` (anything with ``len()`` and
            ``dataset[i]`` for ``i`` in ``range(len(dataset))``) whose items are tensors, or
            tuples/lists of tensors (numbers and numpy arrays are turned into tensors).
        fields: Which fields of tuple items to keep: one index (a single column, e.g. ``0``
            for the images of ``(image, label)`` items), a sequence of indices (a tuple of
            columns, passed to the model in that order) or ``None``: every field.

    Returns:
        A :class:`DatasetColumn` for tensor items (or a single chosen field), else a tuple of
        them, one per field.

    Raises:
        TypeError: not a map-style dataset (a ``DataLoader``, an iterable dataset), or items
            that are neither tensors nor tuples of tensors.
        ValueError: an empty dataset, or a field index out of range.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> x, y = as_batchable(TensorDataset(torch.rand(10, 4), torch.arange(10)))
        >>> x[torch.tensor([0, 3])].shape, y[torch.tensor([0, 3])]
        (torch.Size([2, 4]), tensor([0, 3]))
    """
    _check_dataset(dataset)
    first = dataset[0]
    single = not isinstance(first, tuple | list)
    width = 1 if single else len(first)
    if not single and width == 0:
        raise TypeError("dataset[0] is an empty tuple; items must hold at least one tensor")
    reader = _ItemReader(dataset, single, width)
    reader.convert(0, first)  # the first item's fields are checked now, not at the first batch
    if fields is None:
        if single:
            return DatasetColumn(reader, 0)
        return tuple(DatasetColumn(reader, field) for field in range(width))
    if isinstance(fields, int) and not isinstance(fields, bool):
        return DatasetColumn(reader, _check_field(fields, width))
    if isinstance(fields, Sequence) and not isinstance(fields, str) and fields:
        return tuple(DatasetColumn(reader, _check_field(f, width)) for f in fields)
    raise TypeError(
        f"fields must be a field index, a non-empty list of them, or None, got {describe(fields)}"
    )


def _check_dataset(dataset: Any) -> None:
    from torch.utils.data import DataLoader, IterableDataset

    if isinstance(dataset, DataLoader):
        raise TypeError(
            "dataset is a DataLoader; pass its map-style dataset instead "
            "(as_batchable(loader.dataset)): fit makes its own shuffled batches of batch_size"
        )
    if isinstance(dataset, IterableDataset) or not (
        hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")
    ):
        raise TypeError(
            "dataset must be a map-style dataset with len() and dataset[i] (fit draws batches "
            f"by index), got {describe(dataset)}"
        )
    if len(dataset) == 0:
        raise ValueError("dataset is empty: it must hold at least one item")


def _check_field(field: Any, width: int) -> int:
    field = check_int("fields", field, minimum=0)
    if field >= width:
        raise ValueError(f"fields names field {field}, but the dataset's items have {width}")
    return field


class _ItemReader:
    """Reads and stacks the items of a batch once for every column of it."""

    def __init__(self, dataset: Any, single: bool, width: int) -> None:
        self.dataset, self.single, self.width = dataset, single, width
        self._index: Tensor | None = None
        self._batch: list[Tensor] = []
        self._served: set[int] = set()

    def convert(self, position: int, item: Any) -> list[Tensor]:
        fields = [item] if self.single else list(item)
        if len(fields) != self.width:
            raise TypeError(
                f"dataset[{position}] has {len(fields)} fields but dataset[0] has {self.width}; "
                "every item must have the same fields"
            )
        tensors = []
        for number, value in enumerate(fields):
            # Only what is plainly numeric: torch.as_tensor would also take a PIL image, as
            # height x width x channels uint8, which no model here reads.
            if not isinstance(value, Tensor | numbers.Number | np.ndarray) or isinstance(
                value, complex
            ):
                where = "" if self.single else f" field {number}"
                raise TypeError(
                    f"dataset[{position}]{where} is {describe(value)}, not a tensor; give the "
                    "dataset a transform that returns tensors (torchvision's ToTensor() for "
                    "images)"
                )
            tensors.append(torch.as_tensor(value))
        return tensors

    def column(self, field: int, index: Tensor) -> Tensor:
        """Field ``field`` of the items at ``index``, stacked: ``[len(index), ...]``.

        The batch is read afresh unless this index's batch is cached and this field has not
        been served from it yet: the columns of one batch come from one read of its items,
        and a second request for the same column reads again (fresh augmentations).
        """
        fresh = (
            self._index is None
            or field in self._served
            or self._index.shape != index.shape
            or not torch.equal(self._index, index)
        )
        if fresh:
            positions = index.tolist()
            # An empty batch still needs each field's shape and dtype: the first item's.
            items = [self.convert(i, self.dataset[i]) for i in positions or [0]]
            columns = [list(values) for values in zip(*items, strict=True)]
            self._batch = [_stack(values, n)[: len(positions)] for n, values in enumerate(columns)]
            self._index, self._served = index.clone(), set()
        self._served.add(field)
        return self._batch[field]


def _stack(values: Sequence[Tensor], field: int) -> Tensor:
    shapes = {tuple(v.shape) for v in values}
    if len(shapes) > 1:
        raise ValueError(
            f"field {field} of the dataset's items has different shapes {sorted(shapes)[:3]}; "
            "a batch stacks them, so every item must have one shape (resize images first)"
        )
    return torch.stack(list(values))


class DatasetColumn:
    """One field of a map-style dataset's items, indexed by batches: what ``fit`` batches.

    Made by :func:`as_batchable`. ``column[indices]`` (a LongTensor, a slice or an int) reads
    the items and stacks their field; ``column.to(device)`` gives a column whose batches are
    moved to ``device`` (the dataset itself stays where it is).

    Arguments:
        reader: The shared reader of the dataset's items.
        field: Which field of each item this column holds.
        device: Where batches are put, or ``None`` to leave them where the dataset made them.
    """

    def __init__(self, reader: _ItemReader, field: int, device: torch.device | None = None) -> None:
        self._reader, self.field, self.device = reader, field, device

    def __len__(self) -> int:
        return len(self._reader.dataset)

    def __getitem__(self, index: int | slice | Tensor) -> Tensor:
        if isinstance(index, int) and not isinstance(index, bool):
            return self[torch.tensor([index])][0]
        if isinstance(index, slice):
            index = torch.arange(len(self))[index]
        if not isinstance(index, Tensor) or index.dtype not in (torch.int64, torch.int32):
            raise TypeError(
                f"a dataset column is indexed by an int, a slice or a LongTensor of indices, got "
                f"{describe(index)}"
            )
        batch = self._reader.column(self.field, index.cpu())
        return batch if self.device is None else batch.to(self.device)

    @property
    def shape(self) -> torch.Size:
        """``[len(dataset), *item_shape]``, from the first item (reads it)."""
        first = self._reader.convert(0, self._reader.dataset[0])[self.field]
        return torch.Size([len(self), *first.shape])

    def to(self, device: torch.device | str) -> DatasetColumn:
        """A column whose batches are put on ``device``."""
        moved = copy.copy(self)
        moved.device = torch.device(device)
        return moved

    def __repr__(self) -> str:
        dataset = type(self._reader.dataset).__name__
        return (
            f"DatasetColumn({dataset}, field={self.field}, len={len(self)}, device={self.device})"
        )
