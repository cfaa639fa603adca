"""``pyro-vi train``: compile a spec, train it, and write the run folder as training goes.

The folder tells the truth at every moment (``run.json``'s ``status``, :mod:`pyro_vi.records`):

- nothing is written before the spec is valid, the backends installed, the data loaded and the
  model built: a bad spec or a missing dataset leaves no folder (and ``--overwrite`` leaves the
  old run untouched);
- ``"training"``: the spec and ``run.json`` are written before the first step; each epoch appends
  its line to ``metrics.jsonl`` and ``metrics.csv`` (and the tracking backends) and writes the
  weights; :func:`pyro_vi.train.fit` keeps ``training_state.pt`` at every epoch's end and every
  ``training.checkpoint_every`` steps, atomically;
- ``"interrupted"``: Ctrl-C (SIGINT) or SIGTERM stopped training after a step, with the training
  state written there: ``train_spec(spec, resume=folder)`` (``pyro-vi train --resume``) goes on
  exactly where it stopped; the final evaluation is not run;
- ``"trained"``: training ended and the weights are saved, the final evaluation has not finished
  (it was interrupted): ``pyro-vi evaluate RUN`` (:func:`complete_run`) completes it;
- ``"complete"``: evaluated, ``metrics.json`` and the figures written;
- ``"diverged"`` and ``"failed"`` (with ``"error"``: a checkpoint that could not be written, a
  full disk): the last good training state is intact, and ``--resume`` continues from it.

With a validation split (``data.validation`` or ``data.validation_path``) the validation bound
is measured after every epoch (on a set drawn once when binarized dynamically), logged with the
other per-epoch values, and ``best.pt`` keeps the weights of the best epoch beside
``checkpoint.pt``'s last ones, written before the epoch's training state so that a resumed run
never lacks them; ``training.early_stopping`` (a patience in epochs) stops training when the
bound has not improved for that long. The final evaluation then uses ``best.pt``, and
``run.json`` and ``metrics.json`` record ``best_epoch`` (from 1) and ``stopped_early``.

A resumed run equals an uninterrupted one bit for bit (same machine, threads and device): the
training state carries parameters, optimizer, scheduler, every random generator and the data
order, and :mod:`pyro_vi.runs.resume` refuses a spec that differs in what would change the run.
Under ``torchrun`` rank 0 alone writes (:mod:`pyro_vi.runs.distributed`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyro
import torch

from pyro_vi.devices import environment
from pyro_vi.records import (
    epoch_record,
    read_json,
    summary_record,
    versioned,
    write_json,
    write_text_atomically,
)
from pyro_vi.report import loss_curves, save
from pyro_vi.runs import distributed
from pyro_vi.runs.evaluate import (
    evaluate_built,
    evaluation_record,
    fixed_split,
    fixed_test_set,
)
from pyro_vi.runs.figures import write_figures
from pyro_vi.runs.folder import (
    BEST_FILE,
    EPOCHS_FILE,
    EVALUATION_FILE,
    INFO_FILE,
    SPEC_FILE,
    STATE_FILE,
    SUMMARY_FILE,
    Run,
    clear_results,
    clear_run,
    data_info_dict,
    is_partial_write,
    load_weights,
    save_weights,
    weights_record,
)
from pyro_vi.runs.resume import check_same_run, spec_tag
from pyro_vi.runs.tracking import (
    Trackers,
    TrackingContext,
    check_backends,
    history_from_dict,
    open_trackers,
)
from pyro_vi.spec import Built, Data, Spec, build, load_data, load_spec, save_spec
from pyro_vi.spec.data_section import no_validation_split
from pyro_vi.spec.resolve import check_device_available
from pyro_vi.spec.schema import SpecError
from pyro_vi.train import History, TrainingDivergedError, fit
from pyro_vi.train.checkpoint import CheckpointError, load_checkpoint

__all__ = [
    "EvaluationInterrupted",
    "TrainResult",
    "complete_run",
    "finish",
    "run_folder",
    "train_spec",
    "write_figures",
]


@dataclass
class TrainResult:
    """What :func:`train_spec` returns: the run folder, the training history, the final metrics.

    Attributes:
        path: The run folder (:mod:`pyro_vi.runs.folder` lists its files).
        history: Losses and timings per epoch, as :func:`pyro_vi.train.fit` returns them
            (``history.interrupted``: training was interrupted, and can be resumed).
        metrics: The final evaluation, as written to ``metrics.json`` (keys in
            :mod:`pyro_vi.records`); empty when training was interrupted, and on the ranks
            other than 0 of a data-parallel run.
        weights: Which weights the final evaluation used: with a validation split the best
            epoch's (``best.pt``), else the last (see
            :func:`~pyro_vi.runs.folder.weights_record`); empty without an evaluation.

    For code written when :func:`train_spec` returned the folder, a result still acts as its
    folder's path (``result / "metrics.json"``, ``os.fspath(result)``, ``str(result)``); new
    code reads :attr:`path`.

    Example:
        >>> result = train_spec(load_spec("configs/vae_digits.toml"))
        >>> result.metrics["test_elbo"], result.path / "samples.png"
    """

    path: Path
    history: History
    metrics: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, Any] = field(default_factory=dict)

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __truediv__(self, other: str | os.PathLike[str]) -> Path:
        return self.path / other

    def __str__(self) -> str:
        return str(self.path)


class EvaluationInterrupted(KeyboardInterrupt):
    """Ctrl-C during the final evaluation: the model is trained and saved (``run.json`` says
    ``"trained"``); ``pyro-vi evaluate RUN`` completes the run.

    Attributes:
        path: The run folder.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(str(path))
        self.path = path


