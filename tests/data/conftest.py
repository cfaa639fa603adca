"""Fixtures for the data tests: where the shared dataset copy is, small files, a local HTTP server.

Nothing here touches the internet: downloads are tested against a server on 127.0.0.1.
"""

from __future__ import annotations

import functools
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from shared_data import find_shared_data

from pyro_vi.data import MNIST_MD5, write_idx
from pyro_vi.data.mnist import TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS

TEST_DATA_ENV = "PYRO_VI_TEST_DATA"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared copy of the datasets (``$PYRO_VI_TEST_DATA`` or a ``shared/data`` found above)."""
    root = find_shared_data(TEST_DATA_ENV)
    if root is None:
        pytest.skip(f"no shared dataset folder: set {TEST_DATA_ENV} or check out shared/data")
    if not root.is_dir():
        pytest.skip(f"{TEST_DATA_ENV}={str(root)!r} is not a directory")
    return root


def _shared_subfolder(shared_data: Path, name: str, files: list[str]) -> Path:
    folder = shared_data / name
    missing = [file for file in files if not (folder / file).is_file()]
    if missing:
        pytest.skip(f"shared dataset folder {folder} lacks {missing}")
    return folder


@pytest.fixture(scope="session")
def mnist_dir(shared_data: Path) -> Path:
    return _shared_subfolder(shared_data, "mnist", list(MNIST_MD5))


@pytest.fixture(scope="session")
def fashion_mnist_dir(shared_data: Path) -> Path:
    return _shared_subfolder(shared_data, "fashion-mnist", list(MNIST_MD5))


@pytest.fixture(scope="session")
def binarized_mnist_dir(shared_data: Path) -> Path:
    names = [f"binarized_mnist_{split}.amat" for split in ("train", "valid", "test")]
    return _shared_subfolder(shared_data, "binarized-mnist", names)


@pytest.fixture
def write_small_mnist():
    """A function writing four small MNIST-format files (IDX, gzipped) into a folder."""

    def write(folder: Path, num_train: int = 6, num_test: int = 4, side: int = 28) -> Path:
        rng = np.random.default_rng(0)
        folder.mkdir(parents=True, exist_ok=True)
        for images_name, labels_name, count in (
            (TRAIN_IMAGES, TRAIN_LABELS, num_train),
            (TEST_IMAGES, TEST_LABELS, num_test),
        ):
            images = rng.integers(0, 256, size=(count, side, side), dtype=np.uint8)
            write_idx(folder / images_name, images)
            write_idx(folder / labels_name, rng.integers(0, 10, size=count, dtype=np.uint8))
        return folder

    return write


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, message_format: str, *args: object) -> None:
        pass  # keep pytest's output free of one access-log line per request


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server on 127.0.0.1: yields (base URL, the folder it serves)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # A short poll interval: shutdown() waits for the next poll, 0.5 s by default, per test.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", folder
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def unreachable_url() -> str:
    """A URL on a 127.0.0.1 port with nothing listening (connections are refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A URL whose server accepts connections but never answers (to exercise the timeout)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    finally:
        listener.close()
