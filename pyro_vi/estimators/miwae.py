"""Bounds that mix ELBO and IWAE: MIWAE, CIWAE and PIWAE (Rainforth et al. 2018).

Their point is the guide's gradient: the signal-to-noise ratio of IWAE's guide gradient falls
like 1/sqrt(K), so spending particles on several smaller IWAE bounds (or on an ELBO term) trades
a looser bound for a better-trained guide.

References:
    Rainforth, Kosiorek, Le, Maddison, Igl, Wood & Teh, "Tighter Variational Bounds are Not
    Necessarily Better" (ICML 2018).
"""

from __future__ import annotations

import torch

from pyro_vi._checks import check_float, check_int
from pyro_vi.estimators.base import Estimator, leave_one_out_signal
from pyro_vi.estimators.core import LogWeights
from pyro_vi.estimators.iwae import iwae_bound


def miwae_bound(log_w: torch.Tensor, num_outer: int) -> torch.Tensor:
    """(1/M) sum_m IWAE_K(particles of group m), for log_w of M*K rows."""
    grouped = log_w.reshape(num_outer, -1, *log_w.shape[1:])
    return iwae_bound(grouped.transpose(0, 1)).mean(0)


class _OuterInner(Estimator):
    requires_reparam = False

    def __init__(
        self,
        num_outer: int = 1,
        num_inner: int = 2,
        *,
        vectorize_particles: bool = True,
        data_plate: str | None = None,
        max_plate_nesting: int | None = None,
    ) -> None:
        self.num_outer = check_int("num_outer", num_outer, minimum=1)
        self.num_inner = check_int("num_inner", num_inner, minimum=1)
        super().__init__(
            self.num_outer * self.num_inner,
            vectorize_particles=vectorize_particles,
            data_plate=data_plate,
            max_plate_nesting=max_plate_nesting,
        )


class MIWAE(_OuterInner):
    """``"miwae"``: (1/M) sum_m IWAE_K, the mean of M independent IWAE bounds of K particles
    each (M*K particles in one vectorized pass). M=1 is IWAE_K, K=1 the ELBO with M particles."""

    name = "miwae"

    def bound(self, log_w: torch.Tensor) -> torch.Tensor:
        """(1/M) sum_m IWAE_K of group m, per column."""
        return miwae_bound(log_w, self.num_outer)


class CIWAE(Estimator):
    """``"ciwae"``: beta * ELBO + (1 - beta) * IWAE_K on the same K particles.

    Arguments:
        beta: Weight of the ELBO, in [0, 1]: 1 is the ELBO, 0 is IWAE.
        num_particles: K.
    """

    name = "ciwae"
    requires_reparam = False

    def __init__(
        self,
        beta: float = 0.5,
        num_particles: int = 2,
        *,
        vectorize_particles: bool = True,
        data_plate: str | None = None,
        max_plate_nesting: int | None = None,
    ) -> None:
        self.beta = check_float("beta", beta, minimum=0.0, maximum=1.0)
        super().__init__(
            num_particles,
            vectorize_particles=vectorize_particles,
            data_plate=data_plate,
            max_plate_nesting=max_plate_nesting,
        )

    def bound(self, log_w: torch.Tensor) -> torch.Tensor:
        """beta (1/K) sum_k log w_k + (1 - beta) IWAE_K per column."""
        return self.beta * log_w.mean(0) + (1.0 - self.beta) * iwae_bound(log_w)


class PIWAE(_OuterInner):
    """``"piwae"``: the model trains on IWAE_{M*K}, the guide on MIWAE_{M,K}, from one pass of
    M*K particles. The reported bound is IWAE_{M*K}; parameters that the guide alone uses follow
    the MIWAE gradient, parameters the model uses the IWAE gradient."""

    name = "piwae"
    guide_factors = True

    def bound(self, log_w: torch.Tensor) -> torch.Tensor:
        """IWAE_{M*K} per column."""
        return iwae_bound(log_w)

    def guide_surrogate(self, weights: LogWeights) -> torch.Tensor:
        return self.total(weights, self._guide_bound(weights.log_w))

    def guide_score_signal(self, log_w: torch.Tensor) -> torch.Tensor:
        if log_w.shape[0] == 1:
            return super().guide_score_signal(log_w)
        return leave_one_out_signal(log_w, self._guide_bound)

    def _guide_bound(self, log_w: torch.Tensor) -> torch.Tensor:
        return miwae_bound(log_w, self.num_outer)
