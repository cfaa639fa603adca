"""The training loop: minibatch VI over epochs, on a chosen device, with a history in nats.

One step is the estimator's ``differentiable_loss``, its backward pass and one torch optimizer
over every parameter (fused Adam by default; :mod:`pyro_vi.train.optim`), created after a
warm-up step has created Pyro's lazily made parameters. Nothing in a step waits for the device:
losses are summed on it and read once per epoch, and a non-finite step is skipped on the device
and reported at the epoch's end (:class:`~pyro_vi.train.optim.NonFiniteGuard`). The step can be
captured whole and compiled (:mod:`pyro_vi.train.step`).

Losses are reported as minus the bound, in nats per datapoint: the loss of a minibatch divided
by the number of datapoints it stands for (N when the model scales its plate by ``num_data = N``,
the batch size otherwise).
"""

from __future__ import annotations

import copy
import inspect
import math
import signal
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import pyro.optim
import torch
from pyro import poutine
from pyro.infer import ELBO, Trace_ELBO

from pyro_vi import estimators
from pyro_vi._callables import eval_mode, modules_of
from pyro_vi._checks import check_choice, check_finite, check_float, check_int, describe
from pyro_vi._module import quiet_parameters
from pyro_vi.devices import resolve_device
from pyro_vi.progress import progress_bar
from pyro_vi.train import distributed
from pyro_vi.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from pyro_vi.train.checks import (
    accepts_num_data,
    check_call,
    check_local_guide,
    check_program,
)
from pyro_vi.train.optim import NonFiniteGuard, build_optimizer, check_optimizer
from pyro_vi.train.step import COMPILE_MODES, CapturedStep, first_call, make_step
from pyro_vi.train.threads import set_threads

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
        learning_rate: The learning rate of each epoch (of the first parameter group).
        validation_loss: Minus the bound on the validation data after each epoch.
        grad_norm: The Euclidean norm of the gradient (all parameters) of each epoch's last
            step.
        best_epoch: The epoch (0-based) with the lowest validation loss so far, or ``None``.
        stopped_early: True when the validation loss stopped improving for ``early_stopping``
            epochs.
        steps: Optimizer steps of each epoch (fewer than a full epoch's when the time budget
            cut it short).
    """

    train_loss: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    interrupted: bool = False
    bound: str = "elbo"
    out_of_time: bool = False
    learning_rate: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    steps: list[int] = field(default_factory=list)

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, with the bounds alongside the losses (minus the bounds)."""
        out = asdict(self)
        out["train_bound"] = [-v for v in self.train_loss]
        out["test_bound"] = [-v for v in self.test_loss]
        out["validation_bound"] = [-v for v in self.validation_loss]
        out["unit"] = "nats per datapoint"
        return out


class TrainingDivergedError(FloatingPointError):
    """The loss became NaN or infinite; ``history`` holds the epochs completed before that."""

    def __init__(self, message: str, history: History) -> None:
        super().__init__(message)
        self.history = history


def _loader_dataset(name: str, loader: torch.utils.data.DataLoader) -> Any:
    """The map-style dataset behind ``loader``, when fit's own batching keeps its meaning.

    fit draws its batches by index (that is what makes a resumed run exact), so a loader is read
    through its dataset: its shuffling is fit's own, its batch size the default of fit's. A
    custom sampler, batch sampler or collate function would be silently ignored: refused.
    """
    from torch.utils.data import RandomSampler, SequentialSampler
    from torch.utils.data._utils.collate import default_collate

    custom = []
    if not isinstance(loader.sampler, RandomSampler | SequentialSampler):
        custom.append(f"sampler {type(loader.sampler).__name__}")
    if loader.collate_fn is not default_collate:
        custom.append("collate_fn")
    if custom:
        raise ValueError(
            f"{name} is a DataLoader with a custom {' and '.join(custom)}, which fit cannot "
            "follow: it shuffles and batches by index itself (for exact resume); pass the "
            "map-style dataset, transformed as you need, with batch_size="
        )
    return loader.dataset


