"""Where the shared copy of the datasets is, for the tests that read dataset files."""

from __future__ import annotations

import os
from pathlib import Path


def find_shared_data(env: str) -> Path | None:
    """``$env`` if set; else a ``shared/data`` folder above this checkout; else ``None``.

    The repository is checked out as <somewhere>/main with <somewhere>/shared/data beside it;
    walking up finds that wherever the checkout lives.
    """
    configured = os.environ.get(env)
    if configured:
        return Path(configured)
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return None
