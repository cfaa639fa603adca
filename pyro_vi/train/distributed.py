"""Data-parallel training on torch.distributed: one process per GPU (nccl) or CPU worker (gloo).

Under ``torchrun`` (or any initialized default process group), :func:`pyro_vi.train.fit` trains
data-parallel with torch's own pieces:

- each rank reads its shard of every epoch through ``DistributedSampler`` (the same seed, and
  ``set_epoch``), and the data plate keeps ``size`` = the global dataset size N while a rank's
  minibatch is its local B, so each rank's loss is an unbiased estimate of the whole objective
  (scaled N / B) and their mean is one over the union of the batches;
- parameters, Pyro's lazily created ones included, are created by a warm-up step first, and only
  then wrapped in ``DistributedDataParallel``, which broadcasts rank 0's values (a program
  wrapped before would leave later parameters unsynchronized, and the replicas would drift apart:
  a parameter appearing after the wrap is an error); gradients are averaged by DDP's all-reduce;
- each rank draws its own noise (its generators are seeded with ``seed + rank``);
- a step whose loss is not finite on any rank is skipped on every rank;
- rank 0 alone writes checkpoints (with every rank's random number generators), logs and figures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pyro
import torch
import torch.distributed as dist
from torch import nn

__all__ = ["DataParallel", "is_distributed", "rank", "shard", "world_size"]


def is_distributed() -> bool:
    """Whether a default process group with more than one process is initialized."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def shard(num_data: int, epoch: int, seed: int, device: torch.device) -> torch.Tensor:
    """This rank's indices for ``epoch``: ``DistributedSampler`` over the N datapoints with the
    same seed on every rank, shuffled anew each epoch (``set_epoch``), padded so that every rank
    takes the same number of steps."""
    sampler = torch.utils.data.DistributedSampler(
        range(num_data), num_replicas=world_size(), rank=rank(), shuffle=True, seed=seed
    )
    sampler.set_epoch(epoch)
    return torch.tensor(list(iter(sampler)), dtype=torch.long, device=device)


class _Parameters(nn.Module):
    """Every optimized leaf as a parameter of one module, with a forward that computes the loss:
    what ``DistributedDataParallel`` wraps."""

    def __init__(self, params: Sequence[nn.Parameter], loss: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.leaves = nn.ParameterList(params)
        self._loss = loss

    def forward(self, *batch: torch.Tensor) -> torch.Tensor:
        return self._loss(*batch)


def as_parameters(params: list[torch.Tensor]) -> list[nn.Parameter]:
    """The leaves as ``nn.Parameter``\\ s (DDP syncs parameters only): Pyro's param store keeps
    plain tensors for ``pyro.param``; those are replaced, in the store, by parameters that share
    their storage, so that the program reads the same objects DDP synchronizes."""
    store = pyro.get_param_store()
    converted = []
    for leaf in params:
        if isinstance(leaf, nn.Parameter):
            converted.append(leaf)
            continue
        parameter = nn.Parameter(leaf.detach(), requires_grad=True)
        name = store._param_to_name.get(leaf)
        if name is not None:
            store._params[name] = parameter
            store._param_to_name.pop(leaf, None)
            store._param_to_name[parameter] = name
        converted.append(parameter)
    return converted


class DataParallel:
    """The loss through ``DistributedDataParallel`` over every parameter (module docstring).

    Arguments:
        params: The leaves, already created (after the warm-up).
        loss: ``loss(*batch) -> Tensor``, the estimator's differentiable loss.
        device: The rank's device (its CUDA device for nccl).
    """

    def __init__(
        self, params: list[nn.Parameter], loss: Callable[..., torch.Tensor], device: torch.device
    ) -> None:
        self.count = len(pyro.get_param_store())
        holder = _Parameters(params, loss)
        device_ids = [device.index] if device.type == "cuda" and device.index is not None else None
        # Parameters the loss does not reach on some step (a branch of the program) must not
        # stall the all-reduce: unused ones are found on each step.
        self.module = nn.parallel.DistributedDataParallel(
            holder, device_ids=device_ids, find_unused_parameters=True
        )

    def __call__(self, *batch: torch.Tensor) -> torch.Tensor:
        return self.module(*batch)

    def check_no_new_parameters(self) -> None:
        if len(pyro.get_param_store()) != self.count:
            raise RuntimeError(
                "a Pyro parameter appeared after the model and guide were wrapped for "
                "data-parallel training; it would not be synchronized across processes and the "
                "replicas would drift apart. Create every parameter in the first call of model "
                "and guide."
            )


def all_ranks_finite(bad: torch.Tensor) -> torch.Tensor:
    """1 where any rank's step was non-finite (an all-reduce with MAX), so all skip it."""
    bad = bad.clone()
    dist.all_reduce(bad, op=dist.ReduceOp.MAX)
    return bad


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` holds on any rank (itself, without a process group)."""
    if not is_distributed():
        return flag
    # nccl reduces CUDA tensors only.
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of a tensor over the ranks."""
    value = value.clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / world_size()


def gather(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (on every rank)."""
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out
