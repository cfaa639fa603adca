"""Compile a validated :class:`~pyro_vi.spec.resolve.Spec` into data, a Pyro model, a guide, an
estimator and an optimizer.

The model and guide are the library's ordinary modules (:class:`~pyro_vi.models.vae.VAE`,
:class:`~pyro_vi.guides.amortized.AmortizedGuide`, ...): everything a spec builds could be written
by hand, and a hand-written model trains the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pyro.optim
import torch
from pyro import poutine
from pyro.optim.clipped_adam import ClippedAdam as TorchClippedAdam
from torch import nn

from pyro_vi import data as datasets
from pyro_vi import estimators
from pyro_vi.guides.amortized import AmortizedGuide
from pyro_vi.guides.bernoulli import BernoulliGuide
from pyro_vi.guides.hierarchical import HierarchicalGuide
from pyro_vi.models.autoencoder import Autoencoder, AutoencoderGuide
from pyro_vi.models.conditional import ConditionalEncoder, ConditionalVAE
from pyro_vi.models.hierarchical import HierarchicalVAE
from pyro_vi.models.likelihoods import make_likelihood
from pyro_vi.models.priors import make_prior
from pyro_vi.models.sbn import SigmoidBeliefNet
from pyro_vi.models.vae import VAE
from pyro_vi.models.vq_vae import VQVAE, VQGuide
from pyro_vi.nets import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder
from pyro_vi.spec.resolve import Spec


@dataclass
class DataInfo:
    """What building a model needs to know about the data, stored in every run folder.

    Attributes:
        shape: Shape of one datapoint, ``(C, H, W)``.
        num_classes: Number of labels (conditional models), or ``None``.
    """

    shape: tuple[int, ...]
    num_classes: int | None = None


@dataclass
class Data:
    """The splits a spec trains and evaluates on.

    ``train`` and ``test`` are tuples of what the model takes as positional arguments:
    ``(images,)``, or ``(images, labels)`` for a conditional model. ``test_labels`` is kept for
    figures (latent scatter plots) even when the model does not take labels.
    """

    train: tuple[Any, ...]
    test: tuple[Any, ...]
    test_labels: torch.Tensor | None
    info: DataInfo


def load_data(spec: Spec) -> Data:
    """Load and binarize the spec's dataset (``data.dir``, else ``$PYRO_VI_DATA``)."""
    name, binarize = spec.data["name"], spec.data["binarize"]
    options: dict[str, Any] = {}
    if name in ("mnist", "fashion-mnist") and binarize == "dynamic":
        options["binarize"] = "dynamic"
    loaded = datasets.load(name, spec.data["dir"], **options)
    train, test = loaded.train, loaded.test
    if name == "digits" and binarize == "dynamic":
        train, test = datasets.DynamicBinarization(train), datasets.DynamicBinarization(test)
    train, train_labels = _first(train, loaded.train_labels, spec.data["limit"])
    test, test_labels = _first(test, loaded.test_labels, spec.data["test_limit"])
    num_classes = None
    if spec.model.get("conditional"):
        # From the full label sets: a limited split may miss a class the model must know.
        num_classes = int(max(int(loaded.train_labels.max()), int(loaded.test_labels.max())) + 1)
        train_items: tuple[Any, ...] = (train, train_labels)
        test_items: tuple[Any, ...] = (test, test_labels)
    else:
        train_items, test_items = (train,), (test,)
    info = DataInfo(tuple(loaded.image_shape), num_classes)
    return Data(train_items, test_items, test_labels, info)


def _first(images: Any, labels: torch.Tensor | None, limit: int | None) -> tuple[Any, Any]:
    """The first ``limit`` images and labels (all when ``limit`` is None); a dynamically
    binarized split stays dynamic."""
    if limit is None:
        return images, labels
    keep = torch.arange(min(limit, len(images)))
    if isinstance(images, datasets.DynamicBinarization):
        images = datasets.DynamicBinarization(images.probs[keep])
    else:
        images = images[keep]
    return images, None if labels is None else labels[keep]


