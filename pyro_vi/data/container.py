"""What every loader returns: :class:`ImageData`, and :class:`DynamicBinarization` for binary data.

Images are float32 tensors of shape ``[N, C, H, W]`` with values in ``[0, 1]``: channel first so
that a conv net takes them as they are and an MLP after ``x.flatten(1)``. Labels are int64 ``[N]``.

A split is either a plain tensor or a :class:`DynamicBinarization`. Both answer ``len(data)``,
``data.shape`` and ``data[index]`` for an int, a slice or a LongTensor of indices, so a training
loop that batches with ``data[batch_indices]`` takes either without knowing which it has.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import KW_ONLY, dataclass

import torch
from torch import Tensor

from .._checks import describe

__all__ = ["DynamicBinarization", "ImageData", "Images"]


class DynamicBinarization:
    r"""Binary images drawn afresh, pixel by pixel, every time they are indexed.

    Holds grey levels :math:`p \in [0, 1]` and returns :math:`x \sim \mathrm{Bernoulli}(p)` on each
    ``data[index]``, so every epoch sees a new binarization of every image. This is the
    "dynamically binarized MNIST" of the IWAE paper's main table. Models overfit it far less than
    a fixed binarization, and likelihoods on the two are not comparable.

    Draws use the global torch generator of the device the grey levels live on, so
    ``torch.manual_seed`` makes them reproducible.

    Arguments:
        probs: grey levels, a floating-point tensor with values in ``[0, 1]`` (usually
            ``[N, 1, H, W]``).

    References:
        Burda, Grosse & Salakhutdinov, *Importance Weighted Autoencoders* (ICLR 2016).

    Example:
        >>> data = DynamicBinarization(torch.full((4, 1, 2, 2), 0.5))
        >>> batch = data[torch.tensor([0, 2])]  # a fresh {0, 1} draw of images 0 and 2
        >>> batch.shape
        torch.Size([2, 1, 2, 2])
    """

    def __init__(self, probs: Tensor) -> None:
        if not isinstance(probs, Tensor) or not probs.is_floating_point():
            raise TypeError(f"probs must be a floating-point torch.Tensor, got {describe(probs)}")
        if probs.dim() == 0:
            raise ValueError("probs must have at least one dimension (the images), got a scalar")
        # torch.bernoulli would only fail later, mid-training, on an out-of-range value.
        if probs.numel() and not bool(((probs >= 0) & (probs <= 1)).all()):
            low, high = probs.min().item(), probs.max().item()
            raise ValueError(f"probs must lie in [0, 1], got values in [{low}, {high}]")
        self.probs = probs

    def __len__(self) -> int:
        return self.probs.shape[0]

    def __getitem__(self, index: int | slice | Tensor) -> Tensor:
        return torch.bernoulli(self.probs[index])

    @property
    def shape(self) -> torch.Size:
        """The shape of one full draw, the same as ``probs.shape``."""
        return self.probs.shape

    @property
    def device(self) -> torch.device:
        """The device the grey levels live on (and draws are made on)."""
        return self.probs.device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the draws, the same as ``probs.dtype``."""
        return self.probs.dtype

    def dim(self) -> int:
        """The number of dimensions, like ``Tensor.dim()``."""
        return self.probs.dim()

    def size(self, dim: int | None = None) -> torch.Size | int:
        """The shape, or one of its sizes, like ``Tensor.size()``."""
        return self.probs.size() if dim is None else self.probs.size(dim)

    def to(self, device: torch.device | str) -> DynamicBinarization:
        """A copy whose grey levels live on ``device`` (``self`` if they already do)."""
        probs = self.probs.to(device)
        if probs is self.probs:
            return self
        # A shallow copy, not the constructor: the values were checked already, and re-checking
        # them would force a device sync (or fail outright on the "meta" device).
        moved = copy.copy(self)
        moved.probs = probs
        return moved

    def __repr__(self) -> str:
        shape = list(self.probs.shape)
        return f"DynamicBinarization(shape={shape}, dtype={self.dtype}, device={self.device})"


#: One split of images: a tensor, or grey levels binarized afresh on each indexing.
Images = Tensor | DynamicBinarization


