"""The shared machinery of the flow families: a Gaussian base from h, then transforms of h.

q(u | h) is the law of u = f_T(... f_1(e; h) ...; h) with e ~ N(mu(h), diag sigma(h)^2), so

    log q(u | h) = log N(e; mu(h), sigma(h)^2) - sum_t log |det df_t/de_{t-1}|.

Each flow family (one small module per kind) is a :class:`Flow` whose ``steps`` are modules with
``condition(context) -> Transform`` (Pyro's ``ConditionalTransformModule`` interface), which keeps
every transform's parameters a function of h; :class:`Reverse` steps between them let
autoregressive and coupling steps see every coordinate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro.distributions as dist
import torch
from pyro.distributions.transforms import Permute
from pyro.nn import ConditionalAutoRegressiveNN
from torch import nn

from pyro_vi._checks import check_float
from pyro_vi.guides.families.base import Family
from pyro_vi.guides.families.diagonal import DiagonalNormal


class FlowDistribution(dist.TransformedDistribution):
    """Pyro's ``TransformedDistribution`` that says why a fresh value cannot be scored.

    ``log_prob`` inverts the transforms. Each transform caches its latest input and output, so
    the tensor that ``rsample`` returned last is scored without inverting anything (``expand``
    shares the transforms, so this holds for Pyro's particle plate: one ``rsample`` of the
    expanded distribution, then ``log_prob`` of that very tensor). A transform without a
    closed-form inverse cannot score any other value (a copy, a detached view, an earlier
    sample), and the error says so instead of Pyro's ``KeyError``.

    Arguments:
        base_dist: Distribution of e.
        transforms: The maps applied to e, in order.
        has_tractable_inverse: Whether every transform can invert a fresh value.
    """

    def __init__(
        self,
        base_dist: dist.TorchDistribution,
        transforms: Sequence[dist.transforms.Transform],
        has_tractable_inverse: bool,
    ) -> None:
        super().__init__(base_dist, list(transforms))
        self.has_tractable_inverse = has_tractable_inverse

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(FlowDistribution, _instance)
        new.has_tractable_inverse = self.has_tractable_inverse
        return super().expand(batch_shape, _instance=new)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        try:
            return super().log_prob(value)
        except (KeyError, NotImplementedError) as error:
            if self.has_tractable_inverse:
                raise
            kinds = sorted({type(t).__name__ for t in self.transforms})
            raise NotImplementedError(
                f"this flow ({', '.join(kinds)}) has no closed-form inverse, so log_prob can only "
                "be evaluated at the tensor its rsample returned last (the same object, not a "
                "copy, a detached view or an earlier sample); estimators that score detached or "
                "fresh values (stl, dreg) need a family with has_tractable_inverse = True"
            ) from error


class Reverse(nn.Module):
    """A step that reverses the coordinates: ``condition(context)`` gives a fixed ``Permute``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("permutation", torch.arange(dim - 1, -1, -1), persistent=False)

    def condition(self, context: torch.Tensor) -> dist.transforms.Transform:
        return Permute(self.permutation)


def reversed_between(steps: Sequence[nn.Module], dim: int) -> list[nn.Module]:
    """``steps`` with a :class:`Reverse` between consecutive ones."""
    result: list[nn.Module] = []
    for index, step in enumerate(steps):
        if index:
            result.append(Reverse(dim))
        result.append(step)
    return result


def default_hidden(dim: int, features: int) -> tuple[int, ...]:
    """The default hidden layers of a flow's networks: one of ``max(features, 4 dim)`` units."""
    return (max(features, 4 * dim),)


def autoregressive_net(
    dim: int, features: int, hidden: Sequence[int], param_dims: Sequence[int]
) -> ConditionalAutoRegressiveNN:
    """A conditional MADE from (u, h) to ``param_dims`` outputs per coordinate of u.

    The coordinates keep their order (so the network is reproducible from its configuration):
    :class:`Reverse` steps between the flow's steps change the order instead.
    """
    if min(hidden) < dim:
        raise ValueError(
            f"hidden layers of an autoregressive network need at least dim={dim} units, "
            f"got hidden={list(hidden)}"
        )
    return ConditionalAutoRegressiveNN(
        dim, features, list(hidden), param_dims=list(param_dims), permutation=torch.arange(dim)
    )


def inverse_softplus(value: float) -> float:
    """The x with softplus(x) = value (> 0)."""
    return value + math.log(-math.expm1(-value))


@torch.no_grad()
def shrink_(layer: nn.Linear, scale: float = 1e-2) -> nn.Linear:
    """Scale an output layer's weights down and zero its bias, in place.

    A network whose output starts near its bias makes its step start near a fixed transform
    (chosen through the bias, usually the identity), so a flow starts as its Gaussian base and
    training is stable; the small nonzero weights keep every gradient path alive.
    """
    layer.weight.mul_(scale)
    if layer.bias is not None:
        layer.bias.zero_()
    return layer


class Flow(Family):
    r"""Base class of the flow families: N(mu(h), diag sigma(h)^2), then ``steps`` of h.

    A subclass calls ``super().__init__(dim, features, min_scale=...)`` and fills
    ``self.steps`` with modules that have ``condition(context) -> Transform``; it sets
    ``has_tractable_inverse`` to whether every step can invert a value it did not produce.
    ``forward`` returns a :class:`FlowDistribution` (a Pyro ``TransformedDistribution``).

    Arguments:
        dim: Size of the latent vector.
        features: Size of the context.
        min_scale: Floor of the base scales (>= 0).
    """

    def __init__(self, dim: int, features: int, *, min_scale: float = 1e-5) -> None:
        super().__init__(dim, features)
        min_scale = check_float("min_scale", min_scale, minimum=0.0)
        self.base = DiagonalNormal(self.dim, self.features, min_scale=min_scale)
        self.steps = nn.ModuleList()

    def _posterior(self, context: torch.Tensor) -> FlowDistribution:
        transforms = [step.condition(context) for step in self.steps]
        return FlowDistribution(self.base(context), transforms, self.has_tractable_inverse)
