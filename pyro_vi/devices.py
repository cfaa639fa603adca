"""Choosing a device, with a clear error when the requested one does not exist here."""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from pyro_vi._checks import describe


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Turn a user's ``device`` ("cpu", "cuda", "cuda:1", a ``torch.device`` or ``None``) into a
    ``torch.device`` that exists on this machine.

    ``None`` means the CPU: nothing in this package moves to a GPU unless asked.

    Raises:
        TypeError: ``device`` is not a string, ``torch.device`` or ``None``.
        ValueError: the string is not a device name, or names a CUDA device this machine lacks.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if device is None:
        return torch.device("cpu")
    if not isinstance(device, str | torch.device):
        raise TypeError(
            f"device must be a string such as 'cpu', 'cuda' or 'cuda:1', or a torch.device, "
            f"got {describe(device)}"
        )
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ValueError(
            f"device must be 'cpu', 'cuda' or 'cuda:<index>', got {device!r}"
        ) from error
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            build = (
                "without CUDA" if torch.version.cuda is None else f"with CUDA {torch.version.cuda}"
            )
            raise ValueError(
                f"device={str(device)!r} was requested, but CUDA is not available on this machine "
                f"(torch {torch.__version__} was built {build}, and no GPU is visible). "
                "Use device='cpu', or install a CUDA build of torch on a machine with a GPU."
            )
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise ValueError(
                f"device={str(device)!r} was requested, but this machine has {count} CUDA "
                f"device(s): use an index from 0 to {count - 1}"
            )
    elif resolved.type != "cpu":
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:<index>', got {device!r}")
    return resolved


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU model from ``/proc/cpuinfo`` (else ``platform``'s answer)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str | torch.device | None = None) -> dict[str, Any]:
    """Where and with what a run happened: device and its name, thread counts, versions, date.

    Stored with every result file (reports, benchmarks), because timings and even numerics
    depend on it.
    """
    import pyro  # imported here: the rest of this module needs only torch

    device = resolve_device(device)
    from pyro_vi import __version__

    return {
        "pyro_vi": __version__,
        "device": str(device),
        "device_name": device_name(device),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "pyro": pyro.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
