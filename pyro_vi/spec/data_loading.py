"""The data a spec names, read and split, and checked against the model before training.

:func:`load_data` reads a built-in dataset (``data.name``) or a user's file or folder
(``data.path``, :func:`pyro_vi.data.load_path`), then in this order: wraps the splits for
dynamic binarization, keeps the first ``data.limit`` training and ``data.test_limit`` test
datapoints, holds out ``data.validation`` of the training datapoints at random (seeded by
``data.seed``) and, for a path, checks what was read against the spec: the likelihood against
the values (binary, [0, 1], counts, real), a conditional model against the labels, a
convolutional network against the datapoint shape. Every problem is an error before training.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pyro_vi import data as datasets
from pyro_vi._registry import keyword_options
from pyro_vi.data.splits import VALIDATION_STREAM
from pyro_vi.models import likelihoods
from pyro_vi.spec.data_section import no_validation_split
from pyro_vi.spec.resolve import Spec, as_spec
from pyro_vi.spec.schema import SpecError

__all__ = ["Data", "DataInfo", "load_data"]


@dataclass
class DataInfo:
    """What building a model needs to know about the data, stored in every run folder.

    Attributes:
        shape: Shape of one datapoint: ``(C, H, W)`` for images, ``(D,)`` for a table.
        num_classes: Number of labels (conditional models), or ``None``.
    """

    shape: tuple[int, ...]
    num_classes: int | None = None


@dataclass
class Data:
    """The splits a spec trains, validates and evaluates on.

    ``train``, ``test`` and ``validation`` are tuples of what the model takes as positional
    arguments: ``(x,)``, or ``(x, labels)`` for a conditional model; ``validation`` is ``None``
    without a validation split (``data.validation`` or ``data.validation_path``), else what
    ``fit(validation_data=...)`` takes. ``test_labels`` is kept for figures (latent scatter
    plots) even when the model does not take labels.
    """

    train: tuple[Any, ...]
    test: tuple[Any, ...]
    test_labels: torch.Tensor | None
    info: DataInfo
    validation: tuple[Any, ...] | None = None


@dataclass
class _Splits:
    """The splits between reading and handing over: values (tensors or dynamic binarizations)
    and labels (or ``None``)."""

    train: Any
    test: Any
    train_labels: torch.Tensor | None
    test_labels: torch.Tensor | None
    valid: Any = None
    valid_labels: torch.Tensor | None = None
    num_classes: int | None = None


def load_data(spec: Spec | Mapping[str, Any]) -> Data:
    """Read, split and check the spec's data (see the module docstring for the steps).

    Arguments:
        spec: A resolved spec (a dict is resolved first).

    Returns:
        The :class:`Data`, its ``info`` ready for :func:`pyro_vi.spec.build`.

    Raises:
        SpecError: the data does not fit the spec (the likelihood, labels for a conditional
            model, images for a convolutional network), a split is empty or given twice, or
            ``training.early_stopping`` is set and the data has no validation split.
        DatasetNotFoundError: a file or folder that is missing (the message starts with
            ``[data]``, like those below).
        DatasetCorruptedError: a file that cannot be read.
        MissingDependencyError: a Parquet file without pyarrow.
        ValueError: wrong shapes or values (NaN, infinity), an empty or overlapping split.
        TypeError: a non-numeric dtype.

    Example:
        >>> data = load_data(load_spec({"data": {"path": "cells.npz", "validation": 0.1}}))
        >>> fit(model, guide, data.train, validation_data=data.validation)
    """
    spec = as_spec(spec)
    if spec.data["path"] is None:
        splits = _named(spec)
    else:
        with _in_data_section():
            splits = _from_path(spec)
    splits.train, splits.train_labels = _first(splits.train, splits.train_labels, "limit", spec)
    splits.test, splits.test_labels = _first(splits.test, splits.test_labels, "test_limit", spec)
    _hold_out_validation(splits, spec)
    if spec.data["path"] is not None:
        _check_against_spec(splits, spec)
    conditional = spec.kind.conditional(spec.model)

    def items(values: Any, labels: torch.Tensor | None) -> tuple[Any, ...]:
        return (values, labels) if conditional else (values,)

    info = DataInfo(tuple(splits.train.shape[1:]), splits.num_classes if conditional else None)
    validation = None if splits.valid is None else items(splits.valid, splits.valid_labels)
    if validation is None and spec.training.get("early_stopping") is not None:
        raise no_validation_split(spec)  # a path without a validation split of its own
    return Data(
        items(splits.train, splits.train_labels),
        items(splits.test, splits.test_labels),
        splits.test_labels,
        info,
        validation,
    )


def _named(spec: Spec) -> _Splits:
    """A built-in dataset, binarized as the spec says."""
    name, binarize = spec.data["name"], spec.data["binarize"]
    # A loader that binarizes dynamically itself is asked to; the others' splits are wrapped.
    loader_binarizes = "binarize" in keyword_options(datasets.DATASETS[name].loader)
    options: dict[str, Any] = {}
    if binarize == "dynamic" and loader_binarizes:
        options["binarize"] = "dynamic"
    loaded = datasets.load(name, spec.data["dir"], **options)
    train, test = loaded.train, loaded.test
    if binarize == "dynamic" and not loader_binarizes:
        train, test = datasets.DynamicBinarization(train), datasets.DynamicBinarization(test)
    num_classes = None
    if loaded.train_labels is not None and loaded.test_labels is not None:
        # From the full label sets: a limited split may miss a class the model must know.
        num_classes = int(max(int(loaded.train_labels.max()), int(loaded.test_labels.max())) + 1)
    return _Splits(train, test, loaded.train_labels, loaded.test_labels, num_classes=num_classes)


def _file(spec: Spec, key: str) -> Path | None:
    """``data.<key>`` as a path: a relative one is read from ``data.dir`` when that is set."""
    value = spec.data[key]
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_absolute() and spec.data["dir"] is not None:
        path = Path(spec.data["dir"]).expanduser() / path
    return path


def _from_path(spec: Spec) -> _Splits:
    """A user's file or folder (:func:`pyro_vi.data.load_path`), binarized as the spec says."""
    data = spec.data
    loaded = datasets.load_path(
        _file(spec, "path"),
        test_path=_file(spec, "test_path"),
        validation_path=_file(spec, "validation_path"),
        test_fraction=data["test_fraction"],
        seed=data["seed"],
        image_size=data["image_size"],
        color=data["color"],
        label_column=data["label_column"],
    )
    if loaded.valid is not None and data["validation"] is not None:
        raise ValueError(
            f"data.validation = {data['validation']}, but {data['path']!r} holds its own "
            "'validation' split; give one validation set"
        )
    splits = _Splits(
        loaded.train,
        loaded.test,
        loaded.train_labels,
        loaded.test_labels,
        loaded.valid,
        loaded.valid_labels,
    )
    labels = (loaded.train_labels, loaded.test_labels, loaded.valid_labels)
    present = [label for label in labels if label is not None]
    if present:
        splits.num_classes = int(max(int(label.max()) for label in present)) + 1
    if data["binarize"] == "dynamic":
        _binarize(splits, data["path"])
    return splits


