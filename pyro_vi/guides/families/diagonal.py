"""q(u | h) = N(mu(h), diag sigma(h)^2): the mean-field Gaussian, and the base of every flow."""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import nn
from torch.nn.functional import softplus

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
        return dist.Normal(loc, scale).to_event(1)
