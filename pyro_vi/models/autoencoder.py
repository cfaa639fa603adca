"""A plain (deterministic) autoencoder as a Pyro model/guide pair: the baseline for a VAE.

The model has a latent ``z`` with a flat improper "prior" (log density 0) and x | z ~
likelihood(decoder(z)); the guide puts a point mass at the encoder's code, q(z | x) =
Delta(enc(x)). Trained with any ELBO estimator, minus the "bound" is exactly the reconstruction
negative log-likelihood,

    loss(x) = -log p(x | z = enc(x)),

because log p(z) = 0 and log q(z | x) = 0 at the code. This is **not** a bound on log p(x): the
flat prior is not a distribution, so the model defines no marginal p(x) at all. Report it as a
reconstruction loss, never as a log-likelihood or an ELBO. For the same reason the model cannot
be sampled: :func:`pyro_vi.report.sample_prior` raises :class:`NoPriorError`.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from torch import nn

from pyro_vi._checks import check_int, describe
from pyro_vi._module import UniquePyroModule
from pyro_vi.models.likelihoods import Likelihood
from pyro_vi.models.vae import check_decoder_output, resolve_likelihood
from pyro_vi.nets import encoder_features
from pyro_vi.plates import data_plate

__all__ = ["Autoencoder", "AutoencoderGuide", "DeterministicEncoder", "FlatPrior", "NoPriorError"]


class NoPriorError(NotImplementedError):
    """Raised when a model without a proper prior (an autoencoder) is asked for prior samples.

    A subclass of ``NotImplementedError``, which is what Pyro's ``ImproperUniform`` raises on
    sampling, so code that already handles improper sites keeps working.
    """


class FlatPrior(dist.ImproperUniform):
    """The improper "prior" of an autoencoder's code: log p(z) = 0 everywhere, no sampling.

    Arguments:
        support: The support of z (``constraints.real`` for an autoencoder).
        batch_shape: The batch shape.
        event_shape: The event shape, ``(latent_dim,)``.

    Example:
        >>> FlatPrior(constraints.real, (), (8,)).log_prob(torch.randn(5, 8))
        tensor([0., 0., 0., 0., 0.])
    """

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        # Zeros like the value (Pyro's ImproperUniform makes them on the default device/dtype).
        value_batch = value.shape[: value.dim() - self.event_dim]
        batch_shape = torch.broadcast_shapes(value_batch, self.batch_shape)
        return value.new_zeros(()).expand(batch_shape)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008
        raise NoPriorError(
            "an autoencoder has no prior to sample from: its latent code has a flat improper "
            "'prior' (log density 0), which is not a distribution. Decode chosen codes with "
            "model.decoder, or train a VAE (pyro_vi.models.vae.VAE) to sample new data"
        )

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008
        return self.sample(sample_shape)


def _check_x(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {describe(x)}")
    if x.dim() < 2:
        raise ValueError(f"x must have shape [batch, *data_shape], got shape {tuple(x.shape)}")


class Autoencoder(UniquePyroModule):
    """Generative half of an autoencoder: z_i with log p(z_i) = 0, x_i | z_i ~ likelihood(dec(z_i)).

    Sample sites: ``"z"`` (shape ``[B, latent_dim]``, a :class:`FlatPrior`) and ``"x"``
    (observed), inside the data plate. Paired with :class:`AutoencoderGuide`, minus the ELBO is
    the reconstruction loss -log p(x | enc(x)), which is *not* a bound on log p(x) (see the
    module docstring) and must not be reported as one.

    Arguments:
        decoder: Maps codes ``[..., latent_dim]`` to likelihood parameters ``[..., *data_shape]``.
        latent_dim: Size of the code.
        likelihood: A :class:`~pyro_vi.models.likelihoods.Likelihood` or one of
            :data:`~pyro_vi.models.likelihoods.LIKELIHOODS`.
        data_shape: Shape of one datapoint; needed to build a likelihood by name when the
            decoder has no ``data_shape`` attribute.

    Example:
        >>> model = Autoencoder(MLPDecoder(8, [64], (1, 8, 8)), latent_dim=8)
        >>> guide = AutoencoderGuide(MLPEncoder((1, 8, 8), [64]), latent_dim=8)
        >>> SVI(model, guide, Adam({"lr": 1e-3}), Trace_ELBO()).step(x)  # -log p(x | enc(x))
    """

    def __init__(
        self,
        decoder: nn.Module,
        latent_dim: int,
        likelihood: Likelihood | str = "bernoulli",
        data_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(decoder, nn.Module):
            raise TypeError(f"decoder must be a torch.nn.Module, got {describe(decoder)}")
        self.decoder = decoder
        self.latent_dim = check_int("latent_dim", latent_dim, minimum=1)
        self.likelihood = resolve_likelihood(likelihood, decoder, data_shape)
        self._checked_data = False

    def forward(self, x: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        _check_x(x)
        if not self._checked_data:
            # Once: a full pass over the data's support on every step would cost a device sync.
            self.likelihood.check_data(x)
            self._checked_data = True
        prior = FlatPrior(constraints.real, (), (self.latent_dim,))
        with data_plate(x, num_data):
            z = pyro.sample("z", prior)
            params = self.decoder(z)
            check_decoder_output(params, z, x, self.likelihood)
            pyro.sample("x", self.likelihood(params, x.dim() - 1), obs=x)
        return z


class AutoencoderGuide(UniquePyroModule):
    """The deterministic encoder as a guide: q(z_i | x_i) = Delta(W h(x_i) + b), log q = 0.

    A linear head on the encoder's features gives the code; it is sampled at ``"z"`` inside the
    data plate, so the guide pairs with :class:`Autoencoder` (or any model with a
    ``[B, latent_dim]`` latent there). Gradients flow through the code into the encoder.

    Arguments:
        encoder: Maps data ``[B, ...]`` to features ``[B, F]``; needs an ``out_features``
            attribute or an explicit ``features``.
        latent_dim: Size of the code.
        features: F, when the encoder has no ``out_features``.

    Example:
        >>> guide = AutoencoderGuide(MLPEncoder((1, 8, 8), [64]), latent_dim=8)
        >>> guide.encode(x).shape
        torch.Size([100, 8])
    """

    def __init__(self, encoder: nn.Module, latent_dim: int, *, features: int | None = None) -> None:
        super().__init__()
        features = encoder_features(encoder, features)
        self.encoder = encoder
        self.latent_dim = check_int("latent_dim", latent_dim, minimum=1)
        self.head = nn.Linear(features, self.latent_dim)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The codes enc(x), shape ``[B, latent_dim]``."""
        return self.head(self.encoder(x))

    def forward(self, x: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        _check_x(x)
        code = self.encode(x)
        with data_plate(x, num_data):
            # No argument validation: the code is finite by construction, and checking it would
            # sync the device on every step.
            return pyro.sample("z", dist.Delta(code, event_dim=1, validate_args=False))


#: The same guide under the name of what it is.
DeterministicEncoder = AutoencoderGuide
