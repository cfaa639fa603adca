"""Mean, variance and signal-to-noise ratio of an estimator's gradient (Rainforth et al. 2018)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyro
import torch
from pyro import poutine

from pyro_vi._checks import check_int, describe
from pyro_vi.estimators.core import (
    compute_log_weights,
)
from pyro_vi.estimators.groups import parameter_groups
from pyro_vi.evaluation._common import (
    _check_pair,
)


@dataclass(frozen=True)
class GradientStats:
    """Statistics of repeated independent draws of a gradient, per parameter entry.

    For each scalar entry j of a group of parameters, over R draws g_j^(1..R):

    - ``mean[j]`` = (1/R) sum_r g_j^(r), an estimate of E[g_j];
    - ``variance[j]`` = (1/(R-1)) sum_r (g_j^(r) - mean[j])^2, of Var[g_j];
    - ``snr[j]`` = |mean[j]| / sqrt(variance[j]) (Rainforth et al. 2018).

    Attributes:
        mean: ``[P]`` float64, the P entries of the group's parameters flattened in order.
        variance: ``[P]`` float64.
        num_draws: R.
    """

    mean: torch.Tensor
    variance: torch.Tensor
    num_draws: int

    @property
    def snr(self) -> torch.Tensor:
        """|E g| / std(g) per entry: ``inf`` where the gradient is the same nonzero value on every
        draw, ``nan`` where it is zero on every draw."""
        return self.mean.abs() / self.variance.sqrt()

    @property
    def constant(self) -> torch.Tensor:
        """Entries whose gradient was identical on every draw (variance exactly 0)."""
        return self.variance == 0

    @property
    def mean_snr(self) -> float:
        """The SNR averaged over the entries whose gradient varies; ``nan`` when none does.

        Constant entries are left out: their SNR is infinite or undefined, and they are usually
        parameters the estimator does not touch (or, at an exact posterior, exact zeros)."""
        varies = ~self.constant
        return float(self.snr[varies].mean()) if bool(varies.any()) else math.nan

    @property
    def mean_variance(self) -> float:
        """The variance averaged over all entries."""
        return float(self.variance.mean())

    @property
    def mean_abs_mean(self) -> float:
        """|E g| averaged over all entries."""
        return float(self.mean.abs().mean())

    def to_dict(self) -> dict[str, float | int]:
        """The summaries as plain numbers, JSON-ready."""
        return {
            "mean_snr": self.mean_snr,
            "mean_variance": self.mean_variance,
            "mean_abs_mean": self.mean_abs_mean,
            "num_entries": int(self.mean.numel()),
            "constant_entries": int(self.constant.sum()),
            "num_draws": self.num_draws,
        }


def gradient_snr(
    estimator: Any,
    model: Callable,
    guide: Callable,
    *args: Any,
    params: Mapping[str, torch.Tensor | Sequence[torch.Tensor]]
    | Sequence[torch.Tensor]
    | None = None,
    num_draws: int = 100,
    seed: int | None = None,
    **kwargs: Any,
) -> dict[str, GradientStats]:
    """Mean, variance and signal-to-noise ratio of an estimator's gradient, over repeated draws.

    Draws g^(1..R), R = ``num_draws`` independent gradients of
    ``estimator.differentiable_loss(model, guide, *args, **kwargs)`` (minus the bound, so the
    gradient the optimizer follows) with respect to each group of parameters, and summarizes
    them per entry as in :class:`GradientStats`. Rainforth et al. define the SNR of parameter j
    as |E[g_j]| / sigma(g_j), and show that for IWAE_K the guide's SNR falls like 1/sqrt(K)
    while the model's grows like sqrt(K); DReG removes the guide's fall (Tucker et al. 2018).

    Arguments:
        estimator: Any Pyro ELBO with ``differentiable_loss`` (every estimator of this package).
        model, guide: Pyro callables taking ``*args, **kwargs``.
        *args: Held fixed over the draws: only the estimator's own sampling varies.
        params: The parameters, as leaf tensors (a module's parameters, or ``pyro.param``
            values, whose unconstrained tensors are used). A mapping names groups (one tensor or
            a sequence each); a sequence is one group ``"params"``. By default two groups from
            a trace of model and guide: ``"model"``, every parameter the model uses (including
            any it shares with the guide), and ``"guide"``, those only the guide uses; a group
            without parameters is left out.
        num_draws: R >= 2.
        seed: Seeds Pyro, torch and NumPy's global generators first (as ``pyro.set_rng_seed``)
            so that the draws are reproducible; ``None`` leaves them as they are.
        **kwargs: Passed to model and guide (e.g. ``num_data``).

    Returns:
        A dict from group name to :class:`GradientStats`.

    References:
        Rainforth, Kosiorek, Le, Maddison, Igl, Wood & Teh, "Tighter Variational Bounds are Not
        Necessarily Better" (ICML 2018); Tucker, Lawson, Gu & Maddison, "Doubly Reparameterized
        Gradient Estimators for Monte Carlo Objectives" (ICLR 2019).

    Example:
        >>> stats = gradient_snr(get("iwae", num_particles=10), model, guide, x, seed=0)
        >>> stats["guide"].mean_snr, stats["model"].mean_variance
    """
    if not callable(getattr(estimator, "differentiable_loss", None)):
        raise TypeError(
            "estimator must be a Pyro ELBO with a differentiable_loss method (e.g. "
            f"pyro_vi.estimators.get('iwae')), got {describe(estimator)}"
        )
    _check_pair(model, guide)
    num_draws = check_int("num_draws", num_draws, minimum=2)
    if seed is not None:
        seed = check_int("seed", seed, minimum=0)
    groups = (
        _default_groups(model, guide, args, kwargs) if params is None else _check_params(params)
    )
    if seed is not None:
        pyro.set_rng_seed(seed)

    flat = [tensor for tensors in groups.values() for tensor in tensors]
    sizes = [len(tensors) for tensors in groups.values()]
    accumulators = {name: _Welford() for name in groups}
    for _ in range(num_draws):
        loss = estimator.differentiable_loss(model, guide, *args, **kwargs)
        if not (isinstance(loss, torch.Tensor) and loss.requires_grad):
            raise ValueError(
                "the estimator's differentiable_loss carries no gradient: none of the given "
                "parameters affects it; check params and that model and guide use them"
            )
        grads = torch.autograd.grad(loss, flat, allow_unused=True)
        if all(g is None for g in grads):
            raise ValueError(
                "none of the given parameters affects the estimator's differentiable_loss; "
                "check params and that model and guide use them"
            )
        start = 0
        for (name, tensors), size in zip(groups.items(), sizes, strict=True):
            chunk = grads[start : start + size]
            start += size
            vector = torch.cat(
                [
                    (torch.zeros_like(t) if g is None else g).detach().reshape(-1)
                    for t, g in zip(tensors, chunk, strict=True)
                ]
            )
            accumulators[name].add(vector.to(torch.float64))
    return {
        name: GradientStats(acc.mean, acc.variance, num_draws) for name, acc in accumulators.items()
    }


class _Welford:
    """Running mean and unbiased variance (Welford's update: no cancellation, and exactly 0
    for a constant sequence, which the exact-posterior checks rely on)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: torch.Tensor | None = None
        self._squares: torch.Tensor | None = None

    def add(self, value: torch.Tensor) -> None:
        self.count += 1
        if self.mean is None:
            self.mean, self._squares = value.clone(), torch.zeros_like(value)
            return
        delta = value - self.mean
        self.mean = self.mean + delta / self.count
        self._squares = self._squares + delta * (value - self.mean)

    @property
    def variance(self) -> torch.Tensor:
        return self._squares / (self.count - 1)


