"""load_binarized_mnist / read_amat: the shared files (fast path) and small files written here."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from pyro_vi.data import (
    DatasetCorruptedError,
    DatasetNotFoundError,
    load_binarized_mnist,
    read_amat,
)
from pyro_vi.data import binarized_mnist as binarized_module

NAMES = [f"binarized_mnist_{split}.amat" for split in ("train", "valid", "test")]
ROWS = np.random.default_rng(0).integers(0, 2, size=(3, 784), dtype=np.uint8)


def _text(rows: np.ndarray, separator: str = " ", line_end: str = "\n") -> str:
    return "".join(separator.join(map(str, row)) + line_end for row in rows)


@pytest.fixture
def fast_path_only(monkeypatch):
    """Make the slow fallback parser fail loudly, to prove the fast path handled a file."""

    def refuse(*arguments):
        raise AssertionError("the general (slow) parser was used")

    monkeypatch.setattr(binarized_module, "_parse_general", refuse)


def test_shared_test_file_reads_on_the_fast_path(binarized_mnist_dir, fast_path_only):
    values = read_amat(binarized_mnist_dir / "binarized_mnist_test.amat")
    assert values.shape == (10000, 784) and values.dtype == np.uint8
    assert set(np.unique(values).tolist()) == {0, 1}
    # About 13% of MNIST pixels are "on" (the grey-level mean is 0.13).
    assert 0.10 < values.mean() < 0.16


def test_full_load(binarized_mnist_dir):
    data = load_binarized_mnist(binarized_mnist_dir)
    assert data.name == "binarized-mnist" and data.image_shape == (1, 28, 28)
    assert (len(data.train), len(data.valid), len(data.test)) == (50000, 10000, 10000)
    assert data.train_labels is None and data.valid_labels is None and data.test_labels is None
    assert data.train.dtype == torch.float32
    for images in (data.train, data.valid, data.test):
        assert torch.equal(images, images.round()) and images.min() == 0 and images.max() == 1


def test_canonical_layout(tmp_path, fast_path_only):
    path = tmp_path / "small.amat"
    path.write_text(_text(ROWS))
    assert len(path.read_bytes()) == 3 * 1568  # the layout the fast path expects
    np.testing.assert_array_equal(read_amat(path), ROWS)


@pytest.mark.parametrize(
    ("separator", "line_end", "tail"),
    [
        (" ", "\r\n", ""),  # Windows line ends
        (" ", " \n", ""),  # a trailing space on each line
        ("  ", "\n", ""),  # double spaces
        ("\t", "\n", ""),  # tabs
        (" ", "\n", "\n\n"),  # blank lines at the end
    ],
    ids=["crlf", "trailing-space", "double-space", "tabs", "blank-lines-at-end"],
)
def test_other_layouts_take_the_fallback(tmp_path, separator, line_end, tail):
    path = tmp_path / "small.amat"
    path.write_bytes((_text(ROWS, separator, line_end) + tail).encode())
    np.testing.assert_array_equal(read_amat(path), ROWS)


def test_last_line_without_newline(tmp_path):
    path = tmp_path / "small.amat"
    path.write_text(_text(ROWS)[:-1])
    np.testing.assert_array_equal(read_amat(path), ROWS)


@pytest.mark.parametrize("line_end", ["\n", "\r\n"], ids=["canonical", "crlf"])
@pytest.mark.parametrize("token", ["2", "x", "01", "-1"])
def test_bad_token_is_located(tmp_path, line_end, token):
    lines = _text(ROWS, line_end=line_end).split(line_end)
    values = lines[1].split(" ")
    values[9] = token  # line 2, value 10
    lines[1] = " ".join(values)
    path = tmp_path / "bad.amat"
    path.write_bytes(line_end.join(lines).encode())
    with pytest.raises(DatasetCorruptedError) as caught:
        read_amat(path)
    message = str(caught.value)
    assert str(path) in message
    assert f"line 2, value 10: expected '0' or '1', found {token!r}" in message


def test_short_line_is_located(tmp_path):
    lines = _text(ROWS).splitlines()
    lines[2] = lines[2][:-2]  # drop the last value of line 3
    path = tmp_path / "short.amat"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetCorruptedError, match="line 3: expected 784 values, found 783"):
        read_amat(path)


@pytest.mark.parametrize("content", [b"", b"\n\n", b"   "], ids=["empty", "newlines", "spaces"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "empty.amat"
    path.write_bytes(content)
    with pytest.raises(DatasetCorruptedError, match="empty file"):
        read_amat(path)


def test_num_values(tmp_path):
    path = tmp_path / "tiny.amat"
    path.write_text("0 1 1\n1 0 0\n")
    np.testing.assert_array_equal(read_amat(path, num_values=3), [[0, 1, 1], [1, 0, 0]])


@pytest.fixture
def small_copy(tmp_path):
    """Three small, well-formed files under the real names (not the published bytes)."""
    for name, count in zip(NAMES, (3, 2, 1), strict=True):
        (tmp_path / name).write_text(_text(ROWS[:count]))
    return tmp_path


def test_small_files_load_without_verify(small_copy):
    data = load_binarized_mnist(small_copy, verify=False)
    assert (len(data.train), len(data.valid), len(data.test)) == (3, 2, 1)
    assert torch.equal(data.train.flatten(1), torch.from_numpy(ROWS).float())


def test_verify_checks_the_published_sha256(small_copy):
    with pytest.raises(DatasetCorruptedError) as caught:
        load_binarized_mnist(small_copy)
    message = str(caught.value)
    assert "binarized_mnist_train.amat" in message and "SHA-256" in message
    assert binarized_module.BINARIZED_MNIST_SHA256["binarized_mnist_train.amat"] in message
    assert "verify=False" in message and binarized_module.BINARIZED_MNIST_URL in message


def test_verify_checks_counts(small_copy, monkeypatch):
    # Pretend the small files are the published ones, so that the count check is reached.
    table = {name: hashlib.sha256((small_copy / name).read_bytes()).hexdigest() for name in NAMES}
    monkeypatch.setattr(binarized_module, "BINARIZED_MNIST_SHA256", table)
    with pytest.raises(DatasetCorruptedError, match="expected 50000 images"):
        load_binarized_mnist(small_copy)


def test_missing_file_and_directory(small_copy):
    (small_copy / "binarized_mnist_valid.amat").unlink()
    with pytest.raises(DatasetNotFoundError) as caught:
        load_binarized_mnist(small_copy)
    message = str(caught.value)
    assert "lacks binarized_mnist_valid.amat." in message and str(small_copy) in message
    assert binarized_module.BINARIZED_MNIST_URL in message and "download=True" not in message
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_binarized_mnist(small_copy / "nowhere")
