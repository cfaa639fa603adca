"""Rényi (variational Rényi, VR) bounds and their alpha -> -infinity limit.

    L_alpha = 1/(1 - alpha) log (1/K) sum_k w_k^(1 - alpha),   per datapoint,

with w_k = p(x, z_k) / q(z_k | x). alpha = 0 is the IWAE bound, alpha -> 1 the ELBO, and
alpha -> -inf the maximum log-weight (VR-max). L_alpha is non-increasing in alpha; for alpha >= 0
its expectation is a lower bound on log p(x).

References:
    Li & Turner, "Rényi Divergence Variational Inference" (NeurIPS 2016).
"""

from __future__ import annotations

import math

import torch

from pyro_vi._checks import check_float
from pyro_vi.estimators.base import Estimator


class RenyiBound(Estimator):
    """``"renyi"``: L_alpha with K reparameterized particles.

    Arguments:
        alpha: The order; any finite real except 1 (use ``"elbo"`` for alpha = 1 and
            ``"vrmax"`` for alpha -> -inf).
        num_particles: K.
    """

    name = "renyi"

    def __init__(
        self,
        alpha: float = 0.0,
        num_particles: int = 2,
        *,
        data_plate: str | None = None,
        max_plate_nesting: int | None = None,
    ) -> None:
        alpha = check_float("alpha", alpha)
        if alpha == 1.0:
            raise ValueError(
                "alpha=1 makes the Rényi bound the ELBO, where its formula divides by zero; use "
                "the 'elbo' estimator for alpha=1"
            )
        super().__init__(num_particles, data_plate=data_plate, max_plate_nesting=max_plate_nesting)
        self.alpha = alpha

    def _bound(self, log_w: torch.Tensor) -> torch.Tensor:
        exponent = 1.0 - self.alpha
        scaled = torch.logsumexp(exponent * log_w, dim=0) - math.log(log_w.shape[0])
        return scaled / exponent


class VRMax(Estimator):
    """``"vrmax"``: max_k log w_k, the alpha -> -inf limit of the Rényi bound.

    An upper bound of the IWAE bound on the same particles, and not a lower bound of log p(x) in
    general; its gradient flows through the best particle only.
    """

    name = "vrmax"

    def __init__(
        self,
        num_particles: int = 2,
        *,
        data_plate: str | None = None,
        max_plate_nesting: int | None = None,
    ) -> None:
        super().__init__(num_particles, data_plate=data_plate, max_plate_nesting=max_plate_nesting)

    def _bound(self, log_w: torch.Tensor) -> torch.Tensor:
        return log_w.max(dim=0).values
