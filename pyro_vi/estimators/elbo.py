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
from pyro_vi.estimators.groups import shares_parameters


class TraceELBO(Estimator):
    """``"elbo"``: (1/K) sum_k log w_k, the Monte Carlo ELBO.

    Gradients are reparameterized where the guide allows; a latent without ``rsample`` gets a
    score-function term with a leave-one-out baseline over the K particles (none when K = 1).
    Model sites marked ``infer={"enumerate": "parallel"}`` are summed out of log p; a guide with
    enumerated sites is handed to Pyro's ``TraceEnum_ELBO``, which sums them out exactly.

    Example:
        >>> svi = SVI(model, guide, Adam({"lr": 1e-3}), loss=TraceELBO(num_particles=4))
    """

    name = "elbo"
    requires_reparam = False
    enumerates_guide = True

    def bound(self, log_w: torch.Tensor) -> torch.Tensor:
        """(1/K) sum_k log w_k per column."""
        return log_w.mean(0)

    def score_signal(self, log_w: torch.Tensor) -> torch.Tensor:
        # The leave-one-out signal of the mean in closed form: (log w_k - mean_{j != k} log w_j)/K.
        count = log_w.shape[0]
        if count == 1:
            return super().score_signal(log_w)
        others = (log_w.sum(0, keepdim=True) - log_w) / (count - 1)
        return (log_w - others) / count


class MeanFieldELBO(TraceELBO):
    """``"meanfield"``: E_q[log p(x | z)] - KL(q(z | x) || p(z)), with the KL in closed form
    wherever torch has it registered for the pair (q, p) and Monte Carlo elsewhere.

    The KL of a latent is computed from the distributions of that particle, so a prior whose
    parameters depend on other latents gives the conditional KL, E_q[KL(q(z_s | pa) || p(z_s |
    pa'))], which is unbiased when every latent the model draws before z_s is also drawn before it
    by the guide. Where the guide draws a site after one the model conditions it on, that site
    uses the Monte Carlo term instead, with a warning (as Pyro's TraceMeanField_ELBO warns).
    """

    name = "meanfield"
    analytic_kl = True
    enumerates_guide = False


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
    enumerates_guide = False

    def __init__(
        self,
        num_particles: int = 1,
        *,
        baseline_decay: float = 0.9,
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
        self.baseline_decay = check_float(
            "baseline_decay", baseline_decay, minimum=0.0, maximum=1.0
        )
        self._running: torch.Tensor | None = None

    def single_particle_baseline(self, log_w: torch.Tensor) -> torch.Tensor | float:
        # One number for all datapoints (minibatches hold different datapoints each step), kept
        # as a tensor so that no step waits for the device.
        baseline = 0.0 if self._running is None else self._running
        current = log_w.detach().mean()
        if self._running is None:
            self._running = current
        else:
            decay = self.baseline_decay
            self._running = decay * self._running + (1 - decay) * current
        return baseline


class STL(TraceELBO):
    """``"stl"``: the ELBO with the "sticking the landing" gradient for the guide's parameters.

    The score term -E_q[grad_phi log q_phi(z)] (zero in expectation) is dropped, leaving the path
    derivative grad_z [log p(x, z) - log q(z)] dz/dphi, which is exactly zero when q is the exact
    posterior. The path runs through every sample, also where one latent's distribution depends
    on another (q(z2 | z1)), and model parameters get the ELBO's gradient.

    References:
        Roeder, Wu & Duvenaud, "Sticking the Landing" (NeurIPS 2017).
    """

    name = "stl"
    requires_reparam = True
    enumerates_guide = False
    guide_factors = False

    def guide_surrogate(self, weights: LogWeights) -> torch.Tensor:
        return self.total(weights, weights.stl_log_w().mean(0))

    def surrogate(self, weights: LogWeights) -> torch.Tensor | None:
        # The STL correction involves log q only: for parameters of the model alone its gradient
        # is the ELBO's, so one surrogate serves both groups unless they share a parameter
        # (which then keeps the ELBO's gradient: exact, draw by draw, at the exact posterior).
        if shares_parameters(weights):
            return None
        return self.guide_surrogate(weights)
