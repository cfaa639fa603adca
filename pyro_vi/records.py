"""What the package writes to disk as JSON: one schema, versioned.

Every JSON object written carries ``"schema_version"`` (:data:`SCHEMA_VERSION`); a reader
accepts files without it (written before the field existed, the same layout) and refuses a
newer version with a clear error. Losses are minus the bound, in nats per datapoint.

``run.json`` (:class:`RunRecord`), written before the first step and at the end:

=====================  ===================================================================
key                    value
=====================  ===================================================================
``schema_version``     :data:`SCHEMA_VERSION`
``status``             ``"training"``: under way (or killed: ``--resume`` continues it);
                       ``"interrupted"``: Ctrl-C or SIGTERM stopped training after a step,
                       with a checkpoint (``--resume`` continues it); ``"trained"``: trained
                       and saved, the final evaluation interrupted (``pyro-vi evaluate``
                       completes it); ``"complete"``; ``"diverged"``; ``"failed"``: a file
                       could not be written (``error`` says which and why); ``"pruned"``: a
                       search (``pyro-vi sweep --optuna``) stopped it early as unpromising
                       (``pruned_after_epoch``)
``started``            ISO 8601 time (UTC) training started
``resumed``            ISO 8601 times of each ``--resume`` (absent if never resumed)
``world_size``         processes that trained (data-parallel under ``torchrun``: > 1)
``tracking``           the metric backends (``backends``) and what they need to resume
                       (``mlflow_run_id``, ``mlflow_tracking_uri``)
``error``              with ``"failed"``: the error
``data_info``          ``{"shape": [C, H, W], "num_classes": int or null}``
``train_size``         training datapoints
``validation_size``    validation datapoints (absent without a validation split)
``environment``        versions, device, threads (:func:`pyro_vi.devices.environment`)
``epochs_completed``   at the end: epochs trained
``training_seconds``   at the end: seconds in training steps and test passes
``wall_seconds``       at the end: seconds from start to end of training
``best_epoch``         at the end, with a validation split: the epoch (from 1) with the
                       best validation bound (``best_validation_bound``), whose weights
                       are ``best.pt``
``stopped_early``      with a validation split: whether ``training.early_stopping`` ended
                       training
=====================  ===================================================================

``metrics.jsonl``, one :class:`EpochRecord` per line, appended after every epoch:
``schema_version``, ``epoch`` (from 1), ``train_loss``, ``test_loss`` (``null`` without test
data), ``validation_loss`` (``null`` without a validation split), ``seconds`` (of that
epoch), ``bound`` (the estimator's bound, e.g. ``"elbo"``).
``metrics.csv`` holds the same epochs as a table with every per-epoch field of the history
(:mod:`pyro_vi.runs.tracking`). Both are written again from the training state on resume, so
that they hold each epoch once.

``metrics.json`` (:class:`SummaryRecord`): ``schema_version``, ``metrics`` (below), ``history``
(:meth:`pyro_vi.train.History.to_dict`; its ``best_epoch`` counts from 0), ``weights`` (which
weights were evaluated: ``which`` ``"best"`` or ``"last"``, ``file``, ``epoch`` from 1,
``epochs`` trained, ``validation_bound``, ``description`` such as ``"best (epoch 7 of 10)"``;
:func:`pyro_vi.runs.folder.weights_record`), and ``config`` when
:func:`pyro_vi.report.write_report` is given one. ``evaluation.json``, written by ``pyro-vi
evaluate``: ``metrics``, ``num_samples`` and ``weights``. The metrics of a trained run:

=================================  ===============================================  ==============
key                                meaning                                          models
=================================  ===============================================  ==============
``test_size``                      test datapoints                                  all
``test_elbo``                      ELBO, one particle                               with a prior
``test_<name>_bound``              the trained estimator's bound (not ``elbo``)     stochastic q
``test_relaxed_<name>_bound``      the same, of a relaxed sigmoid belief net        relaxed sbn
``test_log_likelihood_iwae_K``     IWAE-K estimate of log p(x)                      stochastic q
``active_units``, ``..._of``       units with Cov_x E_q[z_u] > 0.01, and of how     not vq_vae
                                   many (``active_units_z1``... with two layers)
``reconstruction_log_likelihood``  E_q log p(x | z) (not a bound)                   all
``codebook_perplexity``,           exp(entropy of code use), and K                  vq_vae
``codebook_size``
``training_seconds``               seconds of training                              all
``parameters``                     trainable numbers in model and guide             all
``final_train_bound``              minus the last epoch's training loss             all
``interrupted``                    whether training was interrupted                 all
``best_epoch``,                    with a validation split, as in ``run.json``      all
``best_validation_bound``,
``stopped_early``
=================================  ===============================================  ==============

(``stochastic q``: a model with a prior and a guide that is not a point mass, so the VAE and the
sigmoid belief net; the kinds decide, :mod:`pyro_vi.spec.kinds`.)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TypedDict

from pyro_vi.train import History

__all__ = [
    "SCHEMA_VERSION",
    "EpochRecord",
    "RunRecord",
    "SummaryRecord",
    "check_version",
    "epoch_record",
    "read_json",
    "summary_record",
    "versioned",
    "write_json",
]

#: The version of the layout above; raised when a key changes meaning or goes away.
SCHEMA_VERSION = 1


class EpochRecord(TypedDict):
    """One line of ``metrics.jsonl``."""

    schema_version: int
    epoch: int
    train_loss: float
    test_loss: float | None
    validation_loss: float | None
    seconds: float
    bound: str


class RunRecord(TypedDict, total=False):
    """``run.json``; ``epochs_completed`` and the timings are written when training ends."""

    schema_version: int
    status: str
    started: str
    resumed: list[str]
    data_info: dict[str, Any]
    train_size: int
    validation_size: int
    environment: dict[str, Any]
    world_size: int
    tracking: dict[str, Any]
    error: str
    epochs_completed: int
    training_seconds: float
    wall_seconds: float
    best_epoch: int
    best_validation_bound: float
    stopped_early: bool


class SummaryRecord(TypedDict, total=False):
    """``metrics.json``."""

    schema_version: int
    metrics: dict[str, Any]
    history: dict[str, Any]
    weights: dict[str, Any]
    config: dict[str, Any]


def versioned(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` with ``schema_version`` first."""
    return {"schema_version": SCHEMA_VERSION, **payload}


