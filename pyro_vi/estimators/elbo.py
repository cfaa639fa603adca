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

    Gradients are reparameterized where the guide allows. A latent without ``rsample`` gets a
    score-function term, Rao-Blackwellized (only the terms of log w that can depend on it, see
    :meth:`~pyro_vi.estimators.core.LogWeights.score_tables`) and with a baseline: the
    leave-one-out mean of the other particles' costs (K > 1), or, for one particle, a decaying
    average of past costs per site (``baseline_decay``), or the baseline a site asks for in
    Pyro's form, ``infer={"baseline": {"baseline_value": b}}`` or
    ``{"nn_baseline": net, "nn_baseline_input": x}`` (a network trained alongside to predict the
    cost, by squared error). Model sites marked ``infer={"enumerate": "parallel"}`` are summed out
    of log p; a guide with enumerated sites is handed to Pyro's ``TraceEnum_ELBO``, which sums
    them out exactly.

    Arguments:
        num_particles: K.
        baseline_decay: Weight of the past in the one-particle decaying-average baseline, in
            [0, 1] (0: no baseline).

    Example:
        >>> svi = SVI(model, guide, Adam({"lr": 1e-3}), loss=TraceELBO(num_particles=4))
    """

    name = "elbo"
    requires_reparam = False
    enumerates_guide = True
    site_baselines = True

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
        self._averages: dict[str, torch.Tensor] = {}

    def bound(self, log_w: torch.Tensor) -> torch.Tensor:
        """(1/K) sum_k log w_k per column."""
        return log_w.mean(0)

    def _score_surrogate(self, weights: LogWeights, guide: bool = False) -> torch.Tensor:
        """sum over score sites s, particles k, columns m of
        (1/K) grad log q(z_skm) (cost_skm - b_skm), zero-valued; plus, for sites with a learned
        baseline, minus its squared error (so that the network learns to predict the cost)."""
        total = weights.log_w.new_zeros(())
        for name, infer, log_q, cost in weights.score_tables():
            cost = cost.detach()
            baseline, baseline_loss = self._baseline(name, infer.get("baseline", {}), cost)
            signal = (cost - baseline).detach() / cost.shape[0]
            total = total + ((log_q - log_q.detach()) * signal).sum()
            if baseline_loss is not None:
                total = total - (baseline_loss - baseline_loss.detach())
        return weights.scale * total

    def _baseline(
        self, name: str, options: dict, cost: torch.Tensor
    ) -> tuple[torch.Tensor | float, torch.Tensor | None]:
        """(baseline ``[K, M]``-broadcastable, squared-error loss of a learned one or ``None``).

        Pyro's options (TraceGraph_ELBO): ``nn_baseline`` (with ``nn_baseline_input``) or
        ``baseline_value``, trained by squared error against the cost when they carry a
        gradient, plus the decaying average when ``use_decaying_avg_baseline`` is also given.
        Without a baseline of the user's: the leave-one-out mean (K > 1) or the decaying average
        (K = 1) unless ``use_decaying_avg_baseline`` is False.
        """
        # The options were checked once, when the program was validated (_check_baselines).
        count, columns = cost.shape
        learned: torch.Tensor | None = None
        if options.get("nn_baseline") is not None:  # None is absent, as in Pyro
            network = options["nn_baseline"]
            # Its input detached, as Pyro does: the baseline's squared error must train the
            # baseline alone, not the networks that computed its input (the guide's encoder).
            # One argument, as Pyro passes it (a tuple or list stays one, each item detached).
            if "nn_baseline_input" in options:
                learned = network(_detached(options["nn_baseline_input"]))
            else:
                learned = network()
        elif options.get("baseline_value") is not None:
            learned = torch.as_tensor(options["baseline_value"])
        if learned is not None:
            learned = _as_columns(name, learned, columns)
            if count == 1 and options.get("use_decaying_avg_baseline") is True:
                # Pyro adds its decaying average to the user's baseline, and fits the sum.
                learned = learned + self._decaying_average(name, options, cost)
            loss = (learned - cost).pow(2).sum() if learned.requires_grad else None
            return learned.detach(), loss
        if count > 1:
            return (cost.sum(0, keepdim=True) - cost) / (count - 1), None
        if not options.get("use_decaying_avg_baseline", True):
            return 0.0, None
        return self._decaying_average(name, options, cost), None

    def _decaying_average(
        self, name: str, options: dict, cost: torch.Tensor
    ) -> torch.Tensor | float:
        """The average of the site's past costs (0 on its first step), updated with this one."""
        decay = options.get("baseline_beta", self.baseline_decay)
        if decay == 0:
            return 0.0
        # One number per site (minibatches hold different datapoints each step), a tensor so
        # that no step waits for the device.
        previous = self._averages.get(name)
        current = cost.mean()
        self._averages[name] = (
            current if previous is None else decay * previous + (1 - decay) * current
        )
        return 0.0 if previous is None else previous


