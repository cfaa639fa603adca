"""The validation split never leaks into training, and ``training.early_stopping`` needs one:
checked before anything trains, each error naming the key."""

import numpy as np
import pytest
import torch

from pyro_vi.data import load as load_dataset
from pyro_vi.spec import SpecError, load_data, load_spec, resolve

TINY = {
    "model": {"latent_dim": 2, "likelihood": "gaussian", "decoder": {"hidden": [8]}},
    "guide": {"encoder": {"hidden": [8]}},
}


def spec_for(data, training=None):
    return load_spec({**TINY, "data": data, "training": training or {}})


@pytest.fixture
def rows(tmp_path, monkeypatch):
    """The current directory holds ``rows.npz``: 50 distinct rows (row i is i, i+0.5, i+0.25),
    so that a datapoint names its index."""
    monkeypatch.chdir(tmp_path)
    index = np.arange(50, dtype=np.float32)[:, None]
    np.savez("rows.npz", x=index + np.array([0.0, 0.5, 0.25], dtype=np.float32))
    return tmp_path


def _indices(split) -> set[int]:
    values = split[0].probs if hasattr(split[0], "probs") else split[0]
    return {int(v) for v in values[:, 0].tolist()}


def test_a_fraction_split_of_a_file_is_disjoint_from_training(rows):
    data = load_data(spec_for({"path": "rows.npz", "validation": 0.2, "test_fraction": 0.2}))
    train, validation, test = (_indices(s) for s in (data.train, data.validation, data.test))
    assert (len(train), len(validation), len(test)) == (32, 8, 10)
    assert not train & validation and not train & test and not validation & test
    assert train | validation | test == set(range(50))  # every datapoint in exactly one split


def test_a_fraction_split_of_a_named_dataset_partitions_the_training_set():
    # The digits' first 200 training images, split 150 / 50: together they are those 200
    # images, each once (a multiset equality: duplicates in the data cannot hide a leak).
    data = load_data(load_spec({"data": {"limit": 200, "validation": 0.25}}))
    train, validation = data.train[0].probs, data.validation[0].probs
    assert (len(train), len(validation)) == (150, 50)
    first = load_dataset("digits").train[:200]

    def rows_sorted(images):
        flat = images.reshape(len(images), -1)
        return sorted(map(tuple, flat.tolist()))

    assert rows_sorted(torch.cat([train, validation])) == rows_sorted(first)


def test_an_explicit_validation_file_may_not_repeat_a_training_datapoint(rows):
    index = np.arange(100, 110, dtype=np.float32)[:, None]
    np.savez("valid.npz", x=index + np.array([0.0, 0.5, 0.25], dtype=np.float32))
    data = load_data(spec_for({"path": "rows.npz", "validation_path": "valid.npz"}))
    assert _indices(data.validation) == set(range(100, 110))
    assert not _indices(data.train) & _indices(data.validation)
    # One training row copied into the validation file: refused, naming the key and the file.
    leaked = np.load("valid.npz")["x"].copy()
    leaked[3] = np.load("rows.npz")["x"][int(next(iter(_indices(data.train))))]
    np.savez("leaky.npz", x=leaked)
    with pytest.raises(ValueError, match=r"validation_path = '.*leaky.npz'\) overlaps the train"):
        load_data(spec_for({"path": "rows.npz", "validation_path": "leaky.npz"}))


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.0, 1.5, "0.1", True])
def test_a_validation_fraction_outside_zero_one_names_the_key(fraction):
    with pytest.raises(SpecError, match=r"data.validation = .*allowed: a number > 0 and < 1"):
        resolve({"data": {"validation": fraction}})


def test_a_validation_fraction_that_leaves_no_training_data_names_the_key(rows):
    spec = spec_for({"path": "rows.npz", "validation": 0.99, "test_fraction": 0.2})
    with pytest.raises(SpecError, match=r"data.validation = 0.99 of 40 .* leaving 0.*empty split"):
        load_data(spec)


def test_early_stopping_is_a_patience_in_epochs():
    spec = resolve({"data": {"validation": 0.1}, "training": {"early_stopping": 3}})
    assert spec.training["early_stopping"] == 3
    assert resolve({}).training["early_stopping"] is None
    assert resolve(spec.to_dict()) == spec  # what a run folder stores reads back the same


@pytest.mark.parametrize("patience", [0, -2, 1.5, True, "3"])
def test_a_bad_patience_names_the_key(patience):
    with pytest.raises(SpecError, match=r"training.early_stopping = .*allowed: an integer >= 1"):
        resolve({"data": {"validation": 0.1}, "training": {"early_stopping": patience}})


def test_early_stopping_without_a_validation_split_says_how_to_add_one():
    with pytest.raises(
        SpecError,
        match=r"training.early_stopping = 3 stops on the validation bound, but \[data\] holds "
        r"out no validation split; add one: data.validation = 0.1",
    ):
        resolve({"training": {"early_stopping": 3}})


def test_early_stopping_on_a_file_waits_for_its_own_validation_split(rows):
    # A file may hold its own validation split: known once it is read, still before training.
    spec = spec_for({"path": "rows.npz"}, {"early_stopping": 2})
    with pytest.raises(SpecError, match=r"training.early_stopping = 2 .*data.validation_path"):
        load_data(spec)
    x = np.load("rows.npz")["x"]
    np.savez("split.npz", train=x[:30], test=x[30:40], validation=x[40:])
    data = load_data(spec_for({"path": "split.npz"}, {"early_stopping": 2}))
    assert _indices(data.validation) == set(range(40, 50))
