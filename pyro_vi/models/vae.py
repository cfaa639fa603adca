"""The variational autoencoder's generative model as a Pyro model.

p(z) = prior (N(0, I_D) by default) and p(x | z) = likelihood(decoder(z)), one latent ``z`` per
datapoint, inside the data plate. The guide (encoder) lives in :mod:`pyro_vi.guides`. The
conditional and hierarchical variants (:mod:`pyro_vi.models.conditional`,
:mod:`pyro_vi.models.hierarchical`) share the base class :class:`DeepLatentModel`.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import torch
from torch import nn

from pyro_vi._checks import check_int, describe
from pyro_vi._module import UniquePyroModule
from pyro_vi.models.likelihoods import Likelihood, make_likelihood
from pyro_vi.models.priors import Prior, resolve_prior
from pyro_vi.plates import data_plate


def resolve_likelihood(
    likelihood: Likelihood | str, decoder: nn.Module, data_shape: Sequence[int] | None
) -> Likelihood:
    """``likelihood`` as a module; a name is built with ``data_shape`` (or ``decoder.data_shape``).

    Arguments:
        likelihood: A :class:`~pyro_vi.models.likelihoods.Likelihood` or one of
            :data:`~pyro_vi.models.likelihoods.LIKELIHOODS` (built with default options).
        decoder: The decoder, whose ``data_shape`` attribute is used when ``data_shape`` is None.
        data_shape: Shape of one datapoint.

    Returns:
        The likelihood module.
    """
    if isinstance(likelihood, str):
        if data_shape is None:
            data_shape = getattr(decoder, "data_shape", None)
        if data_shape is None:
            raise ValueError(f"data_shape is needed to build the likelihood {likelihood!r} by name")
        likelihood = make_likelihood(likelihood, data_shape)
    if not isinstance(likelihood, Likelihood):
        raise TypeError(f"likelihood must be a Likelihood or a name, got {describe(likelihood)}")
    return likelihood


class DeepLatentModel(UniquePyroModule):
    """Base class of the decoder models: a ``decoder``, a ``likelihood`` and a ``prior``.

    A subclass calls ``super().__init__(decoder, likelihood, data_shape, prior, prior_dim)`` and
    implements ``forward(x, ..., num_data=None)``, calling :meth:`check_data` on ``x`` first.

    Arguments:
        decoder: The network whose output parametrizes the likelihood.
        likelihood: A Likelihood or a name (see :func:`resolve_likelihood`).
        data_shape: Shape of one datapoint; needed to build a likelihood by name when the
            decoder has no ``data_shape`` attribute.
        prior: A :class:`~pyro_vi.models.priors.Prior`, a name of
            :data:`~pyro_vi.models.priors.PRIORS`, or ``None`` for N(0, I).
        prior_dim: The size of the latent vector the prior is over.
    """

    def __init__(
        self,
        decoder: nn.Module,
        likelihood: Likelihood | str,
        data_shape: Sequence[int] | None,
        prior: Prior | str | None,
        prior_dim: int,
    ) -> None:
        super().__init__()
        if not isinstance(decoder, nn.Module):
            raise TypeError(f"decoder must be a torch.nn.Module, got {describe(decoder)}")
        self.decoder = decoder
        self.likelihood = resolve_likelihood(likelihood, decoder, data_shape)
        self.prior = resolve_prior(prior, prior_dim)
        self._checked_data = False

    def check_data(self, x: torch.Tensor) -> None:
        """Check ``x`` against the likelihood's support at the first call only."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {describe(x)}")
        if not self._checked_data:
            # Checked once: a full pass over the support on every step would cost a device sync.
            self.likelihood.check_data(x)
            self._checked_data = True


class VAE(DeepLatentModel):
    """Generative model of a VAE: z_i ~ p(z), x_i | z_i ~ likelihood(decoder(z_i)).

    Sample sites: ``"z"`` (latent, shape ``[B, D]``) and ``"x"`` (observed). ``model(x)`` scores a
    batch; ``model(x, num_data=N)`` treats it as a minibatch of a dataset of N points.

    Arguments:
        decoder: Maps latents ``[..., D]`` to likelihood parameters
            ``[..., *likelihood.params_shape(data_shape)]``.
        latent_dim: D.
        likelihood: A :class:`~pyro_vi.models.likelihoods.Likelihood` or one of
            :data:`~pyro_vi.models.likelihoods.LIKELIHOODS`.
        data_shape: Shape of one datapoint; needed to build a likelihood by name.
        prior: p(z): a :class:`~pyro_vi.models.priors.Prior`, a name (``"standard_normal"``,
            ``"mixture"``) or ``None`` for N(0, I_D).

    Example:
        >>> model = VAE(MLPDecoder(8, [64], (1, 8, 8)), latent_dim=8, data_shape=(1, 8, 8))
        >>> site = pyro.poutine.trace(model).get_trace(x).nodes["z"]
        >>> site["value"].shape
        torch.Size([100, 8])
    """

    def __init__(
        self,
        decoder: nn.Module,
        latent_dim: int,
        likelihood: Likelihood | str = "bernoulli",
        data_shape: tuple[int, ...] | None = None,
        prior: Prior | str | None = None,
    ) -> None:
        latent_dim = check_int("latent_dim", latent_dim, minimum=1)
        super().__init__(decoder, likelihood, data_shape, prior, latent_dim)
        self.latent_dim = latent_dim

    def forward(self, x: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        self.check_data(x)
        event_dim = x.dim() - 1
        prior = self.prior(x)
        with data_plate(x, num_data):
            z = pyro.sample("z", prior)
            pyro.sample("x", self.likelihood(self.decoder(z), event_dim), obs=x)
        return z