#: The keys of ``infer={"baseline": {...}}`` (Pyro's TraceGraph_ELBO reads the same).
BASELINE_OPTIONS = (
    "nn_baseline",
    "nn_baseline_input",
    "use_decaying_avg_baseline",
    "baseline_beta",
    "baseline_value",
)


def check_baseline_options(name: str, options: object) -> None:
    """Refuse a site's ``infer["baseline"]`` that Pyro would refuse: not a dict, an unknown key
    (a misspelt option would otherwise be silently ignored), or both a network and a value."""
    if not isinstance(options, dict):
        raise TypeError(
            f"infer['baseline'] of site {name!r} must be a dict of baseline options "
            f"{list(BASELINE_OPTIONS)}, got {type(options).__name__}"
        )
    unknown = sorted(set(options) - set(BASELINE_OPTIONS))
    if unknown:
        raise ValueError(
            f"infer['baseline'] of site {name!r} has the unknown options {unknown}; the options "
            f"are {list(BASELINE_OPTIONS)}"
        )
    if options.get("nn_baseline") is not None and options.get("baseline_value") is not None:
        raise ValueError(
            f"infer['baseline'] of site {name!r} gives both nn_baseline and baseline_value; "
            "give one"
        )


def _detached(value: object) -> object:
    if isinstance(value, list | tuple):  # each item, as Pyro's detach_iterable
        return type(value)(_detached(item) for item in value)
    return value.detach() if isinstance(value, torch.Tensor) else value


def _as_columns(name: str, value: object, columns: int) -> torch.Tensor:
    """A user's baseline as a scalar or one value per column."""
    tensor = torch.as_tensor(value)
    if tensor.numel() in (1, columns):
        return tensor.reshape(-1) if tensor.numel() == columns else tensor.reshape(())
    raise ValueError(
        f"the baseline of site {name!r} has shape {tuple(tensor.shape)}; it must be a scalar or "
        f"hold one value per datapoint ({columns})"
    )


class MeanFieldELBO(TraceELBO):
    """``"meanfield"``: E_q[log p(x | z)] - KL(q(z | x) || p(z)), with the KL in closed form
    wherever torch has it registered for the pair (q, p) and Monte Carlo elsewhere.

    The KL of a latent is computed from the distributions of that particle, so a prior whose
    parameters depend on other latents gives the conditional KL, E_q[KL(q(z_s | pa) || p(z_s |
    pa'))], which is unbiased when every latent the model draws before z_s is also drawn before it
    by the guide. Where the guide draws a site after one the model conditions it on, that site
    uses the Monte Carlo term instead, with a warning (as Pyro's TraceMeanField_ELBO warns).
    Where model and guide scale or mask a site differently (KL annealing written in the model
    only), its term is E_q[c_p log p - c_q log q] = -c_p KL + (c_p - c_q) E_q[log q], the last
    part by Monte Carlo: the estimate is always the ELBO's, scaled as ``elbo`` scales it (Pyro's
    TraceMeanField_ELBO scales the KL like the guide's site instead).
    """

    name = "meanfield"
    analytic_kl = True
    enumerates_guide = False


class ScoreFunctionELBO(TraceELBO):
    """``"score"``: the ELBO with score-function (REINFORCE) gradients for *every* latent.

    grad = E_q[grad log q(z | x) (log w - b)] + E_q[grad log p(x, z)] with z held fixed, for
    discrete or otherwise non-reparameterizable guides, with the Rao-Blackwellization and the
    baselines of :class:`TraceELBO` (leave-one-out for K > 1; a decaying average, decayed by
    ``baseline_decay``, or a site's own baseline for K = 1). Every latent is detached as it is
    drawn, so a latent's distribution sees the latents it depends on as constants; a point mass
    (``Delta``, ``AutoDelta``) is not, since it has no score: its value's path is its gradient.

    References:
        Williams (1992); Mnih & Rezende, "Variational inference for Monte Carlo objectives" (2016).
    """

    name = "score"
    detach_latents = True
    enumerates_guide = False


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
