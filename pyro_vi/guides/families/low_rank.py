"""q(u | h) = N(mu(h), W(h) W(h)^T + diag d(h)): low-rank-plus-diagonal covariance."""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import nn
from torch.nn.functional import softplus

from pyro_vi._checks import check_float, check_int
from pyro_vi.guides.families.base import Family


class LowRankNormal(Family):
    r"""q(u | h) = N(mu(h), W(h) W(h)^T + diag d(h)), W of shape ``[dim, rank]``.

    Correlations along ``rank`` directions at O(features dim rank) weights, between the diagonal
    and the full-rank family. ``d = (min_scale + softplus(.))^2`` keeps the covariance positive
    definite whatever W is. The KL to a Gaussian prior is in closed form.

    Arguments:
        dim: Size of the latent vector.
        features: Size of the context.
        rank: Columns of W, ``1 <= rank <= dim``.
        min_scale: Floor of sqrt(d) (>= 0).

    References:
        Rezende, Mohamed & Wierstra, Stochastic Backpropagation and Approximate Inference in Deep
        Generative Models (2014), section 4.3 (rank-one plus diagonal covariance).

    Example:
        >>> q = LowRankNormal(dim=6, features=16, rank=2)(torch.randn(8, 16))
        >>> q.cov_factor.shape
        torch.Size([8, 6, 2])
    """

    name = "low_rank"
    closed_form_kl = True

    def __init__(self, dim: int, features: int, *, rank: int = 1, min_scale: float = 1e-5) -> None:
        super().__init__(dim, features)
        self.rank = check_int("rank", rank, minimum=1)
        if self.rank > self.dim:
            raise ValueError(f"rank must be at most dim={self.dim}, got {self.rank}")
        self.min_scale = check_float("min_scale", min_scale, minimum=0.0)
        self.loc_head = nn.Linear(self.features, self.dim)
        self.factor_head = nn.Linear(self.features, self.dim * self.rank)
        self.diagonal_head = nn.Linear(self.features, self.dim)

    def loc_factor_diagonal(
        self, context: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """mu(h) ``[..., dim]``, W(h) ``[..., dim, rank]`` and d(h) ``[..., dim]``."""
        factor = self.factor_head(context).unflatten(-1, (self.dim, self.rank))
        diagonal = (self.min_scale + softplus(self.diagonal_head(context))) ** 2
        return self.loc_head(context), factor, diagonal

    def _posterior(self, context: torch.Tensor) -> dist.TorchDistribution:
        loc, factor, diagonal = self.loc_factor_diagonal(context)
        return dist.LowRankMultivariateNormal(loc, factor, diagonal)
