"""Observation models p(x | z): they turn a decoder's output into a distribution over one datapoint.

A likelihood is an ``nn.Module`` (it may own parameters, such as a learned per-pixel variance).
Subclasses implement:

- ``forward(params, event_dim) -> Distribution``: the distribution of the data given the decoder's
  output ``params`` of shape ``[..., *params_shape(data_shape)]``, with the last ``event_dim``
  dimensions as its event;
- ``check_data(x)``: raise a clear ``ValueError`` when ``x`` lies outside the likelihood's support;
- ``params_shape(data_shape)`` when the decoder's output for one datapoint does not have the shape
  of the datapoint (e.g. one logit per grey level).

The distribution returned by ``forward`` has a ``mean`` in data units, which report figures show.

The likelihoods by name (:func:`make_likelihood`):

- ``"bernoulli"``: :class:`BernoulliLikelihood`, binary data;
- ``"bernoulli_grey"``: the Bernoulli cross-entropy on [0, 1] (not a normalized density);
- ``"gaussian"``: :class:`GaussianLikelihood` (learned per-pixel scale) or
  :class:`FixedGaussianLikelihood` (``scale=s``);
- ``"continuous_bernoulli"``: :class:`ContinuousBernoulliLikelihood`, a density on [0, 1];
- ``"categorical"``: :class:`CategoricalLikelihood`, L grey levels k / (L - 1);
- ``"poisson"``: :class:`PoissonLikelihood`, counts (a table of non-negative integers);
- ``"negative_binomial"``: :class:`NegativeBinomialLikelihood`, over-dispersed counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from torch import nn
from torch.nn.functional import binary_cross_entropy_with_logits, softplus

from pyro_vi._checks import check_float, check_int
from pyro_vi._registry import Registry, check_options, keyword_options


class Likelihood(nn.Module):
    """Base class; see the module docstring for what a subclass implements."""

    def forward(self, params: torch.Tensor, event_dim: int) -> dist.TorchDistribution:
        raise NotImplementedError

    def check_data(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` when ``x`` lies outside the support; the default accepts all."""

    def params_shape(self, data_shape: Sequence[int]) -> tuple[int, ...]:
        """The shape of the decoder's output for one datapoint of shape ``data_shape``.

        The default is ``data_shape`` itself: one parameter per pixel.
        """
        return tuple(data_shape)


def _inverse_softplus(value: float) -> torch.Tensor:
    """softplus^-1(y) = y + log(1 - e^-y) for y > 0, as a 0-d tensor of torch's default dtype.

    The raw parameter whose softplus is ``value``. Written so that it stays finite for every y:
    the textbook log(expm1(y)) overflows to inf for y > ~88.7 in float32.
    """
    y = torch.tensor(float(value), dtype=torch.float64)
    return (y + torch.log(-torch.expm1(-y))).to(torch.get_default_dtype())