def _as_tuple(name: str, data: Batchable | Sequence[Batchable]) -> tuple[Batchable, ...]:
    if isinstance(data, torch.utils.data.DataLoader):
        data = _loader_dataset(name, data)
    if isinstance(data, torch.utils.data.Dataset) and not hasattr(data, "to"):
        # A map-style Dataset: read by index, batch by batch (each item's fields become the
        # model's positional arguments).
        from pyro_vi.data import as_batchable

        data = as_batchable(data)
    items = tuple(data) if isinstance(data, tuple | list) else (data,)
    if not items:
        raise ValueError(
            f"{name} must hold at least one tensor, got an empty {type(data).__name__}"
        )
    for item in items:
        if not (hasattr(item, "__len__") and hasattr(item, "__getitem__") and hasattr(item, "to")):
            hint = ""
            if isinstance(item, np.ndarray):
                hint = " (convert a numpy array with torch.as_tensor(array, dtype=torch.float32))"
            raise TypeError(
                f"{name} must be a torch.Tensor (or a tuple of them, passed to the model as "
                f"positional arguments), got {describe(item)}{hint}"
            )
        if isinstance(item, torch.Tensor) and item.dim() == 0:
            raise ValueError(
                f"{name} must have its datapoints along the first dimension, got a 0-dim tensor "
                f"{describe(item)}"
            )
    lengths = {len(item) for item in items}
    if len(lengths) != 1:
        raise ValueError(f"{name} holds tensors of different lengths {sorted(lengths)}")
    if lengths == {0}:
        raise ValueError(f"{name} is empty: it must hold at least one datapoint")
    for position, item in enumerate(items):
        # Datasets read lazily are not scanned (checked when loaded, or the user's own reader).
        check_finite(
            name if len(items) == 1 else f"{name}[{position}]",
            item,
            "fit needs finite data: remove or impute them (for missing values, fill them and "
            "pass a mask tensor as a further field the model reads)",
        )
    return items


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
    optim: Any = None,
    epochs: int = 10,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    seed: int | None = None,
    progress: bool = True,
    callback: Callable[[int, History], None] | None = None,
    max_seconds: float | None = None,
    compile: bool | str = False,
    threads: int | str | None = None,
    on_nonfinite: str = "raise",
    checkpoint: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: str | Path | bool | None = None,
    tag: str | None = None,
    validation_data: Batchable | Sequence[Batchable] | None = None,
    early_stopping: int | None = None,
    best_checkpoint: str | Path | None = None,
    best_callback: Callable[[int, History], None] | None = None,
) -> History:
    """Train ``model`` and ``guide`` by minibatch variational inference for a number of epochs.

    Each step maximizes the bound that ``loss`` estimates on a shuffled minibatch. When both model
    and guide accept a ``num_data`` keyword, they receive ``num_data = N`` (the size of the training
    set) so that their data plate scales the minibatch by N / B; the reported losses are then
    divided by N, otherwise by B. Either way they are in nats per datapoint.

    Before training, the data are checked (at least one datapoint; no NaN or infinite value in
    a tensor) and so is the program, on the first batch: model and guide must take the data's
    fields as positional arguments; when given ``num_data``, the model must scale its sites by
    N / B and the guide its local latents alike (a program that ignores it, through
    ``**kwargs`` say, would train a different bound); with a Pyro ELBO, every latent of the
    model needs a guide site of the same name (Pyro only warns). That run draws from forks of
    the random number generators, so training is the same with or without it.

    Arguments:
        model, guide: Pyro callables ``model(*data_tensors, [num_data=N])``. The networks behind
            them (modules, bound methods, closures) are moved to ``device``.
        train_data: A tensor ``[N, ...]`` (or a tuple of tensors of length N, e.g. images and
            labels); anything with ``len``, indexing by a LongTensor and ``.to`` works, such as
            :class:`pyro_vi.data.DynamicBinarization`; a map-style ``torch.utils.data.Dataset``
            is read through :func:`pyro_vi.data.as_batchable`, and a ``DataLoader`` through its
            dataset (fit shuffles and batches by index itself; a custom sampler or collate
            function is refused).
        test_data: Evaluated with the same estimator at the end of each epoch.
        loss: Any Pyro ``ELBO`` (default ``Trace_ELBO()``), or the name of one of
            :mod:`pyro_vi.estimators` with its default options (``"iwae"``, ``"dreg"``, ...).
        optim: ``None`` (Adam, lr 1e-3), a ``pyro.optim`` optimizer (its torch class and
            arguments are used for one torch optimizer over all parameters; a
            ``PyroLRScheduler``'s scheduler is stepped once per epoch), a ``torch.optim``
            class, or a callable ``params -> torch optimizer``.
        epochs: Number of passes over the training data.
        batch_size: Minibatch size B (default: a ``DataLoader``'s batch size, else 100).
        device: "cpu", "cuda", "cuda:1", a ``torch.device`` or None (CPU).
        seed: Seeds Pyro, torch and the shuffling when given.
        progress: Show progress over epochs (a bar on a terminal, periodic lines in a log).
        callback: Called as ``callback(epoch, history)`` after each epoch (e.g. to checkpoint).
            It may change the program's Python state (an annealing weight): a captured step
            (``compile``) is then traced again and compared, unless the callback is marked
            ``callback.changes_program = False`` (one that only writes files or logs).
        max_seconds: A training-time budget: training stops after the first step that ends past
            it (the last epoch may then be partial; its train loss averages the steps taken, and
            the test loss is still evaluated). Evaluation time does not count.
        compile: ``False``; ``True`` or ``"inductor"`` to capture the whole step (model, guide,
            estimator, backward) in one graph and compile it with inductor (CUDA graphs on a
            GPU); ``"graph"`` to replay the captured graph without compiling it. Programs that
            cannot be captured run eagerly, with one warning saying why
            (:mod:`pyro_vi.train.step`).
        threads: torch's CPU threads: an integer, or ``None``/``"auto"`` for the physical cores
            available to the process less those other processes keep busy
            (:func:`pyro_vi.train.threads.default_threads`); restored afterwards.
        on_nonfinite: ``"raise"``: a step whose loss is NaN or infinite is not applied, and
            training stops with :class:`TrainingDivergedError` naming the epoch, step, estimator
            and sites (the parameters and optimizer keep their last good state); ``"skip"``: such
            steps are skipped with a warning and training goes on.
        checkpoint: A file to keep the run's state in (:mod:`pyro_vi.train.checkpoint`): written
            atomically at every epoch's end, every ``checkpoint_every`` steps, and when SIGINT
            or SIGTERM asks training to stop (it stops after the current step).
        checkpoint_every: Steps between checkpoints (``None``: at epochs' ends only).
        resume: A checkpoint to continue from (``True``: ``checkpoint``). The run goes on
            exactly where it stopped: parameters, optimizer and scheduler, every random number
            generator, the epoch's data order and position, the history. With the same
            arguments, the final parameters equal an uninterrupted run's bit for bit.
        tag: A string that must match between a checkpoint and the run resuming it (e.g. a
            hash of the settings); a mismatch is an error.
        validation_data: Evaluated after each epoch like ``test_data``, into
            ``History.validation_loss``; it decides early stopping and the best checkpoint.
            Keep it apart from the training data (:mod:`pyro_vi.data` splits one off).
        early_stopping: Stop when the validation loss has not improved for this many epochs
            (``History.stopped_early``); needs ``validation_data``.
        best_checkpoint: A file written (atomically) whenever the validation loss improves: the
            parameters of the best epoch, beside ``checkpoint``'s last ones; read it back with
            :func:`pyro_vi.train.load_parameters`. Needs ``validation_data``.
        best_callback: Called as ``best_callback(epoch, history)`` when the validation loss
            improves, after ``best_checkpoint`` is written and before the epoch's checkpoint
            and ``callback``: a checkpoint never records a best epoch whose parameters were not
            kept (a run folder writes its ``best.pt`` here). Needs ``validation_data``.

    Returns:
        The :class:`History`. A ``KeyboardInterrupt`` stops training at the current step and the
        history so far is returned with ``interrupted=True``; the parameters keep their values.

    Raises:
        TrainingDivergedError: a step's loss became NaN or infinite (the history is attached).
        TypeError, ValueError: a bad argument, data or program (see above), or a
            :class:`~pyro_vi.guides.LocalGuide` with ``batch_size`` below the number of
            datapoints (its per-datapoint parameters need every datapoint in each step).

    Example:
        >>> history = fit(model, guide, data.train, test_data=data.test, epochs=5)
        >>> history.test_loss[-1]  # minus the test ELBO, nats per datapoint
    """
    train_items = _as_tuple("train_data", train_data)
    test_items = None if test_data is None else _as_tuple("test_data", test_data)
    validation_items = (
        None if validation_data is None else _as_tuple("validation_data", validation_data)
    )
    if early_stopping is not None:
        early_stopping = check_int("early_stopping", early_stopping, minimum=1)
    following = early_stopping is not None or best_checkpoint is not None
    if validation_items is None and (following or best_callback is not None):
        raise ValueError(
            "early_stopping, best_checkpoint and best_callback follow the validation loss: pass "
            "validation_data as well"
        )
    if best_callback is not None and not callable(best_callback):
        raise TypeError(f"best_callback must be callable, got {describe(best_callback)}")
    if not callable(model):
        raise TypeError(f"model must be a callable Pyro model, got {describe(model)}")
    if not callable(guide):
        raise TypeError(f"guide must be a callable Pyro guide, got {describe(guide)}")
    scaled = accepts_num_data(model) and accepts_num_data(guide)
    check_call(
        "train_data", train_data, len(train_items), {"num_data": 1} if scaled else {}, model, guide
    )
    for name, data, items in (
        ("test_data", test_data, test_items),
        ("validation_data", validation_data, validation_items),
    ):
        if items is not None:
            check_call(name, data, len(items), {}, model, guide)
    loss = Trace_ELBO() if loss is None else loss
    if isinstance(loss, str):
        loss = estimators.get(loss)
    if not isinstance(loss, ELBO):
        raise TypeError(
            f"loss must be a pyro.infer.ELBO instance or an estimator name, got {describe(loss)}"
        )
    check_optimizer(optim)
    epochs = check_int("epochs", epochs, minimum=1)
    if batch_size is None:
        loader = isinstance(train_data, torch.utils.data.DataLoader)
        batch_size = train_data.batch_size if loader and train_data.batch_size else 100
    batch_size = check_int("batch_size", batch_size, minimum=1)
    check_local_guide(guide, len(train_items[0]), batch_size)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {describe(callback)}")
    if max_seconds is not None:
        max_seconds = check_float("max_seconds", max_seconds, minimum=0.0, exclusive_minimum=True)
    if not isinstance(compile, bool):
        check_choice("compile", compile, COMPILE_MODES)
    check_choice("on_nonfinite", on_nonfinite, ("raise", "skip"))
    if checkpoint_every is not None:
        checkpoint_every = check_int("checkpoint_every", checkpoint_every, minimum=1)
    saving = _Saving(checkpoint, checkpoint_every, resume, tag, best_checkpoint, best_callback)
    device = resolve_device(device)
    previous_threads = torch.get_num_threads()
    set_threads(threads)
    if seed is not None:
        seed = check_int("seed", seed, minimum=0)
        if seed >= 2**32:
            # Pyro seeds numpy too, which takes 32 bits.
            raise ValueError(f"seed must be an integer in [0, 2**32 - 1], got {seed}")
    if distributed.is_distributed():
        # The data order needs one seed on every rank; the noise, a different one per rank.
        seed = 0 if seed is None else seed
        saving.seed = seed
        pyro.set_rng_seed(seed + distributed.rank())
        if compile:
            warnings.warn(
                f"compile={compile!r} is not used in data-parallel training (the step runs "
                "eagerly through DistributedDataParallel)",
                stacklevel=2,
            )
            compile = False
    elif seed is not None:
        pyro.set_rng_seed(seed)
    saving.settings = _settings(loss, optim, batch_size, train_items, validation_items, test_items)
    try:
        history = _train(
            model,
            guide,
            train_items,
            test_items,
            loss,
            optim,
            epochs,
            batch_size,
            device,
            progress,
            callback,
            max_seconds,
            compile,
            on_nonfinite,
            saving,
            validation_items,
            early_stopping,
        )
        if distributed.is_distributed():
            # Rank 0 alone writes the checkpoints: no rank returns before the last is on disk
            # (a resume or load_parameters right after fit read the one before, and the ranks
            # then resumed from different steps and hung in the all-reduce).
            torch.distributed.barrier()
        return history
    finally:
        torch.set_num_threads(previous_threads)