def _binarize(splits: _Splits, path: str) -> None:
    for name in ("train", "test", "valid"):
        values = getattr(splits, name)
        if values is None:
            continue
        if not bool(((values >= 0) & (values <= 1)).all()):
            raise SpecError(
                f"invalid spec: data.binarize = 'dynamic' needs values in [0, 1] (the "
                f"probability of a 1), but data.path = {path!r} has {name} values in "
                f"[{float(values.min()):.3g}, {float(values.max()):.3g}]; allowed: "
                "data.binarize = 'none'"
            )
        setattr(splits, name, datasets.DynamicBinarization(values))


@contextmanager
def _in_data_section() -> Iterator[None]:
    """Errors from reading a path say they come from ``[data]``; their type stays the same."""
    try:
        yield
    except SpecError:
        raise
    except (ValueError, TypeError, FileNotFoundError) as error:
        hint = ""
        if isinstance(error, FileNotFoundError):
            hint = (
                "; a relative path is read from data.dir (--data-dir) when set, else from the "
                "current directory"
            )
        try:
            wrapped = type(error)(f"[data] {error}{hint}")
        except TypeError:  # an error type whose constructor takes other arguments
            raise error from None
        raise wrapped from None


def _take(values: Any, index: torch.Tensor) -> Any:
    """The datapoints at ``index``; a dynamically binarized split stays dynamic."""
    if isinstance(values, datasets.DynamicBinarization):
        return datasets.DynamicBinarization(values.probs[index])
    return values[index]


