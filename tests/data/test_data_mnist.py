"""load_mnist / load_fashion_mnist: the shared copy of the real files, and small files written here.

The full datasets load in about half a second each; each is loaded once per module.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from pyro_vi.data import (
    FASHION_MNIST_MD5,
    MNIST_MD5,
    DatasetCorruptedError,
    DatasetNotFoundError,
    DynamicBinarization,
    load,
    load_fashion_mnist,
    load_mnist,
)
from pyro_vi.data import mnist as mnist_module
from pyro_vi.data.download import md5sum
from pyro_vi.data.mnist import TEST_IMAGES, TEST_LABELS, TRAIN_LABELS


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    return load("mnist", mnist_dir.parent)  # also checks load's <root>/mnist layout


@pytest.fixture(scope="module")
def mnist_dynamic(mnist_dir):
    return load_mnist(mnist_dir, binarize="dynamic")


@pytest.fixture
def mnist_copy(tmp_path, mnist_dir):
    """A folder of links to the real MNIST files, for a test to replace or remove one."""
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in MNIST_MD5:
        (folder / name).symlink_to(mnist_dir / name)
    return folder


def test_shapes_dtypes_counts(mnist):
    assert mnist.name == "mnist" and mnist.image_shape == (1, 28, 28)
    assert mnist.train.shape == (60000, 1, 28, 28) and mnist.test.shape == (10000, 1, 28, 28)
    assert mnist.train.dtype == torch.float32 and mnist.train_labels.dtype == torch.int64
    assert mnist.train_labels.shape == (60000,) and mnist.test_labels.shape == (10000,)
    assert mnist.valid is None and mnist.valid_labels is None


def test_values_and_labels(mnist):
    for images in (mnist.train, mnist.test):
        assert images.min() == 0.0 and images.max() == 1.0
    sample = mnist.test[:100]
    assert torch.allclose(sample * 255, (sample * 255).round(), atol=1e-4)  # pixel / 255
    # The first digits of each file are well known: 5 0 4 1 (train) and 7 2 1 0 (test).
    assert mnist.train_labels[:4].tolist() == [5, 0, 4, 1]
    assert mnist.test_labels[:4].tolist() == [7, 2, 1, 0]
    assert torch.bincount(mnist.train_labels).tolist()[1] == 6742  # the most common digit
    # MNIST's mean pixel intensity is 0.1307 (the constant everyone normalizes with).
    assert abs(mnist.train.mean().item() - 0.1307) < 1e-3


def test_dynamic_binarization(mnist, mnist_dynamic):
    assert isinstance(mnist_dynamic.train, DynamicBinarization)
    assert isinstance(mnist_dynamic.test, DynamicBinarization)
    assert torch.equal(mnist_dynamic.train.probs, mnist.train)
    assert torch.equal(mnist_dynamic.test_labels, mnist.test_labels)
    index = torch.arange(1000)
    first, second = mnist_dynamic.train[index], mnist_dynamic.train[index]
    assert first.shape == (1000, 1, 28, 28)
    assert set(first.unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(first, second)
    # 784000 Bernoulli pixels with mean ~0.13: standard error ~4e-4, so 5e-3 is > 10 of them.
    assert abs(first.mean().item() - mnist.train[index].mean().item()) < 5e-3


def test_fashion_mnist(fashion_mnist_dir):
    data = load_fashion_mnist(fashion_mnist_dir)
    assert data.name == "fashion-mnist"
    assert data.train.shape == (60000, 1, 28, 28) and data.test.shape == (10000, 1, 28, 28)
    assert data.train.min() >= 0.0 and data.train.max() <= 1.0
    assert data.train_labels[:3].tolist() == [9, 0, 0]  # ankle boot, T-shirt, T-shirt
    assert torch.bincount(data.test_labels).tolist() == [1000] * 10  # balanced classes


def test_published_md5_of_the_shared_files(mnist_dir, fashion_mnist_dir):
    for folder, table in ((mnist_dir, MNIST_MD5), (fashion_mnist_dir, FASHION_MNIST_MD5)):
        for name, md5 in table.items():
            assert md5sum(folder / name) == md5, folder / name


def test_wrong_md5(mnist_copy, mnist_dir):
    name = TEST_LABELS
    data = bytearray((mnist_dir / name).read_bytes())
    data[100] ^= 0x01
    (mnist_copy / name).unlink()
    (mnist_copy / name).write_bytes(bytes(data))
    with pytest.raises(DatasetCorruptedError) as caught:
        load_mnist(mnist_copy)
    message = str(caught.value)
    assert name in message and MNIST_MD5[name] in message and md5sum(mnist_copy / name) in message
    assert "download it again" in message and "verify=False" in message


def test_missing_file(mnist_copy):
    (mnist_copy / TRAIN_LABELS).unlink()
    with pytest.raises(DatasetNotFoundError) as caught:
        load_mnist(mnist_copy)
    message = str(caught.value)
    assert isinstance(caught.value, FileNotFoundError)
    assert "lacks train-labels-idx1-ubyte.gz." in message and str(mnist_copy) in message
    assert "t10k-images-idx3-ubyte.gz" in message  # the full list of expected files is given
    assert "ossci-datasets.s3.amazonaws.com" in message and "download=True" in message


def test_missing_directory(tmp_path):
    with pytest.raises(DatasetNotFoundError) as caught:
        load_fashion_mnist(tmp_path / "nowhere")
    message = str(caught.value)
    assert "does not exist" in message and str(tmp_path / "nowhere") in message
    assert "fashion-mnist.s3-website" in message and "download=True" in message


@pytest.mark.parametrize("binarize", ["static", "Dynamic", True, 0.5])
def test_unknown_binarize(tmp_path, binarize):
    # The argument is checked before any file is looked for.
    with pytest.raises(ValueError) as caught:
        load_mnist(tmp_path, binarize=binarize)
    message = str(caught.value)
    assert "binarize must be one of [None, 'dynamic']" in message and repr(binarize) in message


@pytest.mark.parametrize(
    ("options", "fragment"),
    [({"root": 3}, "root must be a directory path"), ({"download": "yes"}, "download must be")],
)
def test_bad_argument_types(tmp_path, options, fragment):
    with pytest.raises(TypeError, match=fragment):
        load_mnist(**{"root": tmp_path, **options})


def test_small_files_load_without_verify(tmp_path, write_small_mnist):
    folder = write_small_mnist(tmp_path / "small", num_train=6, num_test=4)
    data = load_mnist(folder, verify=False, binarize="dynamic")
    assert len(data.train) == 6 and len(data.test) == 4 and data.image_shape == (1, 28, 28)
    with pytest.raises(DatasetCorruptedError, match="published mnist md5"):
        load_mnist(folder)


def test_counts_checked_when_verifying(tmp_path, write_small_mnist, monkeypatch):
    folder = write_small_mnist(tmp_path / "small")
    # Pretend the small files are the published ones, so that the count check is reached.
    table = {name: md5sum(folder / name) for name in MNIST_MD5}
    monkeypatch.setattr(mnist_module, "_MNIST", mnist_module._IdxDataset("mnist", table, ()))
    with pytest.raises(DatasetCorruptedError, match=r"expected images of shape \[60000, 28, 28\]"):
        load_mnist(folder)


def test_images_and_labels_must_agree(tmp_path, write_small_mnist):
    folder = write_small_mnist(tmp_path / "small")
    shutil.copy(folder / TEST_LABELS, folder / TRAIN_LABELS)
    with pytest.raises(DatasetCorruptedError) as caught:
        load_mnist(folder, verify=False)
    assert "one label per image" in str(caught.value) and "found 4" in str(caught.value)


def test_images_file_must_hold_images(tmp_path, write_small_mnist):
    folder = write_small_mnist(tmp_path / "small")
    shutil.copy(folder / TEST_LABELS, folder / TEST_IMAGES)
    with pytest.raises(DatasetCorruptedError, match="expected uint8 images of 3 dimensions"):
        load_mnist(folder, verify=False)
