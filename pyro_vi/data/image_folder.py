"""A folder of PNG or JPEG images, read with Pillow, as float32 ``[N, C, H, W]`` in [0, 1].

Two layouts, as torchvision's ``ImageFolder`` has them::

    faces/                      faces/
      0001.png                    cat/0001.png   <- label 0 (class folders sorted by name)
      0002.jpg                    dog/0002.png   <- label 1
      ...                         ...
    unlabelled                  labelled

Every image is converted to RGB (3 channels) or grey (1 channel), as ``color`` says; by default
grey when every image is stored grey, else RGB (an alpha channel is dropped). Images must all
have one size unless ``image_size = (H, W)`` is given, which resizes each one (bilinear, with
antialiasing when it shrinks). Files with other suffixes and hidden files are ignored.

Pillow is installed with matplotlib, a dependency of this package; it is imported only here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._checks import check_choice, check_int, describe
from .errors import DatasetNotFoundError, MissingDependencyError, corrupted
from .values import as_data_tensor

__all__ = ["COLORS", "IMAGE_SUFFIXES", "read_image_folder"]

#: The image file suffixes read (case-insensitive).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: The values of ``color``.
COLORS = ("rgb", "grey")
#: Pillow modes with 8 bits per channel, which convert to RGB and L without loss of range.
_EIGHT_BIT_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "La")
_GREY_MODES = ("1", "L", "LA", "La")
_HINT = "Replace the file or remove it from the folder."

Split = tuple[torch.Tensor, torch.Tensor | None]


def read_image_folder(
    folder: Path,
    *,
    image_size: Sequence[int] | None = None,
    color: str | None = None,
) -> Split:
    """The images of ``folder`` (and their labels, with class subfolders).

    Arguments:
        folder: An existing folder of images, or of class folders of images.
        image_size: ``(height, width)`` to resize every image to, or ``None`` to keep the size
            (then every image must have the same one).
        color: ``"rgb"``, ``"grey"``, or ``None``: grey when every image is grey, else RGB.

    Returns:
        ``(images, labels)``: float32 ``[N, C, H, W]`` in [0, 1] (C = 3 or 1) in file-name
        order, and int64 ``[N]`` class indices (``None`` without class folders).

    Raises:
        DatasetNotFoundError: the folder does not exist or holds no image.
        DatasetCorruptedError: a file Pillow cannot read, or one that is not 8-bit.
        ValueError: files beside class folders, or images of different sizes without
            ``image_size``.

    Example:
        >>> images, labels = read_image_folder(Path("faces"), image_size=(32, 32), color="rgb")
        >>> images.shape[1:]
        torch.Size([3, 32, 32])
    """
    size = _check_size(image_size)
    if color is not None:
        check_choice("color", color, COLORS)
    files, labels = _image_files(folder)
    pil = _pillow(folder)
    # Two passes: the headers first (cheap, no pixels) to settle the colour and the size, then
    # one image decoded at a time, so that memory holds the result and a single image.
    headers = [_header(pil, path) for path in files]
    if color is None:
        color = "grey" if all(mode in _GREY_MODES for mode, _ in headers) else "rgb"
    if size is None:
        size = _common_size(folder, files, [image_size for _, image_size in headers])
    pixels = np.stack([_pixels(pil, path, size, color) for path in files])
    images = as_data_tensor(f"the images of {str(folder)!r}", pixels) / 255.0
    return images, labels


def _check_size(image_size: Sequence[int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if isinstance(image_size, str) or not isinstance(image_size, Sequence) or len(image_size) != 2:
        raise TypeError(f"image_size must be [height, width], got {describe(image_size)}")
    height = check_int("image_size[0]", image_size[0], minimum=1)
    return height, check_int("image_size[1]", image_size[1], minimum=1)


def _is_image(path: Path) -> bool:
    # Hidden files are skipped at every level: macOS writes "._name.png" metadata files beside
    # the images of an archive, which carry an image suffix but are no image.
    hidden = path.name.startswith(".")
    return not hidden and path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _image_files(folder: Path) -> tuple[list[Path], torch.Tensor | None]:
    """The image files in reading order and, with class folders, their labels."""
    if not folder.is_dir():
        raise DatasetNotFoundError(f"image folder {str(folder)!r} does not exist")
    entries = sorted(path for path in folder.iterdir() if not path.name.startswith("."))
    files = [path for path in entries if _is_image(path)]
    classes = [path for path in entries if path.is_dir()]
    if files and classes:
        raise ValueError(
            f"image folder {str(folder)!r} holds both images ({files[0].name}, ...) and folders "
            f"({classes[0].name}, ...); put every image in a class folder (labelled) or none "
            "(unlabelled)"
        )
    labels = None
    if classes:
        per_class = [sorted(p for p in c.iterdir() if _is_image(p)) for c in classes]
        empty = [c.name for c, found in zip(classes, per_class, strict=True) if not found]
        if empty:
            raise ValueError(
                f"image folder {str(folder)!r}: the class folder(s) {empty} hold no "
                f"{'/'.join(IMAGE_SUFFIXES)} image"
            )
        files = [path for found in per_class for path in found]
        counts = [len(found) for found in per_class]
        labels = torch.repeat_interleave(torch.arange(len(classes)), torch.tensor(counts))
    if not files:
        raise DatasetNotFoundError(
            f"image folder {str(folder)!r} holds no {'/'.join(IMAGE_SUFFIXES)} image (nor "
            "class folders of them)"
        )
    return files, labels


def _pillow(folder: Path) -> Any:
    """The ``PIL.Image`` module, or the error that says to install Pillow."""
    try:
        from PIL import Image
    except ImportError:
        raise MissingDependencyError(
            f"reading the images of {str(folder)!r} needs Pillow: pip install pillow"
        ) from None
    return Image


def _unreadable(path: Path, error: Exception) -> Exception:
    return corrupted(path, f"Pillow cannot read it as an image ({error}).", hint=_HINT)


def _header(pil: Any, path: Path) -> tuple[str, tuple[int, int]]:
    """The Pillow mode and (width, height) of an image file, without decoding its pixels."""
    try:
        with pil.open(path) as image:
            mode, size = image.mode, image.size
    except (OSError, SyntaxError, ValueError, pil.DecompressionBombError) as error:
        raise _unreadable(path, error) from None
    if mode not in _EIGHT_BIT_MODES:
        raise corrupted(
            path,
            f"it has the Pillow mode {mode!r}; allowed: 8 bits per channel (grey, RGB, RGBA, "
            f"palette: {list(_EIGHT_BIT_MODES)})",
            hint="Save it as an 8-bit PNG or JPEG.",
        )
    return mode, size


def _common_size(folder: Path, files: list[Path], sizes: list[tuple[int, int]]) -> tuple[int, int]:
    """The one (height, width) of every image, or the error that asks for a resize."""
    first = sizes[0]
    for path, size in zip(files, sizes, strict=True):
        if size != first:
            raise ValueError(
                f"the images of {str(folder)!r} differ in size: {files[0].name} is "
                f"{first[1]}x{first[0]} (height x width), {path.name} is {size[1]}x{size[0]}; "
                "set image_size = [height, width] (data.image_size in a spec) to resize them"
            )
    return first[1], first[0]


def _pixels(pil: Any, path: Path, size: tuple[int, int], color: str) -> np.ndarray:
    """One image file as uint8 ``[C, H, W]`` in the wanted colour and size."""
    height, width = size
    try:
        with pil.open(path) as image:
            # Decoded here: a truncated file fails before training, not in the middle of it.
            converted = image.convert("RGB" if color == "rgb" else "L")
    except (OSError, SyntaxError, ValueError, pil.DecompressionBombError) as error:
        raise _unreadable(path, error) from None
    if converted.size != (width, height):
        # Pillow's bilinear filter widens with the scale factor: it antialiases when shrinking.
        converted = converted.resize((width, height), pil.Resampling.BILINEAR)
    array = np.asarray(converted, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