@dataclass
class Built:
    """A compiled spec: Pyro model and guide, the estimator, and a factory for the optimizer."""

    model: nn.Module
    guide: nn.Module
    estimator: estimators.Estimator
    spec: Spec
    info: DataInfo

    @property
    def decoder_site(self) -> str:
        """The latent site the decoder reads (``"z"``, or ``"z1"`` for two layers)."""
        return "z1" if len(self.spec.latent_dims) == 2 else "z"

    def optimizer(self) -> pyro.optim.PyroOptim:
        """A fresh optimizer as the spec describes it."""
        return make_optimizer(self.spec)

    def for_evaluation(self) -> Built:
        """The model and guide a run is evaluated and drawn with.

        A relaxed sigmoid belief net (``model.relaxation`` other than ``"none"``) trains a
        relaxation of the discrete model; it is judged as the discrete model with the same
        parameters (:meth:`~pyro_vi.models.sbn.SigmoidBeliefNet.discrete`), so that its test
        ELBO and log-likelihood compare with the discrete variants'. Every other run: itself.
        """
        if isinstance(self.model, SigmoidBeliefNet) and isinstance(self.guide, BernoulliGuide):
            model, guide = self.model.discrete(), self.guide.discrete()
            if model is not self.model or guide is not self.guide:
                return replace(self, model=model, guide=guide)
        return self

    @property
    def relaxed(self) -> bool:
        """Whether the trained model is a relaxation of the model it is judged as."""
        return self.for_evaluation().model is not self.model


def _encoder(table: dict[str, Any], shape: tuple[int, ...]) -> nn.Module:
    if table["type"] == "mlp":
        return MLPEncoder(shape, table["hidden"], table["activation"])
    return ConvEncoder(shape, table["features"], table["activation"])


def _decoder(table: dict[str, Any], latent_dim: int, out_shape: tuple[int, ...]) -> nn.Module:
    if table["type"] == "mlp":
        # The spec lists hidden sizes data side first, as for the encoder; the decoder runs them
        # from the latent side.
        return MLPDecoder(
            latent_dim, list(reversed(table["hidden"])), out_shape, table["activation"]
        )
    return ConvDecoder(latent_dim, out_shape, table["features"], table["activation"])


def _options(part: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in part.items() if k != "name" and v is not None}


def build(spec: Spec, info: DataInfo) -> Built:
    """Build the model, guide and estimator that ``spec`` describes, for data shaped ``info``.

    Returns:
        A :class:`Built`; its model and guide have fresh parameters (seed with
        ``pyro.set_rng_seed`` first for reproducibility).
    """
    model_spec, guide_spec = spec.model, spec.guide
    shape = tuple(info.shape)
    likelihood = make_likelihood(
        model_spec["likelihood"]["name"], shape, **_options(model_spec["likelihood"])
    )
    out_shape = tuple(likelihood.params_shape(shape))
    encoder = _encoder(guide_spec["encoder"], shape)
    kind = model_spec["kind"]
    model: nn.Module
    guide: nn.Module
    if kind == "vq_vae":
        width = model_spec["num_latents"] * model_spec["code_dim"]
        model = VQVAE(
            _decoder(model_spec["decoder"], width, out_shape),
            model_spec["num_codes"],
            model_spec["code_dim"],
            model_spec["num_latents"],
            likelihood,
            shape,
        )
        guide = VQGuide(model, encoder, model_spec["commitment"])
    elif kind == "autoencoder":
        latent_dim = model_spec["latent_dim"]
        model = Autoencoder(
            _decoder(model_spec["decoder"], latent_dim, out_shape), latent_dim, likelihood, shape
        )
        guide = AutoencoderGuide(encoder, latent_dim)
    elif kind == "sbn":
        model, guide = _build_sbn(spec, likelihood, out_shape, encoder, shape)
    else:
        model, guide = _build_vae(spec, info, likelihood, out_shape, encoder)
    options = {k: v for k, v in spec.estimator.items() if k != "name"}
    return Built(model, guide, estimators.get(spec.estimator["name"], **options), spec, info)