def _plain(value: Any) -> Any:
    """``value`` as plain data a checkpoint can hold and an error message can show: numbers,
    strings, lists and dicts; a class by its name, anything else by its type's name."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if inspect.isclass(value) or inspect.isfunction(value):
        return value.__qualname__
    return type(value).__qualname__


def _describe_loss(loss: ELBO) -> dict[str, Any]:
    """The estimator and the options that define its bound (not Pyro's lazily set attributes)."""
    if (
        isinstance(loss, estimators.Estimator)
        and getattr(loss, "name", None) in estimators.ESTIMATORS
    ):
        names = [n for n in estimators.options(loss.name) if n != "max_plate_nesting"]
        return {"name": loss.name, **{n: _plain(getattr(loss, n, None)) for n in names}}
    return {"name": type(loss).__qualname__, "num_particles": _plain(loss.num_particles)}


def _describe_optim(optim: Any) -> Any:
    if optim is None:
        return None
    if isinstance(optim, pyro.optim.PyroOptim):
        described = {
            "optimizer": _plain(optim.pt_optim_constructor),
            "arguments": _plain(optim.pt_optim_args),
        }
        if isinstance(optim, pyro.optim.PyroLRScheduler):
            described["scheduler"] = _plain(optim.pt_scheduler_constructor)
            described["scheduler_arguments"] = _plain(optim.kwargs)
        return described
    return _plain(optim)


def _settings(
    loss: ELBO,
    optim: Any,
    batch_size: int,
    train_items: tuple,
    validation_items: tuple | None,
    test_items: tuple | None,
) -> dict[str, Any]:
    """The arguments of :func:`fit` that a resumed run must share with the checkpoint's: any
    other value of one would silently train (or report) a different run. ``epochs``,
    ``max_seconds``, ``checkpoint_every``, ``compile``, ``threads``, ``device`` and
    ``progress`` may change, and so may ``seed`` (the checkpoint restores every random
    generator and the data order, so it has no effect on a resumed run), ``early_stopping``
    and ``on_nonfinite`` (policies of when to stop, like ``epochs``: a run that stopped on a
    non-finite step may go on with ``"skip"``)."""

    def data(items: tuple | None) -> Any:
        if items is None:
            return None
        return [[len(item), _plain(list(getattr(item, "shape", [])))] for item in items]

    return {
        "loss": _describe_loss(loss),
        "optim": _describe_optim(optim),
        "batch_size": batch_size,
        "train_data": data(train_items),
        "validation_data": data(validation_items),
        "test_data": data(test_items),
    }


def _train(
    model: Callable,
    guide: Callable,
    train_items: tuple,
    test_items: tuple | None,
    loss: ELBO,
    optim: Any,
    epochs: int,
    batch_size: int,
    device: torch.device,
    progress: bool,
    callback: Callable | None,
    max_seconds: float | None,
    compile: bool | str,
    on_nonfinite: str,
    saving: _Saving,
    validation_items: tuple | None = None,
    early_stopping: int | None = None,
) -> History:
    train_items = tuple(item.to(device) for item in train_items)
    if test_items is not None:
        test_items = tuple(item.to(device) for item in test_items)
    if validation_items is not None:
        validation_items = tuple(item.to(device) for item in validation_items)
    num_data = len(train_items[0])
    batch_size = min(batch_size, num_data)
    scaled = accepts_num_data(model) and accepts_num_data(guide)
    kwargs = {"num_data": num_data} if scaled else {}
    _move_params(model, guide, tuple(item[:batch_size] for item in train_items), device)
    first = tuple(item[:batch_size] for item in train_items)
    check_program(model, guide, first, kwargs, loss, num_data)

    history = History(bound=getattr(loss, "name", "") or type(loss).__name__)
    modules = modules_of(model, guide)
    state = Trainer(model, guide, loss, kwargs, device, optim, compile, on_nonfinite)
    position = _Position()
    if saving.resume is not None:
        position = saving.restore(state, history, tuple(item[:batch_size] for item in train_items))
    bar = progress_bar(
        range(position.epoch, epochs),
        desc="training",
        unit="epoch",
        enabled=progress and distributed.rank() == 0,
        initial=position.epoch,
        total=epochs,
    )
    stop = _StopRequest()
    try:
        with stop:
            for epoch in bar:
                for module in modules:
                    module.train()
                start = time.perf_counter()
                if position.order is None or position.epoch != epoch:
                    order = (
                        distributed.shard(num_data, epoch, saving.seed, device)
                        if distributed.is_distributed()
                        else torch.randperm(num_data, device=device)
                    )
                    position = _Position(
                        epoch=epoch,
                        order=order,
                        total=torch.zeros((), device=device, dtype=torch.float64),
                    )
                order = position.order
                for index_in_epoch, first in enumerate(range(0, len(order), batch_size)):
                    if index_in_epoch < position.batch:
                        continue
                    elapsed = position.seconds + time.perf_counter() - start
                    if max_seconds is not None and sum(history.seconds) + elapsed >= max_seconds:
                        history.out_of_time = True
                        break
                    index = order[first : first + batch_size]
                    batch = tuple(item[index] for item in train_items)
                    value = state.step(batch, epoch, index_in_epoch, history)
                    position.grad_norm = None  # the gradients on the parameters are this step's
                    # Per datapoint: the loss stands for N points when scaled, for B otherwise.
                    weight = len(index) / (num_data if scaled else len(index))
                    position.total = position.total + value.double() * weight
                    position.seen += len(index)
                    position.batch = index_in_epoch + 1
                    # Every rank stops at the same step (one all-reduce per step under DDP), or
                    # the checkpoint every rank must join would not line up.
                    stopping = distributed.any_rank(stop.requested)
                    if stopping or saving.due(state.count):
                        position.seconds = position.seconds + time.perf_counter() - start
                        start = time.perf_counter()
                        saving.save(state, history, position)
                        if stopping:
                            raise KeyboardInterrupt
                steps_in_epoch = position.batch
                if position.seen == 0:
                    break
                state.end_of_epoch(epoch, history, order, batch_size, train_items)
                total = position.total
                if distributed.is_distributed():
                    total = distributed.mean_over_ranks(torch.as_tensor(total, device=device))
                history.train_loss.append(float(total) / position.seen)
                history.steps.append(steps_in_epoch)
                history.seconds.append(position.seconds + time.perf_counter() - start)
                if test_items is not None:
                    history.test_loss.append(evaluate_loss(model, guide, test_items, loss))
                if state.optimizer is not None:
                    history.learning_rate.append(float(state.optimizer.param_groups[0]["lr"]))
                    # A run resumed after the epoch's last step has no gradients of its own:
                    # the checkpoint kept that step's norm.
                    norm = position.grad_norm
                    history.grad_norm.append(state.grad_norm() if norm is None else norm)
                if validation_items is not None:
                    value = evaluate_loss(model, guide, validation_items, loss)
                    if distributed.is_distributed():
                        # Each rank draws its own noise: one mean, so that every rank takes the
                        # same decision to stop (or one would wait for the others forever).
                        value = float(
                            distributed.mean_over_ranks(torch.tensor(value, device=device))
                        )
                    history.validation_loss.append(value)
                    if history.best_epoch is None or value < min(history.validation_loss[:-1]):
                        history.best_epoch = epoch
                        saving.save_best(state, history)
                    elif (
                        early_stopping is not None and epoch - history.best_epoch >= early_stopping
                    ):
                        history.stopped_early = True
                if state.scheduler is not None:
                    state.scheduler.step()
                position = _Position(epoch=epoch + 1)
                saving.save(state, history, position, end_of_epoch=True)
                postfix = {"train": f"{history.train_loss[-1]:.3f}"}
                if history.test_loss:
                    postfix["test"] = f"{history.test_loss[-1]:.3f}"
                bar.set_postfix(postfix)
                if callback is not None and distributed.rank() == 0:
                    callback(epoch, history)
                    if isinstance(state.run, CapturedStep) and getattr(
                        callback, "changes_program", True
                    ):
                        state.run.recheck()  # the callback may have changed the program's state
                if history.out_of_time or history.stopped_early:
                    break
    except KeyboardInterrupt:
        history.interrupted = True
    finally:
        bar.close()
    return history


@dataclass
class _Position:
    """Where training is: the epoch, its data order, the next batch, the partial epoch's loss sum,
    datapoints seen and seconds spent (a resumed epoch continues from here)."""

    epoch: int = 0
    order: torch.Tensor | None = None
    batch: int = 0
    total: torch.Tensor | float = 0.0
    seen: int = 0
    seconds: float = 0.0
    grad_norm: float | None = None


class _StopRequest:
    """SIGINT and SIGTERM ask training to stop after the current step (where a checkpoint can be
    written and the parameters are consistent); a second signal stops at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def _path(name: str, value: Any, also: str = "") -> Path | None:
    """A file argument as a ``Path`` (``None`` stays ``None``)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | Path):
        raise TypeError(
            f"{name} must be {also}None or a file path (str or Path), got {describe(value)}"
        )
    return Path(value)


