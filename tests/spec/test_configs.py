"""Every shipped config resolves, builds, gives a finite loss, and trains end to end.

The configs are globbed, so a new file in ``configs/`` is covered without touching this file.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from pyro_vi.records import SCHEMA_VERSION
from pyro_vi.runs.folder import load_run, read_epochs
from pyro_vi.runs.training import train_spec
from pyro_vi.spec import Data, DataInfo, build, load_data, load_spec
from pyro_vi.spec.resolve import DATA_LEVELS

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.toml"))
CONFIG_IDS = [path.stem for path in CONFIGS]

#: One epoch on 64 images, a 4-particle log-likelihood: the whole folder is written in seconds.
TINY_RUN = [
    "training.epochs=1",
    "data.limit=64",
    "training.eval_samples=4",
    "training.batch_size=32",
]
FIGURES = ("samples", "reconstructions", "interpolation", "latents", "loss_curves")
#: Evaluation scores the whole test split (10000 images for the MNIST family) and, for a flow
#: guide, averages 1000 guide draws per image for the posterior means; on 2 CPU cores that took
#: 20-95 s per MNIST config and ~15 s for the digits flow. 200 images exercise the same code.
MAX_TEST_IMAGES = 200


def _data_info(spec) -> DataInfo:
    shape = (1, 8, 8) if spec.data["name"] == "digits" else (1, 28, 28)
    return DataInfo(shape, 10 if spec.model.get("conditional") else None)


def _random_batch(spec, info: DataInfo, size: int = 6) -> tuple[torch.Tensor, ...]:
    """Data the spec's model accepts: binary images, or grey levels on the dataset's grid."""
    binary = spec.data["name"] == "binarized-mnist" or spec.data["binarize"] == "dynamic"
    levels = 2 if binary else DATA_LEVELS[spec.data["name"]]
    images = torch.randint(levels, (size, *info.shape)).float() / (levels - 1)
    if info.num_classes is None:
        return (images,)
    return images, torch.randint(info.num_classes, (size,))


@pytest.mark.parametrize("path", CONFIGS, ids=CONFIG_IDS)
def test_config_builds_and_its_loss_is_finite(path):
    spec = load_spec(path)
    info = _data_info(spec)
    built = build(spec, info)
    loss = built.estimator.loss(built.model, built.guide, *_random_batch(spec, info))
    assert math.isfinite(loss)
    # Building made the optimizer's arguments valid too (lr_decay, clipped Adam, ...).
    assert built.optimizer() is not None


def _finite_numbers(metrics: dict) -> dict:
    return {
        key: value
        for key, value in metrics.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


def _small_test_split(spec) -> Data:
    """The spec's data with its test split cut to its first MAX_TEST_IMAGES images."""
    data = load_data(spec)
    keep = torch.arange(min(MAX_TEST_IMAGES, len(data.test[0])))
    # Indexing a dynamically binarized split draws its binary images once, as evaluation does.
    test = tuple(item[keep] for item in data.test)
    labels = None if data.test_labels is None else data.test_labels[keep]
    return dataclasses.replace(data, test=test, test_labels=labels)


@pytest.mark.parametrize("path", CONFIGS, ids=CONFIG_IDS)
def test_config_trains_end_to_end(path, tmp_path, data_overrides):
    dataset = load_spec(path).data["name"]
    spec = load_spec(path, [*TINY_RUN, *data_overrides(dataset)])
    result = train_spec(spec, tmp_path / "run", progress=False, data=_small_test_split(spec))
    folder = result.path

    for name in ("spec.toml", "run.json", "metrics.jsonl", "checkpoint.pt", "metrics.json"):
        assert (folder / name).is_file(), name
    assert load_spec(folder / "spec.toml") == spec
    assert json.loads((folder / "run.json").read_text())["status"] == "complete"
    epochs = read_epochs(folder)
    assert [epoch["epoch"] for epoch in epochs] == [1]
    assert math.isfinite(epochs[0]["train_loss"])

    summary = json.loads((folder / "metrics.json").read_text())
    metrics = summary["metrics"]
    # The result object holds what the folder holds.
    assert result.metrics == metrics and result.history.epochs == 1
    assert summary["schema_version"] == SCHEMA_VERSION
    numbers = _finite_numbers(metrics)
    assert "reconstruction_log_likelihood" in numbers
    assert all(math.isfinite(value) for value in numbers.values()), numbers
    if spec.model["kind"] in ("vae", "sbn"):
        assert "test_log_likelihood_iwae_4" in numbers

    autoencoder = spec.model["kind"] == "autoencoder"
    for figure in FIGURES:
        expected = not (autoencoder and figure == "samples")  # no prior to sample from
        assert (folder / f"{figure}.png").is_file() == expected, figure

    run = load_run(folder)
    assert run.spec == spec
    assert not run.built.model.training and not run.built.guide.training
