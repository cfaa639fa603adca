"""Conditional Householder flow: a diagonal Gaussian rotated by reflections chosen by h."""

from __future__ import annotations

from collections.abc import Sequence

from pyro.distributions.transforms import conditional_householder

from pyro_vi._checks import check_int
from pyro_vi.guides.families.base import check_hidden
from pyro_vi.guides.families.flow import Flow, default_hidden


class HouseholderFlow(Flow):
    r"""N(mu(h), diag sigma(h)^2) followed by ``num_reflections`` reflections from h.

    Reflection t maps e to (I - 2 v v^T / |v|^2) e with v = v_t(h) from a network of h (Pyro's
    ``ConditionalHouseholder``). Their product is an orthogonal matrix Q(h), so q(u | h) is the
    Gaussian N(Q mu, Q diag(sigma^2) Q^T): a full covariance at O(dim) outputs per reflection,
    volume-preserving (log|det J| = 0) and exactly invertible (each reflection is its own
    inverse), so ``log_prob`` works at any value. Reflections are never the identity, so the
    networks keep their default initialization (a near-zero v would make v / |v| unstable).

    Arguments:
        dim: Size of the latent vector.
        features: Size of the context.
        num_reflections: Reflections (>= 1); ``min(dim, 4)`` if None (dim reflections already
            reach every rotation).
        hidden: Hidden layer sizes of the network; ``[max(features, 4 dim)]`` if None.
        min_scale: Floor of the base scales.

    References:
        Tomczak & Welling, Improving Variational Auto-Encoders using Householder Flow (2016).

    Example:
        >>> q = HouseholderFlow(dim=4, features=16, num_reflections=2)(torch.randn(8, 16))
        >>> q.log_prob(torch.zeros(8, 4)).shape
        torch.Size([8])
    """

    name = "householder"

    def __init__(
        self,
        dim: int,
        features: int,
        *,
        num_reflections: int | None = None,
        hidden: Sequence[int] | None = None,
        min_scale: float = 1e-5,
    ) -> None:
        super().__init__(dim, features, min_scale=min_scale)
        if num_reflections is None:
            num_reflections = min(self.dim, 4)
        self.num_reflections = check_int("num_reflections", num_reflections, minimum=1)
        hidden = check_hidden(hidden, default_hidden(self.dim, self.features))
        self.steps.append(
            conditional_householder(
                self.dim, self.features, list(hidden), count_transforms=self.num_reflections
            )
        )
