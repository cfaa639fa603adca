"""Semi-amortized inference and the amortization gap.

An encoder predicts each datapoint's variational parameters in one pass; the best parameters of
the same family for that datapoint can be better. :func:`refine` starts from the encoder's output
(the context h_i of :class:`~pyro_vi.guides.amortized.AmortizedGuide`) and takes SVI steps on
each datapoint's own h_i, holding the model, the encoder and the family fixed. The difference of
the per-datapoint ELBOs after and before refinement estimates the amortization gap (Cremer, Li &
Duvenaud 2018): how much of the gap log p(x) - ELBO is due to amortization rather than to the
family.

References:
    Kim, Wiseman, Miller, Sontag & Rush, "Semi-Amortized Variational Autoencoders" (ICML 2018);
    Cremer, Li & Duvenaud, "Inference Suboptimality in Variational Autoencoders" (ICML 2018).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from pyro_vi._checks import check_float, check_int, describe
from pyro_vi.estimators import get
from pyro_vi.evaluation._common import _check_data
from pyro_vi.guides.amortized import AmortizedGuide


@dataclass
class Refinement:
    """Per-datapoint results of :func:`refine` (nats).

    Attributes:
        amortized_elbo: ELBO_i with the encoder's context, ``[B]``.
        refined_elbo: ELBO_i after refining the context, ``[B]``.
        context: The refined contexts ``[B, F]``.
    """

    amortized_elbo: torch.Tensor
    refined_elbo: torch.Tensor
    context: torch.Tensor

    @property
    def gap(self) -> torch.Tensor:
        """The amortization gap estimate, refined minus amortized ELBO per datapoint ``[B]``."""
        return self.refined_elbo - self.amortized_elbo


def per_datapoint_elbo(
    model: Callable, guide: Callable, *args: Any, num_particles: int = 100, **kwargs: Any
) -> torch.Tensor:
    """ELBO_i = (1/K) sum_k log w_ik for each datapoint, ``[B]``, without gradients."""
    with torch.no_grad():
        weights = get("elbo", num_particles=num_particles).log_weights(
            model, guide, *args, **kwargs
        )
    if weights.log_w.shape[1] == 1 and weights.data_plate is None:
        raise ValueError("the model has no data plate: its ELBO does not split per datapoint")
    return weights.log_w.mean(0)


def refine(
    model: Callable,
    guide: AmortizedGuide,
    *args: Any,
    num_steps: int = 100,
    learning_rate: float = 1e-2,
    num_particles: int = 4,
    eval_particles: int = 200,
    estimator: str = "elbo",
    **kwargs: Any,
) -> Refinement:
    """Refine the guide's per-datapoint contexts by SVI and report the per-datapoint ELBOs.

    Arguments:
        model: The Pyro model.
        guide: An :class:`AmortizedGuide` (its encoder gives the starting contexts).
        *args, **kwargs: The model's arguments for the batch to refine (no ``num_data``).
        num_steps: Adam steps on the contexts.
        learning_rate: Adam's learning rate.
        num_particles: Particles of the ELBO gradient in each step.
        eval_particles: Particles of the ELBO estimates reported before and after.
        estimator: The ELBO estimator of the steps: ``"elbo"``, or ``"stl"`` (lower variance
            near the optimum; needs a family that can score fresh values).

    Returns:
        The :class:`Refinement`; ``.gap`` is the amortization gap estimate. Each datapoint keeps
        the better of its starting and its refined context (by the ELBO estimates of
        ``eval_particles`` draws), and ``refined_elbo`` scores the kept contexts on fresh draws:
        refinement never reports a datapoint worse off than it started, beyond the noise of the
        estimates.
    """
    if not isinstance(guide, AmortizedGuide):
        raise TypeError(f"guide must be an AmortizedGuide, got {describe(guide)}")
    num_steps = check_int("num_steps", num_steps, minimum=0)
    learning_rate = check_float("learning_rate", learning_rate, minimum=0.0, exclusive_minimum=True)
    if estimator not in ("elbo", "stl"):
        raise ValueError(f"estimator must be 'elbo' or 'stl', got {estimator!r}")
    _check_data(args, "refine")
    before = per_datapoint_elbo(model, guide, *args, num_particles=eval_particles, **kwargs)
    with torch.no_grad():
        start = guide.context(*guide._encoder_inputs(args, kwargs)).detach().clone()
    context = start.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([context], lr=learning_rate)
    elbo = get("elbo", num_particles=num_particles)
    with guide.fixed_context(context):
        for _ in range(num_steps):
            weights = elbo.log_weights(model, guide, *args, **kwargs)
            log_w = weights.stl_log_w() if estimator == "stl" else weights.log_w
            loss = -log_w.mean(0).sum()
            # Each datapoint's ELBO depends on its own context only, so the gradient of the sum
            # is every datapoint's own gradient; only the contexts are updated.
            (grad,) = torch.autograd.grad(loss, [context])
            optimizer.zero_grad()
            context.grad = grad
            optimizer.step()
        after = per_datapoint_elbo(model, guide, *args, num_particles=eval_particles, **kwargs)
    # Adam's last iterate can be worse than its start: noisy gradients keep it moving near the
    # optimum (with an exact amortized posterior, every step leaves it). Each datapoint keeps
    # the better of its two contexts, and the kept contexts are scored on fresh draws, so the
    # reported ELBO is not the larger of two noisy estimates.
    context = context.detach()
    if after.shape == start.shape[:1]:  # one ELBO per context row
        context = torch.where((after > before).unsqueeze(-1), context, start)
    with guide.fixed_context(context):
        refined = per_datapoint_elbo(model, guide, *args, num_particles=eval_particles, **kwargs)
    return Refinement(before, refined, context)
