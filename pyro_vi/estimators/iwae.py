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
