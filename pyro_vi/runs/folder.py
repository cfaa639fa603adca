"""A run is a folder; this module knows its files and how to rebuild a trained run from them.

=====================  ==========================================================================
file                   contents
=====================  ==========================================================================
``spec.toml``          the resolved spec: every key, defaults filled in; rebuilds the model
``run.json``           data shape and labels count, status, versions and device, timings
``metrics.jsonl``      one JSON line per epoch: train and test loss (minus the bound), seconds
``checkpoint.pt``      model and guide ``state_dict`` and the epoch they are from
``metrics.json``       the final evaluation (test ELBO, IWAE-K log-likelihood, ...) and history
``*.png``              figures (samples, reconstructions, loss curves, ...)
=====================  ==========================================================================
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyro
import torch

from pyro_vi.devices import resolve_device
from pyro_vi.spec import Built, Data, DataInfo, Spec, build, load_data, load_spec, materialize

SPEC_FILE = "spec.toml"
INFO_FILE = "run.json"
EPOCHS_FILE = "metrics.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
SUMMARY_FILE = "metrics.json"


@dataclass
class Run:
    """A run folder with its spec, its data and its trained model and guide (on ``device``)."""

    path: Path
    spec: Spec
    built: Built
    data: Data
    info: dict[str, Any]
    device: torch.device


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as indented JSON, through a temporary file so a crash never leaves half
    a file behind."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(partial, path)
    return path


def save_checkpoint(path: Path, built: Built, epoch: int) -> Path:
    """Save model and guide parameters (atomically, as for :func:`write_json`)."""
    target = path / CHECKPOINT_FILE
    partial = target.with_name(target.name + ".partial")
    torch.save(
        {"model": built.model.state_dict(), "guide": built.guide.state_dict(), "epoch": epoch},
        partial,
    )
    os.replace(partial, target)
    return target


def read_epochs(path: Path) -> list[dict[str, Any]]:
    """The per-epoch records of ``metrics.jsonl`` (empty if the file is missing)."""
    file = Path(path) / EPOCHS_FILE
    if not file.is_file():
        return []
    return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]


def check_run_folder(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path if it holds a run with a checkpoint; otherwise a clear error."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"run folder {str(path)!r} does not exist")
    missing = [
        name for name in (SPEC_FILE, INFO_FILE, CHECKPOINT_FILE) if not (path / name).is_file()
    ]
    if missing:
        raise FileNotFoundError(
            f"{str(path)!r} is not a finished run folder: it lacks {missing} (a folder written by "
            "'pyro-vi train' holds spec.toml, run.json and checkpoint.pt)"
        )
    return path


def load_run(
    path: str | os.PathLike[str],
    device: str | torch.device | None = None,
    data_dir: str | None = None,
) -> Run:
    """Rebuild a trained run: read its spec, load its data, build the model and guide, and load
    the checkpoint into them.

    Arguments:
        path: The run folder.
        device: Where to put the model and data (default: the device it trained on when that
            exists here, else the CPU).
        data_dir: Overrides the spec's ``data.dir`` (the data may have moved).

    Returns:
        The :class:`Run`, networks in eval mode.
    """
    path = check_run_folder(path)
    overrides = [] if data_dir is None else [f"data.dir={json.dumps(str(data_dir))}"]
    spec = load_spec(path / SPEC_FILE, overrides)
    info = json.loads((path / INFO_FILE).read_text())
    if device is None:
        trained_on = spec.training["device"]
        device = trained_on if trained_on == "cpu" or torch.cuda.is_available() else "cpu"
    device = resolve_device(device)
    data = load_data(spec)
    data_info = DataInfo(**{**info["data_info"], "shape": tuple(info["data_info"]["shape"])})
    built = build(spec, data_info)
    built.model.to(device)
    built.guide.to(device)
    first = tuple(item[torch.arange(min(2, len(item)))].to(device) for item in data.test)
    pyro.set_rng_seed(spec.training["seed"])
    materialize(built, first)
    state = torch.load(path / CHECKPOINT_FILE, map_location=device, weights_only=True)
    built.model.load_state_dict(state["model"])
    built.guide.load_state_dict(state["guide"])
    built.model.eval()
    built.guide.eval()
    return Run(path, spec, built, data, info, device)


def data_info_dict(info: DataInfo) -> dict[str, Any]:
    """``info`` as JSON-ready data."""
    out = asdict(info)
    out["shape"] = list(info.shape)
    return out
