"""Conditional neural spline autoregressive flow: monotone rational splines of u_<i and h."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pyro.distributions.transforms import ConditionalSplineAutoregressive

from pyro_vi._checks import check_float, check_int
from pyro_vi.guides.families.base import check_hidden
from pyro_vi.guides.families.flow import (
    Flow,
    autoregressive_net,
    default_hidden,
    inverse_softplus,
    reversed_between,
    shrink_,
)

# Pyro's splines add this floor to the knot derivatives softplus(d)
_MIN_DERIVATIVE = 1e-3


class SplineAutoregressiveFlow(Flow):
    r"""A diagonal Gaussian from h followed by ``num_steps`` conditional spline steps.

    Step t maps each e_i through a monotone rational-linear spline on [-bound, bound] with
    ``count_bins`` bins (identity outside), whose widths, heights, knot derivatives and
    rational weights come from e_<i and h through a conditional MADE (Pyro's
    ``ConditionalSplineAutoregressive``). log|det J| = sum_i log spline_i'(e_i). The
    coordinates are reversed between steps. The inverse is exact but sequential (``dim``
    network passes), so ``log_prob`` works at any value. Each network starts with small output
    weights, equal bins and unit knot derivatives: the flow starts as its base.

    Arguments:
        dim: Size of the latent vector.
        features: Size of the context.
        num_steps: Spline steps (>= 1).
        hidden: Hidden layer sizes of each MADE, each >= dim; ``[max(features, 4 dim)]`` if
            None.
        count_bins: Bins of each spline (2 to 1000).
        bound: Half-width of the spline's interval (> 0).
        min_scale: Floor of the base scales.

    References:
        Durkan, Bekasov, Murray & Papamakarios, Neural Spline Flows (2019); Dolatabadi, Erfani
        & Leckie, Invertible Generative Modeling using Linear Rational Splines (2020).

    Example:
        >>> q = SplineAutoregressiveFlow(dim=4, features=16, count_bins=8)(torch.randn(8, 16))
        >>> q.log_prob(torch.zeros(8, 4)).shape
        torch.Size([8])
    """

    name = "spline_ar"

    def __init__(
        self,
        dim: int,
        features: int,
        *,
        num_steps: int = 2,
        hidden: Sequence[int] | None = None,
        count_bins: int = 8,
        bound: float = 3.0,
        min_scale: float = 1e-5,
    ) -> None:
        super().__init__(dim, features, min_scale=min_scale)
        self.num_steps = check_int("num_steps", num_steps, minimum=1)
        hidden = check_hidden(hidden, default_hidden(self.dim, self.features))
        self.count_bins = check_int("count_bins", count_bins, minimum=2)
        if self.count_bins > 1000:  # Pyro's minimum bin width of 1e-3 must fit
            raise ValueError(f"count_bins must be at most 1000, got {self.count_bins}")
        self.bound = check_float("bound", bound, minimum=0.0, exclusive_minimum=True)
        bins = self.count_bins
        steps = []
        for _ in range(self.num_steps):
            # per coordinate: widths, heights, inner knot derivatives, rational weights
            net = autoregressive_net(
                self.dim, self.features, hidden, param_dims=[bins, bins, bins - 1, bins]
            )
            bias = shrink_(net.layers[-1]).bias
            with torch.no_grad():  # outputs are laid out [parameter row, coordinate]
                derivatives = slice(2 * bins * self.dim, (3 * bins - 1) * self.dim)
                bias[derivatives] = inverse_softplus(1.0 - _MIN_DERIVATIVE)
            steps.append(
                ConditionalSplineAutoregressive(
                    self.dim, net, count_bins=bins, bound=self.bound, order="linear"
                )
            )
        self.steps.extend(reversed_between(steps, self.dim))
