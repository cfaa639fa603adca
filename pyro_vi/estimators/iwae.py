"""The importance weighted bound and its doubly reparameterized gradient.

    IWAE_K = log (1/K) sum_k w_k,   w_k = p(x, z_k) / q(z_k | x),   per datapoint,

with E[IWAE_K] <= E[IWAE_{K+1}] <= log p(x) (Burda et al. 2016, Theorem 1).
"""

from __future__ import annotations

import math

import torch

from pyro_vi.estimators.base import Estimator
from pyro_vi.estimators.core import LogWeights


def iwae_bound(log_w: torch.Tensor) -> torch.Tensor:
    """log (1/K) sum_k exp(log_w[k]) over the first dimension."""
    return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])


class IWAE(Estimator):
    """``"iwae"``: the IWAE bound with K reparameterized particles and its standard gradient,
    sum_k w~_k grad log w_k with normalized weights w~_k = w_k / sum_j w_j.

    References:
        Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders" (ICLR 2016).
    """

    name = "iwae"

    def __init__(
        self,
        num_particles: int = 2,
        *,
        data_plate: str | None = None,
        max_plate_nesting: int | None = None,
    ) -> None:
        super().__init__(num_particles, data_plate=data_plate, max_plate_nesting=max_plate_nesting)

    def _bound(self, log_w: torch.Tensor) -> torch.Tensor:
        return iwae_bound(log_w)


class DReG(IWAE):
    """``"dreg"``: the IWAE bound with doubly reparameterized gradients for the guide.

    For parameters phi that only the guide uses,

        grad_phi IWAE_K = E[ sum_k w~_k^2 d log w_k / d z_k  d z_k / d phi ],

    (Tucker et al. 2018, eq. 5) which has no score term: its variance does not grow with K the
    way IWAE's guide gradient does, and it is exactly zero at the exact posterior. Parameters the
    model uses get the ordinary IWAE gradient.

    References:
        Tucker, Lawson, Gu & Maddison, "Doubly Reparameterized Gradient Estimators for Monte
        Carlo Objectives" (ICLR 2019).
    """

    name = "dreg"

    def _guide_surrogate(self, weights: LogWeights) -> torch.Tensor:
        normalized = torch.softmax(weights.log_w.detach(), dim=0)
        return self._total(weights, (normalized.pow(2) * weights.stl_log_w()).sum(0))

    def _single_pass_surrogate(
        self, weights: LogWeights, guide_surrogate: torch.Tensor
    ) -> torch.Tensor | None:
        """sum_k stop(w~_k) log w_k^STL, with the gradient reaching z_k scaled by w~_k.

        Parameters of the model alone then get sum_k w~_k grad log p (the IWAE gradient), and
        those of the guide alone get sum_k w~_k^2 (d log w_k / d z_k)(d z_k / d phi) (DReG) in one
        backward pass. Valid when every path from the guide's parameters to log w goes through
        the sample z: one latent site whose log q is computed from z itself, not from a cached
        base sample of a transformed distribution (there the two-pass form is used).
        """
        latents = [
            site
            for site in weights.guide_trace.nodes.values()
            if site["type"] == "sample" and not site["is_observed"]
        ]
        if len(latents) != 1 or _is_transformed(latents[0]["fn"]):
            return None
        z = latents[0]["value"]
        normalized = torch.softmax(weights.log_w.detach(), dim=0)  # [K, M]
        count, columns = normalized.shape
        plate = weights.data_plate
        if (
            columns > 1
            and plate is not None
            and plate.dim == -1
            and z.shape[:2] == normalized.shape
        ):
            factor = normalized.reshape(count, columns, *([1] * (z.dim() - 2)))
        elif columns == 1 and z.shape[:1] == (count,) and weights.plate_nesting == 0:
            factor = normalized.reshape(count, *([1] * (z.dim() - 1)))
        else:
            return None
        if z.requires_grad:
            z.register_hook(lambda grad: grad * factor)
        return self._total(weights, (normalized * weights.stl_log_w()).sum(0))


def _is_transformed(fn: object) -> bool:
    while fn is not None:
        if isinstance(fn, torch.distributions.TransformedDistribution):
            return True
        fn = getattr(fn, "base_dist", None)
    return False
