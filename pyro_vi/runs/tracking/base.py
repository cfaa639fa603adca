"""The interface of a metric sink, and the per-epoch values every sink receives.

A sink (:class:`Tracker`) gets one call per epoch with a flat dict of numbers, the figures at the
end, and a close. The values are read from :class:`pyro_vi.train.History` generically: every
per-epoch list it holds (train and test loss, seconds, learning rate, and whatever the training
layer adds, such as validation loss or gradient norms) becomes a column, each ``<x>_loss`` also as
its bound ``<x>_bound`` (minus the loss), with the training speed in steps per second.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyro_vi.spec import Spec
from pyro_vi.train import History

__all__ = ["Tracker", "TrackingContext", "columns", "epoch_values", "history_from_dict", "series"]


def series() -> list[str]:
    """The names of :class:`~pyro_vi.train.History`'s per-epoch lists, in declaration order."""
    empty = History()
    return [f.name for f in dataclasses.fields(History) if isinstance(getattr(empty, f.name), list)]


def columns() -> list[str]:
    """Every value :func:`epoch_values` gives, in order: a CSV file's header."""
    names = series()
    bounds = [name[: -len("_loss")] + "_bound" for name in names if name.endswith("_loss")]
    return ["epoch", *names, *bounds, "steps_per_second"]


def epoch_values(history: History, epoch: int, steps_per_epoch: int | None) -> dict[str, Any]:
    """The values of ``epoch`` (counted from 0) in the order of :func:`columns`; ``None`` where
    the history has none (no test data, a field the epoch did not record).

    Arguments:
        history: The history so far.
        epoch: Which epoch.
        steps_per_epoch: Training steps in a whole epoch; ``None`` when unknown (an epoch cut
            short by the time budget), which leaves ``steps_per_second`` empty.
    """
    values: dict[str, Any] = {"epoch": epoch + 1}
    for name in series():
        entries = getattr(history, name)
        values[name] = entries[epoch] if epoch < len(entries) else None
    for name in series():
        if name.endswith("_loss"):
            loss = values[name]
            values[name[: -len("_loss")] + "_bound"] = None if loss is None else -loss
    seconds = values.get("seconds")
    values["steps_per_second"] = steps_per_epoch / seconds if steps_per_epoch and seconds else None
    return values


def history_from_dict(saved: Mapping[str, Any]) -> History:
    """A :class:`~pyro_vi.train.History` from :meth:`~pyro_vi.train.History.to_dict`'s output
    (keys the class does not have, such as the derived bounds, are dropped)."""
    names = {f.name for f in dataclasses.fields(History)}
    return History(**{key: value for key, value in saved.items() if key in names})


@dataclass
class TrackingContext:
    """What a sink is opened with.

    Attributes:
        path: The run folder (rank 0's).
        spec: The run's spec.
        history: The history restored from the training state on ``--resume`` (its epochs are
            replayed into every sink), else ``None``.
        previous: What the sinks recorded in ``run.json`` (``tracking``) before a resume, e.g.
            MLflow's run id; empty for a new run.
    """

    path: Path
    spec: Spec
    history: History | None = None
    previous: dict[str, Any] = field(default_factory=dict)


class Tracker:
    """A sink for a run's metrics. A subclass sets :attr:`name` and implements
    :meth:`log_epoch`; :meth:`log_images` and :meth:`close` do nothing unless overridden.

    Attributes:
        name: The backend's name in ``[log] backends``.
        record: What to keep in ``run.json`` (under ``tracking``) for a later resume.
    """

    name = ""

    def __init__(self) -> None:
        self.record: dict[str, Any] = {}

    def log_epoch(self, epoch: int, values: Mapping[str, Any]) -> None:
        """Record one epoch's values (:func:`epoch_values`; ``epoch`` counted from 1)."""
        raise NotImplementedError

    def log_images(self, images: Mapping[str, Path]) -> None:
        """Record the run's figures (PNG files by name) at the end of training."""

    def close(self, status: str) -> None:
        """Flush and close; ``status`` is the run's (``"complete"``, ``"interrupted"``...)."""
