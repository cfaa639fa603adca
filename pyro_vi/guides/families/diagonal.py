"""q(u | h) = N(mu(h), diag sigma(h)^2): the mean-field Gaussian, and the base of every flow."""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions.utils import _standard_normal
from torch.nn.functional import softplus

from pyro_vi import _noise_scoring
from pyro_vi._checks import check_float
from pyro_vi.guides.families.base import Family


class DiagonalNormal(Family):
    r"""q(u | h) = N(mu(h), diag sigma(h)^2) with linear heads on the context.

    ``sigma = min_scale + softplus(.)``: the floor keeps log q finite when a head saturates. The
    KL to a Gaussian prior is in closed form (the ``meanfield`` estimator uses it).

    Arguments:
        dim: Size of the latent vector.
        features: Size of the context.
        min_scale: Floor of sigma (>= 0).

    References:
        Kingma & Welling, Auto-Encoding Variational Bayes (2014).

    Example:
        >>> q = DiagonalNormal(dim=4, features=16)(torch.randn(8, 16))
        >>> q.batch_shape, q.event_shape
        (torch.Size([8]), torch.Size([4]))
    """

    name = "diagonal"
    closed_form_kl = True

    def __init__(self, dim: int, features: int, *, min_scale: float = 1e-5) -> None:
        super().__init__(dim, features)
        self.min_scale = check_float("min_scale", min_scale, minimum=0.0)
        self.loc_head = nn.Linear(self.features, self.dim)
        self.scale_head = nn.Linear(self.features, self.dim)

    def loc_scale(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mu(h) and sigma(h), each ``[..., dim]``."""
        return self.loc_head(context), self.min_scale + softplus(self.scale_head(context))

    def _posterior(self, context: torch.Tensor) -> dist.TorchDistribution:
        loc, scale = self.loc_scale(context)
        return NoiseNormal(loc, scale).to_event(1)


_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class NoiseNormal(dist.Normal):
    r"""``Normal(loc, scale)`` that scores its own reparameterized samples from their noise.

    For z = mu + eps * sigma drawn by :meth:`rsample`,
    log N(z; mu, sigma) = -eps^2 / 2 - log sigma - log(2 pi) / 2, whose value is the same and
    whose derivative in (mu, sigma), through z and through the density's parameters together,
    is the same as the general formula's, with fewer operations: no (z - mu) / sigma, and a
    backward pass that touches only log sigma (the hand-written VAE step computes log q this
    way). Any other value (a detached copy, a replayed or observed one) is scored by the general
    formula, so a gradient taken through z alone, as STL and DReG take it by re-scoring a
    detached sample, is unchanged. The gradient of log q then reaches (mu, sigma) without
    passing through z: inside :func:`pyro_vi._noise_scoring.through_samples` (DReG's one-pass
    gradient, which rescales what reaches z) the general formula is used. The noise drawn and
    the sample are those of ``Normal.rsample``.
    """

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008
        shape = self._extended_shape(sample_shape)
        noise = _standard_normal(shape, dtype=self.loc.dtype, device=self.loc.device)
        value = self.loc + noise * self.scale
        self._drawn = (value, noise)
        return value

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        drawn = getattr(self, "_drawn", None)  # an expanded copy starts without one
        if drawn is not None and value is drawn[0] and _noise_scoring.enabled():
            noise = drawn[1]
            return -0.5 * noise.square() - self.scale.log() - _HALF_LOG_2PI
        return super().log_prob(value)
