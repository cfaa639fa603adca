"""Conditional affine coupling flow: half of u is shifted and scaled by a function of the rest."""

from __future__ import annotations

from collections.abc import Sequence

from pyro.distributions.transforms import conditional_affine_coupling

from pyro_vi._checks import check_int
from pyro_vi.guides.families.base import check_hidden
from pyro_vi.guides.families.flow import Flow, default_hidden, reversed_between, shrink_


class AffineCouplingFlow(Flow):
    r"""A diagonal Gaussian from h followed by ``num_steps`` conditional affine coupling steps.

    Step t keeps e_a = e[:dim // 2] and maps e_b = e[dim // 2:] to mu(e_a, h) + sigma(e_a, h) e_b
    (Pyro's ``ConditionalAffineCoupling``; log sigma is clamped to [-5, 3] with its gradient
    kept), so log|det J| = sum log sigma, and the inverse is as cheap as the forward map:
    ``log_prob`` works at any value. The coordinates are reversed between steps so that every
    coordinate is transformed (hence dim >= 2). Each network starts with small output weights
    and zero bias: the flow starts as its base.

    Arguments:
        dim: Size of the latent vector (>= 2).
        features: Size of the context.
        num_steps: Coupling steps (>= 1; at least 2 to transform every coordinate).
        hidden: Hidden layer sizes of each step's network; ``[max(features, 4 dim)]`` if None.
        min_scale: Floor of the base scales.

    References:
        Dinh, Sohl-Dickstein & Bengio, Density Estimation using Real NVP (2017).

    Example:
        >>> q = AffineCouplingFlow(dim=4, features=16, num_steps=4)(torch.randn(8, 16))
        >>> q.log_prob(torch.zeros(8, 4)).shape
        torch.Size([8])
    """

    name = "affine_coupling"

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
        if self.dim < 2:
            raise ValueError(
                f"dim must be >= 2 for affine_coupling (a coupling step splits the vector in "
                f"two), got {self.dim}"
            )
        self.num_steps = check_int("num_steps", num_steps, minimum=1)
        hidden = check_hidden(hidden, default_hidden(self.dim, self.features))
        steps = []
        for _ in range(self.num_steps):
            step = conditional_affine_coupling(self.dim, self.features, list(hidden))
            shrink_(step.nn.layers[-1])
            steps.append(step)
        self.steps.extend(reversed_between(steps, self.dim))
