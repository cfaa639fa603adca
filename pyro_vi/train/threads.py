"""How many CPU threads torch should use for one training process.

torch's default is every core it sees. On a machine that other processes already load, that
oversubscribes the cores: OpenMP threads wait for each other at every parallel region, and a run
that takes 12 s on a quiet machine took 309 s on a busy one, where one thread recovered most of
it. The default here is the physical cores this process may run on (its CPU affinity, one per
core whatever the hyper-threads, or ``OMP_NUM_THREADS`` when set) minus the cores other
processes keep busy (the one-minute load average), at least one.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from pyro_vi._checks import check_int

__all__ = ["available_cores", "default_threads", "resolve_threads"]


def available_cores() -> int:
    """Physical cores among the CPUs this process may run on (logical CPUs when the topology
    cannot be read)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return len(cpus)
        cores.add((package, core))
    return max(1, len(cores))


def default_threads() -> int:
    """``OMP_NUM_THREADS`` when set, else the available physical cores less the ones other
    processes keep busy, at least 1."""
    configured = os.environ.get("OMP_NUM_THREADS", "").strip()
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    cores = available_cores()
    try:
        busy = os.getloadavg()[0]
    except OSError:
        busy = 0.0
    return max(1, min(cores, round(cores - busy)))


def resolve_threads(threads: int | str | None) -> int:
    """The number of threads for ``threads``: an integer >= 1, or ``None``/``"auto"`` for
    :func:`default_threads`."""
    if threads is None or threads == "auto":
        return default_threads()
    return check_int("threads", threads, minimum=1)


def set_threads(threads: int | str | None) -> int:
    """Set torch's intra-op threads (:func:`resolve_threads`) and return the number set."""
    count = resolve_threads(threads)
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count
