"""Amortized Gaussian guides: an encoder network maps each datapoint to its own posterior."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn.functional import softplus

from pyro_vi._checks import check_float, check_int, describe
from pyro_vi._module import UniquePyroModule
from pyro_vi.nets import encoder_features
from pyro_vi.plates import data_plate


class AmortizedDiagonalNormal(UniquePyroModule):
    """q(z_i | x_i) = N(mu(x_i), diag(sigma(x_i)^2)), one Gaussian per datapoint.

    ``mu`` and ``sigma = min_scale + softplus(.)`` are linear heads on the encoder's features. The
    latent is sampled (reparameterized) at ``site`` inside the same data plate as the model's, so
    ``guide(x)`` pairs with any model ``model(x)`` that has a ``[B, latent_dim]`` latent there.

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
        super().__init__()
        features = encoder_features(encoder, features)
        self.encoder = encoder
        self.latent_dim = check_int("latent_dim", latent_dim, minimum=1)
        self.loc_head = nn.Linear(features, self.latent_dim)
        self.scale_head = nn.Linear(features, self.latent_dim)
        if not isinstance(site, str) or not site:
            raise TypeError(f"site must be a non-empty string, got {describe(site)}")
        self.site = site
        self.min_scale = check_float("min_scale", min_scale, minimum=0.0)

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        """The distribution q(z | x) for the whole batch: batch shape [B], event shape [D]."""
        features = self.encoder(x)
        loc = self.loc_head(features)
        scale = self.min_scale + softplus(self.scale_head(features))
        return dist.Normal(loc, scale).to_event(1)

    def forward(self, x: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        q = self.posterior(x)
        with data_plate(x, num_data):
            return pyro.sample(self.site, q)