class _Saving:
    """Checkpoints of a run: where, how often (in steps; at each epoch's end in any case), and the
    checkpoint to resume from."""

    def __init__(
        self,
        path: str | Path | None,
        every: int | None,
        resume: str | Path | bool | None,
        tag: str | None,
        best: str | Path | None = None,
        on_best: Callable[[int, History], None] | None = None,
    ) -> None:
        self.best = _path("best_checkpoint", best)
        self.on_best = on_best
        self.path = _path("checkpoint", path)
        self.every = every
        self.tag = tag
        self.seed = 0
        self.settings: dict[str, Any] | None = None
        if resume is True:
            if self.path is None:
                raise ValueError("resume=True needs checkpoint=PATH (the checkpoint to resume)")
            resume = self.path
        self.resume = None if resume is False else _path("resume", resume, "True, False, ")

    def due(self, count: int) -> bool:
        return self.path is not None and self.every is not None and count % self.every == 0

    def save(
        self, trainer: Trainer, history: History, position: _Position, end_of_epoch: bool = False
    ) -> None:
        if self.path is None:
            return
        # Every rank's generators (each draws its own noise); rank 0 alone writes.
        rngs = distributed.gather(rng_state()) if distributed.is_distributed() else [rng_state()]
        if distributed.rank() != 0:
            return
        save_checkpoint(
            self.path,
            {
                "trainer": trainer.state_dict(),
                "history": history.to_dict(),
                "position": {
                    "epoch": position.epoch,
                    "order": position.order,
                    "batch": position.batch,
                    "total": torch.as_tensor(position.total, dtype=torch.float64),
                    "seen": position.seen,
                    "seconds": position.seconds,
                    # The norm of the last step's gradient, which a resumed run has not: the
                    # history of an epoch resumed after its last step needs it.
                    "grad_norm": trainer.grad_norm()
                    if position.grad_norm is None
                    else position.grad_norm,
                },
                "rng": rngs[0],
                "rng_per_rank": rngs,
                "seed": self.seed,
                "fingerprint": {
                    "tag": self.tag,
                    "params": trainer.signature(),
                    "settings": self.settings,
                },
            },
        )

    def save_best(self, trainer: Trainer, history: History) -> None:
        """The parameters of the best epoch so far (rank 0 writes), then ``on_best``."""
        if distributed.rank() != 0:
            return
        if self.best is not None:
            self._write_best(trainer, history)
        if self.on_best is not None:
            self.on_best(history.best_epoch, history)

    def _write_best(self, trainer: Trainer, history: History) -> None:
        save_checkpoint(
            self.best,
            {
                "trainer": trainer.state_dict(),
                "history": history.to_dict(),
                "fingerprint": {"tag": self.tag, "params": trainer.signature()},
            },
        )

    def restore(self, trainer: Trainer, history: History, batch: tuple) -> _Position:
        """Load the checkpoint into a prepared trainer and the history; the position to go on."""
        saved = load_checkpoint(self.resume, map_location=trainer.device)
        fingerprint = saved.get("fingerprint", {})
        if fingerprint.get("tag") != self.tag:
            raise CheckpointError(
                f"checkpoint {str(self.resume)!r} was written by a run tagged "
                f"{fingerprint.get('tag')!r}, not {self.tag!r}: resume it with the same settings"
            )
        saved_settings = fingerprint.get("settings")
        if saved_settings is not None and self.settings is not None:
            differ = [
                f"{key}: {saved_settings.get(key)!r} in the checkpoint, {value!r} here"
                for key, value in self.settings.items()
                if saved_settings.get(key) != value
            ]
            if differ:
                raise CheckpointError(
                    f"checkpoint {str(self.resume)!r} was written by a run with other settings "
                    f"({'; '.join(differ)}): resuming would silently train a different run; "
                    "resume with the same loss, optim, batch_size and data (epochs, "
                    "max_seconds, checkpoint_every, compile, threads, device, progress, seed, "
                    "early_stopping and on_nonfinite may change), or start afresh with "
                    "resume=False"
                )
        trainer.prepare(batch, apply=False)
        trainer.load_state_dict(saved["trainer"], fingerprint.get("params"), self.resume)
        for key, value in saved["history"].items():
            if hasattr(history, key) and key not in ("train_bound", "test_bound", "unit"):
                setattr(history, key, value)
        history.interrupted = False
        per_rank = saved.get("rng_per_rank") or [saved["rng"]]
        if len(per_rank) != distributed.world_size():
            raise CheckpointError(
                f"checkpoint {str(self.resume)!r} was written by {len(per_rank)} process(es); "
                f"resume it with as many (this run has {distributed.world_size()})"
            )
        set_rng_state(per_rank[distributed.rank()])
        self.seed = saved.get("seed", self.seed)
        position = saved["position"]
        return _Position(
            epoch=position["epoch"],
            order=position["order"],
            batch=position["batch"],
            total=position["total"],
            seen=position["seen"],
            seconds=position["seconds"],
            grad_norm=position.get("grad_norm"),
        )


