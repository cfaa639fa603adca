"""Checkpoints that survive: written atomically, loaded safely, complete enough to resume exactly.

A checkpoint is a dict of tensors and plain Python values (no pickled objects), so it loads with
``torch.load(weights_only=True)``: a file cannot run code. It holds everything a training run
needs to continue as if it had never stopped:

- ``params``: every optimized leaf, in the order :class:`~pyro_vi.train.Trainer` collects them,
  with their names where Pyro's param store knows them;
- ``optimizer``, ``scheduler``: their ``state_dict``\\ s;
- ``rng``: Python's, NumPy's and torch's generators (CPU and every CUDA device);
- ``position``: epoch, the epoch's data order and the next batch, steps taken, the partial
  epoch's loss sum;
- ``history``: :class:`~pyro_vi.train.History` as a dict;
- ``estimator``: state an estimator keeps between steps (running baselines);
- ``fingerprint``: what must not change between the run and its resumption (a caller's tag,
  e.g. a spec's hash, and the parameters' names and shapes).

Writing goes to a temporary file in the same folder, flushed to disk, then renamed over the old
checkpoint (``os.replace`` is atomic on POSIX): a crash or a full disk mid-write leaves the last
good checkpoint intact.
"""

from __future__ import annotations

import os
import pickle
import random
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["CheckpointError", "load_checkpoint", "rng_state", "save_checkpoint", "set_rng_state"]

FORMAT = "pyro_vi.checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, foreign or tampered with, or cannot be written."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (a temporary file, then a rename).

    Raises:
        CheckpointError: the folder cannot be written (missing, read-only, full disk); the
            previous checkpoint at ``path``, if any, is left as it was.
    """
    path = Path(path)
    payload = {"format": FORMAT, "version": VERSION, **state}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as error:
        raise CheckpointError(
            f"cannot write the checkpoint {str(path)!r}: {error.strerror or error}"
        ) from error
    try:
        # mkstemp makes the file private (0600); a checkpoint takes the permissions of the run's
        # other files (those the umask gives), so whoever may read the run may read its weights.
        os.fchmod(handle, 0o666 & ~_umask())
        with os.fdopen(handle, "wb") as file:
            torch.save(payload, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except (OSError, RuntimeError) as error:
        Path(temporary).unlink(missing_ok=True)
        reason = getattr(error, "strerror", None) or str(error)
        raise CheckpointError(
            f"cannot write the checkpoint {str(path)!r} ({reason}); the previous checkpoint is "
            "intact"
        ) from error
    return path


def _umask() -> int:
    """The process's file-creation mask (read by setting it, then restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, safely (``weights_only=True``).

    Raises:
        CheckpointError: naming the file and what is wrong: it does not exist, is empty or
            truncated, is not a torch file, is not a pyro_vi checkpoint (or of a later format),
            or holds objects a checkpoint never contains (it was tampered with).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist (or is not a file)")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {str(path)!r} is empty (0 bytes)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        # The weights-only unpickler refused an object: not something this package writes.
        # (torch's message advises weights_only=False, which would let the file run code.)
        raise CheckpointError(
            f"checkpoint {str(path)!r} holds objects a pyro_vi checkpoint never contains (it "
            "was written by something else, or tampered with); refusing to load it"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as error:
        raise CheckpointError(
            f"checkpoint {str(path)!r} cannot be read: it is truncated or not a torch file "
            f"({type(error).__name__})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{str(path)!r} is a torch file but not a pyro_vi checkpoint (no format "
            f"{FORMAT!r} marker)"
        )
    if payload.get("version", 0) > VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format version {payload['version']}, newer than this "
            f"pyro_vi reads ({VERSION}); upgrade pyro_vi"
        )
    return payload


def rng_state() -> dict[str, Any]:
    """Every random number generator training uses, as tensors and plain values."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    state = {
        "python": _python_state(random.getstate()),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators saved by :func:`rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy = state["numpy"]
    np.random.set_state(
        (
            numpy["kind"],
            numpy["keys"].numpy().astype(np.uint32),
            numpy["position"],
            numpy["has_gauss"],
            numpy["gauss"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _python_state(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]
