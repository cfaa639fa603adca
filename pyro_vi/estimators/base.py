"""The base class of every estimator: one ``pyro.infer.ELBO`` subclass, many reductions.

A subclass implements

- ``_bound(log_w) -> Tensor``: its reduction of log-weights ``[K, M]`` over the particle
  dimension, one bound per column ``[M]`` (differentiable: its gradient is the estimator's
  gradient for reparameterized latents);

and may override

- ``_particles() -> int``: how many particles one pass draws (default ``num_particles``);
- ``_guide_surrogate(weights) -> Tensor | None``: a surrogate whose gradient replaces the bound's
  gradient for parameters that only the guide uses (STL, DReG, PIWAE); parameters that the model
  uses (including any it shares with the guide) keep the gradient of the bound itself. This takes
  two gradient passes, unless
- ``_single_pass_surrogate(weights, guide_surrogate) -> Tensor | None`` builds one surrogate
  with both gradients, which is possible when model and guide share no parameter.

Everything else (the vectorized particle pass, per-datapoint decomposition, minibatch scaling,
score-function terms, validation, ``loss``/``loss_and_grads``/``differentiable_loss``) is here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from pyro.infer import ELBO

from pyro_vi._checks import check_int, describe
from pyro_vi.estimators.core import LogWeights, compute_log_weights, plate_nesting


class Estimator(ELBO):
    """Base class; see the module docstring. ``loss`` is *minus* the bound, a float.

    Arguments:
        num_particles: K, the particles of one vectorized pass (>= 1).
        data_plate: Name of the plate holding the datapoints; detected when ``None`` (the
            outermost plate that every observed site lies in).
        max_plate_nesting: Plate dimensions of model and guide; found by tracing them once when
            ``None``.
    """

    #: Name in the registry (:func:`pyro_vi.estimators.get`).
    name: str = ""
    #: Whether every latent must be reparameterized.
    requires_reparam: bool = True
    #: Treat every latent as non-reparameterized (score-function gradients only).
    detach_latents: bool = False
    #: Use closed-form KL(q || p) where registered.
    analytic_kl: bool = False

    def __init__(
        self,
        num_particles: int = 1,
        *,
        data_plate: str | None = None,
        max_plate_nesting: int | None = None,
    ) -> None:
        num_particles = check_int("num_particles", num_particles, minimum=1)
        if data_plate is not None and not isinstance(data_plate, str):
            raise TypeError(f"data_plate must be a plate name or None, got {describe(data_plate)}")
        if max_plate_nesting is not None:
            max_plate_nesting = check_int("max_plate_nesting", max_plate_nesting, minimum=0)
        super().__init__(num_particles=num_particles, vectorize_particles=True)
        self.data_plate = data_plate
        self._plate_nesting = max_plate_nesting
        self._validated = False

    # -- what subclasses implement ------------------------------------------------------------

    def _bound(self, log_w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _particles(self) -> int:
        return self.num_particles

    def _guide_surrogate(self, weights: LogWeights) -> torch.Tensor | None:
        return None

    # -- the shared machinery -----------------------------------------------------------------

    def log_weights(
        self, model: Callable, guide: Callable, *args: Any, **kwargs: Any
    ) -> LogWeights:
        """One vectorized pass: the :class:`~pyro_vi.estimators.core.LogWeights` reduced here."""
        if self._plate_nesting is None:
            self._plate_nesting = plate_nesting(model, guide, args, kwargs)
        weights = compute_log_weights(
            model,
            guide,
            args,
            kwargs,
            num_particles=self._particles(),
            plate_nesting=self._plate_nesting,
            data_plate=self.data_plate,
            detach_latents=self.detach_latents,
            analytic_kl=self.analytic_kl,
            require_reparam=self.name if self.requires_reparam else None,
            validate=not self._validated,
        )
        self._validated = True
        return weights

    def _get_trace(self, model: Callable, guide: Callable, args: tuple, kwargs: dict) -> tuple:
        """(model trace, guide trace) of one vectorized pass, as Pyro's ELBO API expects."""
        weights = self.log_weights(model, guide, *args, **kwargs)
        return weights.model_trace, weights.guide_trace

    def _total(self, weights: LogWeights, bounds: torch.Tensor) -> torch.Tensor:
        return weights.scale * bounds.sum() + weights.offset

    def _score_surrogate(self, weights: LogWeights) -> torch.Tensor:
        """Zero-valued term whose gradient is the score-function part for non-reparameterized
        latents: sum_k grad log q(z_k) (log w_k - b_k) / K per column, with the leave-one-out
        baseline b_k = mean_{j != k} log w_j when K > 1 (Mnih & Rezende 2016 use the same
        construction), and no baseline for K = 1 (see ScoreFunctionELBO for a running one)."""
        signal = weights.log_w.detach()
        count = signal.shape[0]
        if count > 1:
            baseline = (signal.sum(0, keepdim=True) - signal) / (count - 1)
        else:
            baseline = self._single_particle_baseline(signal)
        log_q = weights.score_log_q
        term = ((log_q - log_q.detach()) * (signal - baseline)).mean(0)
        return weights.scale * term.sum()

    def _single_particle_baseline(self, signal: torch.Tensor) -> torch.Tensor | float:
        return 0.0

    def _surrogates(
        self, model: Callable, guide: Callable, args: tuple, kwargs: dict
    ) -> tuple[torch.Tensor, torch.Tensor, LogWeights]:
        """(bound value, surrogate for the model's parameters, weights)."""
        weights = self.log_weights(model, guide, *args, **kwargs)
        surrogate = self._total(weights, self._bound(weights.log_w))
        if weights.has_score_sites:
            surrogate = surrogate + self._score_surrogate(weights)
        return surrogate.detach(), surrogate, weights

    def _single_pass_surrogate(
        self, weights: LogWeights, guide_surrogate: torch.Tensor
    ) -> torch.Tensor | None:
        """One surrogate with the whole gradient, when model and guide share no parameter;
        ``None`` (the default) falls back to two gradient passes, one per parameter group."""
        return None

    def _prepare(
        self, model: Callable, guide: Callable, args: tuple, kwargs: dict
    ) -> tuple[torch.Tensor, torch.Tensor, tuple | None]:
        """(bound value, surrogate, groups). With ``groups = None`` the surrogate's gradient is the
        estimator's gradient for every parameter; otherwise ``groups`` is (model parameters,
        guide-only parameters, guide surrogate), and each group takes its own surrogate's."""
        bound, surrogate, weights = self._surrogates(model, guide, args, kwargs)
        guide_surrogate = self._guide_surrogate(weights)
        if guide_surrogate is None:
            return bound, surrogate, None
        model_params, guide_params = _parameter_groups(weights)
        if not _shares_parameters(weights):
            single = self._single_pass_surrogate(weights, guide_surrogate)
            if single is not None:
                return bound, bound + single - single.detach(), None
        return bound, surrogate, (model_params, guide_params, guide_surrogate)

    def differentiable_loss(
        self, model: Callable, guide: Callable, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """Minus the bound as a tensor whose gradient is the estimator's gradient."""
        bound, surrogate, groups = self._prepare(model, guide, args, kwargs)
        if groups is None:
            return -surrogate
        # Separate gradients for two groups of parameters, assembled into one zero-valued term
        # sum_p <p, g_p> - stop(...), so that backward() delivers g_p to each parameter p.
        model_params, guide_params, guide_surrogate = groups
        grads = _grads(surrogate, model_params, retain_graph=True)
        grads += _grads(guide_surrogate, guide_params, retain_graph=False)
        params = model_params + guide_params
        linear = sum(((p * g).sum() for p, g in zip(params, grads, strict=True)), bound * 0)
        return -(bound + linear - linear.detach())

    def loss(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        """Minus the bound, a float (no gradients are computed)."""
        with torch.no_grad():
            weights = self.log_weights(model, guide, *args, **kwargs)
            return -float(self._total(weights, self._bound(weights.log_w)))

    def loss_and_grads(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        """Minus the bound, a float; accumulates the estimator's gradient into ``.grad``."""
        bound, surrogate, groups = self._prepare(model, guide, args, kwargs)
        if groups is None:
            (-surrogate).backward()
        else:
            model_params, guide_params, guide_surrogate = groups
            grads = _grads(surrogate, model_params, retain_graph=True)
            grads += _grads(guide_surrogate, guide_params, retain_graph=False)
            for param, grad in zip(model_params + guide_params, grads, strict=True):
                param.grad = -grad if param.grad is None else param.grad - grad
        return -float(bound)


def _unconstrained(site: dict) -> torch.Tensor:
    value = site["value"]
    unconstrained = getattr(value, "unconstrained", None)
    return unconstrained() if callable(unconstrained) else value


def _parameter_groups(weights: LogWeights) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(parameters the model uses, parameters only the guide uses), as leaf tensors."""

    def params(trace: Any) -> dict[int, torch.Tensor]:
        found = {}
        for site in trace.nodes.values():
            if site["type"] == "param":
                tensor = _unconstrained(site)
                if tensor.requires_grad:
                    found[id(tensor)] = tensor
        return found

    model = params(weights.model_trace)
    guide = params(weights.guide_trace)
    return list(model.values()), [t for key, t in guide.items() if key not in model]


def _shares_parameters(weights: LogWeights) -> bool:
    """Whether some parameter appears in both the model's and the guide's trace."""

    def ids(trace: Any) -> set[int]:
        return {id(_unconstrained(s)) for s in trace.nodes.values() if s["type"] == "param"}

    return bool(ids(weights.model_trace) & ids(weights.guide_trace))


def _grads(
    output: torch.Tensor, inputs: list[torch.Tensor], retain_graph: bool
) -> list[torch.Tensor]:
    if not inputs:
        return []
    grads = torch.autograd.grad(output, inputs, retain_graph=retain_graph, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(inputs, grads, strict=True)]
