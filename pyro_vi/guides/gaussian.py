"""Deprecated: :class:`AmortizedDiagonalNormal`, the diagonal Gaussian guide of one latent site.

Use :class:`~pyro_vi.guides.amortized.AmortizedGuide` with ``family="diagonal"`` (what
:func:`pyro_vi.architectures.mlp_vae` and every spec build): the same q(z | x) for any model,
from the same :class:`~pyro_vi.guides.families.DiagonalNormal` family. This class stays for code
written against it (``benchmarks/handwritten.py`` reads its heads) and will be removed.
"""

from __future__ import annotations

import warnings

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyro_vi._checks import check_float, check_int, describe
from pyro_vi._module import UniquePyroModule
from pyro_vi.guides.families.diagonal import DiagonalNormal
from pyro_vi.nets import encoder_features
from pyro_vi.plates import data_plate

__all__ = ["AmortizedDiagonalNormal"]


class AmortizedDiagonalNormal(UniquePyroModule):
    """Deprecated: q(z_i | x_i) = N(mu(x_i), diag(sigma(x_i)^2)) at one site, built eagerly.

    The encoder's features go through a :class:`~pyro_vi.guides.families.DiagonalNormal` family
    (linear heads, ``sigma = min_scale + softplus(.)``); the latent is sampled at ``site`` in
    the package's data plate, so ``guide(x)`` pairs with any ``model(x)`` that has a
    ``[B, latent_dim]`` latent there. Prefer ``AmortizedGuide(model, encoder,
    family="diagonal")``, which finds the model's latents itself.

    Arguments:
        encoder: Maps data ``[B, ...]`` to features ``[B, F]``; needs an ``out_features``
            attribute or an explicit ``features``.
        latent_dim: Size D of the latent.
        features: F, when the encoder has no ``out_features``.
        site: Name of the latent sample site.
        min_scale: Floor of sigma, which keeps log q finite.

    Example:
        >>> guide = AmortizedDiagonalNormal(MLPEncoder((1, 8, 8), [64]), latent_dim=8)
        >>> SVI(model, guide, Adam({"lr": 1e-3}), Trace_ELBO()).step(x)
    """

    def __init__(
        self,
        encoder: nn.Module,
        latent_dim: int,
        features: int | None = None,
        site: str = "z",
        min_scale: float = 1e-5,
    ) -> None:
        warnings.warn(
            "AmortizedDiagonalNormal is deprecated: use AmortizedGuide(model, encoder, "
            "family='diagonal') from pyro_vi.guides",
            DeprecationWarning,
            stacklevel=2,
        )
        super().__init__()
        features = encoder_features(encoder, features)
        self.encoder = encoder
        self.latent_dim = check_int("latent_dim", latent_dim, minimum=1)
        if not isinstance(site, str) or not site:
            raise TypeError(f"site must be a non-empty string, got {describe(site)}")
        self.site = site
        min_scale = check_float("min_scale", min_scale, minimum=0.0)
        self.family = DiagonalNormal(self.latent_dim, features, min_scale=min_scale)

    @property
    def loc_head(self) -> nn.Linear:
        """The linear head of mu (the family's)."""
        return self.family.loc_head

    @property
    def scale_head(self) -> nn.Linear:
        """The linear head of sigma before the softplus (the family's)."""
        return self.family.scale_head

    @property
    def min_scale(self) -> float:
        """The floor of sigma."""
        return self.family.min_scale

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        """The distribution q(z | x) for the whole batch: batch shape [B], event shape [D]."""
        return self.family(self.encoder(x))

    def forward(self, x: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        q = self.posterior(x)
        with data_plate(x, num_data):
            return pyro.sample(self.site, q)
