"""One training step's loss and gradients: eager, or captured whole and compiled.

The eager step calls the estimator's ``differentiable_loss`` and backpropagates; nothing in it
waits for the device. The captured step traces the same computation once with
``make_fx`` (model, guide, estimator and backward, one graph of ATen operations whose inputs are
the parameters and the batch; random draws stay operations, so every call draws fresh noise),
then compiles the graph with inductor (``compile="inductor"``, on CUDA with CUDA graphs,
``mode="reduce-overhead"``) or replays it as it is (``compile="graph"``: the Python of Pyro's
handlers, the estimator and the autograd engine are gone, the kernels are the eager ones). A
graph is kept per batch shape, so the short last batch of an epoch gets its own.

A program that cannot be captured (Python branching on sampled values, state the estimator
keeps between steps, an ELBO from Pyro whose ``differentiable_loss`` reads values on the host)
falls back to the eager step with one warning that names the reason.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import pyro
import torch
from pyro.infer import ELBO

from pyro_vi.estimators import Estimator
from pyro_vi.traces import no_rng_side_effects

__all__ = ["CapturedStep", "EagerStep", "make_step"]

COMPILE_MODES = ("inductor", "graph")


class EagerStep:
    """loss.backward() of the estimator's differentiable loss (or ``loss_and_grads`` for an ELBO
    without one); returns the loss as a detached tensor."""

    def __init__(self, model: Callable, guide: Callable, loss: ELBO, kwargs: dict) -> None:
        self.model, self.guide, self.loss, self.kwargs = model, guide, loss, kwargs
        self.differentiable = callable(getattr(loss, "differentiable_loss", None))

    def __call__(self, batch: Sequence[torch.Tensor]) -> torch.Tensor:
        if not self.differentiable:
            value = self.loss.loss_and_grads(self.model, self.guide, *batch, **self.kwargs)
            return torch.as_tensor(value, device=batch[0].device)
        value = self.loss.differentiable_loss(self.model, self.guide, *batch, **self.kwargs)
        if value.requires_grad:  # a program with nothing to train has no graph
            value.backward()
        return value.detach()


class CapturedStep:
    """The eager step traced into one graph per batch shape and compiled (module docstring).

    Arguments:
        eager: The eager step (its model, guide, estimator and keyword arguments).
        params: The leaves the optimizer updates; the graph returns their gradients.
        mode: ``"inductor"`` or ``"graph"``.
        device: Where the step runs (CUDA graphs on CUDA with inductor).
    """

    def __init__(
        self, eager: EagerStep, params: Sequence[torch.Tensor], mode: str, device: torch.device
    ) -> None:
        self.eager = eager
        self.params = list(params)
        self.mode = mode
        self.device = device
        self.graphs: dict[tuple, Callable] = {}
        self.failed: str | None = None

    def _loss_and_grads(self, params: list[torch.Tensor], *batch: torch.Tensor) -> tuple:
        eager = self.eager
        loss = eager.loss.differentiable_loss(eager.model, eager.guide, *batch, **eager.kwargs)
        if not loss.requires_grad:
            grads = [torch.zeros_like(p) for p in params]
        else:
            found = torch.autograd.grad(loss, params, allow_unused=True)
            grads = [
                torch.zeros_like(p) if g is None else g for p, g in zip(params, found, strict=True)
            ]
        return (loss.detach(), *grads)

    def _graph(self, batch: Sequence[torch.Tensor]) -> Callable:
        from torch.fx.experimental.proxy_tensor import make_fx

        # Tracing runs the program once for real: it must not use up the random numbers the
        # first real call is to draw (a seeded run then draws what the eager step draws).
        with pyro.validation_enabled(False), no_rng_side_effects():
            traced = make_fx(self._loss_and_grads)(self.params, *batch)
        if self.mode == "graph":
            return traced
        options = {"mode": "reduce-overhead"} if self.device.type == "cuda" else {}
        compiled = torch.compile(traced, fullgraph=True, dynamic=False, **options)

        def run(params: list[torch.Tensor], *inputs: torch.Tensor) -> Any:
            # The same random numbers as the eager step for the same seed: inductor draws with
            # torch's generators (fallback_random) instead of its own.
            from torch._inductor import config

            with config.patch(fallback_random=True):
                return compiled(params, *inputs)

        return run

    def __call__(self, batch: Sequence[torch.Tensor]) -> torch.Tensor:
        key = tuple((tuple(t.shape), t.dtype) for t in batch)
        graph = self.graphs.get(key)
        if graph is None:
            graph = self.graphs[key] = self._graph(batch)
        # The graph computes the gradients itself: recording autograd history of the replay
        # would only cost time and keep every intermediate alive until the next step.
        with torch.no_grad():
            loss, *grads = graph(self.params, *batch)
        for param, grad in zip(self.params, grads, strict=True):
            param.grad = grad
        return loss


def capture_obstacle(loss: ELBO) -> str | None:
    """Why the step of ``loss`` cannot be captured, or ``None`` when it can."""
    if not isinstance(loss, Estimator):
        return (
            f"{type(loss).__name__} is not one of pyro_vi's estimators (Pyro's ELBOs read the "
            "loss's value on the host inside differentiable_loss)"
        )
    if getattr(loss, "_averages", None):
        return (
            "the estimator keeps a running-average baseline for its score-function sites (state "
            "a captured graph cannot update); use num_particles >= 2 for leave-one-out baselines"
        )
    return None


def make_step(
    model: Callable,
    guide: Callable,
    loss: ELBO,
    kwargs: dict,
    params: Sequence[torch.Tensor],
    compile: bool | str,
    device: torch.device,
) -> EagerStep | CapturedStep:
    """The step ``fit`` runs: eager, or captured when ``compile`` asks and the program allows."""
    eager = EagerStep(model, guide, loss, kwargs)
    if not compile:
        return eager
    mode = "inductor" if compile is True else compile
    reason = capture_obstacle(loss)
    if reason is not None:
        warnings.warn(f"compile={compile!r}: running eagerly, since {reason}", stacklevel=3)
        return eager
    return CapturedStep(eager, params, mode, device)


def first_call(step: EagerStep | CapturedStep, batch: Sequence[torch.Tensor]) -> tuple:
    """(step to keep, loss): a captured step that fails on its first batch warns once with the
    reason and is replaced by the eager step."""
    if isinstance(step, CapturedStep):
        try:
            return step, step(batch)
        except Exception as error:  # any failure to trace or compile: run eagerly instead
            for param in step.params:
                param.grad = None
            warnings.warn(
                f"compile={step.mode!r}: the training step could not be captured "
                f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); "
                "running eagerly",
                stacklevel=3,
            )
            step = step.eager
    return step, step(batch)
