"""q(u | h) = N(mu(h), L(h) L(h)^T): a Gaussian with a full covariance from the context."""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import nn
from torch.nn.functional import softplus

from pyro_vi._checks import check_float
from pyro_vi.guides.families.base import Family
from pyro_vi.guides.families.flow import shrink_


class FullRankNormal(Family):
    r"""q(u | h) = N(mu(h), L(h) L(h)^T), L lower-triangular with a positive diagonal.

    Linear heads give mu, the dim diagonal entries of L (``min_scale + softplus(.)``, so L is a
    valid Cholesky factor and log|L| stays finite) and its dim (dim - 1) / 2 entries below the
    diagonal. The head has O(features dim^2) weights: fine for tens of latents. The KL to a
    Gaussian prior is in closed form.

    Arguments:
        dim: Size of the latent vector.
        features: Size of the context.
        min_scale: Floor of the diagonal of L (>= 0).

    References:
        Kingma & Welling, Auto-Encoding Variational Bayes (2014), appendix C (full covariance).

    Example:
        >>> q = FullRankNormal(dim=4, features=16)(torch.randn(8, 16))
        >>> q.scale_tril.shape
        torch.Size([8, 4, 4])
    """

    name = "full_rank"
    closed_form_kl = True

    def __init__(self, dim: int, features: int, *, min_scale: float = 1e-5) -> None:
        super().__init__(dim, features)
        self.min_scale = check_float("min_scale", min_scale, minimum=0.0)
        self.loc_head = nn.Linear(self.features, self.dim)
        self.diagonal_head = nn.Linear(self.features, self.dim)
        rows, cols = torch.tril_indices(self.dim, self.dim, offset=-1)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)
        # dim 1 has nothing below the diagonal (and torch warns about an empty Linear)
        self.off_diagonal_head = nn.Linear(self.features, rows.numel()) if self.dim > 1 else None
        if self.off_diagonal_head is not None:
            # Start near a diagonal Gaussian: with default initialization the dim(dim-1)/2
            # off-diagonal entries start as large as the diagonal ones (for 50 latents, 1225 of
            # them) and the guide began ~17 nats behind the diagonal family on MNIST.
            with torch.no_grad():
                shrink_(self.off_diagonal_head)

    def loc_scale_tril(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mu(h) ``[..., dim]`` and L(h) ``[..., dim, dim]``."""
        diagonal = self.min_scale + softplus(self.diagonal_head(context))
        if self.off_diagonal_head is None:
            return self.loc_head(context), torch.diag_embed(diagonal)
        below = self.off_diagonal_head(context)
        strictly_lower = below.new_zeros((*below.shape[:-1], self.dim, self.dim))
        strictly_lower[..., self.rows, self.cols] = below
        return self.loc_head(context), strictly_lower + torch.diag_embed(diagonal)

    def _posterior(self, context: torch.Tensor) -> dist.TorchDistribution:
        loc, scale_tril = self.loc_scale_tril(context)
        # L is a valid Cholesky factor by construction; validating it costs more than the
        # sampling itself on small batches.
        return dist.MultivariateNormal(loc, scale_tril=scale_tril, validate_args=False)
