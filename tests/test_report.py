"""Report figures and metrics."""

import json

import pytest
import torch

from pyro_vi.architectures import mlp_vae
from pyro_vi.report import image_grid, reconstruct, sample_prior, write_report
from pyro_vi.train import History

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_reconstruct_and_sample_shapes():
    model, guide = mlp_vae((1, 8, 8), latent_dim=2, hidden=[8])
    x = torch.bernoulli(torch.full((5, 1, 8, 8), 0.5))
    for images in (reconstruct(model, guide, x), sample_prior(model, x)):
        assert images.shape == x.shape
        assert bool(((images >= 0) & (images <= 1)).all())


def test_write_report(tmp_path):
    model, guide = mlp_vae((1, 8, 8), latent_dim=2, hidden=[8])
    x = torch.bernoulli(torch.full((13, 1, 8, 8), 0.5))
    history = History(train_loss=[40.0, 35.0], test_loss=[41.0, 36.0], seconds=[0.1, 0.1])
    paths = write_report(
        tmp_path / "run", model, guide, history, x, config={"a": 1}, metrics={"b": 2}
    )
    for kind in ("samples", "reconstructions", "loss_curves"):
        data = paths[kind].read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000
    metrics = json.loads(paths["metrics"].read_text())
    assert metrics["history"]["test_bound"] == [-41.0, -36.0]
    assert metrics["config"] == {"a": 1} and metrics["metrics"] == {"b": 2}


def test_unknown_observed_site_is_named():
    model, guide = mlp_vae((1, 8, 8), latent_dim=2, hidden=[8])
    with pytest.raises(ValueError, match="observed_site='pixels' is not a sample site"):
        reconstruct(model, guide, torch.zeros(2, 1, 8, 8), observed_site="pixels")


def test_image_grid_rejects_non_images():
    with pytest.raises(ValueError, match="images must have shape"):
        image_grid(torch.zeros(4, 64), columns=2)
