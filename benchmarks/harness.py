"""The harness every benchmark script shares (``benchmarks/`` is not a package: scripts import
this sibling file by name): the machine and versions a result was measured on, the load other
processes put on the machine meanwhile, interleaved timing of several variants, peak memory of a
step, and writing a result as strict JSON beside its markdown table.
"""

from __future__ import annotations

import ctypes
import gc
import json
import math
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import pyro_vi
from pyro_vi.devices import environment as run_environment
from pyro_vi.machine import OtherLoad  # the benchmarks import it from here

#: A block of rounds counts when other processes used at most this share of the CPU time.
QUIET_LOAD = 0.2
#: Minimum duration of a block of rounds, for the load measurement (10 ms ticks).
BLOCK_SECONDS = 0.25


def environment(device: torch.device | str | None = None) -> dict[str, Any]:
    """Device, versions (pyro_vi and its git commit too), threads and date of a measurement."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {
        **run_environment(device),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "pyro_vi": pyro_vi.__version__,
        "git_commit": commit,
    }


def synchronizer(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def time_variants(
    steps: dict[str, Callable[[], float]],
    warmup: int,
    repeats: int,
    sync: Callable[[], None],
    quiet_load: float | None = QUIET_LOAD,
    max_seconds: float = 45.0,
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """ms per step of each variant, interleaved round-robin (one step of each variant per round;
    the starting variant rotates, so none always runs right after the same neighbour).

    Rounds are timed in blocks of at least ``BLOCK_SECONDS``; a block counts only when other
    processes used at most ``quiet_load`` of the machine's CPU time meanwhile (``None``: every
    block counts), because on a busy machine a two-thread step slows down several-fold and
    unevenly. Blocks are timed until ``repeats`` quiet rounds are in, or, after at least
    ``repeats`` rounds, until ``3 * repeats`` rounds or ``max_seconds`` have passed; if fewer
    than a third of the rounds wanted were quiet, every round is used and the row is flagged.

    Returns:
        (samples per variant, facts about the rounds: counts, mean other load, ``quiet``).
    """
    labels = list(steps)
    for label in labels:
        for _ in range(warmup):
            steps[label]()
    sync()
    quiet: dict[str, list[float]] = {label: [] for label in labels}
    every: dict[str, list[float]] = {label: [] for label in labels}
    loads: list[tuple[float, int]] = []  # (other load, rounds) of each quiet block
    all_loads: list[tuple[float, int]] = []
    block, rounds, started = 1, 0, time.perf_counter()
    meter = OtherLoad()
    while True:
        meter.share()  # restart the meter
        block_start = time.perf_counter()
        samples: dict[str, list[float]] = {label: [] for label in labels}
        for _ in range(block):
            shift = rounds % len(labels)
            rounds += 1
            for label in labels[shift:] + labels[:shift]:
                start = time.perf_counter()
                steps[label]()
                sync()
                samples[label].append(1e3 * (time.perf_counter() - start))
        load = meter.share()
        for label in labels:
            every[label] += samples[label]
        if load is not None:
            all_loads.append((load, block))
        if quiet_load is None or load is None or load <= quiet_load:
            for label in labels:
                quiet[label] += samples[label]
            if load is not None:
                loads.append((load, block))
        # Blocks long enough for /proc/stat's 10 ms ticks to measure the load.
        elapsed = time.perf_counter() - block_start
        block = min(repeats, max(1, math.ceil(BLOCK_SECONDS * block / max(elapsed, 1e-6))))
        count = len(quiet[labels[0]])
        if count >= repeats:
            break
        if quiet_load is None:
            block = repeats - count
        if rounds >= repeats and (
            rounds >= 3 * repeats or time.perf_counter() - started > max_seconds
        ):
            break
    enough = len(quiet[labels[0]]) >= max(1, repeats // 3)
    used, used_loads = (quiet, loads) if enough else (every, all_loads)
    weight = sum(n for _, n in used_loads)
    facts = {
        "rounds": rounds,
        "quiet_rounds": len(quiet[labels[0]]),
        "rounds_used": len(used[labels[0]]),
        "only_quiet_rounds": enough,
        "other_cpu_load": None
        if not weight
        else round(sum(load * n for load, n in used_loads) / weight, 3),
    }
    return used, facts


class PeakMemory:
    """Peak memory of one step above what was in use before it, in MiB.

    CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (exact for
    tensors; the caching allocator's reserve is not counted). CPU: the process's peak resident set
    (``VmHWM``), reset before the step through ``/proc/self/clear_refs``, minus the resident set
    before it, after ``gc.collect()`` and ``malloc_trim(0)``. That counts every page the step
    touches for the first time (tensors, autograd buffers, allocator and Python objects) but
    misses memory the allocator reuses from pages it kept resident, so it is a lower bound on the
    working set and reads a few MiB noisy; tracemalloc cannot see torch's allocations at all. Where
    the peak cannot be reset (not Linux), the value is ``None``.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.method = (
            "torch.cuda.max_memory_allocated - memory_allocated before the step"
            if device.type == "cuda"
            else "VmHWM - VmRSS before the step (peak reset via /proc/self/clear_refs; gc.collect "
            "and malloc_trim(0) first): pages first touched by the step, a lower bound"
        )
        try:
            self._libc = ctypes.CDLL("libc.so.6")
        except OSError:
            self._libc = None

    def __call__(self, step: Callable[[], float]) -> float | None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            before = torch.cuda.memory_allocated(self.device)
            step()
            torch.cuda.synchronize(self.device)
            return (torch.cuda.max_memory_allocated(self.device) - before) / 2**20
        if self._libc is not None:
            self._libc.malloc_trim(0)
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            return None
        before = _proc_status_kib("VmRSS")
        step()
        peak = _proc_status_kib("VmHWM")
        if before is None or peak is None:
            return None
        return max(peak - before, 0) / 1024


def _proc_status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def add_quiet_load_option(parser: Any) -> None:
    """``--quiet-load``: the share of CPU time other processes may take in a block of rounds that
    counts (see :func:`time_variants`)."""
    parser.add_argument(
        "--quiet-load",
        type=float,
        default=QUIET_LOAD,
        help="use only blocks of rounds in which other processes took at most this share of "
        f"the CPU time (default {QUIET_LOAD}; 1 uses every round)",
    )


def summarize(samples: list[float]) -> dict[str, float]:
    quartiles = statistics.quantiles(samples, n=4) if len(samples) > 1 else samples * 3
    return {
        "ms_median": statistics.median(samples),
        "ms_p25": quartiles[0],
        "ms_p75": quartiles[2],
        "n": len(samples),
    }


def write_results(out: str | Path, stem: str, result: dict[str, Any], markdown: str) -> Path:
    """``<out>/<stem>.json`` (strict JSON: NaN or infinity would be rejected by other readers)
    and ``<out>/<stem>.md``; returns the JSON's path."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.json"
    path.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    (folder / f"{stem}.md").write_text(markdown)
    return path


# -- data -------------------------------------------------------------------------------------

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
#: Sizes of the random stand-in data (tests and timings only).
RANDOM_SIZES = {"train": 200, "test": 100}


def default_data_dir() -> str | None:
    """``$PYRO_VI_DATA``, else ``../shared/data`` beside the checkout when it exists."""
    configured = os.environ.get("PYRO_VI_DATA")
    if configured:
        return configured
    return str(SHARED_DATA) if SHARED_DATA.is_dir() else None


def binarized_mnist(
    script: str, data_dir: str | None, random_data: bool, seed: int
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(train ``[N, 1, 28, 28]``, test, description): fixed binarized MNIST from ``data_dir``,
    or random Bernoulli(0.13) images (MNIST's mean pixel value) for tests and timings."""
    if random_data:
        generator = torch.Generator().manual_seed(seed)

        def images(count: int) -> torch.Tensor:
            return torch.bernoulli(torch.full((count, 1, 28, 28), 0.13), generator=generator)

        train, test = images(RANDOM_SIZES["train"]), images(RANDOM_SIZES["test"])
        return train, test, "random Bernoulli(0.13) 28x28 images (--random-data)"
    if data_dir is None:
        raise SystemExit(
            f"{script}: no data directory: pass --data-dir DIR (a folder holding "
            "binarized-mnist/binarized_mnist_{train,valid,test}.amat), set $PYRO_VI_DATA, or "
            "use --random-data for a timing-only run"
        )
    from pyro_vi.data import load

    data = load("binarized-mnist", data_dir)
    return data.train, data.test, "fixed binarized MNIST (Larochelle & Murray), binarized-mnist/"
