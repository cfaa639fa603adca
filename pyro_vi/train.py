"""The training loop: minibatch SVI over epochs, on a chosen device, with a history in nats.

Losses are reported as minus the bound, in nats per datapoint: the SVI loss of a minibatch divided
by the number of datapoints it stands for (N when the model scales its plate by ``num_data = N``,
the batch size otherwise).
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pyro
import pyro.optim
import torch
from pyro import poutine
from pyro.infer import ELBO, SVI, Trace_ELBO
from tqdm.auto import tqdm

from pyro_vi import estimators
from pyro_vi._callables import eval_mode, modules_of
from pyro_vi._checks import check_float, check_int, describe
from pyro_vi.devices import resolve_device

Batchable = Any  # a Tensor, or anything with len(), [LongTensor] indexing and .to(device)


@dataclass
class History:
    """What :func:`fit` measured, one entry per completed epoch.

    Attributes:
        train_loss: Minus the bound, nats per datapoint, averaged over the epoch's minibatches.
        test_loss: Minus the bound on the test data at the end of each epoch, nats per datapoint
            (empty without test data).
        seconds: Wall-clock seconds of each epoch's training steps.
        interrupted: True when training stopped early on ``KeyboardInterrupt``.
        bound: What the losses are minus of: the estimator's name (``"elbo"``, ``"iwae"``, ...)
            or, for another Pyro ELBO, its class name.
        out_of_time: True when training stopped at ``max_seconds``.
    """

    train_loss: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    interrupted: bool = False
    bound: str = "elbo"
    out_of_time: bool = False

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, with the bounds alongside the losses (minus the bounds)."""
        out = asdict(self)
        out["train_bound"] = [-v for v in self.train_loss]
        out["test_bound"] = [-v for v in self.test_loss]
        out["unit"] = "nats per datapoint"
        return out


class TrainingDivergedError(FloatingPointError):
    """The loss became NaN or infinite; ``history`` holds the epochs completed before that."""

    def __init__(self, message: str, history: History) -> None:
        super().__init__(message)
        self.history = history


def _as_tuple(name: str, data: Batchable | Sequence[Batchable]) -> tuple[Batchable, ...]:
    items = tuple(data) if isinstance(data, tuple | list) else (data,)
    if not items:
        raise ValueError(
            f"{name} must hold at least one tensor, got an empty {type(data).__name__}"
        )
    for item in items:
        if not (hasattr(item, "__len__") and hasattr(item, "__getitem__") and hasattr(item, "to")):
            raise TypeError(
                f"{name} must be a torch.Tensor (or a tuple of them, passed to the model as "
                f"positional arguments), got {describe(item)}"
            )
    lengths = {len(item) for item in items}
    if len(lengths) != 1:
        raise ValueError(f"{name} holds tensors of different lengths {sorted(lengths)}")
    if lengths == {0}:
        raise ValueError(f"{name} is empty: it must hold at least one datapoint")
    return items


def _accepts_num_data(fn: Callable) -> bool:
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "num_data" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def _move_params(model: Callable, guide: Callable, args: tuple, device: torch.device) -> None:
    """Put every module and every Pyro param that model and guide use on ``device``."""
    for module in modules_of(model, guide):
        module.to(device)
    # Free-standing pyro.param tensors live in the param store, not in a module: find the ones
    # this model and guide use by tracing them once, and move those.
    with poutine.trace(param_only=True) as param_capture, poutine.block(hide_types=["sample"]):
        guide_trace = poutine.trace(guide).get_trace(*args)
        poutine.replay(model, trace=guide_trace)(*args)
    store = pyro.get_param_store()
    for name in param_capture.trace.param_nodes:
        if name in store and store[name].device != device:
            store[name] = store[name].detach().to(device)


def evaluate_loss(
    model: Callable,
    guide: Callable,
    data: Batchable | Sequence[Batchable],
    loss: ELBO | None = None,
    batch_size: int = 1000,
) -> float:
    """Minus the bound on ``data``, in nats per datapoint, computed in batches without gradients.

    Arguments:
        model, guide: Pyro callables taking the data tensors as positional arguments.
        data: A tensor, or a tuple of tensors of the same length.
        loss: The estimator (default ``Trace_ELBO()``); its ``loss`` must return the bound summed
            over the batch, negated.
        batch_size: Datapoints per evaluation batch; bounds memory, not the result.

    Returns:
        sum over batches of loss / number of datapoints.
    """
    items = _as_tuple("data", data)
    loss = Trace_ELBO() if loss is None else loss
    batch_size = check_int("batch_size", batch_size, minimum=1)
    with eval_mode(model, guide):
        total, count = 0.0, len(items[0])
        for start in range(0, count, batch_size):
            batch = tuple(item[start : start + batch_size] for item in items)
            total += loss.loss(model, guide, *batch)
    return total / count


