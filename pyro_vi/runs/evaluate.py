"""The numbers a run is judged by, for every kind of model a spec builds.

Which metrics apply is the model kind's choice (:mod:`pyro_vi.spec.kinds`): a kind with a prior
reports the test ELBO; one whose guide is not a point mass also the trained estimator's bound
and the IWAE-K log-likelihood (a point mass's IWAE-K equals its ELBO, so the VQ-VAE reports it
once); every kind reports the reconstruction term and, unless it says otherwise, the active
units; a kind adds its own (the VQ-VAE's codebook perplexity). The keys and their meaning are
listed with the schema of ``metrics.json`` in :mod:`pyro_vi.records`.

A sigmoid belief net trained through a relaxation is evaluated as the discrete model with the
trained parameters (:meth:`pyro_vi.spec.Built.for_evaluation`): its test ELBO, IWAE-K,
reconstruction term and active units (Var_x q(z_u = 1 | x) > 0.01) are the discrete model's,
comparable with a discrete run's; the relaxed objective it was trained on is reported beside
them as ``test_relaxed_<name>_bound``, which is a bound on the discrete log p(x) for
``straight_through`` but not for ``concrete``.
"""

from __future__ import annotations

import os
from typing import Any

import pyro
import torch

from pyro_vi._checks import check_int
from pyro_vi.evaluation import active_units, log_likelihood, reconstruction_log_likelihood
from pyro_vi.progress import progress_bar
from pyro_vi.records import write_json
from pyro_vi.runs.folder import EVALUATION_FILE, load_run
from pyro_vi.spec import Built, Data
from pyro_vi.train import evaluate_loss

#: Datapoints per evaluation pass: bounds memory, not the result.
EVAL_BATCH = 500


def fixed_split(
    items: tuple[Any, ...], device: torch.device, seed: int
) -> tuple[torch.Tensor, ...]:
    """A split (a tuple of the model's arguments) as plain tensors on ``device``; a dynamically
    binarized one is drawn once, from ``seed``, leaving the global random state as it was."""
    generator_state = torch.random.get_rng_state()
    # The CPU generator alone: the draws are on the CPU, and CUDA's streams stay untouched.
    torch.random.default_generator.manual_seed(seed)
    try:
        return tuple(item[torch.arange(len(item))].to(device) for item in items)
    finally:
        torch.random.set_rng_state(generator_state)


def fixed_test_set(data: Data, device: torch.device, seed: int) -> tuple[torch.Tensor, ...]:
    """The test split as plain tensors on ``device``; a dynamically binarized split is drawn once,
    from ``seed``, so that every metric of a run scores the same binary images."""
    return fixed_split(data.test, device, seed)


def evaluation_record(
    metrics: dict[str, Any], num_samples: int, weights: dict[str, Any]
) -> dict[str, Any]:
    """What ``evaluation.json`` holds: the metrics, K of the IWAE-K log-likelihood, and which
    weights were evaluated (:func:`~pyro_vi.runs.folder.weights_record`)."""
    return {"metrics": metrics, "num_samples": num_samples, "weights": weights}


