"""Fixtures for the spec tests: the shipped configs and where their datasets are."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from shared_data import find_shared_data

from pyro_vi.data import DATA_ENV, MNIST_MD5

#: Files each dataset that lives on disk needs under ``<data dir>/<name>/`` (digits is embedded).
DATASET_FILES = {
    "mnist": list(MNIST_MD5),
    "fashion-mnist": list(MNIST_MD5),
    "binarized-mnist": [f"binarized_mnist_{split}.amat" for split in ("train", "valid", "test")],
}


@pytest.fixture(scope="session")
def data_root() -> Path | None:
    """``$PYRO_VI_DATA``, else a ``shared/data`` beside the checkout, else ``None``."""
    return find_shared_data(DATA_ENV)


@pytest.fixture
def data_overrides(data_root):
    """A function: the overrides that point a spec at its dataset, or a skip when it is absent."""

    def overrides(dataset: str) -> list[str]:
        if dataset not in DATASET_FILES:
            return []
        if data_root is None:
            pytest.skip(f"{dataset} needs a data folder: set ${DATA_ENV} or check out shared/data")
        folder = data_root / dataset
        missing = [name for name in DATASET_FILES[dataset] if not (folder / name).is_file()]
        if missing:
            pytest.skip(f"{folder} lacks {missing}")
        # JSON quoting makes a TOML basic string, so any path survives the override parser.
        return [f"data.dir={json.dumps(str(data_root))}"]

    return overrides