def epoch_record(epoch: int, history: History) -> EpochRecord:
    """The ``metrics.jsonl`` line of ``epoch`` (counted from 0) of the history."""

    def at(values: list[float]) -> float | None:
        return values[epoch] if epoch < len(values) else None

    return {
        "schema_version": SCHEMA_VERSION,
        "epoch": epoch + 1,
        "train_loss": history.train_loss[epoch],
        "test_loss": at(history.test_loss),
        "validation_loss": at(history.validation_loss),
        "seconds": history.seconds[epoch],
        "bound": history.bound,
    }


def summary_record(
    metrics: dict[str, Any], history: History, config: dict[str, Any] | None = None
) -> SummaryRecord:
    """The ``metrics.json`` of a trained model: its metrics and its history."""
    record: SummaryRecord = {
        "schema_version": SCHEMA_VERSION,
        "metrics": metrics,
        "history": history.to_dict(),
    }
    if config is not None:
        record["config"] = config
    return record


def check_version(payload: dict[str, Any], path: str | os.PathLike[str]) -> dict[str, Any]:
    """``payload`` if this package can read its schema version; otherwise a ``ValueError``."""
    version = payload.get("schema_version", SCHEMA_VERSION)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ValueError(
            f"{str(path)!r} has schema_version {version!r}, newer than this pyro_vi reads "
            f"({SCHEMA_VERSION}); update pyro_vi to read it"
        )
    return payload


def read_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A JSON object written by this package, its schema version checked.

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the file: not JSON, or not an object.
    """
    try:
        payload = json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{str(path)!r} is not valid JSON ({error})") from None
    if not isinstance(payload, dict):
        raise ValueError(f"{str(path)!r} holds {type(payload).__name__}, not a JSON object")
    return check_version(payload, path)


def write_text_atomically(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file beside it (``os.replace`` is atomic
    on POSIX), so that a kill or a crash mid-write never leaves half a file behind."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)
    return path


def write_json(path: str | os.PathLike[str], payload: dict[str, Any]) -> Path:
    """Write ``payload`` as indented JSON, atomically."""
    return write_text_atomically(path, json.dumps(payload, indent=2, default=str))
