"""Posterior summaries: E_q[z | x_i] per datapoint, and the active units of Burda et al. (2016)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine

from pyro_vi._callables import eval_mode
from pyro_vi._checks import check_float, check_int, describe
from pyro_vi.estimators.core import (
    plate_nesting,
)
from pyro_vi.evaluation._common import (
    _batches,
    _check_data,
    _check_pair,
    _check_plate_name,
    _is_latent,
    _plate_names,
)
from pyro_vi.traces import PARTICLE_PLATE, find_data_plate, run_program

_MEAN_CHUNK = 100  # particles per pass of the Monte Carlo posterior mean


def active_units(
    model: Callable,
    guide: Callable,
    *args: Any,
    site: str = "z",
    threshold: float = 0.01,
    num_samples: int = 1000,
    batch_size: int | None = None,
    data_plate: str | None = None,
    **kwargs: Any,
) -> tuple[int, torch.Tensor]:
    """Count the latent dimensions that the guide actually uses.

    A unit u is active when its posterior mean varies over the data (Burda et al. 2016, Sec. 5.2):

        A_u = Cov_x( E_{q(z | x)}[z_u] ) > threshold   (0.01 in the paper),

    the variance over the datapoints of the posterior mean of z_u. Inactive units have the same
    posterior (usually the prior) for every x, so the decoder cannot read anything from them.

    The posterior mean is exact when the guide's distribution at ``site`` has a closed-form
    ``.mean`` (Gaussians, ...). Otherwise (flows, mixtures without one) it is a Monte Carlo mean
    of ``num_samples`` guide draws, whose noise adds about Var_q(z_u) / num_samples to A_u: keep
    that well below ``threshold`` (with the default 1000 draws, a unit at the prior's variance 1
    gains 0.001, a tenth of the paper's threshold).

    Arguments:
        model, guide: Pyro callables taking ``*args, **kwargs``; the model is traced once per
            batch to find the data plate and to check that ``site`` is one of its latents.
        *args: The data, datapoints along the first dimension of each tensor.
        site: Name of the latent sample site.
        threshold: Variance above which a unit counts as active (>= 0).
        num_samples: Guide draws per datapoint for the Monte Carlo mean (used only when the
            distribution has no ``.mean``).
        batch_size: Datapoints per guide pass; ``None`` for all at once.
        data_plate: Name of the plate holding the datapoints; detected when ``None``.
        **kwargs: Passed to model and guide.

    Returns:
        ``(count, variances)``: the number of active units and A_u for every unit, shaped like
        one datapoint's latent (e.g. ``[D]``); the variance is over the N datapoints (divided by
        N).

    References:
        Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders" (ICLR 2016), Sec. 5.2.

    Example:
        >>> count, variances = active_units(model, guide, test_images)
        >>> print(f"{count} of {variances.numel()} units active")
    """
    threshold = check_float("threshold", threshold, minimum=0.0)
    means = posterior_mean(
        model,
        guide,
        *args,
        site=site,
        num_samples=num_samples,
        batch_size=batch_size,
        data_plate=data_plate,
        **kwargs,
    )
    # reshape, not flatten(1): a scalar latent per datapoint has means of shape [N].
    variances = means.reshape(len(means), -1).var(dim=0, correction=0).reshape(means.shape[1:])
    return int((variances > threshold).sum()), variances


def posterior_mean(
    model: Callable,
    guide: Callable,
    *args: Any,
    site: str = "z",
    num_samples: int = 1000,
    batch_size: int | None = None,
    data_plate: str | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    """E_q[z | x_i] of a latent site for every datapoint: the encoder's summary of each x_i.

    Exact when the guide's distribution has a closed-form ``.mean``, otherwise the mean of
    ``num_samples`` guide draws (see :func:`active_units`). Networks in eval mode, no gradients.

    Arguments:
        model, guide, *args, site, num_samples, batch_size, data_plate, **kwargs: As in
            :func:`active_units`.

    Returns:
        ``[N, *unit_shape]``: one posterior mean per datapoint.

    Example:
        >>> codes = posterior_mean(model, guide, test_images)  # [N, D], e.g. for a 2-D scatter
    """
    _check_pair(model, guide)
    if not isinstance(site, str):
        raise TypeError(f"site must be the name of a latent sample site, got {describe(site)}")
    num_samples = check_int("num_samples", num_samples, minimum=1)
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, minimum=1)
    _check_plate_name(data_plate)
    _check_data(args, "posterior_mean")
    means = []
    with torch.no_grad(), eval_mode(model, guide):
        for batch, _ in _batches(args, batch_size, kwargs):
            means.append(
                _posterior_mean(model, guide, batch, kwargs, site, num_samples, data_plate)
            )
    unit_shape = means[0].shape[1:]
    if any(m.shape[1:] != unit_shape for m in means):
        raise ValueError(
            f"site {site!r} has different shapes per datapoint in different batches: "
            f"{sorted({tuple(m.shape[1:]) for m in means})}"
        )
    return torch.cat(means)


def _posterior_mean(
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
    site: str,
    num_samples: int,
    data_plate: str | None,
) -> torch.Tensor:
    """E_q[z | x_i] for the batch, the datapoints along the first dimension: ``[B, *unit]``."""
    traces = run_program(model, guide, args, kwargs)
    guide_trace, model_trace = traces.guide_trace, traces.model_trace
    plate = find_data_plate(model_trace, data_plate)
    node = _latent_site(guide_trace, model_trace, site)
    if plate is None or plate.name not in _plate_names(node):
        where = "no plate holds the datapoints" if plate is None else f"plate {plate.name!r}"
        raise ValueError(
            f"site {site!r} is not local to the data plate ({where}): active units are defined "
            "for a latent per datapoint"
        )
    fn, event_dim = node["fn"], node["fn"].event_dim
    try:
        mean = torch.broadcast_to(_closed_form_mean(fn), node["value"].shape)
    except NotImplementedError:
        mean = _monte_carlo_mean(model, guide, args, kwargs, site, num_samples)
    else:
        if _mean_undefined(fn):
            # torch's Categorical returns NaN for the mean of a category index: its variance
            # would be NaN and every unit silently inactive.
            raise ValueError(
                f"site {site!r} has a {type(_base(fn)).__name__} distribution, whose mean (of "
                "a category index) is undefined; posterior means and active units need a latent "
                "with a mean, e.g. a one-hot code (OneHotCategorical)"
            )
    # The data plate's dim counts from the right of the batch shape, left of the event dims.
    data_axis = mean.dim() - event_dim + plate.dim
    return mean.movedim(data_axis, 0)


def _base(fn: Any) -> Any:
    """The distribution inside ``Independent``/``Expanded``/``Masked`` wrappers."""
    while isinstance(fn, dist.Independent | dist.ExpandedDistribution | dist.MaskedDistribution):
        fn = fn.base_dist
    return fn


def _mean_undefined(fn: Any) -> bool:
    return isinstance(_base(fn), torch.distributions.Categorical) and not isinstance(
        _base(fn), torch.distributions.OneHotCategorical
    )


def _reshapes_only(transform: Any) -> bool:
    """Whether ``transform`` only reshapes (or is the identity): it then commutes with the mean."""
    transforms = dist.transforms
    if isinstance(transform, transforms.ComposeTransform):
        return all(_reshapes_only(part) for part in transform.parts)
    if isinstance(transform, transforms.IndependentTransform):
        return _reshapes_only(transform.base_transform)
    return isinstance(transform, transforms.ReshapeTransform | type(transforms.identity_transform))


def _closed_form_mean(fn: Any) -> torch.Tensor:
    """``fn.mean``, also for a distribution reshaped by the autoguide's reals-to-site transform
    (whose ``.mean`` torch leaves unimplemented); ``NotImplementedError`` when there is none."""
    if isinstance(fn, dist.TransformedDistribution) and all(
        _reshapes_only(t) for t in fn.transforms
    ):
        value = _closed_form_mean(fn.base_dist)
        for transform in fn.transforms:
            value = transform(value)
        return value
    return fn.mean


def _latent_site(guide_trace: poutine.Trace, model_trace: poutine.Trace, site: str) -> dict:
    guide_latents = sorted(n for n, s in guide_trace.nodes.items() if _is_latent(s))
    if site not in guide_latents:
        raise ValueError(
            f"site={site!r} is not a latent site of the guide; its latent sites are {guide_latents}"
        )
    model_site = model_trace.nodes.get(site)
    if model_site is None or not _is_latent(model_site):
        raise ValueError(f"site={site!r} is sampled by the guide but is not a latent of the model")
    return guide_trace.nodes[site]


def _monte_carlo_mean(
    model: Callable, guide: Callable, args: tuple, kwargs: dict, site: str, num_samples: int
) -> torch.Tensor:
    """Mean of ``num_samples`` vectorized guide draws, in chunks, without the particle dim."""
    nesting = plate_nesting(model, guide, args, kwargs)
    total = None
    for start in range(0, num_samples, _MEAN_CHUNK):
        count = min(_MEAN_CHUNK, num_samples - start)
        with pyro.plate(PARTICLE_PLATE, count, dim=-nesting - 1):
            trace = poutine.trace(guide).get_trace(*args, **kwargs)
        node = trace.nodes[site]
        value = node["value"]
        particle_axis = value.dim() - node["fn"].event_dim - nesting - 1
        summed = value.sum(particle_axis)
        total = summed if total is None else total + summed
    return total / num_samples
