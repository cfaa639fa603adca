"""download_files against a local HTTP server (never the internet); load_mnist(download=True)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from pyro_vi.data import (
    DatasetCorruptedError,
    DatasetNotFoundError,
    download_files,
    load_mnist,
    write_idx,
)
from pyro_vi.data import mnist as mnist_module
from pyro_vi.data.download import md5sum


@pytest.fixture
def served_files(http_server):
    """Two small IDX files on the local server: (base URL, {name: md5})."""
    url, folder = http_server
    write_idx(
        folder / "images-idx3-ubyte.gz", np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)
    )
    write_idx(folder / "labels-idx1-ubyte.gz", np.array([3, 1], dtype=np.uint8))
    return url, {path.name: md5sum(path) for path in sorted(folder.iterdir())}


def _leftovers(folder):
    return sorted(path.name for path in folder.iterdir())


@pytest.mark.parametrize("first_mirror", ["not-found", "unreachable"])
def test_falls_back_to_the_next_mirror(tmp_path, served_files, unreachable_url, first_mirror):
    url, files = served_files
    bad = url + "no-such-folder/" if first_mirror == "not-found" else unreachable_url
    root = tmp_path / "downloads" / "nested"  # created on demand
    paths = download_files(root, files, [bad, url], timeout=5.0)
    assert paths == [root / name for name in files]
    for path in paths:
        assert md5sum(path) == files[path.name]
        assert path.read_bytes() == (tmp_path / "served" / path.name).read_bytes()
    assert _leftovers(root) == sorted(files)  # no temporary files


def test_mirror_without_trailing_slash(tmp_path, served_files):
    url, files = served_files
    download_files(tmp_path / "d", files, [url.rstrip("/")])
    assert _leftovers(tmp_path / "d") == sorted(files)


def test_present_files_are_not_fetched_again(tmp_path, served_files):
    url, files = served_files
    root = tmp_path / "d"
    root.mkdir()
    (root / "labels-idx1-ubyte.gz").write_bytes(b"mine")
    # Gone from the server too: only a file that is already present can succeed.
    (tmp_path / "served" / "labels-idx1-ubyte.gz").unlink()
    download_files(root, files, [url])
    assert (root / "labels-idx1-ubyte.gz").read_bytes() == b"mine"
    assert md5sum(root / "images-idx3-ubyte.gz") == files["images-idx3-ubyte.gz"]


def test_wrong_md5_leaves_nothing_behind(tmp_path, served_files):
    url, files = served_files
    wrong = hashlib.md5(b"something else").hexdigest()
    root = tmp_path / "d"
    with pytest.raises(DatasetCorruptedError) as caught:
        download_files(root, {"labels-idx1-ubyte.gz": wrong}, [url])
    message = str(caught.value)
    assert (
        "md5 mismatch" in message and wrong in message and files["labels-idx1-ubyte.gz"] in message
    )
    assert url + "labels-idx1-ubyte.gz" in message
    assert _leftovers(root) == []  # neither the file nor a temporary one


def test_every_mirror_failing_gives_one_error_listing_each(
    tmp_path, http_server, unreachable_url, silent_url
):
    url, _ = http_server
    mirrors = [unreachable_url, url, silent_url]
    root = tmp_path / "d"
    with pytest.raises(DatasetNotFoundError) as caught:
        download_files(root, {"absent.gz": "0" * 32}, mirrors, timeout=0.5)
    message = str(caught.value)
    lines = message.splitlines()
    assert "every mirror failed" in lines[0] and "absent.gz" in lines[0]
    for mirror, symptom in zip(mirrors, ["refused", "404", "timed out"], strict=True):
        line = next(line for line in lines if mirror + "absent.gz" in line)
        assert symptom in line.lower(), line
    assert "by hand" in message and str(root) in message
    assert _leftovers(root) == []


@pytest.mark.parametrize(
    ("options", "error", "fragment"),
    [
        ({"mirrors": "http://one/"}, TypeError, "mirrors must be a sequence"),
        ({"mirrors": []}, ValueError, "at least one"),
        ({"timeout": 0}, ValueError, "timeout must be >"),
    ],
)
def test_bad_arguments(tmp_path, options, error, fragment):
    arguments = {"files": {"a.gz": "0" * 32}, "mirrors": ["http://127.0.0.1:9/"], **options}
    with pytest.raises(error, match=fragment):
        download_files(tmp_path, **arguments)


def test_load_mnist_downloads_what_is_missing(
    tmp_path, http_server, unreachable_url, write_small_mnist, monkeypatch
):
    url, served = http_server
    write_small_mnist(served)
    table = {name: md5sum(served / name) for name in mnist_module.MNIST_MD5}
    # Point load_mnist at the local server, as if it were a mirror publishing the small files.
    dataset = mnist_module._IdxDataset("mnist", table, (unreachable_url, url))
    monkeypatch.setattr(mnist_module, "_MNIST", dataset)
    root = tmp_path / "data"
    root.mkdir()
    (root / mnist_module.TEST_LABELS).write_bytes((served / mnist_module.TEST_LABELS).read_bytes())
    with pytest.raises(DatasetNotFoundError, match="download=True"):
        load_mnist(root, verify=False)
    data = load_mnist(root, download=True, verify=False)
    assert len(data.train) == 6 and len(data.test) == 4
    assert _leftovers(root) == sorted(table)
