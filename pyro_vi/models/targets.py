"""Two-dimensional unnormalized target densities as Pyro models, for fitting posterior families.

Each target is a density p(z) = p~(z) / Z on R^2 known up to its normalizer Z. As a Pyro model it
has one global latent site ``"z"`` of shape ``[2]`` and a factor ``log p~(z)``:

    z ~ N(0, I) with its log-density masked out,   pyro.factor("target", log p~(z)),

so the model's joint log-density is exactly log p~(z) and, for any guide q(z),

    ELBO(q) = E_q[log p~(z) - log q(z)] = log Z - KL(q || p) <= log Z.

The masked base only gives ``"z"`` a shape and real support (a prior run can draw a value); it
contributes nothing to the log-density. With the known log Z of a target, the gap log Z - ELBO is
the KL divergence of the fitted guide from the target.

=============  ==========================================================  ===================
name           density                                                     log Z
=============  ==========================================================  ===================
``banana``     z_1 ~ N(0, 1.2^2), z_2 | z_1 ~ N(0.6 (z_1^2 - 1.2^2), 0.4^2)    0 (normalized)
``two_moons``  Rezende & Mohamed's U_1: exp(-U_1(z)), two crescents           1.8775 (quadrature)
``ring``       mixture of 8 equal N(m_k, 0.35^2 I), m_k on the circle r = 3    0 (normalized)
``funnel``     v ~ N(0, 3^2), x | v ~ N(0, exp(v / 2)^2), z = (v, x)          0 (normalized)
=============  ==========================================================  ===================

Example:
    >>> target = get_target("banana")
    >>> guide = ...  # any guide with one global latent "z" of shape [2]
    >>> elbo = -pyro_vi.estimators.get("elbo", num_particles=1000).loss(target.model, guide)
    >>> gap = target.log_normalizer - elbo  # KL(q || p) >= 0

References:
    Rezende & Mohamed, "Variational Inference with Normalizing Flows", ICML 2015 (Table 1, U_1).
    Neal, "Slice sampling", Annals of Statistics 2003 (the funnel).
    Haario, Saksman & Tamminen, "Adaptive proposal distribution for random walk Metropolis
    algorithm", Computational Statistics 1999 (the banana: a twisted Gaussian).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor

from pyro_vi._checks import check_int, describe
from pyro_vi._registry import Registry

__all__ = [
    "TARGETS",
    "Target",
    "banana_log_density",
    "funnel_log_density",
    "get_target",
    "ring_log_density",
    "two_moons_log_density",
]

_LOG_2PI = math.log(2 * math.pi)

#: Banana: z_1 ~ N(0, BANANA_SCALE^2), z_2 = y + BANANA_CURVATURE (z_1^2 - BANANA_SCALE^2) with
#: y ~ N(0, BANANA_NOISE^2); the offset centres z_2 at mean 0.
BANANA_SCALE, BANANA_CURVATURE, BANANA_NOISE = 1.2, 0.6, 0.4

#: Two moons: U_1(z) = 1/2 ((|z| - 2) / 0.4)^2 - log(exp(-1/2 ((z_1 - 2) / 0.6)^2)
#: + exp(-1/2 ((z_1 + 2) / 0.6)^2)) (Rezende & Mohamed 2015).
MOONS_RADIUS, MOONS_WIDTH, MOONS_CENTRE, MOONS_SPREAD = 2.0, 0.4, 2.0, 0.6

#: log of the integral of exp(-U_1) over R^2. Computed once by the midpoint rule in float64 on
#: [-6, 6]^2: 2000^2 and 4000^2 cells, and [-8, 8]^2 with 4000^2 cells, all give
#: 1.8775016261097086 (the integrand is smooth and exp(-U_1) < 1e-30 outside |z| = 6, so the rule
#: converges geometrically); tests/models/test_targets.py recomputes it.
MOONS_LOG_NORMALIZER = 1.8775016261097086

#: Ring: an equal mixture of RING_MODES isotropic Gaussians of scale RING_SCALE whose means lie
#: on the circle of radius RING_RADIUS, the first at angle 0.
RING_MODES, RING_RADIUS, RING_SCALE = 8, 3.0, 0.35

#: Funnel: v ~ N(0, FUNNEL_SCALE^2), x | v ~ N(0, exp(v / 2)^2); z = (v, x).
FUNNEL_SCALE = 3.0


def _check_points(z: object) -> Tensor:
    if not isinstance(z, Tensor) or not z.is_floating_point():
        raise TypeError(f"z must be a floating-point tensor of shape [..., 2], got {describe(z)}")
    if z.dim() == 0 or z.shape[-1] != 2:
        raise ValueError(f"z must have shape [..., 2], got {tuple(z.shape)}")
    return z


def _normal_log_prob(value: Tensor, loc: Tensor | float, scale: Tensor | float) -> Tensor:
    # Written out (not torch.distributions.Normal) so that a float scale works for any shape
    # and dtype of value, with no distribution object or argument validation per call.
    standardized = (value - loc) / scale
    log_scale = scale.log() if isinstance(scale, Tensor) else math.log(scale)
    return -0.5 * standardized**2 - log_scale - 0.5 * _LOG_2PI


def banana_log_density(z: Tensor) -> Tensor:
    r"""log p(z) of the banana, a twisted Gaussian (normalized).

    With s = 1.2, b = 0.6, sigma = 0.4:

        log p(z) = log N(z_1; 0, s^2) + log N(z_2; b (z_1^2 - s^2), sigma^2).

    The map (z_1, y) -> (z_1, y + b (z_1^2 - s^2)) has unit Jacobian, so p is the law of a
    Gaussian pushed through it and integrates to 1.

    Arguments:
        z: Points ``[..., 2]``.

    Returns:
        log p(z), shape ``[...]``.
    """
    z = _check_points(z)
    z1, z2 = z.unbind(-1)
    mean = BANANA_CURVATURE * (z1**2 - BANANA_SCALE**2)
    return _normal_log_prob(z1, 0.0, BANANA_SCALE) + _normal_log_prob(z2, mean, BANANA_NOISE)


def two_moons_log_density(z: Tensor) -> Tensor:
    r"""log p~(z) = -U_1(z) of Rezende & Mohamed's two-moons energy (unnormalized).

        U_1(z) = 1/2 ((|z| - 2) / 0.4)^2
                 - log(exp(-1/2 ((z_1 - 2) / 0.6)^2) + exp(-1/2 ((z_1 + 2) / 0.6)^2)),

    a ring of radius 2 cut into two crescents around z_1 = +-2; log Z = 1.8775 (quadrature, see
    ``MOONS_LOG_NORMALIZER``).

    Arguments:
        z: Points ``[..., 2]``.

    Returns:
        -U_1(z), shape ``[...]``.
    """
    z = _check_points(z)
    radial = -0.5 * ((z.norm(dim=-1) - MOONS_RADIUS) / MOONS_WIDTH) ** 2
    right = -0.5 * ((z[..., 0] - MOONS_CENTRE) / MOONS_SPREAD) ** 2
    left = -0.5 * ((z[..., 0] + MOONS_CENTRE) / MOONS_SPREAD) ** 2
    return radial + torch.logaddexp(right, left)


def ring_means(like: Tensor) -> Tensor:
    """The ring's 8 component means ``[8, 2]``, with the dtype and device of ``like``."""
    angles = torch.arange(RING_MODES, dtype=like.dtype, device=like.device)
    angles = angles * (2 * math.pi / RING_MODES)
    return RING_RADIUS * torch.stack([angles.cos(), angles.sin()], dim=-1)


