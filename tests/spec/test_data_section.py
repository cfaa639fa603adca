"""The [data] section: a named dataset or a path, the keys each takes, round trips, bad specs."""

import re

import pytest

from pyro_vi.spec import SpecError, load_spec, resolve, spec_to_toml
from pyro_vi.spec.data_section import DATA, PATH_KEYS


def test_a_named_dataset_keeps_its_defaults():
    data = resolve({}).data
    assert data["name"] == "digits" and data["binarize"] == "dynamic" and data["path"] is None
    assert data["seed"] == 0 and data["validation"] is None
    assert resolve({"data": {"validation": 0.1}}).data["validation"] == 0.1


def test_a_path_replaces_the_name_and_is_not_binarized_by_default():
    data = resolve({"data": {"path": "cells.npz"}}).data
    assert data["name"] is None and data["binarize"] == "none"
    assert resolve({"data": {"path": "x.npz", "binarize": "dynamic"}}).data["binarize"] == "dynamic"


def test_a_path_spec_round_trips(tmp_path):
    raw = {
        "data": {
            "path": "faces",
            "image_size": [32, 32],
            "color": "rgb",
            "validation": 0.1,
            "test_fraction": 0.25,
            "seed": 3,
        },
        "model": {"likelihood": "continuous_bernoulli"},
    }
    spec = resolve(raw)
    assert resolve(spec.to_dict()) == spec
    written = tmp_path / "spec.toml"
    written.write_text(spec_to_toml(spec))
    assert load_spec(written) == spec
    assert "name" not in spec.to_dict()["data"]


def test_every_key_is_documented():
    assert set(PATH_KEYS) < set(DATA)
    assert all(field.doc for field in DATA.values())


def _error(*parts):
    return ".*".join(re.escape(part) for part in parts)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (
            {"name": "mnist", "path": "x.npz"},
            _error("data.name = 'mnist' and data.path = 'x.npz'", "give one"),
        ),
        *[
            ({key: value}, _error(f"data.{key} = ", "needs data.path"))
            for key, value in (
                ("test_path", "t.npz"),
                ("test_fraction", 0.2),
                ("validation_path", "v.npz"),
                ("image_size", [8, 8]),
                ("color", "grey"),
                ("label_column", "type"),
            )
        ],
        (
            {"path": "x.npz", "validation": 0.1, "validation_path": "v.npz"},
            _error("data.validation = 0.1 and data.validation_path = 'v.npz'", "give one"),
        ),
        ({"validation": 0.0}, _error("data.validation = 0.0", "a number > 0 and < 1")),
        ({"validation": -0.1}, _error("data.validation = -0.1", "a number > 0 and < 1")),
        # A validation split of the whole training set would leave nothing to train on.
        ({"validation": 1.0}, _error("data.validation = 1.0", "a number > 0 and < 1")),
        ({"validation": 1.5}, _error("data.validation = 1.5", "a number > 0 and < 1")),
        ({"validation": "10%"}, _error("data.validation = '10%'", "a number > 0 and < 1")),
        ({"path": "x", "test_fraction": 1.0}, _error("data.test_fraction = 1.0", "< 1")),
        ({"path": "x", "test_fraction": -0.1}, _error("data.test_fraction = -0.1", "> 0")),
        ({"path": "x", "image_size": [8]}, _error("data.image_size = [8]", "of length 2")),
        ({"path": "x", "image_size": 8}, _error("data.image_size = 8", "a list of integers")),
        (
            {"path": "x", "color": "gray"},
            _error("data.color = 'gray'", "['rgb', 'grey']", "did you mean 'grey'"),
        ),
        ({"path": 3}, _error("data.path = 3", "a string")),
        ({"seed": -1}, _error("data.seed = -1", ">= 0")),
        ({"paht": "x.npz"}, _error("unknown key 'data.paht'", "did you mean 'path'?")),
    ],
    ids=lambda value: "-".join(value) if isinstance(value, dict) else "",
)
def test_bad_data_sections(data, match):
    with pytest.raises(SpecError, match=match):
        resolve({"data": data})


def test_named_datasets_still_check_the_likelihood_statically():
    with pytest.raises(SpecError, match="'poisson' needs counts .* grey levels in \\[0, 1\\]"):
        resolve({"data": {"binarize": "none"}, "model": {"likelihood": "poisson"}})
    # Dynamically binarized digits are 0/1: counts, so a Poisson likelihood is allowed.
    resolve({"model": {"likelihood": "poisson"}})


def test_a_conditional_model_on_a_path_waits_for_the_labels():
    # A path's labels are known once it is read: load_data checks them.
    assert resolve({"data": {"path": "x.npz"}, "model": {"conditional": True}}).model["conditional"]
