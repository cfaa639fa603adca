"""How busy the machine is while something runs: the share of its CPU time other processes take.

Timings taken on a shared machine measure the load as much as the code: on two cores that another
job keeps busy, an epoch can take twenty times as long as on a quiet machine. Comparisons and
benchmarks therefore record, beside each timing, what other processes took meanwhile
(:class:`OtherLoad`) and the load average (:func:`load_snapshot`), and flag a measurement taken
on a busy machine (:func:`is_busy`).

Example:
    >>> meter = OtherLoad()
    >>> ...  # the work being timed
    >>> share = meter.share()  # 0 = quiet, 1 = every core busy with other processes
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["BUSY_SHARE", "OtherLoad", "cpu_count", "is_busy", "load_snapshot"]

#: Other processes' share of the CPU time above which a timing is flagged as taken on a busy
#: machine: a quarter of the cores already slows a multi-threaded step by more than its noise.
BUSY_SHARE = 0.25


class OtherLoad:
    """Share of the machine's CPU time that *other* processes used since the meter started
    (0 = quiet, 1 = every core busy with someone else), from ``/proc/stat`` minus this process's
    own CPU time (all its threads); ``None`` without ``/proc/stat`` (not Linux).

    :meth:`share` returns the share since construction or the previous call, and restarts the
    meter.
    """

    def __init__(self) -> None:
        self.ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.start = self._snapshot()

    def _snapshot(self) -> tuple[float, float, float] | None:
        try:
            fields = [float(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        except (OSError, ValueError, IndexError):
            return None
        if len(fields) < 4:
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
        own = os.times()  # this process, all its threads (portable, unlike resource)
        return sum(fields[:8]) - idle, sum(fields[:8]), own.user + own.system

    def share(self) -> float | None:
        """Other processes' share of the CPU time since construction (or the last call)."""
        end, start = self._snapshot(), self.start
        self.start = end
        if end is None or start is None or end[1] <= start[1]:
            return None
        others = (end[0] - start[0]) - (end[2] - start[2]) * self.ticks
        return round(min(max(others / (end[1] - start[1]), 0.0), 1.0), 3)


def cpu_count() -> int:
    """The CPUs this process may run on (its affinity; ``os.cpu_count()`` where unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def load_snapshot() -> dict[str, Any]:
    """The load average (1, 5 and 15 minutes; ``None`` where unknown) and the CPU count now."""
    try:
        average = [round(value, 2) for value in os.getloadavg()]
    except (AttributeError, OSError):
        average = None
    return {"load_average": average, "cpu_count": cpu_count()}


def is_busy(other_share: float | None) -> bool:
    """Whether other processes took more than :data:`BUSY_SHARE` of the CPU time."""
    return other_share is not None and other_share > BUSY_SHARE
