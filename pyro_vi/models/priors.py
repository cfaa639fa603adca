"""Priors p(z) over one latent vector: the standard normal and a learned mixture of Gaussians.

A prior is an ``nn.Module`` (it may own parameters). Subclasses implement

- ``__init__(latent_dim, *, <options>)``: calls ``super().__init__(latent_dim)``; every option
  has a default (:func:`prior_options` reads them from the signature);
- ``forward(like) -> TorchDistribution``: p(z) with batch shape ``()`` and event shape
  ``(latent_dim,)``, on the device and dtype of the tensor ``like`` (whose values are unused);

and sets ``closed_form_kl`` (default ``False``): whether KL(q || p) from a Gaussian q has a
closed form, which the ``meanfield`` estimator needs. A prior is registered by name in
:data:`PRIORS`.

Models score and sample priors; they never reparameterize them, so ``rsample`` is not required.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from torch import nn

from pyro_vi._checks import check_int, describe
from pyro_vi._registry import Registry, check_options, keyword_options


class Prior(nn.Module):
    """Base class of p(z); see the module docstring for what a subclass implements.

    Arguments:
        latent_dim: D, the size of the latent vector.
    """

    closed_form_kl: ClassVar[bool] = False

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = check_int("latent_dim", latent_dim, minimum=1)

    def forward(self, like: torch.Tensor) -> dist.TorchDistribution:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"latent_dim={self.latent_dim}"


class _StandardNormal(dist.Normal):
    """N(0, 1) in every entry, with a cheaper log-density: log p(z) = -z^2 / 2 - log(2 pi) / 2.

    torch's general formula computes log sigma, sigma^2 and a division for every entry (and their
    backward), all identically 0, 1 and 1 here; every training step scores the prior, so the
    saving is paid back each step. Same value and same gradient in z; a ``Normal`` for everything
    else (sampling, ``expand``, the closed-form KL). Private: its ``log_prob`` ignores ``loc`` and
    ``scale``, which :class:`StandardNormalPrior` alone builds, as 0 and 1.
    """

    _half_log_2pi = 0.5 * math.log(2 * math.pi)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        log_p = value.square().mul(-0.5).sub(self._half_log_2pi)
        if log_p.shape != self.batch_shape:
            log_p = log_p.expand(torch.broadcast_shapes(log_p.shape, self.batch_shape))
        return log_p


class StandardNormalPrior(Prior):
    """p(z) = N(0, I_D), the VAE's usual prior (no parameters).

    Example:
        >>> StandardNormalPrior(8)(x).event_shape
        torch.Size([8])
    """

    closed_form_kl = True

    def forward(self, like: torch.Tensor) -> dist.TorchDistribution:
        return _StandardNormal(like.new_zeros(self.latent_dim), 1.0).to_event(1)


class GaussianMixture(dist.MixtureSameFamily):
    """``MixtureSameFamily`` of Gaussians over R^D whose support says so: ``real_vector``.

    torch's class reports a ``MixtureSameFamilyConstraint``, which ``biject_to`` does not know;
    the automatic guides read a latent's support to pick its transform, and the support of a
    mixture of Gaussians is all of R^D.
    """

    @constraints.dependent_property(is_discrete=False, event_dim=1)
    def support(self) -> constraints.Constraint:
        return constraints.real_vector


class MixturePrior(Prior):
    """A learned mixture of diagonal Gaussians, p(z) = sum_c pi_c N(z; mu_c, diag sigma_c^2).

    pi = softmax(logits), with logits, means mu_c and log-scales log sigma_c all learned. The means
    start at N(0, I) draws so that the components start spread out (identical components would
    receive identical gradients and never separate); the scales start at 1 and the weights equal.
    The KL of a Gaussian guide to this prior has no closed form: the ``meanfield`` estimator falls
    back to the Monte Carlo term for it.

    Arguments:
        latent_dim: D.
        num_components: C >= 1.

    References:
        Dilokthanakul et al., "Deep unsupervised clustering with Gaussian mixture variational
        autoencoders" (2016); Tomczak & Welling, "VAE with a VampPrior" (AISTATS 2018).

    Example:
        >>> prior = MixturePrior(8, num_components=10)
        >>> prior(x).log_prob(torch.zeros(5, 8)).shape
        torch.Size([5])
    """

    def __init__(self, latent_dim: int, *, num_components: int = 10) -> None:
        super().__init__(latent_dim)
        self.num_components = check_int("num_components", num_components, minimum=1)
        self.logits = nn.Parameter(torch.zeros(self.num_components))
        self.means = nn.Parameter(torch.randn(self.num_components, self.latent_dim))
        self.log_scales = nn.Parameter(torch.zeros(self.num_components, self.latent_dim))

    def forward(self, like: torch.Tensor) -> dist.TorchDistribution:
        # .to(like) is differentiable: the parameters keep their gradients on any device/dtype.
        mixing = dist.Categorical(logits=self.logits.to(like))
        components = dist.Normal(self.means.to(like), self.log_scales.to(like).exp()).to_event(1)
        return GaussianMixture(mixing, components)

    def extra_repr(self) -> str:
        return f"latent_dim={self.latent_dim}, num_components={self.num_components}"


#: Every prior by name, in the order the docs list them.
PRIORS: Registry[type[Prior]] = Registry("prior")
PRIORS.register("standard_normal", StandardNormalPrior)
PRIORS.register("mixture", MixturePrior)


def prior_options(name: str) -> dict[str, Any]:
    """The options of the prior ``name`` with their defaults.

    Arguments:
        name: One of :data:`PRIORS`.

    Returns:
        A dict option name -> default, e.g. ``{"num_components": 10}`` for ``"mixture"``.

    Raises:
        ValueError: an unknown name, listing the priors.

    Example:
        >>> prior_options("mixture")
        {'num_components': 10}
    """
    return keyword_options(PRIORS[name], skip=("latent_dim",))


def make_prior(name: str, latent_dim: int, **options: Any) -> Prior:
    """Build a prior by name.

    Arguments:
        name: ``"standard_normal"`` (N(0, I)) or ``"mixture"`` (learned mixture of Gaussians).
        latent_dim: D.
        **options: The prior's options (:func:`prior_options` lists them).

    Returns:
        The prior module.

    Raises:
        ValueError: unknown name or option, listing what is allowed; or a bad option value.

    Example:
        >>> make_prior("mixture", 8, num_components=5)
        MixturePrior(latent_dim=8, num_components=5)
    """
    check_options("prior", name, options, prior_options(name))
    return PRIORS[name](latent_dim, **options)


def resolve_prior(
    prior: Prior | str | Mapping[str, Any] | None, latent_dim: int, name: str = "prior"
) -> Prior:
    """``prior`` as a :class:`Prior` over ``latent_dim`` dimensions, for a model's constructor.

    Arguments:
        prior: A :class:`Prior`, a name of :data:`PRIORS`, a table with its name and options
            (``{"name": "mixture", "num_components": 5}``, as a spec writes it), or ``None`` for
            N(0, I).
        latent_dim: The size the model needs.
        name: The argument's name in error messages.

    Returns:
        The prior module.

    Raises:
        TypeError: ``prior`` is none of the above.
        ValueError: an unknown name, or a prior over a different number of dimensions.
    """
    if prior is None:
        return StandardNormalPrior(latent_dim)
    if isinstance(prior, str):
        return make_prior(prior, latent_dim)
    if isinstance(prior, Mapping) and "name" in prior:
        options = {k: v for k, v in prior.items() if k != "name"}
        return make_prior(prior["name"], latent_dim, **options)
    if not isinstance(prior, Prior):
        raise TypeError(
            f"{name} must be a Prior, one of {list(PRIORS)}, a table with 'name' and options, or "
            f"None, got {describe(prior)}"
        )
    if prior.latent_dim != latent_dim:
        raise ValueError(
            f"{name} is over {prior.latent_dim} dimensions but the model's latent has {latent_dim}"
        )
    return prior
