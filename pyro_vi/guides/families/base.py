"""The base class of every conditional posterior family, and the registry that builds one by name.

A *family* maps a context h (encoder features, ``[..., features]``) to a reparameterized
distribution q(u | h) over unconstrained vectors u in R^dim. Guides put it to use three ways: an
encoder produces h per datapoint (amortized), a per-datapoint guide learns h directly, and a global
latent uses one learned constant h.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import pyro.distributions as dist
import torch
from torch import nn

from pyro_vi._checks import check_int, describe
from pyro_vi._registry import Registry, check_options, keyword_options

#: Every registered family by name; filled by :meth:`Family.__init_subclass__`.
FAMILIES: Registry[type[Family]] = Registry("family", "families")


class Family(nn.Module):
    r"""Base class of q(u | h): a module from a context h to a distribution over R^dim.

    A subclass implements

    - ``__init__(dim, features, *, <options>)``: calls ``super().__init__(dim, features)``,
      validates its options with :mod:`pyro_vi._checks` (so :func:`make_family` reports them) and
      builds its layers; every option has a default;
    - ``_posterior(context) -> TorchDistribution``: q(u | h) for a context ``[..., features]``,
      with ``batch_shape == context.shape[:-1]``, ``event_shape == (dim,)`` and
      ``has_rsample``: ``rsample`` carries pathwise gradients to the parameters and to the
      context; ``expand([K, *batch])`` then ``rsample()`` and ``log_prob`` of that sample work
      (how Pyro's particle plate uses it);

    and sets its name and the capabilities that decide which estimators it works with (the spec
    checks them, :mod:`pyro_vi.spec.capabilities`):

    - ``name``: its name in :data:`FAMILIES` (registration is automatic);
    - ``has_tractable_inverse``: whether ``log_prob`` can be evaluated at a fresh tensor, one that
      was not returned by this distribution's ``rsample`` (flows without a closed-form inverse can
      only score their latest sample, through the transform cache; their distributions carry the
      same attribute, so code that sees only a trace site can read
      ``getattr(site["fn"], "has_tractable_inverse", True)``). ``stl`` and ``dreg`` need it;
    - ``reparameterized``: whether ``rsample`` carries pathwise gradients (default ``True``; the
      multi-sample gradient estimators that need it say so);
    - ``closed_form_kl``: whether torch registers KL(q || p) in closed form for a Gaussian
      prior p (default ``False``; the spec allows the ``meanfield`` estimator only with it). The
      full-rank and low-rank families have it against a ``MultivariateNormal`` prior only: with
      the diagonal N(0, I) of this package's models, ``meanfield`` computes their KL term by
      Monte Carlo.

    :meth:`forward` checks the context and calls ``_posterior``.

    Arguments:
        dim: Size of the latent vector u.
        features: Size of the context h.
    """

    name: ClassVar[str] = ""
    has_tractable_inverse: ClassVar[bool] = True
    reparameterized: ClassVar[bool] = True
    closed_form_kl: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # only a class that declares its own name; a user's subclass of a family keeps the
        # registry entry of its parent unless it names itself
        if cls.__dict__.get("name"):
            FAMILIES.register(cls.name, cls)

    def __init__(self, dim: int, features: int) -> None:
        super().__init__()
        self.dim = check_int("dim", dim, minimum=1)
        self.features = check_int("features", features, minimum=1)

    def _posterior(self, context: torch.Tensor) -> dist.TorchDistribution:
        raise NotImplementedError

    def forward(self, context: torch.Tensor) -> dist.TorchDistribution:
        """q(u | h) for a context ``[..., features]``: batch shape ``[...]``, event ``[dim]``."""
        if not isinstance(context, torch.Tensor) or not context.is_floating_point():
            raise TypeError(f"context must be a floating-point tensor, got {describe(context)}")
        if context.dim() == 0 or context.shape[-1] != self.features:
            raise ValueError(
                f"context must have shape [..., {self.features}] (features={self.features}), "
                f"got {tuple(context.shape)}"
            )
        return self._posterior(context)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, features={self.features}"


def options(name: str) -> dict[str, Any]:
    """The keyword options of the family ``name`` with their defaults.

    Raises:
        ValueError: an unknown name, listing the families.
    """
    return keyword_options(FAMILIES[name], skip=("dim", "features"))


def make_family(name: str, dim: int, features: int, **kwargs: Any) -> Family:
    """Build a posterior family by name.

    Arguments:
        name: One of :data:`FAMILIES`: ``"diagonal"``, ``"full_rank"``, ``"low_rank"``,
            ``"mixture"``, ``"planar"``, ``"radial"``, ``"householder"``, ``"sylvester"``,
            ``"iaf"``, ``"spline_ar"``, ``"affine_coupling"``.
        dim: Size of the latent vector.
        features: Size of the context.
        **kwargs: The family's options, e.g. ``rank=2``, ``num_steps=4``, ``hidden=[64]``
            (:func:`options` lists them with their defaults).

    Returns:
        The family, a module from a context ``[..., features]`` to q(u | h).

    Raises:
        ValueError: unknown name or option, listing what is allowed; or a bad option value.

    Example:
        >>> family = make_family("iaf", dim=8, features=32, num_steps=2)
        >>> q = family(torch.randn(16, 32))  # batch [16], event [8]
    """
    check_options("family", name, kwargs, options(name))
    return FAMILIES[name](dim, features, **kwargs)


def check_hidden(hidden: Any, default: Sequence[int]) -> tuple[int, ...]:
    """``hidden`` as a non-empty tuple of positive layer sizes; ``default`` when it is ``None``."""
    if hidden is None:
        return tuple(default)
    if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence) or not hidden:
        raise TypeError(
            f"hidden must be a non-empty list of layer sizes such as [64, 64], "
            f"got {describe(hidden)}"
        )
    return tuple(check_int(f"hidden[{i}]", size, minimum=1) for i, size in enumerate(hidden))
