"""The main job: train a VAE on an image dataset and write a report folder.

This is what ``pyro-vi train`` runs. Its defaults train a small MLP VAE on scikit-learn's digits
(dynamically binarized, so the Bernoulli likelihood is a proper likelihood and the ELBO is a
bound on log p(x) in nats) on the CPU in well under a minute.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyro
import pyro.optim
import torch

from pyro_vi import data as datasets
from pyro_vi import estimators
from pyro_vi._checks import check_choice, check_float, check_int
from pyro_vi.architectures import conv_vae, mlp_vae
from pyro_vi.devices import environment, resolve_device
from pyro_vi.evaluation import log_likelihood
from pyro_vi.report import write_report
from pyro_vi.train import History, evaluate_loss, fit

ARCHITECTURES = ("mlp", "conv")
BINARIZATIONS = ("dynamic", "none")


@dataclass
class TrainConfig:
    """Settings of :func:`train_vae`; every field is a command-line option of ``pyro-vi train``."""

    dataset: str = "digits"
    data_dir: str | None = None
    binarize: str = "dynamic"
    architecture: str = "mlp"
    latent_dim: int = 8
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    activation: str = "tanh"
    likelihood: str = "bernoulli"
    estimator: str = "elbo"
    num_particles: int = 1
    epochs: int = 150
    batch_size: int = 100
    learning_rate: float = 3e-3
    device: str = "cpu"
    seed: int = 0
    out: str = "runs/vae-digits"
    progress: bool = True

    def validate(self) -> None:
        """Raise ``ValueError``/``TypeError`` naming the first bad field."""
        check_choice("dataset", self.dataset, datasets.DATASETS)
        check_choice("binarize", self.binarize, BINARIZATIONS)
        check_choice("architecture", self.architecture, ARCHITECTURES)
        check_int("latent_dim", self.latent_dim, minimum=1)
        check_choice("estimator", self.estimator, estimators.ESTIMATORS)
        check_int("num_particles", self.num_particles, minimum=1)
        for i, size in enumerate(self.hidden):
            check_int(f"hidden[{i}]", size, minimum=1)
        check_int("epochs", self.epochs, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        check_float("learning_rate", self.learning_rate, minimum=0.0, exclusive_minimum=True)
        check_int("seed", self.seed)
        resolve_device(self.device)


def _binarized(split: Any, binarize: str) -> Any:
    if binarize == "dynamic" and isinstance(split, torch.Tensor):
        return datasets.DynamicBinarization(split)
    return split


def _particle_options(config: TrainConfig) -> dict[str, int]:
    """The estimator's particle count: K = num_particles, or M x K' = 1 x K for miwae/piwae."""
    if "num_inner" in estimators.options(config.estimator):
        return {"num_outer": 1, "num_inner": config.num_particles}
    return {"num_particles": config.num_particles}


def train_vae(config: TrainConfig) -> dict[str, Path]:
    """Load the data, build the VAE, train it with the chosen estimator and write the report.

    Returns:
        The paths written by :func:`pyro_vi.report.write_report`, plus ``"config"``.
    """
    config.validate()
    pyro.set_rng_seed(config.seed)
    if config.dataset == "mnist" or config.dataset == "fashion-mnist":
        data = datasets.load(
            config.dataset,
            config.data_dir,
            binarize="dynamic" if config.binarize == "dynamic" else None,
        )
    else:
        data = datasets.load(config.dataset, config.data_dir)
    train = _binarized(data.train, config.binarize)
    test = _binarized(data.test, config.binarize)
    shape = data.image_shape
    if config.architecture == "mlp":
        model, guide = mlp_vae(
            shape, config.latent_dim, config.hidden, config.activation, config.likelihood
        )
    else:
        model, guide = conv_vae(
            shape, config.latent_dim, config.hidden[0], config.activation, config.likelihood
        )
    start = time.perf_counter()
    loss = estimators.get(config.estimator, **_particle_options(config))
    history: History = fit(
        model,
        guide,
        train,
        test_data=test,
        loss=loss,
        optim=pyro.optim.Adam({"lr": config.learning_rate}),
        epochs=config.epochs,
        batch_size=config.batch_size,
        device=config.device,
        progress=config.progress,
    )
    seconds = time.perf_counter() - start
    device = resolve_device(config.device)
    test_on_device = test.to(device)
    test_images = test_on_device[torch.arange(len(test_on_device), device=device)]
    # log p(x) by importance sampling with the guide as proposal (IWAE-K, K = 1000), per image.
    log_px = log_likelihood(model, guide, test_images, num_samples=1000, chunk_size=250)
    metrics = {
        "final_test_elbo": -evaluate_loss(model, guide, test_images),
        "test_log_likelihood_iwae_1000": float(log_px.mean()),
        "final_train_elbo": -history.train_loss[-1],
        "training_seconds": seconds,
        "parameters": sum(p.numel() for m in (model, guide) for p in m.parameters()),
        "interrupted": history.interrupted,
    }
    paths = write_report(
        config.out,
        model,
        guide,
        history,
        test_images,
        config={**asdict(config), "environment": environment(device)},
        metrics=metrics,
    )
    torch.save(
        {"model": model.state_dict(), "guide": guide.state_dict(), "config": asdict(config)},
        Path(config.out) / "checkpoint.pt",
    )
    paths["checkpoint"] = Path(config.out) / "checkpoint.pt"
    paths["config"] = Path(config.out) / "config.json"
    paths["config"].write_text(json.dumps(asdict(config), indent=2))
    return paths