def fit(
    model: Callable,
    guide: Callable,
    train_data: Batchable | Sequence[Batchable],
    *,
    test_data: Batchable | Sequence[Batchable] | None = None,
    loss: ELBO | str | None = None,
    optim: pyro.optim.PyroOptim | None = None,
    epochs: int = 10,
    batch_size: int = 100,
    device: str | torch.device | None = None,
    seed: int | None = None,
    progress: bool = True,
    callback: Callable[[int, History], None] | None = None,
    max_seconds: float | None = None,
) -> History:
    """Train ``model`` and ``guide`` by minibatch SVI for a number of epochs.

    Each step maximizes the bound that ``loss`` estimates on a shuffled minibatch. When both model
    and guide accept a ``num_data`` keyword, they receive ``num_data = N`` (the size of the training
    set) so that their data plate scales the minibatch by N / B; the reported losses are then
    divided by N, otherwise by B. Either way they are in nats per datapoint.

    Arguments:
        model, guide: Pyro callables ``model(*data_tensors, [num_data=N])``. If they are
            ``nn.Module``\\ s (or bound methods of one) they are moved to ``device``.
        train_data: A tensor ``[N, ...]`` (or a tuple of tensors of length N, e.g. images and
            labels); anything with ``len``, indexing by a LongTensor and ``.to`` works, such as
            :class:`pyro_vi.data.DynamicBinarization`.
        test_data: Evaluated with the same estimator at the end of each epoch.
        loss: Any Pyro ``ELBO`` (default ``Trace_ELBO()``), or the name of one of
            :mod:`pyro_vi.estimators` with its default options (``"iwae"``, ``"dreg"``, ...).
        optim: Any ``pyro.optim`` optimizer (default ``Adam(lr=1e-3)``); a ``PyroLRScheduler`` is
            stepped once per epoch.
        epochs: Number of passes over the training data.
        batch_size: Minibatch size B.
        device: "cpu", "cuda", "cuda:1", a ``torch.device`` or None (CPU).
        seed: Seeds Pyro, torch and the shuffling when given.
        progress: Show a tqdm progress bar over epochs.
        callback: Called as ``callback(epoch, history)`` after each epoch (e.g. to checkpoint).
        max_seconds: A training-time budget: training stops after the first step that ends past
            it (the last epoch may then be partial; its train loss averages the steps taken, and
            the test loss is still evaluated). Evaluation time does not count. For comparisons
            on matched compute.

    Returns:
        The :class:`History`. A ``KeyboardInterrupt`` stops training at the current step and the
        history so far is returned with ``interrupted=True``; the parameters keep their values.

    Raises:
        TrainingDivergedError: the loss became NaN or infinite (the history is attached).

    Example:
        >>> history = fit(model, guide, data.train, test_data=data.test, epochs=5)
        >>> history.test_loss[-1]  # minus the test ELBO, nats per datapoint
    """
    train_items = _as_tuple("train_data", train_data)
    test_items = None if test_data is None else _as_tuple("test_data", test_data)
    if not callable(model):
        raise TypeError(f"model must be a callable Pyro model, got {describe(model)}")
    if not callable(guide):
        raise TypeError(f"guide must be a callable Pyro guide, got {describe(guide)}")
    loss = Trace_ELBO() if loss is None else loss
    if isinstance(loss, str):
        loss = estimators.get(loss)
    if not isinstance(loss, ELBO):
        raise TypeError(
            f"loss must be a pyro.infer.ELBO instance or an estimator name, got {describe(loss)}"
        )
    optim = pyro.optim.Adam({"lr": 1e-3}) if optim is None else optim
    if not isinstance(optim, pyro.optim.PyroOptim):
        raise TypeError(f"optim must be a pyro.optim optimizer, got {describe(optim)}")
    epochs = check_int("epochs", epochs, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {describe(callback)}")
    if max_seconds is not None:
        max_seconds = check_float("max_seconds", max_seconds, minimum=0.0, exclusive_minimum=True)
    device = resolve_device(device)
    if seed is not None:
        pyro.set_rng_seed(check_int("seed", seed))

    train_items = tuple(item.to(device) for item in train_items)
    if test_items is not None:
        test_items = tuple(item.to(device) for item in test_items)
    num_data = len(train_items[0])
    batch_size = min(batch_size, num_data)
    scaled = _accepts_num_data(model) and _accepts_num_data(guide)
    kwargs = {"num_data": num_data} if scaled else {}
    _move_params(model, guide, tuple(item[:batch_size] for item in train_items), device)

    svi = SVI(model, guide, optim, loss=loss)
    history = History(bound=getattr(loss, "name", "") or type(loss).__name__)
    modules = modules_of(model, guide)
    bar = tqdm(range(epochs), desc="training", unit="epoch", disable=not progress)
    try:
        for epoch in bar:
            for module in modules:
                module.train()
            start, epoch_loss, seen = time.perf_counter(), 0.0, 0
            order = torch.randperm(num_data, device=device)
            for step, first in enumerate(range(0, num_data, batch_size)):
                if (
                    max_seconds is not None
                    and sum(history.seconds) + (time.perf_counter() - start) >= max_seconds
                ):
                    history.out_of_time = True
                    break
                index = order[first : first + batch_size]
                step_loss = svi.step(*(item[index] for item in train_items), **kwargs)
                if not math.isfinite(step_loss):
                    raise TrainingDivergedError(
                        f"the loss became {step_loss} at epoch {epoch + 1}, step {step + 1}; "
                        "lower the learning rate or check the data and the model",
                        history,
                    )
                # Per datapoint: the loss stands for N points when scaled, for B otherwise.
                epoch_loss += step_loss / (num_data if scaled else len(index)) * len(index)
                seen += len(index)
            if seen == 0:
                break
            history.seconds.append(time.perf_counter() - start)
            history.train_loss.append(epoch_loss / seen)
            if test_items is not None:
                history.test_loss.append(evaluate_loss(model, guide, test_items, loss))
            if isinstance(optim, pyro.optim.PyroLRScheduler):
                optim.step()
            postfix = {"train": f"{history.train_loss[-1]:.3f}"}
            if history.test_loss:
                postfix["test"] = f"{history.test_loss[-1]:.3f}"
            bar.set_postfix(postfix)
            if callback is not None:
                callback(epoch, history)
            if history.out_of_time:
                break
    except KeyboardInterrupt:
        history.interrupted = True
    finally:
        bar.close()
    return history