@dataclass(eq=False)  # identity equality: `==` on tensors has no single truth value
class ImageData:
    """A dataset of images split into train, test and (optionally) validation sets.

    Images are float32 ``[N, C, H, W]`` in ``[0, 1]``, each split either a tensor or a
    :class:`DynamicBinarization`; labels are int64 ``[N]``, or ``None`` for unlabelled data.
    The optional fields are keyword-only, so a construction never depends on field order.

    Arguments:
        name: the dataset's name, as in :data:`pyro_vi.data.DATASETS` (``"mnist"``).
        train: the training images.
        test: the test images.
        train_labels: labels of ``train``, or ``None``.
        test_labels: labels of ``test``, or ``None``.
        valid: the validation images, or ``None`` where the dataset has no validation split.
        valid_labels: labels of ``valid``, or ``None``.

    Example:
        >>> data = ImageData("toy", torch.rand(10, 1, 8, 8), torch.rand(5, 1, 8, 8))
        >>> data.image_shape
        (1, 8, 8)
    """

    name: str
    train: Images
    test: Images
    _: KW_ONLY
    train_labels: Tensor | None = None
    test_labels: Tensor | None = None
    valid: Images | None = None
    valid_labels: Tensor | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"name must be a str, got {describe(self.name)}")
        for split in ("train", "test", "valid"):
            images = getattr(self, split)
            if images is None and split == "valid":
                continue
            _check_images(split, images)
            if images.shape[1:] != self.train.shape[1:]:
                raise ValueError(
                    f"{split} images have shape {list(images.shape[1:])} per image but train "
                    f"images have {list(self.train.shape[1:])}; every split must agree"
                )
            _check_labels(f"{split}_labels", getattr(self, f"{split}_labels"), images)
        if self.valid is None and self.valid_labels is not None:
            raise ValueError("valid_labels was given but valid is None")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """The shape of one image, ``(channels, height, width)``."""
        channels, height, width = self.train.shape[1:]
        return (channels, height, width)

    def to(self, device: torch.device | str) -> ImageData:
        """A copy with every tensor (images and labels of every split) moved to ``device``.

        Arguments:
            device: where to move the data, e.g. ``"cuda"``.

        Returns:
            A new :class:`ImageData`; ``self`` is left as it is.

        Example:
            >>> on_gpu = data.to("cuda")
        """
        moved = {
            field.name: value.to(device)
            for field in dataclasses.fields(self)
            if isinstance(value := getattr(self, field.name), (Tensor, DynamicBinarization))
        }
        return dataclasses.replace(self, **moved)

    def __repr__(self) -> str:
        # The dataclass default would print every tensor; shapes are what a reader wants.
        parts = [f"name={self.name!r}"]
        for split in ("train", "valid", "test"):
            images = getattr(self, split)
            if images is None:
                continue
            kind = "dynamic" if isinstance(images, DynamicBinarization) else "tensor"
            labelled = getattr(self, f"{split}_labels") is not None
            parts.append(f"{split}={len(images)} ({kind}{', labelled' if labelled else ''})")
        parts.append(f"image_shape={self.image_shape}")
        parts.append(f"device={self.train.device}")
        return f"ImageData({', '.join(parts)})"


def _check_images(name: str, images: object) -> None:
    if not isinstance(images, (Tensor, DynamicBinarization)):
        raise TypeError(
            f"{name} must be a torch.Tensor or a DynamicBinarization, got {describe(images)}"
        )
    if images.dim() != 4:
        raise ValueError(
            f"{name} must have shape [N, C, H, W] (4 dimensions), got shape {list(images.shape)}"
        )
    if not images.dtype.is_floating_point:
        raise TypeError(f"{name} must hold floating-point values in [0, 1], got {images.dtype}")


def _check_labels(name: str, labels: object, images: Images) -> None:
    if labels is None:
        return
    if not isinstance(labels, Tensor):
        raise TypeError(f"{name} must be an int64 tensor of shape [N], got {describe(labels)}")
    if labels.dtype != torch.int64 or labels.dim() != 1:
        raise TypeError(
            f"{name} must be an int64 tensor of shape [N], "
            f"got a {labels.dtype} tensor of shape {list(labels.shape)}"
        )
    if len(labels) != len(images):
        raise ValueError(f"{name} has {len(labels)} labels for {len(images)} images")
