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
from typing import ClassVar

import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from torch import nn
from torch.nn.functional import binary_cross_entropy_with_logits, softplus

from pyro_vi._checks import check_choice, check_float


class Likelihood(nn.Module):
    """Base class; see the module docstring for what a subclass implements."""

    def forward(self, params: torch.Tensor, event_dim: int) -> dist.TorchDistribution:
        raise NotImplementedError

    def check_data(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` when ``x`` lies outside the support; the default accepts all."""


class BernoulliImage(dist.TorchDistribution):
    """Independent Bernoulli pixels with logits l as one event: the last ``event_dim`` dims.

    log p(x) = sum_j [x_j l_j - softplus(l_j)] = -sum_j BCE(l_j, x_j), computed by the fused
    ``binary_cross_entropy_with_logits`` kernel and summed before it is negated, which saves the
    full-size negation (and its backward) of ``Bernoulli(logits).to_event(...)``; the values are
    the same. No argument validation: the likelihood checks the data once.
    """

    arg_constraints: ClassVar[dict] = {"logits": constraints.real}
    has_rsample = False

    def __init__(self, logits: torch.Tensor, event_dim: int) -> None:
        self.logits = logits
        self._event_dim = event_dim
        split = logits.dim() - event_dim
        super().__init__(logits.shape[:split], logits.shape[split:], validate_args=False)

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self) -> constraints.Constraint:
        return constraints.independent(constraints.boolean, self._event_dim)

    @property
    def mean(self) -> torch.Tensor:
        return torch.sigmoid(self.logits)

    @property
    def variance(self) -> torch.Tensor:
        probs = torch.sigmoid(self.logits)
        return probs * (1 - probs)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            return torch.bernoulli(torch.sigmoid(self.logits).expand(shape))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        logits, value = torch.broadcast_tensors(self.logits, value)
        cross_entropy = binary_cross_entropy_with_logits(logits, value, reduction="none")
        if self._event_dim:
            cross_entropy = cross_entropy.flatten(-self._event_dim).sum(-1)
        return -cross_entropy


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
        return BernoulliImage(params, event_dim)

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
