"""Learning curves on one common scale: every run of a comparison evaluated the same way after
every epoch.

A run's own test loss (``metrics.jsonl``) is minus *its* bound: a VAE's ELBO beside an IWAE's
K-sample bound, which is higher by construction, so the two curves do not compare. A comparison
(:mod:`pyro_vi.runs.compare`, :mod:`pyro_vi.runs.sweep`) therefore passes
:class:`EpochEvaluation` to :func:`~pyro_vi.runs.training.train_spec` as ``on_epoch``: after
every epoch it scores the model, as its kind allows, with

- ``elbo``: the one-particle ELBO (models with a prior),
- ``log_likelihood``: the IWAE-K estimate of log p(x) at one K for every run (a stochastic
  guide; for a point-mass guide with a prior it equals the ELBO, and is reported as such),
- ``reconstruction``: E_q log p(x | z), the reconstruction term (every model; for an
  autoencoder the whole objective; never a bound),

on the same first ``size`` test images, binarized once from one seed for every run, with the
same random draws (the evaluation is seeded), and on the validation split the same way when the
run has one. The run's random generators are saved before and restored after, so a run
evaluated this way trains exactly as one that is not (and resumes bit for bit). The metrics are
scored after each of the first 20 epochs, then on a ladder of epochs that is the same for every
run (25, 30, 40, 50, 60, 80, 100, ...: :func:`scheduled`), and after a run's last epoch. Each
epoch appends a line to ``RUN/eval_curve.jsonl`` (:data:`CURVE_FILE`) with the epoch's training
seconds and the machine's load meanwhile (:mod:`pyro_vi.machine`), and the metrics when they
were scored (under ``"test"`` and ``"validation"``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyro
import torch

from pyro_vi._callables import eval_mode
from pyro_vi._checks import describe
from pyro_vi.evaluation import log_likelihood, reconstruction_log_likelihood
from pyro_vi.machine import OtherLoad, load_snapshot
from pyro_vi.records import versioned
from pyro_vi.runs.folder import CURVE_FILE
from pyro_vi.spec import Built, Data
from pyro_vi.train import History, evaluate_loss
from pyro_vi.train.checkpoint import rng_state, set_rng_state

__all__ = [
    "CURVE_FILE",
    "DEFAULT_CURVE_SAMPLES",
    "DEFAULT_CURVE_SIZE",
    "EpochEvaluation",
    "check_curve_settings",
    "common_metrics",
    "read_curve",
    "scheduled",
]

#: K of the per-epoch IWAE-K: enough to separate the ELBO from a K-sample bound, cheap per epoch.
DEFAULT_CURVE_SAMPLES = 100
#: Test (and validation) datapoints scored per epoch.
DEFAULT_CURVE_SIZE = 500
#: Datapoints per evaluation pass (memory, not the result).
_BATCH = 500
#: Epochs scored one by one; later ones on a ladder (:func:`scheduled`), so that a long run (or
#: one of many short epochs, under a time budget) spends little of its time on its curve.
EVERY_EPOCH_UNTIL = 20
_LADDER = frozenset({10, 12, 15, 20, 25, 30, 40, 50, 60, 80})


def _first(split: tuple[Any, ...], size: int, device: torch.device, seed: int) -> tuple:
    """The first ``size`` datapoints of a split as tensors on ``device``; a dynamically
    binarized split is drawn once, from ``seed``."""
    saved = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        count = min(size, len(split[0]))
        return tuple(item[torch.arange(count)].to(device) for item in split)
    finally:
        torch.random.set_rng_state(saved)


def common_metrics(
    built: Built, data: tuple[torch.Tensor, ...], num_samples: int, seed: int = 0
) -> dict[str, float]:
    """The metrics every run is judged by alike, as its model kind allows (module docstring).

    Arguments:
        built: The run's model and guide (judged as :meth:`~pyro_vi.spec.Built.for_evaluation`).
        data: The model's arguments for the datapoints to score.
        num_samples: K of the IWAE-K estimate of log p(x).
        seed: Seeds the draws, so that every run is scored with the same random numbers.

    Returns:
        ``reconstruction`` always; ``elbo`` with a prior; ``log_likelihood`` with a prior (equal
        to ``elbo`` for a point-mass guide). Nats per datapoint.
    """
    judged = built.for_evaluation()
    model, guide, kind = judged.model, judged.guide, judged.spec.kind
    pyro.set_rng_seed(seed)
    out: dict[str, float] = {}
    with torch.no_grad(), eval_mode(model, guide):
        if kind.has_prior:
            out["elbo"] = -evaluate_loss(model, guide, data, batch_size=_BATCH)
            if kind.deterministic_encoder:  # a point mass: every IWAE-K equals the ELBO
                out["log_likelihood"] = out["elbo"]
            else:
                total = 0.0
                for start in range(0, len(data[0]), _BATCH):
                    batch = tuple(item[start : start + _BATCH] for item in data)
                    total += float(
                        log_likelihood(
                            model, guide, *batch, num_samples=num_samples, chunk_size=100
                        ).sum()
                    )
                out["log_likelihood"] = total / len(data[0])
        out["reconstruction"] = reconstruction_log_likelihood(
            model, guide, *data, batch_size=_BATCH
        )
    return out


def scheduled(epoch: int) -> bool:
    """Whether the common metrics are scored after ``epoch`` (counted from 1): every epoch up to
    :data:`EVERY_EPOCH_UNTIL`, then at 25, 30, 40, 50, 60, 80, 100, 120, 150, 200, ... (ten
    points a decade), the same epochs for every run; the last epoch of a run is scored too."""
    if epoch <= EVERY_EPOCH_UNTIL:
        return True
    scale = 10 ** (len(str(epoch)) - 2)  # 25 -> 1, 120 -> 10, 1500 -> 100
    return epoch % scale == 0 and epoch // scale in _LADDER


def check_curve_settings(num_samples: int, size: int) -> None:
    """Raise ``ValueError`` unless the curve's K and its number of datapoints are integers >= 1."""
    for name, value in (("curve_samples (K)", num_samples), ("curve_size", size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {describe(value)}")


class EpochEvaluation:
    """``on_epoch`` for :func:`~pyro_vi.runs.training.train_spec`: common metrics after every
    epoch, written to ``RUN/eval_curve.jsonl``.

    Arguments:
        path: The run folder.
        data: The run's data (the test split, and the validation split when it has one).
        num_samples: K of the per-epoch IWAE-K.
        size: Datapoints of each split scored per epoch (the first ones).
        seed: Binarizes the scored datapoints and seeds the evaluation's draws; the same for
            every run of a comparison.
        report: Called as ``report(epoch, record)`` after each epoch's line is written (a
            search's pruner); what it raises stops training.

    Example:
        >>> evaluation = EpochEvaluation(folder, data)
        >>> train_spec(spec, folder, data=data, on_epoch=evaluation)
        >>> last = read_curve(folder)[-1]
        >>> last["test"].get("log_likelihood")  # the IWAE-K of the last epoch
    """

    def __init__(
        self,
        path: str | Path,
        data: Data,
        *,
        num_samples: int = DEFAULT_CURVE_SAMPLES,
        size: int = DEFAULT_CURVE_SIZE,
        seed: int = 0,
        report: Callable[[int, dict[str, Any]], None] | None = None,
    ) -> None:
        check_curve_settings(num_samples, size)
        self.path, self.data = Path(path), data
        self.num_samples, self.size, self.seed, self.report = num_samples, size, seed, report
        self.splits: dict[str, tuple] | None = None
        self.meter = OtherLoad()
        self.written = False

    def settings(self) -> dict[str, Any]:
        """What every curve point of this evaluation means (stored with a comparison)."""
        return {"num_samples": self.num_samples, "size": self.size, "seed": self.seed}

    def _splits(self, device: torch.device) -> dict[str, tuple]:
        if self.splits is None:
            named = {"test": self.data.test, "validation": self.data.validation}
            self.splits = {
                name: _first(split, self.size, device, self.seed)
                for name, split in named.items()
                if split is not None
            }
        return self.splits

    def __call__(self, epoch: int, history: History, built: Built) -> None:
        other = self.meter.share()
        parameter = next(iter(built.model.parameters()), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
        number = epoch + 1
        record: dict[str, Any] = {
            "epoch": number,
            "seconds": history.seconds[epoch] if epoch < len(history.seconds) else None,
            "steps": history.steps[epoch] if epoch < len(history.steps) else None,
            "other_cpu_share": other,
            **load_snapshot(),
        }
        last = (
            number >= built.spec.training["epochs"] or history.out_of_time or history.stopped_early
        )
        if scheduled(number) or last:
            record["num_samples"] = self.num_samples
            saved = rng_state()
            try:
                for name, split in self._splits(device).items():
                    record[name] = {
                        "size": len(split[0]),
                        **common_metrics(built, split, self.num_samples, self.seed),
                    }
            finally:
                set_rng_state(saved)
        self._write(versioned(record))
        if self.report is not None and "test" in record:
            self.report(epoch, record)
        self.meter.share()  # the next epoch's load, without this evaluation's own

    def _write(self, record: dict[str, Any]) -> None:
        file = self.path / CURVE_FILE
        if not self.written:
            # A new run starts the file; a resumed one keeps the epochs before this one.
            kept = [line for line in read_curve(self.path) if line["epoch"] < record["epoch"]]
            file.write_text("".join(json.dumps(line) + "\n" for line in kept))
            self.written = True
        with open(file, "a") as stream:
            stream.write(json.dumps(record) + "\n")


def read_curve(path: str | Path) -> list[dict[str, Any]]:
    """The per-epoch records of ``RUN/eval_curve.jsonl`` (empty when the run has none)."""
    file = Path(path) / CURVE_FILE
    if not file.is_file():
        return []
    return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
