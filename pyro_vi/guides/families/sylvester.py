"""Conditional Householder-Sylvester flow: u -> u + Q R tanh(R~ Q^T u + b), all from h.

Pyro has only an unconditional ``Sylvester`` transform; this module adds the conditional one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pyro.distributions.conditional import ConditionalTransformModule
from pyro.distributions.transforms import Transform
from pyro.nn import DenseNN
from torch.distributions import constraints

from pyro_vi._checks import check_int
from pyro_vi.guides.families.base import check_hidden
from pyro_vi.guides.families.flow import Flow, default_hidden, shrink_


def _matvec(matrix: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    return (matrix @ vector.unsqueeze(-1)).squeeze(-1)


def _reflect(x: torch.Tensor, unit: torch.Tensor) -> torch.Tensor:
    return x - 2 * (x * unit).sum(-1, keepdim=True) * unit


class ConditionedSylvester(Transform):
    r"""x -> x + Q R tanh(R~ Q^T x + b), with Q = H_1 ... H_m a product of reflections.

    With R and R~ upper triangular, the Jacobian determinant is that of I + diag(tanh') R~ R
    (Sylvester's identity), a triangular matrix: log|det J| = sum_i log(1 + tanh'_i r~_ii r_ii).
    The diagonals are tanh-squashed into (-1, 1), so every factor is positive and the map is
    invertible; the inverse has no closed form, so only cached outputs can be inverted.

    Arguments:
        vectors: Reflection vectors ``[..., m, dim]`` (normalized here).
        r: R ``[..., dim, dim]``, upper triangular.
        r_tilde: R~ ``[..., dim, dim]``, upper triangular.
        shift: b ``[..., dim]``.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(
        self, vectors: torch.Tensor, r: torch.Tensor, r_tilde: torch.Tensor, shift: torch.Tensor
    ) -> None:
        super().__init__(cache_size=1)
        self.units = vectors / vectors.norm(dim=-1, keepdim=True)
        self.r, self.r_tilde, self.shift = r, r_tilde, shift
        self.diagonal_product = r.diagonal(dim1=-2, dim2=-1) * r_tilde.diagonal(dim1=-2, dim2=-1)
        self._cached_log_det: torch.Tensor | None = None

    def _rotate(self, x: torch.Tensor, transpose: bool) -> torch.Tensor:
        # Q x applies H_m first; Q^T x = H_m ... H_1 x applies H_1 first
        order = range(self.units.size(-2))
        for index in order if transpose else reversed(order):
            x = _reflect(x, self.units[..., index, :])
        return x

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        hidden = torch.tanh(_matvec(self.r_tilde, self._rotate(x, transpose=True)) + self.shift)
        derivative = 1 - hidden**2
        self._cached_log_det = torch.log1p(derivative * self.diagonal_product).sum(-1)
        return x + self._rotate(_matvec(self.r, hidden), transpose=False)

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(
            "a Sylvester step has no closed-form inverse; only its own outputs can be inverted"
        )

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x_old, y_old = self._cached_x_y
        if x is not x_old or y is not y_old:
            self(x)  # refreshes the cache and the log-determinant
        return self._cached_log_det


class ConditionalSylvester(ConditionalTransformModule):
    """A network from h to the parameters of a :class:`ConditionedSylvester` step.

    Arguments:
        dim: Size of the vectors it transforms.
        features: Size of the context.
        hidden: Hidden layer sizes of the network.
        num_reflections: Householder reflections making up Q.
    """

    def __init__(
        self, dim: int, features: int, hidden: Sequence[int], num_reflections: int
    ) -> None:
        super().__init__()
        self.dim, self.num_reflections = dim, num_reflections
        rows, cols = torch.triu_indices(dim, dim, offset=1)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)
        above = rows.numel()
        self.nn = DenseNN(
            features, list(hidden), param_dims=[num_reflections * dim, above, dim, above, dim, dim]
        )
        # start at the identity (R ~ 0, tanh(0) = 0 on its diagonal) with generic reflections
        bias = shrink_(self.nn.layers[-1]).bias
        with torch.no_grad():
            bias[: num_reflections * dim] = torch.randn(num_reflections * dim)

    def _triangular(self, above: torch.Tensor, diagonal: torch.Tensor) -> torch.Tensor:
        upper = above.new_zeros((*above.shape[:-1], self.dim, self.dim))
        upper[..., self.rows, self.cols] = above
        return upper + torch.diag_embed(torch.tanh(diagonal))

    def condition(self, context: torch.Tensor) -> ConditionedSylvester:
        vectors, r_above, r_diagonal, rt_above, rt_diagonal, shift = self.nn(context)
        vectors = vectors.unflatten(-1, (self.num_reflections, self.dim))
        r = self._triangular(r_above, r_diagonal)
        r_tilde = self._triangular(rt_above, rt_diagonal)
        return ConditionedSylvester(vectors, r, r_tilde, shift)


class SylvesterFlow(Flow):
    r"""A diagonal Gaussian from h followed by ``num_steps`` Householder-Sylvester steps of h.

    Step t maps e to e + Q R tanh(R~ Q^T e + b): a single-hidden-layer residual map with dim
    hidden units, Q(h) orthogonal (``num_reflections`` Householder reflections), R(h), R~(h)
    upper triangular with tanh-squashed diagonals and b(h), all outputs of one network per step.
    log|det J| is in closed form (see :class:`ConditionedSylvester`); the inverse is not, so
    ``log_prob`` can score the flow's own samples only (``has_tractable_inverse`` is False).
    Each step starts near the identity (R near 0).

    Arguments:
        dim: Size of the latent vector.
        features: Size of the context.
        num_steps: Sylvester steps (>= 1).
        num_reflections: Reflections per Q (>= 1); ``min(dim, 4)`` if None.
        hidden: Hidden layer sizes of each step's network; ``[max(features, 4 dim)]`` if None.
        min_scale: Floor of the base scales.

    References:
        van den Berg, Hasenclever, Tomczak & Welling, Sylvester Normalizing Flows for
        Variational Inference (2018).

    Example:
        >>> q = SylvesterFlow(dim=4, features=16, num_steps=2)(torch.randn(8, 16))
        >>> z = q.rsample(); q.log_prob(z).shape
        torch.Size([8])
    """

    name = "sylvester"
    has_tractable_inverse = False

    def __init__(
        self,
        dim: int,
        features: int,
        *,
        num_steps: int = 2,
        num_reflections: int | None = None,
        hidden: Sequence[int] | None = None,
        min_scale: float = 1e-5,
    ) -> None:
        super().__init__(dim, features, min_scale=min_scale)
        self.num_steps = check_int("num_steps", num_steps, minimum=1)
        if num_reflections is None:
            num_reflections = min(self.dim, 4)
        self.num_reflections = check_int("num_reflections", num_reflections, minimum=1)
        hidden = check_hidden(hidden, default_hidden(self.dim, self.features))
        for _ in range(self.num_steps):
            self.steps.append(
                ConditionalSylvester(self.dim, self.features, hidden, self.num_reflections)
            )