def evaluate_run(
    path: str | os.PathLike[str],
    *,
    weights: str = "best",
    num_samples: int | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    data_dir: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate a run folder on its test set and write ``evaluation.json``: what
    ``pyro-vi evaluate RUN`` does.

    A run whose final evaluation was interrupted (``run.json`` says ``"trained"``) is completed
    instead (:func:`~pyro_vi.runs.training.complete_run`: ``metrics.json``, the figures, status
    ``"complete"``).

    Arguments:
        path: The run folder.
        weights: ``"best"`` (default): the epoch with the best validation bound (``best.pt``),
            or the last weights when the run has no validation split; ``"last"``:
            ``checkpoint.pt``.
        num_samples: K of the IWAE-K log-likelihood (default ``training.eval_samples``; 0
            skips it).
        seed: Seeds the evaluation's draws (a completed run uses ``training.seed``).
        device: Where to evaluate (default: where it trained, when that exists here).
        data_dir: Where the run's dataset lives now.
        progress: Progress bars.

    Returns:
        The record written to ``evaluation.json``: ``metrics``, ``num_samples`` and
        ``weights`` (``weights["description"]`` says which, e.g. ``"best (epoch 7 of 10)"``),
        and ``completed``: whether the run was completed.

    Raises:
        ValueError: ``weights`` or ``num_samples`` out of range.
        FileNotFoundError, CheckpointError: as :func:`~pyro_vi.runs.folder.load_run`.

    Example:
        >>> record = evaluate_run("runs/early", num_samples=100)
        >>> weights, metrics = record["weights"], record["metrics"]
        >>> weights["description"], metrics["test_elbo"]
    """
    # Imported here: training imports this module for evaluate_built.
    from pyro_vi.runs.training import complete_run

    if num_samples is not None:
        num_samples = check_int("num_samples", num_samples, minimum=0)
    run = load_run(path, device, data_dir, weights=weights)
    samples = run.spec.training["eval_samples"] if num_samples is None else num_samples
    if run.info.get("status") == "trained":
        metrics = complete_run(run, samples, progress=progress)
        return {**evaluation_record(metrics, samples, run.weights), "completed": True}
    test = fixed_test_set(run.data, run.device, run.spec.training["seed"])
    metrics = evaluate_built(run.built, test, samples, progress=progress, seed=seed)
    record = evaluation_record(metrics, samples, run.weights)
    write_json(run.path / EVALUATION_FILE, record)
    return {**record, "completed": False}


def evaluate_built(
    built: Built,
    test: tuple[torch.Tensor, ...],
    num_samples: int,
    progress: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Evaluate a trained model on the test tensors.

    Arguments:
        built: Model, guide and estimator of the run.
        test: The model's arguments for the whole test set (see :func:`fixed_test_set`).
        num_samples: K of the IWAE-K log-likelihood; 0 skips it.
        progress: Show a progress bar over the test batches of the log-likelihood.
        seed: Seeds the evaluation's random draws.

    Returns:
        The metrics that apply to the model's kind (:mod:`pyro_vi.records` lists them), as
        floats and ints.
    """
    pyro.set_rng_seed(seed)
    trained, built = built, built.for_evaluation()
    model, guide, kind = built.model, built.guide, built.spec.kind
    name = built.spec.estimator["name"]
    # A proper bound on log p(x) needs a prior; a point-mass guide adds nothing beyond the ELBO.
    stochastic = kind.has_prior and not kind.deterministic_encoder
    metrics: dict[str, Any] = {"test_size": len(test[0])}
    metrics["reconstruction_log_likelihood"] = reconstruction_log_likelihood(
        model, guide, *test, batch_size=EVAL_BATCH
    )
    if kind.has_prior:
        metrics["test_elbo"] = -evaluate_loss(model, guide, test, batch_size=EVAL_BATCH)
    if trained.relaxed:
        metrics[f"test_relaxed_{name}_bound"] = -evaluate_loss(
            trained.model, trained.guide, test, loss=built.estimator, batch_size=EVAL_BATCH
        )
    elif stochastic and name != "elbo":
        metrics[f"test_{name}_bound"] = -evaluate_loss(
            model, guide, test, loss=built.estimator, batch_size=EVAL_BATCH
        )
    if stochastic and num_samples > 0:
        metrics[f"test_log_likelihood_iwae_{num_samples}"] = _log_likelihood(
            built, test, num_samples, progress
        )
    if kind.reports_active_units:
        for site in kind.latent_sites(built.spec):
            count, variances = active_units(model, guide, *test, site=site, batch_size=EVAL_BATCH)
            key = "active_units" if site == "z" else f"active_units_{site}"
            metrics[key] = count
            metrics[f"{key}_of"] = variances.numel()
    metrics.update(kind.extra_metrics(built, test))
    return metrics


def _log_likelihood(
    built: Built, test: tuple[torch.Tensor, ...], num_samples: int, progress: bool
) -> float:
    # Batches small enough that chunk_size * batch * model fits in memory; a bar per batch.
    total, count = 0.0, len(test[0])
    starts = range(0, count, EVAL_BATCH)
    bar = progress_bar(starts, desc=f"log p(x), IWAE-{num_samples}", unit="batch", enabled=progress)
    for start in bar:
        batch = tuple(item[start : start + EVAL_BATCH] for item in test)
        estimates = log_likelihood(
            built.model, built.guide, *batch, num_samples=num_samples, chunk_size=100
        )
        total += float(estimates.sum())
    bar.close()
    return total / count
