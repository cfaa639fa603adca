"""The embedded default dataset: scikit-learn's 8x8 handwritten digits (no files, no download).

1797 images of 8x8 pixels with 17 grey levels (0..16), from the UCI "Optical Recognition of
Handwritten Digits" set, shipped inside scikit-learn. Small enough that a model trains on it in
seconds on a CPU, so examples, tests and smoke runs use it when no other data is at hand.
"""

from __future__ import annotations

import numpy as np
import torch

from .._checks import check_float, check_int
from .container import ImageData

__all__ = ["load_digits"]

# sklearn stores the pixels as integers 0..16; dividing by this maps them onto [0, 1].
_MAX_GREY_LEVEL = 16.0


def load_digits(*, test_fraction: float = 0.2, seed: int = 0) -> ImageData:
    """Load scikit-learn's handwritten digits as an :class:`ImageData` split at random.

    The split is a permutation drawn from ``numpy.random.default_rng(seed)``: the first
    ``round(test_fraction * 1797)`` images of it form the test set, the rest the training set.
    The same ``seed`` always gives the same split; the global torch and numpy RNGs are untouched.

    Arguments:
        test_fraction: the share of images held out for testing, strictly between 0 and 1
            (both splits must keep at least one image).
        seed: seeds the permutation that splits the images.

    Returns:
        An :class:`ImageData` named ``"digits"``: float32 images ``[N, 1, 8, 8]`` in ``[0, 1]``
        (grey level / 16) and int64 labels 0..9; no validation split.

    Example:
        >>> data = load_digits(test_fraction=0.25, seed=1)
        >>> data.image_shape, len(data.train) + len(data.test)
        ((1, 8, 8), 1797)
    """
    test_fraction = check_float(
        "test_fraction", test_fraction, minimum=0.0, maximum=1.0, exclusive_minimum=True
    )
    seed = check_int("seed", seed, minimum=0)

    # Imported here: sklearn takes about a second to import and only this loader needs it.
    from sklearn.datasets import load_digits as sklearn_load_digits

    bunch = sklearn_load_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) / _MAX_GREY_LEVEL).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))

    count = len(labels)
    num_test = round(test_fraction * count)
    if not 1 <= num_test <= count - 1:
        raise ValueError(
            f"test_fraction={test_fraction} leaves {num_test} of {count} images for testing; "
            f"both the train and test splits need at least one image"
        )
    order = torch.from_numpy(np.random.default_rng(seed).permutation(count))
    test, train = order[:num_test], order[num_test:]
    return ImageData(
        "digits",
        images[train],
        images[test],
        train_labels=labels[train],
        test_labels=labels[test],
    )
