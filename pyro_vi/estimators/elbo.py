"""Single-bound ELBO estimators: Monte Carlo, analytic KL, score function, sticking the landing.

All estimate the evidence lower bound, per datapoint i,

    ELBO_i = E_q[log p(x_i, z_i) - log q(z_i | x_i)] <= log p(x_i),

by the mean of K log-weights, and differ in the gradient estimator.
"""

from __future__ import annotations

import torch

from pyro_vi._checks import check_float
from pyro_vi.estimators.base import Estimator
from pyro_vi.estimators.core import LogWeights


class TraceELBO(Estimator):
    """``"elbo"``: (1/K) sum_k log w_k, the Monte Carlo ELBO.

    Gradients are reparameterized where the guide allows; a latent without ``rsample`` gets a
    score-function term with a leave-one-out baseline over the K particles (none when K = 1).

    Example:
        >>> svi = SVI(model, guide, Adam({"lr": 1e-3}), loss=TraceELBO(num_particles=4))
    """

    name = "elbo"
    requires_reparam = False

    def _bound(self, log_w: torch.Tensor) -> torch.Tensor:
        return log_w.mean(0)


class MeanFieldELBO(TraceELBO):
    """``"meanfield"``: E_q[log p(x | z)] - KL(q(z | x) || p(z)), with the KL in closed form
    wherever torch has it registered for the pair (q, p) and Monte Carlo elsewhere.

    The KL of a latent is computed from the distributions of that particle, so a prior whose
    parameters depend on other latents gives the conditional KL, which is still unbiased.
    """

    name = "meanfield"
    analytic_kl = True


class ScoreFunctionELBO(TraceELBO):
    """``"score"``: the ELBO with score-function (REINFORCE) gradients for *every* latent.

    grad = E_q[grad log q(z | x) (log w - b)] + E_q[grad log p(x, z)] with z held fixed, for
    discrete or otherwise non-reparameterizable guides. The baseline b is the leave-one-out mean
    of the other particles' log-weights for the same datapoint (K > 1), or a running average of
    past log-weights per datapoint (K = 1), decayed by ``baseline_decay``.

    References:
        Williams (1992); Mnih & Rezende, "Variational inference for Monte Carlo objectives" (2016).
    """

    name = "score"
    detach_latents = True

    def __init__(
        self,
        num_particles: int = 1,
        *,
        baseline_decay: float = 0.9,
        data_plate: str | None = None,
        max_plate_nesting: int | None = None,
    ) -> None:
        super().__init__(num_particles, data_plate=data_plate, max_plate_nesting=max_plate_nesting)
        self.baseline_decay = check_float(
            "baseline_decay", baseline_decay, minimum=0.0, maximum=1.0
        )
        self._running: float | None = None

    def _single_particle_baseline(self, signal: torch.Tensor) -> torch.Tensor | float:
        # One number for all datapoints: minibatches hold different datapoints each step.
        baseline = 0.0 if self._running is None else self._running
        current = float(signal.mean())
        if self._running is None:
            self._running = current
        else:
            self._running = (
                self.baseline_decay * self._running + (1 - self.baseline_decay) * current
            )
        return baseline


class STL(TraceELBO):
    """``"stl"``: the ELBO with the "sticking the landing" gradient for the guide's parameters.

    The score term -E_q[grad_phi log q_phi(z)] (zero in expectation) is dropped, leaving the path
    derivative grad_z [log p(x, z) - log q(z)] dz/dphi, which is exactly zero when q is the exact
    posterior. Parameters the model uses keep the ordinary ELBO gradient.

    References:
        Roeder, Wu & Duvenaud, "Sticking the Landing" (NeurIPS 2017).
    """

    name = "stl"
    requires_reparam = True

    def _guide_surrogate(self, weights: LogWeights) -> torch.Tensor:
        return self._total(weights, weights.stl_log_w().mean(0))

    def _single_pass_surrogate(
        self, weights: LogWeights, guide_surrogate: torch.Tensor
    ) -> torch.Tensor:
        # The STL correction involves log q only: for parameters of the model alone its
        # gradient is the ELBO's, so one surrogate serves both groups.
        return guide_surrogate
