"""The importance-sampled log-likelihood log p(x_i) of each datapoint (Burda et al. 2016)."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import pyro
import torch

from pyro_vi._callables import eval_mode
from pyro_vi._checks import check_int
from pyro_vi.estimators.core import (
    LogWeights,
    VectorizationError,
    check_program,
    compute_log_weights,
)
from pyro_vi.evaluation._common import (
    _batches,
    _check_data,
    _check_no_num_data,
    _check_pair,
    _check_plate_name,
)
from pyro_vi.progress import progress_bar
from pyro_vi.traces import probe_program

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
    joint estimate is ``-get("iwae", num_particles=S).loss(model, guide, x)``). A model latent
    marked ``infer={"enumerate": "parallel"}`` that the guide does not sample is summed out of
    log p exactly, as the estimators do.

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
        **kwargs: Passed to model and guide whole (not cut into batches: pass per-datapoint
            tensors such as labels positionally).

    Returns:
        The estimates, shape ``[N]`` (one per element of the data plate), float, on the data's
        device.

    Raises:
        ValueError: global latents, no plate over the datapoints, a subsampled or scaled data
            plate, a site scaled on its own (KL annealing), ``num_data`` in ``kwargs``, a
            per-datapoint keyword argument when ``batch_size`` cuts the data, or a bad
            argument.

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
    _check_data(args, "log_likelihood")

    count = _count_rows(args)
    batches = 1 if batch_size is None or count is None else math.ceil(count / batch_size)
    passes = batches * math.ceil(num_samples / chunk_size)
    bar = progress_bar(None, total=passes, desc="log-likelihood", unit="pass", enabled=progress)
    results = []
    nesting, enumerate_model, structure, vectorize = None, False, None, True
    started = time.perf_counter()
    try:
        with torch.inference_mode(), eval_mode(model, guide):
            for batch, rows in _batches(args, batch_size, kwargs):
                if nesting is None:
                    # The probe also finds the model's latents marked for parallel enumeration
                    # that the guide does not sample: they are summed out of log p exactly, as
                    # the estimators do (else they would be refused as latents without a guide
                    # site).
                    probe = probe_program(model, guide, batch, kwargs)
                    nesting, enumerate_model = probe.plate_nesting, bool(probe.model_enumerated)
                total = None
                for start in range(0, num_samples, chunk_size):
                    # Pyro's validation (argument and support checks) on the first pass only.
                    with pyro.validation_enabled(structure is None and _validating()):
                        weights, vectorize = _weights_of_chunk(
                            model,
                            guide,
                            batch,
                            kwargs,
                            num_particles=min(chunk_size, num_samples - start),
                            plate_nesting=nesting,
                            enumerate_model=enumerate_model,
                            data_plate=data_plate,
                            structure=structure,
                            vectorize=vectorize,
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


def _weights_of_chunk(
    model: Callable,
    guide: Callable,
    batch: tuple,
    kwargs: dict,
    *,
    num_particles: int,
    plate_nesting: int,
    enumerate_model: bool,
    data_plate: str | None,
    structure: Any,
    vectorize: bool,
) -> tuple[LogWeights, bool]:
    """One chunk's log-weights, and whether later chunks vectorize their draws: a program that
    fails with its draws vectorized (it checks its shapes, say) runs them one at a time, with
    one warning, when that works (as the estimators do)."""

    def compute(vectorized: bool) -> LogWeights:
        return compute_log_weights(
            model,
            guide,
            batch,
            kwargs,
            num_particles=num_particles,
            plate_nesting=plate_nesting,
            enumerate_model=enumerate_model,
            data_plate=data_plate,
            structure=structure,
            validate=_validate if structure is None else None,
            vectorize=vectorized,
        )

    if not vectorize:
        return compute(False), False
    try:
        return compute(True), True
    except VectorizationError as error:
        weights = compute(False)  # its own error, unwarned, if the loop fails as well
        warnings.warn(
            f"the program fails with its {num_particles} draws vectorized "
            f"({error.reason()}); log_likelihood draws them one at a time instead (slower)",
            stacklevel=3,
        )
        return weights, False


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
    _check_unscaled_sites(weights)
    if rows is not None and plate.size != rows:
        raise ValueError(
            f"the data plate {plate.name!r} holds {plate.size} datapoints but the batch has "
            f"{rows} rows; batch_size cuts the first dimension of the tensor arguments, so the "
            "data plate must run over it (or leave batch_size=None)"
        )


def _check_unscaled_sites(weights: LogWeights) -> None:
    """Refuse a site scaled on its own (``poutine.scale`` on some sites, e.g. KL annealing): the
    weights would be those of a tempered model, whose importance-sampled "log p(x_i)" is no
    log-likelihood (the estimators keep such scales in the bound on purpose; here they would
    give a plausible wrong number)."""
    model_trace, guide_trace = weights.model_trace, weights.guide_trace
    for trace in (model_trace, guide_trace):
        for name, site in trace.nodes.items():
            if site["type"] != "sample":
                continue
            scale = site["scale"]
            if isinstance(scale, torch.Tensor):
                unscaled = bool((scale == 1).all())
                shown = "a tensor" if scale.numel() > 1 else f"{float(scale):g}"
            else:
                unscaled, shown = scale == 1, f"{float(scale):g}"
            if not unscaled:
                side = "model" if trace is model_trace else "guide"
                raise ValueError(
                    f"the {side}'s site {name!r} is scaled by {shown} (poutine.scale on some "
                    "sites, e.g. KL annealing): log_likelihood estimates log p(x_i) of the "
                    "unscaled model; evaluate with the scale set to 1"
                )