def _first(
    values: Any, labels: torch.Tensor | None, key: str, spec: Spec
) -> tuple[Any, torch.Tensor | None]:
    """The first ``data.<key>`` datapoints and labels (all of them when it is unset)."""
    limit = spec.data[key]
    if limit is None:
        return values, labels
    keep = torch.arange(min(limit, len(values)))
    return _take(values, keep), None if labels is None else labels[keep]


def _hold_out_validation(splits: _Splits, spec: Spec) -> None:
    """Move ``data.validation`` of the training datapoints, drawn at random, to validation."""
    fraction = spec.data["validation"]
    if fraction is None:
        return
    try:
        rest, held = datasets.split_indices(
            len(splits.train),
            fraction,
            spec.data["seed"],
            name="data.validation",
            stream=VALIDATION_STREAM,
        )
    except ValueError as error:
        raise SpecError(f"invalid spec: {error}") from None
    labels = splits.train_labels
    splits.valid = _take(splits.train, held)
    splits.valid_labels = None if labels is None else labels[held]
    splits.train = _take(splits.train, rest)
    splits.train_labels = None if labels is None else labels[rest]


def _values(values: Any) -> torch.Tensor:
    return values.probs if isinstance(values, datasets.DynamicBinarization) else values


def _check_against_spec(splits: _Splits, spec: Spec) -> None:
    """What a path holds against what the spec's model needs."""
    shape = tuple(splits.train.shape[1:])
    where = f"data.path = {spec.data['path']!r}"
    is_image = len(shape) == 3 and min(shape[1:]) >= 4
    networks = {
        "model.decoder": spec.model.get("decoder"),
        "guide.encoder": spec.guide.get("encoder"),
    }
    for key, network in networks.items():
        if network is not None and network.get("type") == "conv" and not is_image:
            raise SpecError(
                f"invalid spec: {key}.type = 'conv' needs images [C, H, W] with H, W >= 4, but "
                f"{where} holds datapoints of shape {list(shape)}; allowed: {key}.type = 'mlp'"
            )
    if spec.kind.conditional(spec.model) and splits.train_labels is None:
        raise SpecError(
            f"invalid spec: model.conditional = true needs labels, and {where} has none; give "
            "them as y (or train_y, test_y) in a .npz, as data.label_column in a table, or as "
            "class folders of images"
        )
    if spec.data["binarize"] == "dynamic":
        return  # binary draws: every likelihood here takes 0 and 1
    likelihood = likelihoods.as_likelihood(spec.model["likelihood"], shape)
    for split in ("train", "valid", "test"):
        values = getattr(splits, split)
        if values is None:
            continue
        try:
            likelihood.check_data(_values(values))
        except ValueError as error:
            raise _unfit(spec, where, split, _values(values), error) from None


def _unfit(spec: Spec, where: str, split: str, values: torch.Tensor, error: Exception) -> SpecError:
    """The error for a likelihood that does not fit the data, with the ones that do."""
    shape = tuple(values.shape[1:])
    fits = []
    for name in likelihoods.LIKELIHOODS:
        try:
            likelihoods.make_likelihood(name, shape).check_data(values)
        except ValueError:
            continue
        fits.append(name)
    kind = datasets.VALUE_KINDS[datasets.value_kind(values)]
    name = spec.model["likelihood"]["name"]
    split_name = {"valid": "validation"}.get(split, split)
    return SpecError(
        f"invalid spec: model.likelihood = {name!r} does not fit {where}: {error} (in the "
        f"{split_name} split). The data are {kind}; allowed likelihoods: {fits}"
    )
