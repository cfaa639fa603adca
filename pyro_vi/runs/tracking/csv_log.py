"""``metrics.csv``: one row per epoch, always written (no package needed).

The header is :func:`~pyro_vi.runs.tracking.base.columns`; numbers are written in full
precision (``repr``), a missing value as an empty cell. On resume the file is written again from
the restored history, so that an epoch logged after the last checkpoint (and trained again) does
not appear twice.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from typing import Any

from pyro_vi.runs.folder import CSV_FILE
from pyro_vi.runs.tracking.base import Tracker, TrackingContext, columns

__all__ = ["CSV_FILE", "CsvTracker"]


class CsvTracker(Tracker):
    """Appends one row per epoch to ``<run>/metrics.csv``."""

    name = "csv"

    def __init__(self, context: TrackingContext) -> None:
        super().__init__()
        self.file = context.path / CSV_FILE
        self.columns = columns()
        with open(self.file, "w", newline="") as handle:
            csv.writer(handle).writerow(self.columns)

    def log_epoch(self, epoch: int, values: Mapping[str, Any]) -> None:
        row = [_cell(values.get(column)) for column in self.columns]
        with open(self.file, "a", newline="") as handle:
            csv.writer(handle).writerow(row)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)
