""".npz and .npy files: keys, shapes, labels, and every way such a file can be wrong."""

import numpy as np
import pytest
import torch

from pyro_vi.data import ARRAY_KEYS, DatasetCorruptedError
from pyro_vi.data.arrays import read_arrays


def test_the_documented_keys():
    assert list(ARRAY_KEYS) == [
        "x",
        "y",
        "train",
        "test",
        "validation",
        "train_y",
        "test_y",
        "validation_y",
    ]


def test_x_and_y(tmp_path):
    counts = np.arange(12).reshape(4, 3)
    np.savez(tmp_path / "cells.npz", x=counts, y=np.array([0, 1, 1, 0]))
    splits = read_arrays(tmp_path / "cells.npz")
    values, labels = splits["x"]
    assert set(splits) == {"x"} and values.dtype == torch.float32
    assert torch.equal(values, torch.from_numpy(counts).float())
    assert torch.equal(labels, torch.tensor([0, 1, 1, 0]))


def test_splits_with_labels(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        split: rng.random((n, 5)) for split, n in (("train", 6), ("test", 3), ("validation", 2))
    }
    labels = {f"{split}_y": np.zeros(len(a), dtype=int) for split, a in arrays.items()}
    np.savez(tmp_path / "d.npz", **arrays, **labels)
    splits = read_arrays(tmp_path / "d.npz")
    assert {key: len(values) for key, (values, _) in splits.items()} == {
        "train": 6,
        "test": 3,
        "validation": 2,
    }
    assert all(labels is not None for _, labels in splits.values())


def test_image_arrays(tmp_path):
    grey = np.full((2, 8, 8), 255, dtype=np.uint8)
    np.save(tmp_path / "grey.npy", grey)
    values, labels = read_arrays(tmp_path / "grey.npy")["x"]
    assert values.shape == (2, 1, 8, 8) and float(values.max()) == 1.0 and labels is None
    rgb = np.random.default_rng(0).random((3, 3, 6, 6))
    np.savez(tmp_path / "rgb.npz", x=rgb)
    assert read_arrays(tmp_path / "rgb.npz")["x"][0].shape == (3, 3, 6, 6)
    # An integer table is counts, not pixels: 255 stays 255.
    np.savez(tmp_path / "table.npz", x=np.full((2, 4), 255, dtype=np.uint8))
    assert float(read_arrays(tmp_path / "table.npz")["x"][0].max()) == 255.0


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"data": np.zeros((2, 2))}, r"unknown key\(s\) \['data'\]; allowed keys: \['x', 'y'"),
        ({"x": np.zeros((2, 2)), "train": np.zeros((2, 2))}, "both 'x' and the split key"),
        ({"test": np.zeros((2, 2))}, "neither 'x' nor 'train'"),
        ({"x": np.zeros((2, 2)), "test_y": np.zeros(2)}, "labels 'test_y' without the data"),
        (
            {"train": np.zeros((2, 2)), "test": np.zeros((2, 2)), "train_y": np.zeros(2)},
            r"labels some splits but not others: it lacks \['test_y'\]",
        ),
        ({"x": np.zeros(5)}, r"'x' .* has shape \[5\]; allowed: \[N, D\].*reshape it to \[N, 1\]"),
        ({"x": np.zeros((2, 2, 2, 2, 2))}, r"has shape \[2, 2, 2, 2, 2\]; allowed"),
        ({"x": np.zeros((2, 28, 28, 3))}, r"looks channel-last .* numpy.moveaxis"),
        ({"x": np.array([[1.0, np.nan]])}, r"'x' in .* holds 1 NaN or infinite value"),
        ({"x": np.zeros((0, 3))}, r"'x' in .* is empty"),
        ({"x": np.zeros((2, 3)), "y": np.array([0, 1, 2])}, r"'y' in .* must have shape \[2\]"),
    ],
    ids=[
        "unknown-key",
        "x-and-splits",
        "no-data",
        "labels-without-data",
        "labels-for-some",
        "one-axis",
        "five-axes",
        "channel-last",
        "nan",
        "empty",
        "label-count",
    ],
)
def test_bad_files(tmp_path, arrays, match):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=match):
        read_arrays(tmp_path / "bad.npz")


def test_text_arrays_are_a_type_error(tmp_path):
    np.savez(tmp_path / "bad.npz", x=np.array([["a", "b"]]))
    with pytest.raises(TypeError, match="must hold numbers"):
        read_arrays(tmp_path / "bad.npz")


@pytest.mark.parametrize(
    "content",
    [b"not a numpy file at all", b"PK\x03\x04truncated zip", b""],
    ids=["text", "truncated-zip", "empty"],
)
def test_corrupt_files(tmp_path, content):
    path = tmp_path / "broken.npz"
    path.write_bytes(content)
    with pytest.raises(DatasetCorruptedError, match="broken.npz.*numpy cannot read it"):
        read_arrays(path)


def test_truncated_npz(tmp_path):
    path = tmp_path / "cut.npz"
    np.savez_compressed(path, x=np.random.default_rng(0).random((50, 50)))
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(DatasetCorruptedError, match="numpy cannot read it"):
        read_arrays(path)


def test_object_arrays_are_refused_without_unpickling(tmp_path):
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(DatasetCorruptedError, match="numpy cannot read it"):
        read_arrays(tmp_path / "objects.npz")
