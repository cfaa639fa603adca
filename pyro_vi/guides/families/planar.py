"""Conditional planar flow: u -> u + u_hat(h) tanh(w(h)^T u + b(h)) per step."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pyro.distributions.transforms import conditional_planar

from pyro_vi._checks import check_int
from pyro_vi.guides.families.base import check_hidden
from pyro_vi.guides.families.flow import Flow, default_hidden, inverse_softplus, shrink_


class PlanarFlow(Flow):
    r"""A diagonal Gaussian from h followed by ``num_steps`` conditional planar steps.

    Step t maps e to e + u_hat tanh(w^T e + b), with (b, u, w) from a network of h (Pyro's
    ``ConditionalPlanar``); u_hat is u corrected so that w^T u_hat > -1, which keeps the step
    invertible, and log|det J| = log|1 + tanh'(w^T e + b) w^T u_hat|. The inverse has no closed
    form: ``log_prob`` can score the flow's own samples only (``has_tractable_inverse`` is
    False), so STL/DReG cannot use this family.

    Each network starts with small output weights and biases chosen so that u_hat = 0 (w of
    unit norm, u = log(e - 1) w, where the correction vanishes): the flow starts as its base.

    Arguments:
        dim: Size of the latent vector.
        features: Size of the context.
        num_steps: Planar steps (>= 1).
        hidden: Hidden layer sizes of each step's network; ``[max(features, 4 dim)]`` if None.
        min_scale: Floor of the base scales.

    References:
        Rezende & Mohamed, Variational Inference with Normalizing Flows (2015).

    Example:
        >>> q = PlanarFlow(dim=4, features=16, num_steps=4)(torch.randn(8, 16))
        >>> z = q.rsample(); q.log_prob(z).shape
        torch.Size([8])
    """

    name = "planar"
    has_tractable_inverse = False

    def __init__(
        self,
        dim: int,
        features: int,
        *,
        num_steps: int = 4,
        hidden: Sequence[int] | None = None,
        min_scale: float = 1e-5,
    ) -> None:
        super().__init__(dim, features, min_scale=min_scale)
        self.num_steps = check_int("num_steps", num_steps, minimum=1)
        hidden = check_hidden(hidden, default_hidden(self.dim, self.features))
        for _ in range(self.num_steps):
            step = conditional_planar(self.dim, self.features, list(hidden))
            self._start_at_identity(shrink_(step.nn.layers[-1]).bias)
            self.steps.append(step)

    @torch.no_grad()
    def _start_at_identity(self, bias: torch.Tensor) -> None:
        # output layout of the network: [b (1), u (dim), w (dim)]
        w = torch.randn(self.dim)
        w /= w.norm()
        bias[1 + self.dim :] = w
        bias[1 : 1 + self.dim] = inverse_softplus(1.0) * w
