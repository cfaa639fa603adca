"""Observation models p(x | z): they turn a decoder's output into a distribution over one datapoint.

A likelihood is an ``nn.Module`` (it may own parameters, such as a learned per-pixel variance).
Subclasses implement:

- ``forward(params, event_dim) -> Distribution``: the distribution of the data given the decoder's
  output ``params`` of shape ``[..., *data_shape]``, with the last ``event_dim`` dimensions as its
  event;
- ``check_data(x)``: raise a clear ``ValueError`` when ``x`` lies outside the likelihood's support.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro.distributions as dist
import torch
from torch import nn
from torch.nn.functional import softplus

from pyro_vi._checks import check_choice, check_float


class Likelihood(nn.Module):
    """Base class; see the module docstring for what a subclass implements."""

    def forward(self, params: torch.Tensor, event_dim: int) -> dist.TorchDistribution:
        raise NotImplementedError

    def check_data(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` when ``x`` lies outside the support; the default accepts all."""


class BernoulliLikelihood(Likelihood):
    """Independent Bernoulli pixels with logits l: log p(x|z) = sum_j log Bern(x_j; sigmoid(l_j)).

    A proper likelihood for binary data only. Data in [0, 1] that is not binary (grey levels) is
    rejected unless ``allow_grey=True``, in which case the "likelihood" is the Bernoulli
    cross-entropy used by many tutorials: it is not a normalized density of grey levels, so the
    resulting numbers are not log-likelihoods and are not comparable with published results.
    """

    def __init__(self, allow_grey: bool = False) -> None:
        super().__init__()
        self.allow_grey = bool(allow_grey)

    def forward(self, params: torch.Tensor, event_dim: int) -> dist.TorchDistribution:
        # The data is checked once by check_data; torch's own validation would scan the full
        # [particles, batch, pixels] logits and observations on every step (and sync a GPU).
        return dist.Bernoulli(logits=params, validate_args=False).to_event(event_dim)

    def check_data(self, x: torch.Tensor) -> None:
        if self.allow_grey:
            if bool(((x < 0) | (x > 1)).any()):
                raise ValueError(
                    "the Bernoulli likelihood needs data in [0, 1], got values in "
                    f"[{float(x.min()):.3g}, {float(x.max()):.3g}]"
                )
        elif bool(((x != 0) & (x != 1)).any()):
            raise ValueError(
                "the Bernoulli likelihood needs binary data (0 or 1); got values in "
                f"[{float(x.min()):.3g}, {float(x.max()):.3g}] that are not all 0/1. Binarize the "
                "data (e.g. binarize='dynamic' in pyro_vi.data) or pass allow_grey=True to use the "
                "Bernoulli cross-entropy on grey levels (not a normalized likelihood)."
            )


class GaussianLikelihood(Likelihood):
    """Independent Gaussian pixels with mean from the decoder and a learned per-pixel scale.

    log p(x|z) = sum_j log N(x_j; mu_j(z), sigma_j^2) with sigma_j = min_scale + softplus(s_j) and
    one free parameter s_j per pixel, shared by all datapoints. The floor ``min_scale`` keeps the
    density bounded: a pixel that is constant in the data would otherwise drive sigma_j to 0 and
    the ELBO to +infinity.
    """

    def __init__(
        self, data_shape: Sequence[int], init_scale: float = 1.0, min_scale: float = 1e-3
    ) -> None:
        super().__init__()
        self.min_scale = check_float("min_scale", min_scale, minimum=0.0, exclusive_minimum=True)
        init_scale = check_float(
            "init_scale", init_scale, minimum=self.min_scale, exclusive_minimum=True
        )
        # softplus^{-1}(y) = log(expm1(y)) gives the raw value whose scale is init_scale.
        raw = torch.log(torch.expm1(torch.tensor(init_scale - self.min_scale)))
        self.raw_scale = nn.Parameter(raw.expand(tuple(data_shape)).clone())

    @property
    def scale(self) -> torch.Tensor:
        return self.min_scale + softplus(self.raw_scale)

    def forward(self, params: torch.Tensor, event_dim: int) -> dist.TorchDistribution:
        return dist.Normal(params, self.scale).to_event(event_dim)


LIKELIHOODS = ("bernoulli", "bernoulli_grey", "gaussian")


def make_likelihood(name: str, data_shape: Sequence[int]) -> Likelihood:
    """Build a likelihood by name: one of :data:`LIKELIHOODS`."""
    check_choice("likelihood", name, LIKELIHOODS)
    if name == "gaussian":
        return GaussianLikelihood(data_shape)
    return BernoulliLikelihood(allow_grey=name == "bernoulli_grey")
