"""load_digits: the embedded default dataset."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn.datasets
import torch

from pyro_vi.data import ImageData, load_digits


@pytest.fixture(scope="module")
def digits() -> ImageData:
    return load_digits()


def test_shapes_dtypes_and_counts(digits):
    assert digits.name == "digits"
    assert digits.image_shape == (1, 8, 8)
    assert len(digits.train) + len(digits.test) == 1797
    assert len(digits.test) == round(0.2 * 1797)
    assert digits.train.dtype == torch.float32 and digits.train_labels.dtype == torch.int64
    assert digits.valid is None and digits.valid_labels is None


def test_values_are_grey_levels_in_unit_interval(digits):
    pixels = torch.cat([digits.train, digits.test])
    assert pixels.min() == 0.0 and pixels.max() == 1.0
    # sklearn stores 17 levels 0..16, so every value is a multiple of 1/16 exactly.
    assert torch.equal(pixels * 16, (pixels * 16).round())


def test_labels_stay_with_their_images(digits):
    reference = sklearn.datasets.load_digits()
    originals = reference.images.reshape(1797, 64).astype(np.float32) / 16
    labels_of = {}
    for image, label in zip(originals, reference.target, strict=True):
        # A few images occur twice in the set, so an image maps to a set of labels.
        labels_of.setdefault(image.tobytes(), set()).add(int(label))
    for images, labels in ((digits.train, digits.train_labels), (digits.test, digits.test_labels)):
        for image, label in zip(images.flatten(1).numpy(), labels.tolist(), strict=True):
            assert label in labels_of[image.tobytes()]


def test_split_is_a_partition_fixed_by_the_seed():
    first, again, other = load_digits(seed=5), load_digits(seed=5), load_digits(seed=6)
    assert torch.equal(first.train, again.train) and torch.equal(first.test, again.test)
    assert not torch.equal(first.test_labels, other.test_labels)
    # Same images overall, whatever the seed: compare sorted flattened pixel sums.
    sums = torch.cat([first.train, first.test]).sum((1, 2, 3)).sort().values
    other_sums = torch.cat([other.train, other.test]).sum((1, 2, 3)).sort().values
    assert torch.equal(sums, other_sums)


def test_test_fraction_sets_the_split_size():
    data = load_digits(test_fraction=0.5)
    assert len(data.test) == round(0.5 * 1797) and len(data.train) == 1797 - len(data.test)


@pytest.mark.parametrize(
    ("options", "error", "fragment"),
    [
        ({"test_fraction": 0.0}, ValueError, "test_fraction must be >"),
        ({"test_fraction": 1.5}, ValueError, "test_fraction must be <="),
        ({"test_fraction": 1.0}, ValueError, "at least one image"),
        ({"test_fraction": 1e-5}, ValueError, "at least one image"),
        ({"test_fraction": "0.2"}, TypeError, "test_fraction must be a real number"),
        ({"seed": -1}, ValueError, "seed must be an integer >= 0"),
        ({"seed": 1.5}, TypeError, "seed must be an integer"),
    ],
)
def test_bad_arguments_are_refused(options, error, fragment):
    with pytest.raises(error) as caught:
        load_digits(**options)
    assert fragment in str(caught.value)
