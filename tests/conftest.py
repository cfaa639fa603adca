"""Shared test set-up: a clean Pyro state per test, the ``--device``/``--dtype`` options, and
skipping of CUDA tests without a GPU.

Tests that take the ``device`` and ``dtype`` fixtures run wherever the options say, so the same
suite checks a GPU: ``pytest --device cuda`` (and ``--dtype float32`` for single precision).
Tests marked ``cuda`` need a GPU whatever the options, and skip without one.
"""

import pyro
import pytest
import torch

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def pytest_addoption(parser):
    group = parser.getgroup("pyro_vi", "pyro_vi test options")
    group.addoption(
        "--device",
        default="cpu",
        help="device of the tests that take the `device` fixture: cpu, cuda or cuda:<index> "
        "(default: cpu)",
    )
    group.addoption(
        "--dtype",
        default="float64",
        choices=sorted(DTYPES),
        help="floating dtype of the tests that take the `dtype` fixture (default: float64, "
        "in which the exactness checks are tight)",
    )


def pytest_configure(config):
    try:
        device = torch.device(config.getoption("--device"))
    except RuntimeError as error:
        raise pytest.UsageError(f"--device: {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError(f"--device {device}: CUDA is not available on this machine")
    count = torch.cuda.device_count()
    if device.type == "cuda" and device.index is not None and device.index >= count:
        raise pytest.UsageError(f"--device {device}: this machine has {count} CUDA devices")
    # One CPU thread: the tests' tensors are small, and on a shared 2-core machine two OpenMP
    # threads per test process cost more in waiting than they gain (measured: 190 s of CPU for
    # the suite with one thread against 268 s with two).
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def device(request) -> torch.device:
    """Where a device-aware test puts its tensors and modules (``--device``, default CPU)."""
    return torch.device(request.config.getoption("--device"))


@pytest.fixture(scope="session")
def dtype(request) -> torch.dtype:
    """The floating dtype of a dtype-aware test (``--dtype``, default float64)."""
    return DTYPES[request.config.getoption("--dtype")]


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