def ring_log_density(z: Tensor) -> Tensor:
    r"""log p(z) of a ring of 8 Gaussians (normalized).

        p(z) = 1/8 sum_k N(z; m_k, 0.35^2 I),  m_k = 3 (cos(2 pi k / 8), sin(2 pi k / 8)).

    Arguments:
        z: Points ``[..., 2]``.

    Returns:
        log p(z), shape ``[...]``.
    """
    z = _check_points(z)
    means = ring_means(z)
    squared = ((z.unsqueeze(-2) - means) ** 2).sum(-1)  # [..., 8]
    log_components = -0.5 * squared / RING_SCALE**2 - 2 * math.log(RING_SCALE) - _LOG_2PI
    return torch.logsumexp(log_components, dim=-1) - math.log(RING_MODES)


def funnel_log_density(z: Tensor) -> Tensor:
    r"""log p(z) of Neal's funnel in two dimensions, z = (v, x) (normalized).

        log p(v, x) = log N(v; 0, 3^2) + log N(x; 0, exp(v / 2)^2).

    The conditional scale of x ranges from e^-4.5 ~ 0.011 to e^4.5 ~ 90 over v = +-3 standard
    deviations: a neck that a Gaussian guide cannot follow.

    Arguments:
        z: Points ``[..., 2]``; ``z[..., 0]`` is v, ``z[..., 1]`` is x.

    Returns:
        log p(z), shape ``[...]``.
    """
    z = _check_points(z)
    v, x = z.unbind(-1)
    # log N(x; 0, e^{v/2}) with the scale's log written as v / 2: no exp-then-log round trip.
    log_x = -0.5 * x**2 * torch.exp(-v) - 0.5 * v - 0.5 * _LOG_2PI
    return _normal_log_prob(v, 0.0, FUNNEL_SCALE) + log_x


