"""One torch optimizer over every parameter a model and guide use.

:func:`pyro_vi.train.fit` steps a plain ``torch.optim`` optimizer rather than Pyro's per-parameter
wrappers: one optimizer over all leaves, fused where the device supports it, so a step is a few
kernels and no Python loop over parameters. It accepts

- ``None``: Adam, lr 1e-3;
- a ``pyro.optim`` optimizer (``pyro.optim.Adam({...})``, ``ClippedAdam``, or a
  ``PyroLRScheduler`` such as ``pyro.optim.ExponentialLR``): the same torch class and arguments
  (and its scheduler, stepped once per epoch);
- a ``torch.optim.Optimizer`` class, or any callable ``params -> Optimizer``.

A fused Adam (or AdamW) also skips a step on the device when told the step is non-finite
(its ``found_inf``), without waiting for the host: :class:`NonFiniteGuard` uses that.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import pyro.optim
import torch

from pyro_vi._checks import describe

__all__ = ["NonFiniteGuard", "build_optimizer"]

OptimizerSpec = Any  # None, a pyro.optim.PyroOptim, a torch.optim.Optimizer class or a callable


def check_optimizer(optim: OptimizerSpec) -> None:
    """Raise ``TypeError`` unless ``optim`` is one of the accepted forms (module docstring)."""
    if optim is None or isinstance(optim, pyro.optim.PyroOptim):
        return
    if inspect.isclass(optim) and issubclass(optim, torch.optim.Optimizer):
        return
    if isinstance(optim, torch.optim.Optimizer):
        raise TypeError(
            "optim must be an optimizer *class* or a callable params -> optimizer (fit creates "
            "it over the parameters it finds), a pyro.optim optimizer, or None; got an "
            f"optimizer instance {describe(optim)}"
        )
    if not callable(optim):
        raise TypeError(
            "optim must be a pyro.optim optimizer (e.g. pyro.optim.Adam({'lr': 1e-3})), a "
            f"torch.optim.Optimizer class, a callable params -> optimizer, or None; got "
            f"{describe(optim)}"
        )


def build_optimizer(
    optim: OptimizerSpec, params: Sequence[torch.Tensor]
) -> tuple[torch.optim.Optimizer | None, Any]:
    """(torch optimizer over ``params``, its per-epoch scheduler or ``None``); no optimizer when
    there is no parameter to train."""
    check_optimizer(optim)
    if not params:
        return None, None
    if optim is None:
        return _adam(torch.optim.Adam, params, {"lr": 1e-3}), None
    if isinstance(optim, pyro.optim.PyroOptim):
        args = optim.pt_optim_args
        if callable(args):
            raise TypeError(
                "optim has per-parameter arguments (a callable optim_args); fit builds one "
                "optimizer for all parameters: give a dict of arguments"
            )
        if optim.pt_clip_args:
            raise TypeError(
                "optim has clip_args, which fit does not apply; use pyro.optim.ClippedAdam"
            )
        optimizer = _adam(optim.pt_optim_constructor, params, dict(args))
        scheduler = None
        if isinstance(optim, pyro.optim.PyroLRScheduler):
            scheduler = optim.pt_scheduler_constructor(optimizer, **optim.kwargs)
        return optimizer, scheduler
    if inspect.isclass(optim):
        return _adam(optim, params, {}), None
    optimizer = optim(list(params))
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optim(params) must return a torch optimizer, got {describe(optimizer)}")
    return optimizer, None


def _adam(cls: Callable, params: Sequence[torch.Tensor], args: dict) -> torch.optim.Optimizer:
    """``cls(params, **args)``, fused when it is torch's Adam/AdamW and the parameters allow."""
    fusable = cls in (torch.optim.Adam, torch.optim.AdamW) and _fusable(params)
    if fusable and "fused" not in args:
        args = {**args, "fused": True}
    return cls(list(params), **args)