@dataclass
class _Plan:
    """What rank 0 decided before anything is written: the folder, and what to resume."""

    path: Path
    clear: bool = False
    state: Path | None = None
    history: History | None = None
    previous: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def run_folder(
    out: str | os.PathLike[str] | None, spec: Spec, overwrite: bool, resumable: bool = True
) -> Path:
    """The folder to train into.

    ``None`` means ``runs/<spec name>``, numbered ``-2``, ``-3``... when taken, so a second run
    never overwrites the first. A folder given explicitly that already holds a run is refused
    unless ``overwrite`` (the message offers ``--resume`` where the command has it:
    ``resumable``).
    """
    if out is None:
        base = Path("runs") / (spec.name or "run")
        path, number = base, 1
        while (path / SPEC_FILE).exists() or _foreign_entries(path):
            number += 1
            path = base.with_name(f"{base.name}-{number}")
        return path
    path = Path(out)
    if (path / SPEC_FILE).exists() and not overwrite:
        raise FileExistsError(
            f"{str(path)!r} already holds a run; choose another --out, or pass --overwrite to "
            "replace it"
            + (
                ", or --resume it to continue its training"
                if resumable
                else " (pyro-vi train --resume continues one run's training)"
            )
        )
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"--out {str(path)!r} exists and is not a folder")
    foreign = _foreign_entries(path)
    if foreign and not (path / SPEC_FILE).exists():
        # A run clears its samples/, evaluation and figures when it starts or resumes, and
        # --overwrite clears every *.png: none of that may touch files that are not a run's.
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise FileExistsError(
            f"--out {str(path)!r} is a folder that holds no run but other files ({shown}); a "
            "run writes its files (spec.toml, metrics.json, samples/, *.png, ...) into a "
            "folder of its own: choose a new or empty folder"
        )
    return path


def _foreign_entries(path: Path) -> list[str]:
    """The entries of the folder ``path`` that no run wrote (a run killed before writing its
    spec.toml leaves temporary ``*.partial`` files at most); empty when there is no folder."""
    if not path.is_dir():
        return []
    return sorted(entry.name for entry in path.iterdir() if not is_partial_write(entry.name))


