"""A VAE with two stochastic layers, z2 -> z1 -> x (Burda et al. 2016, Sec. 5).

p(x_i, z1_i, z2_i) = p(z2_i) N(z1_i; mu(z2_i), diag sigma(z2_i)^2) p(x_i | z1_i): the top layer's
prior is the package's :class:`~pyro_vi.models.priors.Prior`, the middle layer a Gaussian whose
mean and scale an MLP computes from z2, and the likelihood reads the decoder's output at z1. Its
guide, q(z1 | x) q(z2 | z1), is :class:`~pyro_vi.guides.hierarchical.HierarchicalGuide`.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn.functional import softplus

from pyro_vi._checks import check_int, describe
from pyro_vi.models.likelihoods import Likelihood
from pyro_vi.models.priors import Prior
from pyro_vi.models.vae import DeepLatentModel
from pyro_vi.nets import MLP
from pyro_vi.plates import data_plate

# Floor of sigma(z2): keeps log p(z1 | z2) bounded when the network drives a scale towards 0.
MIN_SCALE = 1e-3


def check_latent_dims(latent_dims: Sequence[int]) -> tuple[int, int]:
    """``latent_dims`` as ``(D1, D2)``, two positive ints: the sizes of z1 and z2."""
    is_pair = isinstance(latent_dims, Sequence) and not isinstance(latent_dims, str)
    if not is_pair or len(latent_dims) != 2:
        raise TypeError(
            f"latent_dims must be a pair (D1, D2) of positive ints (sizes of z1 and z2), got "
            f"{describe(latent_dims)}"
        )
    first, second = latent_dims
    first = check_int("latent_dims[0]", first, minimum=1)
    return first, check_int("latent_dims[1]", second, minimum=1)


class HierarchicalVAE(DeepLatentModel):
    """Two stochastic layers: z2_i ~ p(z2), z1_i | z2_i ~ N(mu(z2_i), diag sigma(z2_i)^2) and
    x_i | z1_i ~ likelihood(decoder(z1_i)).

    (mu, sigma) come from one MLP on z2 with ``hidden`` layers and two output halves,
    sigma = 1e-3 + softplus(.). Sample sites ``"z2"`` ``[B, D2]``, ``"z1"`` ``[B, D1]`` and ``"x"``
    (observed), all in the data plate; ``model(x, num_data=N)`` scales a minibatch by N / B.
    Burda et al.'s two-layer MNIST model is 784-200-200-100 (z1) -100-100-50 (z2), tanh: the
    defaults here with ``latent_dims=(100, 50)`` and ``MLPDecoder(100, [200, 200], (1, 28, 28))``.

    Arguments:
        decoder: Maps z1 ``[..., D1]`` to likelihood parameters.
        latent_dims: ``(D1, D2)``, the sizes of z1 and z2.
        hidden: Hidden layer sizes of the network from z2 to (mu, sigma) of z1.
        activation: Its nonlinearity (one of :data:`~pyro_vi.nets.ACTIVATIONS`).
        likelihood: A Likelihood or one of :data:`~pyro_vi.models.likelihoods.LIKELIHOODS`.
        data_shape: Shape of one datapoint; needed to build a likelihood by name.
        prior: p(z2): a :class:`~pyro_vi.models.priors.Prior` over D2 dimensions, a name, or
            ``None`` for N(0, I).

    References:
        Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders" (ICLR 2016), Sec. 5.

    Example:
        >>> model = HierarchicalVAE(MLPDecoder(100, [200, 200], (1, 28, 28)), (100, 50))
        >>> guide = HierarchicalGuide(MLPEncoder((1, 28, 28), [200, 200]), (100, 50))
        >>> SVI(model, guide, Adam({"lr": 1e-3}), loss=get("iwae", num_particles=5)).step(x)
    """

    def __init__(
        self,
        decoder: nn.Module,
        latent_dims: Sequence[int],
        hidden: Sequence[int] = (100, 100),
        activation: str = "tanh",
        likelihood: Likelihood | str = "bernoulli",
        data_shape: tuple[int, ...] | None = None,
        prior: Prior | str | None = None,
    ) -> None:
        first, second = check_latent_dims(latent_dims)
        super().__init__(decoder, likelihood, data_shape, prior, second)
        self.latent_dims = (first, second)
        self.z1_net = MLP(second, hidden, 2 * first, activation)

    def conditional_prior(self, z2: torch.Tensor) -> dist.TorchDistribution:
        """p(z1 | z2) = N(mu(z2), diag sigma(z2)^2): batch shape ``z2.shape[:-1]``, event [D1]."""
        loc, raw_scale = self.z1_net(z2).chunk(2, dim=-1)
        return dist.Normal(loc, MIN_SCALE + softplus(raw_scale)).to_event(1)

    def forward(self, x: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        self.check_data(x)
        event_dim = x.dim() - 1
        prior = self.prior(self.latent_like(x))
        with data_plate(x, num_data):
            z2 = pyro.sample("z2", prior)
            z1 = pyro.sample("z1", self.conditional_prior(z2))
            self.observe(x, z1, event_dim)
        return z1