def _build_vae(
    spec: Spec, info: DataInfo, likelihood: Any, out_shape: tuple[int, ...], encoder: nn.Module
) -> tuple[nn.Module, nn.Module]:
    model_spec, guide_spec = spec.model, spec.guide
    shape = tuple(info.shape)
    dims = spec.latent_dims
    prior = make_prior(model_spec["prior"]["name"], dims[-1], **_options(model_spec["prior"]))
    family, family_options = guide_spec["family"], dict(guide_spec["options"])
    activation = model_spec["decoder"]["activation"]
    if len(dims) == 2:
        model = HierarchicalVAE(
            _decoder(model_spec["decoder"], dims[0], out_shape),
            tuple(dims),
            model_spec["stochastic_hidden"],
            activation,
            likelihood,
            shape,
            prior,
        )
        guide = HierarchicalGuide(
            encoder,
            tuple(dims),
            model_spec["stochastic_hidden"],
            guide_spec["encoder"]["activation"],
            family,
            family_options,
        )
        return model, guide
    if model_spec["conditional"]:
        classes = info.num_classes
        if classes is None:
            raise ValueError("a conditional model needs DataInfo.num_classes, got None")
        decoder = _decoder(model_spec["decoder"], dims[0] + classes, out_shape)
        model = ConditionalVAE(decoder, dims[0], classes, likelihood, shape, prior)
        guide = AmortizedGuide(
            model, ConditionalEncoder(encoder, classes), family, family_options, data_arg=(0, 1)
        )
        return model, guide
    model = VAE(
        _decoder(model_spec["decoder"], dims[0], out_shape), dims[0], likelihood, shape, prior=prior
    )
    return model, AmortizedGuide(model, encoder, family, family_options)


def _build_sbn(
    spec: Spec,
    likelihood: Any,
    out_shape: tuple[int, ...],
    encoder: nn.Module,
    shape: tuple[int, ...],
) -> tuple[SigmoidBeliefNet, BernoulliGuide]:
    model_spec = spec.model
    latent_dim = model_spec["latent_dim"]
    model = SigmoidBeliefNet(
        _decoder(model_spec["decoder"], latent_dim, out_shape),
        latent_dim,
        likelihood,
        shape,
        relaxation=model_spec["relaxation"],
        temperature=model_spec["prior_temperature"],
    )
    return model, BernoulliGuide(encoder, latent_dim, temperature=model_spec["temperature"])


def make_optimizer(spec: Spec) -> pyro.optim.PyroOptim:
    """The spec's optimizer; with ``lr_decay < 1`` a scheduler that multiplies the learning rate
    by it after every epoch (:func:`pyro_vi.train.fit` steps schedulers once per epoch)."""
    table = spec.optimizer
    args: dict[str, Any] = {
        "lr": table["lr"],
        "betas": tuple(table["betas"]),
        "eps": table["eps"],
        "weight_decay": table["weight_decay"],
    }
    if table["name"] == "clipped_adam":
        args["clip_norm"] = table["clip_norm"]
    if table["lr_decay"] == 1.0:
        return (pyro.optim.ClippedAdam if table["name"] == "clipped_adam" else pyro.optim.Adam)(
            args
        )
    torch_class: Callable = (
        TorchClippedAdam if table["name"] == "clipped_adam" else torch.optim.Adam
    )
    return pyro.optim.ExponentialLR(
        {"optimizer": torch_class, "optim_args": args, "gamma": table["lr_decay"]}
    )


@torch.no_grad()
def materialize(built: Built, batch: tuple[Any, ...]) -> None:
    """Run guide and model once on ``batch`` so that lazily built parts (the amortized guide's
    families) exist: needed before ``load_state_dict`` of a saved run."""
    guide_trace = poutine.trace(built.guide).get_trace(*batch)
    poutine.replay(built.model, trace=guide_trace)(*batch)
