"""load_path: a user's file or folder into train, test and validation splits, and bad paths."""

import numpy as np
import pytest
import torch
from PIL import Image

from pyro_vi.data import ArrayData, DatasetNotFoundError, load_path, split_indices


def counts(n=50, d=4, seed=0):
    # Distinct rows (a running index in the first column), so that overlaps are only the ones
    # a test makes.
    table = np.random.default_rng(seed).poisson(2.0, size=(n, d))
    table[:, 0] = np.arange(n) + 1000 * seed
    return table


def test_x_is_split_into_train_and_test_at_random(tmp_path):
    np.savez(tmp_path / "cells.npz", x=counts(), y=np.arange(50) % 3)
    data = load_path(tmp_path / "cells.npz")
    assert isinstance(data, ArrayData) and data.name == "cells.npz"
    assert (len(data.train), len(data.test), data.valid) == (40, 10, None)
    assert data.data_shape == (4,) and data.labelled
    rows = torch.cat([data.train[:, 0], data.test[:, 0]]).sort().values
    assert torch.equal(rows, torch.arange(50).float())  # disjoint, and nothing lost
    # The labels travel with their rows.
    assert torch.equal(data.train_labels, data.train[:, 0].long() % 3)
    # The same seed gives the same split; another seed another one.
    assert torch.equal(load_path(tmp_path / "cells.npz").test, data.test)
    assert not torch.equal(load_path(tmp_path / "cells.npz", seed=1).test, data.test)
    assert len(load_path(tmp_path / "cells.npz", test_fraction=0.5).test) == 25


def test_validation_fraction_comes_from_the_training_part(tmp_path):
    np.savez(tmp_path / "cells.npz", x=counts())
    data = load_path(tmp_path / "cells.npz", validation=0.25)
    assert (len(data.train), len(data.valid), len(data.test)) == (30, 10, 10)
    ids = [set(split[:, 0].tolist()) for split in (data.train, data.valid, data.test)]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    # Adding a validation split leaves the test set as it was.
    assert torch.equal(load_path(tmp_path / "cells.npz").test, data.test)


def test_splits_in_the_file_and_in_other_files(tmp_path):
    np.savez(
        tmp_path / "splits.npz",
        train=counts(30),
        test=counts(5, seed=1),
        validation=counts(4, seed=2),
    )
    data = load_path(tmp_path / "splits.npz")
    assert (len(data.train), len(data.test), len(data.valid)) == (30, 5, 4)
    np.savetxt(tmp_path / "train.csv", counts(30), delimiter=",")
    np.savetxt(tmp_path / "test.csv", counts(6, seed=1), delimiter=",")
    np.savez(tmp_path / "val.npz", x=counts(3, seed=2))
    data = load_path(
        tmp_path / "train.csv",
        test_path=tmp_path / "test.csv",
        validation_path=tmp_path / "val.npz",
    )
    assert (len(data.train), len(data.test), len(data.valid)) == (30, 6, 3)


