"""The variational autoencoder's generative model as a Pyro model.

p(z) = N(0, I_D) and p(x | z) = likelihood(decoder(z)), one latent ``z`` per datapoint, inside
the data plate. The guide (encoder) lives in :mod:`pyro_vi.guides`.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyro_vi._checks import check_int, describe
from pyro_vi._module import UniquePyroModule
from pyro_vi.models.likelihoods import Likelihood, make_likelihood
from pyro_vi.plates import data_plate


class VAE(UniquePyroModule):
    """Generative model of a VAE: z_i ~ N(0, I_D), x_i | z_i ~ likelihood(decoder(z_i)).

    Sample sites: ``"z"`` (latent, shape ``[B, D]``) and ``"x"`` (observed). ``model(x)`` scores a
    batch; ``model(x, num_data=N)`` treats it as a minibatch of a dataset of N points.

    Arguments:
        decoder: Maps latents ``[..., D]`` to likelihood parameters ``[..., *data_shape]``.
        latent_dim: D.
        likelihood: A :class:`~pyro_vi.models.likelihoods.Likelihood` or one of
            :data:`~pyro_vi.models.likelihoods.LIKELIHOODS`.
        data_shape: Shape of one datapoint; needed to build a likelihood by name.

    Example:
        >>> model = VAE(MLPDecoder(8, [64], (1, 8, 8)), latent_dim=8, data_shape=(1, 8, 8))
        >>> pyro.poutine.trace(model).get_trace(x).nodes["z"]["value"].shape
        torch.Size([100, 8])
    """

    def __init__(
        self,
        decoder: nn.Module,
        latent_dim: int,
        likelihood: Likelihood | str = "bernoulli",
        data_shape: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(decoder, nn.Module):
            raise TypeError(f"decoder must be a torch.nn.Module, got {describe(decoder)}")
        self.decoder = decoder
        self.latent_dim = check_int("latent_dim", latent_dim, minimum=1)
        if isinstance(likelihood, str):
            if data_shape is None:
                data_shape = getattr(decoder, "data_shape", None)
            if data_shape is None:
                raise ValueError(
                    f"data_shape is needed to build the likelihood {likelihood!r} by name"
                )
            likelihood = make_likelihood(likelihood, data_shape)
        if not isinstance(likelihood, Likelihood):
            raise TypeError(
                f"likelihood must be a Likelihood or a name, got {describe(likelihood)}"
            )
        self.likelihood = likelihood
        self._checked_data = False

    def forward(self, x: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {describe(x)}")
        if not self._checked_data:
            # Checked once: a full pass over the support on every step would cost a device sync.
            self.likelihood.check_data(x)
            self._checked_data = True
        event_dim = x.dim() - 1
        prior = dist.Normal(x.new_zeros(self.latent_dim), 1.0).to_event(1)
        with data_plate(x, num_data):
            z = pyro.sample("z", prior)
            pyro.sample("x", self.likelihood(self.decoder(z), event_dim), obs=x)
        return z
