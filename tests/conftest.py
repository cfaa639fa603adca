"""Shared test set-up: a clean Pyro state per test, and skipping of CUDA tests without a GPU."""

import pyro
import pytest
import torch


@pytest.fixture(autouse=True)
def fresh_pyro():
    """Every test starts with an empty param store and the same seeds."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none is visible")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
