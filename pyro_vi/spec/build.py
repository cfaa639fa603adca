"""Compile a validated :class:`~pyro_vi.spec.resolve.Spec` into a Pyro model, a guide, an
estimator and an optimizer (the data: :mod:`pyro_vi.spec.data_loading`).

The model and guide come from the model kind's builder (:meth:`ModelKind.build
<pyro_vi.spec.kinds.ModelKind.build>`), which calls the public builder of
:mod:`pyro_vi.architectures` with the spec's values: a spec builds exactly what that Python call
builds (:class:`~pyro_vi.models.vae.VAE`, :class:`~pyro_vi.guides.amortized.AmortizedGuide`, ...),
and a hand-written model trains the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import pyro.optim
import torch
from pyro import poutine
from pyro.optim.clipped_adam import ClippedAdam as TorchClippedAdam
from torch import nn

from pyro_vi import estimators
from pyro_vi.spec.data_loading import DataInfo
from pyro_vi.spec.kinds import kind_of
from pyro_vi.spec.resolve import Spec, as_spec


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
        return kind_of(self.spec).decoder_site(self.spec)

    def optimizer(self) -> pyro.optim.PyroOptim:
        """A fresh optimizer as the spec describes it."""
        return make_optimizer(self.spec)

    def for_evaluation(self) -> Built:
        """The model and guide a run is evaluated and drawn with.

        The kind decides (:meth:`~pyro_vi.spec.kinds.ModelKind.for_evaluation`): a relaxed
        sigmoid belief net trains a relaxation of the discrete model and is judged as the
        discrete model with the same parameters, so that its test ELBO and log-likelihood
        compare with the discrete variants'. Every other run: itself.
        """
        model, guide = kind_of(self.spec).for_evaluation(self.model, self.guide)
        if model is not self.model or guide is not self.guide:
            return replace(self, model=model, guide=guide)
        return self

    @property
    def relaxed(self) -> bool:
        """Whether the trained model is a relaxation of the model it is judged as."""
        return self.for_evaluation().model is not self.model


def build(spec: Spec | Mapping[str, Any], info: DataInfo) -> Built:
    """Build the model, guide and estimator that ``spec`` describes, for data shaped ``info``.

    Arguments:
        spec: A :class:`Spec`, or a dict that :func:`~pyro_vi.spec.resolve.resolve` validates.
        info: The data's shape and classes (``load_data(spec).info``).

    Returns:
        A :class:`Built`; its model and guide have fresh parameters (seed with
        ``pyro.set_rng_seed`` first for reproducibility).

    Raises:
        SpecError: a dict that is not a valid spec.
        TypeError: ``spec`` is neither a Spec nor a dict.
    """
    spec = as_spec(spec)
    model, guide = kind_of(spec).build(spec, info)
    options = {k: v for k, v in spec.estimator.items() if k != "name"}
    return Built(model, guide, estimators.get(spec.estimator["name"], **options), spec, info)


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
