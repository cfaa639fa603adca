"""Rényi (variational Rényi, VR) bounds and their alpha -> -infinity limit.

    L_alpha = 1/(1 - alpha) log (1/K) sum_k w_k^(1 - alpha),   per datapoint,

with w_k = p(x, z_k) / q(z_k | x). alpha = 0 is the IWAE bound, alpha = 1 the ELBO (its limit), and
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


def renyi_bound(log_w: torch.Tensor, alpha: float) -> torch.Tensor:
    """L_alpha = 1/(1 - alpha) log (1/K) sum_k w_k^(1 - alpha) over the first dimension.

    Computed around the mean m of the log-weights, L_alpha = m + T / s with s = 1 - alpha and
    T = log (1/K) sum_k exp(s (log w_k - m)), so that the limit alpha -> 1 (the ELBO, m) is
    reached smoothly: where s times the spread of the log-weights is small, T is taken as
    log1p(mean(expm1(.))), which keeps its relative precision although T is of order s^2; the
    logsumexp form, exact for larger arguments, would lose it to cancellation.
    """
    mean = log_w.mean(0)
    exponent = 1.0 - alpha
    if exponent == 0.0:
        return mean
    scaled = exponent * (log_w - mean)
    small = scaled.abs().amax(0) < 1.0
    gentle = torch.log1p(torch.expm1(torch.where(small, scaled, 0.0)).mean(0))
    steep = torch.logsumexp(scaled, dim=0) - math.log(log_w.shape[0])
    return mean + torch.where(small, gentle, steep) / exponent


class RenyiBound(Estimator):
    """``"renyi"``: L_alpha with K particles; latents without ``rsample`` get VIMCO's score term.

    Arguments:
        alpha: The order, any finite real: 0 is IWAE, 1 the ELBO (reached smoothly), and
            alpha -> -inf VR-max (``"vrmax"``). For alpha >= 0 it is a lower bound on log p(x).
        num_particles: K.
    """

    name = "renyi"
    requires_reparam = False

    def __init__(
        self,
        alpha: float = 0.0,
        num_particles: int = 2,
        *,
        vectorize_particles: bool = True,
        data_plate: str | None = None,
        max_plate_nesting: int | None = None,
    ) -> None:
        alpha = check_float("alpha", alpha)
        super().__init__(
            num_particles,
            vectorize_particles=vectorize_particles,
            data_plate=data_plate,
            max_plate_nesting=max_plate_nesting,
        )
        self.alpha = alpha

    def bound(self, log_w: torch.Tensor) -> torch.Tensor:
        """L_alpha per column (:func:`renyi_bound`)."""
        return renyi_bound(log_w, self.alpha)


class VRMax(Estimator):
    """``"vrmax"``: max_k log w_k, the alpha -> -inf limit of the Rényi bound.

    An upper bound of the IWAE bound on the same particles, and not a lower bound of log p(x) in
    general; its gradient flows through the best particle only.
    """

    name = "vrmax"
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
        """max_k log w_k per column."""
        return log_w.max(dim=0).values
