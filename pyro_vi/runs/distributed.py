"""Runs under ``torchrun``: the default process group from the environment, and rank 0 deciding.

``torchrun --nproc_per_node=N -m pyro_vi train spec.toml`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous in their environment.
:func:`init_from_environment` makes the default process group (nccl on CUDA, each process on
GPU ``LOCAL_RANK``; gloo on the CPU), and :func:`pyro_vi.train.fit` then trains data-parallel
(:mod:`pyro_vi.train.distributed`). In a run, rank 0 alone decides the folder and writes it
(:func:`on_rank_zero` shares its decision, or its error, with every rank, so that all fail
together rather than some hang); the other ranks train, wait for the end of training (a
barrier) and return, while rank 0 evaluates and draws the figures alone.

The same from Python, in a script started by ``torchrun``::

    from pyro_vi.runs import init_from_environment, train_spec
    from pyro_vi.spec import load_spec

    spec = load_spec("configs/vae_digits.toml")
    init_from_environment(spec.training["device"])
    train_spec(spec, "runs/ddp")
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from pyro_vi.devices import resolve_device
from pyro_vi.train.distributed import is_distributed, rank, world_size

__all__ = [
    "FINAL_WAIT",
    "barrier",
    "close",
    "init_from_environment",
    "is_distributed",
    "on_rank_zero",
    "rank",
    "rank_device",
    "waiting_group",
    "world_size",
]

T = TypeVar("T")


def _launched_world() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ValueError(
            f"WORLD_SIZE must be an integer (set by torchrun), got {os.environ['WORLD_SIZE']!r}"
        ) from None


def init_from_environment(device: str | torch.device = "cpu") -> bool:
    """Make the default process group when started by ``torchrun`` with more than one process.

    Arguments:
        device: The run's device: a CUDA device means nccl, with this process on GPU
            ``LOCAL_RANK``; the CPU means gloo.

    Returns:
        Whether training will be data-parallel (``False`` in a plain process, where nothing is
        done; an existing default group is kept).

    Raises:
        ValueError: CUDA is asked for but this machine lacks it, or has fewer GPUs than
            ``LOCAL_RANK`` needs.
    """
    if dist.is_available() and dist.is_initialized():
        return is_distributed()
    if _launched_world() <= 1 or not dist.is_available():
        return False
    if resolve_device(device).type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        count = torch.cuda.device_count()
        if local >= count:
            raise ValueError(
                f"LOCAL_RANK={local} needs GPU {local}, but this machine has {count}: start at "
                f"most {count} processes per node (torchrun --nproc_per_node={count})"
            )
        torch.cuda.set_device(local)
        dist.init_process_group(backend="nccl")
    else:
        dist.init_process_group(backend="gloo")
    return is_distributed()


def rank_device(device: str | torch.device) -> torch.device:
    """The device of this process: under data-parallel CUDA training, this rank's GPU (the one
    :func:`init_from_environment` set) whatever index ``device`` names; else ``device``."""
    resolved = resolve_device(device)
    if resolved.type == "cuda" and is_distributed():
        return torch.device("cuda", torch.cuda.current_device())
    return resolved


def on_rank_zero(decide: Callable[[], T], share: bool = True) -> T | None:
    """Run ``decide`` on rank 0 only, and give every rank its outcome.

    Arguments:
        decide: What rank 0 alone does (choose the run folder, write it).
        share: Send rank 0's return value to the other ranks (it must pickle); with ``False``
            they get ``None``.

    Returns:
        ``decide()``'s value (on other ranks: rank 0's, or ``None``).

    Raises:
        Exception: whatever ``decide`` raised on rank 0, on every rank.
    """
    if not is_distributed():
        return decide()
    outcome: list[Any] = [None]
    value: Any = None
    error: BaseException | None = None
    if rank() == 0:
        try:
            value = decide()
            outcome = [("ok", value if share else None)]
        except Exception as caught:
            error = caught
            outcome = [("error", _portable(caught))]
    dist.broadcast_object_list(outcome, src=0)
    kind, payload = outcome[0]
    if kind == "error":
        raise error if error is not None else payload
    return value if rank() == 0 else payload


def _portable(error: Exception) -> Exception:
    """``error`` if it pickles, else a ``RuntimeError`` with its message."""
    import pickle

    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return RuntimeError(f"rank 0 failed: {type(error).__name__}: {error}")
    return error


#: How long the other ranks wait for rank 0's final evaluation: a long IWAE-K on a large test
#: set takes minutes, past the default timeouts (nccl's is 10 minutes). Waiting longer costs
#: nothing when rank 0 fails: torchrun then stops every rank.
FINAL_WAIT = timedelta(hours=24)


def waiting_group() -> Any:
    """A gloo group (CPU, :data:`FINAL_WAIT` timeout) for the other ranks to wait for rank 0's
    evaluation in, without holding a GPU collective open; ``None`` outside data-parallel
    training. Every rank must call it (it is collective)."""
    if not is_distributed():
        return None
    return dist.new_group(backend="gloo", timeout=FINAL_WAIT)


def barrier(group: Any = None) -> None:
    """Wait for every rank of ``group`` (default: all); nothing outside data-parallel training."""
    if is_distributed():
        dist.barrier(group=group)


def close() -> None:
    """Destroy the default process group, if one is initialized.

    What still refers to it (``DistributedDataParallel``'s reducer, in a reference cycle) is
    collected first: destroyed after the group, it can abort the process at exit."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