def _plan(
    spec: Spec,
    out: str | os.PathLike[str] | None,
    overwrite: bool,
    resume: str | os.PathLike[str] | None,
) -> _Plan:
    """Every check that needs no data, before anything is written (rank 0)."""
    check_device_available(spec)
    check_backends(spec)
    if resume is None:
        path = run_folder(out, spec, overwrite)
        return _Plan(path, clear=(path / SPEC_FILE).exists())
    if overwrite:
        raise ValueError(
            "--resume continues the run in its folder and --overwrite would replace it; pass "
            "one of them"
        )
    path = Path(resume)
    if out is not None and Path(out).resolve() != path.resolve():
        raise ValueError(
            f"--resume {str(path)!r} trains in that folder; --out {str(out)!r} names another "
            "(leave --out out)"
        )
    if not (path / SPEC_FILE).is_file() or not (path / INFO_FILE).is_file():
        raise FileNotFoundError(
            f"--resume {str(path)!r} is not a run folder (it lacks {SPEC_FILE} or {INFO_FILE})"
        )
    changed = check_same_run(load_spec(path / SPEC_FILE), spec, path)
    plan = _Plan(path, previous=read_json(path / INFO_FILE))
    plan.notes = [f"{key}: {old!r} -> {new!r}" for key, old, new in changed]
    state_file = path / STATE_FILE
    if not state_file.is_file():
        # Stopped before its first checkpoint: nothing trained to keep; start again here.
        plan.clear = True
        plan.notes.append(f"no {STATE_FILE} yet: training starts from the first step")
        return plan
    state = load_checkpoint(state_file)
    tag = state.get("fingerprint", {}).get("tag")
    if tag != spec_tag(spec):
        raise CheckpointError(
            f"checkpoint {str(state_file)!r} was written for another spec (tag {tag!r}, this "
            f"spec's is {spec_tag(spec)!r}): was {SPEC_FILE} edited after training began?"
        )
    ranks, world = len(state.get("rng_per_rank") or [None]), distributed.world_size()
    if ranks != world:
        raise CheckpointError(
            f"checkpoint {str(state_file)!r} was written by {ranks} process(es) and this run has "
            f"{world}: resume it with as many (torchrun --nproc_per_node={ranks} for {ranks} > 1)"
        )
    plan.state = state_file
    plan.history = history_from_dict(state["history"])
    done, wanted = _epochs_done(state), spec.training["epochs"]
    if plan.history.stopped_early:
        evaluate = ""
        if plan.previous.get("status") == "trained":
            evaluate = f"; 'pyro-vi evaluate {path}' completes its interrupted evaluation"
        raise ValueError(
            f"{str(path)!r} stopped early after epoch {done}: its validation bound had not "
            f"improved since epoch {plan.history.best_epoch + 1} for training.early_stopping = "
            f"{spec.training['early_stopping']} epochs, so there is nothing to resume (train a "
            f"new run with a larger training.early_stopping, or without it){evaluate}"
        )
    begun = done + (1 if state["position"].get("batch", 0) > 0 else 0)  # a partial epoch too
    if wanted < begun:
        partial = " and part of the next" if begun > done else ""
        raise SpecError(
            f"invalid spec: training.epochs = {wanted}, but {str(path)!r} has already trained "
            f"{done} epoch(s){partial}; allowed: training.epochs >= {begun}"
        )
    if wanted == done and plan.previous.get("status") == "complete":
        raise ValueError(
            f"{str(path)!r} is complete: all {done} epochs are trained and evaluated; to train "
            f"longer, resume with --epochs N (N > {done})"
        )
    return plan


def _epochs_done(state: dict[str, Any]) -> int:
    """Whole epochs a training state has finished (a mid-epoch state: the ones before)."""
    return len(state["history"].get("train_loss", []))


def _steps_per_epoch(num_data: int, batch_size: int) -> int:
    """Steps of a whole epoch on one rank (``DistributedSampler`` pads the shards to equal
    length; ``fit`` caps the batch at the dataset's size)."""
    local = math.ceil(num_data / distributed.world_size())
    return math.ceil(local / min(batch_size, num_data))


def _write_epoch_log(path: Path, history: History | None) -> None:
    """``metrics.jsonl`` anew: the restored history's epochs (none for a new run)."""
    lines = [] if history is None else [epoch_record(e, history) for e in range(history.epochs)]
    # Atomically: a kill mid-write on resume keeps the old log whole.
    write_text_atomically(path / EPOCHS_FILE, "".join(json.dumps(line) + "\n" for line in lines))


