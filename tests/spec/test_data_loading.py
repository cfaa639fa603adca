"""load_data: a spec's own file or folder, its validation split, its checks against the model."""

import numpy as np
import pyro
import pytest
import torch
from PIL import Image

from pyro_vi.data import DatasetCorruptedError, DatasetNotFoundError, DynamicBinarization
from pyro_vi.spec import SpecError, build, load_data, load_spec
from pyro_vi.train import fit

TINY = {
    "model": {"latent_dim": 2, "decoder": {"hidden": [8]}},
    "guide": {"encoder": {"hidden": [8]}},
}


def spec_for(data, model=None, **sections):
    return load_spec(
        {**TINY, "data": data, "model": {**TINY["model"], **(model or {})}, **sections}
    )


@pytest.fixture
def cells(tmp_path, monkeypatch):
    """A folder (the current directory) holding ``cells.npz``: 40 rows of 6 counts, labels."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    np.savez("cells.npz", x=rng.poisson(3.0, size=(40, 6)), y=rng.integers(0, 3, 40))
    return tmp_path


def test_a_count_table_trains_with_a_validation_split(cells):
    spec = spec_for({"path": "cells.npz", "validation": 0.25}, {"likelihood": "poisson"})
    data = load_data(spec)
    assert data.info.shape == (6,) and data.info.num_classes is None
    assert [len(split[0]) for split in (data.train, data.validation, data.test)] == [24, 8, 8]
    assert data.test_labels is not None  # kept for the latent scatter plot
    pyro.set_rng_seed(0)
    built = build(spec, data.info)
    history = fit(
        built.model,
        built.guide,
        data.train,
        test_data=data.test,
        loss=built.estimator,
        optim=built.optimizer(),
        epochs=1,
        batch_size=8,
        progress=False,
    )
    assert np.isfinite(history.test_loss[-1])


def test_limits_apply_before_the_validation_split(cells):
    data = load_data(
        spec_for(
            {"path": "cells.npz", "limit": 20, "test_limit": 3, "validation": 0.25},
            {"likelihood": "poisson"},
        )
    )
    assert [len(split[0]) for split in (data.train, data.validation, data.test)] == [15, 5, 3]


def test_a_conditional_model_reads_the_labels(cells):
    data = load_data(
        spec_for({"path": "cells.npz"}, {"likelihood": "poisson", "conditional": True})
    )
    assert len(data.train) == 2 and data.info.num_classes == 3


def test_a_relative_path_is_read_from_data_dir(cells, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(
        DatasetNotFoundError,
        match=r"\[data\] path = 'cells.npz': no such file .*read from data.dir",
    ):
        load_data(spec_for({"path": "cells.npz"}, {"likelihood": "poisson"}))
    data = load_data(
        spec_for({"path": "cells.npz", "dir": str(tmp_path)}, {"likelihood": "poisson"})
    )
    assert data.info.shape == (6,)


def test_the_validation_split_of_a_named_dataset():
    spec = load_spec({"data": {"validation": 0.1, "limit": 200}})
    data = load_data(spec)
    assert [len(data.train[0]), len(data.validation[0])] == [180, 20]
    assert isinstance(data.validation[0], DynamicBinarization)  # binarized like the training set
    again = load_data(spec)
    assert torch.equal(again.validation[0].probs, data.validation[0].probs)
    other_seed = load_data(load_spec({"data": {"validation": 0.1, "limit": 200, "seed": 1}}))
    assert not torch.equal(other_seed.validation[0].probs, data.validation[0].probs)
    # No validation split: None, what fit(validation_data=None) takes.
    assert load_data(load_spec({"data": {"limit": 10}})).validation is None


def test_an_image_folder_with_the_conv_vae(tmp_path):
    for index in range(6):
        colour = (index * 40, 255 - index * 40, 128)
        Image.new("RGB", (10 + index, 12), colour).save(tmp_path / f"{index}.png")
    spec = load_spec(
        {
            "data": {"path": str(tmp_path), "image_size": [8, 8], "test_fraction": 0.5},
            "model": {
                "latent_dim": 2,
                "likelihood": "continuous_bernoulli",
                "decoder": {"type": "conv", "features": 8},
            },
            "guide": {"encoder": {"type": "conv", "features": 8}},
        }
    )
    data = load_data(spec)
    assert data.info.shape == (3, 8, 8) and len(data.test[0]) == 3
    built = build(spec, data.info)
    assert torch.isfinite(
        built.estimator.differentiable_loss(built.model, built.guide, *data.train)
    )


def test_dynamic_binarization_of_a_path(cells):
    np.savez("probs.npz", x=np.random.default_rng(0).random((10, 4)))
    data = load_data(spec_for({"path": "probs.npz", "binarize": "dynamic"}))
    assert isinstance(data.train[0], DynamicBinarization)
    with pytest.raises(
        SpecError, match=r"binarize = 'dynamic' needs values in \[0, 1\].*train values in \[0, \d"
    ):
        load_data(spec_for({"path": "cells.npz", "binarize": "dynamic"}))


@pytest.mark.parametrize(
    ("likelihood", "data", "match"),
    [
        (
            "bernoulli",
            "counts",
            r"'bernoulli' does not fit data.path = 'counts.npz': .*needs binary data.*The data "
            r"are counts \(non-negative integers\); allowed likelihoods: \['gaussian', "
            r"'poisson', 'negative_binomial'\]",
        ),
        (
            "continuous_bernoulli",
            "counts",
            r"needs data in \[0, 1\].*allowed likelihoods: \['gaussian', 'poisson'",
        ),
        (
            "poisson",
            "real",
            r"'poisson' does not fit .*needs counts .*The data are real numbers; allowed "
            r"likelihoods: \['gaussian'\]",
        ),
        (
            "negative_binomial",
            "unit",
            r"needs counts.*grey levels in \[0, 1\]; allowed likelihoods: \['bernoulli_grey', "
            r"'gaussian', 'continuous_bernoulli'\]",
        ),
        ("bernoulli", "unit", r"needs binary data"),
        ({"name": "categorical", "num_levels": 3}, "unit", r"needs data on the grid k/2"),
    ],
    ids=[
        "bernoulli-counts",
        "cb-counts",
        "poisson-real",
        "nb-unit",
        "bernoulli-grey",
        "categorical-off-grid",
    ],
)
def test_a_likelihood_that_does_not_fit_the_data(tmp_path, monkeypatch, likelihood, data, match):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    values = {
        "counts": rng.poisson(2.0, (20, 3)),
        "real": rng.normal(size=(20, 3)),
        "unit": rng.random((20, 3)),
    }
    np.savez(f"{data}.npz", x=values[data])
    with pytest.raises(SpecError, match=match):
        load_data(spec_for({"path": f"{data}.npz"}, {"likelihood": likelihood}))


def test_the_likelihood_is_checked_on_every_split(cells):
    np.savez("train.npz", x=np.ones((10, 6)))
    np.savez("test.npz", x=np.full((5, 6), 0.5))
    with pytest.raises(SpecError, match=r"in the test split\)"):
        load_data(
            spec_for({"path": "train.npz", "test_path": "test.npz"}, {"likelihood": "poisson"})
        )


def test_what_the_data_must_have_for_the_model(cells):
    np.savez("plain.npz", x=np.ones((10, 6)))
    with pytest.raises(
        SpecError,
        match="model.conditional = true needs labels, and data.path = 'plain.npz' has none",
    ):
        load_data(spec_for({"path": "plain.npz"}, {"likelihood": "poisson", "conditional": True}))
    with pytest.raises(
        SpecError,
        match=r"model.decoder.type = 'conv' needs images \[C, H, W\] .* shape \[6\]; allowed: "
        r"model.decoder.type = 'mlp'",
    ):
        load_data(
            spec_for({"path": "cells.npz"}, {"likelihood": "poisson", "decoder": {"type": "conv"}})
        )
    with pytest.raises(SpecError, match="guide.encoder.type = 'conv' needs images"):
        load_data(
            spec_for(
                {"path": "cells.npz"},
                {"likelihood": "poisson"},
                guide={"encoder": {"type": "conv"}},
            )
        )


def test_bad_files_say_they_come_from_the_data_section(cells):
    (cells / "broken.npz").write_bytes(b"garbage")
    with pytest.raises(
        DatasetCorruptedError, match=r"^\[data\] corrupted dataset file '.*broken.npz'"
    ):
        load_data(spec_for({"path": "broken.npz"}))
    np.savez("nan.npz", x=np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match=r"^\[data\] 'x' in 'nan.npz' holds 1 NaN"):
        load_data(spec_for({"path": "nan.npz"}))
    np.savez("split.npz", train=np.ones((10, 2)), validation=np.zeros((3, 2)))
    with pytest.raises(
        ValueError, match="data.validation = 0.1, but 'split.npz' holds its own 'validation' split"
    ):
        load_data(spec_for({"path": "split.npz", "validation": 0.1}))
    with pytest.raises(SpecError, match=r"data.validation = 0.01 of 32 datapoint\(s\) holds out 0"):
        load_data(spec_for({"path": "cells.npz", "validation": 0.01}, {"likelihood": "poisson"}))


def test_a_table_trains_into_a_run_folder_with_the_figures_that_apply(cells):
    from pyro_vi.runs.training import train_spec

    spec = spec_for(
        {"path": "cells.npz", "validation": 0.25},
        {"likelihood": "negative_binomial"},
        training={"epochs": 1, "batch_size": 8, "eval_samples": 2},
    )
    result = train_spec(spec, cells / "run", progress=False)
    figures = sorted(path.name for path in result.path.glob("*.png"))
    # Samples, reconstructions and interpolations draw datapoints as images: not for a table.
    assert "latents.png" in figures and "reconstructions.png" not in figures
    assert np.isfinite(result.metrics["test_elbo"])
