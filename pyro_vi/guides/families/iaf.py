"""Conditional inverse autoregressive flow: u_i -> mu_i(u_<i, h) + sigma_i(u_<i, h) u_i."""

from __future__ import annotations

from collections.abc import Sequence

from pyro.distributions.transforms import ConditionalAffineAutoregressive

from pyro_vi._checks import check_int
from pyro_vi.guides.families.base import check_hidden
from pyro_vi.guides.families.flow import (
    Flow,
    autoregressive_net,
    default_hidden,
    reversed_between,
    shrink_,
)


class InverseAutoregressiveFlow(Flow):
    r"""A diagonal Gaussian from h followed by ``num_steps`` conditional IAF steps.

    Step t maps e to mu(e, h) + sigma(e, h) * e, where mu_i and log sigma_i depend on e_<i and
    on h through a conditional MADE (Pyro's ``ConditionalAffineAutoregressive``; log sigma is
    clamped to [-5, 3] with its gradient kept). The Jacobian is triangular, so
    log|det J| = sum_i log sigma_i. The coordinates are reversed between steps. The inverse is
    exact but sequential (``dim`` network passes), so ``log_prob`` works at any value and is
    cheap at the flow's own samples. Each network starts with small output weights and zero
    bias: mu = 0, sigma = 1, the flow starts as its base.

    Arguments:
        dim: Size of the latent vector.
        features: Size of the context.
        num_steps: IAF steps (>= 1).
        hidden: Hidden layer sizes of each MADE, each >= dim; ``[max(features, 4 dim)]`` if
            None.
        min_scale: Floor of the base scales.

    References:
        Kingma, Salimans, Jozefowicz, Chen, Sutskever & Welling, Improved Variational Inference
        with Inverse Autoregressive Flow (2016).

    Example:
        >>> q = InverseAutoregressiveFlow(dim=4, features=16)(torch.randn(8, 16))
        >>> q.log_prob(torch.zeros(8, 4)).shape
        torch.Size([8])
    """

    name = "iaf"

    def __init__(
        self,
        dim: int,
        features: int,
        *,
        num_steps: int = 2,
        hidden: Sequence[int] | None = None,
        min_scale: float = 1e-5,
    ) -> None:
        super().__init__(dim, features, min_scale=min_scale)
        self.num_steps = check_int("num_steps", num_steps, minimum=1)
        hidden = check_hidden(hidden, default_hidden(self.dim, self.features))
        steps = []
        for _ in range(self.num_steps):
            net = autoregressive_net(self.dim, self.features, hidden, param_dims=[1, 1])
            shrink_(net.layers[-1])
            steps.append(ConditionalAffineAutoregressive(net))
        self.steps.extend(reversed_between(steps, self.dim))