def _open_folder(
    plan: _Plan, spec: Spec, data: Data, device: torch.device
) -> tuple[dict[str, Any], Trackers]:
    """Rank 0: make (or clear) the folder, write the spec and ``run.json``, start the logs."""
    path = plan.path
    if plan.clear:
        clear_run(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(
            f"cannot make the run folder {str(path)!r}: {error.strerror or error} (choose a "
            "writable --out)"
        ) from error
    clear_results(path)
    save_spec(spec, path / SPEC_FILE)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    previous = plan.previous if plan.state is not None else {}
    info: dict[str, Any] = versioned(
        {
            "status": "training",
            "started": previous.get("started", now),
            "data_info": data_info_dict(data.info),
            "train_size": len(data.train[0]),
            **({} if data.validation is None else {"validation_size": len(data.validation[0])}),
            "environment": environment(device),
            "world_size": distributed.world_size(),
        }
    )
    if plan.state is not None:
        info["resumed"] = [*previous.get("resumed", []), now]
    _write_epoch_log(path, plan.history)
    write_json(path / INFO_FILE, info)
    context = TrackingContext(path, spec, plan.history, previous.get("tracking", {}))
    steps = _steps_per_epoch(len(data.train[0]), spec.training["batch_size"])
    try:
        trackers = open_trackers(context, steps)
    except Exception as error:
        _set_status(path, info, "failed", error=f"{type(error).__name__}: {error}")
        raise
    info["tracking"] = trackers.record
    write_json(path / INFO_FILE, info)
    return info, trackers


def _set_status(path: Path, info: dict[str, Any], status: str, **extra: Any) -> None:
    """Write ``run.json`` with ``status``; on a full disk the error of the write that failed
    first is the one to report, so this one is best effort."""
    info.update(status=status, **extra)
    with contextlib.suppress(OSError):
        write_json(path / INFO_FILE, info)


def train_spec(
    spec: Spec,
    out: str | os.PathLike[str] | None = None,
    *,
    progress: bool = True,
    overwrite: bool = False,
    data: Data | None = None,
    resume: str | os.PathLike[str] | None = None,
    on_epoch: Callable[[int, History, Built], None] | None = None,
) -> TrainResult:
    """Train the model that ``spec`` describes and write its run folder.

    Arguments:
        spec: A resolved spec (:func:`pyro_vi.spec.load_spec`).
        out: The run folder (see :func:`run_folder`).
        progress: Progress bars for training and evaluation.
        overwrite: Replace a run already in ``out`` (everything it wrote goes, once the new
            spec and data have loaded).
        data: The loaded data, when the caller has it already (comparisons load it once).
        resume: A run folder to continue from its training state (``training_state.pt``); the
            spec must equal its ``spec.toml`` but in :data:`pyro_vi.runs.resume.MAY_CHANGE`
            (e.g. ``training.epochs``, to train longer).
        on_epoch: Called as ``on_epoch(epoch, history, built)`` after each epoch's files are
            written, on rank 0 (comparisons evaluate common metrics there; an exception it
            raises stops training as any other would).

    Returns:
        The :class:`TrainResult`: the run folder, the history and the final metrics. When
        SIGINT or SIGTERM stopped training, ``result.history.interrupted`` is true, the metrics
        are empty and ``run.json`` says ``"interrupted"``.

    Raises:
        SpecError, FileNotFoundError, FileExistsError, CheckpointError: before anything is
            written (a bad spec, missing data, a taken folder, a resume that does not fit).
        CheckpointError, OSError: a file could not be written during training (``run.json``
            says ``"failed"``; the last good training state is intact).
        TrainingDivergedError: the loss became NaN or infinite (``"diverged"``).
        EvaluationInterrupted: Ctrl-C during the final evaluation (``"trained"``).
    """
    plan = distributed.on_rank_zero(lambda: _plan(spec, out, overwrite, resume))
    for note in plan.notes if distributed.rank() == 0 else ():
        print(f"resuming {plan.path}: {note}", file=sys.stderr)
    path = plan.path
    device = distributed.rank_device(spec.training["device"])
    pyro.clear_param_store()
    pyro.set_rng_seed(spec.training["seed"])
    data = load_data(spec) if data is None else data
    if data.validation is None and spec.training["early_stopping"] is not None:
        raise no_validation_split(spec)  # data given by the caller, without a validation split
    built = build(spec, data.info)
    opened = distributed.on_rank_zero(lambda: _open_folder(plan, spec, data, device), share=False)
    lead = distributed.rank() == 0
    info, trackers = opened if lead else ({}, None)
    validation = None
    if data.validation is not None:
        # Drawn once when binarized dynamically: every epoch is scored on the same datapoints,
        # so that the best epoch is chosen on one fixed set.
        validation = fixed_split(data.validation, device, spec.training["seed"])

    def after_epoch(epoch: int, history: History) -> None:
        with open(path / EPOCHS_FILE, "a") as file:
            file.write(json.dumps(epoch_record(epoch, history)) + "\n")
        trackers.log_epoch(epoch, history)
        loss = history.validation_loss[-1] if history.validation_loss else None
        save_weights(path, built, epoch + 1, validation_loss=loss)
        if on_epoch is not None:
            on_epoch(epoch, history, built)

    # It writes files; only a caller's on_epoch hook may change the program's Python state, which
    # a captured step is then traced again to check (a trace costs ~40 steps).
    after_epoch.changes_program = on_epoch is not None  # type: ignore[attr-defined]

    def keep_best(epoch: int, history: History) -> None:
        # Called by fit before it checkpoints the epoch: a resumed run never lacks the weights
        # of the best epoch its history names.
        save_weights(path, built, epoch + 1, BEST_FILE, history.validation_loss[-1])

    start = time.perf_counter()
    try:
        history = fit(
            built.model,
            built.guide,
            data.train,
            test_data=data.test,
            loss=built.estimator,
            optim=built.optimizer(),
            epochs=spec.training["epochs"],
            batch_size=spec.training["batch_size"],
            device=device,
            # One data order on every rank; a single process keeps the seeding done above.
            seed=spec.training["seed"] if distributed.is_distributed() else None,
            progress=progress,
            callback=after_epoch,
            max_seconds=spec.training["max_seconds"],
            compile=False if spec.training["compile"] == "none" else spec.training["compile"],
            threads=spec.training["threads"],
            checkpoint=path / STATE_FILE,
            checkpoint_every=spec.training["checkpoint_every"],
            resume=plan.state,
            tag=spec_tag(spec),
            validation_data=validation,
            early_stopping=spec.training["early_stopping"],
            best_callback=None if validation is None else keep_best,
        )
    except BaseException as error:
        if lead:
            _abort(path, info, trackers, error)
        raise
    # The other ranks wait for rank 0 to write the weights, evaluate and draw, then return.
    group = distributed.waiting_group()
    if not lead:
        distributed.barrier(group)
        return TrainResult(path, history)
    ending: dict[str, Any] = {
        "epochs_completed": history.epochs,
        "training_seconds": sum(history.seconds),
        "wall_seconds": time.perf_counter() - start,
    }
    if history.best_epoch is not None:
        ending.update(_validation_outcome(history))
    try:
        return _conclude(path, spec, built, data, history, device, progress, info, trackers, ending)
    finally:
        distributed.barrier(group)


def _validation_outcome(history: History) -> dict[str, Any]:
    """What ``run.json`` and ``metrics.json`` say of the validation split (epochs from 1)."""
    return {
        "best_epoch": history.best_epoch + 1,
        "best_validation_bound": -history.validation_loss[history.best_epoch],
        "stopped_early": history.stopped_early,
    }


def _abort(path: Path, info: dict[str, Any], trackers: Trackers, error: BaseException) -> None:
    """Record why training stopped with an exception (rank 0)."""
    if isinstance(error, TrainingDivergedError):
        status = "diverged"
    elif isinstance(error, KeyboardInterrupt):  # before fit's own handlers were installed
        status = "interrupted"
    else:
        status = "failed"
        info["error"] = f"{type(error).__name__}: {error}"
    _set_status(path, info, status)
    trackers.close(status)


def _conclude(
    path: Path,
    spec: Spec,
    built: Built,
    data: Data,
    history: History,
    device: torch.device,
    progress: bool,
    info: dict[str, Any],
    trackers: Trackers,
    ending: dict[str, Any],
) -> TrainResult:
    """Rank 0 after training: save the last weights, record the status, evaluate (the best
    weights when there are any) unless interrupted."""
    status = "interrupted" if history.interrupted else "trained"
    try:
        # Interrupted, the weights may be from within an epoch: no validation bound is theirs.
        loss = None
        if not history.interrupted and history.validation_loss:
            loss = history.validation_loss[-1]
        save_weights(path, built, history.epochs, validation_loss=loss)
        _set_status(path, info, status, **ending)
        if history.interrupted:
            return TrainResult(path, history)
        weights = _use_best_weights(path, built, history, device, info)
        try:
            metrics = finish(
                path, spec, built, data, history, device, progress, trackers, weights=weights
            )
        except KeyboardInterrupt:
            raise EvaluationInterrupted(path) from None
        status = "complete"
        write_json(path / INFO_FILE, {**info, "status": status})
        return TrainResult(path, history, metrics, weights)
    except (OSError, CheckpointError) as error:
        status = "failed"
        _set_status(path, info, status, error=f"{type(error).__name__}: {error}")
        raise
    finally:
        trackers.close(status)


def _use_best_weights(
    path: Path, built: Built, history: History, device: torch.device, info: dict[str, Any]
) -> dict[str, Any]:
    """Load ``best.pt`` into ``built`` when the run has a validation split; what was loaded
    (:func:`~pyro_vi.runs.folder.weights_record`)."""
    if history.best_epoch is None:
        last = {"epoch": history.epochs}
        return weights_record(
            "last", last, info, f"no {BEST_FILE}: the run has no validation split"
        )
    state = load_weights(path / BEST_FILE, device)
    built.model.load_state_dict(state["model"])
    built.guide.load_state_dict(state["guide"])
    return weights_record("best", state, info)


def finish(
    path: Path,
    spec: Spec,
    built: Built,
    data: Data,
    history: History,
    device: torch.device,
    progress: bool,
    trackers: Trackers | None = None,
    num_samples: int | None = None,
    weights: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate the trained model, write ``metrics.json`` and the figures; return the metrics.

    Arguments:
        path, spec, built, data, history, device, progress: The run's.
        trackers: Sinks that also get the figures.
        num_samples: K of the IWAE-K log-likelihood (default ``training.eval_samples``).
        weights: Which weights ``built`` holds (:func:`~pyro_vi.runs.folder.weights_record`),
            written to ``metrics.json`` beside the metrics.
    """
    built.model.eval()
    built.guide.eval()
    samples = spec.training["eval_samples"] if num_samples is None else num_samples
    test = fixed_test_set(data, device, spec.training["seed"])
    metrics = evaluate_built(built, test, samples, progress=progress, seed=spec.training["seed"])
    metrics["training_seconds"] = sum(history.seconds)
    metrics["parameters"] = sum(
        p.numel() for m in (built.model, built.guide) for p in m.parameters()
    )
    metrics["final_train_bound"] = -history.train_loss[-1] if history.train_loss else None
    metrics["interrupted"] = history.interrupted
    if history.best_epoch is not None:
        metrics.update(_validation_outcome(history))
    record = summary_record(metrics, history)
    if weights:
        record["weights"] = weights
    write_json(path / SUMMARY_FILE, record)
    figures = write_figures(path, built, test, data.test_labels)
    figures["loss_curves"] = save(loss_curves(history), path / "loss_curves.png")
    if trackers is not None:
        trackers.log_images(figures)
    return metrics


def complete_run(run: Run, num_samples: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Finish a run whose final evaluation was interrupted (``run.json`` says ``"trained"``):
    evaluate it, write ``metrics.json``, ``evaluation.json`` and the figures, and mark it
    ``"complete"``.

    Arguments:
        run: The run, loaded by :func:`~pyro_vi.runs.folder.load_run` (with the weights to
            evaluate: the best by default; ``run.weights`` is recorded with the metrics).
        num_samples: K of the IWAE-K log-likelihood (default ``training.eval_samples``).
        progress: Progress bars.

    Returns:
        The metrics.
    """
    if run.info.get("status") != "trained":
        raise ValueError(
            f"{str(run.path)!r} has status {run.info.get('status')!r}; only a 'trained' run "
            "(its final evaluation interrupted) is completed"
        )
    check_backends(run.spec)
    state = load_checkpoint(run.path / STATE_FILE)
    history = history_from_dict(state["history"])
    context = TrackingContext(run.path, run.spec, history, run.info.get("tracking", {}))
    steps = _steps_per_epoch(run.info["train_size"], run.spec.training["batch_size"])
    trackers = open_trackers(context, steps)
    status = "trained"
    try:
        metrics = finish(
            run.path,
            run.spec,
            run.built,
            run.data,
            history,
            run.device,
            progress,
            trackers,
            num_samples,
            weights=run.weights,
        )
        samples = run.spec.training["eval_samples"] if num_samples is None else num_samples
        write_json(
            run.path / EVALUATION_FILE,
            evaluation_record(metrics, samples, run.weights),
        )
        status = "complete"
        write_json(run.path / INFO_FILE, {**run.info, "status": status})
    finally:
        trackers.close(status)
    return metrics