def _default_groups(
    model: Callable, guide: Callable, args: tuple, kwargs: dict
) -> dict[str, list[torch.Tensor]]:
    with poutine.block():
        weights = compute_log_weights(model, guide, args, kwargs, num_particles=1)
        surrogate = weights.log_w.sum()
    model_params, guide_params = parameter_groups(weights, [surrogate])
    groups = {"model": model_params, "guide": guide_params}
    groups = {name: tensors for name, tensors in groups.items() if tensors}
    if not groups:
        raise ValueError(
            "model and guide use no parameters that require gradients (no pyro.param or "
            "PyroModule parameter was found in their traces); pass params=..."
        )
    return groups


def _check_params(
    params: Mapping[str, torch.Tensor | Sequence[torch.Tensor]] | Sequence[torch.Tensor],
) -> dict[str, list[torch.Tensor]]:
    if isinstance(params, torch.Tensor):
        params = [params]
    if isinstance(params, Mapping):
        named = dict(params.items())
    elif isinstance(params, Sequence) and not isinstance(params, str):
        named = {"params": params}
    else:
        raise TypeError(
            "params must be a dict of group name -> tensor(s), a sequence of tensors, or None, "
            f"got {describe(params)}"
        )
    if not named:
        raise ValueError("params must name at least one parameter, got an empty collection")
    groups = {}
    for name, tensors in named.items():
        if not isinstance(name, str):
            raise TypeError(f"params keys must be group names (str), got {describe(name)}")
        if isinstance(tensors, torch.Tensor):
            tensors = [tensors]
        if not isinstance(tensors, Sequence) or not tensors:
            raise ValueError(
                f"params[{name!r}] must be a tensor or a non-empty sequence of tensors, got "
                f"{describe(tensors)}"
            )
        groups[name] = [_leaf(f"params[{name!r}][{i}]", t) for i, t in enumerate(tensors)]
    return groups


def _leaf(label: str, tensor: Any) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{label} must be a torch.Tensor, got {describe(tensor)}")
    # A constrained pyro.param value is recomputed on every call; its unconstrained leaf is the
    # tensor the optimizer updates and the one gradients can be taken with respect to.
    unconstrained = getattr(tensor, "unconstrained", None)
    if callable(unconstrained) and unconstrained() is not None:
        tensor = unconstrained()
    if not (tensor.requires_grad and tensor.is_leaf):
        raise ValueError(
            f"{label} must be a leaf tensor that requires grad (a module parameter or a "
            f"pyro.param value), got a tensor with requires_grad={tensor.requires_grad}, "
            f"is_leaf={tensor.is_leaf}"
        )
    return tensor
