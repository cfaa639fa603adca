"""The importance weighted bound and its doubly reparameterized gradient.

    IWAE_K = log (1/K) sum_k w_k,   w_k = p(x, z_k) / q(z_k | x),   per datapoint,

with E[IWAE_K] <= E[IWAE_{K+1}] <= log p(x) (Burda et al. 2016, Theorem 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from pyro_vi import _noise_scoring
from pyro_vi._checks import check_int
from pyro_vi.estimators.base import Estimator
from pyro_vi.estimators.core import LogWeights
from pyro_vi.estimators.groups import shares_parameters
from pyro_vi.traces import is_point_mass


def iwae_bound(log_w: torch.Tensor) -> torch.Tensor:
    """log (1/K) sum_k exp(log_w[k]) over the first dimension."""
    return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])


class IWAE(Estimator):
    """``"iwae"``: the IWAE bound with K particles and its standard gradient,
    sum_k w~_k grad log w_k with normalized weights w~_k = w_k / sum_j w_j; latents without
    ``rsample`` get VIMCO's score term (:meth:`Estimator.score_signal`).

    References:
        Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders" (ICLR 2016).
    """

    name = "iwae"
    requires_reparam = False

    def __init__(
        self,
        num_particles: int = 2,
        *,
        vectorize_particles: bool = True,
        data_plate: str | None = None,
        max_plate_nesting: int | None = None,
    ) -> None:
        super().__init__(
            num_particles,
            vectorize_particles=vectorize_particles,
            data_plate=data_plate,
            max_plate_nesting=max_plate_nesting,
        )

    def bound(self, log_w: torch.Tensor) -> torch.Tensor:
        """log (1/K) sum_k w_k per column."""
        return iwae_bound(log_w)


class VIMCO(IWAE):
    """``"vimco"``: the IWAE bound with score-function gradients for *every* latent.

    grad = E[sum_k grad log q(z_k) (IWAE_K - IWAE_K^(-k))] + E[sum_k w~_k grad log w_k] with the
    z_k held fixed, where IWAE_K^(-k) replaces log w_k by the mean of the other particles'
    log-weights (a baseline that does not depend on z_k). For discrete or otherwise
    non-reparameterizable guides; ``iwae`` uses the same score term for its sites without
    ``rsample`` and reparameterized gradients for the rest.

    References:
        Mnih & Rezende, "Variational Inference for Monte Carlo Objectives" (ICML 2016).
    """

    name = "vimco"
    detach_latents = True

    def __init__(
        self,
        num_particles: int = 5,
        *,
        vectorize_particles: bool = True,
        data_plate: str | None = None,
        max_plate_nesting: int | None = None,
    ) -> None:
        num_particles = check_int("num_particles", num_particles, minimum=2)
        super().__init__(
            num_particles,
            vectorize_particles=vectorize_particles,
            data_plate=data_plate,
            max_plate_nesting=max_plate_nesting,
        )


class DReG(IWAE):
    """``"dreg"``: the IWAE bound with doubly reparameterized gradients for the guide.

    For parameters phi that only the guide uses,

        grad_phi IWAE_K = E[ sum_k w~_k^2 d log w_k / d z_k  d z_k / d phi ],

    (Tucker et al. 2018, eq. 5) where d log w_k / d z_k holds q's parameters fixed and follows
    every path through the samples (also z1's path into q(z2 | z1)). It has no score term: its
    variance does not grow with K the way IWAE's guide gradient does, and it is exactly zero at
    the exact posterior. Parameters the model uses get the ordinary IWAE gradient.

    References:
        Tucker, Lawson, Gu & Maddison, "Doubly Reparameterized Gradient Estimators for Monte
        Carlo Objectives" (ICLR 2019).
    """

    name = "dreg"
    requires_reparam = True
    guide_factors = False
    # The identity behind DReG, E_q[f(z) d log q(z) / d phi] = E[df/dz dz/dphi], needs z to have
    # a density that phi moves; a Delta site's value moves with phi but its log q does not (its
    # score is 0), so its parameters take the IWAE gradient, exactly as if the model read them.
    point_masses_follow_bound = True

    def _prepare(
        self, model: Callable, guide: Callable, args: tuple, kwargs: dict
    ) -> tuple[torch.Tensor, torch.Tensor, tuple | None]:
        # The one-pass surrogate rescales the gradient that reaches z: every path from the
        # guide's parameters to log q must then go through z, as the general formula's does.
        with _noise_scoring.through_samples():
            return super()._prepare(model, guide, args, kwargs)

    def guide_surrogate(self, weights: LogWeights) -> torch.Tensor:
        normalized = torch.softmax(weights.log_w.detach(), dim=0)
        return self.total(weights, (normalized.pow(2) * weights.stl_log_w()).sum(0))

    def surrogate(self, weights: LogWeights) -> torch.Tensor | None:
        """sum_k stop(w~_k) log w_k^STL, with the gradient reaching z_k scaled by w~_k.

        Parameters of the model then get sum_k w~_k grad log p (the IWAE gradient), and those
        of the guide sum_k w~_k^2 (d log w_k / d z_k)(d z_k / d phi) (DReG), in one backward
        pass. Valid when every path from the guide's parameters to log w goes through the one
        sample z of the guide's one latent site (not a ``Delta``), computed from z itself (not
        from a cached base sample of a transformed distribution), and when model and guide share
        no ``pyro.param``; otherwise ``None``, and the two-pass form is used.
        """
        if shares_parameters(weights):
            return None  # shared parameters keep the IWAE gradient: two passes
        sites = [run.latent_sites() for run in weights.passes]
        if any(len(found) != 1 for found in sites):
            return None
        fn = sites[0][0]["fn"]
        if _is_transformed(fn) or is_point_mass(fn):
            return None
        normalized = torch.softmax(weights.log_w.detach(), dim=0)  # [K, M]
        start = 0
        for run, (site,) in zip(weights.passes, sites, strict=True):
            rows = normalized[start : start + run.num_particles]
            start += run.num_particles
            z = site["value"]
            if z.requires_grad:
                factor = run.broadcast_to_site(site, rows)
                z.register_hook(lambda grad, factor=factor: grad * factor)
        return self.total(weights, (normalized * weights.stl_log_w()).sum(0))


def _is_transformed(fn: object) -> bool:
    while fn is not None:
        if isinstance(fn, torch.distributions.TransformedDistribution):
            return True
        fn = getattr(fn, "base_dist", None)
    return False
