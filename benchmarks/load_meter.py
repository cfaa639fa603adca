"""Pieces shared by the benchmark scripts (``benchmarks/`` is not a package: scripts import this
sibling file by name)."""

from __future__ import annotations

import os
import resource
from pathlib import Path


class OtherLoad:
    """Share of the machine's CPU time that *other* processes used while a configuration ran
    (0 = quiet, 1 = every core busy with someone else), from ``/proc/stat`` minus this
    process's own CPU time: a noise flag for the timings; ``None`` without ``/proc/stat``."""

    def __init__(self) -> None:
        self.ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.start = self._snapshot()

    def _snapshot(self) -> tuple[float, float, float] | None:
        try:
            fields = [float(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return sum(fields[:8]) - idle, sum(fields[:8]), (usage.ru_utime + usage.ru_stime)

    def share(self) -> float | None:
        """Since construction (or the last call)."""
        end, start = self._snapshot(), self.start
        self.start = end
        if end is None or start is None or end[1] <= start[1]:
            return None
        others = (end[0] - start[0]) - (end[2] - start[2]) * self.ticks
        return round(min(max(others / (end[1] - start[1]), 0.0), 1.0), 3)
