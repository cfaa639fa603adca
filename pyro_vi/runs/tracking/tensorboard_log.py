"""TensorBoard event files in ``<run>/tensorboard`` (needs the ``tensorboard`` package).

Scalars are grouped by kind (``bound/train``, ``loss/test``, ``optim/learning_rate``,
``speed/steps_per_second``...) with the epoch as the step; the figures are images at the last
epoch. A resumed run purges the events from the first epoch on and writes the restored history
again, so that the curves hold each epoch once. ``tensorboard --logdir runs`` shows every run.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pyro_vi.runs.folder import TENSORBOARD_FOLDER
from pyro_vi.runs.tracking.base import Tracker, TrackingContext

__all__ = ["TENSORBOARD_FOLDER", "TensorBoardTracker", "scalar_tag"]

_GROUPS = {"learning_rate": "optim", "grad_norm": "optim", "seconds": "speed"}


def scalar_tag(name: str) -> str:
    """The TensorBoard tag of a value: ``train_bound`` -> ``bound/train``."""
    for suffix in ("_bound", "_loss"):
        if name.endswith(suffix):
            return f"{suffix[1:]}/{name[: -len(suffix)]}"
    if name.endswith("_per_second"):
        return f"speed/{name}"
    return f"{_GROUPS.get(name, 'epoch')}/{name}"


class TensorBoardTracker(Tracker):
    """Writes scalars and images with ``torch.utils.tensorboard.SummaryWriter``."""

    name = "tensorboard"

    def __init__(self, context: TrackingContext) -> None:
        super().__init__()
        from torch.utils.tensorboard import SummaryWriter

        resumed = context.history is not None
        self.writer = SummaryWriter(
            log_dir=str(context.path / TENSORBOARD_FOLDER), purge_step=1 if resumed else None
        )
        self.last_epoch = 0

    def log_epoch(self, epoch: int, values: Mapping[str, Any]) -> None:
        for name, value in values.items():
            if name != "epoch" and isinstance(value, int | float) and not isinstance(value, bool):
                self.writer.add_scalar(scalar_tag(name), value, epoch)
        self.last_epoch = epoch
        self.writer.flush()

    def log_images(self, images: Mapping[str, Path]) -> None:
        from matplotlib.image import imread

        for name, file in images.items():
            pixels = imread(file)[..., :3]  # RGBA PNG -> RGB, floats in [0, 1]
            self.writer.add_image(f"figures/{name}", pixels, self.last_epoch, dataformats="HWC")
        self.writer.flush()

    def close(self, status: str) -> None:
        self.writer.close()
