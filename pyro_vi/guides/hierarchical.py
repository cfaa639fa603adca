"""The guide of the two-stochastic-layer VAE: q(z1, z2 | x) = q(z1 | x) q(z2 | z1).

The inference network runs bottom-up, as in Burda et al. (2016): an encoder maps x to features
that condition q(z1 | x), and an MLP maps the sampled z1 to features that condition q(z2 | z1).
Each conditional is a posterior family of :mod:`pyro_vi.guides.families` (diagonal Gaussian by
default, or any flow), which accepts contexts with leading particle dimensions, so the multi-sample
estimators work unchanged. It pairs with :class:`~pyro_vi.models.hierarchical.HierarchicalVAE`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro
import torch
from torch import nn

from pyro_vi._checks import describe
from pyro_vi._module import UniquePyroModule
from pyro_vi.guides.families import make_family
from pyro_vi.models.hierarchical import check_latent_dims
from pyro_vi.nets import MLPEncoder, encoder_features
from pyro_vi.plates import data_plate


class HierarchicalGuide(UniquePyroModule):
    """q(z1_i, z2_i | x_i) = q(z1_i | h(x_i)) q(z2_i | g(z1_i)), sites ``"z1"`` then ``"z2"``.

    h is ``encoder``; g is an MLP on z1 with ``hidden`` layers (each followed by the activation);
    both conditionals are the posterior family ``family``. Both sites are sampled in the data
    plate, scaled by N / B when called with ``num_data=N``, like the model's.
    Burda et al.'s two-layer guide is ``MLPEncoder(data_shape, [200, 200])`` with
    ``latent_dims=(100, 50)`` and ``hidden=(100, 100)``, tanh.

    Arguments:
        encoder: Maps x ``[B, ...]`` to features ``[B, F]``; needs an ``out_features`` attribute.
        latent_dims: ``(D1, D2)``, the sizes of z1 and z2.
        hidden: Hidden layer sizes of g (at least one; the last is the size of z2's context).
        activation: Nonlinearity of g (one of :data:`~pyro_vi.nets.ACTIVATIONS`).
        family: Name of the posterior family of both layers (see
            :func:`~pyro_vi.guides.families.make_family`).
        family_options: Its options, e.g. ``{"num_steps": 4}``.

    Example:
        >>> guide = HierarchicalGuide(MLPEncoder((1, 28, 28), [200, 200]), (100, 50))
        >>> guide(x)["z2"].shape
        torch.Size([B, 50])
    """

    def __init__(
        self,
        encoder: nn.Module,
        latent_dims: Sequence[int],
        hidden: Sequence[int] = (100, 100),
        activation: str = "tanh",
        family: str = "diagonal",
        family_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        features = encoder_features(encoder)
        if family_options is not None and not isinstance(family_options, dict):
            raise TypeError(f"family_options must be a dict, got {describe(family_options)}")
        first, second = check_latent_dims(latent_dims)
        self.latent_dims = (first, second)
        self.encoder = encoder
        self.z1_encoder = MLPEncoder((first,), hidden, activation)
        options = dict(family_options or {})
        self.z1_family = make_family(family, first, features, **options)
        self.z2_family = make_family(family, second, self.z1_encoder.out_features, **options)

    def forward(self, x: torch.Tensor, num_data: int | None = None) -> dict[str, torch.Tensor]:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {describe(x)}")
        q_z1 = self.z1_family(self.encoder(x))
        with data_plate(x, num_data):
            z1 = pyro.sample("z1", q_z1)
            # z1 carries the particle dimensions of the estimators, [K, B, D1], and so does
            # the context of q(z2 | z1): the family's batch shape follows it.
            z2 = pyro.sample("z2", self.z2_family(self.z1_encoder(z1)))
        return {"z1": z1, "z2": z2}
