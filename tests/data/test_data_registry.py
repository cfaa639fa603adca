"""load(name, root, **options): the registry over every dataset, and the default data directory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pyro_vi.data import (
    DATA_ENV,
    DATASETS,
    DatasetNotFoundError,
    default_root,
    load,
    load_digits,
)

SMALL_LINE = " ".join(["0", "1"] * 392) + "\n"


def _write_small_binarized(folder: Path) -> None:
    folder.mkdir(parents=True)
    for split in ("train", "valid", "test"):
        (folder / f"binarized_mnist_{split}.amat").write_text(SMALL_LINE * 2)


def test_names():
    assert tuple(DATASETS) == ("digits", "mnist", "fashion-mnist", "binarized-mnist")


def test_facts_a_spec_checks():
    assert {name: d.grey_levels for name, d in DATASETS.items()} == {
        "digits": 17,
        "mnist": 256,
        "fashion-mnist": 256,
        "binarized-mnist": 2,
    }
    assert [name for name, d in DATASETS.items() if not d.labelled] == ["binarized-mnist"]


def test_digits_passes_options_and_ignores_root(tmp_path):
    data = load("digits", tmp_path / "unused", seed=3, test_fraction=0.5)
    expected = load_digits(seed=3, test_fraction=0.5)
    assert data.name == "digits" and torch.equal(data.test, expected.test)


def test_file_datasets_live_in_a_subfolder_named_after_them(tmp_path):
    _write_small_binarized(tmp_path / "binarized-mnist")
    data = load("binarized-mnist", tmp_path, verify=False)
    assert len(data.train) == 2 and data.image_shape == (1, 28, 28)
    with pytest.raises(DatasetNotFoundError) as caught:
        load("fashion-mnist", str(tmp_path))
    assert str(tmp_path / "fashion-mnist") in str(caught.value)


def test_root_defaults_to_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert default_root() == tmp_path
    _write_small_binarized(tmp_path / "binarized-mnist")
    assert len(load("binarized-mnist", verify=False).test) == 2


def test_root_defaults_to_the_user_cache(monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    assert default_root() == Path.home() / ".cache" / "pyro_vi"


def test_unknown_name():
    with pytest.raises(ValueError) as caught:
        load("cifar10")
    message = str(caught.value)
    assert "'cifar10'" in message and all(repr(name) in message for name in DATASETS)


def test_unknown_option():
    with pytest.raises(TypeError) as caught:
        load("mnist", "/nowhere", binarise="dynamic")
    message = str(caught.value)
    assert "binarise" in message and "binarize" in message and "download" in message


def test_bad_root_type():
    with pytest.raises(TypeError, match="root must be a directory path"):
        load("mnist", 42)
