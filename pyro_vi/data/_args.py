"""Argument checks shared by the file-based loaders (the generic ones live in pyro_vi._checks)."""

from __future__ import annotations

import os
from pathlib import Path

from .._checks import describe


def check_root(root: object) -> Path:
    """Return ``root`` as a :class:`~pathlib.Path` (``~`` expanded) if it is a str or path."""
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a directory path (str or Path), got {describe(root)}")
    return Path(root).expanduser()


def check_bool(name: str, value: object) -> bool:
    """Return ``value`` if it is a bool; 0/1 and other truthy things are refused as ambiguous."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {describe(value)}")
    return value
