"""Evaluation: log-likelihood, active units, gradient signal-to-noise, posterior means.

=====================================  ===========================================================
function                               what it measures
=====================================  ===========================================================
:func:`log_likelihood`                 log p(x_i) per datapoint, importance sampling with the guide
:func:`active_units`                   latent dimensions whose posterior mean varies over the data
:func:`gradient_snr`                   mean, variance and SNR of an estimator's gradient, per group
:func:`posterior_mean`                 E_q[z | x_i] per datapoint (codes for plots, interpolation)
:func:`reconstruction_log_likelihood`  E_q log p(x_i | z), the ELBO's first term (not a bound)
=====================================  ===========================================================

All of them take a Pyro ``model`` and ``guide`` and the arguments they are called with, like
``SVI.step``. Networks are put in eval mode while :func:`log_likelihood` and
:func:`active_units` run, and left as they were afterwards.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from tqdm.auto import tqdm

from pyro_vi._callables import eval_mode
from pyro_vi._checks import check_float, check_int, describe
from pyro_vi.estimators.core import (
    LogWeights,
    check_program,
    compute_log_weights,
    plate_nesting,
)
from pyro_vi.estimators.groups import parameter_groups
from pyro_vi.traces import PARTICLE_PLATE, find_data_plate, run_program

__all__ = [
    "GradientStats",
    "active_units",
    "gradient_snr",
    "log_likelihood",
    "posterior_mean",
    "reconstruction_log_likelihood",
]

# Particles per vectorized guide pass when active_units falls back to Monte Carlo: bounds memory
# at 100 * B * D numbers whatever num_samples is.
_MEAN_CHUNK = 100


# -- shared helpers ---------------------------------------------------------------------------


def _check_pair(model: Callable, guide: Callable) -> None:
    if not callable(model):
        raise TypeError(f"model must be a callable Pyro model, got {describe(model)}")
    if not callable(guide):
        raise TypeError(f"guide must be a callable Pyro guide, got {describe(guide)}")


def _check_plate_name(data_plate: str | None) -> None:
    if data_plate is not None and not isinstance(data_plate, str):
        raise TypeError(f"data_plate must be a plate name or None, got {describe(data_plate)}")


def _check_no_num_data(kwargs: dict, function: str) -> None:
    if "num_data" in kwargs:
        raise ValueError(
            f"{function} got num_data={kwargs['num_data']!r}; it evaluates each datapoint on its "
            "own, without the minibatch scale N/B, so leave num_data out"
        )


def _batches(args: tuple, batch_size: int | None) -> Iterator[tuple[tuple, int | None]]:
    """(args of one batch, its number of rows): every tensor argument with at least one
    dimension is cut along its first dimension; other arguments are passed whole."""
    rows = {a.shape[0] for a in args if isinstance(a, torch.Tensor) and a.dim() > 0}
    if len(rows) > 1:
        raise ValueError(
            f"the tensor arguments have different first dimensions {sorted(rows)}; batch_size "
            "cuts them all along the first dimension (the datapoints), so they must agree"
        )
    if batch_size is None or not rows:
        yield args, (rows.pop() if rows else None)
        return
    (count,) = rows
    for start in range(0, count, batch_size):
        stop = min(start + batch_size, count)
        batch = tuple(
            a[start:stop] if isinstance(a, torch.Tensor) and a.dim() > 0 else a for a in args
        )
        yield batch, stop - start


def _plate_names(site: dict) -> set[str]:
    return {frame.name for frame in site["cond_indep_stack"]}


def _is_latent(site: dict) -> bool:
    return site["type"] == "sample" and not site["is_observed"]


# -- log-likelihood ---------------------------------------------------------------------------


#: Particle-datapoint pairs per vectorized pass when ``batch_size="auto"``: large enough that the
#: networks run on big matrices, small enough for a few hundred MiB with an MNIST-size VAE.
ROWS_PER_PASS = 20_000

#: log_likelihood warns when its estimated time exceeds this many seconds.
LONG_EVALUATION_SECONDS = 120.0


def log_likelihood(
    model: Callable,
    guide: Callable,
    *args: Any,
    num_samples: int = 5000,
    chunk_size: int = 200,
    batch_size: int | str | None = "auto",
    data_plate: str | None = None,
    progress: bool = False,
    **kwargs: Any,
) -> torch.Tensor:
    """Importance-sampled estimate of the log-likelihood log p(x_i) of each datapoint.

    With S draws z_is ~ q(z | x_i) from the guide and weights w_is = p(x_i, z_is) / q(z_is | x_i),

        log p(x_i) ~= log (1/S) sum_s w_is,

    which is the IWAE bound with K = S: below log p(x_i) in expectation, increasing in S, and
    consistent as S -> infinity (exact for every S when q is the exact posterior). Burda et al.
    report it with S = 5000 on the test set.

    Memory is bounded: the S draws go through ``compute_log_weights`` in vectorized chunks of
    ``chunk_size`` particles, combined by a running logsumexp accumulated in float64, and the
    datapoints are split into batches along the first dimension of every tensor in ``args``
    (``"auto"``: :data:`ROWS_PER_PASS` particle-datapoint pairs per pass). Chunking and
    batching change which random numbers each (draw, datapoint) pair receives, so different
    settings agree in distribution, not draw for draw. Runs under ``torch.inference_mode()``
    with networks in eval mode and Pyro's validation on the first pass only; warns when the
    evaluation will take more than :data:`LONG_EVALUATION_SECONDS` (estimated from its first
    pass).

    Only models whose latents are all local to the data plate are accepted. With a global latent
    z, p(x_1..N) = int p(z) prod_i p(x_i | z) dz does not split into per-datapoint terms, so there
    is no per-datapoint answer to return, and evaluating batches separately would estimate a
    product of batch evidences, a different quantity; such models raise ``ValueError`` (the
    joint estimate is ``-get("iwae", num_particles=S).loss(model, guide, x)``).

    Arguments:
        model, guide: Pyro callables taking ``*args, **kwargs``. Do not pass ``num_data``:
            every datapoint is scored on its own, unscaled.
        *args: The data, datapoints along the first dimension of each tensor (at least one).
        num_samples: S, draws per datapoint.
        chunk_size: Particles per vectorized pass.
        batch_size: Datapoints per pass; ``"auto"`` (bounded memory), an integer, or ``None``
            for all of them at once.
        data_plate: Name of the plate holding the datapoints; detected when ``None``.
        progress: Show a progress bar with the time left.
        **kwargs: Passed to model and guide.

    Returns:
        The estimates, shape ``[N]`` (one per element of the data plate), float, on the data's
        device.

    Raises:
        ValueError: global latents, no plate over the datapoints, a subsampled or scaled data
            plate, ``num_data`` in ``kwargs``, or a bad argument.

    References:
        Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders" (ICLR 2016), Sec. 5.

    Example:
        >>> model, guide = mlp_vae((1, 28, 28))
        >>> nll = -log_likelihood(model, guide, test_images).mean()
    """
    _check_pair(model, guide)
    num_samples = check_int("num_samples", num_samples, minimum=1)
    chunk_size = min(check_int("chunk_size", chunk_size, minimum=1), num_samples)
    if batch_size == "auto":
        batch_size = max(1, ROWS_PER_PASS // chunk_size)
    elif batch_size is not None:
        batch_size = check_int("batch_size", batch_size, minimum=1)
    _check_plate_name(data_plate)
    _check_no_num_data(kwargs, "log_likelihood")

    count = _count_rows(args)
    batches = 1 if batch_size is None or count is None else math.ceil(count / batch_size)
    passes = batches * math.ceil(num_samples / chunk_size)
    bar = tqdm(total=passes, desc="log-likelihood", unit="pass", disable=not progress)
    results = []
    nesting, structure = None, None
    started = time.perf_counter()
    try:
        with torch.inference_mode(), eval_mode(model, guide):
            for batch, rows in _batches(args, batch_size):
                if nesting is None:
                    nesting = plate_nesting(model, guide, batch, kwargs)
                total = None
                for start in range(0, num_samples, chunk_size):
                    # Pyro's validation (argument and support checks) on the first pass only.
                    with pyro.validation_enabled(structure is None and _validating()):
                        weights = compute_log_weights(
                            model,
                            guide,
                            batch,
                            kwargs,
                            num_particles=min(chunk_size, num_samples - start),
                            plate_nesting=nesting,
                            data_plate=data_plate,
                            structure=structure,
                            validate=_validate if structure is None else None,
                        )
                    if structure is None:
                        _warn_if_long(time.perf_counter() - started, passes)
                    structure = weights.structure
                    _check_per_datapoint(weights, rows if batch_size is not None else None)
                    # Accumulated in float64: thousands of chunks of float32 logsumexps would
                    # otherwise lose the digits that separate models.
                    chunk = torch.logsumexp(weights.log_w, dim=0).double()
                    total = chunk if total is None else torch.logaddexp(total, chunk)
                    bar.update()
                results.append((total - math.log(num_samples)).to(weights.log_w.dtype))
    finally:
        bar.close()
    return torch.cat(results).clone()  # a normal tensor, usable outside inference mode


def _validating() -> bool:
    return pyro.infer.util.is_validation_enabled()


def _count_rows(args: tuple) -> int | None:
    rows = {a.shape[0] for a in args if isinstance(a, torch.Tensor) and a.dim() > 0}
    return rows.pop() if len(rows) == 1 else None


def _warn_if_long(first_pass_seconds: float, passes: int) -> None:
    estimate = first_pass_seconds * passes
    if estimate > LONG_EVALUATION_SECONDS:
        warnings.warn(
            f"log_likelihood will take about {estimate / 60:.0f} minutes ({passes} passes, "
            f"{first_pass_seconds:.1f} s for the first): lower num_samples, or evaluate on a "
            "GPU (device='cuda')",
            stacklevel=3,
        )


def _validate(traces: Any, nesting: int) -> None:
    check_program(
        traces,
        nesting,
        estimator="log_likelihood",
        requires_reparam=False,
        analytic_kl=False,
        detach_latents=False,
    )


def _check_per_datapoint(weights: LogWeights, rows: int | None) -> None:
    """Refuse weights that are not a sum of independent per-datapoint terms."""
    columns = weights.columns
    if not columns.per_datapoint:
        raise ValueError(
            f"log p(x) of this model does not split into per-datapoint terms ({columns.reason}), "
            "so log_likelihood has no per-datapoint answer; observe the datapoints inside a "
            "pyro.plate with every latent local to it (or name the plate with data_plate=...); "
            "for the joint log p(x) use -pyro_vi.estimators.get('iwae', num_particles=S)"
            ".loss(model, guide, x)"
        )
    plate = columns.plate
    if not torch.equal(weights.offset, torch.zeros_like(weights.offset)):
        raise ValueError(
            f"sites outside the data plate {plate.name!r} add a term shared by all datapoints, "
            "so log p(x) does not split into per-datapoint terms; log_likelihood scores "
            "models whose sites all lie in the data plate"
        )
    if columns.scale != 1.0:
        raise ValueError(
            f"the data plate {plate.name!r} scales its terms by {columns.scale:g} (a subsampled "
            "plate or num_data): log_likelihood needs every datapoint of the batch scored once, "
            "unscaled"
        )
    if rows is not None and plate.size != rows:
        raise ValueError(
            f"the data plate {plate.name!r} holds {plate.size} datapoints but the batch has "
            f"{rows} rows; batch_size cuts the first dimension of the tensor arguments, so the "
            "data plate must run over it (or leave batch_size=None)"
        )


# -- active units -----------------------------------------------------------------------------


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
    variances = means.flatten(1).var(dim=0, correction=0).reshape(means.shape[1:])
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
    means = []
    with torch.no_grad(), eval_mode(model, guide):
        for batch, _ in _batches(args, batch_size):
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


def reconstruction_log_likelihood(
    model: Callable,
    guide: Callable,
    *args: Any,
    observed_site: str = "x",
    batch_size: int | None = None,
    **kwargs: Any,
) -> float:
    """The mean reconstruction term E_{q(z | x_i)}[log p(x_i | z)] over the datapoints, one draw.

    The first term of the ELBO, and for a plain autoencoder (a point-mass guide and no prior) the
    whole training objective. It is not a bound on log p(x): a model can reconstruct perfectly
    and still assign new data no probability. Comparing it across a VAE and an autoencoder shows
    what the KL term costs in reconstruction.

    Arguments:
        model, guide: Pyro callables taking ``*args, **kwargs``; ``observed_site`` must be an
            observed site of the model (unscaled: do not pass ``num_data``).
        *args: The data, datapoints along the first dimension.
        observed_site: The site holding the data.
        batch_size: Datapoints per pass; ``None`` for all at once.

    Returns:
        (1/N) sum_i log p(x_i | z_i) with z_i ~ q(z | x_i), nats per datapoint.
    """
    _check_pair(model, guide)
    _check_no_num_data(kwargs, "reconstruction_log_likelihood")
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, minimum=1)
    total, count = 0.0, 0
    with torch.no_grad(), eval_mode(model, guide):
        for batch, rows in _batches(args, batch_size):
            guide_trace = poutine.trace(guide).get_trace(*batch, **kwargs)
            replayed = poutine.replay(model, trace=guide_trace)
            model_trace = poutine.trace(replayed).get_trace(*batch, **kwargs)
            node = model_trace.nodes.get(observed_site)
            if node is None or not node.get("is_observed"):
                observed = [n for n, s in model_trace.nodes.items() if s.get("is_observed")]
                raise ValueError(
                    f"observed_site={observed_site!r} is not an observed site of the model; its "
                    f"observed sites are {observed}"
                )
            total += float(node["fn"].log_prob(node["value"]).sum())
            count += rows or 1
    return total / count


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
    # The data plate's dim counts from the right of the batch shape, left of the event dims.
    data_axis = mean.dim() - event_dim + plate.dim
    return mean.movedim(data_axis, 0)


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


# -- gradient signal-to-noise -----------------------------------------------------------------


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