class Trainer:
    """One training step as :func:`fit` takes it: the optimizer, the step function (eager or
    captured) and the non-finite guard, all made on the first step. :func:`fit` drives it; the
    speed benchmark times it.

    Arguments:
        model, guide, loss: The program and the estimator.
        kwargs: Keyword arguments of model and guide (``num_data``).
        device: Where the parameters live.
        optim: As for :func:`fit`.
        compile: As for :func:`fit`.
        on_nonfinite: As for :func:`fit`.
    """

    def __init__(
        self,
        model: Callable,
        guide: Callable,
        loss: ELBO,
        kwargs: dict,
        device: torch.device,
        optim: Any,
        compile: bool | str,
        on_nonfinite: str,
    ) -> None:
        self.model, self.guide, self.loss, self.kwargs = model, guide, loss, kwargs
        self.device, self.optim, self.compile = device, optim, compile
        self.on_nonfinite = on_nonfinite
        self.params: list[torch.Tensor] = []
        self.names: list[str] = []
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: Any = None
        self.guard: NonFiniteGuard | None = None
        self.run: Callable | None = None
        self.prepared = False
        self.captured = False
        self.count = 0
        self.parallel: distributed.DataParallel | None = None
        self.store_names: set[str] | None = None  # the param store's names after the first step

    def step(
        self, batch: tuple, epoch: int = 0, step: int = 0, history: History | None = None
    ) -> torch.Tensor:
        """One step on ``batch``; returns its loss (a detached tensor on the device)."""
        if not self.prepared:
            value = self.prepare(batch)
        else:
            for param in self.params:
                param.grad = None
            with pyro.validation_enabled(False), quiet_parameters():
                if self.parallel is not None:
                    value = self.parallel(*batch)
                    if value.requires_grad:
                        value.backward()
                    value = value.detach()
                elif not self.captured:
                    self.run, value = first_call(self.run, batch)
                    self.captured = True
                else:
                    value = self.run(batch)
        self.guard.step(value, self.count)
        self.count += 1
        if self.guard.checks_on_host:
            self._check(epoch, history, None)
        return value

    def prepare(self, batch: tuple, apply: bool = True) -> torch.Tensor:
        """The first step: creates Pyro's lazily made parameters and validates the program, then
        builds the optimizer over every parameter it found. With ``apply=False`` (before loading
        a checkpoint) its gradients are dropped, for no step to use them."""
        eager = make_step(self.model, self.guide, self.loss, self.kwargs, [], False, self.device)
        # A previous fit on the same networks, or the user's own backward, may have left
        # gradients on the parameters that exist already: the first backward would add to them.
        for _, param in pyro.get_param_store().named_parameters():
            param.grad = None
        for module in modules_of(self.model, self.guide):
            module.zero_grad(set_to_none=True)
        with poutine.trace(param_only=True) as capture:
            value = eager(batch)
        self.params, self.names = _leaves(capture.trace, self.model, self.guide)
        self.store_names = set(pyro.get_param_store().keys())
        if distributed.is_distributed() and self.params:
            # Wrapped only now that every parameter exists. DDP takes rank 0's values, so the
            # warm-up's gradients (each rank's own values) are dropped and the step is taken
            # again through DDP.
            self.params = distributed.as_parameters(self.params)
            self.parallel = distributed.DataParallel(self.params, self._loss, self.device)
            for param in self.params:
                param.grad = None
            if apply:
                with pyro.validation_enabled(False):
                    value = self.parallel(*batch)
                if value.requires_grad:
                    value.backward()
                value = value.detach()
        self.optimizer, self.scheduler = build_optimizer(self.optim, self.params)
        self.guard = NonFiniteGuard(
            self.optimizer,
            self.device,
            distributed.all_ranks_finite if distributed.is_distributed() else None,
        )
        self.run = make_step(
            self.model, self.guide, self.loss, self.kwargs, self.params, self.compile, self.device
        )
        self.prepared = True
        if not apply:
            for param in self.params:
                param.grad = None
        self._snapshot()
        return value

    def _loss(self, *batch: torch.Tensor) -> torch.Tensor:
        return self.loss.differentiable_loss(self.model, self.guide, *batch, **self.kwargs)

    def _buffers(self) -> list[torch.Tensor]:
        """The networks' buffers (running statistics), in a fixed order."""
        return [
            buffer
            for module in modules_of(self.model, self.guide)
            for buffer in module.buffers()
            if buffer.is_floating_point() or buffer.dtype == torch.long
        ]

    def grad_norm(self) -> float:
        """The norm of the last step's gradient over every parameter (one read of the device)."""
        # Detached: a replayed graph's gradients may carry autograd history of their own.
        grads = [p.grad.detach() for p in self.params if p.grad is not None]
        if not grads:
            return 0.0
        return float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))))

    def signature(self) -> list[list]:
        """[name, shape] of every optimized leaf: what a checkpoint must match."""
        return [[name, list(p.shape)] for name, p in zip(self.names, self.params, strict=True)]

    def state_dict(self) -> dict[str, Any]:
        """Parameters, optimizer, scheduler, estimator state and steps taken."""
        averages = getattr(self.loss, "_averages", None)
        return {
            "params": [p.detach().clone() for p in self.params],
            "buffers": [b.detach().clone() for b in self._buffers()],
            "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "estimator": {"averages": dict(averages)} if averages else {},
            "count": self.count,
        }

    def load_state_dict(
        self, state: dict[str, Any], signature: list | None, source: Any = "checkpoint"
    ) -> None:
        """Restore :meth:`state_dict` into a prepared trainer whose parameters match."""
        # Names may differ (this package's modules number their instances in a process); the
        # parameters must match in number, order and shape.
        here = self.signature()
        if signature is not None and [s for _, s in signature] != [s for _, s in here]:
            differ = [
                (index, saved, mine)
                for index, (saved, mine) in enumerate(zip(signature, here, strict=False))
                if saved[1] != mine[1]
            ]
            raise CheckpointError(
                f"checkpoint {str(source)!r} holds {len(signature)} parameters and this model and "
                f"guide have {len(here)}; they do not match (first differences, checkpoint vs "
                f"here: {differ[:3]}): resume with the same model, guide and options"
            )
        with torch.no_grad():
            for param, value in zip(self.params, state["params"], strict=True):
                param.copy_(value)
            buffers = self._buffers()
            saved_buffers = state.get("buffers", [])
            if len(saved_buffers) == len(buffers):  # e.g. batch-norm statistics
                for buffer, value in zip(buffers, saved_buffers, strict=True):
                    buffer.copy_(value)
        if self.optimizer is not None and state["optimizer"] is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        averages = state.get("estimator", {}).get("averages")
        if averages and hasattr(self.loss, "_averages"):
            self.loss._averages.update(averages)
        self.count = state["count"]
        self._snapshot()

    def _warn_of_new_parameters(self) -> None:
        """Pyro parameters made after the first step are in no optimizer: said once, by name."""
        if self.store_names is None:
            return
        late = sorted(set(pyro.get_param_store().keys()) - self.store_names)
        if late:
            warnings.warn(
                f"the program made the Pyro parameter(s) {late} after fit's first step; the "
                "optimizer covers the parameters of the first step only, so these stay at "
                "their initial values: make every parameter in the first call of model and "
                "guide (e.g. call pyro.param outside the branch that uses it)",
                stacklevel=2,
            )
            self.store_names.update(late)

    def _snapshot(self) -> None:
        if self.optimizer is not None:
            self.saved = (
                [p.detach().clone() for p in self.params],
                copy.deepcopy(self.optimizer.state_dict()),
            )

    def end_of_epoch(
        self, epoch: int, history: History, order: torch.Tensor, batch_size: int, items: tuple
    ) -> None:
        """Read the guard once; check the parameters; keep them as the last good state."""
        if self.parallel is not None:
            self.parallel.check_no_new_parameters()
        self._warn_of_new_parameters()
        self._check(epoch, history, (order, batch_size, items))
        if self.optimizer is None:
            return
        finite = bool(torch.isfinite(torch.stack([p.detach().sum() for p in self.params]).sum()))
        if not finite:
            # A step with a finite loss but non-finite gradients got through: back to the state
            # at the end of the previous epoch.
            params, optimizer_state = self.saved
            with torch.no_grad():
                for param, saved in zip(self.params, params, strict=True):
                    param.copy_(saved)
            self.optimizer.load_state_dict(optimizer_state)
            raise TrainingDivergedError(
                f"the parameters became non-finite during epoch {epoch + 1} (a gradient was NaN "
                f"or infinite while the loss was finite) with the {self._bound(history)!r} "
                "estimator; "
                "they and the optimizer are restored to their state after the previous epoch. "
                "Lower the learning rate or check the data and the model",
                history,
            )
        self._snapshot()

    def _bound(self, history: History | None) -> str:
        return history.bound if history is not None else type(self.loss).__name__

    def _check(self, epoch: int, history: History | None, context: tuple | None) -> None:
        report = self.guard.report()
        if report is None:
            return
        first, count = report
        where = f"epoch {epoch + 1}, step {first + 1} of the run"
        if self.on_nonfinite == "skip":
            warnings.warn(
                f"{count} step(s) with a NaN or infinite loss were skipped (the first at {where})",
                stacklevel=4,
            )
            return
        sites = ""
        if context is not None:
            sites = _diagnose(self, first, *context)
        raise TrainingDivergedError(
            f"the loss became nan or infinite at {where} with the {self._bound(history)!r} "
            "estimator"
            f"{sites}; that step was not applied, and the parameters and optimizer keep their "
            "last good state. Lower the learning rate or check the data and the model",
            history,
        )


