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


def check_decoder_output(
    params: torch.Tensor, latent: torch.Tensor, x: torch.Tensor, likelihood: Likelihood
) -> None:
    """Raise a ``ValueError`` naming ``x`` unless the decoder's output fits x's datapoints.

    The decoder maps latents ``[..., B, D]`` to ``[..., B, *likelihood.params_shape(data_shape)]``.
    Data of another shape would be broadcast against that output instead of refused: images
    ``[B, H, W]`` for a decoder of ``(1, H, W)`` scored every x_j under every z_i. Shapes only
    (no device sync), so the check costs nothing inside a captured step.

    Arguments:
        params: The decoder's output.
        latent: What the decoder read.
        x: The data ``[B, *data_shape]``.
        likelihood: The likelihood that reads ``params``.
    """
    expected = (*latent.shape[:-1], *likelihood.params_shape(x.shape[1:]))
    if tuple(params.shape) != expected:
        raise ValueError(
            f"x holds datapoints of shape {tuple(x.shape[1:])}, but the decoder maps latents "
            f"{tuple(latent.shape)} to parameters {tuple(params.shape)}, where the likelihood "
            f"needs {expected} for that data: give x the shape [batch, *data_shape] of the "
            "data the decoder was built for (e.g. images [B, 1, H, W], tables [B, D])"
        )


def _floating_dtype(module: nn.Module) -> torch.dtype | None:
    """The dtype of the module's first floating-point parameter or buffer, if it has one."""
    # Parameters first, each generator on its own: read on every model call (the first
    # parameter answers at once), where chaining both cost twice as much.
    for tensors in (module.parameters, module.buffers):
        for tensor in tensors():
            if tensor.is_floating_point():
                return tensor.dtype
    return None


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

    def latent_like(self, x: torch.Tensor) -> torch.Tensor:
        """A 0-d tensor whose dtype and device the latents take: the model's floating dtype
        (its decoder's, else its own parameters', else that of floating ``x``, else torch's
        default) on the device of ``x``.

        Not the data's dtype: integer counts have none that a Gaussian can take, and float64
        data (what numpy gives) would draw float64 latents that a float32 decoder refuses.
        """
        dtype = _floating_dtype(self.decoder) or _floating_dtype(self)
        if dtype is None:
            dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
        return torch.zeros((), dtype=dtype, device=x.device)

    def observe(self, x: torch.Tensor, latent: torch.Tensor, event_dim: int) -> None:
        """The observed site ``"x"``: ``likelihood(decoder(latent))`` scoring ``x``, after
        :func:`check_decoder_output`."""
        params = self.decoder(latent)
        check_decoder_output(params, latent, x, self.likelihood)
        pyro.sample("x", self.likelihood(params, event_dim), obs=x)

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
        prior = self.prior(self.latent_like(x))
        with data_plate(x, num_data):
            z = pyro.sample("z", prior)
            self.observe(x, z, event_dim)
        return z
