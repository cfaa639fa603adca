"""Conditional radial flow: u -> u + beta(h) (u - u0(h)) / (alpha(h) + |u - u0(h)|) per step."""

from __future__ import annotations

from collections.abc import Sequence

from pyro.distributions.transforms import conditional_radial

from pyro_vi._checks import check_int
from pyro_vi.guides.families.base import check_hidden
from pyro_vi.guides.families.flow import Flow, default_hidden, shrink_


class RadialFlow(Flow):
    r"""A diagonal Gaussian from h followed by ``num_steps`` conditional radial steps.

    Step t contracts or expands around a centre e0: e + beta h(alpha, r) (e - e0), with
    r = |e - e0|, h = 1 / (alpha + r), and (e0, alpha, beta) from a network of h (Pyro's
    ``ConditionalRadial``, which keeps alpha > 0 and beta >= -alpha so the step is invertible).
    log|det J| = (dim - 1) log(1 + beta h) + log(1 + beta h + beta h' r). The inverse has no
    closed form: ``log_prob`` can score the flow's own samples only (``has_tractable_inverse``
    is False), so STL/DReG cannot use this family.

    Each network starts with small output weights and zero bias, where beta = 0 (Pyro sets
    beta = softplus(beta') - softplus(alpha')): the flow starts as its base.

    Arguments:
        dim: Size of the latent vector.
        features: Size of the context.
        num_steps: Radial steps (>= 1).
        hidden: Hidden layer sizes of each step's network; ``[max(features, 4 dim)]`` if None.
        min_scale: Floor of the base scales.

    References:
        Rezende & Mohamed, Variational Inference with Normalizing Flows (2015).

    Example:
        >>> q = RadialFlow(dim=4, features=16, num_steps=4)(torch.randn(8, 16))
        >>> z = q.rsample(); q.log_prob(z).shape
        torch.Size([8])
    """

    name = "radial"
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
            step = conditional_radial(self.dim, self.features, list(hidden))
            shrink_(step.nn.layers[-1])
            self.steps.append(step)
