"""Conjugate Gaussian models whose posterior and evidence are known exactly.

They are the ground truth of the test suite: with :meth:`ConjugateModel.guide` (the exact
posterior) as the guide, log p(x, z) - log q(z | x) = log p(x) for *every* z, so every variational
bound equals the log evidence on every draw and every unbiased gradient estimator of it is exact.

Each model exposes

- ``model(x, num_data=None)``: the Pyro model (also its ``forward``), latent site ``"z"`` and
  observed site ``"x"``, datapoints along the first dimension of ``x`` in the plate ``"data"``;
- ``posterior(x, num_data=None)``: the exact posterior as a distribution;
- ``guide(x, num_data=None)``: a Pyro guide that samples the exact posterior;
- ``log_evidence(x, num_data=None)``: log p(x), per datapoint (shape ``[N]``) for the models with
  a latent per datapoint (``local = True``), and as one joint number (shape ``[]``) for the model
  with a global latent (``local = False``), where the evidence does not factor over datapoints;
- ``sample(num_data)``: a data set ``[num_data, dim]`` drawn from the model.

Hyperparameters are parameters (``PyroParam`` for the positive ones), so the gradient of a bound
with respect to them can be checked against the gradient of the exact log evidence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.nn import PyroParam, pyro_method
from torch import nn

from pyro_vi._checks import check_float, describe
from pyro_vi._module import UniquePyroModule
from pyro_vi.plates import data_plate


def _float_dtype(value: object, dtype: torch.dtype | None) -> torch.dtype:
    """``dtype`` if given, else the value's own floating dtype, else torch's default."""
    if dtype is not None:
        return dtype
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.dtype
    return torch.get_default_dtype()


def _as_vector(
    name: str, value: torch.Tensor | Sequence[float], dtype: torch.dtype | None
) -> torch.Tensor:
    try:
        tensor = torch.as_tensor(value, dtype=_float_dtype(value, dtype)).clone()
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(f"{name} must be a vector of numbers, got {describe(value)}") from error
    if tensor.dim() != 1 or tensor.numel() == 0:
        raise ValueError(f"{name} must be a non-empty vector, got shape {tuple(tensor.shape)}")
    return tensor


def _positive(name: str, value: float, like: torch.Tensor) -> PyroParam:
    value = check_float(name, value, minimum=0.0, exclusive_minimum=True)
    return PyroParam(like.new_tensor(value), constraint=constraints.positive)


class ConjugateModel(UniquePyroModule):
    """Base class. A subclass implements ``forward`` (the model), ``posterior`` and ``log_evidence``
    and sets ``local``; the exact-posterior guide and ``model`` alias come from here."""

    local: bool = True
    latent_site: str = "z"
    observed_site: str = "x"

    def _check_x(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {describe(x)}")
        if x.dim() != 2 or x.shape[-1] != self.dim:
            raise ValueError(
                f"x must have shape [num_data, {self.dim}] for this model, got {tuple(x.shape)}"
            )

    @pyro_method
    def model(self, x: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        """The Pyro model; the same as calling the module."""
        return self.forward(x, num_data)

    @pyro_method
    def guide(self, x: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        """A Pyro guide that draws ``"z"`` from the exact posterior."""
        posterior = self.posterior(x, num_data)
        if not self.local:
            return pyro.sample(self.latent_site, posterior)
        with data_plate(x, num_data):
            return pyro.sample(self.latent_site, posterior)

    def posterior(self, x: torch.Tensor, num_data: int | None = None) -> dist.Distribution:
        raise NotImplementedError

    def log_evidence(self, x: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        raise NotImplementedError


class NormalNormal(ConjugateModel):
    """A latent per datapoint: z_i ~ N(mu0, s0^2 I), x_i | z_i ~ N(z_i, s^2 I).

    Posterior: z_i | x_i ~ N(m_i, v I), v = (1/s0^2 + 1/s^2)^-1, m_i = v (mu0/s0^2 + x_i/s^2).
    Evidence: x_i ~ N(mu0, (s0^2 + s^2) I).

    Arguments:
        prior_loc: mu0, a vector of length D (its dtype is the model's unless ``dtype`` is given).
        prior_scale: s0 > 0.
        noise_scale: s > 0.
        dtype: Floating dtype of the parameters; float64 for exactness checks.

    Example:
        >>> m = NormalNormal(torch.zeros(3, dtype=torch.float64), 1.0, 0.5)
        >>> x = m.sample(10)
        >>> Trace_ELBO().loss(m.model, m.guide, x) + m.log_evidence(x).sum()  # == 0 exactly
    """

    local = True

    def __init__(
        self,
        prior_loc: torch.Tensor | Sequence[float],
        prior_scale: float = 1.0,
        noise_scale: float = 1.0,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        loc = _as_vector("prior_loc", prior_loc, dtype)
        self.dim = loc.numel()
        self.prior_loc = nn.Parameter(loc)
        self.prior_scale = _positive("prior_scale", prior_scale, loc)
        self.noise_scale = _positive("noise_scale", noise_scale, loc)

    def forward(self, x: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        self._check_x(x)
        with data_plate(x, num_data):
            z = pyro.sample(
                self.latent_site, dist.Normal(self.prior_loc, self.prior_scale).to_event(1)
            )
            pyro.sample(self.observed_site, dist.Normal(z, self.noise_scale).to_event(1), obs=x)
        return z

    def posterior(self, x: torch.Tensor, num_data: int | None = None) -> dist.Distribution:
        self._check_x(x)
        prior_precision = self.prior_scale.pow(-2)
        noise_precision = self.noise_scale.pow(-2)
        variance = 1.0 / (prior_precision + noise_precision)
        loc = variance * (self.prior_loc * prior_precision + x * noise_precision)
        return dist.Normal(loc, variance.sqrt().expand_as(loc)).to_event(1)

    def log_evidence(self, x: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        self._check_x(x)
        scale = (self.prior_scale.pow(2) + self.noise_scale.pow(2)).sqrt()
        return dist.Normal(self.prior_loc, scale).to_event(1).log_prob(x)

    def sample(self, num_data: int) -> torch.Tensor:
        """Draw ``num_data`` datapoints from the model, shape ``[num_data, D]``."""
        with torch.no_grad():
            z = dist.Normal(self.prior_loc, self.prior_scale).sample((num_data,))
            return dist.Normal(z, self.noise_scale).sample()


class FactorAnalysis(ConjugateModel):
    """Linear-Gaussian latent model: z_i ~ N(0, I_k), x_i | z_i ~ N(W z_i + b, diag(psi)).

    The posterior is a *correlated* Gaussian, so no diagonal guide is exact:
    z_i | x_i ~ N(S W^T Psi^-1 (x_i - b), S) with S = (I + W^T Psi^-1 W)^-1.
    Evidence: x_i ~ N(b, W W^T + Psi).

    Arguments:
        weight: W, shape ``[D, k]``.
        bias: b, shape ``[D]`` (zeros when ``None``).
        noise_variance: psi, the D noise variances (positive), or one number for all.
        dtype: Floating dtype of the parameters.
    """

    local = True

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        noise_variance: float | torch.Tensor = 1.0,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        weight = torch.as_tensor(weight, dtype=_float_dtype(weight, dtype))
        if weight.dim() != 2:
            raise ValueError(f"weight must be a matrix [D, k], got shape {tuple(weight.shape)}")
        self.dim, self.latent_dim = weight.shape
        if bias is None:
            bias = weight.new_zeros(self.dim)
        bias = _as_vector("bias", bias, weight.dtype)
        if bias.numel() != self.dim:
            raise ValueError(f"bias must have length {self.dim}, got {bias.numel()}")
        noise = torch.as_tensor(noise_variance, dtype=weight.dtype)
        if noise.dim() == 0:
            noise = noise.expand(self.dim).clone()
        if noise.shape != (self.dim,) or not bool((noise > 0).all()):
            raise ValueError(
                f"noise_variance must be positive, one number or {self.dim} of them, got {noise}"
            )
        self.weight = nn.Parameter(weight.clone())
        self.bias = nn.Parameter(bias)
        self.noise_variance = PyroParam(noise, constraint=constraints.positive)

    def forward(self, x: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        self._check_x(x)
        prior = dist.Normal(x.new_zeros(self.latent_dim), 1.0).to_event(1)
        with data_plate(x, num_data):
            z = pyro.sample(self.latent_site, prior)
            loc = z @ self.weight.T + self.bias
            likelihood = dist.Normal(loc, self.noise_variance.sqrt()).to_event(1)
            pyro.sample(self.observed_site, likelihood, obs=x)
        return z

    def posterior(self, x: torch.Tensor, num_data: int | None = None) -> dist.Distribution:
        self._check_x(x)
        scaled_weight = self.weight / self.noise_variance.unsqueeze(-1)  # Psi^-1 W
        precision = torch.eye(self.latent_dim, dtype=x.dtype, device=x.device)
        precision = precision + self.weight.T @ scaled_weight
        cholesky = torch.linalg.cholesky(precision)
        # mean_i = S W^T Psi^-1 (x_i - b), solved with the Cholesky factor of S^-1.
        rhs = ((x - self.bias) @ scaled_weight).unsqueeze(-1)
        loc = torch.cholesky_solve(rhs, cholesky).squeeze(-1)
        return dist.MultivariateNormal(loc, precision_matrix=precision)

    def log_evidence(self, x: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        self._check_x(x)
        covariance = self.weight @ self.weight.T + torch.diag(self.noise_variance)
        return dist.MultivariateNormal(self.bias, covariance_matrix=covariance).log_prob(x)

    def sample(self, num_data: int) -> torch.Tensor:
        """Draw ``num_data`` datapoints from the model, shape ``[num_data, D]``."""
        with torch.no_grad():
            # Drawn like the weight: its dtype and its device, whatever the default device is.
            z = self.weight.new_empty(num_data, self.latent_dim).normal_()
            noise = self.weight.new_empty(num_data, self.dim).normal_()
            return z @ self.weight.T + self.bias + noise * self.noise_variance.sqrt()


class NormalNormalGlobal(ConjugateModel):
    """One latent shared by all datapoints: z ~ N(mu0, s0^2 I), x_i | z ~ N(z, s^2 I) for i <= N.

    With a minibatch of B points standing for N (``num_data=N``), each likelihood term is raised to
    the power c = N/B, as Pyro's subsampled plate does; the posterior and evidence below are those
    of that scaled model, and equal the usual ones when c = 1:

    - posterior: z | x ~ N(m, v I), v = (1/s0^2 + cB/s^2)^-1, m = v (mu0/s0^2 + c sum_i x_i / s^2);
    - evidence (one joint number, it does not factor over datapoints), with xbar the batch mean:
      log Z = -(cBD/2) log(2 pi s^2) - c sum_i |x_i - xbar|^2 / (2 s^2)
              + (D/2) log(2 pi s^2/(cB)) + log N(xbar; mu0, (s0^2 + s^2/(cB)) I).

    Arguments are those of :class:`NormalNormal`.
    """

    local = False

    def __init__(
        self,
        prior_loc: torch.Tensor | Sequence[float],
        prior_scale: float = 1.0,
        noise_scale: float = 1.0,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        loc = _as_vector("prior_loc", prior_loc, dtype)
        self.dim = loc.numel()
        self.prior_loc = nn.Parameter(loc)
        self.prior_scale = _positive("prior_scale", prior_scale, loc)
        self.noise_scale = _positive("noise_scale", noise_scale, loc)

    def forward(self, x: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        self._check_x(x)
        prior = dist.Normal(self.prior_loc, self.prior_scale).to_event(1)
        z = pyro.sample(self.latent_site, prior)
        with data_plate(x, num_data):
            likelihood = dist.Normal(z, self.noise_scale).to_event(1)
            pyro.sample(self.observed_site, likelihood, obs=x)
        return z

    def _power(self, x: torch.Tensor, num_data: int | None) -> float:
        return 1.0 if num_data is None else num_data / x.shape[0]

    def posterior(self, x: torch.Tensor, num_data: int | None = None) -> dist.Distribution:
        self._check_x(x)
        power = self._power(x, num_data)
        prior_precision = self.prior_scale.pow(-2)
        noise_precision = self.noise_scale.pow(-2)
        variance = 1.0 / (prior_precision + power * x.shape[0] * noise_precision)
        loc = variance * (self.prior_loc * prior_precision + power * x.sum(0) * noise_precision)
        return dist.Normal(loc, variance.sqrt().expand_as(loc)).to_event(1)

    def log_evidence(self, x: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        self._check_x(x)
        power = self._power(x, num_data)
        count = power * x.shape[0]  # cB, the effective number of datapoints
        noise_variance = self.noise_scale.pow(2)
        mean = x.mean(0)
        spread = (x - mean).pow(2).sum()
        log_two_pi = math.log(2 * math.pi)
        marginal_scale = (self.prior_scale.pow(2) + noise_variance / count).sqrt()
        return (
            -0.5 * count * self.dim * (log_two_pi + noise_variance.log())
            - power * spread / (2 * noise_variance)
            + 0.5 * self.dim * (log_two_pi + (noise_variance / count).log())
            + dist.Normal(self.prior_loc, marginal_scale).to_event(1).log_prob(mean)
        )

    def sample(self, num_data: int) -> torch.Tensor:
        """Draw ``num_data`` datapoints sharing one latent, shape ``[num_data, D]``."""
        with torch.no_grad():
            z = dist.Normal(self.prior_loc, self.prior_scale).sample()
            return dist.Normal(z, self.noise_scale).sample((num_data,))