def test_an_image_folder(tmp_path):
    for name in ("a", "b", "c", "d", "e"):
        Image.new("RGB", (8, 6), (10, 20, 30)).save(tmp_path / f"{name}.png")
    data = load_path(tmp_path, image_size=[4, 4], validation=0.25)
    assert data.data_shape == (3, 4, 4) and (len(data.train), len(data.valid), len(data.test)) == (
        3,
        1,
        1,
    )


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        (
            {"path": "missing.npz"},
            DatasetNotFoundError,
            "path = '.*missing.npz': no such file or folder",
        ),
        ({"test_path": "missing.csv"}, DatasetNotFoundError, "test_path = .*no such file"),
        (
            {"path": "cells.txt"},
            ValueError,
            r"unknown file type '.txt'; allowed: a file ending in \['.npz'",
        ),
        ({"test_path": "cells.npz"}, ValueError, "test_path and path are the same file"),
        (
            {"validation_path": "cells.npz"},
            ValueError,
            "validation_path and path are the same file",
        ),
        ({"test_fraction": 0.0}, ValueError, "test_fraction must be > 0.0"),
        (
            {"test_fraction": 0.999},
            ValueError,
            r"test_fraction = 0.999 of 50 .* holds out 50.*empty split",
        ),
        ({"validation": 0.001}, ValueError, r"validation = 0.001 of 40 datapoint\(s\) holds out 0"),
        (
            {"validation": 0.1, "validation_path": "val.npz"},
            ValueError,
            "validation set is given twice",
        ),
        ({"path": "splits.npz", "test_path": "val.npz"}, ValueError, "has its own 'test' split"),
        (
            {"path": "splits.npz", "test_fraction": 0.2},
            ValueError,
            "test_fraction = 0.2, but the test set is given",
        ),
        ({"path": "splits.npz", "validation": 0.1}, ValueError, "validation set is given twice"),
        (
            {"validation_path": "splits.npz"},
            ValueError,
            "validation_path = .* holds the split keys",
        ),
        (
            {"image_size": [4, 4]},
            ValueError,
            "image_size = \\[4, 4\\] applies to image folders only",
        ),
        ({"color": "rgb"}, ValueError, "color = 'rgb' applies to image folders only"),
        ({"label_column": "y"}, ValueError, r"label_column = 'y' applies to tables \(CSV, TSV"),
        ({"label_column": 3}, TypeError, "label_column must be a column name"),
        ({"path": 3}, TypeError, "path must be a file or folder path"),
        ({"seed": -1}, ValueError, "seed must be an integer >= 0"),
    ],
    ids=lambda value: str(value)[:40] if isinstance(value, dict) else "",
)
def test_bad_arguments(tmp_path, monkeypatch, arguments, error, match):
    monkeypatch.chdir(tmp_path)
    np.savez("cells.npz", x=counts())
    np.savez("val.npz", x=counts(5, seed=3))
    np.savez("splits.npz", train=counts(20), test=counts(5, seed=4), validation=counts(5, seed=5))
    (tmp_path / "cells.txt").write_text("1,2\n")
    with pytest.raises(error, match=match):
        load_path(**{"path": "cells.npz", **arguments})


def test_a_validation_file_that_repeats_training_rows_is_refused(tmp_path):
    table = counts()
    np.savez(tmp_path / "train.npz", x=table)
    np.savez(tmp_path / "val.npz", x=np.concatenate([counts(3, seed=7), table[[5, 9]]]))
    with pytest.raises(
        ValueError, match=r"validation set .* overlaps the training set: 2 of its 5 .* index 3"
    ):
        load_path(tmp_path / "train.npz", test_fraction=0.02, validation_path=tmp_path / "val.npz")
    np.savez(tmp_path / "leaky.npz", train=table, validation=table[:4])
    with pytest.raises(ValueError, match="the key 'validation' of .*leaky.npz.* overlaps"):
        load_path(tmp_path / "leaky.npz")


def test_labels_for_every_split_or_none(tmp_path):
    np.savez(tmp_path / "train.npz", x=counts(), y=np.zeros(50, dtype=int))
    np.savez(tmp_path / "test.npz", x=counts(5, seed=1))
    with pytest.raises(ValueError, match=r"\['train'\] split\(s\) have labels but the \['test'\]"):
        load_path(tmp_path / "train.npz", test_path=tmp_path / "test.npz")


def test_shapes_must_agree_across_files(tmp_path):
    np.savez(tmp_path / "train.npz", x=counts(d=4))
    np.savez(tmp_path / "test.npz", x=counts(d=5))
    with pytest.raises(
        ValueError, match=r"test datapoints have shape \[5\] but train datapoints have \[4\]"
    ):
        load_path(tmp_path / "train.npz", test_path=tmp_path / "test.npz")


def test_split_indices():
    rest, held = split_indices(10, 0.3, seed=0)
    assert len(held) == 3 and torch.equal(torch.cat([rest, held]).sort().values, torch.arange(10))
    assert torch.equal(rest, rest.sort().values)  # the original order is kept
    assert not torch.equal(split_indices(10, 0.3, seed=0, stream=1)[1], held)
    with pytest.raises(ValueError, match="of 1 datapoint.*allowed: at least 2 datapoints"):
        split_indices(1, 0.5, seed=0, name="data.validation")
    with pytest.raises(ValueError, match="allowed: a fraction between 0.1 and 0.9"):
        split_indices(10, 0.01, seed=0)
