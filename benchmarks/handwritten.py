"""Hand-written fused PyTorch references of the estimators, for the speed benchmark.

Each class here computes one estimator of :mod:`pyro_vi.estimators` for the VAE of
:func:`pyro_vi.architectures.iwae_mlp_vae` (any :class:`~pyro_vi.models.vae.VAE` with a Bernoulli
likelihood and an :class:`~pyro_vi.guides.gaussian.AmortizedDiagonalNormal` guide) in plain torch,
with no Pyro at all: encoder -> K reparameterized particles ``[K, B, D]`` -> decoder ->
log-weights ``[K, B]`` -> the estimator's reduction -> gradients. This is the speed limit the
library is measured against, so it is written the way a careful user would write it by hand:

- it reuses the modules of the library's model and guide (``guide.encoder``, ``guide.loc_head``,
  ``guide.scale_head``, ``model.decoder``), so both compute with identical parameters;
- it draws the noise as ``torch.Normal.rsample`` does (one standard normal tensor ``[K, B, D]``,
  ``z = loc + eps * scale``), so with the same seed it sees the same particles as the library;
- log q(z | x) is computed from ``eps`` directly (``-eps^2 / 2 - log sigma - log(2 pi) / 2``),
  which has the same value and the same gradient as ``Normal(loc, scale).log_prob(z)``, and
  log p(x | z) with the fused ``binary_cross_entropy_with_logits`` kernel;
- the bound is reduced per datapoint and summed over the batch, with no minibatch scale.

Gradient estimators that give different objectives to different parameter groups (STL, DReG,
PIWAE) are computed as the library computes them: one ``torch.autograd.grad`` call for the
model's parameters and one for the guide's. For STL and DReG a single backward pass can deliver
the same gradient (STL: the model's parameters do not see log q; DReG: a hook on z rescales the
gradient reaching the encoder by the normalized weights); :class:`STLOneBackward` and
:class:`DReGOneBackward` do that, and the benchmark reports them beside the two-pass versions.

``loss_and_grads(x)`` returns minus the bound (a float) and *accumulates* minus the estimator's
gradient into ``.grad`` of :meth:`Fused.parameters`, like ``pyro.infer.ELBO.loss_and_grads``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.nn.functional import binary_cross_entropy_with_logits, softplus

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def iwae_bound(log_w: torch.Tensor) -> torch.Tensor:
    """log (1/K) sum_k exp(log_w[k]), per column."""
    return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])


def miwae_bound(log_w: torch.Tensor, num_outer: int) -> torch.Tensor:
    """Mean of ``num_outer`` IWAE bounds over consecutive groups of particles."""
    grouped = log_w.reshape(num_outer, -1, log_w.shape[-1])
    return (torch.logsumexp(grouped, dim=1) - math.log(grouped.shape[1])).mean(0)


class Fused:
    """Base class: the fused forward pass; a subclass implements ``reduce(log_w) -> [B]``.

    Arguments:
        model: A :class:`~pyro_vi.models.vae.VAE` with a Bernoulli likelihood; its ``decoder`` is
            used directly.
        guide: An :class:`~pyro_vi.guides.AmortizedGuide` with the diagonal family, called once
            (its ``encoder`` and its family's ``loc_head``, ``scale_head`` and ``min_scale`` are
            used directly), or the older ``AmortizedDiagonalNormal``.
        num_particles: K.
    """

    def __init__(self, model: Any, guide: Any, num_particles: int = 1) -> None:
        heads = guide
        if hasattr(guide, "families"):  # an AmortizedGuide: its diagonal family holds the heads
            if "z" not in guide.families:
                raise ValueError("call the AmortizedGuide once first: its family is built lazily")
            heads = guide.families["z"]
        self.encoder = guide.encoder
        self.loc_head = heads.loc_head
        self.scale_head = heads.scale_head
        self.min_scale = float(heads.min_scale)
        self.decoder = model.decoder
        self.num_particles = int(num_particles)
        self.model_params = list(self.decoder.parameters())
        self.guide_params = [
            p for m in (self.encoder, self.loc_head, self.scale_head) for p in m.parameters()
        ]

    def parameters(self) -> list[torch.Tensor]:
        """Every trainable tensor: the decoder's, then the encoder's and its heads'."""
        return self.model_params + self.guide_params

    # -- the fused pass --------------------------------------------------------------------------

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loc, scale) of q(z | x), each ``[B, D]``."""
        features = self.encoder(x)
        loc = self.loc_head(features)
        return loc, self.min_scale + softplus(self.scale_head(features))

    def sample(self, loc: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(eps, z) with z = loc + eps * scale, ``[K, B, D]``, drawn as ``Normal.rsample`` does."""
        eps = torch.randn((self.num_particles, *loc.shape), dtype=loc.dtype, device=loc.device)
        return eps, loc + eps * scale

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x, z) = log p(x | z) + log p(z), ``[K, B]``."""
        logits = self.decoder(z).flatten(2)
        target = x.flatten(1).expand_as(logits)
        log_px = -binary_cross_entropy_with_logits(logits, target, reduction="none").sum(-1)
        return log_px + log_prior(z)

    def log_weights(self, x: torch.Tensor) -> torch.Tensor:
        """log w = log p(x, z) - log q(z | x), ``[K, B]``, differentiable in every parameter."""
        loc, scale = self.posterior(x)
        eps, z = self.sample(loc, scale)
        return self.log_joint(x, z) - log_q_from_noise(eps, scale)

    # -- what subclasses implement -----------------------------------------------------------

    def reduce(self, log_w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # -- the estimator ------------------------------------------------------------------------

    def bound(self, x: torch.Tensor) -> torch.Tensor:
        """The bound summed over the batch (no gradient)."""
        with torch.no_grad():
            return self.reduce(self.log_weights(x)).sum()

    def loss_and_grads(self, x: torch.Tensor) -> float:
        """Minus the bound; accumulates minus its gradient into ``.grad``."""
        bound = self.reduce(self.log_weights(x)).sum()
        (-bound).backward()
        return -float(bound.detach())


def log_prior(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over the last dimension."""
    return -0.5 * z.square().sum(-1) - z.shape[-1] * HALF_LOG_2PI


