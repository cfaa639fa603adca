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

A program whose Python changes what a step computes without reading a tensor (a KL-annealing
weight in a closure or set by a callback, ``random.random()``, a counter) would be frozen by a
replayed graph into its first step's values. Each graph is therefore traced again on the 2nd,
4th, 8th, ..., 64th call of its batch shape and on its next call after ``fit``'s ``callback``
ran (which may set an annealing weight between epochs), and compared with the graph kept
(operations, literals and constant tensors): a difference falls back to the eager step, with
one warning. State that changes at every call shows at the 2nd; a counter the program advances
itself advances only when its Python runs, that is at each trace, and shows within the next
few; after the 64th call, only the callback (the one code of the user's that runs between
steps) can change the program, and it is checked. A trace costs about 40 replays of the step
(0.12 s for the 784-200-200-50 VAE at B=100 on one CPU thread): checking every epoch would cost
~6% of a compiled MNIST epoch. Between checks, a replayed graph computes what the last
agreeing traces computed.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pyro
import torch
from pyro.infer import ELBO

from pyro_vi._callables import modules_of
from pyro_vi.estimators import Estimator
from pyro_vi.traces import no_rng_side_effects

__all__ = ["CapturedStep", "EagerStep", "make_step"]

COMPILE_MODES = ("inductor", "graph")

#: The last call of a batch shape whose step is traced again to check it (the 2nd, 4th, ...,
#: 64th are): see the module docstring.
LAST_CHECK = 64


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
        self.traced: dict[tuple, torch.fx.GraphModule] = {}
        self.unchecked: set[tuple] = set()
        self.calls: dict[tuple, int] = {}
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

    def _trace(self, batch: Sequence[torch.Tensor]) -> torch.fx.GraphModule:
        from torch.fx.experimental.proxy_tensor import make_fx

        # Tracing runs the program once for real: it must not use up the random numbers the
        # first real call is to draw (a seeded run then draws what the eager step draws), nor
        # move the networks' running statistics (batch norm) a second time in the step.
        eager = self.eager
        with (
            pyro.validation_enabled(False),
            no_rng_side_effects(),
            _buffers_kept(modules_of(eager.model, eager.guide)),
        ):
            return make_fx(self._loss_and_grads)(self.params, *batch)

    def _compile(self, traced: torch.fx.GraphModule) -> Callable:
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

    def recheck(self) -> None:
        """Trace each graph again on its next call and compare (after ``fit``'s callback, which
        may have changed the program's Python state)."""
        self.unchecked.update(self.graphs)

    def _give_up(self, reason: str) -> None:
        self.failed = reason
        warnings.warn(
            f"compile={self.mode!r}: running eagerly from this step on, since {reason}",
            stacklevel=4,
        )

    def _graph(self, key: tuple, batch: Sequence[torch.Tensor]) -> Callable | None:
        """The graph to run for this step (the module docstring tells when it is traced), or
        ``None`` when the step must run eagerly."""
        calls = self.calls[key] = self.calls.get(key, 0) + 1
        if key not in self.graphs:
            traced = self._trace(batch)
            self.traced[key] = traced
            self.graphs[key] = self._compile(traced)
            return self.graphs[key]
        if calls <= LAST_CHECK and calls & (calls - 1) == 0:  # the 2nd, 4th, ..., 64th call
            self.unchecked.add(key)
        if key not in self.unchecked:
            return self.graphs[key]
        try:
            traced = self._trace(batch)
        except Exception as error:  # this step's Python reads a tensor, as the first did not
            first_line = str(error).splitlines()[0] if str(error) else ""
            self._give_up(
                f"the step could no longer be captured ({type(error).__name__}: {first_line})"
            )
            return None
        difference = graph_difference(self.traced[key], traced)
        if difference is None:
            self.unchecked.discard(key)
            return self.graphs[key]
        self._give_up(
            f"the program's Python computed a different step than before with the same batch "
            f"shape ({difference}): state outside the tensors (a counter or annealing weight "
            "in a closure, random.random(), ...) that a replayed graph would freeze"
        )
        return traced  # traced on this very step: what the eager step computes

    def __call__(self, batch: Sequence[torch.Tensor]) -> torch.Tensor:
        if self.failed is not None:
            return self.eager(batch)
        key = tuple((tuple(t.shape), t.dtype) for t in batch)
        graph = self._graph(key, batch)
        if graph is None:
            return self.eager(batch)
        # The graph computes the gradients itself: recording autograd history of the replay
        # would only cost time and keep every intermediate alive until the next step.
        with torch.no_grad():
            loss, *grads = graph(self.params, *batch)
        for param, grad in zip(self.params, grads, strict=True):
            param.grad = grad
        return loss


@contextlib.contextmanager
def _buffers_kept(modules: Sequence[torch.nn.Module]) -> Iterator[None]:
    """Restore the modules' buffers (in place: a traced graph keeps them as they are)."""
    buffers = [b for module in modules for b in module.buffers()]
    saved = [b.detach().clone() for b in buffers]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in zip(buffers, saved, strict=True):
                buffer.copy_(value)


def graph_difference(kept: torch.fx.GraphModule, new: torch.fx.GraphModule) -> str | None:
    """How two traces of the step differ (operations and literals, then the constant tensors
    they read), or ``None`` when they compute the same thing."""
    if kept.code != new.code:
        for old_line, new_line in zip(kept.code.splitlines(), new.code.splitlines(), strict=False):
            if old_line != new_line:
                return f"{old_line.strip()[:80]!r} became {new_line.strip()[:80]!r}"
        return "a different number of operations"
    for node in kept.graph.nodes:
        if node.op != "get_attr":
            continue
        before, after = _attribute(kept, node.target), _attribute(new, node.target)
        if before is after:  # the same buffer (e.g. running statistics), read where it is
            continue
        if not (
            isinstance(before, torch.Tensor)
            and isinstance(after, torch.Tensor)
            and before.shape == after.shape
            and before.dtype == after.dtype
            and torch.equal(before, after)
        ):
            return f"a constant tensor changed, {_show(before)} to {_show(after)}"
    return None


def _attribute(module: torch.nn.Module, target: str) -> Any:
    for part in target.split("."):
        module = getattr(module, part)
    return module


def _show(value: Any) -> str:
    if isinstance(value, torch.Tensor) and value.numel() <= 4:
        return str(value.tolist())
    return (
        type(value).__name__
        if not isinstance(value, torch.Tensor)
        else f"tensor{list(value.shape)}"
    )


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
