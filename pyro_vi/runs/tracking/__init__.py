"""Experiment tracking: where a run's metrics go, one module per backend.

==========================  ====================================================================
module                      backend
==========================  ====================================================================
:mod:`.base`                the :class:`Tracker` interface and the per-epoch values
:mod:`.csv_log`             ``metrics.csv``, always
:mod:`.tensorboard_log`     TensorBoard event files (``pip install tensorboard``)
:mod:`.mlflow_log`          an MLflow run (``pip install mlflow``)
==========================  ====================================================================

A spec chooses with ``[log] backends = ["csv", "tensorboard", "mlflow"]`` (``pip install
'pyro-vi[tracking]'`` installs both optional packages); CSV is written whatever the list says.
A backend that is not installed is a :class:`~pyro_vi.spec.SpecError` before training
(:func:`check_backends`). Only rank 0 of a data-parallel run opens trackers.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pyro_vi.runs.tracking.base import (
    Tracker,
    TrackingContext,
    columns,
    epoch_values,
    history_from_dict,
)
from pyro_vi.spec import Spec, SpecError
from pyro_vi.train import History

__all__ = [
    "BACKENDS",
    "Tracker",
    "Trackers",
    "TrackingContext",
    "check_backends",
    "columns",
    "epoch_values",
    "history_from_dict",
    "open_trackers",
]


def _csv(context: TrackingContext) -> Tracker:
    from pyro_vi.runs.tracking.csv_log import CsvTracker

    return CsvTracker(context)


def _tensorboard(context: TrackingContext) -> Tracker:
    from pyro_vi.runs.tracking.tensorboard_log import TensorBoardTracker

    return TensorBoardTracker(context)


def _mlflow(context: TrackingContext) -> Tracker:
    from pyro_vi.runs.tracking.mlflow_log import MlflowTracker

    return MlflowTracker(context)


#: Backend name -> (the package it needs, or None; how to open it).
BACKENDS: dict[str, tuple[str | None, Callable[[TrackingContext], Tracker]]] = {
    "csv": (None, _csv),
    "tensorboard": ("tensorboard", _tensorboard),
    "mlflow": ("mlflow", _mlflow),
}


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def check_backends(spec: Spec) -> None:
    """Raise :class:`~pyro_vi.spec.SpecError` when ``log.backends`` names a backend whose
    package is not installed here."""
    for name in spec.log["backends"]:
        package = BACKENDS[name][0]
        if package is not None and not _installed(package):
            raise SpecError(
                f"invalid spec: log.backends includes {name!r}, but the {package!r} package is "
                f"not installed; install it (pip install {package}, or pip install "
                "'pyro-vi[tracking]' for every backend) or remove it from log.backends"
            )


class Trackers:
    """Every sink of a run, driven as one: :meth:`log_epoch`, :meth:`log_images`,
    :meth:`close`; :attr:`record` is what ``run.json`` keeps of them.

    An optional backend that fails during training (an MLflow server gone) is switched off with
    a warning rather than stopping training: ``metrics.csv`` still has every epoch. CSV's own
    failures (a full disk) are errors."""

    def __init__(self, trackers: list[Tracker], steps_per_epoch: int) -> None:
        self.trackers = trackers
        self.steps_per_epoch = steps_per_epoch

    @property
    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"backends": [tracker.name for tracker in self.trackers]}
        for tracker in self.trackers:
            out.update(tracker.record)
        return out

    def log_epoch(self, epoch: int, history: History) -> None:
        """Log ``epoch`` (counted from 0) of ``history`` to every sink."""
        cut_short = history.out_of_time and epoch == history.epochs - 1
        steps = None if cut_short else self.steps_per_epoch
        values = epoch_values(history, epoch, steps)
        self._each(lambda tracker: tracker.log_epoch(epoch + 1, values))

    def log_images(self, images: Mapping[str, Path]) -> None:
        """Give every sink the run's figures."""
        self._each(lambda tracker: tracker.log_images(images))

    def close(self, status: str) -> None:
        """Close every sink (once; later calls do nothing)."""
        self._each(lambda tracker: tracker.close(status))
        self.trackers = []

    def _each(self, call: Callable[[Tracker], None]) -> None:
        for tracker in list(self.trackers):
            if tracker.name == "csv":
                call(tracker)
                continue
            try:
                call(tracker)
            except Exception as error:
                self.trackers.remove(tracker)
                warnings.warn(
                    f"the {tracker.name!r} tracking backend failed ({type(error).__name__}: "
                    f"{error}); it is off for the rest of this run (metrics.csv has every epoch)",
                    stacklevel=3,
                )


def open_trackers(context: TrackingContext, steps_per_epoch: int) -> Trackers:
    """Open CSV and every backend of ``context.spec.log["backends"]``; a resumed run's restored
    epochs are logged again first (each sink then holds each epoch once, see the modules)."""
    names = ["csv", *(name for name in context.spec.log["backends"] if name != "csv")]
    opened: list[Tracker] = []
    for name in names:
        try:
            opened.append(BACKENDS[name][1](context))
        except Exception as error:
            for tracker in opened:
                tracker.close("failed")
            if name == "csv":  # the run folder itself cannot be written
                raise
            raise ValueError(
                f"log.backends: the {name!r} backend cannot start: {type(error).__name__}: {error}"
            ) from error
    trackers = Trackers(opened, steps_per_epoch)
    if context.history is not None:
        for epoch in range(context.history.epochs):
            trackers.log_epoch(epoch, context.history)
    return trackers