def _diagnose(
    state: Trainer, first: int, order: torch.Tensor, batch_size: int, items: tuple
) -> str:
    """The sites whose log-density is not finite when the bad step's batch is run again (when
    it can be found: the step lies in the epoch just ended)."""
    position = first - (state.count - math.ceil(len(order) / batch_size))
    if position < 0 or not isinstance(state.loss, estimators.Estimator):
        return ""
    index = order[position * batch_size : (position + 1) * batch_size]
    batch = tuple(item[index] for item in items)
    try:
        with torch.no_grad():
            weights = state.loss.log_weights(state.model, state.guide, *batch, **state.kwargs)
    except Exception:  # the diagnosis must not hide the divergence itself
        return ""
    bad = sorted(
        {
            name
            for run in weights.passes
            for trace in (run.model_trace, run.guide_trace)
            for name, site in trace.nodes.items()
            if site["type"] == "sample" and not bool(torch.isfinite(site["log_prob"]).all())
        }
    )
    return f" (run again on that batch, sites {bad} give non-finite log-densities)" if bad else ""


def _leaves(
    trace: poutine.Trace, model: Callable, guide: Callable
) -> tuple[list[torch.Tensor], list[str]]:
    """Every leaf to optimize, with a name: the unconstrained value of each param site of the
    trace (its param-store name), and the parameters of the networks behind model and guide
    (``module<i>.<name>``), without duplicates."""
    found: dict[int, tuple[torch.Tensor, str]] = {}
    for name, site in trace.nodes.items():
        if site["type"] == "param":
            value = site["value"]
            unconstrained = getattr(value, "unconstrained", None)
            leaf = unconstrained() if callable(unconstrained) else value
            if leaf.requires_grad:
                found.setdefault(id(leaf), (leaf, name))
    for position, module in enumerate(modules_of(model, guide)):
        for name, param in module.named_parameters():
            if param.requires_grad:
                found.setdefault(id(param), (param, f"module{position}.{name}"))
    return [leaf for leaf, _ in found.values()], [name for _, name in found.values()]