Bounds = tuple[tuple[float, float], tuple[float, float]]


@dataclass(frozen=True)
class Target:
    """A 2-D target density p(z) = p~(z) / Z and its Pyro model.

    Attributes:
        name: The name in :data:`TARGETS`.
        log_density: log p~(z) for points ``[..., 2]`` (any leading dims), shape ``[...]``.
        bounds: ``((low_1, high_1), (low_2, high_2))``, a box holding nearly all of the mass: for
            plots, and the grid of :meth:`grid`.
        log_normalizer: log Z, or ``None`` when unknown.
        description: One line for tables and figure titles.
    """

    name: str
    log_density: Callable[[Tensor], Tensor]
    bounds: Bounds
    log_normalizer: float | None
    description: str

    def model(self) -> Tensor:
        """The Pyro model: one global latent ``"z"`` ``[2]`` and the factor log p~(z).

        The latent's base distribution N(0, I) is masked out (``.mask(False)``): it fixes the
        site's shape and real support and lets the model run from its "prior", but adds nothing
        to log p, so log p(z) of the model is log p~(z) exactly.
        """
        base = dist.Normal(torch.zeros(2), 1.0).to_event(1).mask(False)
        z = pyro.sample("z", base)
        pyro.factor("target", self.log_density(z))
        return z

    def grid(
        self, resolution: int = 200, dtype: torch.dtype = torch.float64
    ) -> tuple[Tensor, Tensor, Tensor]:
        """log p~ at the centres of a ``resolution`` x ``resolution`` grid of cells over
        :attr:`bounds`.

        Arguments:
            resolution: Cells per axis.
            dtype: Floating-point type of the grid.

        Returns:
            ``(first, second, log_density)``: the cell centres along each axis ``[n]`` and
            log p~ at every pair ``[n, n]``, indexed ``[i, j] -> (first[i], second[j])``.
        """
        resolution = check_int("resolution", resolution, minimum=2)
        axes = [_centres(low, high, resolution, dtype) for low, high in self.bounds]
        points = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)
        return axes[0], axes[1], self.log_density(points)

    def log_mass_in_bounds(self, resolution: int = 1000) -> float:
        """log of the integral of p~ over :attr:`bounds` by the midpoint rule (float64).

        Equals :attr:`log_normalizer` up to the mass outside the box and the rule's error.
        """
        first, second, log_density = self.grid(resolution)
        cell = (first[1] - first[0]) * (second[1] - second[0])
        return float(torch.logsumexp(log_density.flatten(), dim=0) + cell.log())


def _centres(low: float, high: float, resolution: int, dtype: torch.dtype) -> Tensor:
    step = (high - low) / resolution
    return low + step * (torch.arange(resolution, dtype=dtype) + 0.5)


#: Every target by name.
TARGETS: Registry[Target] = Registry("target")
for _target in (
    Target(
        "banana",
        banana_log_density,
        ((-4.5, 4.5), (-3.0, 7.0)),
        0.0,
        "twisted Gaussian",
    ),
    Target(
        "two_moons",
        two_moons_log_density,
        ((-4.0, 4.0), (-4.0, 4.0)),
        MOONS_LOG_NORMALIZER,
        "Rezende & Mohamed's U1",
    ),
    Target(
        "ring",
        ring_log_density,
        ((-5.0, 5.0), (-5.0, 5.0)),
        0.0,
        "8 Gaussians on a circle",
    ),
    Target(
        "funnel",
        funnel_log_density,
        ((-9.0, 9.0), (-20.0, 20.0)),
        0.0,
        "Neal's funnel, z = (v, x)",
    ),
):
    TARGETS.register(_target.name, _target)
del _target


def get_target(name: str) -> Target:
    """The target called ``name``.

    Arguments:
        name: One of :data:`TARGETS`: ``"banana"``, ``"two_moons"``, ``"ring"``, ``"funnel"``.

    Raises:
        ValueError: unknown name, listing the targets.

    Example:
        >>> get_target("ring").log_normalizer
        0.0
    """
    return TARGETS[name]