def log_q_from_noise(eps: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """log N(loc + eps * scale; loc, scale), from the noise: no division, same gradient."""
    return -0.5 * eps.square().sum(-1) - scale.log().sum(-1) - eps.shape[-1] * HALF_LOG_2PI


def log_q_at(z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """log N(z; loc, scale) summed over the last dimension, for a given z."""
    standardized = (z - loc) / scale
    return -0.5 * standardized.square().sum(-1) - scale.log().sum(-1) - z.shape[-1] * HALF_LOG_2PI


def _set_grads(params: list[torch.Tensor], grads: tuple, sign: float = -1.0) -> None:
    for param, grad in zip(params, grads, strict=True):
        if grad is None:
            continue
        param.grad = sign * grad if param.grad is None else param.grad + sign * grad


# -- single-bound estimators -------------------------------------------------------------------


class ELBO(Fused):
    """``"elbo"``: mean_k log w_k."""

    def reduce(self, log_w: torch.Tensor) -> torch.Tensor:
        return log_w.mean(0)


class MeanFieldELBO(Fused):
    """``"meanfield"``: mean_k log p(x | z_k) - KL(q(z | x) || N(0, I)), the KL in closed form
    (log w_k here is log p(x | z_k) - KL, as the library arranges it)."""

    def log_weights(self, x: torch.Tensor) -> torch.Tensor:
        loc, scale = self.posterior(x)
        _, z = self.sample(loc, scale)
        logits = self.decoder(z).flatten(2)
        target = x.flatten(1).expand_as(logits)
        log_px = -binary_cross_entropy_with_logits(logits, target, reduction="none").sum(-1)
        kl = 0.5 * (loc.square() + scale.square() - 1).sum(-1) - scale.log().sum(-1)
        return log_px - kl

    def reduce(self, log_w: torch.Tensor) -> torch.Tensor:
        return log_w.mean(0)


class ScoreFunction(Fused):
    """``"score"``: the ELBO with REINFORCE gradients, z detached: the surrogate
    mean_k [log w_k + (log q_k - stop(log q_k)) (stop(log w_k) - b_k)] with the leave-one-out
    baseline b_k (K > 1) or a running mean of past log-weights, decayed by ``baseline_decay``
    (K = 1), as :class:`pyro_vi.estimators.ScoreFunctionELBO`."""

    def __init__(
        self, model: Any, guide: Any, num_particles: int = 1, baseline_decay: float = 0.9
    ) -> None:
        super().__init__(model, guide, num_particles)
        self.baseline_decay = baseline_decay
        self._running: float | None = None

    def _terms(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, scale = self.posterior(x)
        with torch.no_grad():
            _, z = self.sample(loc, scale)
        log_q = log_q_at(z, loc, scale)
        return self.log_joint(x, z) - log_q, log_q

    def log_weights(self, x: torch.Tensor) -> torch.Tensor:
        return self._terms(x)[0]

    def reduce(self, log_w: torch.Tensor) -> torch.Tensor:
        return log_w.mean(0)

    def _baseline(self, signal: torch.Tensor) -> torch.Tensor | float:
        count = signal.shape[0]
        if count > 1:
            return (signal.sum(0, keepdim=True) - signal) / (count - 1)
        baseline = 0.0 if self._running is None else self._running
        current = float(signal.mean())
        decay = self.baseline_decay
        self._running = (
            current if self._running is None else decay * self._running + (1 - decay) * current
        )
        return baseline

    def loss_and_grads(self, x: torch.Tensor) -> float:
        log_w, log_q = self._terms(x)
        signal = log_w.detach()
        score = (log_q - log_q.detach()) * (signal - self._baseline(signal))
        bound = log_w.mean(0).sum()
        (-(bound + score.mean(0).sum())).backward()
        return -float(bound.detach())


# -- multi-sample bounds -----------------------------------------------------------------------


class VIMCO(ScoreFunction):
    """``"vimco"``: IWAE with REINFORCE gradients, z detached: the surrogate
    IWAE(log w) + sum_k (log q_k - stop(log q_k)) (IWAE(log w) - IWAE(log w with log w_k replaced
    by the mean of the others)), as :class:`pyro_vi.estimators.VIMCO`."""

    def __init__(self, model: Any, guide: Any, num_particles: int = 5) -> None:
        super().__init__(model, guide, num_particles)

    def reduce(self, log_w: torch.Tensor) -> torch.Tensor:
        return iwae_bound(log_w)

    def loss_and_grads(self, x: torch.Tensor) -> float:
        log_w, log_q = self._terms(x)
        signal = log_w.detach()
        count = signal.shape[0]
        others = (signal.sum(0, keepdim=True) - signal) / (count - 1)
        left_out = torch.stack(
            [
                iwae_bound(torch.cat([signal[:k], others[k : k + 1], signal[k + 1 :]]))
                for k in range(count)
            ]
        )
        score = (log_q - log_q.detach()) * (iwae_bound(signal) - left_out)
        bound = iwae_bound(log_w).sum()
        (-(bound + score.sum())).backward()
        return -float(bound.detach())


class Renyi(Fused):
    """``"renyi"``: 1/(1 - alpha) log mean_k w_k^(1 - alpha)."""

    def __init__(self, model: Any, guide: Any, num_particles: int = 2, alpha: float = 0.0):
        super().__init__(model, guide, num_particles)
        self.alpha = float(alpha)

    def reduce(self, log_w: torch.Tensor) -> torch.Tensor:
        exponent = 1.0 - self.alpha
        return iwae_bound(exponent * log_w) / exponent


class IWAE(Fused):
    """``"iwae"``: log mean_k w_k."""

    def reduce(self, log_w: torch.Tensor) -> torch.Tensor:
        return iwae_bound(log_w)


class VRMax(Fused):
    """``"vrmax"``: max_k log w_k."""

    def reduce(self, log_w: torch.Tensor) -> torch.Tensor:
        return log_w.max(dim=0).values


class MIWAE(Fused):
    """``"miwae"``: the mean of ``num_outer`` IWAE bounds of ``num_inner`` particles each."""

    def __init__(self, model: Any, guide: Any, num_outer: int = 1, num_inner: int = 2) -> None:
        super().__init__(model, guide, num_outer * num_inner)
        self.num_outer = int(num_outer)

    def reduce(self, log_w: torch.Tensor) -> torch.Tensor:
        return miwae_bound(log_w, self.num_outer)


class CIWAE(Fused):
    """``"ciwae"``: beta * ELBO + (1 - beta) * IWAE on the same particles."""

    def __init__(self, model: Any, guide: Any, num_particles: int = 2, beta: float = 0.5):
        super().__init__(model, guide, num_particles)
        self.beta = float(beta)

    def reduce(self, log_w: torch.Tensor) -> torch.Tensor:
        return self.beta * log_w.mean(0) + (1.0 - self.beta) * iwae_bound(log_w)


# -- estimators with separate gradients for model and guide ------------------------------------


class _TwoGroups(Fused):
    """Model parameters follow ``reduce(log_w)``; guide parameters ``guide_objective``: two
    ``torch.autograd.grad`` calls over one forward pass, as the library does."""

    def guide_objective(
        self,
        log_joint: torch.Tensor,
        log_w: torch.Tensor,
        z: torch.Tensor,
        loc: torch.Tensor,
        scale: torch.Tensor,
    ) -> torch.Tensor:
        """The objective whose gradient the guide's parameters follow (a scalar)."""
        raise NotImplementedError

    def loss_and_grads(self, x: torch.Tensor) -> float:
        loc, scale = self.posterior(x)
        eps, z = self.sample(loc, scale)
        log_joint = self.log_joint(x, z)
        log_w = log_joint - log_q_from_noise(eps, scale)
        bound = self.reduce(log_w).sum()
        model_grads = torch.autograd.grad(bound, self.model_params, retain_graph=True)
        guide_objective = self.guide_objective(log_joint, log_w, z, loc, scale)
        guide_grads = torch.autograd.grad(guide_objective, self.guide_params)
        _set_grads(self.model_params, model_grads)
        _set_grads(self.guide_params, guide_grads)
        return -float(bound.detach())


def _path_log_w(
    log_joint: torch.Tensor, z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """log w with log q evaluated at stopped parameters: its gradient is the path derivative."""
    return log_joint - log_q_at(z, loc.detach(), scale.detach())


class STL(_TwoGroups):
    """``"stl"``: the ELBO; the guide follows the path derivative of mean_k log w_k."""

    def reduce(self, log_w: torch.Tensor) -> torch.Tensor:
        return log_w.mean(0)

    def guide_objective(self, log_joint, log_w, z, loc, scale) -> torch.Tensor:
        return _path_log_w(log_joint, z, loc, scale).mean(0).sum()


class DReG(_TwoGroups):
    """``"dreg"``: IWAE; the guide follows sum_k stop(w~_k^2) times the path derivative of
    log w_k (Tucker et al. 2018, eq. 5)."""

    def reduce(self, log_w: torch.Tensor) -> torch.Tensor:
        return iwae_bound(log_w)

    def guide_objective(self, log_joint, log_w, z, loc, scale) -> torch.Tensor:
        normalized = torch.softmax(log_w.detach(), dim=0)
        return (normalized.square() * _path_log_w(log_joint, z, loc, scale)).sum()


class PIWAE(_TwoGroups):
    """``"piwae"``: the model follows IWAE over all M*K particles, the guide MIWAE_{M,K}."""

    def __init__(self, model: Any, guide: Any, num_outer: int = 1, num_inner: int = 2) -> None:
        super().__init__(model, guide, num_outer * num_inner)
        self.num_outer = int(num_outer)

    def reduce(self, log_w: torch.Tensor) -> torch.Tensor:
        return iwae_bound(log_w)

    def guide_objective(self, log_joint, log_w, z, loc, scale) -> torch.Tensor:
        return miwae_bound(log_w, self.num_outer).sum()


class STLOneBackward(STL):
    """STL in one backward pass: mean_k [log p(x, z_k) - log q_stop(z_k)] gives the model's
    parameters the ELBO gradient (log q does not depend on them) and the guide's the path
    derivative."""

    def loss_and_grads(self, x: torch.Tensor) -> float:
        loc, scale = self.posterior(x)
        _, z = self.sample(loc, scale)
        path_log_w = _path_log_w(self.log_joint(x, z), z, loc, scale)
        bound = path_log_w.mean(0).sum()  # the value of log w is unchanged
        (-bound).backward()
        return -float(bound.detach())


class DReGOneBackward(DReG):
    """DReG in one backward pass: sum_k stop(w~_k) [log p(x, z_k) - log q_stop(z_k)] gives the
    model's parameters the IWAE gradient, and a hook on z multiplies the gradient reaching the
    encoder by another w~_k, which makes the guide's gradient sum_k w~_k^2 d log w_k / dz_k."""

    def loss_and_grads(self, x: torch.Tensor) -> float:
        loc, scale = self.posterior(x)
        _, z = self.sample(loc, scale)
        path_log_w = _path_log_w(self.log_joint(x, z), z, loc, scale)
        normalized = torch.softmax(path_log_w.detach(), dim=0)
        z.register_hook(lambda grad: grad * normalized.unsqueeze(-1))
        (-(normalized * path_log_w).sum()).backward()
        return -float(iwae_bound(path_log_w.detach()).sum())


#: Estimator name -> hand-written class.
HANDWRITTEN: dict[str, type[Fused]] = {
    "elbo": ELBO,
    "meanfield": MeanFieldELBO,
    "score": ScoreFunction,
    "renyi": Renyi,
    "iwae": IWAE,
    "vrmax": VRMax,
    "miwae": MIWAE,
    "ciwae": CIWAE,
    "piwae": PIWAE,
    "stl": STL,
    "dreg": DReG,
    "vimco": VIMCO,
}

#: Single-backward formulations of the same gradient, where one exists.
ONE_BACKWARD: dict[str, type[Fused]] = {"stl": STLOneBackward, "dreg": DReGOneBackward}


def make(name: str, model: Any, guide: Any, *, one_backward: bool = False, **options: Any) -> Fused:
    """The hand-written reference of estimator ``name`` with the library's options (e.g.
    ``num_particles=5``, ``alpha=0.5``, ``num_outer=5, num_inner=10``)."""
    table = ONE_BACKWARD if one_backward else HANDWRITTEN
    if name not in table:
        raise ValueError(f"no hand-written reference for {name!r}; there are {sorted(table)}")
    return table[name](model, guide, **options)