def load_parameters(
    path: str | Path, model: Callable, guide: Callable, *args: Any, **kwargs: Any
) -> History:
    """Put the parameters of a checkpoint (``checkpoint=`` or ``best_checkpoint=`` of
    :func:`fit`) into ``model`` and ``guide``.

    The program is run once on ``args`` (a batch of the data, as ``fit`` passes it) so that
    Pyro's lazily made parameters exist; then every parameter is set from the file, which must
    hold as many, of the same shapes, in the same order.

    Returns:
        The history stored with the parameters (``best_epoch`` tells which epoch they are of).

    Raises:
        pyro_vi.train.checkpoint.CheckpointError: the file cannot be read, or its parameters do
            not match.
    """
    saved = load_checkpoint(path)
    with (
        torch.no_grad(),
        poutine.trace(param_only=True) as capture,
        poutine.block(hide_types=["sample"]),
    ):
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        poutine.replay(model, trace=guide_trace)(*args, **kwargs)
    params, names = _leaves(capture.trace, model, guide)
    values = saved["trainer"]["params"]
    if [list(p.shape) for p in params] != [list(v.shape) for v in values]:
        raise CheckpointError(
            f"checkpoint {str(path)!r} holds {len(values)} parameters that do not match the "
            f"{len(params)} of this model and guide (names here: {names[:4]}...)"
        )
    with torch.no_grad():
        for param, value in zip(params, values, strict=True):
            param.copy_(value.to(param.device))
    history = History()
    for key, value in saved.get("history", {}).items():
        if hasattr(history, key) and key not in ("train_bound", "test_bound", "validation_bound"):
            setattr(history, key, value)
    return history
