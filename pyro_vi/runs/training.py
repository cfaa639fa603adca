"""``pyro-vi train``: compile a spec, train it, and write the run folder as training goes.

Nothing is lost on a crash or a Ctrl-C: the spec and ``run.json`` are written before the first
step, each epoch appends its line to ``metrics.jsonl``, checkpoints are written atomically every
``training.checkpoint_every`` epochs, and an interrupted run still gets its final checkpoint,
evaluation and figures (``run.json`` records the status).
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyro
import torch

from pyro_vi.devices import environment, resolve_device
from pyro_vi.report import loss_curves
from pyro_vi.runs import figures
from pyro_vi.runs.evaluate import evaluate_built, fixed_test_set
from pyro_vi.runs.folder import (
    EPOCHS_FILE,
    INFO_FILE,
    SPEC_FILE,
    SUMMARY_FILE,
    data_info_dict,
    save_checkpoint,
    write_json,
)
from pyro_vi.spec import Built, Data, Spec, build, load_data, save_spec
from pyro_vi.spec.resolve import check_device_available
from pyro_vi.train import History, TrainingDivergedError, fit


def run_folder(out: str | os.PathLike[str] | None, spec: Spec, overwrite: bool) -> Path:
    """The folder to train into.

    ``None`` means ``runs/<spec name>``, numbered ``-2``, ``-3``... when taken, so a second run
    never overwrites the first. A folder given explicitly that already holds a run is refused
    unless ``overwrite``.
    """
    if out is None:
        base = Path("runs") / (spec.name or "run")
        path, number = base, 1
        while (path / SPEC_FILE).exists():
            number += 1
            path = base.with_name(f"{base.name}-{number}")
        return path
    path = Path(out)
    if (path / SPEC_FILE).exists() and not overwrite:
        raise FileExistsError(
            f"{str(path)!r} already holds a run; choose another --out, or pass --overwrite to "
            "replace it"
        )
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"--out {str(path)!r} exists and is not a folder")
    return path


def train_spec(
    spec: Spec,
    out: str | os.PathLike[str] | None = None,
    *,
    progress: bool = True,
    overwrite: bool = False,
    data: Data | None = None,
) -> Path:
    """Train the model that ``spec`` describes and write its run folder.

    Arguments:
        spec: A resolved spec (:func:`pyro_vi.spec.load_spec`).
        out: The run folder (see :func:`run_folder`).
        progress: Progress bars for training and evaluation.
        overwrite: Replace a run already in ``out``.
        data: The loaded data, when the caller has it already (comparisons load it once).

    Returns:
        The run folder.
    """
    check_device_available(spec)
    path = run_folder(out, spec, overwrite)
    path.mkdir(parents=True, exist_ok=True)
    for stale in (EPOCHS_FILE, SUMMARY_FILE):
        (path / stale).unlink(missing_ok=True)
    device = resolve_device(spec.training["device"])
    pyro.clear_param_store()
    pyro.set_rng_seed(spec.training["seed"])
    data = load_data(spec) if data is None else data
    built = build(spec, data.info)
    save_spec(spec, path / SPEC_FILE)
    info: dict[str, Any] = {
        "status": "training",
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data_info": data_info_dict(data.info),
        "train_size": len(data.train[0]),
        "environment": environment(device),
    }
    write_json(path / INFO_FILE, info)

    def after_epoch(epoch: int, history: History) -> None:
        record = {
            "epoch": epoch + 1,
            "train_loss": history.train_loss[-1],
            "test_loss": history.test_loss[-1] if history.test_loss else None,
            "seconds": history.seconds[-1],
            "bound": history.bound,
        }
        with open(path / EPOCHS_FILE, "a") as file:
            file.write(json.dumps(record) + "\n")
        if (epoch + 1) % spec.training["checkpoint_every"] == 0:
            save_checkpoint(path, built, epoch + 1)

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
            progress=progress,
            callback=after_epoch,
            max_seconds=spec.training["max_seconds"],
        )
    except TrainingDivergedError:
        write_json(path / INFO_FILE, {**info, "status": "diverged"})
        raise
    info["status"] = "interrupted" if history.interrupted else "complete"
    info["epochs_completed"] = history.epochs
    info["training_seconds"] = sum(history.seconds)
    info["wall_seconds"] = time.perf_counter() - start
    save_checkpoint(path, built, history.epochs)
    write_json(path / INFO_FILE, info)
    finish(path, spec, built, data, history, device, progress)
    return path


def finish(
    path: Path,
    spec: Spec,
    built: Built,
    data: Data,
    history: History,
    device: torch.device,
    progress: bool,
) -> None:
    """Evaluate the trained model, write ``metrics.json`` and the standard figures."""
    built.model.eval()
    built.guide.eval()
    test = fixed_test_set(data, device, spec.training["seed"])
    metrics = evaluate_built(
        built, test, spec.training["eval_samples"], progress=progress, seed=spec.training["seed"]
    )
    metrics["training_seconds"] = sum(history.seconds)
    metrics["parameters"] = sum(
        p.numel() for m in (built.model, built.guide) for p in m.parameters()
    )
    metrics["final_train_bound"] = -history.train_loss[-1] if history.train_loss else None
    metrics["interrupted"] = history.interrupted
    write_json(path / SUMMARY_FILE, {"metrics": metrics, "history": history.to_dict()})
    write_figures(path, built, test, data.test_labels)
    figures.save(loss_curves(history), path / "loss_curves.png")


def write_figures(
    path: Path,
    built: Built,
    test: tuple[torch.Tensor, ...],
    test_labels: torch.Tensor | None,
    labels: list[int] | None = None,
    num_images: int = 32,
) -> dict[str, Path]:
    """Samples, reconstructions, interpolations and the latent scatter plot of a trained run.

    An autoencoder has no prior to sample from: its samples figure is skipped.
    """
    written = {}
    built = built.for_evaluation()
    first = tuple(item[:num_images] for item in test)
    if built.spec.model["kind"] != "autoencoder":
        written["samples"] = figures.save(
            figures.sample_grid(built, first[0], labels), path / "samples.png"
        )
    written["reconstructions"] = figures.save(
        figures.reconstruction_grid(built, first), path / "reconstructions.png"
    )
    written["interpolation"] = figures.save(
        figures.interpolation_grid(built, first), path / "interpolation.png"
    )
    scatter_points = tuple(item[:2000] for item in test)
    written["latents"] = figures.save(
        figures.latent_scatter(built, scatter_points, test_labels), path / "latents.png"
    )
    return written
