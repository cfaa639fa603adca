"""A sigmoid belief net: binary latents, a Bernoulli likelihood, and its Concrete relaxations.

The discrete model, one z_i in {0, 1}^D per datapoint inside the data plate:

    p(z_i) = prod_d Bernoulli(z_id; sigmoid(a_d)),   x_i | z_i ~ likelihood(decoder(z_i)),

with learned prior logits a (Mnih & Rezende's SBN has a learned top-layer bias). With a linear
decoder it is Neal's (1992) one-layer sigmoid belief net, Mnih & Rezende's "SBN 200" for D = 200;
with an MLP decoder it is a VAE with Bernoulli latents. Its guide
(:class:`~pyro_vi.guides.bernoulli.BernoulliGuide`) is q(z_i | x_i) = prod_d Bernoulli(z_id;
sigmoid(c_d(x_i))). Nothing about z has a reparameterization: the estimators train it by score
function (``elbo``, ``score``: exact gradients in expectation, with baselines) or by VIMCO's
leave-one-out signals (``vimco``, ``iwae``, ...). ``stl`` and ``dreg`` need ``rsample`` and refuse.

Relaxations (``relaxation``) make z continuous so that the pathwise gradient applies, at the price
of bias. Both draw the site ``"z"`` as a *logit* y in R^D from the binary Concrete distribution in
logit space, :class:`LogitConcrete` (Maddison et al. 2017, App. C: densities in logit space are
numerically stable; the prior's and the guide's change of variables to (0, 1) would cancel in
log p - log q anyway): prior y_d ~ LogitConcrete(a_d, lambda_p), guide y_d ~ LogitConcrete(c_d,
lambda), y = (logit + L) / lambda with L ~ Logistic(0, 1). Its sign is exact: H(y) = 1[y > 0] is
Bernoulli(sigmoid(logit)) for *every* temperature, so the discrete model is recovered by
thresholding.

- ``"concrete"``: the decoder reads sigmoid(y) in (0, 1)^D (Maddison et al. 2017; Jang et al.
  2017). This is a different, continuous model: every estimator works on it, its gradients are
  unbiased *for the relaxed bound*, but that bound is on the relaxed model's likelihood, not on
  the discrete model's, and the gradient is biased for the discrete model's bound. As lambda -> 0
  (with lambda_p = lambda) the relaxed log-weight of each draw tends to the straight-through
  model's below (sigmoid(y) -> H(y); the density terms do not depend on lambda at all when
  lambda_p = lambda, for a fixed L).
- ``"straight_through"``: the decoder reads H(y) in the forward pass and sigmoid(y)'s gradient in
  the backward pass (Bengio et al. 2013; Jang et al. 2017, "ST Gumbel-Softmax"). The forward
  model p(y) p(x | H(y)) has exactly the discrete model's marginal p(x), since H(y) ~
  Bernoulli(sigmoid(a)) under the prior: every bound it computes is a true bound on the discrete
  log p(x). With Q = Bernoulli(sigmoid(c)) the guide's hard marginal,
  ELBO_ST = ELBO_discrete(Q) - E_Q[KL(q(y | b) || p(y | b))] <= ELBO_discrete(Q) <= log p(x).
  Only the gradient is biased (the straight-through step replaces dH/dy = 0 by d sigmoid/dy).

A relaxed model trains the same parameters as the discrete one (a, the decoder, the encoder):
:meth:`SigmoidBeliefNet.discrete` and :meth:`~pyro_vi.guides.bernoulli.BernoulliGuide.discrete`
give the discrete pair sharing them, on which every variant is evaluated (its test ELBO and
IWAE-K log-likelihood), so that models trained by different relaxations are compared on the one
quantity they all approximate.

References:
    Neal, "Connectionist learning of belief networks" (Artificial Intelligence, 1992).
    Mnih & Rezende, "Variational inference for Monte Carlo objectives" (ICML 2016).
    Maddison, Mnih & Teh, "The Concrete Distribution" (ICLR 2017).
    Jang, Gu & Poole, "Categorical Reparameterization with Gumbel-Softmax" (ICLR 2017).
    Bengio, Leonard & Courville, "Estimating or Propagating Gradients Through Stochastic Neurons
    for Conditional Computation" (2013).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyro_vi._checks import check_choice, check_float, check_int, describe
from pyro_vi.models.likelihoods import Likelihood
from pyro_vi.models.priors import Prior
from pyro_vi.models.vae import DeepLatentModel
from pyro_vi.plates import data_plate

__all__ = [
    "DEFAULT_TEMPERATURE",
    "RELAXATIONS",
    "BernoulliPrior",
    "LogitConcrete",
    "SigmoidBeliefNet",
    "check_temperature",
    "exact_log_marginal",
    "hard_threshold",
    "relaxed_temperatures",
    "straight_through_threshold",
]

#: ``"none"`` (the discrete model), ``"concrete"`` and ``"straight_through"``.
RELAXATIONS = ("none", "concrete", "straight_through")
#: lambda = 2/3, the temperature Maddison et al. (2017, Sec. 5) suggest for binary Concrete.
DEFAULT_TEMPERATURE = 2.0 / 3.0


def check_temperature(name: str, value: float) -> float:
    """``value`` as a finite float > 0 (a temperature), or a ``TypeError``/``ValueError``."""
    return check_float(name, value, minimum=0.0, exclusive_minimum=True)


class LogitConcrete(dist.Logistic):
    r"""The binary Concrete (relaxed Bernoulli) distribution in logit space.

    y = (a + L) / lambda with L ~ Logistic(0, 1): a Logistic(a / lambda, 1 / lambda), so

        log p(y) = log lambda + a - lambda y - 2 softplus(a - lambda y),

    computed stably (torch's ``LogitRelaxedBernoulli`` overflows in ``exp(a - lambda y)`` and
    clamps its probabilities, which zeroes the gradient of large logits). sigmoid(y) is the binary
    Concrete variable of Maddison et al. (2017) in (0, 1) and H(y) = 1[y > 0] is exactly
    Bernoulli(sigmoid(a)) whatever lambda; as lambda -> 0, sigmoid(y) -> H(y).

    Arguments:
        logits: a, the log-odds of H(y) = 1 (any shape: the batch shape).
        temperature: lambda > 0.

    References:
        Maddison, Mnih & Teh, "The Concrete Distribution" (ICLR 2017), Sec. 3.3 and App. C.

    Example:
        >>> y = LogitConcrete(torch.zeros(5), temperature=0.5).rsample()
        >>> (y > 0).float()  # five fair coin flips
    """

    def __init__(
        self, logits: torch.Tensor, temperature: float, *, validate_args: bool | None = None
    ) -> None:
        if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
            raise TypeError(f"logits must be a floating-point tensor, got {describe(logits)}")
        self.temperature = check_temperature("temperature", temperature)
        self.logits = logits
        loc, scale = logits / self.temperature, 1.0 / self.temperature
        super().__init__(loc, scale, validate_args=validate_args)

    def expand(self, batch_shape: Sequence[int], _instance: object = None) -> LogitConcrete:
        new = self._get_checked_instance(LogitConcrete, _instance)
        batch_shape = torch.Size(batch_shape)
        new.temperature = self.temperature
        new.logits = self.logits.expand(batch_shape)
        return super().expand(batch_shape, _instance=new)

    def rsample(self, sample_shape: Sequence[int] = torch.Size()) -> torch.Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))
        # torch's uniform_ can return exactly 0, whose logit is -inf: keep u inside (0, 1).
        finfo = torch.finfo(self.loc.dtype)
        u = self.loc.new_empty(shape).uniform_().clamp(finfo.tiny, 1.0 - finfo.eps)
        return self.icdf(u)


def hard_threshold(y: torch.Tensor) -> torch.Tensor:
    """H(y) = 1[y > 0] in the dtype of ``y`` (no gradient)."""
    return (y > 0).to(y.dtype)


def straight_through_threshold(y: torch.Tensor) -> torch.Tensor:
    """H(y) in the forward pass, the gradient of sigmoid(y) in the backward pass.

    Written sg(H(y)) + (s - sg(s)) with s = sigmoid(y), so that the value is exactly 0 or 1.

    References:
        Bengio, Leonard & Courville (2013); Jang, Gu & Poole (ICLR 2017), Sec. 2.2.
    """
    soft = torch.sigmoid(y)
    return hard_threshold(y) + (soft - soft.detach())


class BernoulliPrior(Prior):
    """p(z) = prod_d Bernoulli(z_d; sigmoid(a_d)) over {0, 1}^D, with learned logits a.

    The logits start at 0 (every unit on with probability 1/2). :meth:`relaxed` gives the binary
    Concrete prior over logits y with the same a.

    Arguments:
        latent_dim: D.

    Example:
        >>> BernoulliPrior(4)(x).sample()  # four fair coin flips
        tensor([1., 0., 0., 1.])
    """

    def __init__(self, latent_dim: int) -> None:
        super().__init__(latent_dim)
        self.logits = nn.Parameter(torch.zeros(self.latent_dim))

    def forward(self, like: torch.Tensor) -> dist.TorchDistribution:
        # .to(like) is differentiable: the logits keep their gradient on any device/dtype.
        return dist.Bernoulli(logits=self.logits.to(like)).to_event(1)

    def relaxed(self, like: torch.Tensor, temperature: float) -> dist.TorchDistribution:
        """prod_d LogitConcrete(y_d; a_d, temperature), batch shape ``()``, event ``[D]``."""
        return LogitConcrete(self.logits.to(like), temperature).to_event(1)


class SigmoidBeliefNet(DeepLatentModel):
    """Binary latents z_i ~ prod_d Bernoulli(sigmoid(a_d)), x_i | z_i ~ likelihood(decoder(z_i)).

    Sample sites ``"z"`` (``[B, D]``) and ``"x"`` (observed), both in the data plate;
    ``model(x, num_data=N)`` scales a minibatch by N / B. With a relaxation the site ``"z"``
    holds logits y (see the module docstring) and the decoder reads sigmoid(y) (``"concrete"``)
    or the straight-through threshold of y (``"straight_through"``). Pair it with
    :class:`~pyro_vi.guides.bernoulli.BernoulliGuide` of the same relaxation (discrete guide for
    ``"none"``, a ``temperature`` for the others).

    Arguments:
        decoder: Maps codes ``[..., D]`` (binary, or in (0, 1) for ``"concrete"``) to likelihood
            parameters.
        latent_dim: D.
        likelihood: A :class:`~pyro_vi.models.likelihoods.Likelihood` or one of
            :data:`~pyro_vi.models.likelihoods.LIKELIHOODS`.
        data_shape: Shape of one datapoint; needed to build a likelihood by name.
        relaxation: One of :data:`RELAXATIONS`.
        temperature: lambda_p, the relaxed prior's temperature (default
            :data:`DEFAULT_TEMPERATURE`); only with a relaxation. Use the guide's temperature
            unless you mean otherwise: with equal temperatures the relaxed log-weights tend to
            the straight-through ones as the temperature goes to 0.
        prior: The :class:`BernoulliPrior` to use (shared by :meth:`discrete`); a fresh one
            when ``None``.

    References:
        Neal (1992); Mnih & Rezende (ICML 2016); Maddison, Mnih & Teh (ICLR 2017); Jang, Gu &
        Poole (ICLR 2017).

    Example:
        >>> shape = (1, 28, 28)
        >>> model = SigmoidBeliefNet(MLPDecoder(200, [200], shape), 200, data_shape=shape)
        >>> guide = BernoulliGuide(MLPEncoder(shape, [200]), 200)
        >>> SVI(model, guide, Adam({"lr": 3e-4}), loss=get("vimco", num_particles=5)).step(x)
    """

    def __init__(
        self,
        decoder: nn.Module,
        latent_dim: int,
        likelihood: Likelihood | str = "bernoulli",
        data_shape: tuple[int, ...] | None = None,
        *,
        relaxation: str = "none",
        temperature: float | None = None,
        prior: BernoulliPrior | None = None,
    ) -> None:
        latent_dim = check_int("latent_dim", latent_dim, minimum=1)
        if prior is None:
            prior = BernoulliPrior(latent_dim)
        if not isinstance(prior, BernoulliPrior):
            raise TypeError(f"prior must be a BernoulliPrior or None, got {describe(prior)}")
        super().__init__(decoder, likelihood, data_shape, prior, latent_dim)
        self.latent_dim = latent_dim
        self.relaxation = check_choice("relaxation", relaxation, RELAXATIONS)
        self.temperature = _resolve_temperature(relaxation, temperature)
        # The discrete view, built at the first call of discrete(); kept out of the module tree
        # so that it is neither a submodule nor in the state dict (it shares every parameter).
        self.__dict__["_discrete"] = None

    def code(self, z: torch.Tensor) -> torch.Tensor:
        """What the decoder reads for the site's value ``z``: z itself, sigmoid(z), or the
        straight-through threshold of z."""
        if self.relaxation == "concrete":
            return torch.sigmoid(z)
        if self.relaxation == "straight_through":
            return straight_through_threshold(z)
        return z

    def prior_distribution(self, like: torch.Tensor) -> dist.TorchDistribution:
        """p(z) (``"none"``) or the relaxed prior over logits, batch ``()``, event ``[D]``."""
        if self.relaxation == "none":
            return self.prior(like)
        return self.prior.relaxed(like, self.temperature)

    def discrete(self) -> SigmoidBeliefNet:
        """The discrete model with this model's parameters (itself when it is discrete)."""
        if self.relaxation == "none":
            return self
        if self._discrete is None:
            view = SigmoidBeliefNet(
                self.decoder, self.latent_dim, self.likelihood, prior=self.prior
            )
            view.train(self.training)
            self.__dict__["_discrete"] = view
        return self._discrete

    def forward(self, x: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        self.check_data(x)
        event_dim = x.dim() - 1
        prior = self.prior_distribution(self.latent_like(x))
        with data_plate(x, num_data):
            z = pyro.sample("z", prior)
            self.observe(x, self.code(z), event_dim)
        return z

    def extra_repr(self) -> str:
        extra = f"latent_dim={self.latent_dim}, relaxation={self.relaxation!r}"
        if self.temperature is not None:
            extra += f", temperature={self.temperature:g}"
        return extra


def relaxed_temperatures(
    relaxation: str, temperature: float | None, prior_temperature: float | None
) -> tuple[float | None, float | None]:
    """The guide's and the prior's temperatures of a sigmoid belief net, defaults filled in.

    Arguments:
        relaxation: One of :data:`RELAXATIONS`.
        temperature: The relaxed guide's temperature, or ``None`` for the default.
        prior_temperature: The relaxed prior's, or ``None`` for ``temperature``.

    Returns:
        ``(None, None)`` for ``"none"``; otherwise ``(temperature, prior_temperature)`` with
        ``temperature`` defaulting to :data:`DEFAULT_TEMPERATURE`.

    Raises:
        ValueError: an unknown relaxation, or a temperature given with ``"none"``.

    Example:
        >>> relaxed_temperatures("concrete", 0.5, None)
        (0.5, 0.5)
    """
    check_choice("relaxation", relaxation, RELAXATIONS)
    if relaxation == "none":
        for name, value in (("temperature", temperature), ("prior_temperature", prior_temperature)):
            if value is not None:
                raise ValueError(
                    f"{name} is only used with a relaxation, got {name}={value!r} with "
                    f"relaxation='none'; allowed: {name}=None, or relaxation in "
                    f"{list(RELAXATIONS[1:])}"
                )
        return None, None
    temperature = DEFAULT_TEMPERATURE if temperature is None else temperature
    return temperature, temperature if prior_temperature is None else prior_temperature


def _resolve_temperature(relaxation: str, temperature: float | None) -> float | None:
    """The temperature a relaxation uses: ``None`` for ``"none"`` (refusing one that is given)."""
    if relaxation == "none":
        if temperature is not None:
            raise ValueError(
                f"temperature is only used with a relaxation, got temperature={temperature!r} "
                f"with relaxation='none'; allowed: temperature=None, or relaxation in "
                f"{list(RELAXATIONS[1:])}"
            )
        return None
    if temperature is None:
        return DEFAULT_TEMPERATURE
    return check_temperature("temperature", temperature)


def exact_log_marginal(model: SigmoidBeliefNet, x: torch.Tensor) -> torch.Tensor:
    """log p(x_i) of the discrete model by summing over all 2^D codes (tests, D <= 16).

    Arguments:
        model: A :class:`SigmoidBeliefNet` (its discrete view is used).
        x: ``[B, *data_shape]``.

    Returns:
        ``[B]``.
    """
    if not isinstance(model, SigmoidBeliefNet):
        raise TypeError(f"model must be a SigmoidBeliefNet, got {describe(model)}")
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {describe(x)}")
    model = model.discrete()
    latent_dim = model.latent_dim
    if latent_dim > 16:
        raise ValueError(f"exact_log_marginal sums 2^D codes; D must be <= 16, got {latent_dim}")
    codes = torch.tensor(
        [[(k >> d) & 1 for d in range(latent_dim)] for k in range(2**latent_dim)],
        dtype=x.dtype,
        device=x.device,
    )  # [2^D, D]
    log_prior = model.prior(x).log_prob(codes)  # [2^D]
    event_dim = x.dim() - 1
    likelihood = model.likelihood(model.decoder(codes.unsqueeze(1)), event_dim)  # batch [2^D, 1]
    log_joint = log_prior.unsqueeze(1) + likelihood.log_prob(x)  # [2^D, B]
    return torch.logsumexp(log_joint, dim=0)