def _fusable(params: Sequence[torch.Tensor]) -> bool:
    devices = {p.device.type for p in params}
    dtypes = {p.dtype for p in params}
    return (
        len(devices) == 1
        and devices <= {"cpu", "cuda"}
        and dtypes <= {torch.float16, torch.bfloat16, torch.float32, torch.float64}
    )


def is_fused(optimizer: torch.optim.Optimizer) -> bool:
    """Whether the optimizer skips a step on the device when its ``found_inf`` is set."""
    return type(optimizer) in (torch.optim.Adam, torch.optim.AdamW) and bool(
        optimizer.defaults.get("fused")
    )


#: Steps whose on-device flags are kept before they are folded into the guard's counters.
FOLD_EVERY = 256


class NonFiniteGuard:
    """Keeps non-finite steps out of the parameters, and tells which step went wrong.

    With a fused Adam, each step's loss is checked *on the device*: the optimizer skips the step
    when the loss is NaN or infinite (its ``found_inf``), and the guard keeps the step's flag,
    all without a host synchronization. The flags are folded into a count and the first bad step
    every :data:`FOLD_EVERY` steps and at each report (two small operations a step, a few a
    fold). Other optimizers are checked on the host before their step. Either way,
    :meth:`report` (called every so many steps and at each epoch's end) returns the first bad
    step since the last report, or ``None``.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer | None,
        device: torch.device,
        agree: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.optimizer = optimizer
        self.agree = agree
        self.on_device = optimizer is not None and is_fused(optimizer)
        # found_inf is read as float32 by the fused kernels.
        self._good = torch.zeros((), dtype=torch.float32, device=device)
        self._bad = torch.ones((), dtype=torch.float32, device=device)
        self._count = torch.zeros((), dtype=torch.float32, device=device)
        self._first = torch.full((), -1.0, dtype=torch.float64, device=device)
        self._flags: list[torch.Tensor] = []
        self._steps: list[int] = []
        self._host_first: int | None = None

    def step(self, loss: torch.Tensor, step: int) -> None:
        """The optimizer step for ``loss`` (already backpropagated), unless it is non-finite."""
        if self.on_device:
            bad = torch.where(torch.isfinite(loss.detach()), self._good, self._bad)
            if self.agree is not None:  # data-parallel: skip on every rank or on none
                bad = self.agree(bad)
            self.optimizer.found_inf = bad
            self.optimizer.grad_scale = None
            self.optimizer.step()
            self._flags.append(bad)
            self._steps.append(step)
            if len(self._flags) >= FOLD_EVERY:
                self._fold()
            return
        finite = torch.isfinite(loss.detach()).to(torch.float32)
        if self.agree is not None:
            finite = 1 - self.agree(1 - finite)
        if bool(finite):
            if self.optimizer is not None:
                self.optimizer.step()
        elif self._host_first is None:
            self._host_first = step

    def _fold(self) -> None:
        """The kept flags into the count and the first bad step, on the device."""
        if not self._flags:
            return
        flags = torch.stack(self._flags)
        steps = self._steps
        # argmax gives the first of equal maxima: the first bad flag, when there is one.
        index = torch.argmax(flags)
        if steps == list(range(steps[0], steps[0] + len(steps))):
            first = index.to(torch.float64) + float(steps[0])
        else:  # steps not taken one after the other: look the step up
            first = torch.tensor(steps, dtype=torch.float64).to(flags.device)[index]
        found = flags.sum()
        self._first = torch.where((self._first < 0) & (found > 0), first, self._first)
        self._count = self._count + found
        self._flags, self._steps = [], []

    @property
    def checks_on_host(self) -> bool:
        return not self.on_device

    def report(self) -> tuple[int, int] | None:
        """(first bad step, number of bad steps) since the last report, or ``None``; resets."""
        if self.on_device:
            self._fold()
            count = int(self._count)
            if count == 0:
                return None
            first = int(self._first)
            self._count = torch.zeros_like(self._count)
            self._first = torch.full_like(self._first, -1.0)
            return first, count
        if self._host_first is None:
            return None
        first, self._host_first = self._host_first, None
        return first, 1
