"""Files as users bring them: what acceptance testing of the data API found wrong, one test each.

Tables written by Excel (a byte-order mark) or pandas (an unnamed index column), quoted header
names, labels past int64, binary images stored as uint8, macOS metadata files in class folders,
and the MNIST folders users get wrong (Fashion-MNIST under mnist/, gunzipped files, the dataset
folder given as the data directory).
"""

import gzip

import numpy as np
import pytest
import torch
from PIL import Image

from pyro_vi.data import (
    FASHION_MNIST_MD5,
    DatasetCorruptedError,
    DatasetNotFoundError,
    load,
    load_mnist,
    load_path,
    read_amat,
    read_idx,
)
from pyro_vi.data import mnist as mnist_module
from pyro_vi.data.arrays import read_arrays
from pyro_vi.data.image_folder import read_image_folder
from pyro_vi.data.tables import read_table

BOM = "\ufeff".encode()


def test_csv_with_a_byte_order_mark(tmp_path):
    # Without a header: the BOM made the first row look like a header, and it was dropped.
    path = tmp_path / "excel.csv"
    path.write_bytes(BOM + b"1,2\r\n3,4\r\n5,6\r\n")
    features, _ = read_table(path)
    assert torch.equal(features, torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
    # With one: the first column was named "\ufefflabel", so label_column="label" was unknown.
    path.write_bytes(BOM + b"label,a\n1,2\n3,4\n")
    features, labels = read_table(path, label_column="label")
    assert torch.equal(features, torch.tensor([[2.0], [4.0]]))
    assert torch.equal(labels, torch.tensor([1, 3]))
    gzipped = tmp_path / "excel.csv.gz"
    gzipped.write_bytes(gzip.compress(BOM + b"1,2\n3,4\n"))
    assert len(read_table(gzipped)[0]) == 2


def test_a_quoted_header_name_may_hold_the_delimiter(tmp_path):
    # The header was split on every comma: the label column pointed one column too far, at the
    # feature y (labels [2, 4], the real labels left among the features), or past the end.
    path = tmp_path / "cells.csv"
    path.write_text('"gene,1",label,y\n1,0,2\n3,1,4\n')
    features, labels = read_table(path, label_column="label")
    assert torch.equal(labels, torch.tensor([0, 1]))
    assert torch.equal(features, torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    path.write_text('"gene,1",y,label\n1,2,0\n3,4,1\n')
    assert torch.equal(read_table(path, label_column="label")[1], torch.tensor([0, 1]))


def test_a_header_must_name_each_column_once(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b,label\n1,2,3,4\n5,6,7,8\n")  # label would have been the third of four
    with pytest.raises(DatasetCorruptedError, match=r"names 3 column\(s\) but the rows hold 4"):
        read_table(path, label_column="label")
    # pandas' df.to_csv(path) writes the row index under an empty name: it was a feature.
    path.write_text(",a,b\n0,1.5,2\n1,3.5,4\n")
    with pytest.raises(ValueError, match=r"column 1 of .* has no name.*index=False"):
        read_table(path)
    path.write_text("y,a,y\n1,2,3\n")
    with pytest.raises(ValueError, match=r"label_column = 'y' names 2 columns"):
        read_table(path, label_column="y")


@pytest.mark.parametrize(
    "labels",
    [np.full(4, 2**63 + 1, dtype=np.uint64), np.full(4, 1e30)],
    ids=["uint64", "float"],
)
def test_labels_beyond_int64_are_refused(tmp_path, labels):
    # They were cast to int64 and came out negative, past the check that labels are >= 0.
    np.savez(tmp_path / "x.npz", x=np.ones((4, 2)), y=labels)
    with pytest.raises(ValueError, match=r"'y' in .* must hold integers 0..C-1, got the label"):
        read_arrays(tmp_path / "x.npz")


def test_binary_uint8_images_stay_binary(tmp_path):
    # 0/1 masks stored as uint8 were divided by 255: values 0 and 1/255.
    masks = np.random.default_rng(0).integers(0, 2, size=(6, 1, 4, 4), dtype=np.uint8)
    np.save(tmp_path / "masks.npy", masks)
    values, _ = read_arrays(tmp_path / "masks.npy")["x"]
    assert torch.equal(values, torch.from_numpy(masks).float())
    pixels = masks * 255
    np.save(tmp_path / "pixels.npy", pixels)
    assert torch.equal(read_arrays(tmp_path / "pixels.npy")["x"][0], values)  # 8-bit: / 255


def test_hidden_files_in_class_folders_are_ignored(tmp_path):
    # macOS archives hold "._name.png" metadata beside each image: Pillow cannot read them.
    for label, name in enumerate(["cat", "dog"]):
        (tmp_path / name).mkdir()
        Image.fromarray(np.full((3, 5), 40 * (label + 1), dtype=np.uint8)).save(
            tmp_path / name / "0.png"
        )
        (tmp_path / name / "._0.png").write_bytes(b"\x00\x05\x16\x07Mac OS X        ")
        (tmp_path / name / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    images, labels = read_image_folder(tmp_path)
    assert images.shape == (2, 1, 3, 5) and torch.equal(labels, torch.tensor([0, 1]))
    assert torch.allclose(images[:, 0, 0, 0], torch.tensor([40.0, 80.0]) / 255)
    data = load_path(tmp_path, test_fraction=0.5)
    assert data.labelled and len(data.train) == 1


def test_reader_arguments_and_folders(tmp_path):
    (tmp_path / "x.amat").write_text("0 1\n1 0\n")
    with pytest.raises(ValueError, match="num_values must be an integer >= 1, got 0"):
        read_amat(tmp_path / "x.amat", num_values=0)  # was ZeroDivisionError
    with pytest.raises(TypeError, match="num_values must be an integer"):
        read_amat(tmp_path / "x.amat", num_values="2")
    assert read_amat(tmp_path / "x.amat", num_values=2).tolist() == [[0, 1], [1, 0]]
    with pytest.raises(DatasetNotFoundError, match="is a folder, not a file"):
        read_amat(tmp_path)  # was IsADirectoryError
    with pytest.raises(DatasetNotFoundError, match="is a folder, not a file"):
        read_idx(tmp_path)


def test_fashion_mnist_under_the_mnist_name_is_named(tmp_path, write_small_mnist, monkeypatch):
    folder = write_small_mnist(tmp_path / "mnist")
    # The small files stand for Fashion-MNIST's: their md5 is Fashion-MNIST's published one.
    monkeypatch.setattr(mnist_module, "md5sum", lambda path: FASHION_MNIST_MD5[path.name])
    with pytest.raises(DatasetCorruptedError) as error:
        load_mnist(folder)
    message = str(error.value)
    assert "train-images-idx3-ubyte.gz" in message
    assert "this is fashion-mnist, not mnist" in message
    assert "folder named 'fashion-mnist'" in message and "download it again" not in message


def test_mnist_folders_users_get_wrong(tmp_path, write_small_mnist):
    folder = write_small_mnist(tmp_path / "mnist")
    # The dataset's own folder given as the data directory: load() looks in mnist/mnist.
    with pytest.raises(DatasetNotFoundError, match=r"give it '.*' \(a loader such as"):
        load("mnist", folder)
    # Gunzipped files (as in torchvision's raw/ folder) are pointed out, with what to do.
    for path in folder.glob("*.gz"):
        path.with_suffix("").write_bytes(gzip.decompress(path.read_bytes()))
        path.unlink()
    with pytest.raises(DatasetNotFoundError, match=r"uncompressed: gzip them .*verify=False"):
        load_mnist(folder)
