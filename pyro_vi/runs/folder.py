"""A run is a folder; this module knows its files and how to rebuild a trained run from them.

=========================  ======================================================================
file                       contents
=========================  ======================================================================
``spec.toml``              the resolved spec: every key, defaults filled in; rebuilds the model
``run.json``               status (:data:`STATUSES`), data shape, versions, device, timings
``metrics.jsonl``          one JSON line per epoch: train and test loss (minus the bound), seconds
``metrics.csv``            one row per epoch: every per-epoch field of the history, steps/s
``checkpoint.pt``          model and guide weights (``state_dict``\\ s) and the epoch they are
                           from: the last epoch's
``best.pt``                with a validation split: the same, of the epoch with the best
                           validation bound; what ``evaluate``, ``sample`` and :func:`load_run`
                           read by default when it exists (``--weights last``: ``checkpoint.pt``)
``training_state.pt``      :func:`pyro_vi.train.fit`'s checkpoint: parameters, optimizer,
                           scheduler, random generators, data order and position, history;
                           what ``pyro-vi train --resume`` continues from
``metrics.json``           the final evaluation (test ELBO, IWAE-K log-likelihood, ...) and history
``evaluation.json``        the last ``pyro-vi evaluate``
``eval_curve.jsonl``       runs of a comparison or sweep: common metrics after every epoch
                           (:mod:`pyro_vi.runs.curves`)
``*.png``, ``samples/``    figures (samples, reconstructions, loss curves, ...)
``tensorboard/``           TensorBoard event files (``[log] backends`` with ``"tensorboard"``)
``mlflow.db``,             the MLflow store and its artifacts when ``MLFLOW_TRACKING_URI`` is
``mlartifacts/``           unset (``[log] backends`` with ``"mlflow"``)
=========================  ======================================================================

Why two checkpoint files: the weights (``checkpoint.pt``) load into a freshly built model with
``load_state_dict``, buffers included, without an optimizer or a training step; the training
state holds the optimizer's leaves as :class:`~pyro_vi.train.Trainer` orders them, with Adam's
moments (three times the size), and is only needed to continue training. Both are written
atomically and read with ``weights_only=True`` (:mod:`pyro_vi.train.checkpoint`): a truncated,
empty, foreign or tampered file is a :class:`~pyro_vi.train.checkpoint.CheckpointError` that names
it, never an invitation to load it unsafely.

The JSON files follow one versioned schema, documented in :mod:`pyro_vi.records`.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyro
import torch

from pyro_vi._checks import check_choice
from pyro_vi.devices import resolve_device
from pyro_vi.records import check_version, read_json, write_json
from pyro_vi.spec import Built, Data, DataInfo, Spec, build, load_data, load_spec, materialize
from pyro_vi.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

SPEC_FILE = "spec.toml"
INFO_FILE = "run.json"
EPOCHS_FILE = "metrics.jsonl"
CSV_FILE = "metrics.csv"
CHECKPOINT_FILE = "checkpoint.pt"
BEST_FILE = "best.pt"
STATE_FILE = "training_state.pt"
SUMMARY_FILE = "metrics.json"
EVALUATION_FILE = "evaluation.json"
CURVE_FILE = "eval_curve.jsonl"
SAMPLES_FOLDER = "samples"
TENSORBOARD_FOLDER = "tensorboard"
MLFLOW_STORE = "mlflow.db"
MLFLOW_ARTIFACTS = "mlartifacts"

#: ``run.json``'s ``status``: where a run stands (see :mod:`pyro_vi.records`).
STATUSES = ("training", "interrupted", "trained", "complete", "diverged", "failed", "pruned")

#: What a run writes besides its figures: cleared by ``--overwrite`` (with ``*.png``).
OUTPUT_FILES = (
    SPEC_FILE,
    INFO_FILE,
    EPOCHS_FILE,
    CSV_FILE,
    CHECKPOINT_FILE,
    BEST_FILE,
    STATE_FILE,
    SUMMARY_FILE,
    EVALUATION_FILE,
    CURVE_FILE,
    MLFLOW_STORE,
)
OUTPUT_FOLDERS = (SAMPLES_FOLDER, TENSORBOARD_FOLDER, MLFLOW_ARTIFACTS)
#: What describes a trained model (its evaluation and figures): stale once training goes on.
RESULT_FILES = (SUMMARY_FILE, EVALUATION_FILE)

#: Which weights of a run to load: the best epoch's (``best.pt``) or the last (``checkpoint.pt``).
WEIGHTS = ("best", "last")

__all__ = [
    "BEST_FILE",
    "CHECKPOINT_FILE",
    "CSV_FILE",
    "CURVE_FILE",
    "EPOCHS_FILE",
    "EVALUATION_FILE",
    "INFO_FILE",
    "SPEC_FILE",
    "STATE_FILE",
    "STATUSES",
    "SUMMARY_FILE",
    "WEIGHTS",
    "Run",
    "check_run_folder",
    "clear_results",
    "clear_run",
    "data_info_dict",
    "load_run",
    "load_weights",
    "read_epochs",
    "save_weights",
    "weights_record",
    "write_json",
]


@dataclass
class Run:
    """A run folder with its spec, its data and its trained model and guide (on ``device``).

    ``weights`` says which weights ``built`` holds (:func:`weights_record`).
    """

    path: Path
    spec: Spec
    built: Built
    data: Data
    info: dict[str, Any]
    device: torch.device
    weights: dict[str, Any] = field(default_factory=dict)


def save_weights(
    path: Path,
    built: Built,
    epoch: int,
    file: str = CHECKPOINT_FILE,
    validation_loss: float | None = None,
) -> Path:
    """Write the model's and guide's ``state_dict``\\ s to ``path / file``, atomically.

    Arguments:
        path: The run folder.
        built: The run's model and guide.
        epoch: The epochs trained (a run interrupted mid-epoch: the epochs completed); for
            ``best.pt``, the best epoch, counted from 1.
        file: ``checkpoint.pt`` (the last weights) or ``best.pt`` (the best epoch's).
        validation_loss: Minus the validation bound of these weights, when known.

    Raises:
        CheckpointError: the file cannot be written (the previous one is left intact).
    """
    return save_checkpoint(
        Path(path) / file,
        {
            "contents": "weights",
            "model": built.model.state_dict(),
            "guide": built.guide.state_dict(),
            "epoch": int(epoch),
            **({} if validation_loss is None else {"validation_loss": float(validation_loss)}),
        },
    )


def load_weights(file: str | os.PathLike[str], device: Any = "cpu") -> dict[str, Any]:
    """The weights file written by :func:`save_weights`, read safely.

    Raises:
        CheckpointError: naming the file: missing, empty, truncated, not a pyro_vi checkpoint,
            tampered with, or a checkpoint without model and guide weights.
    """
    state = load_checkpoint(file, map_location=device)
    if not isinstance(state.get("model"), dict) or not isinstance(state.get("guide"), dict):
        raise CheckpointError(
            f"checkpoint {str(file)!r} holds no model and guide weights (keys "
            f"{sorted(state)}); a run's weights are in {CHECKPOINT_FILE}"
        )
    return state


def read_epochs(path: Path) -> list[dict[str, Any]]:
    """The per-epoch records of ``metrics.jsonl`` (empty if the file is missing)."""
    file = Path(path) / EPOCHS_FILE
    if not file.is_file():
        return []
    lines = [line for line in file.read_text().splitlines() if line.strip()]
    return [check_version(json.loads(line), file) for line in lines]


def check_run_folder(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path if it holds a run with a checkpoint; otherwise a clear error."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"run folder {str(path)!r} does not exist")
    missing = [
        name for name in (SPEC_FILE, INFO_FILE, CHECKPOINT_FILE) if not (path / name).is_file()
    ]
    if missing:
        # Only a folder that 'pyro-vi train' began (spec.toml and run.json) can be resumed.
        advice = (
            "a run stopped before its first epoch ended has no weights yet: continue it with "
            f"'pyro-vi train --resume {path}'"
            if missing == [CHECKPOINT_FILE]
            else "is it the folder of a run?"
        )
        raise FileNotFoundError(
            f"{str(path)!r} is not a finished run folder: it lacks {missing} (a folder written by "
            f"'pyro-vi train' holds spec.toml, run.json and checkpoint.pt; {advice})"
        )
    return path


def clear_run(path: Path) -> None:
    """Remove everything a run writes from ``path`` (``--overwrite``): its files, figures
    (``*.png``), samples and tracking folders, and temporary files of interrupted writes. Other
    files are left alone."""
    path = Path(path)
    for name in OUTPUT_FILES:
        (path / name).unlink(missing_ok=True)
    for folder in OUTPUT_FOLDERS:
        shutil.rmtree(path / folder, ignore_errors=True)
    for figure in path.glob("*.png"):
        figure.unlink(missing_ok=True)
    _clear_partial(path)


def clear_results(path: Path) -> None:
    """Remove what describes a model that training is about to change (its evaluation and
    samples) and the temporary files of writes a kill interrupted."""
    path = Path(path)
    for name in RESULT_FILES:
        (path / name).unlink(missing_ok=True)
    shutil.rmtree(path / SAMPLES_FOLDER, ignore_errors=True)
    _clear_partial(path)


#: The temporary files of atomic writes (a write, then a rename) that a kill interrupted.
PARTIAL_PATTERNS = ("*.partial", f".{CHECKPOINT_FILE}.*", f".{BEST_FILE}.*", f".{STATE_FILE}.*")


def is_partial_write(name: str) -> bool:
    """Whether the file ``name`` is a temporary file of an interrupted atomic write."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in PARTIAL_PATTERNS)


def _clear_partial(path: Path) -> None:
    for pattern in PARTIAL_PATTERNS:
        for leftover in path.glob(pattern):
            leftover.unlink(missing_ok=True)


def _weights_file(path: Path, which: str, info: dict[str, Any]) -> tuple[str, str, str | None]:
    """``(which, file, note)``: the weights ``which`` asks for; ``"best"`` of a run without a
    validation split is its last weights, with a note saying why."""
    which = check_choice("weights", which, WEIGHTS)
    if which == "last":
        return "last", CHECKPOINT_FILE, None
    if (path / BEST_FILE).is_file():
        return "best", BEST_FILE, None
    if info.get("validation_size"):
        raise FileNotFoundError(
            f"{str(path)!r} trained with a validation split but its {BEST_FILE} is missing; "
            f"use the last weights ({CHECKPOINT_FILE}: --weights last, or weights='last')"
        )
    return "last", CHECKPOINT_FILE, f"no {BEST_FILE}: the run has no validation split"


def weights_record(
    which: str, state: dict[str, Any], info: dict[str, Any], note: str | None = None
) -> dict[str, Any]:
    """What an evaluation says about the weights it used (``weights`` in ``metrics.json`` and
    ``evaluation.json``).

    Arguments:
        which: ``"best"`` or ``"last"``.
        state: The weights file's contents (:func:`load_weights`).
        info: The run's ``run.json``.
        note: Why they are not the weights asked for, if they are not.

    Returns:
        ``which``, ``file``, ``epoch`` (the epoch they are from, counted from 1), ``epochs``
        (epochs trained), ``validation_bound`` (at that epoch, or ``None``) and
        ``description``, e.g. ``"best (epoch 7 of 10)"``.
    """
    epoch = int(state.get("epoch", 0))
    epochs = info.get("epochs_completed", epoch if which == "last" else None)
    loss = state.get("validation_loss")
    text = f"{which} (epoch {epoch}" + ("" if epochs is None else f" of {epochs}")
    text += f"; {note})" if note else ")"
    return {
        "which": which,
        "file": BEST_FILE if which == "best" else CHECKPOINT_FILE,
        "epoch": epoch,
        "epochs": epochs,
        "validation_bound": None if loss is None else -float(loss),
        "description": text,
    }


def load_run(
    path: str | os.PathLike[str],
    device: str | torch.device | None = None,
    data_dir: str | None = None,
    weights: str = "best",
) -> Run:
    """Rebuild a trained run: read its spec, load its data, build the model and guide, and load
    the weights (read with ``weights_only=True``) into them.

    Arguments:
        path: The run folder.
        device: Where to put the model and data (default: the device it trained on when that
            exists here, else the CPU).
        data_dir: Overrides the spec's ``data.dir`` (the data may have moved).
        weights: ``"best"``: the epoch with the best validation bound (``best.pt``), or the
            last weights when the run has no validation split; ``"last"``: ``checkpoint.pt``.
            :attr:`Run.weights` says which were loaded.

    Returns:
        The :class:`Run`, networks in eval mode.

    Raises:
        FileNotFoundError: not a run folder, or one without weights yet, or a run with a
            validation split whose ``best.pt`` is missing (and ``weights="best"``).
        CheckpointError: the weights file is unreadable, foreign, tampered with, or does not
            fit the model that ``spec.toml`` builds.
        ValueError: ``weights`` is neither ``"best"`` nor ``"last"``.

    Example:
        >>> run = load_run("runs/early")
        >>> run.weights["description"]
        'best (epoch 7 of 10)'
    """
    path = check_run_folder(path)
    info = read_json(path / INFO_FILE)
    which, file, note = _weights_file(path, weights, info)
    overrides = [] if data_dir is None else [f"data.dir={json.dumps(str(data_dir))}"]
    spec = load_spec(path / SPEC_FILE, overrides)
    if info.get("status") in ("training", "interrupted"):
        # Killed or stopped before its planned epochs: its weights are not the finished run's.
        unfinished = (
            f"the run is unfinished ({spec.training['epochs']} epoch(s) planned): pyro-vi train "
            f"--resume {str(path)!r} trains on"
        )
        note = unfinished if note is None else f"{note}; {unfinished}"
    if device is None:
        trained_on = spec.training["device"]
        device = trained_on if trained_on == "cpu" or torch.cuda.is_available() else "cpu"
    device = resolve_device(device)
    state = load_weights(path / file, device)
    data = load_data(spec)
    data_info = DataInfo(**{**info["data_info"], "shape": tuple(info["data_info"]["shape"])})
    built = build(spec, data_info)
    built.model.to(device)
    built.guide.to(device)
    first = tuple(item[torch.arange(min(2, len(item)))].to(device) for item in data.test)
    pyro.set_rng_seed(spec.training["seed"])
    materialize(built, first)
    for part in ("model", "guide"):
        try:
            getattr(built, part).load_state_dict(state[part])
        except RuntimeError as error:
            raise CheckpointError(
                f"checkpoint {str(path / file)!r} does not fit the {part} that "
                f"{SPEC_FILE} builds: {str(error).splitlines()[0]} (was spec.toml edited?)"
            ) from None
    built.model.eval()
    built.guide.eval()
    return Run(path, spec, built, data, info, device, weights_record(which, state, info, note))


def data_info_dict(info: DataInfo) -> dict[str, Any]:
    """``info`` as JSON-ready data."""
    out = asdict(info)
    out["shape"] = list(info.shape)
    return out