def _as_floating(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Integer or boolean data (binary images stored as ints) in the dtype of ``like``; floating
    data as it is. ``binary_cross_entropy_with_logits`` refuses an integer target."""
    return value if value.is_floating_point() else value.to(like.dtype)


class _LogitsImage(dist.TorchDistribution):
    """Independent pixels parameterized by logits ``[..., *event]``, the last ``event_dim`` dims
    one event; no argument validation (the likelihood checks the data once)."""

    arg_constraints: ClassVar[dict] = {"logits": constraints.real}
    has_rsample = False

    def __init__(self, logits: torch.Tensor, event_dim: int) -> None:
        self.logits = logits
        self._event_dim = event_dim
        split = logits.dim() - event_dim
        super().__init__(logits.shape[:split], logits.shape[split:], validate_args=False)


class BernoulliImage(_LogitsImage):
    """Independent Bernoulli pixels with logits l as one event: the last ``event_dim`` dims.

    log p(x) = sum_j [x_j l_j - softplus(l_j)] = -sum_j BCE(l_j, x_j), computed by the fused
    ``binary_cross_entropy_with_logits`` kernel and summed before it is negated, which saves the
    full-size negation (and its backward) of ``Bernoulli(logits).to_event(...)``; the values are
    the same. No argument validation: the likelihood checks the data once.
    """

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self) -> constraints.Constraint:
        return constraints.independent(constraints.boolean, self._event_dim)

    @property
    def mean(self) -> torch.Tensor:
        return torch.sigmoid(self.logits)

    @property
    def variance(self) -> torch.Tensor:
        probs = torch.sigmoid(self.logits)
        return probs * (1 - probs)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            return torch.bernoulli(torch.sigmoid(self.logits).expand(shape))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        logits, value = torch.broadcast_tensors(self.logits, _as_floating(value, self.logits))
        cross_entropy = binary_cross_entropy_with_logits(logits, value, reduction="none")
        if self._event_dim:
            cross_entropy = cross_entropy.flatten(-self._event_dim).sum(-1)
        return -cross_entropy


class BernoulliLikelihood(Likelihood):
    """Independent Bernoulli pixels with logits l: log p(x|z) = sum_j log Bern(x_j; sigmoid(l_j)).

    A proper likelihood for binary data only. Data in [0, 1] that is not binary (grey levels) is
    rejected unless ``allow_grey=True``, in which case the "likelihood" is the Bernoulli
    cross-entropy used by many tutorials: it is not a normalized density of grey levels, so the
    resulting numbers are not log-likelihoods and are not comparable with published results.
    """

    def __init__(self, allow_grey: bool = False) -> None:
        super().__init__()
        self.allow_grey = bool(allow_grey)

    def forward(self, params: torch.Tensor, event_dim: int) -> dist.TorchDistribution:
        # The data is checked once by check_data; torch's own validation would scan the full
        # [particles, batch, pixels] logits and observations on every step (and sync a GPU).
        return BernoulliImage(params, event_dim)

    def check_data(self, x: torch.Tensor) -> None:
        if self.allow_grey:
            if bool(((x < 0) | (x > 1)).any()):
                raise ValueError(
                    "the Bernoulli likelihood needs data in [0, 1], got values in "
                    f"[{float(x.min()):.3g}, {float(x.max()):.3g}]"
                )
        elif bool(((x != 0) & (x != 1)).any()):
            raise ValueError(
                "the Bernoulli likelihood needs binary data (0 or 1); got values in "
                f"[{float(x.min()):.3g}, {float(x.max()):.3g}] that are not all 0/1: binarize the "
                "data (a spec's data.binarize = 'dynamic'; pyro_vi.data.DynamicBinarization in "
                "Python), or score grey levels with the Bernoulli cross-entropy, not a normalized "
                "likelihood (a spec's likelihood = 'bernoulli_grey'; allow_grey=True in Python)"
            )


class GaussianLikelihood(Likelihood):
    """Independent Gaussian pixels with mean from the decoder and a learned per-pixel scale.

    log p(x|z) = sum_j log N(x_j; mu_j(z), sigma_j^2) with sigma_j = min_scale + softplus(s_j) and
    one free parameter s_j per pixel, shared by all datapoints. The floor ``min_scale`` keeps the
    density bounded: a pixel that is constant in the data would otherwise drive sigma_j to 0 and
    the ELBO to +infinity.
    """

    def __init__(
        self, data_shape: Sequence[int], init_scale: float = 1.0, min_scale: float = 1e-3
    ) -> None:
        super().__init__()
        self.min_scale = check_float("min_scale", min_scale, minimum=0.0, exclusive_minimum=True)
        init_scale = check_float(
            "init_scale", init_scale, minimum=self.min_scale, exclusive_minimum=True
        )
        raw = _inverse_softplus(init_scale - self.min_scale)
        self.raw_scale = nn.Parameter(raw.expand(tuple(data_shape)).clone())

    @property
    def scale(self) -> torch.Tensor:
        return self.min_scale + softplus(self.raw_scale)

    def forward(self, params: torch.Tensor, event_dim: int) -> dist.TorchDistribution:
        return dist.Normal(params, self.scale).to_event(event_dim)


class FixedGaussianLikelihood(Likelihood):
    """Independent Gaussian pixels with mean from the decoder and one fixed standard deviation.

    log p(x|z) = sum_j log N(x_j; mu_j(z), sigma^2) with sigma given, not learned: the likelihood
    has no parameter. With sigma fixed, -log p(x|z) is the squared error / (2 sigma^2) plus a
    constant, so sigma sets the weight of the reconstruction against the KL term.

    Arguments:
        scale: sigma > 0.

    Example:
        >>> FixedGaussianLikelihood(0.1)(torch.zeros(5, 1, 8, 8), 3).log_prob(x)  # shape [5]
    """

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = check_float("scale", scale, minimum=0.0, exclusive_minimum=True)

    def forward(self, params: torch.Tensor, event_dim: int) -> dist.TorchDistribution:
        return dist.Normal(params, self.scale).to_event(event_dim)

    def extra_repr(self) -> str:
        return f"scale={self.scale:g}"


# |logits| below this use Taylor series: the closed forms cancel catastrophically near 0 in
# float32, and the series' first neglected terms are < 1e-9 here.
_TAYLOR_CUT = 0.1


def continuous_bernoulli_log_norm(logits: torch.Tensor) -> torch.Tensor:
    """log C(l), the log-normalizer of the continuous Bernoulli with logits l.

    C(l) = l / tanh(l / 2), even in l; near 0, log C(l) = log 2 + l^2/12 - 7 l^4/1440 + O(l^6).
    Computed from the logits, it stays accurate for every |l| (torch's version goes through
    probabilities clamped away from 0 and 1, and saturates beyond |l| ~ 16 in float32).
    """
    small = logits.abs() < _TAYLOR_CUT
    safe = torch.where(small, torch.ones_like(logits), logits.abs())
    closed = torch.log(safe) - torch.log(torch.tanh(safe / 2))
    square = logits.square()
    series = math.log(2.0) + square / 12 - 7 * square.square() / 1440
    return torch.where(small, series, closed)


def continuous_bernoulli_mean(logits: torch.Tensor) -> torch.Tensor:
    """E[x] = 1 / (1 - e^-l) - 1 / l of the continuous Bernoulli; 1/2 + l/12 - l^3/720 near 0."""
    small = logits.abs() < _TAYLOR_CUT
    safe = torch.where(small, torch.ones_like(logits), logits)
    closed = -1 / torch.expm1(-safe) - 1 / safe
    series = 0.5 + logits / 12 - logits**3 / 720
    return torch.where(small, series, closed)


class ContinuousBernoulliImage(_LogitsImage):
    """Independent continuous Bernoulli pixels with logits l as one event: the last ``event_dim``.

    p(x) = prod_j C(l_j) sigmoid(l_j)^x_j (1 - sigmoid(l_j))^(1 - x_j) on [0, 1]^d, so
    log p(x) = sum_j [-BCE(l_j, x_j) + log C(l_j)] (:func:`continuous_bernoulli_log_norm`), a
    normalized density of grey levels. No argument validation: the likelihood checks the data once.

    References:
        Loaiza-Ganem & Cunningham, "The continuous Bernoulli: fixing a pervasive error in
        variational autoencoders" (NeurIPS 2019).
    """

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self) -> constraints.Constraint:
        return constraints.independent(constraints.unit_interval, self._event_dim)

    @property
    def mean(self) -> torch.Tensor:
        return continuous_bernoulli_mean(self.logits)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008
        """Inverse-CDF sampling: x = log(1 + u (e^l - 1)) / l for u ~ U(0, 1)."""
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            logits = self.logits.expand(shape)
            u = torch.rand_like(logits)
            # Written as 1 + log(u + (1 - u) e^-l) / l for l > 0, so that e^l cannot overflow.
            small = logits.abs() < _TAYLOR_CUT
            safe = torch.where(small, torch.ones_like(logits), logits)
            positive = 1 + torch.log(u + (1 - u) * torch.exp(-safe.abs())) / safe.abs()
            negative = torch.log1p(u * torch.expm1(-safe.abs())) / -safe.abs()
            closed = torch.where(safe > 0, positive, negative)
            series = u + logits * u * (1 - u) / 2
            return torch.where(small, series, closed).clamp(0.0, 1.0)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        logits, value = torch.broadcast_tensors(self.logits, _as_floating(value, self.logits))
        log_p = continuous_bernoulli_log_norm(logits) - binary_cross_entropy_with_logits(
            logits, value, reduction="none"
        )
        if self._event_dim:
            log_p = log_p.flatten(-self._event_dim).sum(-1)
        return log_p


class ContinuousBernoulliLikelihood(Likelihood):
    """Independent continuous Bernoulli pixels: a proper density for grey levels in [0, 1].

    log p(x|z) = sum_j [x_j l_j - softplus(l_j) + log C(l_j)] with logits l = decoder(z): the
    Bernoulli cross-entropy of ``bernoulli_grey`` plus the log-normalizer that makes it a
    density on [0, 1], so the bound is a bound on a true log-likelihood. Its mean (the figures'
    image) is not sigmoid(l) but 1 / (1 - e^-l) - 1 / l.

    References:
        Loaiza-Ganem & Cunningham, "The continuous Bernoulli: fixing a pervasive error in
        variational autoencoders" (NeurIPS 2019).

    Example:
        >>> model = VAE(decoder, 8, ContinuousBernoulliLikelihood())
    """

    def forward(self, params: torch.Tensor, event_dim: int) -> dist.TorchDistribution:
        return ContinuousBernoulliImage(params, event_dim)

    def check_data(self, x: torch.Tensor) -> None:
        _check_unit_interval("continuous Bernoulli", x)


class DiscretizedImage(dist.TorchDistribution):
    """Independent categorical pixels over L grey levels, valued on the grid k / (L - 1).

    With logits ``[..., *event, L]`` (the last dimension indexes the level k), a value v is the
    level k = round(v (L - 1)) and log p(v) = sum_j log softmax(logits_j)[k_j]. ``mean`` is
    E[k] / (L - 1) and ``sample`` returns k / (L - 1): both in data units, like the data.
    No argument validation: the likelihood checks the data once.

    Arguments:
        logits: ``[..., *event_shape, L]``.
        event_dim: How many dimensions left of the level dimension form the event.
    """

    arg_constraints: ClassVar[dict] = {"logits": constraints.real}
    has_rsample = False

    def __init__(self, logits: torch.Tensor, event_dim: int) -> None:
        self.logits = logits
        self._event_dim = event_dim
        self.num_levels = logits.shape[-1]
        split = logits.dim() - 1 - event_dim
        super().__init__(logits.shape[:split], logits.shape[split:-1], validate_args=False)

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self) -> constraints.Constraint:
        return constraints.independent(constraints.unit_interval, self._event_dim)

    def _levels(self) -> torch.Tensor:
        steps = torch.arange(self.num_levels, device=self.logits.device, dtype=self.logits.dtype)
        return steps / (self.num_levels - 1)

    @property
    def mean(self) -> torch.Tensor:
        return torch.softmax(self.logits, -1) @ self._levels()

    @property
    def variance(self) -> torch.Tensor:
        second = torch.softmax(self.logits, -1) @ self._levels().square()
        return second - self.mean.square()

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008
        with torch.no_grad():
            categorical = torch.distributions.Categorical(logits=self.logits, validate_args=False)
            levels = categorical.sample(torch.Size(sample_shape))
            return levels.to(self.logits.dtype) / (self.num_levels - 1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        levels = torch.round(value * (self.num_levels - 1)).long().clamp(0, self.num_levels - 1)
        shape = torch.broadcast_shapes(self.logits.shape[:-1], levels.shape)
        # logits[k] - logsumexp(logits): gathers one logit per pixel instead of materializing
        # the full log-softmax over the L levels.
        picked = self.logits.expand(*shape, self.num_levels).gather(
            -1, levels.expand(shape).unsqueeze(-1)
        )
        log_p = picked.squeeze(-1) - torch.logsumexp(self.logits, -1)
        if self._event_dim:
            log_p = log_p.flatten(-self._event_dim).sum(-1)
        return log_p


class CategoricalLikelihood(Likelihood):
    """Each pixel is one of L grey levels k / (L - 1), with its own softmax over the L levels.

    p(x|z) = prod_j Categorical(k_j; softmax(l_j)) with k_j = round(x_j (L - 1)): a proper
    likelihood of quantized images (such as 8-bit MNIST, L = 256), in nats per image. The decoder
    outputs L logits per pixel: for a datapoint of shape ``(d0, *rest)`` its output has shape
    ``(d0 * L, *rest)``, the first axis holding d0 blocks of L logits (for images ``(C, H, W)``,
    C blocks of L channels: what a convolutional decoder produces).

    Arguments:
        num_levels: L >= 2; the data must lie on the grid {0, 1/(L-1), ..., 1}.

    Example:
        >>> likelihood = CategoricalLikelihood(256)
        >>> likelihood.params_shape((1, 28, 28))
        (256, 28, 28)
    """

    def __init__(self, num_levels: int = 256) -> None:
        super().__init__()
        self.num_levels = check_int("num_levels", num_levels, minimum=2)

    def params_shape(self, data_shape: Sequence[int]) -> tuple[int, ...]:
        data_shape = tuple(data_shape)
        if not data_shape:
            raise ValueError(
                "the categorical likelihood needs data_shape with at least one dimension (its "
                "first holds the blocks of logits), got ()"
            )
        return (data_shape[0] * self.num_levels, *data_shape[1:])

    def forward(self, params: torch.Tensor, event_dim: int) -> dist.TorchDistribution:
        if event_dim < 1 or params.shape[-event_dim] % self.num_levels:
            raise ValueError(
                f"the categorical likelihood with num_levels={self.num_levels} needs decoder "
                f"outputs whose first event dimension is a multiple of {self.num_levels}, got "
                f"shape {tuple(params.shape)} with event_dim={event_dim}"
            )
        # [..., d0 * L, *rest] -> [..., d0, L, *rest] -> [..., d0, *rest, L]
        logits = params.unflatten(-event_dim, (-1, self.num_levels)).movedim(-event_dim, -1)
        return DiscretizedImage(logits, event_dim)

    def check_data(self, x: torch.Tensor) -> None:
        _check_unit_interval("categorical", x)
        values = torch.unique(x.detach()).double()
        if _off_grid(values, self.num_levels).any():
            bad = float(values[_off_grid(values, self.num_levels)][0])
            raise ValueError(
                f"the categorical likelihood with num_levels={self.num_levels} needs data on the "
                f"grid k/{self.num_levels - 1} (k = 0..{self.num_levels - 1}), got the value "
                f"{bad:.6g}; {_levels_hint(values)}"
            )

    def extra_repr(self) -> str:
        return f"num_levels={self.num_levels}"


class _LogRateCounts(dist.TorchDistribution):
    """Independent counts parameterized by log-means l ``[..., *event]``, the last ``event_dim``
    dims one event; values may be float or integer tensors (integers are read as floats). No
    argument validation: the likelihood checks the data once."""

    arg_constraints: ClassVar[dict] = {"log_rate": constraints.real}
    has_rsample = False

    def __init__(self, log_rate: torch.Tensor, event_dim: int) -> None:
        self.log_rate = log_rate
        self._event_dim = event_dim
        split = log_rate.dim() - event_dim
        super().__init__(log_rate.shape[:split], log_rate.shape[split:], validate_args=False)

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self) -> constraints.Constraint:
        return constraints.independent(constraints.nonnegative_integer, self._event_dim)

    @property
    def mean(self) -> torch.Tensor:
        return torch.exp(self.log_rate)

    def _sum_event(self, log_p: torch.Tensor) -> torch.Tensor:
        return log_p.flatten(-self._event_dim).sum(-1) if self._event_dim else log_p


class PoissonCounts(_LogRateCounts):
    """Independent Poisson counts with log-rates l: log p(x) = sum_j [x_j l_j - e^l_j - log x_j!].

    Written in l rather than through ``Poisson(exp(l))``, so that no ``log(exp(l))`` round trip
    loses precision or underflows, and so that integer counts are scored as they are.
    """

    @property
    def variance(self) -> torch.Tensor:
        return torch.exp(self.log_rate)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            return torch.poisson(torch.exp(self.log_rate).expand(shape))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        value = value.to(self.log_rate.dtype)
        log_rate, value = torch.broadcast_tensors(self.log_rate, value)
        return self._sum_event(value * log_rate - torch.exp(log_rate) - torch.lgamma(value + 1))


class NegativeBinomialCounts(_LogRateCounts):
    """Independent negative-binomial counts with means mu = e^l and inverse dispersions r.

    p(x) = Gamma(x + r) / (Gamma(r) x!) (r / (r + mu))^r (mu / (r + mu))^x: a Poisson whose
    rate is Gamma-distributed with mean mu, variance mu + mu^2 / r. The logs of the two
    fractions are taken as log r - logaddexp(log r, l) and l - logaddexp(log r, l), which stay
    finite for any l.

    Arguments:
        log_rate: l, the log-means ``[..., *event]``.
        total_count: r > 0, broadcastable to ``log_rate`` (one per feature, or one number).
        event_dim: How many trailing dimensions form one event.
    """

    arg_constraints: ClassVar[dict] = {
        "log_rate": constraints.real,
        "total_count": constraints.positive,
    }

    def __init__(self, log_rate: torch.Tensor, total_count: torch.Tensor, event_dim: int) -> None:
        self.total_count = torch.as_tensor(total_count, dtype=log_rate.dtype).to(log_rate.device)
        super().__init__(log_rate, event_dim)

    @property
    def variance(self) -> torch.Tensor:
        mean = torch.exp(self.log_rate)
        return mean + mean.square() / self.total_count

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            total_count = self.total_count.expand(shape)
            rate = torch.distributions.Gamma(
                total_count, total_count / torch.exp(self.log_rate).expand(shape)
            ).sample()
            return torch.poisson(rate)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        value = value.to(self.log_rate.dtype)
        log_rate, total_count, value = torch.broadcast_tensors(
            self.log_rate, self.total_count, value
        )
        log_total = torch.log(total_count)
        log_sum = torch.logaddexp(log_total, log_rate)  # log(r + mu)
        log_p = (
            torch.lgamma(value + total_count)
            - torch.lgamma(total_count)
            - torch.lgamma(value + 1)
            + total_count * (log_total - log_sum)
            + value * (log_rate - log_sum)
        )
        return self._sum_event(log_p)


class PoissonLikelihood(Likelihood):
    """Independent Poisson counts: log p(x|z) = sum_j log Poisson(x_j; exp(l_j)), l = decoder(z).

    For tables of counts (``[N, D]``, e.g. genes per cell). The decoder outputs log-rates, so a
    rate is always positive; the data must be non-negative integers (stored as floats or ints).

    Example:
        >>> model, guide = mlp_vae((200,), 10, likelihood="poisson")
    """

    def forward(self, params: torch.Tensor, event_dim: int) -> dist.TorchDistribution:
        return PoissonCounts(params, event_dim)

    def check_data(self, x: torch.Tensor) -> None:
        _check_counts("Poisson", x)


class NegativeBinomialLikelihood(Likelihood):
    """Independent negative-binomial counts with means exp(l_j), l = decoder(z), and an inverse
    dispersion r_j per feature, learned (shared by all datapoints) or fixed.

    Var(x_j | z) = mu_j + mu_j^2 / r_j: over-dispersed counts, as single-cell RNA counts are;
    r -> infinity gives the Poisson. A learned r_j = min_total_count + softplus(s_j) starts at
    ``init_total_count``.

    Arguments:
        data_shape: Shape of one datapoint (one r per feature); unused when ``total_count`` is
            given.
        total_count: A fixed r > 0 for every feature, or ``None`` to learn one per feature.
        init_total_count: The learned r's initial value.
        min_total_count: The learned r's floor: keeps log Gamma(r) finite.

    References:
        Lopez, Regier, Cole, Jordan & Yosef, "Deep generative modeling for single-cell
        transcriptomics" (Nature Methods 2018): the scVI model, a VAE with this likelihood.

    Example:
        >>> likelihood = NegativeBinomialLikelihood((200,))
        >>> likelihood.total_count.shape
        torch.Size([200])
    """

    def __init__(
        self,
        data_shape: Sequence[int],
        total_count: float | None = None,
        init_total_count: float = 1.0,
        min_total_count: float = 1e-4,
    ) -> None:
        super().__init__()
        self.fixed_total_count = (
            None
            if total_count is None
            else check_float("total_count", total_count, minimum=0.0, exclusive_minimum=True)
        )
        self.min_total_count = check_float(
            "min_total_count", min_total_count, minimum=0.0, exclusive_minimum=True
        )
        init = check_float(
            "init_total_count",
            init_total_count,
            minimum=self.min_total_count,
            exclusive_minimum=True,
        )
        if self.fixed_total_count is None:
            raw = _inverse_softplus(init - self.min_total_count)
            self.raw_total_count = nn.Parameter(raw.expand(tuple(data_shape)).clone())

    @property
    def total_count(self) -> torch.Tensor | float:
        """r: the fixed number, or the learned tensor of one per feature."""
        if self.fixed_total_count is not None:
            return self.fixed_total_count
        return self.min_total_count + softplus(self.raw_total_count)

    def forward(self, params: torch.Tensor, event_dim: int) -> dist.TorchDistribution:
        return NegativeBinomialCounts(params, self.total_count, event_dim)

    def check_data(self, x: torch.Tensor) -> None:
        _check_counts("negative binomial", x)

    def extra_repr(self) -> str:
        if self.fixed_total_count is None:
            return f"total_count=learned {tuple(self.raw_total_count.shape)}"
        return f"total_count={self.fixed_total_count:g}"


def _check_counts(name: str, x: torch.Tensor) -> None:
    if x.dtype.is_floating_point:
        bad = (x < 0) | (x != torch.round(x)) | ~torch.isfinite(x)
    else:
        bad = x < 0
    if bool(bad.any()):
        value = float(x[bad][0])
        raise ValueError(
            f"the {name} likelihood needs counts (integers >= 0), got the value {value:.6g}; "
            "use 'gaussian' for real values, 'continuous_bernoulli' for values in [0, 1]"
        )


_GRID_TOLERANCE = 1e-4  # in data units; float32 grey levels k/255 are within 1e-7 of the grid
_MAX_LEVELS_HINT = 1024


def _off_grid(values: torch.Tensor, num_levels: int) -> torch.Tensor:
    scaled = values * (num_levels - 1)
    # A quarter of the grid's spacing at most: with thousands of levels, 1e-4 would exceed half
    # the spacing and let any value through, rounded to its nearest level.
    tolerance = min(_GRID_TOLERANCE, 0.25 / (num_levels - 1))
    return (scaled - scaled.round()).abs() / (num_levels - 1) > tolerance


def _levels_hint(values: torch.Tensor) -> str:
    """Which ``num_levels`` the data fits, for the error message."""
    # A few distinct values rule out most grids cheaply; a candidate is then checked on all.
    some = values[:: max(1, len(values) // 64)]
    for num_levels in range(2, _MAX_LEVELS_HINT + 1):
        if not _off_grid(some, num_levels).any() and not _off_grid(values, num_levels).any():
            return (
                f"the data fits num_levels={num_levels} (values k/{num_levels - 1}; e.g. binary "
                "data needs 2, the scikit-learn digits k/16 need 17, 8-bit images 256)"
            )
    return (
        f"the data lies on no grid k/(L - 1) with L <= {_MAX_LEVELS_HINT}: use the "
        "'continuous_bernoulli' or 'gaussian' likelihood for continuous values"
    )


def _check_unit_interval(name: str, x: torch.Tensor) -> None:
    if bool(((x < 0) | (x > 1)).any()):
        raise ValueError(
            f"the {name} likelihood needs data in [0, 1], got values in "
            f"[{float(x.min()):.3g}, {float(x.max()):.3g}]"
        )


#: Every likelihood by name: a factory ``(data_shape, *, <options>) -> Likelihood`` whose
#: keyword arguments are the likelihood's options (:func:`likelihood_options` reads them).
LIKELIHOODS: Registry[Callable[..., Likelihood]] = Registry("likelihood")


@LIKELIHOODS.add("bernoulli")
def _bernoulli(data_shape: Sequence[int]) -> Likelihood:
    return BernoulliLikelihood()


@LIKELIHOODS.add("bernoulli_grey")
def _bernoulli_grey(data_shape: Sequence[int]) -> Likelihood:
    return BernoulliLikelihood(allow_grey=True)


@LIKELIHOODS.add("gaussian")
def _gaussian(data_shape: Sequence[int], *, scale: float | None = None) -> Likelihood:
    # No scale: one learned per pixel, so the likelihood needs the data's shape.
    return GaussianLikelihood(data_shape) if scale is None else FixedGaussianLikelihood(scale)


@LIKELIHOODS.add("continuous_bernoulli")
def _continuous_bernoulli(data_shape: Sequence[int]) -> Likelihood:
    return ContinuousBernoulliLikelihood()


@LIKELIHOODS.add("categorical")
def _categorical(data_shape: Sequence[int], *, num_levels: int = 256) -> Likelihood:
    return CategoricalLikelihood(num_levels)


@LIKELIHOODS.add("poisson")
def _poisson(data_shape: Sequence[int]) -> Likelihood:
    return PoissonLikelihood()


@LIKELIHOODS.add("negative_binomial")
def _negative_binomial(
    data_shape: Sequence[int], *, total_count: float | None = None
) -> Likelihood:
    # No total_count: one learned per feature, so the likelihood needs the data's shape.
    return NegativeBinomialLikelihood(data_shape, total_count)


def likelihood_options(name: str) -> dict[str, Any]:
    """The options of the likelihood ``name`` with their defaults.

    Arguments:
        name: One of :data:`LIKELIHOODS`.

    Returns:
        A new dict option name -> default, e.g. ``{"num_levels": 256}`` for ``"categorical"``.

    Raises:
        ValueError: an unknown name, listing the likelihoods.

    Example:
        >>> likelihood_options("gaussian")
        {'scale': None}
    """
    return keyword_options(LIKELIHOODS[name], skip=("data_shape",))


def make_likelihood(name: str, data_shape: Sequence[int], **options: Any) -> Likelihood:
    """Build a likelihood by name: one of :data:`LIKELIHOODS`.

    Arguments:
        name: ``"bernoulli"`` (binary data), ``"bernoulli_grey"`` (the cross-entropy on grey
            levels, not normalized), ``"gaussian"`` (``scale=None``: learned per-pixel scale;
            ``scale=s > 0``: fixed standard deviation s), ``"continuous_bernoulli"`` (normalized
            density on [0, 1]), ``"categorical"`` (``num_levels`` grey levels), ``"poisson"``
            (counts) or ``"negative_binomial"`` (counts; ``total_count=None``: a learned
            inverse dispersion per feature; ``total_count=r``: fixed).
        data_shape: Shape of one datapoint (the learned Gaussian scale and the learned
            negative-binomial inverse dispersion have this shape).
        **options: The likelihood's options (:func:`likelihood_options` lists them).

    Returns:
        The likelihood module.

    Raises:
        ValueError: unknown name or option, listing what is allowed; or a bad option value.

    Example:
        >>> make_likelihood("categorical", (1, 28, 28), num_levels=256)
        CategoricalLikelihood(num_levels=256)
    """
    check_options("likelihood", name, options, likelihood_options(name))
    return LIKELIHOODS[name](data_shape, **options)


def as_likelihood(
    likelihood: Likelihood | str | Mapping[str, Any], data_shape: Sequence[int]
) -> Likelihood:
    """``likelihood`` as a module for data of shape ``data_shape``.

    Arguments:
        likelihood: A :class:`Likelihood`; a name of :data:`LIKELIHOODS` (default options); or a
            table with its name and options, ``{"name": "gaussian", "scale": 0.1}``, as a spec
            writes it (options set to ``None`` take their defaults).
        data_shape: Shape of one datapoint.

    Returns:
        The likelihood module.

    Raises:
        TypeError: ``likelihood`` is none of the above.

    Example:
        >>> as_likelihood({"name": "categorical", "num_levels": 17}, (1, 8, 8))
        CategoricalLikelihood(num_levels=17)
    """
    if isinstance(likelihood, Likelihood):
        return likelihood
    if isinstance(likelihood, str):
        return make_likelihood(likelihood, data_shape)
    if isinstance(likelihood, Mapping) and "name" in likelihood:
        options = {k: v for k, v in likelihood.items() if k != "name" and v is not None}
        return make_likelihood(likelihood["name"], data_shape, **options)
    raise TypeError(
        "likelihood must be a Likelihood, one of "
        f"{list(LIKELIHOODS)} or a table with 'name' and options, got {type(likelihood).__name__}"
    )
